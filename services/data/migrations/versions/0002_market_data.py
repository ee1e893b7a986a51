"""securities details; adj_factors, daily_basic, stk_limits, suspensions, st_periods, index_bars, index_weights;
ingest_runs, quality_reports, quality_findings, data_versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.platform.db import PreciseDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RATIOS = (
    "turnover_rate",
    "turnover_rate_f",
    "volume_ratio",
    "pe",
    "pe_ttm",
    "pb",
    "ps",
    "ps_ttm",
    "dv_ratio",
    "dv_ttm",
)
SHARES_AND_VALUES = ("total_share", "float_share", "free_share", "total_mv", "circ_mv")


def _code_day(table: str) -> list[sa.Column]:
    return [sa.Column("ts_code", sa.String(12), nullable=False), sa.Column("trade_date", sa.Date(), nullable=False)]


def upgrade() -> None:
    with op.batch_alter_table("securities") as batch:
        batch.add_column(sa.Column("industry", sa.String(32), nullable=True))
        batch.add_column(sa.Column("area", sa.String(16), nullable=True))
        batch.add_column(sa.Column("market", sa.String(16), nullable=True))
        batch.add_column(sa.Column("list_status", sa.String(1), nullable=False, server_default="L"))

    op.create_table(
        "adj_factors",
        *_code_day("adj_factors"),
        sa.Column("adj_factor", sa.Numeric(20, 6), nullable=False),
        sa.PrimaryKeyConstraint("ts_code", "trade_date", name=op.f("pk_adj_factors")),
    )
    # Ratios as Tushare gives them (DOUBLE); shares in shares (万股 x 10,000); market values in fen (万元 x 10^6).
    op.create_table(
        "daily_basic",
        *_code_day("daily_basic"),
        *(sa.Column(name, sa.Double(), nullable=True) for name in RATIOS),
        *(sa.Column(name, sa.BigInteger(), nullable=True) for name in SHARES_AND_VALUES),
        sa.PrimaryKeyConstraint("ts_code", "trade_date", name=op.f("pk_daily_basic")),
    )
    op.create_table(
        "stk_limits",
        *_code_day("stk_limits"),
        sa.Column("up_limit", sa.BigInteger(), nullable=False),
        sa.Column("down_limit", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ts_code", "trade_date", name=op.f("pk_stk_limits")),
    )
    op.create_table(
        "suspensions",
        *_code_day("suspensions"),
        sa.Column("suspend_type", sa.String(1), nullable=False),
        sa.Column("suspend_timing", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("ts_code", "trade_date", "suspend_type", name=op.f("pk_suspensions")),
    )
    op.create_index("ix_suspensions_trade_date", "suspensions", ["trade_date"])
    op.create_table(
        "st_periods",
        sa.Column("ts_code", sa.String(12), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("change_reason", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("ts_code", "start_date", "name", name=op.f("pk_st_periods")),
    )
    op.create_table(
        "index_bars",
        *_code_day("index_bars"),
        *(sa.Column(name, sa.Double(), nullable=True) for name in ("open", "high", "low", "close", "pre_close")),
        sa.Column("vol", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ts_code", "trade_date", name=op.f("pk_index_bars")),
    )
    op.create_table(
        "index_weights",
        sa.Column("index_code", sa.String(12), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("con_code", sa.String(12), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("index_code", "trade_date", "con_code", name=op.f("pk_index_weights")),
    )
    op.create_table(
        "ingest_runs",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", PreciseDateTime, nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.Column("finished_at", PreciseDateTime, nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_ingest_runs")),
    )
    op.create_index("ix_ingest_runs_started_at", "ingest_runs", ["started_at"])
    op.create_table(
        "quality_reports",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("created_at", PreciseDateTime, nullable=False),
        sa.Column("ingest_run_id", sa.String(36), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_quality_reports")),
    )
    op.create_index("ix_quality_reports_created_at", "quality_reports", ["created_at"])
    op.create_table(
        "quality_findings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("ts_code", sa.String(12), nullable=True),
        sa.Column("trade_date", sa.Date(), nullable=True),
        sa.Column("rule", sa.String(48), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_findings")),
    )
    op.create_index("ix_quality_findings_run_id", "quality_findings", ["run_id"])
    op.create_table(
        "data_versions",
        sa.Column("name", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", PreciseDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_data_versions")),
    )


def downgrade() -> None:
    for table in ("data_versions", "quality_findings", "quality_reports", "ingest_runs", "index_weights", "index_bars",
                  "st_periods", "suspensions", "stk_limits", "daily_basic", "adj_factors"):  # fmt: skip
        op.drop_table(table)
    with op.batch_alter_table("securities") as batch:
        for column in ("list_status", "market", "area", "industry"):
            batch.drop_column(column)
