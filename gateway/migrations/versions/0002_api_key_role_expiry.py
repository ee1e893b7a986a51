"""API keys carry their own role (at most their owner's) and an optional expiry (api_keys.role, api_keys.expires_at).

Keys made before this revision could do everything their owner could: they get the owner's role of today.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=True))
        batch.add_column(sa.Column("expires_at", PreciseDateTime, nullable=True))
    api_keys = sa.table("api_keys", sa.column("username", sa.String), sa.column("role", sa.String))
    users = sa.table("users", sa.column("username", sa.String), sa.column("role", sa.String))
    owner_role = sa.select(users.c.role).where(users.c.username == api_keys.c.username).scalar_subquery()
    op.execute(sa.update(api_keys).values(role=owner_role))
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("role", existing_type=sa.String(16), nullable=False)
        batch.create_check_constraint(op.f("ck_api_keys_role"), "role IN ('viewer', 'trader', 'admin')")


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.drop_column("expires_at")
        batch.drop_column("role")
