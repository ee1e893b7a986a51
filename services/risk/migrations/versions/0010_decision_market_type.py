"""The market type and time in force a decision covered (risk_decisions.market_type: NULL for a limit order;
risk_decisions.time_in_force: "day"), signed into the approval with the order's other terms, so a retry replays the
decision with the same type. Earlier market decisions were placed as counterparty best (written into them).

Revision ID: 0010
Revises: 0009 (the order batches)
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("risk_decisions") as batch:
        batch.add_column(sa.Column("market_type", sa.String(24), nullable=True))
        batch.add_column(sa.Column("time_in_force", sa.String(8), nullable=False, server_default="day"))
    decisions = sa.table(
        "risk_decisions", sa.column("order_type", sa.String(8)), sa.column("market_type", sa.String(24))
    )
    op.execute(decisions.update().where(decisions.c.order_type == "market").values(market_type="counterparty_best"))


def downgrade() -> None:
    with op.batch_alter_table("risk_decisions") as batch:
        batch.drop_column("time_in_force")
        batch.drop_column("market_type")
