"""The backtest service's tables. `metadata` holds the backtests' (a backtest, the strategies of its sleeves, its
equity curve, its result artifacts) and the outbox: the migrations' env.py compares against it.
`optimisation_metadata` holds the optimiser's (an optimisation and its points), created by migration 0003."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import JSON

from shared.platform.clock import UtcDateTime
from shared.platform.columns import CnyFen
from shared.platform.db import new_metadata
from shared.platform.outbox import outbox_table

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"


metadata = new_metadata()

backtests = Table(
    "backtests",
    metadata,
    Column("backtest_id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),  # the principal's subject: a username or svc:<service>
    Column("strategy", String(64), nullable=False),  # "portfolio" for a run of kind portfolio (what it shows)
    Column("params", JSON, nullable=False),  # a portfolio's: {"sleeves": [{label, strategy, params, weight}, ...]}
    Column("kind", String(16), nullable=False, server_default=text("'single'")),  # BacktestKind
    Column("ts_codes", JSON, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("initial_cash_fen", CnyFen, key="initial_cash", nullable=False),  # 0007: fen (was DECIMAL(20,2))
    Column("status", String(16), nullable=False),
    Column("summary", JSON(none_as_null=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),  # times a worker picked the job up
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    # 0002: a label for search, the universe as asked, the cost model and benchmark, and the cancel flag
    Column("name", String(128), nullable=True),
    Column("universe", JSON(none_as_null=True), nullable=True),
    Column("config", JSON(none_as_null=True), nullable=True),
    Column("benchmark", String(16), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("0")),
    # 0004: renewed by the worker running the backtest; a running row whose heartbeat stops has lost its worker
    Column("heartbeat_at", UtcDateTime, nullable=True),
    Index("ix_backtests_owner_created", "owner", "created_at"),
    Index("ix_backtests_created", "created_at"),
    CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"),
)

backtest_equity = Table(
    "backtest_equity",
    metadata,
    Column(
        "backtest_id",
        String(32),
        ForeignKey("backtests.backtest_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("trade_date", Date, primary_key=True),
    Column("equity_fen", CnyFen, key="equity", nullable=False),  # 0007: fen (was DECIMAL(20,2))
)

backtest_artifacts = Table(
    "backtest_artifacts",
    metadata,
    Column(
        "backtest_id",
        String(32),
        ForeignKey("backtests.backtest_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(32), primary_key=True),  # daily | trades | unfilled
    Column("chunk", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False),
)

# 0005: the strategies of a run with several (its sleeves'), one row each, so that listing by strategy and `q` find
# such a run by the strategies in it (its own `strategy` column says "portfolio") with an index instead of reading
# every row's params. A single-strategy run has no rows here: its `strategy` column says it.
backtest_strategies = Table(
    "backtest_strategies",
    metadata,
    Column(
        "backtest_id",
        String(32),
        ForeignKey("backtests.backtest_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("strategy", String(64), primary_key=True),
    Index("ix_backtest_strategies_strategy", "strategy"),
)

outbox = outbox_table(metadata)


optimisation_metadata = new_metadata()

optimisations = Table(
    "optimisations",
    optimisation_metadata,
    Column("optimisation_id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("strategy", String(64), nullable=False),
    Column("method", String(16), nullable=False),
    Column("space", JSON, nullable=False),  # the user's spec, per parameter
    Column("fixed", JSON, nullable=False),  # parameters set for every point
    Column("objective", JSON, nullable=False),  # {metric, direction}
    Column("constraints", JSON, nullable=False),  # ["max_drawdown <= 0.3", ...]
    Column("settings", JSON, nullable=False),  # GA settings / walk-forward windows / batch size
    Column("ts_codes", JSON, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("config", JSON, nullable=False),  # BacktestConfig fields (initial cash, costs, rules)
    Column("status", String(16), nullable=False),
    Column("generation", Integer, nullable=False, server_default="0"),  # GA: the generation being evaluated
    Column("populations", JSON, nullable=False),  # GA: per generation, the keys of its population
    Column("total_points", Integer, nullable=False, server_default="0"),
    Column("done_points", Integer, nullable=False, server_default="0"),
    Column("skipped_points", Integer, nullable=False, server_default="0"),  # refused by the strategy's validators
    Column("best", JSON(none_as_null=True), nullable=True),
    Column("result", JSON(none_as_null=True), nullable=True),  # walk-forward report
    Column("error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Index("ix_optimisations_owner_created", "owner", "created_at"),
    CheckConstraint(
        "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
        name="status",
    ),
    CheckConstraint("method IN ('grid', 'ga', 'walkforward')", name="method"),
)

optimisation_points = Table(
    "optimisation_points",
    optimisation_metadata,
    Column(
        "optimisation_id",
        String(32),
        ForeignKey("optimisations.optimisation_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("point_hash", String(40), primary_key=True),  # sha1 of the point key: a bounded primary key
    Column("point_key", Text, nullable=False),
    Column("params", JSON, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("metrics", JSON(none_as_null=True), nullable=True),
    Column("objective", Double(), nullable=True),
    Column("feasible", Boolean, nullable=True),
    Column("violations", JSON(none_as_null=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_optimisation_points_status", "optimisation_id", "status"),
    CheckConstraint("status IN ('pending', 'done', 'failed')", name="status"),
)
