"""The backtest service's store, one module per aggregate: `tables` (the schema), `records` (what the queries hand
back), `backtests` (the store: migrations, creating a backtest), `jobs` (a backtest's life as a job), `results` (its
equity curve and result frames), `search`, and `optimisations` (an optimisation and its points)."""

from services.backtest.store.backtests import BacktestStore
from services.backtest.store.optimisations import OptimisationStore, first_populations
from services.backtest.store.records import (
    ERROR_MAX_CHARS,
    BacktestKind,
    BacktestRecord,
    BacktestStatus,
    OptimisationRecord,
    OptimisationStatus,
    PointRow,
    PointStatus,
    StoredEquity,
    StoredPoint,
    first_row,
    point_hash,
    truncate_error,
)
from services.backtest.store.results import ARTIFACT_CHUNK_BYTES, ARTIFACT_NAMES, frame_from_parquet, frame_to_parquet
from services.backtest.store.tables import (
    MIGRATIONS_DIR,
    backtest_artifacts,
    backtest_equity,
    backtest_strategies,
    backtests,
    metadata,
    optimisation_metadata,
    optimisation_points,
    optimisations,
    outbox,
)

__all__ = [
    "ARTIFACT_CHUNK_BYTES",
    "ARTIFACT_NAMES",
    "ERROR_MAX_CHARS",
    "MIGRATIONS_DIR",
    "BacktestKind",
    "BacktestRecord",
    "BacktestStatus",
    "BacktestStore",
    "OptimisationRecord",
    "OptimisationStatus",
    "OptimisationStore",
    "PointRow",
    "PointStatus",
    "StoredEquity",
    "StoredPoint",
    "backtest_artifacts",
    "backtest_equity",
    "backtest_strategies",
    "backtests",
    "first_populations",
    "first_row",
    "frame_from_parquet",
    "frame_to_parquet",
    "metadata",
    "optimisation_metadata",
    "optimisation_points",
    "optimisations",
    "outbox",
    "point_hash",
    "truncate_error",
]
