"""backtests, backtest_equity and the outbox

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# CNY to the fen as this revision stored it: DECIMAL(20,2), text on SQLite (whose NUMERIC goes through float).
# Written out here (the service's type then, since replaced by fen in 0007) so that this revision keeps creating it.
MONEY = sa.Numeric(20, 2).with_variant(sa.String(24), "sqlite")


def upgrade() -> None:
    op.create_table(
        "backtests",
        sa.Column("backtest_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("ts_codes", sa.JSON(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("initial_cash", MONEY, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("started_at", PreciseDateTime, nullable=True),
        sa.Column("finished_at", PreciseDateTime, nullable=True),
        sa.PrimaryKeyConstraint("backtest_id", name=op.f("pk_backtests")),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name=op.f("ck_backtests_status")),
    )
    op.create_index("ix_backtests_owner_created", "backtests", ["owner", "created_at"])
    op.create_index("ix_backtests_created", "backtests", ["created_at"])
    op.create_table(
        "backtest_equity",
        sa.Column("backtest_id", sa.String(32), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("equity", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("backtest_id", "trade_date", name=op.f("pk_backtest_equity")),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtests.backtest_id"],
            name=op.f("fk_backtest_equity_backtest_id_backtests"),
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("published_at", PreciseDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index("ix_outbox_pending", "outbox", ["published_at", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("backtest_equity")
    op.drop_index("ix_backtests_created", table_name="backtests")
    op.drop_index("ix_backtests_owner_created", table_name="backtests")
    op.drop_table("backtests")
