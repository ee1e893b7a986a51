"""securities, trade_calendar, daily_bars

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "securities",
        sa.Column("ts_code", sa.String(12), nullable=False),
        sa.Column("symbol", sa.String(8), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("exchange", sa.String(4), nullable=False),
        sa.Column("board", sa.String(16), nullable=False),
        sa.Column("is_st", sa.Boolean(), nullable=False),
        sa.Column("list_date", sa.Date(), nullable=False),
        sa.Column("delist_date", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("ts_code", name=op.f("pk_securities")),
    )
    op.create_table(
        "trade_calendar",
        sa.Column("exchange", sa.String(8), nullable=False),
        sa.Column("cal_date", sa.Date(), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "cal_date", name=op.f("pk_trade_calendar")),
    )
    # Prices and amount in integer fen, vol in shares (see services/data/store/tables.py).
    op.create_table(
        "daily_bars",
        sa.Column("ts_code", sa.String(12), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("open", sa.BigInteger(), nullable=False),
        sa.Column("high", sa.BigInteger(), nullable=False),
        sa.Column("low", sa.BigInteger(), nullable=False),
        sa.Column("close", sa.BigInteger(), nullable=False),
        sa.Column("pre_close", sa.BigInteger(), nullable=False),
        sa.Column("vol", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("adj_factor", sa.Numeric(20, 6), nullable=False),
        sa.PrimaryKeyConstraint("ts_code", "trade_date", name=op.f("pk_daily_bars")),
    )
    op.create_index("ix_daily_bars_trade_date", "daily_bars", ["trade_date"])


def downgrade() -> None:
    op.drop_index("ix_daily_bars_trade_date", table_name="daily_bars")
    op.drop_table("daily_bars")
    op.drop_table("trade_calendar")
    op.drop_table("securities")
