"""The strategy instance an order (and each of its trades) was placed for: orders.strategy_instance_id and
trades.strategy_instance_id, NULL for a person's order, indexed so that a runner can read back all of its own.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN on both databases (no copy of the tables); existing rows are people's: NULL.
    op.add_column("orders", sa.Column("strategy_instance_id", sa.String(32), nullable=True))
    op.add_column("trades", sa.Column("strategy_instance_id", sa.String(32), nullable=True))
    op.create_index("ix_orders_strategy_instance_created", "orders", ["strategy_instance_id", "created_at"])
    op.create_index("ix_trades_strategy_instance_created", "trades", ["strategy_instance_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_trades_strategy_instance_created", table_name="trades")
    op.drop_index("ix_orders_strategy_instance_created", table_name="orders")
    # Native DROP COLUMN, not batch mode (which would copy tables that others reference): see 0002's downgrade.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = tuple(int(part) for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split("."))
        if version < (3, 35, 0):
            raise RuntimeError(
                f"downgrading execution below 0003 needs SQLite 3.35 or newer (DROP COLUMN), not {version}"
            )
    op.drop_column("trades", "strategy_instance_id")
    op.drop_column("orders", "strategy_instance_id")
