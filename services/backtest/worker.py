"""The backtest worker: takes jobs from the `<ns>.jobs.backtests` work queue (prefetch 1), resolves the universe and
reads the bars from the data service's bulk Arrow endpoint (cached on disk per data version, market_data.py), runs
the strategy through the engine, and stores the result (summary, daily series, trades, unfilled orders) with its
`backtest.finished` event; the job is acknowledged only after that. While the engine runs, its progress callback
publishes `backtest.progress` (at most once a second) and stops the run when the owner cancelled it.

Runs in-process (standalone mode: `BacktestWorker(settings, infra).start()`) or as its own process
(`python -m services.backtest.worker`, Prometheus metrics on LH_WORKER_METRICS_PORT, default 8106; strategies from
the packages in LH_STRATEGY_PACKAGES, default `strategies`; bars cached in LH_BACKTEST_CACHE_DIR up to
LH_BACKTEST_CACHE_MAX_MB).

What happens to each kind of job (queued, redelivered, cancelled, failing, lost, at shutdown): docs/backtest.md,
"What happens to a job".
"""

from __future__ import annotations

import asyncio
import logging
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.backtest.consumer import SERVICE, JobConsumer, wait_for_shutdown
from services.backtest.events import JOB_QUEUE, backtest_finished, backtest_progress, short_error
from services.backtest.runner import (
    AnyResult,
    artifacts,
    equity_curve,
    job_config,
    portfolio_summary_json,
    run_job,
    run_portfolio_job,
    summary_json,
    total_return,
)
from services.backtest.store import BacktestKind, BacktestRecord, BacktestStatus, BacktestStore, outbox
from shared.platform.app import Infra
from shared.platform.db import Database
from shared.platform.events import Envelope
from shared.platform.internal_auth import service_headers
from shared.platform.market_data import DEFAULT_CACHE_MAX_BYTES, BarsUnavailable, MarketData, engine_frame, run_calendar
from shared.platform.observability import configure_logging
from shared.platform.outbox import OutboxRelay
from shared.platform.settings import Settings
from shared.research.engine import BacktestConfig
from shared.research.engine.portfolio import PortfolioResult, Sleeve
from shared.research.strategy import Strategy, discover_strategies

log = logging.getLogger(__name__)

PROCESS = "backtest-worker"

