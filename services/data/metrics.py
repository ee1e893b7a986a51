"""The data service's Prometheus metrics: what the ingestion did and how far behind the market the store is (names
used by the Grafana dashboard and the alert rules in prometheus/alerts.yml)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.data.ingest import Ingestor, IngestResult, Progress
from services.data.quality import Severity
from services.data.scheduler import SHANGHAI, latest_due_day, parse_run_time
from shared.platform.periodic import PeriodicTask

log = logging.getLogger(__name__)

REFRESH_EVERY_S = 300.0  # the stored-through / update-lag metrics, between runs
KINDS = ("backfill", "update", "import", "limits")
STATUSES = ("succeeded", "failed", "interrupted")


def day_start_timestamp(day: date) -> float:
    """Unix time of 00:00 Asia/Shanghai on `day`: how a trading day is given to Prometheus."""
    return datetime.combine(day, time(0), tzinfo=SHANGHAI).timestamp()


class DataMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "lh_data_ingest_runs_total", "Ingest runs finished, by kind and status", ["kind", "status"],
            registry=registry,
        )  # fmt: skip
        self.rows = Counter(
            "lh_data_ingest_rows_total", "Rows written by ingest runs, by table", ["table"], registry=registry
        )
        self.last_finished = Gauge(
            "lh_data_ingest_last_finished_timestamp_seconds", "When the last ingest run of each kind and status ended",
            ["kind", "status"], registry=registry,
        )  # fmt: skip
        self.complete_through = Gauge(
            "lh_data_complete_through_timestamp_seconds",
            "00:00 Asia/Shanghai of the newest trading day stored in full by a backfill or update (0: none yet)",
            registry=registry,
        )
        self.update_lag = Gauge(
            "lh_data_update_lag_days",
            "Trading days whose data is out (after the update time) but not stored in full; set by the scheduler",
            registry=registry,
        )
        self.quality_findings = Gauge(
            "lh_data_quality_findings", "Findings of the newest quality report of an ingest run, by severity",
            ["severity"], registry=registry,
        )  # fmt: skip
        self.skipped_endpoints = Counter(
            "lh_data_ingest_skipped_endpoints_total",
            "Ingest runs that did without an optional endpoint the provider token may not use, by endpoint",
            ["api"], registry=registry,
        )  # fmt: skip
        self.preopen_limits_failed = Gauge(
            "lh_data_preopen_limits_failed",
            "1 when the pre-open load of a trading day's exchange limits gave up at the open (that day's quotes of "
            "ex-dates are refused); 0 again once a limits load succeeds",
            registry=registry,
        )
        for kind in KINDS:
            for status in STATUSES:
                self.runs.labels(kind=kind, status=status)
        for severity in Severity:
            self.quality_findings.labels(severity=severity.value)

    def run_finished(
        self,
        *,
        kind: str,
        status: str,
        tables: Mapping[str, int],
        quality: Mapping[str, Any] | None,
        finished_at: datetime,
        skipped_endpoints: Collection[str] = (),
    ) -> None:
        self.runs.labels(kind=kind, status=status).inc()
        if kind == "limits" and status == "succeeded":
            self.preopen_limits_failed.set(0)
        for api in skipped_endpoints:
            self.skipped_endpoints.labels(api=api).inc()
        self.last_finished.labels(kind=kind, status=status).set(finished_at.timestamp())
        for table, rows in tables.items():
            if rows:
                self.rows.labels(table=table).inc(rows)
        by_severity = (quality or {}).get("by_severity")
        if isinstance(by_severity, Mapping):
            for severity in Severity:
                self.quality_findings.labels(severity=severity.value).set(int(by_severity.get(severity.value, 0)))

    def stored_through(self, day: date | None, lag_days: int | None = None) -> None:
        self.complete_through.set(0 if day is None else day_start_timestamp(day))
        if lag_days is not None:
            self.update_lag.set(lag_days)


def update_lag_days(last_complete: date | None, due: date | None, is_trading_day: Callable[[date], bool]) -> int | None:
    """Trading days after `last_complete` up to `due` (the newest day whose data is out): how far the store is
    behind the market. None when nothing was ever stored in full (a backfill comes first; there is no lag to tell)."""
    if last_complete is None:
        return None
    if due is None or due <= last_complete:
        return 0
    return sum(1 for n in range(1, (due - last_complete).days + 1) if is_trading_day(last_complete + timedelta(days=n)))


class StoredThrough:
    """Keeps the metrics of how far the store is: the newest trading day stored in full and, when the daily update
    is scheduled, how many published trading days are missing (`lh_data_update_lag_days`). Refreshed at start-up,
    after every ingest run and after every scheduled update."""

    def __init__(
        self, metrics: DataMetrics, ingestor: Ingestor, trading_days: Callable[[date], bool], at: str | None
    ) -> None:
        self._metrics = metrics
        self._ingestor = ingestor
        self._trading_days = trading_days
        self._at = parse_run_time(at) if at else None  # None: no schedule, so no "due" day to lag behind
        self._pending: set[asyncio.Task[None]] = set()

    async def refresh(self, now: datetime | None = None) -> None:
        try:
            complete = await self._ingestor.last_update_day()
            lag = None
            if self._at is not None:
                due = latest_due_day(now or datetime.now(SHANGHAI), self._at, self._trading_days)
                # The scheduler's calendar: the stored one where it has the day, else the built-in one (the stored
                # one alone would read 0 in January until the update that may be failing stores the new year).
                lag = update_lag_days(complete, due, self._trading_days)
            self._metrics.stored_through(complete, lag)
        except Exception:
            log.warning("could not refresh the stored-through metrics", exc_info=True)

    def watcher(self, every_s: float = REFRESH_EVERY_S) -> PeriodicTask:
        """Refresh on a clock too: the lag must grow while no update runs at all (scheduler stuck, update hung).
        The caller starts and stops the returned loop."""
        return PeriodicTask("data-stored-through", every_s, self.refresh, run_at_start=False)

    def run_finished(self, progress: Progress, status: str, result: IngestResult | None) -> None:
        quality = result.quality if result else None
        self._metrics.run_finished(kind=progress.kind, status=status, tables=progress.tables, quality=quality,
                                   finished_at=datetime.now(UTC), skipped_endpoints=list(progress.skipped))  # fmt: skip
        task = asyncio.get_running_loop().create_task(self.refresh())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
