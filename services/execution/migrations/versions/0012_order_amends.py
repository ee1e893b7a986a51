"""Amends of orders as cancel-replace (issue 15 §1; docs/order-path.md "Amending an order"): one row per amended
order, its state moved by version-checked updates, so a restart between the cancel's confirmation and the replacement
completes it once.

Revision ID: 0012
Revises: 0011 (the market types and time in force)
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_amends",
        sa.Column("amend_id", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("owner_role", sa.String(16), nullable=False),
        sa.Column("ts_code", sa.String(16), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("old_qty", sa.Integer(), nullable=False),
        sa.Column("old_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("new_qty", sa.Integer(), nullable=False),
        sa.Column("new_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.Column("cancel_sent_at", PreciseDateTime, nullable=True),
        sa.Column("claimed_at", PreciseDateTime, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("filled_qty", sa.Integer(), nullable=True),
        sa.Column("replacement_qty", sa.Integer(), nullable=True),
        sa.Column("replacement_order_id", sa.String(32), nullable=True),
        sa.Column("decision_id", sa.String(64), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("amend_id", name="pk_order_amends"),
        sa.UniqueConstraint("order_id", name="uq_order_amends_order_id"),
    )
    op.create_index("ix_order_amends_status", "order_amends", ["status"])
    op.create_index("ix_order_amends_replacement", "order_amends", ["replacement_order_id"])


def downgrade() -> None:
    op.drop_table("order_amends")
