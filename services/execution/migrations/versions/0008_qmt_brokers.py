"""QMT brokers (issue 14): account_brokers (each account's broker: paper, or qmt through a bridge bound to it; no row:
paper), broker_orders (the order <-> QMT order mapping, written before `place` is sent), broker_reconciliations
(what a reconciliation with the broker found: positions and cash that differ, reported and never overwritten), and
each bridge's trading switches with their audit trail (bridge_trading, bridge_trading_audit; no row: disabled).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "account_brokers",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("broker", sa.String(16), nullable=False),
        sa.Column("bridge_id", sa.String(64), nullable=True),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_account_brokers"),
        sa.UniqueConstraint("bridge_id", name="uq_account_brokers_bridge"),
    )
    op.create_table(
        "broker_orders",
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("bridge_id", sa.String(64), nullable=False),
        sa.Column("remark", sa.String(24), nullable=False),
        sa.Column("qmt_order_id", sa.String(32), nullable=True),
        sa.Column("order_sysid", sa.String(64), nullable=True),
        sa.Column("sent_at", PreciseDateTime, nullable=True),
        sa.Column("qmt_status", sa.Integer(), nullable=True),
        sa.Column("traded_qty", sa.Integer(), nullable=True),
        sa.Column("status_msg", sa.String(255), nullable=True),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_broker_orders"),
        sa.UniqueConstraint("remark", name="uq_broker_orders_remark"),
    )
    op.create_index("ix_broker_orders_bridge", "broker_orders", ["bridge_id"])
    op.create_table(
        "broker_reconciliations",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("bridge_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("at", PreciseDateTime, nullable=False),
        sa.Column("orders_checked", sa.Integer(), nullable=False),
        sa.Column("orders_updated", sa.Integer(), nullable=False),
        sa.Column("differences", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_broker_reconciliations"),
    )
    op.create_index("ix_broker_reconciliations_bridge_at", "broker_reconciliations", ["bridge_id", "at"])
    op.create_table(
        "bridge_trading",
        sa.Column("bridge_id", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("bridge_id", name="pk_bridge_trading"),
    )
    op.create_table(
        "bridge_trading_audit",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("bridge_id", sa.String(64), nullable=False),
        sa.Column("old_enabled", sa.Boolean(), nullable=False),
        sa.Column("old_read_only", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bridge_trading_audit"),
    )
    op.create_index("ix_bridge_trading_audit_bridge", "bridge_trading_audit", ["bridge_id", "id"])


def downgrade() -> None:
    op.drop_table("bridge_trading_audit")
    op.drop_table("bridge_trading")
    op.drop_table("broker_reconciliations")
    op.drop_table("broker_orders")
    op.drop_table("account_brokers")
