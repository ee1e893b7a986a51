"""The data service's store (database `lh_data`): its tables (`tables.py`, units in docs/data.md) and the queries on
them, one module per aggregate; `DataStore` is all of them on one database."""

from __future__ import annotations

from pathlib import Path

from services.data.store.bars import BAR_COLUMN_NAMES, BarRecord, BarStore, LoadCounts
from services.data.store.base import BATCH_ROWS, upsert_statement
from services.data.store.bulk import BULK_BATCH_ROWS, BULK_CONNECTIONS, BULK_STATEMENT_BYTES, driver_rows, key_order
from services.data.store.ingest_runs import (
    FAILED,
    INTERRUPTED,
    LIMITS_RUN,
    RUNNING,
    SUCCEEDED,
    IngestRun,
    IngestRunStore,
)
from services.data.store.quality_reports import QualityFinding, QualityReportStore, StoredQualityReport
from services.data.store.reference import DAILY_BASIC_FIELDS, ReferenceStore, SecurityRecord
from services.data.store.tables import (
    CALENDAR_EXCHANGE,
    COMPLETE_THROUGH,
    MARKET_VERSION,
    adj_factors,
    daily_bars,
    daily_basic,
    data_versions,
    index_bars,
    index_weights,
    ingest_runs,
    metadata,
    quality_findings,
    quality_reports,
    securities,
    st_periods,
    stk_limits,
    suspensions,
    trade_calendar,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DataStore(BarStore, ReferenceStore, IngestRunStore, QualityReportStore):
    """The data service's store: bars, reference data, the ingestion log, quality reports and the data version."""


__all__ = [
    "BAR_COLUMN_NAMES",
    "BATCH_ROWS",
    "BULK_BATCH_ROWS",
    "BULK_CONNECTIONS",
    "BULK_STATEMENT_BYTES",
    "CALENDAR_EXCHANGE",
    "COMPLETE_THROUGH",
    "DAILY_BASIC_FIELDS",
    "FAILED",
    "INTERRUPTED",
    "LIMITS_RUN",
    "MARKET_VERSION",
    "MIGRATIONS_DIR",
    "RUNNING",
    "SUCCEEDED",
    "BarRecord",
    "DataStore",
    "IngestRun",
    "LoadCounts",
    "QualityFinding",
    "SecurityRecord",
    "StoredQualityReport",
    "adj_factors",
    "daily_bars",
    "daily_basic",
    "data_versions",
    "driver_rows",
    "index_bars",
    "index_weights",
    "ingest_runs",
    "key_order",
    "metadata",
    "quality_findings",
    "quality_reports",
    "securities",
    "st_periods",
    "stk_limits",
    "suspensions",
    "trade_calendar",
    "upsert_statement",
]
