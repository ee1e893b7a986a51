"""The account a scope's trading state is reported for (trading_states.account_id): an account scope's key, an
instance scope's account as its decisions name it, decided when the scope leaves `active` and kept until it is
active again, so the alert raised by a halt and the one clearing it carry the same account.

Revision ID: 0011
Revises: 0010 (the decisions' market type)
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trading_states") as batch:
        batch.add_column(sa.Column("account_id", sa.String(64), nullable=True))
    states = sa.table("trading_states", sa.column("scope", sa.String(16)), sa.column("key", sa.String(64)),
                      sa.column("account_id", sa.String(64)))  # fmt: skip
    op.execute(states.update().where(states.c.scope == "account").values(account_id=states.c.key))


def downgrade() -> None:
    with op.batch_alter_table("trading_states") as batch:
        batch.drop_column("account_id")
