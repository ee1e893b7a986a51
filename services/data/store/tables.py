"""The data service's tables (database `lh_data`); their units in docs/data.md ("Tables")."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Date, Double, Index, Integer, Numeric, String, Table, Text

from services.data import units
from shared.platform.clock import UtcDateTime
from shared.platform.db import new_metadata

CALENDAR_EXCHANGE = "SSE"  # SSE and SZSE share their closures; Tushare's trade_cal defaults to SSE too

metadata = new_metadata()

securities = Table(
    "securities",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("symbol", String(8), nullable=False),
    Column("name", String(32), nullable=False),
    Column("exchange", String(4), nullable=False),
    Column("board", String(16), nullable=False),
    Column("is_st", Boolean, nullable=False),  # the current name's flag; history is in st_periods
    Column("list_date", Date, nullable=False),
    Column("delist_date", Date, nullable=True),
    Column("industry", String(32), nullable=True),  # Tushare stock_basic's industry (申万-like names), as given
    Column("area", String(16), nullable=True),
    Column("market", String(16), nullable=True),  # Tushare's 主板/创业板/科创板/北交所 label, as given
    Column("list_status", String(1), nullable=False, server_default="L"),  # L listed, D delisted, P suspended
)

trade_calendar = Table(
    "trade_calendar",
    metadata,
    Column("exchange", String(8), primary_key=True),
    Column("cal_date", Date, primary_key=True),
    Column("is_open", Boolean, nullable=False),
)

daily_bars = Table(
    "daily_bars",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("open", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    Column("low", BigInteger, nullable=False),
    Column("close", BigInteger, nullable=False),
    Column("pre_close", BigInteger, nullable=False),
    Column("vol", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("adj_factor", Numeric(20, 6), nullable=False),
    # "What is the newest session in the store" is asked on every quote; the primary key leads with ts_code.
    Index("ix_daily_bars_trade_date", "trade_date"),
)

# Tushare's adj_factor feed as delivered: it has a factor for every listed day, suspended days included, which
# daily_bars (one row per traded day) cannot hold. qfq anchors on it, so a stock suspended on the anchor date
# still gets the factor of that date.
adj_factors = Table(
    "adj_factors",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("adj_factor", Numeric(20, 6), nullable=False),
)

daily_basic = Table(
    "daily_basic",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    *(Column(name, Double, nullable=True) for name in units.DAILY_BASIC_RATIOS),
    *(Column(name, BigInteger, nullable=True) for name in (*units.DAILY_BASIC_SHARES, *units.DAILY_BASIC_VALUES)),
)

stk_limits = Table(
    "stk_limits",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("up_limit", BigInteger, nullable=False),
    Column("down_limit", BigInteger, nullable=False),
    # The exchange's reference price of the day (fen): the last close, ex-rights adjusted on an ex-date. NULL for
    # rows stored before migration 0005, or a source without it.
    Column("pre_close", BigInteger, nullable=True),
    # The pre-open load and the quote bands read one day of the whole market (services/data/quotes.py).
    Index("ix_stk_limits_trade_date", "trade_date"),
)

suspensions = Table(
    "suspensions",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("suspend_type", String(1), primary_key=True),  # S suspended, R resumed (Tushare suspend_d)
    Column("suspend_timing", String(32), nullable=True),
    Index("ix_suspensions_trade_date", "trade_date"),
)

st_periods = Table(
    "st_periods",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("start_date", Date, primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("end_date", Date, nullable=True),  # None: still under that name
    Column("change_reason", String(64), nullable=True),
)

index_bars = Table(
    "index_bars",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("open", Double, nullable=True),
    Column("high", Double, nullable=True),
    Column("low", Double, nullable=True),
    Column("close", Double, nullable=True),
    Column("pre_close", Double, nullable=True),
    Column("vol", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
)

index_weights = Table(
    "index_weights",
    metadata,
    Column("index_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("con_code", String(12), primary_key=True),
    Column("weight", Double, nullable=False),
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),  # e.g. backfill, update, import
    Column("start_date", Date, nullable=True),
    Column("end_date", Date, nullable=True),
    Column("status", String(16), nullable=False),  # running, succeeded, failed
    Column("rows", BigInteger, nullable=False),
    Column("progress", Double, nullable=False),  # 0..1
    Column("detail", Text, nullable=True),  # JSON: what the run was asked, per-table counts, rows/s...
    Column("error", Text, nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Index("ix_ingest_runs_started_at", "started_at"),
)

quality_reports = Table(
    "quality_reports",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("ingest_run_id", String(36), nullable=True),
    Column("start_date", Date, nullable=True),
    Column("end_date", Date, nullable=True),
    Column("rules", Text, nullable=False),  # JSON list of the rule names run
    Column("findings", Integer, nullable=False),  # findings stored as examples (capped per rule)
    # The true totals (migration 0004; NULL in reports stored before it): all findings, per rule, the examples
    # kept per rule, the cap, and the rules that could not run.
    Column("total", BigInteger, nullable=True),
    Column("counts", Text, nullable=True),  # JSON: rule -> findings found
    Column("kept", Text, nullable=True),  # JSON: rule -> findings stored
    Column("max_findings_per_rule", Integer, nullable=True),
    Column("rules_skipped", Text, nullable=True),  # JSON: rule -> reason
    Index("ix_quality_reports_created_at", "created_at"),
)

quality_findings = Table(
    "quality_findings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("ts_code", String(12), nullable=True),
    Column("trade_date", Date, nullable=True),
    Column("rule", String(48), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_quality_findings_run_id", "run_id"),
)

# One row per kind of data; `market` bumps on every write of market data. Cached snapshots are keyed by it.
data_versions = Table(
    "data_versions",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
MARKET_VERSION = "market"
# Another row of data_versions: `version` holds, as YYYYMMDD, the newest trading day the Tushare pipeline has written
# in full (every table of the day, bars last) with every earlier day of its run. `update` starts after it, not
# after the newest bar: bulk writes commit batch by batch, so a day can be partly stored while a later one is whole,
# and an imported file can hold bars of days the rest of the market lacks.
COMPLETE_THROUGH = "complete_thru"
