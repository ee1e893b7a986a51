"""The data service's metrics: what a finished ingest run adds, and how many published trading days the store lags."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
from prometheus_client import CollectorRegistry

from services.data.app import TradingDays
from services.data.ingest import Ingestor
from services.data.metrics import DataMetrics, StoredThrough, day_start_timestamp, update_lag_days
from services.data.providers import DemoProvider
from services.data.scheduler import SHANGHAI
from services.data.store import MIGRATIONS_DIR, DataStore
from shared.core.market.calendar import is_trading_day, sse_trading_days
from shared.platform.db import Database
from shared.platform.settings import Settings


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_finished_run_counts_its_status_rows_and_findings() -> None:
    registry = CollectorRegistry()
    metrics = DataMetrics(registry)
    assert value(registry, "lh_data_ingest_runs_total", kind="update", status="failed") == 0  # exported before any run
    finished = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)
    metrics.run_finished(kind="backfill", status="succeeded", tables={"daily_bars": 5000, "adj_factors": 5000,
                         "suspensions": 0}, quality={"by_severity": {"error": 2, "warning": 7}}, finished_at=finished)  # fmt: skip
    metrics.run_finished(kind="update", status="failed", tables={"daily_bars": 300}, quality=None,
                         finished_at=finished)  # fmt: skip
    assert value(registry, "lh_data_ingest_runs_total", kind="backfill", status="succeeded") == 1
    assert value(registry, "lh_data_ingest_runs_total", kind="update", status="failed") == 1
    assert value(registry, "lh_data_ingest_rows_total", table="daily_bars") == 5300
    assert value(registry, "lh_data_ingest_rows_total", table="adj_factors") == 5000
    assert value(registry, "lh_data_ingest_rows_total", table="suspensions") is None  # nothing written: no series
    # A run without a quality report leaves the last report's counts.
    assert value(registry, "lh_data_quality_findings", severity="error") == 2
    assert value(registry, "lh_data_quality_findings", severity="warning") == 7
    assert value(registry, "lh_data_ingest_last_finished_timestamp_seconds", kind="update", status="failed") == (
        1704189600.0  # 2024-01-02T10:00:00Z
    )


def test_a_trading_day_is_given_as_shanghai_midnight() -> None:
    # 2024-01-02 00:00 +08:00 = 2024-01-01 16:00 UTC = 1704067200 + 16 * 3600
    assert day_start_timestamp(date(2024, 1, 2)) == 1704124800.0
    metrics = DataMetrics(registry := CollectorRegistry())
    metrics.stored_through(date(2024, 1, 2), lag_days=3)
    assert value(registry, "lh_data_complete_through_timestamp_seconds") == 1704124800.0
    assert value(registry, "lh_data_update_lag_days") == 3
    metrics.stored_through(None)
    assert value(registry, "lh_data_complete_through_timestamp_seconds") == 0
    assert value(registry, "lh_data_update_lag_days") == 3  # not given: left as the scheduler last set it


def test_the_lag_counts_trading_days_not_calendar_days() -> None:
    # Stored through Friday 2024-09-27; due Tuesday 2024-10-08, after the National Day closure (Oct 1-7) and a
    # weekend: the sessions missing are Mon 2024-09-30 and Tue 2024-10-08.
    assert update_lag_days(date(2024, 9, 27), date(2024, 10, 8), is_trading_day) == 2
    assert update_lag_days(date(2024, 9, 27), date(2024, 9, 27), is_trading_day) == 0
    assert update_lag_days(date(2024, 10, 8), date(2024, 9, 27), is_trading_day) == 0  # ahead (a backfill)
    assert update_lag_days(None, date(2024, 10, 8), is_trading_day) is None  # never stored: no lag to tell


async def test_the_lag_counts_past_the_stored_calendar_in_january(tmp_path: Path) -> None:
    # The stored calendar ends on 31 December (the new year's comes with the update that may be the one failing).
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/lag.db")
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        store = DataStore(db)
        december = [d for d in sse_trading_days(date(2024, 12, 2), date(2024, 12, 31))]
        await store.upsert_trade_calendar(pd.DataFrame({"exchange": "SSE", "cal_date": [d.strftime("%Y%m%d") for d in
                                                        december], "is_open": 1}))  # fmt: skip
        await store.mark_complete_through(date(2024, 12, 31))
        days = TradingDays(store)
        await days.refresh()
        registry = CollectorRegistry()
        ingestor = Ingestor(store, DemoProvider(Settings()))
        through = StoredThrough(DataMetrics(registry), ingestor, days, "17:30")
        # Friday 10 January 2025, 18:00: the 2nd, 3rd, 6th-10th are out and missing (the 1st is New Year's Day).
        await through.refresh(now=datetime(2025, 1, 10, 18, 0, tzinfo=SHANGHAI))
        assert registry.get_sample_value("lh_data_update_lag_days") == 7
    finally:
        await db.dispose()
