"""The strategy service's app factory: the catalogue of installed strategies (the classes found in the `strategies`
package and the folders of LH_STRATEGY_DIRS when the service starts, kept current by hot reload) and the strategy
instances, in its own database with an outbox for their events."""

from __future__ import annotations

import logging
import tempfile
import traceback
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.strategy import instances_api, live_api
from services.strategy.api import router
from services.strategy.book import DayClose
from services.strategy.instances import InstanceService
from services.strategy.lifecycle import State
from services.strategy.live import Runner
from services.strategy.metrics import InstanceMetrics
from services.strategy.peers import DataServiceUniverse, ExecutionAccountCash
from services.strategy.ports import InstanceRunner
from services.strategy.reload import ReloadMetrics, ServiceReloadReports, StrategyWatcher
from services.strategy.reports import InstanceReports, RunMetrics
from services.strategy.store import MIGRATIONS, InstanceStore, outbox
from services.strategy.trading import ExecutionReplaySessions, RestTradingPath
from shared.platform.app import Infra, create_service_app
from shared.platform.db import Database
from shared.platform.internal_auth import service_headers
from shared.platform.market_data import MarketData
from shared.platform.outbox import OutboxRelay
from shared.platform.periodic import PeriodicTask
from shared.platform.settings import Settings
from shared.research.strategy import Strategy, describe, discover_strategies, strategies_by_name
from shared.research.strategy.registry import discover_folders, folder_files, package_files

SERVICE = "strategy"
log = logging.getLogger(__name__)
ORDER_TIMING_S = 5.0  # how often the runner looks for a session whose order window has opened
RUNNER_CONSUMER = "strategy-runner"
RUNNER_EVENTS = ["trade.executed", "order.*", "bars.updated"]
# The instance-state gauge is refreshed after every change this process makes; this catches any other.
GAUGE_REFRESH_S = 60.0


