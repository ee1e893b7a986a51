"""The ingestion pipeline of the data service: backfill, the daily update and file imports, each logged in
`ingest_runs`, checked for quality and announced as `bars.updated` (how a run writes: docs/data-ingest.md)."""

from __future__ import annotations

import asyncio
import logging
import time as _time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.data import units
from services.data.events import bars_updated, outbox
from services.data.providers import (
    MarketDataProvider,
    ProviderError,
    read_daily_files,
    ymd,
)
from services.data.providers.errors import DataNotReady, PermissionDenied
from services.data.providers.port import data_ends
from services.data.quality import RULES, QualityInputError, QualityReport, QualityThresholds, run_quality_checks
from services.data.scheduler import SHANGHAI
from services.data.store import (
    FAILED,
    INTERRUPTED,
    LIMITS_RUN,
    SUCCEEDED,
    DataStore,
    IngestRun,
    QualityFinding,
    daily_bars,
    stk_limits,
    suspensions,
)
from shared.platform.clock import utcnow
from shared.platform.db import DbSession
from shared.platform.events.envelope import Envelope
from shared.platform.outbox import add_to_outbox
from shared.platform.periodic import PeriodicTask

log = logging.getLogger(__name__)

DEFAULT_INDICES = ("000300.SH", "000905.SH")
# Whole-market endpoints asked once per open day; all but suspend_d must have rows on an open day.
DAY_APIS = ("daily", "adj_factor", "stk_limit", "suspend_d", "daily_basic")
EXPECT_ROWS = frozenset({"daily", "adj_factor", "stk_limit", "daily_basic"})
# Endpoints a run can do without. A token not entitled to one (PermissionDenied: not enough Tushare points) skips it
# for the rest of the run with a warning (IngestOptions.skip_denied_optional), and the run, its `bars.updated` and
# the metrics name it, instead of failing with nothing stored. Required: the bars (daily), their factors (adj_factor:
# without them every adjusted price would silently be wrong), the trade calendar and the stock list.
OPTIONAL_APIS = frozenset({"stk_limit", "suspend_d", "daily_basic", "namechange", "index_daily", "index_weight"})
QUALITY_SYMBOLS_PER_CHUNK = 500  # the checks run per group of symbols, so a full-market range stays in memory
ProviderSource = MarketDataProvider | Callable[[], MarketDataProvider]


class IngestError(Exception):
    """A run that cannot go on, for a reason to show the user (stored as the run's error)."""


class NotATradingDay(IngestError):
    """The day asked for is not an open day of the stored trade calendar (or outside it)."""


class IngestBusy(IngestError):
    """Another ingest run is active (in this process, or with a fresh heartbeat in another one)."""


@dataclass(frozen=True)
class IngestOptions:
    indices: tuple[str, ...] = DEFAULT_INDICES
    batch_days: int = 40  # open days written per upsert batch
    prefetch_days: int = 10  # days fetched ahead of the one being written (bounds memory)
    progress_every_s: float = 2.0  # heartbeat/progress writes to the run row
    # A "running" run whose row was not touched for this long belongs to a dead process.
    stale_after_s: float = 30.0
    # The time (Asia/Shanghai) after which a trading day's data counts as published (Tushare: 15:00-17:00).
    ready_at: time = time(17, 0)
    # The checks after every run and on demand: among others how many findings per rule are kept as examples
    # (the stored report always has the true totals).
    quality_thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    # An optional endpoint (OPTIONAL_APIS) the token may not use is skipped for the run (True) or fails it (False).
    skip_denied_optional: bool = True

    def __post_init__(self) -> None:
        if self.batch_days < 1 or self.prefetch_days < 1:
            raise ValueError("batch_days and prefetch_days must be at least 1")
        if self.progress_every_s <= 0 or self.stale_after_s <= self.progress_every_s:
            raise ValueError("progress_every_s must be positive and below stale_after_s")


@dataclass
class Progress:
    """What a run has done so far; `percent` counts open days (files for an import)."""

    run_id: str
    kind: str
    steps_done: int = 0
    steps_total: int = 0
    rows: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    current: str | None = None  # the day (or file) last completed
    started: float = field(default_factory=_time.monotonic)
    skipped: dict[str, str] = field(default_factory=dict)  # optional endpoint -> why it was skipped (this run)

    @property
    def fraction(self) -> float:
        return 1.0 if self.steps_total == 0 else min(1.0, self.steps_done / self.steps_total)

    @property
    def rows_per_s(self) -> float:
        elapsed = _time.monotonic() - self.started
        return self.rows / elapsed if elapsed > 0 else 0.0

    def add(self, table: str, rows: int) -> None:
        self.rows += rows
        self.tables[table] = self.tables.get(table, 0) + rows

    def detail(self) -> dict[str, Any]:
        return {
            "percent": round(100 * self.fraction, 2),
            "steps_done": self.steps_done,
            "steps_total": self.steps_total,
            "rows_per_s": round(self.rows_per_s, 1),
            "current": self.current,
            "tables": dict(self.tables),
            "skipped_endpoints": dict(self.skipped),
        }


