"""The data service app: its database, migrations and (demo provider, empty store) the demo market at start-up; the
ingestion pipeline with its API, the outbox relay of `bars.updated`, and the daily update scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import date, datetime, time, timedelta

from fastapi import FastAPI

from services.data.api import router
from services.data.cache import ReadCache
from services.data.events import outbox
from services.data.ingest import (
    SUCCEEDED,
    IngestError,
    IngestOptions,
    Ingestor,
    IngestResult,
    Progress,
    stored_open_days,
)
from services.data.ingest_api import ingest_router
from services.data.loader import load_demo_market
from services.data.metrics import DataMetrics, StoredThrough
from services.data.providers import DemoProvider, MarketDataProvider, TushareConfig, TushareProvider
from services.data.realtime.api import live_router
from services.data.realtime.bridge import bridge_router
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes
from services.data.realtime.replay import ReplayFeed
from services.data.realtime.store import LiveStore, MemoryLiveStore, RedisLiveStore
from services.data.realtime.watch import watch_router
from services.data.scheduler import SHANGHAI, DailyScheduler, RetryPolicy, parse_run_time
from services.data.store import LIMITS_RUN, MIGRATIONS_DIR, DataStore
from shared.core.market.calendar import is_trading_day as builtin_is_trading_day
from shared.platform.app import Infra, create_service_app
from shared.platform.cache import RedisCache
from shared.platform.db import Database
from shared.platform.outbox import OutboxRelay
from shared.platform.periodic import PeriodicTask
from shared.platform.settings import Settings

log = logging.getLogger(__name__)


def make_provider(settings: Settings) -> MarketDataProvider:
    """The configured market-data source (LH_DATA_PROVIDER): the demo market or Tushare Pro."""
    if settings.data_provider == "tushare":
        return TushareProvider(TushareConfig.from_settings(settings))
    return DemoProvider(settings)


class TradingDays:
    """`is_trading_day` for the scheduler: the stored trade calendar where it has the day, else the built-in SSE
    calendar, else weekdays — the last only decides when the scheduler wakes; the update itself reads trade_cal
    and fetches nothing on a closed day."""

    def __init__(self, store: DataStore) -> None:
        self._load = stored_open_days(store)
        self._open: set[date] = set()
        self._span: tuple[date, date] | None = None
        self._store = store

    async def refresh(self) -> None:
        self._open = await self._load()
        self._span = await self._store.calendar_span()

    def __call__(self, day: date) -> bool:
        if self._span is not None and self._span[0] <= day <= self._span[1]:
            return day in self._open
        try:
            return builtin_is_trading_day(day)
        except ValueError:
            return day.weekday() < 5


class StoreRunLog:
    """The scheduler's run log is the store itself: a day is done once the update or a backfill has stored it in
    full (`Ingestor.last_update_day`; bars imported from files do not count), so a restart never repeats it."""

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor

    async def last_success(self) -> date | None:
        return await self._ingestor.last_update_day()

    async def record_success(self, day: date) -> None:
        return None  # the stored bars are the record


class LimitsRunLog:
    """The pre-open limits job's run log: the newest trading day a limits run stored. With none yet, the day
    before today (Shanghai) counts as done, so a first start after today's run time loads today's at once."""

    def __init__(self, store: DataStore, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock or (lambda: datetime.now(SHANGHAI))

    async def last_success(self) -> date | None:
        last = await self._store.last_limits_day(LIMITS_RUN)
        return last if last is not None else self._clock().astimezone(SHANGHAI).date() - timedelta(days=1)

    async def record_success(self, day: date) -> None:
        return None  # the succeeded run in ingest_runs is the record


# The pre-open limits load retries until the session opens; the bands read after it use the limits.
SESSION_OPENS = time(9, 30)
LIMITS_RETRY = RetryPolicy(max_attempts=1000, first_backoff=timedelta(seconds=30), max_backoff=timedelta(minutes=2))


def preopen_limits_job(store: DataStore, ingestor: Ingestor) -> Callable[[date], Awaitable[None]]:
    """The scheduler's job loading a trading day's exchange limits: nothing when a limits run of that day already
    succeeded (in another data process, or by hand); a run that does not succeed raises, and the scheduler retries."""

    async def load(day: date) -> None:
        if await store.limits_loaded(LIMITS_RUN, day) is not None:
            return
        result = await ingestor.load_limits(day)
        if result.status != SUCCEEDED:
            raise IngestError(f"the exchange limits of {day} could not be loaded: {result.error}")

    return load


def _limits_job_wanted(settings: Settings, asked: bool | None) -> bool:
    """The pre-open limits load: with LH_PREOPEN_LIMITS_AT set, a quotes feed on and Tushare as the provider (the
    demo market's limits are stored with it); under pytest only when a test asks (preopen_limits=True)."""
    if not settings.preopen_limits_at or settings.quotes_feed_mode() == "off":
        return False
    if asked is not None:
        return asked
    return settings.data_provider == "tushare" and "PYTEST_CURRENT_TEST" not in os.environ


def _scheduler_wanted(settings: Settings, asked: bool | None) -> bool:
    if asked is not None:
        return asked
    if not settings.data_update_at:
        return False
    # The demo market is static: nothing to update. Under pytest only when a test asks (scheduler=True).
    return settings.data_provider == "tushare" and "PYTEST_CURRENT_TEST" not in os.environ


def _start_feed(
    realtime: RealtimeQuotes | None, mode: str, settings: Settings, store: DataStore, infra: Infra
) -> ReplayFeed | PeriodicTask | None:
    """The real-time feed LH_QUOTES_FEED asks for: the replay feed, or (bridge) the minute bars' timer for the
    snapshots a bridge delivers over /v1/bridge/quotes; nothing when off."""
    if realtime is None or mode == "off":
        return None
    if mode == "replay":
        replay = ReplayFeed(
            store, realtime, infra.clock, interval_s=settings.quotes_replay_interval_s,
            speed=settings.quotes_replay_speed, grace_s=settings.quotes_bar_grace_s,
        )  # fmt: skip
        replay.start()
        return replay

    async def close_due_bars() -> None:
        await realtime.expire(infra.clock.now())

    timer = PeriodicTask("quotes-bar-timer", 1.0, close_due_bars)
    timer.start()
    return timer


def create_app(
    settings: Settings,
    infra: Infra | None = None,
    *,
    provider: MarketDataProvider | None = None,
    scheduler: bool | None = None,
    ingest_options: IngestOptions | None = None,
    preopen_limits: bool | None = None,
) -> FastAPI:
    """`provider` overrides the configured one (tests); `scheduler` forces the daily update on or off (default: on
    when LH_DATA_UPDATE_AT is set and the provider is Tushare, off under pytest); `preopen_limits` the pre-open limits
    job likewise (LH_PREOPEN_LIMITS_AT, and never with the quotes feed off)."""
    infra = infra or Infra.from_settings(settings, "data")
    db = Database(settings.database_url_for("data"), lock_wait_s=settings.db_lock_wait_s)
    read_cache = ReadCache(infra.cache, settings.bus_namespace)
    store = DataStore(db, on_change=read_cache.invalidate)
    read_cache.version = store.data_version
    relay = OutboxRelay(db, outbox, infra.bus)
    options = ingest_options or IngestOptions(skip_denied_optional=settings.ingest_skip_denied_endpoints)
    if settings.data_update_at:
        options = replace(options, ready_at=parse_run_time(settings.data_update_at))
    ingestor = Ingestor(
        store, provider if provider is not None else (lambda: make_provider(settings)), options=options,
        notify=relay.notify,
    )  # fmt: skip
    run_scheduler = _scheduler_wanted(settings, scheduler)
    run_limits_job = _limits_job_wanted(settings, preopen_limits)
    limits_at = parse_run_time(settings.preopen_limits_at) if settings.preopen_limits_at else None
    trading_days = TradingDays(store)

    stored_through: StoredThrough | None = None
    realtime: RealtimeQuotes | None = None
    feed_mode = settings.quotes_feed_mode()

    async def daily_update(day: date) -> None:
        result = await ingestor.update()
        await trading_days.refresh()
        if stored_through is not None:
            await stored_through.refresh()
        if result.status != SUCCEEDED:
            raise IngestError(f"daily update for {day} failed: {result.error}")

    load_limits_of_day = preopen_limits_job(store, ingestor)

    def limits_gave_up(day: date, error: str) -> None:
        data_metrics.preopen_limits_failed.set(1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.connect()
        try:
            await db.migrate(MIGRATIONS_DIR)
            interrupted = await ingestor.mark_interrupted()
            if interrupted:
                log.warning(
                    "%d ingest run(s) were interrupted by a stop; running them again completes them", interrupted
                )
            # The demo market only ever goes into a demo store: generated bars in a Tushare store would pass for
            # real ones (and `update` would continue from the demo's last day).
            if settings.data_provider == "demo" and settings.load_demo_data and await store.count_securities() == 0:
                await load_demo_market(store, settings)
            relay.start()
            task: asyncio.Task[None] | None = None
            if run_scheduler or run_limits_job:
                await trading_days.refresh()
            if stored_through is not None:
                await stored_through.refresh()
            watching: PeriodicTask | None = None
            if run_scheduler and stored_through is not None:
                watching = stored_through.watcher()
                watching.start()
            feed = _start_feed(realtime, feed_mode, settings, store, infra)
            app.state.feed = feed
            if run_scheduler:
                daily = DailyScheduler(
                    daily_update,
                    at=parse_run_time(settings.data_update_at or "17:30"),
                    is_trading_day=trading_days,
                    run_log=StoreRunLog(ingestor),
                )
                app.state.scheduler = daily
                task = asyncio.create_task(daily.run(), name="data-daily-update")
            limits_task: asyncio.Task[None] | None = None
            if run_limits_job and limits_at is not None:
                limits = DailyScheduler(
                    load_limits_of_day, at=limits_at, is_trading_day=trading_days, run_log=LimitsRunLog(store),
                    retry=LIMITS_RETRY, retry_until=SESSION_OPENS, on_give_up=limits_gave_up, name="pre-open limits",
                )  # fmt: skip
                app.state.limits_scheduler = limits
                limits_task = asyncio.create_task(limits.run(), name="data-preopen-limits")
            try:
                yield
            finally:
                if feed is not None:
                    await feed.stop()
                if watching is not None:
                    await watching.stop()
                for running in (task, limits_task):
                    if running is not None:
                        running.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await running
                await ingestor.stop()
                await relay.stop()
        finally:
            await db.dispose()

    app = create_service_app(
        "data",
        infra,
        # /v1/quotes/live and /v1/quotes/watch before /v1/quotes/{ts_code}
        routers=[live_router, watch_router, router, ingest_router],
        public_routers=[bridge_router],  # the bridge authenticates by the protocol's signed hello
        lifespan=lifespan,
        readiness={"db": db.ping},
    )
    quote_metrics = QuoteMetrics(app.state.metrics_registry, infra.clock.now)
    live_store: LiveStore = (
        RedisLiveStore(infra.cache.client, settings.bus_namespace)
        if isinstance(infra.cache, RedisCache)
        else MemoryLiveStore()
    )
    realtime = RealtimeQuotes(
        store, live_store, infra.bus, quote_metrics,
        grace_s=settings.quotes_bar_grace_s, max_skew_s=settings.quotes_max_skew_s,
    )  # fmt: skip
    app.state.quote_metrics = quote_metrics
    app.state.live_store = live_store
    app.state.realtime = realtime
    app.state.feed = None
    data_metrics = DataMetrics(app.state.metrics_registry)
    stored_through = StoredThrough(
        data_metrics, ingestor, trading_days, settings.data_update_at if run_scheduler else None
    )

    def run_finished(progress: Progress, status: str, result: IngestResult | None) -> None:
        assert stored_through is not None
        stored_through.run_finished(progress, status, result)
        if progress.kind == LIMITS_RUN and status == SUCCEEDED and realtime is not None:
            realtime.reload_bands()  # the day's next round uses the exchange's limits

    ingestor.on_finish = run_finished
    app.state.stored_through = stored_through
    app.state.db = db
    db.register_metrics(app.state.metrics_registry)
    app.state.store = store
    app.state.read_cache = read_cache
    app.state.ingestor = ingestor
    app.state.relay = relay
    app.state.scheduler = None
    app.state.limits_scheduler = None
    return app
