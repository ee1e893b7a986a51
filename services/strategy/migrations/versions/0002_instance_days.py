"""Each strategy instance's record of every day it closed: cash, market value, equity, realised and unrealised P&L,
fees, turnover and its positions at the close.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "strategy_instance_days",
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("cash_fen", sa.BigInteger(), nullable=False),
        sa.Column("market_value_fen", sa.BigInteger(), nullable=False),
        sa.Column("equity_fen", sa.BigInteger(), nullable=False),
        sa.Column("realised_pnl_fen", sa.BigInteger(), nullable=False),
        sa.Column("day_realised_pnl_fen", sa.BigInteger(), nullable=False),
        sa.Column("unrealised_pnl_fen", sa.BigInteger(), nullable=False),
        sa.Column("fees_fen", sa.BigInteger(), nullable=False),
        sa.Column("total_fees_fen", sa.BigInteger(), nullable=False),
        sa.Column("turnover_fen", sa.BigInteger(), nullable=False),
        sa.Column("positions", sa.JSON(), nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "trade_date", name="pk_strategy_instance_days"),
    )


def downgrade() -> None:
    op.drop_table("strategy_instance_days")
