"""The strategy service's first schema: strategy instances, their parameter versions, their audit trail, the
runner's book per instance, and an outbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
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
        "strategy_instances",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("params_version", sa.Integer(), nullable=False),
        sa.Column("universe", sa.JSON(), nullable=False),
        sa.Column("capital_fen", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("bar_freq", sa.String(4), nullable=False),
        sa.Column("order_timing", sa.String(16), nullable=False),
        sa.Column("costs", sa.JSON(), nullable=False),
        sa.Column("reload", sa.String(8), nullable=False),
        sa.Column("cancel_open_orders_on_stop", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_strategy_instances"),
    )
    op.create_index("ix_strategy_instances_owner", "strategy_instances", ["owner"])
    op.create_index("ix_strategy_instances_account_state", "strategy_instances", ["account_id", "state"])
    op.create_index("ix_strategy_instances_state", "strategy_instances", ["state"])

    op.create_table(
        "strategy_instance_versions",
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "version", name="pk_strategy_instance_versions"),
    )

    op.create_table(
        "strategy_instance_audit",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_strategy_instance_audit"),
    )
    op.create_index("ix_strategy_instance_audit_instance_at", "strategy_instance_audit", ["instance_id", "at"])

    op.create_table(
        "strategy_instance_books",
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("bar_date", sa.Date(), nullable=True),
        sa.Column("book", sa.JSON(), nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name="pk_strategy_instance_books"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("published_at", PreciseDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_pending", "outbox", ["published_at", "created_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("strategy_instance_books")
    op.drop_table("strategy_instance_audit")
    op.drop_table("strategy_instance_versions")
    op.drop_table("strategy_instances")
