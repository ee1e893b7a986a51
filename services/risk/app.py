"""The risk service app: its database, the market-data and execution ports, and the desk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.risk import api, stops_api
from services.risk.desk import ExecutionCash, ExecutionPositions, ExecutionService, RiskDesk, StrategySleeves
from services.risk.metrics import RiskMetrics
from services.risk.rule_sets import RuleBook, RuleSets, RuleSetStore
from services.risk.stops import STOP_PASS_S, StopStore, StopWatcher
from services.risk.store import MIGRATIONS, RiskStore, outbox
from services.risk.trading_states import ExecutionCancels, KillSwitch
from shared.platform.app import Infra, create_service_app
from shared.platform.calendar import DataServiceCalendar
from shared.platform.clock import utcnow
from shared.platform.db import Database
from shared.platform.events import Envelope
from shared.platform.outbox import OutboxRelay
from shared.platform.periodic import PeriodicTask
from shared.platform.quotes import ReferenceQuotes, exchange_today
from shared.platform.settings import Settings

NAME = "risk"
# The data service's announcements of new data, which drop the reference data risk holds: a queue of each process's
# own (not durable: a process that starts loads afresh), so every risk process of a fleet hears them.
REFERENCE_CONSUMER = "risk-reference-data"


def create_app(settings: Settings, infra: Infra | None = None) -> FastAPI:
    infra = infra or Infra.from_settings(settings, NAME)
    db = Database(settings.database_url_for(NAME), lock_wait_s=settings.db_lock_wait_s)
    relay = OutboxRelay(db, outbox, infra.bus)  # publishes the denials risk records (risk.order.denied)
    store = RiskStore(db, on_event=relay.notify)
    # The whole market's reference data (limits, suspension, ...) held in memory per session: no quote read per order.
    quotes = ReferenceQuotes(infra.services, settings.internal_secret, NAME, today=exchange_today(infra.clock.now))
    rule_set_store = RuleSetStore(db, on_event=relay.notify)
    rule_book = RuleBook(rule_set_store)  # the rule sets decisions read, in memory (docs/risk-rules.md)

    stop_store = StopStore(db, on_event=relay.notify)
    stop_loop: PeriodicTask | None = None  # the stops' watcher (services/risk/stops.py), built with the desk below

    async def bars_updated(event: Envelope) -> None:
        await quotes.announced(event)
        if stop_loop is not None:
            stop_loop.wake()  # the stops see the new prices now

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.connect()
        try:
            await db.migrate(MIGRATIONS)
            await rule_book.start()
            relay.start()
            try:
                await infra.bus.subscribe(REFERENCE_CONSUMER, ["bars.updated"], bars_updated, durable=False)
                assert stop_loop is not None
                stop_loop.start()
                try:
                    yield
                finally:
                    await stop_loop.stop()
            finally:
                await relay.stop()
        finally:
            await db.dispose()

    app = create_service_app(
        NAME, infra, routers=[api.router, stops_api.router], lifespan=lifespan, readiness={"db": db.ping}
    )
    app.state.db = db
    db.register_metrics(app.state.metrics_registry)
    app.state.store = store
    app.state.relay = relay
    app.state.quotes = quotes
    app.state.desk = RiskDesk(
        approval_secret=settings.require_approval_secret(),  # refuses to start without a real one
        approval_ttl_s=settings.approval_ttl_s,
        max_order_value=settings.max_order_value,
        quotes=quotes,
        positions=ExecutionPositions(infra.services, settings.internal_secret),
        cash=ExecutionCash(infra.services, settings.internal_secret),
        sleeves=StrategySleeves(infra.services, settings.internal_secret),
        execution=ExecutionService(infra.services, settings.internal_secret),
        decisions=store,
        trading_states=store,
        metrics=RiskMetrics(app.state.metrics_registry),
        clock=infra.clock.now,
        market_session=infra.clock.session,
        calendar=DataServiceCalendar(infra.services, settings.internal_secret, "risk"),
    )
    app.state.stop_store = stop_store
    app.state.stop_watcher = StopWatcher(
        stop_store,
        app.state.desk,
        quotes,
        ExecutionPositions(infra.services, settings.internal_secret),
        market_session=infra.clock.session,
    )
    stop_loop = PeriodicTask("risk-stops", STOP_PASS_S, app.state.stop_watcher.run_pass)
    app.state.stop_loop = stop_loop
    app.state.rule_book = rule_book
    app.state.rule_sets = RuleSets(rule_set_store, utcnow, on_change=rule_book.invalidate)
    app.state.kill_switch = KillSwitch(store, ExecutionCancels(infra.services, settings.internal_secret), utcnow)
    return app
