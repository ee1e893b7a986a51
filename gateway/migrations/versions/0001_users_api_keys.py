"""users and api_keys

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
        sa.CheckConstraint("role IN ('viewer', 'trader', 'admin')", name=op.f("ck_users_role")),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("last_used_at", PreciseDateTime, nullable=True),
        sa.Column("revoked_at", PreciseDateTime, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
        sa.ForeignKeyConstraint(["username"], ["users.username"], name=op.f("fk_api_keys_username_users")),
    )
    op.create_index("ix_api_keys_username", "api_keys", ["username"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_username", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