@dataclass(frozen=True)
class IngestResult:
    run_id: str
    kind: str
    status: str
    rows: int
    start: date | None  # the range of trading days whose bars were written
    end: date | None
    error: str | None = None
    quality_report_id: str | None = None
    quality: dict[str, Any] | None = None  # counts, by_severity, skipped rules (the findings are stored)
    bar_rows: int = 0
    symbols: int = 0
    skipped_endpoints: dict[str, str] = field(default_factory=dict)  # optional endpoint -> why it was skipped


@dataclass
class _Written:
    """Bars written by a run: what `bars.updated` and the quality checks cover."""

    first: date | None = None
    last: date | None = None
    rows: int = 0
    symbols: set[str] = field(default_factory=set)

    def add(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        days = sorted(frame["trade_date"].astype(str).unique())
        first, last = _day(days[0]), _day(days[-1])
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)
        self.rows += len(frame)
        self.symbols.update(frame["ts_code"].astype(str).unique().tolist())


def _day(text: str) -> date:
    text = ymd(text)
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


ProgressCallback = Callable[[Progress], None]
# (progress, status, result): result is None when the run was interrupted (cancelled) or crashed.
FinishCallback = Callable[[Progress, str, IngestResult | None], None]


class Ingestor:
    """Runs ingests against one store and one provider. One run at a time (per process; across processes through
    the run log's heartbeat). `notify` is called after a commit that added to the outbox (wakes the relay)."""

    def __init__(
        self,
        store: DataStore,
        provider: ProviderSource,
        *,
        options: IngestOptions | None = None,
        notify: Callable[[], None] | None = None,
        on_finish: FinishCallback | None = None,
    ) -> None:
        self.store = store
        self._provider_source = provider
        self._provider: MarketDataProvider | None = None
        self.options = options or IngestOptions()
        self.notify = notify
        self.on_finish = on_finish  # told of every run's end (metrics): its progress, status and quality summary
        self._task: asyncio.Task[IngestResult] | None = None
        self._lock = asyncio.Lock()

    @property
    def provider(self) -> MarketDataProvider:
        # Built on first use: a missing token fails the ingest with its reason instead of the whole service.
        if self._provider is None:
            source = self._provider_source
            self._provider = source if isinstance(source, MarketDataProvider) else source()
        return self._provider

    # -- the run log ----------------------------------------------------------------------------------------------

    async def mark_interrupted(self, *, stale_after_s: float | None = None) -> int:
        """Mark "running" runs without a recent heartbeat as interrupted (their process died); returns how many."""
        cutoff = utcnow() - timedelta(seconds=self.options.stale_after_s if stale_after_s is None else stale_after_s)
        mine = self._task.get_name() if self._task is not None and not self._task.done() else None
        return await self.store.interrupt_stale_runs(
            cutoff, "interrupted: the process running it stopped before it finished", except_run_id=mine
        )

    async def active_run(self) -> IngestRun | None:
        if self._task is not None and not self._task.done():
            return await self.store.get_ingest_run(self._task.get_name())
        await self.mark_interrupted()
        run_id = await self.store.running_run_id()
        return None if run_id is None else await self.store.get_ingest_run(run_id)

    async def last_update_day(self) -> date | None:
        """The newest trading day stored in full by a backfill or update (for `update` and the scheduler's run log);
        a store written before that was recorded falls back to its newest day with bars."""
        complete = await self.store.complete_through()
        return complete if complete is not None else await self.store.latest_session()

    # -- starting runs ----------------------------------------------------------------------------------------------

    async def start_backfill(self, start: date, end: date) -> str:
        """Start a backfill in the background; returns its run id (raises IngestBusy if a run is active)."""
        _check_range(start, end)
        return await self._start("backfill", start, end, lambda run_id: self.backfill(start, end, run_id=run_id))

    async def start_update(self, *, as_of: datetime | None = None) -> str:
        return await self._start("update", None, None, lambda run_id: self.update(as_of=as_of, run_id=run_id))

    async def start_limits(self, day: date) -> str:
        """Start loading `day`'s exchange limits (`load_limits`) in the background; returns its run id (raises
        IngestBusy if a run is active, IngestError if `day` is not an open day of the stored calendar)."""
        await self._check_open_day(day)
        return await self._start(LIMITS_RUN, day, day, lambda run_id: self.load_limits(day, run_id=run_id))

    async def _start(
        self, kind: str, start: date | None, end: date | None, body: Callable[[str], Awaitable[IngestResult]]
    ) -> str:
        async with self._lock:
            active = await self.active_run()
            if active is not None:
                raise IngestBusy(f"ingest run {active.run_id} ({active.kind}) is still running")
            run_id = await self.store.start_ingest_run(kind, start, end, {"requested": _requested(start, end)})
            self._task = asyncio.create_task(self._background(body, run_id), name=run_id)
        return run_id

    async def _background(self, body: Callable[[str], Awaitable[IngestResult]], run_id: str) -> IngestResult:
        try:
            return await body(run_id)
        except Exception:
            log.exception("ingest run %s crashed", run_id)
            raise

    async def wait(self) -> IngestResult | None:
        """Wait for the background run, if any (tests, shutdown)."""
        task = self._task
        return None if task is None else await task

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """At shutdown: cancel a background run (it is marked interrupted; re-running completes it)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=grace_s)

    # -- the runs -------------------------------------------------------------------------------------------------

    async def backfill(
        self, start: date, end: date, *, run_id: str | None = None, on_progress: ProgressCallback | None = None
    ) -> IngestResult:
        """Calendar, securities, ST history, then every open day in [start, end], then the configured indices."""
        _check_range(start, end)

        async def body(progress: Progress, written: _Written) -> None:
            # The calendar to the end of the year too: the scheduler and `update` need the coming sessions.
            calendar = await self._store_calendar(start, max(end, date(end.year, 12, 31)), progress)
            days = [d for d in calendar if start <= d <= end]
            progress.steps_total = len(days)
            await self._store_reference(progress)
            await self._ingest_days(days, progress, written, on_progress)
            if days:
                await self._store_indices(days[0], days[-1], progress)

        return await self._run("backfill", start, end, run_id, body, on_progress)

    async def update(
        self,
        *,
        as_of: datetime | None = None,
        run_id: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> IngestResult:
        """Fetch the open days after the newest one stored in full (`last_update_day`), up to the latest day whose
        data is out at `as_of` (default now): today once `ready_at` (Shanghai) has passed, else the open day before.
        Days cut short by a failed or interrupted run are fetched again; bars imported from files for later days do
        not count as the market's update."""
        now = (as_of or datetime.now(SHANGHAI)).astimezone(SHANGHAI)

        async def body(progress: Progress, written: _Written) -> None:
            last = await self.last_update_day()
            if last is None:
                raise IngestError("the store has no bars yet: run a backfill first (e.g. backfill --start --end)")
            today = now.date()
            if today <= last:
                return
            calendar = await self._store_calendar(last + timedelta(days=1), date(today.year, 12, 31), progress)
            days = [d for d in calendar if d <= today and (d < today or now.time() >= self.options.ready_at)]
            ends = data_ends(self.provider)  # a fixed data set (the demo market) has nothing after its end
            if ends is not None:
                days = [d for d in days if d <= ends]
            progress.steps_total = len(days)
            await self._record_plan(progress.run_id, days)
            if not days:
                return
            await self._store_reference(progress)
            await self._ingest_days(days, progress, written, on_progress)
            await self._store_indices(days[0], days[-1], progress)

        return await self._run("update", None, None, run_id, body, on_progress)

    async def load_limits(
        self, day: date, *, run_id: str | None = None, on_progress: ProgressCallback | None = None
    ) -> IngestResult:
        """Store trading day `day`'s limit prices and reference price (Tushare stk_limit, published around 08:40
        before that day's open) into stk_limits: the pre-open load the quote bands prefer (docs/data-ingest.md).
        Logged as an ingest run of kind "limits"; the same conversion and checks as the daily ingest (only the
        A-share stocks the store holds; bad provider data writes nothing). No rows yet (not published) fails the
        run with DataNotReady: the caller retries."""

        async def body(progress: Progress, written: _Written) -> None:
            await self._check_open_day(day)
            progress.steps_total = 1
            frame = await self.provider.stk_limit(day, expect_rows=True)
            if frame.empty:  # a provider that does not honour expect_rows: still never "no limits that day"
                raise DataNotReady(f"stk_limit returned no rows for open day {day}: not published yet", api="stk_limit")
            stocks = await self.store.security_codes()
            keep = _codes_in(frame["ts_code"], pa.array(sorted(stocks), pa.string()))
            frame = frame[keep].reset_index(drop=True) if not keep.all() else frame
            if frame.empty:
                raise IngestError(f"stk_limit of {day} has no row of a stock the store holds (run a backfill first)")
            # Converted (units.stk_limit_columns, so checked) as a whole before any row is written.
            progress.add("stk_limits", await self.store.upsert_stk_limits(frame))
            progress.steps_done, progress.current = 1, day.isoformat()

        return await self._run(LIMITS_RUN, day, day, run_id, body, on_progress)

    async def _check_open_day(self, day: date) -> None:
        span = await self.store.calendar_span()
        if span is None or not span[0] <= day <= span[1]:
            raise NotATradingDay(f"{day} is outside the stored trade calendar: a backfill or update stores it")
        if not await self.store.open_days(day, day):
            raise NotATradingDay(f"{day} is not a trading day (stored trade calendar)")

    async def import_files(
        self,
        paths: Sequence[str | Path],
        *,
        adj_factor: bool = False,
        run_id: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> IngestResult:
        """Import daily bars from CSV/Parquet files in Tushare's daily layout. Every file is read and validated
        before anything is stored: one bad file rejects the whole import (file, line and reason in the error).
        `adj_factor`: the files carry Tushare's adj_factor (required in each) and it is stored as the factor feed
        too. Without it, a file's adj_factor column (if any) is still used for its bars; bars without one take the
        stored factor of that day, else the symbol's newest earlier one, else 1."""
        files = [Path(p) for p in paths]
        if not files:
            raise IngestError("no files to import")

        async def body(progress: Progress, written: _Written) -> None:
            progress.steps_total = len(files) + 1

            def read(file: Path) -> None:
                progress.steps_done += 1
                progress.current = file.name

            # Every file is read and checked before any is stored; all the bad ones are named at once.
            frames = await asyncio.to_thread(read_daily_files, files, require_adj_factor=adj_factor, on_file=read)
            bars = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            duplicated = bars.duplicated(["ts_code", "trade_date"], keep=False)
            if duplicated.any():
                first = bars[duplicated].iloc[0]
                owners = [str(f) for f, fr in zip(files, frames, strict=True) if _has(fr, first)]
                raise IngestError(
                    f"({first['ts_code']}, {first['trade_date']}) is in more than one file: {', '.join(owners)}"
                )
            if bars.empty:
                return
            factors = bars.loc[:, ["ts_code", "trade_date", "adj_factor"]] if adj_factor else None
            if "adj_factor" not in bars.columns or bars["adj_factor"].isna().any():
                bars = await self._fill_adj_factors(bars)
            _validate(bars, factors, None, None, None)
            if factors is not None:
                progress.add("adj_factors", await self.store.upsert_adj_factors(factors))
            written.add(bars)  # before the write: one that fails part-way has committed some (see _write_days)
            # Counted per committed batch: the heartbeat shows the rows/s of a big import while it is written.
            await self.store.upsert_daily_bars(bars, on_rows=partial(progress.add, "daily_bars"))
            progress.steps_done += 1

        return await self._run(
            "import", None, None, run_id, body, on_progress, detail={"files": [str(f) for f in files]}
        )

    # -- the run frame: log, heartbeat, quality, outbox -------------------------------------------------------------

    async def _run(
        self,
        kind: str,
        start: date | None,
        end: date | None,
        run_id: str | None,
        body: Callable[[Progress, _Written], Awaitable[None]],
        on_progress: ProgressCallback | None,
        detail: dict[str, Any] | None = None,
    ) -> IngestResult:
        if run_id is None:
            async with self._lock:
                active = await self.active_run()
                if active is not None:
                    raise IngestBusy(f"ingest run {active.run_id} ({active.kind}) is still running")
                run_id = await self.store.start_ingest_run(kind, start, end, {"requested": _requested(start, end)})
        progress = Progress(run_id, kind)
        written = _Written()
        extra = {"requested": _requested(start, end), **(detail or {})}
        # The heartbeat lives until the run's final write, the quality checks included (minutes on a whole market):
        # a run that looks stale is marked interrupted by the next caller, which would then start a second one.
        heartbeat = self._heartbeat(progress, extra, on_progress)
        heartbeat.start()
        outcome: IngestResult | None = None
        ended = INTERRUPTED  # what the finish callback is told when no result comes back: cancelled, or below
        try:
            try:
                await body(progress, written)
            except (ProviderError, IngestError, units.ConversionError, QualityInputError) as exc:
                outcome = await self._fail(progress, written, extra, exc)
                return outcome
            except asyncio.CancelledError:
                await asyncio.shield(self._interrupt(progress, written, extra))
                raise
            except Exception as exc:
                log.exception("ingest run %s failed unexpectedly", run_id)
                outcome = await self._fail(progress, written, extra, exc)
                return outcome
            try:
                outcome = await self._succeed(progress, written, extra)
                return outcome
            except asyncio.CancelledError:
                await asyncio.shield(self._interrupt(progress, written, extra))
                raise
        except Exception:
            # The run's own final write failed (its database went away while finishing): the row stays "running"
            # until the stale check marks it interrupted, but it did not succeed.
            ended = FAILED
            raise
        finally:
            await heartbeat.stop()
            if self.on_finish is not None:
                try:
                    self.on_finish(progress, outcome.status if outcome else ended, outcome)
                except Exception:
                    log.warning("the finish callback of ingest run %s failed", run_id, exc_info=True)

    def _heartbeat(
        self, progress: Progress, extra: dict[str, Any], on_progress: ProgressCallback | None
    ) -> PeriodicTask:
        # Also while a provider call waits out a rate limit: the row's updated_at says the run is alive.
        async def beat() -> None:
            try:
                await self.store.update_ingest_progress(
                    progress.run_id,
                    progress=progress.fraction,
                    rows=progress.rows,
                    detail={**extra, **progress.detail()},
                )
            except Exception:
                log.warning("could not record the progress of ingest run %s", progress.run_id, exc_info=True)
            if on_progress is not None:
                on_progress(progress)

        return PeriodicTask(
            f"ingest-heartbeat:{progress.run_id}", self.options.progress_every_s, beat, run_at_start=False,
            stop_grace_s=5.0,
        )  # fmt: skip

    async def _fail(self, progress: Progress, written: _Written, extra: dict[str, Any], exc: Exception) -> IngestResult:
        reason = _reason(exc)
        log.warning("ingest run %s failed: %s", progress.run_id, reason)
        detail = {**extra, **progress.detail(), **_written_detail(written)}
        now = utcnow()
        await self._finish_unsuccessful(
            progress, written, status=FAILED, error=reason, detail=detail, updated_at=now, finished_at=now
        )
        return IngestResult(progress.run_id, progress.kind, FAILED, progress.rows, written.first, written.last,
                            error=reason, bar_rows=written.rows, symbols=len(written.symbols),
                            skipped_endpoints=dict(progress.skipped))  # fmt: skip

    async def _interrupt(self, progress: Progress, written: _Written, extra: dict[str, Any]) -> None:
        try:
            detail = {**extra, **progress.detail(), **_written_detail(written)}
            now = utcnow()
            await self._finish_unsuccessful(
                progress, written, status=INTERRUPTED, error="interrupted: the service stopped", detail=detail,
                updated_at=now, finished_at=now,
            )  # fmt: skip
        except Exception:
            log.warning("could not mark ingest run %s interrupted; the next start-up will", progress.run_id)

    async def _finish_unsuccessful(
        self, progress: Progress, written: _Written, *, detail: dict[str, Any], **values: Any
    ) -> None:
        """Record a failed or interrupted run and, if it wrote bars, their `bars.updated` (complete: false) in the
        same transaction: bars in that range changed (the last batch may be partly stored: writes go stock by stock)
        and consumers must learn it; the rest is written by running it again (which announces its own days)."""
        event = None
        if written.rows and written.first is not None and written.last is not None:
            event = bars_updated(start=written.first, end=written.last, symbols=len(written.symbols),
                                 rows=written.rows, complete=False,
                                 skipped_endpoints=sorted(progress.skipped))  # fmt: skip
        await self.store.close_run(
            progress.run_id, {"rows": progress.rows, "detail": detail, **values}, with_it=_to_outbox(event)
        )
        if event is not None and self.notify is not None:
            self.notify()

    async def _succeed(self, progress: Progress, written: _Written, extra: dict[str, Any]) -> IngestResult:
        quality: dict[str, Any] | None = None
        report_id: str | None = None
        ingested = progress.detail()  # rows/s of the ingest itself, before the checks
        checks_started = _time.monotonic()
        if written.first is not None and written.last is not None:
            progress.current = "quality checks"
            try:
                report_id, report = await self.quality(written.first, written.last, ingest_run_id=progress.run_id)
                quality = _quality_summary(report)
            except QualityInputError as exc:
                quality = {"skipped": str(exc)}
            except Exception as exc:
                # The data is stored whatever the checks make of it: the run still finishes (and announces the
                # bars); the failure is in its quality detail, and the checks can be run again on demand.
                log.exception("the quality checks of ingest run %s failed", progress.run_id)
                quality = {"error": _reason(exc)}
        detail = {**extra, **ingested, **_written_detail(written), "quality_report_id": report_id,
                  "quality": quality, "quality_s": round(_time.monotonic() - checks_started, 3)}  # fmt: skip
        event = None
        if written.rows and written.first is not None and written.last is not None:
            event = bars_updated(start=written.first, end=written.last, symbols=len(written.symbols),
                                 rows=written.rows, skipped_endpoints=sorted(progress.skipped))  # fmt: skip
        now = utcnow()
        await self.store.close_run(
            progress.run_id,
            {"status": SUCCEEDED, "rows": progress.rows, "progress": 1.0, "error": None, "detail": detail,
             "updated_at": now, "finished_at": now},
            with_it=_to_outbox(event),
        )  # fmt: skip
        if event is not None and self.notify is not None:
            self.notify()
        return IngestResult(progress.run_id, progress.kind, SUCCEEDED, progress.rows, written.first, written.last,
                            quality_report_id=report_id, quality=quality, bar_rows=written.rows,
                            symbols=len(written.symbols), skipped_endpoints=dict(progress.skipped))  # fmt: skip

    async def _record_plan(self, run_id: str, days: list[date]) -> None:
        start, end = (days[0], days[-1]) if days else (None, None)
        await self.store.record_run_range(run_id, start, end)

    # -- reference data and days ------------------------------------------------------------------------------------

    async def _store_calendar(self, start: date, end: date, progress: Progress) -> list[date]:
        """Store Tushare's trade_cal for [start, end]; the open days in it."""
        frame = await self.provider.trade_cal(start, end)
        if frame.empty:
            raise DataNotReady(f"trade_cal returned no days for {start}..{end}", api="trade_cal")
        progress.add("trade_calendar", await self.store.upsert_trade_calendar(frame))
        opened = frame[pd.to_numeric(frame["is_open"]) == 1]["cal_date"].astype(str)
        return sorted(_day(d) for d in opened.tolist())

    async def _store_reference(self, progress: Progress) -> None:
        stocks = await self.provider.stock_basic()
        if not stocks.empty:
            progress.add("securities", await self.store.upsert_securities(stocks))
        names = await self._call_api("namechange", self.provider.namechange, progress)
        if not names.empty:
            progress.add("st_periods", await self.store.upsert_st_periods(names))

    async def _store_indices(self, start: date, end: date, progress: Progress) -> None:
        for code in self.options.indices:
            bars = await self._call_api("index_daily", partial(self.provider.index_daily, code, start, end), progress)
            if not bars.empty:
                progress.add("index_bars", await self.store.upsert_index_bars(bars))
            weights = await self._call_api(
                "index_weight", partial(self.provider.index_weight, code, start, end), progress
            )
            if not weights.empty:
                progress.add("index_weights", await self.store.upsert_index_weights(weights))

    async def _call_api(
        self, api: str, call: Callable[[], Awaitable[pd.DataFrame]], progress: Progress
    ) -> pd.DataFrame:
        """`call()`, unless `api` is optional and the token may not use it: then an empty frame, and the endpoint
        is skipped (not asked again) for the rest of the run (OPTIONAL_APIS, `skip_denied_optional`)."""
        if api in progress.skipped:
            return pd.DataFrame()
        try:
            return await call()
        except PermissionDenied as exc:
            if api not in OPTIONAL_APIS or not self.options.skip_denied_optional:
                raise
            progress.skipped[api] = _reason(exc)
            log.warning("ingest run %s skips the optional endpoint %s for this run: %s", progress.run_id, api, exc)
            return pd.DataFrame()

    async def _fetch_day(self, day: date, stocks: frozenset[str], progress: Progress) -> dict[str, pd.DataFrame]:
        """Every endpoint of one open day, the per-stock tables cut down to the A-share stocks the store covers.
        An optional endpoint the token may not use gives an empty frame (see `_call_api`)."""
        provider = self.provider
        calls: dict[str, Callable[[], Awaitable[pd.DataFrame]]] = {
            "daily": partial(provider.daily, day, expect_rows=True),
            "adj_factor": partial(provider.adj_factor, day, expect_rows=True),
            "stk_limit": partial(provider.stk_limit, day, expect_rows=True),
            "suspend_d": partial(provider.suspend_d, day),
            "daily_basic": partial(provider.daily_basic, day, expect_rows=True),
        }
        # Every call finishes (no half-cancelled worker threads); the first failure is the day's.
        results = await asyncio.gather(
            *(self._call_api(api, call, progress) for api, call in calls.items()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        frames: dict[str, pd.DataFrame] = {
            api: result for api, result in zip(calls, results, strict=True) if isinstance(result, pd.DataFrame)
        }
        if frames["daily"].empty:  # a provider that does not honour expect_rows: still never "no data that day"
            raise DataNotReady(f"daily returned no bars for open day {day}: not published yet", api="daily")
        # stk_limit covers A and B shares and funds (ETF limits have 3 decimals, 510300.SH 3.826), and the other
        # per-stock endpoints may list more than `daily` too: keep the stocks of that day's bars and of stock_basic
        # (a suspended stock has a factor and limits but no bar), which are what the store holds.
        covered = pa.array(sorted(stocks | set(frames["daily"]["ts_code"].astype(str))), pa.string())
        for api in ("adj_factor", "stk_limit", "daily_basic", "suspend_d"):
            frame = frames[api]
            if not frame.empty and "ts_code" in frame.columns:
                keep = _codes_in(frame["ts_code"], covered)
                if not keep.all():
                    frames[api] = frame[keep].reset_index(drop=True)
        return frames

    async def _ingest_days(
        self, days: list[date], progress: Progress, written: _Written, on_progress: ProgressCallback | None
    ) -> None:
        """Fetch day N+1.. while day N's batch is written; `prefetch_days` bounds what waits in memory."""
        if not days:
            return
        queue: asyncio.Queue[tuple[date, dict[str, pd.DataFrame]] | BaseException | None] = asyncio.Queue(
            maxsize=self.options.prefetch_days
        )
        stocks = frozenset(await self.store.security_codes())

        async def fetch_all() -> None:
            try:
                for day in days:
                    await queue.put((day, await self._fetch_day(day, stocks, progress)))
                await queue.put(None)
            except Exception as exc:
                await queue.put(exc)

        fetcher = asyncio.create_task(fetch_all())
        batch: list[tuple[date, dict[str, pd.DataFrame]]] = []
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    # The days already fetched are whole: write them, then fail with the provider's reason.
                    await self._write_days(batch, progress, written, on_progress)
                    raise item
                if item is None:
                    break
                batch.append(item)
                if len(batch) >= self.options.batch_days:
                    await self._write_days(batch, progress, written, on_progress)
                    batch = []
            await self._write_days(batch, progress, written, on_progress)
        finally:
            fetcher.cancel()

    async def _write_days(
        self,
        batch: list[tuple[date, dict[str, pd.DataFrame]]],
        progress: Progress,
        written: _Written,
        on_progress: ProgressCallback | None,
    ) -> None:
        if not batch:
            return
        # The store writes each table in its key order (ts_code, trade_date): a batch of several days then lands
        # on each stock's pages together instead of one row per page per day (DataStore `key_order`).
        stacked = {api: _stack([frames[api] for _, frames in batch]) for api in DAY_APIS}
        factors = stacked["adj_factor"]
        bars = stacked["daily"].merge(factors, on=["ts_code", "trade_date"], how="left", validate="one_to_one")
        if bars["adj_factor"].isna().any():
            bars = await self._fill_adj_factors(bars)
        # Convert (and so validate) everything before the first write: bad provider data writes nothing.
        _validate(bars, factors, stacked["stk_limit"], stacked["suspend_d"], stacked["daily_basic"])
        for table, frame, upsert in (
            ("adj_factors", factors, self.store.upsert_adj_factors),
            ("stk_limits", stacked["stk_limit"], self.store.upsert_stk_limits),
            ("suspensions", stacked["suspend_d"], self.store.upsert_suspensions),
            ("daily_basic", stacked["daily_basic"], self.store.upsert_daily_basic),
            ("daily_bars", bars, self.store.upsert_daily_bars),
        ):
            if table == "daily_bars":
                # Counted before the write: a bars upsert that fails part-way has committed some of them, and the
                # failed run's `bars.updated` (complete: false) must cover those too.
                written.add(bars)
            if not frame.empty:
                progress.add(table, await upsert(frame))
        # Batches are written in date order and a failure ends the run, so every day up to this batch's last is
        # whole now: `update` starts after it (a batch cut short, even with some later bars in, is fetched again).
        await self.store.mark_complete_through(batch[-1][0])
        progress.steps_done += len(batch)
        progress.current = batch[-1][0].isoformat()
        if on_progress is not None:
            on_progress(progress)

    async def _fill_adj_factors(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Bars lacking a factor take the stored feed's factor of that day, else the symbol's newest earlier factor
        (in this frame, then in the store), else 1 (a symbol the store knows nothing about)."""
        bars = bars.copy()
        if "adj_factor" not in bars.columns:
            bars["adj_factor"] = np.nan
        bars["adj_factor"] = pd.to_numeric(bars["adj_factor"], errors="coerce")
        missing = bars["adj_factor"].isna()
        codes = sorted(bars.loc[missing, "ts_code"].astype(str).unique().tolist())
        days = bars.loc[missing, "trade_date"].astype(str)
        first, last = _day(days.min()), _day(days.max())
        found = await self.store.stored_adj_factors(codes, first, last)
        stored = {(code, ymd(day)): float(factor) for (code, day), factor in found.items()}
        keys = list(zip(bars["ts_code"].astype(str), bars["trade_date"].astype(str), strict=True))
        from_feed = pd.Series([stored.get(k, np.nan) for k in keys], index=bars.index)
        bars["adj_factor"] = bars["adj_factor"].fillna(from_feed)
        order = bars.sort_values(["ts_code", "trade_date"]).index
        carried = bars.loc[order].groupby("ts_code")["adj_factor"].ffill()
        bars["adj_factor"] = bars["adj_factor"].fillna(carried)
        still = bars["adj_factor"].isna()
        if still.any():
            anchors = await self.store.anchor_factors(sorted(bars.loc[still, "ts_code"].unique().tolist()), first)
            fallback = bars.loc[still, "ts_code"].map(lambda c: float(anchors[c]) if c in anchors else 1.0)
            bars.loc[still, "adj_factor"] = fallback
        return bars

    # -- quality --------------------------------------------------------------------------------------------------

    async def quality(self, start: date, end: date, *, ingest_run_id: str | None = None) -> tuple[str, QualityReport]:
        """Run the quality checks over the stored bars of [start, end] and store the report; (report id, report).
        The symbols checked are those with bars in the range and those listed during it (a listed stock with no bar
        and no suspension is a missing bar). The open day before `start` is read as context, so the first day's
        pre_close is checked against the close before it; only findings dated in [start, end] are reported.
        Symbols are checked in groups so a whole-market range stays within memory."""
        _check_range(start, end)
        calendar = await self.store.open_days(start, end)
        span = await self.store.calendar_span()
        if span is None or span[0] > start or span[1] < end:
            raise QualityInputError(
                f"the stored trade calendar does not cover {start}..{end}: a backfill of that range or "
                f"`import-calendar` (a Tushare trade_cal file) stores it"
            )
        if not calendar:
            raise QualityInputError(f"no open day in {start}..{end}")
        before = await self.store.previous_open_day(calendar[0])
        if before is not None:
            calendar = [before, *calendar]
        context_start = before if before is not None else start
        codes = sorted(
            set(await self.store.codes_with_bars(start, end)) | set(await self.store.codes_listed_between(start, end))
        )
        chunks = [codes[i : i + QUALITY_SYMBOLS_PER_CHUNK] for i in range(0, max(len(codes), 1),
                                                                          QUALITY_SYMBOLS_PER_CHUNK)]  # fmt: skip
        reports = []
        # The next group is read while this one is checked (in a thread): reading is mostly waiting on the server
        # and the driver, the checks mostly numpy; two groups in memory at most.
        reading = asyncio.create_task(_quality_inputs(self.store, chunks[0], context_start, end))
        try:
            for i in range(len(chunks)):
                inputs = await reading
                if i + 1 < len(chunks):
                    reading = asyncio.create_task(_quality_inputs(self.store, chunks[i + 1], context_start, end))
                reports.append(
                    await asyncio.to_thread(_check, inputs, calendar, start, self.options.quality_thresholds)
                )
        finally:
            # Always collected: a read-ahead that failed while a check failed first is not left unretrieved.
            if not reading.done():
                reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        report = _merge_reports(reports)
        stored = [QualityFinding(f.rule, f.detail, f.ts_code, f.trade_date) for f in report.findings]
        report_id = await self.store.save_quality_report(
            report.rules_run, stored, ingest_run_id=ingest_run_id, start=start, end=end, counts=report.counts,
            max_findings_per_rule=report.max_findings_per_rule, rules_skipped=report.rules_skipped,
        )  # fmt: skip
        return report_id, report


# -- helpers ------------------------------------------------------------------------------------------------------


def _check_range(start: date, end: date) -> None:
    if start > end:
        raise IngestError(f"start {start} is after end {end}")


def _requested(start: date | None, end: date | None) -> dict[str, str | None]:
    return {"start": start.isoformat() if start else None, "end": end.isoformat() if end else None}


def _has(frame: pd.DataFrame, row: pd.Series) -> bool:
    return bool(((frame["ts_code"] == row["ts_code"]) & (frame["trade_date"] == row["trade_date"])).any())


def _codes_in(codes: pd.Series, covered: pa.Array) -> np.ndarray:
    """Which of `codes` are in `covered` (a hash lookup in Arrow: pandas' `isin` on Arrow strings loops in Python,
    14 ms for a day's 5,000 codes, a quarter of the ingest's time per day)."""
    found = pc.is_in(pa.array(codes.astype(str), pa.string()), value_set=covered)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    non_empty = [f for f in frames if not f.empty]
    if not non_empty:
        return frames[0] if frames else pd.DataFrame()
    return non_empty[0] if len(non_empty) == 1 else pd.concat(non_empty, ignore_index=True)


def _validate(
    bars: pd.DataFrame,
    factors: pd.DataFrame | None,
    limits: pd.DataFrame | None,
    halts: pd.DataFrame | None,
    basic: pd.DataFrame | None,
) -> None:
    """Convert every frame to storage units once, so a bad value is refused before any of the batch is written."""
    units.daily_bar_columns(bars)
    for frame, convert in (
        (factors, units.adj_factor_columns),
        (limits, units.stk_limit_columns),
        (halts, units.suspension_columns),
        (basic, units.daily_basic_columns),
    ):
        if frame is not None and not frame.empty:
            convert(frame)


def _written_detail(written: _Written) -> dict[str, Any]:
    return {
        "bars": {
            "start": written.first.isoformat() if written.first else None,
            "end": written.last.isoformat() if written.last else None,
            "rows": written.rows,
            "symbols": len(written.symbols),
        }
    }


def _quality_summary(report: QualityReport) -> dict[str, Any]:
    return {
        "rows_checked": report.rows_checked,
        "counts": dict(report.counts),
        "by_severity": report.count_by_severity(),
        "rules_skipped": dict(report.rules_skipped),
        "truncated": report.truncated(),
    }


@dataclass
class _QualityInputs:
    bars: pd.DataFrame
    suspensions: pd.DataFrame
    limits: pd.DataFrame
    securities: pd.DataFrame


async def _quality_inputs(store: DataStore, codes: list[str], start: date, end: date) -> _QualityInputs:
    """The stored rows (storage units) the checks need for `codes` over [start, end]. Bars, limits and suspensions
    come as numpy columns (`DataStore.quality_columns`: integers straight from the driver on MariaDB), dates as
    datetime64 and factors as floats, which is what the checks compute with; a whole-market range is tens of
    millions of rows, and SQLAlchemy's result rows (date and Decimal objects, tuples into a DataFrame) cost more
    than the checks themselves."""
    bars = _dated_frame(await store.quality_columns(daily_bars, codes, start, end))
    bars["adj_factor"] = bars["adj_factor"].to_numpy() / units.MICRO  # the same double as float(Decimal)
    halts = _dated_frame(await store.quality_columns(suspensions, codes, start, end))
    limits = _dated_frame(await store.quality_columns(stk_limits, codes, start, end))
    rows = await store.listing_spans(codes)
    secs = pd.DataFrame(rows, columns=["ts_code", "list_date", "delist_date"])
    return _QualityInputs(bars, halts, limits, secs)


def _dated_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Columns from the store (trade_date in days since 1970-01-01) as a frame with datetime64 trade dates."""
    return pd.DataFrame({**columns, "trade_date": columns["trade_date"].astype("datetime64[D]")})


def _check(
    inputs: _QualityInputs, calendar: list[date], report_from: date, thresholds: QualityThresholds
) -> QualityReport:
    return run_quality_checks(
        inputs.bars,
        calendar=calendar,
        suspensions=inputs.suspensions,
        limits=inputs.limits,
        securities=inputs.securities if not inputs.securities.empty else None,
        thresholds=thresholds,
        report_from=report_from,
        # The whole range, not the span of this group's bars: a group's result must not depend on its neighbours.
        checked_range=(calendar[0], calendar[-1]),
    )


def _merge_reports(reports: list[QualityReport]) -> QualityReport:
    """One report from the per-group ones: totals summed, findings in report order, capped per rule as one run."""
    if len(reports) == 1:
        return reports[0]
    first = reports[0]
    counts: dict[str, int] = {}
    for r in reports:
        for rule, n in r.counts.items():
            counts[rule] = counts.get(rule, 0) + n
    order = {rule: i for i, rule in enumerate(RULES)}
    findings = sorted((f for r in reports for f in r.findings), key=lambda f: (order[f.rule], f.ts_code, f.trade_date))
    kept: list[Any] = []
    per_rule: dict[str, int] = {}
    for f in findings:
        if per_rule.get(f.rule, 0) < first.max_findings_per_rule:
            kept.append(f)
            per_rule[f.rule] = per_rule.get(f.rule, 0) + 1
    dates = [d for r in reports for d in (r.first_date, r.last_date) if d is not None]
    return replace(
        first,
        rows_checked=sum(r.rows_checked for r in reports),
        first_date=min(dates) if dates else None,
        last_date=max(dates) if dates else None,
        counts=counts,
        findings=tuple(kept),
    )


async def quality_report_for_ingest(store: DataStore, ingest_run_id: str) -> str | None:
    """The id of the quality report stored for an ingest run, if any."""
    return await store.report_for_ingest(ingest_run_id)


def stored_open_days(store: DataStore) -> Callable[[], Awaitable[set[date]]]:
    """The stored calendar's open days (for the scheduler's synchronous `is_trading_day`)."""

    async def load() -> set[date]:
        return await store.all_open_days()

    return load


def _to_outbox(event: Envelope | None) -> Callable[[DbSession], Awaitable[None]] | None:
    """What writes `event` into the outbox in the run's closing transaction (None: there is no event)."""
    if event is None:
        return None

    async def write(session: DbSession) -> None:
        await add_to_outbox(session, outbox, event)

    return write
