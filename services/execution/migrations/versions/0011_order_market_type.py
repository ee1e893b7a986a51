"""A market order's type and every order's time in force (docs/order-path.md "Market order types and time in force"):
orders.market_type (NULL: a limit order) and orders.time_in_force ("day"). Existing market orders were all placed as
counterparty best (MiniQMT 44; the paper broker's arrival matching), which is written into them; existing rows are
day orders.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("market_type", "time_in_force")


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN on both databases (no copy of the table).
    op.add_column("orders", sa.Column("market_type", sa.String(24), nullable=True))
    op.add_column("orders", sa.Column("time_in_force", sa.String(8), nullable=False, server_default="day"))
    orders = sa.table("orders", sa.column("order_type", sa.String(8)), sa.column("market_type", sa.String(24)))
    op.execute(orders.update().where(orders.c.order_type == "market").values(market_type="counterparty_best"))


def downgrade() -> None:
    # Native DROP COLUMN, not batch mode (which would copy a table that others reference): see 0006's downgrade.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = tuple(int(part) for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split("."))
        if version < (3, 35, 0):
            raise RuntimeError(
                f"downgrading execution below 0011 needs SQLite 3.35 or newer (DROP COLUMN), not {version}"
            )
    for name in reversed(COLUMNS):
        op.drop_column("orders", name)
