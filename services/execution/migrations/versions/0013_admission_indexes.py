"""Indexes for an order's admission that does not grow with the account's history: the account's open orders by
status (the cash its open buys reserve, the shares its open sells hold) and its trades in one code (a sell's position).
Before them, each admission read every order (and every trade, for a sell) the account ever had.

Revision ID: 0013
Revises: 0012 (order amends)
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_orders_account_status", "orders", ["account_id", "status"])
    op.create_index("ix_trades_account_code", "trades", ["account_id", "ts_code"])


def downgrade() -> None:
    op.drop_index("ix_trades_account_code", table_name="trades")
    op.drop_index("ix_orders_account_status", table_name="orders")
