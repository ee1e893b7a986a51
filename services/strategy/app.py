"""The strategy service's app factory: the catalogue of installed strategies (the classes found in the `strategies`
package when the service starts) and the strategy instances, in its own database with an outbox for their events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.strategy import instances_api
from services.strategy.api import router
from services.strategy.instances import InstanceService
from services.strategy.metrics import InstanceMetrics
from services.strategy.peers import DataServiceUniverse, ExecutionAccountCash
from services.strategy.ports import InstanceRunner, NoRunner
from services.strategy.store import MIGRATIONS, InstanceStore, outbox
from shared.platform.app import Infra, create_service_app
from shared.platform.db import Database
from shared.platform.outbox import OutboxRelay
from shared.platform.periodic import PeriodicTask
from shared.platform.settings import Settings
from shared.research.strategy import Strategy, describe, discover_strategies

SERVICE = "strategy"
# The instance-state gauge is refreshed after every change this process makes; this catches any other.
GAUGE_REFRESH_S = 60.0


def create_app(
    settings: Settings,
    infra: Infra | None = None,
    *,
    strategies: Mapping[str, type[Strategy]] | None = None,
    runner: InstanceRunner | None = None,
) -> FastAPI:
    """`strategies` defaults to those discovered in the `strategies` package; `runner` to `NoRunner` (the
    instances change state, nothing trades them yet: the runner lands next)."""
    infra = infra or Infra.from_settings(settings, SERVICE)
    found = strategies if strategies is not None else discover_strategies()
    db = Database(settings.database_url_for(SERVICE), lock_wait_s=settings.db_lock_wait_s)
    relay = OutboxRelay(db, outbox, infra.bus)  # publishes the instances' lifecycle events
    store = InstanceStore(db, on_event=relay.notify)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.connect()
        try:
            await db.migrate(MIGRATIONS)
            relay.start()
            gauge.start()
            try:
                yield
            finally:
                await gauge.stop()
                await relay.stop()
        finally:
            await db.dispose()

    app = create_service_app(
        SERVICE,
        infra,
        routers=[router, instances_api.router],
        lifespan=lifespan,
        readiness={"db": db.ping},
    )
    # Described once: the parameter schemas do not change while the process runs.
    app.state.strategies = {name: describe(cls) for name, cls in sorted(found.items())}
    app.state.db = db
    db.register_metrics(app.state.metrics_registry)
    app.state.store = store
    app.state.relay = relay
    app.state.instances = service = InstanceService(
        store,
        found,
        universe=DataServiceUniverse(infra.services, settings.internal_secret),
        cash=ExecutionAccountCash(infra.services, settings.internal_secret),
        runner=runner or NoRunner(),
        metrics=InstanceMetrics(app.state.metrics_registry),
    )
    gauge = PeriodicTask("strategy-instance-gauge", GAUGE_REFRESH_S, service.refresh_metrics)
    return app