MAX_ATTEMPTS = 3  # times a backtest may be started; the next delivery fails it instead
SWEEP_INTERVAL_S = 60.0
STALE_QUEUED_S = 120.0
STALE_RUNNING_S = 5 * 60.0  # without a heartbeat for this long, a running backtest has lost its worker
HEARTBEAT_S = 60.0  # how often the worker running a backtest renews its lease
PROGRESS_INTERVAL_S = 1.0  # at most one backtest.progress event per backtest this often
CANCEL_POLL_S = 0.5  # how often a running job checks whether it was cancelled


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.jobs = Counter(
            "lh_backtest_jobs",
            "Backtest jobs handled, by outcome (skipped: the backtest had finished already)",
            ["status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "lh_backtest_job_seconds",
            "Time to handle one backtest job: fetch bars, run, store",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        for status in ("succeeded", "failed", "cancelled", "skipped"):
            self.jobs.labels(status)


class UnknownBacktest(LookupError):
    """A job names a backtest the store does not have."""


class JobCancelled(Exception):
    """Raised from the engine's progress callback to stop a backtest its owner cancelled."""


@dataclass(frozen=True)
class JobInputs:
    codes: Sequence[str]
    frame: pd.DataFrame
    config: BacktestConfig
    benchmark: pd.DataFrame | None
    benchmark_code: str | None  # None when the default benchmark was not available


def _bar_fields(strategy: Strategy | list[Sleeve]) -> tuple[str, ...]:
    """The daily_basic fields the strategy (every sleeve's) reads as extra bar columns."""
    strategies = [strategy] if isinstance(strategy, Strategy) else [sleeve.strategy for sleeve in strategy]
    return tuple(sorted({name for one in strategies for name in one.bar_fields}))


def _codes_text(codes: Sequence[str]) -> str:
    return ", ".join(codes[:10]) + (f" and {len(codes) - 10} more" if len(codes) > 10 else "")


def default_cache_dir(settings: Settings) -> Path:
    return Path(tempfile.gettempdir()) / "lianghua-backtest-cache" / settings.bus_namespace


class BacktestWorker(JobConsumer):
    queue = JOB_QUEUE
    sweeper_name = "backtest-sweeper"

    def __init__(
        self,
        settings: Settings,
        infra: Infra,
        *,
        db: Database | None = None,
        strategies: Mapping[str, type[Strategy]] | None = None,
        registry: CollectorRegistry | None = None,
        fetch_attempts: int = 4,
        fetch_backoff_s: float = 0.5,
        cache_dir: Path | None = None,
        cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        cancel_poll_s: float = CANCEL_POLL_S,
        sweep_interval_s: float | None = None,
        stale_queued_s: float | None = None,
        stale_running_s: float | None = None,
    ) -> None:
        """The sweep's timings default to the module's constants (read here, so a test may patch them)."""
        super().__init__(settings, infra, db, strategies)
        self.store = BacktestStore(self.db)
        self.relay = OutboxRelay(self.db, outbox, infra.bus)
        self.metrics = WorkerMetrics(registry or CollectorRegistry())
        self.fetch_attempts = fetch_attempts
        self.fetch_backoff_s = fetch_backoff_s
        self.cache_dir = cache_dir or default_cache_dir(settings)
        self.cache_max_bytes = cache_max_bytes
        self.progress_interval_s = progress_interval_s
        self.cancel_poll_s = cancel_poll_s
        self.heartbeat_s = HEARTBEAT_S
        self.sweep_interval_s = SWEEP_INTERVAL_S if sweep_interval_s is None else sweep_interval_s
        self.stale_queued_s = STALE_QUEUED_S if stale_queued_s is None else stale_queued_s
        self.stale_running_s = STALE_RUNNING_S if stale_running_s is None else stale_running_s

    async def start(self) -> None:
        await self._open()
        self.relay.start()
        await self._consume(self.sweep_interval_s)
        log.info("backtest worker consuming", extra={"queue": JOB_QUEUE, "strategies": sorted(self.strategies)})

    async def stop(self, timeout_s: float = 120.0) -> None:
        """Let a job in progress finish (up to `timeout_s`), then stop publishing and close the database.
        The caller closes the bus, which returns any job delivered meanwhile to the queue."""
        if not await self._drain(timeout_s):
            log.error("a backtest job was still running at shutdown; the broker will redeliver it")
        await self.relay.stop()
        await self._close()

    async def sweep(self) -> int:
        """Re-queue the backtests that look like they lost their job; returns how many were re-queued."""
        stale = await self.store.stale(queued_for_s=self.stale_queued_s, running_for_s=self.stale_running_s)
        # A `queued` row is provably without a message only when nothing waits in the work queue; with a backlog,
        # old queued rows are simply waiting their turn, and re-queueing them every sweep would multiply messages.
        backlog = await self.infra.bus.waiting_jobs(JOB_QUEUE) if stale else 0
        requeued = 0
        for backtest_id in stale:
            if self._stopping:
                break
            record = await self.store.get(backtest_id)
            if record is None or record.status.is_final:
                continue
            if record.status is BacktestStatus.QUEUED and backlog > 0:
                continue
            if record.status is BacktestStatus.RUNNING and not await self.store.mark_running_resent(
                backtest_id, running_for_s=self.stale_running_s
            ):
                continue  # another worker's sweep (or a redelivery) got to it first
            try:
                await self.infra.bus.enqueue(JOB_QUEUE, {"backtest_id": backtest_id}, message_id=backtest_id)
            except Exception:
                log.exception("backtest sweep could not queue a job; will retry", extra={"backtest_id": backtest_id})
                break  # the others would meet the same wall
            requeued += 1
            log.warning(
                "backtest re-queued by the sweep",
                extra={"backtest_id": backtest_id, "status": record.status.value, "attempts": record.attempts},
            )
        return requeued

    async def handle(self, body: dict[str, Any]) -> None:
        """The job handler: returns when the job is done with (acknowledged), raises to dead-letter it."""
        backtest_id = body.get("backtest_id") if isinstance(body, dict) else None
        if not isinstance(backtest_id, str) or not backtest_id:
            raise ValueError(f"malformed backtest job: {body!r}")
        if self._stopping:
            await wait_for_shutdown()
        async with self._busy:
            started = time.perf_counter()
            try:
                status = await self._handle(backtest_id)
            except Exception:
                status = "failed"
                raise
            finally:
                self.metrics.jobs.labels(status).inc()
                if status != "skipped":
                    self.metrics.seconds.observe(time.perf_counter() - started)

    async def _handle(self, backtest_id: str) -> str:
        record, claimed = await self.store.try_claim(backtest_id, max_attempts=MAX_ATTEMPTS)
        if record is None:
            raise UnknownBacktest(f"no backtest {backtest_id!r} in the store")
        if record.status.is_final:
            log.info("backtest finished already; job skipped", extra={"backtest_id": backtest_id})
            return "skipped"
        if not claimed:
            error = (
                f"too_many_attempts: the job was started {record.attempts} times without finishing "
                "(a worker crashed or was killed each time)"
            )
            return await self._fail(record, error, from_status=record.status)
        if record.cancel_requested:
            return await self._cancelled(record)  # asked while a dead worker had it
        log.info(
            "backtest running",
            extra={"backtest_id": backtest_id, "strategy": record.strategy, "attempt": record.attempts},
        )
        cancel = threading.Event()
        watcher = asyncio.create_task(self._watch_cancel(backtest_id, cancel), name=f"cancel-watch:{backtest_id}")
        try:
            return await self._run(record, cancel)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    def _strategy(self, record: BacktestRecord) -> Strategy | list[Sleeve]:
        """The backtest's strategy, or its sleeves for a run with several (each from its stored strategy, params,
        weight and label). A strategy missing here, or params it no longer accepts, raise: the job is poison."""

        def make(name: str, raw: Mapping[str, Any]) -> Strategy:
            strategy_cls = self.strategies.get(name)
            if strategy_cls is None:
                raise LookupError(f"strategy {name!r} is not installed on this worker")
            return strategy_cls(strategy_cls.parse_params(raw))

        if record.kind is not BacktestKind.PORTFOLIO:
            return make(record.strategy, record.params)
        return [
            Sleeve(make(spec["strategy"], spec.get("params") or {}), weight=spec.get("weight"), label=spec["label"])
            for spec in record.params["sleeves"]
        ]

    async def _run(self, record: BacktestRecord, cancel: threading.Event) -> str:
        try:
            strategy = self._strategy(record)
            try:
                inputs = await self._load(record, _bar_fields(strategy))
            except BarsUnavailable as exc:
                return await self._fail(record, str(exc))
            if cancel.is_set():
                return await self._cancelled(record)
            if inputs.frame.empty:
                return await self._fail(
                    record,
                    f"no_data: the data service has no bars for {_codes_text(inputs.codes)} "
                    f"between {record.start} and {record.end}",
                )
            progress = self._progress_reporter(record, cancel, asyncio.get_running_loop())
            result: AnyResult
            if isinstance(strategy, Strategy):
                result = await asyncio.to_thread(
                    run_job, strategy, inputs.frame, inputs.config, benchmark=inputs.benchmark, progress=progress
                )
            else:
                # one data load, one job: every sleeve runs on the same panel, one after the other
                result = await asyncio.to_thread(
                    run_portfolio_job, strategy, inputs.frame, inputs.config, benchmark=inputs.benchmark,
                    progress=progress,
                )  # fmt: skip
        except JobCancelled:
            return await self._cancelled(record)
        except Exception:
            await self._fail(record, traceback.format_exc())
            raise
        return await self._succeed(record, result, inputs)

    async def _load(self, record: BacktestRecord, fields: Sequence[str] = ()) -> JobInputs:
        """Resolve the universe, read its bars (bulk Arrow, cached) with the daily_basic `fields` the strategy reads,
        and the benchmark's index bars."""
        market = self.market_data()
        universe = record.universe or {"ts_codes": record.ts_codes}
        codes = await market.resolve_universe(universe, record.start)
        if not codes:
            raise BarsUnavailable(f"empty_universe: {universe.get('label', universe)} has no stocks on {record.start}")
        if codes != record.ts_codes:
            await self.store.set_universe(record.backtest_id, codes)
        table = await market.bars(codes, record.start, record.end, fields)
        frame = await asyncio.to_thread(engine_frame, table)
        calendar = run_calendar(frame, record.start, record.end)
        costs = (record.config or {}).get("costs", {})
        config = job_config(
            initial_cash=record.initial_cash, start=record.start, end=record.end, costs=costs, calendar=calendar
        )
        benchmark, benchmark_code = None, record.benchmark
        if benchmark_code is not None and not frame.empty:
            required = bool((record.config or {}).get("benchmark_required", False))
            bars = await market.index_bars(benchmark_code, record.start, record.end)
            days = calendar or sorted(set(pd.to_datetime(frame["trade_date"]).dt.date))
            missing = [d for d in days if bars is None or d not in set(bars["trade_date"])]
            if not missing and bars is not None:
                benchmark = bars
            elif required:
                raise BarsUnavailable(
                    f"no_benchmark: the data service has no close of index {benchmark_code} on {len(missing)} of the "
                    f"{len(days)} trading day(s) (first {missing[0]})"
                )
            else:
                log.info(
                    "default benchmark not available; running without",
                    extra={
                        "backtest_id": record.backtest_id,
                        "benchmark": benchmark_code,
                        "missing_days": len(missing),
                    },
                )
                benchmark_code = None
        return JobInputs(codes, frame, config, benchmark, benchmark_code)

    def market_data(self) -> MarketData:
        client = self.infra.services.client("data")

        def headers() -> dict[str, str]:
            return service_headers(self.settings.internal_secret, SERVICE)

        return MarketData(
            client,
            headers,
            self.cache_dir,
            cache_max_bytes=self.cache_max_bytes,
            attempts=self.fetch_attempts,
            backoff_s=self.fetch_backoff_s,
        )

    async def _watch_cancel(self, backtest_id: str, cancel: threading.Event) -> None:
        """While the engine runs: raise the thread-safe flag its progress callback checks once the API has asked to
        cancel, and renew the backtest's heartbeat, so that a long run is never re-queued by a sweep."""
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(self.cancel_poll_s)
            try:
                if await self.store.is_cancel_requested(backtest_id):
                    cancel.set()
                    return
                if time.monotonic() - last_beat >= self.heartbeat_s:
                    await self.store.heartbeat(backtest_id)
                    last_beat = time.monotonic()
            except Exception:
                log.warning("could not check for a cancel request or renew the heartbeat; will retry", exc_info=True)

    def _progress_reporter(
        self, record: BacktestRecord, cancel: threading.Event, loop: asyncio.AbstractEventLoop
    ) -> Callable[[int, int], None]:
        """The engine's progress callback. It runs in the engine's thread: it stops the run by raising when the
        backtest is cancelled, and hands `backtest.progress` events (at most one per PROGRESS_INTERVAL_S) to the
        loop without waiting for them."""
        started = time.monotonic()
        last = [-float("inf")]

        def report(days_done: int, days: int) -> None:
            if cancel.is_set():
                raise JobCancelled(record.backtest_id)
            now = time.monotonic()
            if days_done >= days or now - last[0] < self.progress_interval_s:
                return  # the last day's news is backtest.finished
            last[0] = now
            event = backtest_progress(
                record.backtest_id, owner=record.owner, days_done=days_done, days=days, elapsed_s=now - started
            )
            asyncio.run_coroutine_threadsafe(self._publish_progress(event), loop)

        return report

    async def _publish_progress(self, event: Envelope) -> None:
        # Ephemeral: published straight on the bus, not through the outbox. A lost one is superseded by the next.
        try:
            await self.infra.bus.publish(event)
        except Exception:
            log.warning("could not publish backtest.progress", exc_info=True)

    async def _succeed(self, record: BacktestRecord, result: AnyResult, inputs: JobInputs) -> str:
        event = backtest_finished(
            record.backtest_id,
            BacktestStatus.SUCCEEDED.value,
            owner=record.owner,
            total_return=total_return(result),
        )
        if isinstance(result, PortfolioResult):
            summary = await asyncio.to_thread(portfolio_summary_json, result, benchmark=inputs.benchmark_code)
        else:
            summary = await asyncio.to_thread(summary_json, result, benchmark=inputs.benchmark_code)
        frames = await asyncio.to_thread(artifacts, result, inputs.benchmark)
        stored = await self.store.finish(
            record.backtest_id,
            status=BacktestStatus.SUCCEEDED,
            summary=summary,
            equity_curve=equity_curve(result),
            event=event,
            artifacts=frames,
        )
        if not stored:
            log.info("backtest finished by another delivery meanwhile", extra={"backtest_id": record.backtest_id})
            return "skipped"
        log.info(
            "backtest succeeded",
            extra={"backtest_id": record.backtest_id, "total_return": format(total_return(result), "f")},
        )
        await self._publish()
        return "succeeded"

    async def _cancelled(self, record: BacktestRecord) -> str:
        event = backtest_finished(record.backtest_id, BacktestStatus.CANCELLED.value, owner=record.owner)
        stored = await self.store.finish(record.backtest_id, status=BacktestStatus.CANCELLED, event=event)
        if stored:
            log.info("backtest cancelled", extra={"backtest_id": record.backtest_id})
            await self._publish()
        return "cancelled" if stored else "skipped"

    async def _fail(
        self, record: BacktestRecord, error: str, *, from_status: BacktestStatus = BacktestStatus.RUNNING
    ) -> str:
        event = backtest_finished(record.backtest_id, BacktestStatus.FAILED.value, owner=record.owner, error=error)
        stored = await self.store.finish(
            record.backtest_id, status=BacktestStatus.FAILED, error=error, event=event, from_status=from_status
        )
        if stored:
            log.warning("backtest failed", extra={"backtest_id": record.backtest_id, "error": short_error(error)})
            await self._publish()
        return "failed" if stored else "skipped"

    async def _publish(self) -> None:
        # The result is committed: a broker hiccup now must not fail the job. The relay's poll retries.
        try:
            await self.relay.flush()
        except Exception:
            log.exception("could not publish backtest.finished now; the outbox relay will retry")


class WorkerSettings(BaseSettings):
    """The worker process's own settings, next to the shared ones."""

    model_config = SettingsConfigDict(env_prefix="LH_", extra="ignore")

    host: str = "127.0.0.1"
    worker_metrics_port: int = 8106
    backtest_cache_dir: Path | None = None  # default <tmp>/lianghua-backtest-cache/<bus namespace>
    backtest_cache_max_mb: int = DEFAULT_CACHE_MAX_BYTES >> 20
    strategy_packages: str = "strategies"  # comma-separated packages to discover strategies in


async def run_worker(settings: Settings, worker_settings: WorkerSettings) -> None:
    """One worker process: backtest jobs and optimisation tasks, from their two work queues."""
    from services.backtest.optimize import OptimisationTaskHandler, bulk_market_loader

    registry = CollectorRegistry()
    infra = Infra.from_settings(settings, PROCESS)
    strategies: dict[str, type[Strategy]] = {}
    for package in worker_settings.strategy_packages.split(","):
        strategies.update(discover_strategies(package.strip()))
    worker = BacktestWorker(
        settings,
        infra,
        strategies=strategies,
        registry=registry,
        cache_dir=worker_settings.backtest_cache_dir,
        cache_max_bytes=worker_settings.backtest_cache_max_mb << 20,
    )
    optimiser = OptimisationTaskHandler(
        settings, infra, strategies=strategies, load_market=bulk_market_loader(worker.market_data())
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics_server = None
    try:
        await infra.start()
        await worker.start()
        await optimiser.start()
        # Served once the worker consumes, so a 200 from /metrics also says the worker is up.
        metrics_server, _ = start_http_server(
            worker_settings.worker_metrics_port, addr=worker_settings.host, registry=registry
        )
        await stop.wait()
        log.info("backtest worker stopping")
    finally:
        await optimiser.stop()
        await worker.stop()
        await infra.close()
        if metrics_server is not None:
            metrics_server.shutdown()


def main() -> None:
    settings = Settings()
    configure_logging(PROCESS, settings.log_level, settings.log_json)
    asyncio.run(run_worker(settings, WorkerSettings()))


if __name__ == "__main__":
    main()
