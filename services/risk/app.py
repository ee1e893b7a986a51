"""The risk service app: its database, the market-data and execution ports, and the desk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.risk import api, stops_api
from services.risk.batches import BatchStore, OrderBatches
from services.risk.desk import (
    BREACH_SETTER,
    ExecutionAccounts,
    ExecutionService,
    HotBooks,
    RiskDesk,
)
from services.risk.events import trading_state_changed
from services.risk.metrics import RiskMetrics
from services.risk.rule_sets import RuleBook, RuleSets, RuleSetStore
from services.risk.rules.base import TradingState
from services.risk.state.activity import ActivityLog, MemoryActivity, RedisActivity
from services.risk.state.keeper import BookKeeper
from services.risk.state.memory_book import MemoryHotBook
from services.risk.state.ports import HotBook
from services.risk.state.redis_book import RedisHotBook
from services.risk.state.snapshots import BookEvents, ExecutionSnapshots
from services.risk.stops import STOP_PASS_S, BookPositions, StopStore, StopWatcher
from services.risk.store import MIGRATIONS, RiskStore, Scope, outbox
from services.risk.trading_states import ExecutionCancels, KillSwitch
from shared.platform.app import Infra, create_service_app
from shared.platform.cache import RedisCache
from shared.platform.calendar import DataServiceCalendar
from shared.platform.clock import market_today, utcnow
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
# A rule set changed (by any risk process): each process's own queue, so every process reloads its rule book.
RULES_CONSUMER = "risk-rule-sets"
# Execution's events that keep risk's hot books: one durable queue the risk processes of a fleet share (each event is
# applied once by one of them, to the books in Redis they all read; none is lost while they are all down).
BOOK_CONSUMER = "risk-books"
BOOK_EVENTS = ["order.*", "trade.executed", "position.adjusted", "cash.moved"]
# Risk's books against execution's snapshots (docs/risk-rules.md "Hot state"): every this many seconds.
RECONCILE_S = 30.0
TRADING_STATES_GAUGE_S = 15.0  # how often lh_risk_trading_states is read from the table


def create_app(settings: Settings, infra: Infra | None = None) -> FastAPI:
    infra = infra or Infra.from_settings(settings, NAME)
    db = Database(settings.database_url_for(NAME), lock_wait_s=settings.db_lock_wait_s)
    relay = OutboxRelay(db, outbox, infra.bus)  # publishes the denials risk records (risk.order.denied)
    store = RiskStore(db, on_event=relay.notify)
    # The whole market's reference data (limits, suspension, ...) held in memory per session: no quote read per order.
    quotes = ReferenceQuotes(infra.services, settings.internal_secret, NAME, today=exchange_today(infra.clock.now))
    rule_set_store = RuleSetStore(db, on_event=relay.notify)
    rule_book = RuleBook(rule_set_store)  # the rule sets decisions read, in memory (docs/risk-rules.md)

    # The hot state: every account's book (cash, reservations, holdings, open orders) and its activity (counters,
    # recent orders, equity marks): in Redis in fleet mode, shared by every risk process; in memory standalone.
    hot: HotBook
    activity: ActivityLog
    if isinstance(infra.cache, RedisCache):
        prefix = f"{settings.bus_namespace}:risk"
        hot, activity = RedisHotBook(infra.cache.client, prefix), RedisActivity(infra.cache.client, prefix)
    else:
        hot, activity = MemoryHotBook(), MemoryActivity()

    stop_store = StopStore(db, on_event=relay.notify)
    stop_loop: PeriodicTask | None = None  # the stops' watcher (services/risk/stops.py), built with the desk below

    async def bars_updated(event: Envelope) -> None:
        await quotes.announced(event)
        if stop_loop is not None:
            stop_loop.wake()  # the stops see the new prices now

    replayed_session = infra.clock.session  # the replay clock's session (None on the real clock)

    async def book_event(event: Envelope) -> None:
        await keeper.on_event(event)
        if event.type == "order.cancelled":
            payload = event.parsed()
            # counted in the wall's second it is heard (as orders are: order rates are real seconds), on the
            # market's day of the cancel
            day = market_today(getattr(payload, "updated_at", None) or infra.clock.now(), replayed_session())
            await activity.note_cancel(
                payload.account_id,  # type: ignore[attr-defined]
                at=utcnow(),
                day=day,
                key=payload.client_order_id,  # type: ignore[attr-defined]
            )

    async def reconcile() -> None:
        await keeper.reconcile(market_today(infra.clock.now(), replayed_session()))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.connect()
        try:
            await db.migrate(MIGRATIONS)
            await rule_book.start()
            # The books are kept as they are (in Redis, other processes' orders in flight are reserved there); what
            # arrived while no risk process ran waits in the durable queue; a book Redis lost is seeded on first use.
            relay.start()
            store.start_outcome_writer()
            try:
                await infra.bus.subscribe(REFERENCE_CONSUMER, ["bars.updated"], bars_updated, durable=False)
                await infra.bus.subscribe(
                    RULES_CONSUMER, ["risk.rules.changed"], rule_book.on_rules_changed, durable=False
                )
                await infra.bus.subscribe(BOOK_CONSUMER, BOOK_EVENTS, book_event)
                assert stop_loop is not None
                stop_loop.start()
                reconcile_loop.start()
                states_loop.start()
                try:
                    yield
                finally:
                    await states_loop.stop()
                    await reconcile_loop.stop()
                    await stop_loop.stop()
            finally:
                await store.stop_outcome_writer()
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
    calendar = DataServiceCalendar(infra.services, settings.internal_secret, "risk")
    keeper = BookKeeper(
        hot,
        ExecutionSnapshots(infra.services, settings.internal_secret),
        to_event=lambda envelope: events(envelope),
        clock=utcnow,
        decided_ttl_s=settings.approval_ttl_s,
        reference_book=MemoryHotBook,
        registry=app.state.metrics_registry,
    )
    books = HotBooks(keeper, ExecutionAccounts(infra.services, settings.internal_secret))

    async def on_breach(account_id: str, state: TradingState, why: str) -> None:
        await store.set_trading_state(
            Scope.ACCOUNT, account_id, state.value, reason=why, by=BREACH_SETTER, at=utcnow(),
            make_event=trading_state_changed,
        )  # fmt: skip

    risk_metrics = RiskMetrics(app.state.metrics_registry)
    app.state.desk = RiskDesk(
        approval_secret=settings.require_approval_secret(),  # refuses to start without a real one
        approval_ttl_s=settings.approval_ttl_s,
        max_order_value=settings.max_order_value,
        quotes=quotes,
        books=books,
        execution=ExecutionService(infra.services, settings.internal_secret),
        decisions=store,
        trading_states=store,
        preflight=store,
        batch_log=store,
        metrics=risk_metrics,
        clock=infra.clock.now,
        market_session=infra.clock.session,
        calendar=calendar,
        rules=rule_book,
        activity=activity,
        on_breach=on_breach,
    )
    # batches of orders (POST /v1/order-batches): each item through the desk, the batch stored for its replays
    app.state.batches = OrderBatches(app.state.desk, BatchStore(db), max_orders=settings.batch_max_orders)
    # execution's events as the books' (a trade's T+1 session from the calendar the desk keeps)
    events = BookEvents(app.state.desk.sessions, infra.clock.session)
    reconcile_loop = PeriodicTask("risk-reconcile", RECONCILE_S, reconcile, run_at_start=False)

    async def count_trading_states() -> None:
        counts: dict[tuple[str, str], int] = {}
        for scoped in await store.trading_states(visible_accounts=None):
            counts[(scoped.scope, scoped.state)] = counts.get((scoped.scope, scoped.state), 0) + 1
        risk_metrics.trading_states_are(counts)

    # For Prometheus's LianghuaTradingHalted: what the table says, so every risk process reports the same.
    states_loop = PeriodicTask("risk-trading-states", TRADING_STATES_GAUGE_S, count_trading_states)
    app.state.states_loop = states_loop
    app.state.keeper = keeper
    app.state.hot_book = hot
    app.state.activity = activity
    app.state.reconcile_loop = reconcile_loop
    app.state.stop_store = stop_store
    app.state.stop_watcher = StopWatcher(
        stop_store,
        app.state.desk,
        quotes,
        BookPositions(books, app.state.desk.order_day),
        market_session=infra.clock.session,
        on_trigger=lambda stop: risk_metrics.stop_triggered(stop.kind),
    )
    stop_loop = PeriodicTask("risk-stops", STOP_PASS_S, app.state.stop_watcher.run_pass)
    app.state.stop_loop = stop_loop
    app.state.rule_book = rule_book
    app.state.rule_sets = RuleSets(rule_set_store, utcnow, on_change=rule_book.invalidate)
    app.state.kill_switch = KillSwitch(store, ExecutionCancels(infra.services, settings.internal_secret), utcnow)
    return app