def create_app(
    settings: Settings,
    infra: Infra | None = None,
    *,
    strategies: Mapping[str, type[Strategy]] | None = None,
    runner: InstanceRunner | None = None,
) -> FastAPI:
    """`strategies` defaults to those discovered in the `strategies` package (the folders of LH_STRATEGY_DIRS add
    theirs either way); `runner` to the service's own (`services.strategy.live.Runner`), which trades the instances
    through risk and execution. With that runner, hot reload watches the files of the package (when `strategies` is
    not given) and of the folders every LH_STRATEGY_RELOAD_S seconds (services/strategy/reload.py)."""
    infra = infra or Infra.from_settings(settings, SERVICE)
    folders = settings.strategy_folders()
    # One dict, read by the instance API and the runner alike: hot reload updates it in place
    found: dict[str, type[Strategy]] = strategies_by_name(
        [*(strategies if strategies is not None else discover_strategies()).values(),
         *discover_folders(folders).values()]
    )  # fmt: skip
    db = Database(settings.database_url_for(SERVICE), lock_wait_s=settings.db_lock_wait_s)
    relay = OutboxRelay(db, outbox, infra.bus)  # publishes the instances' lifecycle events
    store = InstanceStore(db, on_event=relay.notify)
    reports = InstanceReports(store)
    live: Runner | None = None
    if runner is None:
        live = Runner(
            strategies=found,
            market=lambda: market_data(infra, settings),
            path=RestTradingPath(infra.services, settings.internal_secret),
            books=StoredBooks(store),
            sessions=(
                ExecutionReplaySessions(infra.services, settings.internal_secret)
                if settings.market_clock == "replay"
                else None
            ),
            events=reports,
            now=infra.clock.now,
            orders_in_flight=settings.strategy_orders_in_flight,
            batch_orders=settings.batch_max_orders,
        )
        runner = live
    timing = PeriodicTask("strategy-order-timing", ORDER_TIMING_S, live.tick) if live is not None else None
    watcher: StrategyWatcher | None = None
    watching: PeriodicTask | None = None
    if live is not None and settings.strategy_reload_s > 0:
        watcher = StrategyWatcher(
            lambda: {**(package_files() if strategies is None else {}), **folder_files(folders)},
            found,
            live.swap_strategy,
            ServiceReloadReports(
                store.emit,
                lambda instance_id, detail: service.reloaded(instance_id, detail),
                lambda instance_id: spec.owner if (spec := live.specs.get(instance_id)) else None,
            ),
            on_loaded=lambda cls: described(app, cls),
        )
        watching = PeriodicTask("strategy-reload", settings.strategy_reload_s, watcher.scan, run_at_start=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.connect()
        try:
            await db.migrate(MIGRATIONS)
            relay.start()
            gauge.start()
            if live is not None:
                await infra.bus.subscribe(RUNNER_CONSUMER, RUNNER_EVENTS, live.on_event)
                await recover(store, live, service)
            if timing is not None:
                timing.start()
            if watching is not None:
                watching.start()
            try:
                yield
            finally:
                if watching is not None:
                    await watching.stop()
                if timing is not None:
                    await timing.stop()
                if live is not None:
                    await live.close()
                await gauge.stop()
                await relay.stop()
        finally:
            await db.dispose()

    app = create_service_app(
        SERVICE,
        infra,
        routers=[router, instances_api.router, instances_api.allocation_router, live_api.router],
        lifespan=lifespan,
        readiness={"db": db.ping},
    )
    # Described once, and again for a class hot reload takes (its parameter schema may have changed).
    app.state.strategies = {name: describe(cls) for name, cls in sorted(found.items())}
    app.state.market = market_data(infra, settings)  # the bars the indicator series (api.py) compute over
    app.state.db = db
    db.register_metrics(app.state.metrics_registry)
    app.state.store = store
    app.state.relay = relay
    app.state.instances = service = InstanceService(
        store,
        found,
        universe=DataServiceUniverse(infra.services, settings.internal_secret),
        cash=ExecutionAccountCash(infra.services, settings.internal_secret),
        runner=runner,
        metrics=InstanceMetrics(app.state.metrics_registry),
    )
    reports.instances = service
    app.state.runner = live
    reports.metrics = RunMetrics(app.state.metrics_registry)
    if watcher is not None:
        watcher.metrics = ReloadMetrics(app.state.metrics_registry)
    gauge = PeriodicTask("strategy-instance-gauge", GAUGE_REFRESH_S, service.refresh_metrics)
    return app


def described(app: FastAPI, cls: type[Strategy]) -> None:
    """The catalogue's description of a class hot reload took (its parameter schema may have changed)."""
    app.state.strategies = dict(sorted({**app.state.strategies, cls.name: describe(cls)}.items()))


class StoredBooks:
    """The runner's book store over the instances' table of books."""

    def __init__(self, store: InstanceStore) -> None:
        self.store = store

    async def load_book(self, instance_id: str) -> dict[str, Any] | None:
        saved = await self.store.load_book(instance_id)
        return None if saved is None else saved.book

    async def save_book(
        self, instance_id: str, bar_date: date | None, book: dict[str, Any], day: DayClose | None = None
    ) -> None:
        await self.store.save_book(instance_id, bar_date, book, day)


def market_data(infra: Infra, settings: Settings) -> MarketData:
    """The data service's bars, cached on disk per data version like the backtest workers' (its own folder)."""
    cache = Path(tempfile.gettempdir()) / "lianghua-strategy-cache" / settings.bus_namespace
    return MarketData(infra.services.client("data"), lambda: service_headers(settings.internal_secret, SERVICE), cache)


async def recover(store: InstanceStore, runner: Runner, service: InstanceService) -> None:
    """After a restart: the instances that were running (or paused) carry on from their stored books; one that
    cannot is failed with the reason, the others go on."""
    for instance in await store.find(states=[State.RUNNING, State.PAUSED]):
        try:
            await runner.recover(instance)
            await runner.started(instance.instance_id)
        except Exception:
            log.exception("could not resume a strategy instance", extra={"instance_id": instance.instance_id})
            await service.fail(instance.instance_id, traceback.format_exc())
