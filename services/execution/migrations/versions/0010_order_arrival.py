"""The arrival price of an order for cost analysis (docs/tca.md): orders.arrival_price_fen (the latest live quote
execution held when the order was created, or else the last close), arrival_source (live | last_close) and
arrival_at (that price's time). Existing rows: NULL (no arrival price: their slippage against it is not computed).

Revision ID: 0010
Revises: 0008 (rechain onto 0009 when the branch that adds it is merged: the two must not both revise 0008)
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("arrival_price_fen", "arrival_source", "arrival_at")


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN on both databases (no copy of the table); existing rows: NULL.
    op.add_column("orders", sa.Column("arrival_price_fen", sa.BigInteger(), nullable=True))
    op.add_column("orders", sa.Column("arrival_source", sa.String(16), nullable=True))
    op.add_column("orders", sa.Column("arrival_at", PreciseDateTime, nullable=True))


def downgrade() -> None:
    # Native DROP COLUMN, not batch mode (which would copy a table that others reference): see 0006's downgrade.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        version = tuple(int(part) for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split("."))
        if version < (3, 35, 0):
            raise RuntimeError(
                f"downgrading execution below 0010 needs SQLite 3.35 or newer (DROP COLUMN), not {version}"
            )
    for name in reversed(COLUMNS):
        op.drop_column("orders", name)
