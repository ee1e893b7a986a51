"""Conditional orders held by execution (issue 15: stop, stop-limit, price / time / after-fill conditions, OCO and
brackets; docs/conditional-orders.md): one row per conditional order, its state moved by version-checked updates.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conditional_orders",
        sa.Column("conditional_id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("owner_role", sa.String(16), nullable=False),
        sa.Column("ts_code", sa.String(16), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=True),
        sa.Column("stop_price_fen", sa.BigInteger(), nullable=True),
        sa.Column("condition", sa.String(16), nullable=True),
        sa.Column("level_fen", sa.BigInteger(), nullable=True),
        sa.Column("at", PreciseDateTime, nullable=True),
        sa.Column("market_type", sa.String(24), nullable=True),
        sa.Column("on_missed", sa.String(8), nullable=False),
        sa.Column("after_order_id", sa.String(32), nullable=True),
        sa.Column("oco_group", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ref_price_fen", sa.BigInteger(), nullable=True),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.Column("triggered_at", PreciseDateTime, nullable=True),
        sa.Column("trigger_seen_fen", sa.BigInteger(), nullable=True),
        sa.Column("trigger_time", PreciseDateTime, nullable=True),
        sa.Column("missed", sa.Boolean(), nullable=True),
        sa.Column("claimed_at", PreciseDateTime, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("child_client_order_id", sa.String(64), nullable=True),
        sa.Column("child_order_id", sa.String(32), nullable=True),
        sa.Column("decision_id", sa.String(64), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("conditional_id", name="pk_conditional_orders"),
    )
    op.create_index("ix_conditional_orders_status", "conditional_orders", ["status"])
    op.create_index("ix_conditional_orders_account_created", "conditional_orders", ["account_id", "created_at"])
    op.create_index("ix_conditional_orders_oco", "conditional_orders", ["oco_group"])


def downgrade() -> None:
    op.drop_table("conditional_orders")
