"""The execution service app: its database, the outbox relay, the broker adapter and reconciliation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any

from fastapi import FastAPI

from services.execution import api, bridge_api
from services.execution.amend import api as amend_api
from services.execution.amend import service as amending
from services.execution.amend.store import AmendStore
from services.execution.bridges import BridgeMetrics, BridgeRegistry
from services.execution.broker_sync import QmtSync
from services.execution.brokers.base import BrokerAdapter
from services.execution.brokers.paper import PaperBroker, PaperQuotes
from services.execution.brokers.qmt import QmtBroker
from services.execution.conditional import api as conditional_api
from services.execution.conditional import watcher as conditional
from services.execution.conditional.store import ConditionalStore
from services.execution.corporate import DataServiceExDates
from services.execution.desk import OrderDesk
from services.execution.events import bridge_link_event
from services.execution.live_quotes import QUOTES_CONSUMER, DataServiceQuotes, HeldQuotes
from services.execution.metrics import ExecutionMetrics
from services.execution.store import MIGRATIONS, ExecutionStore, outbox
from shared.core.domain import OrderStatus, to_fen
from shared.core.market.matching import FillRules
from shared.platform.app import Infra, create_service_app
from shared.platform.calendar import DataServiceCalendar, OrderSessions
from shared.platform.db import Database
from shared.platform.events import BarsUpdated, Envelope
from shared.platform.outbox import OutboxRelay
from shared.platform.periodic import PeriodicTask
from shared.platform.quote_watch import CHECK_S, QuoteWatch, data_service_put, owner_name
from shared.platform.quotes import exchange_today
from shared.platform.settings import Settings

NAME = "execution"
BARS_CONSUMER = "execution-paper-sessions"
# The paper broker's reference data held in memory is dropped by the data service's announcements: a queue of each
# process's own (not durable: a process that starts loads afresh).
REFERENCE_CONSUMER = "execution-reference-data"
# LH_PAPER_FILLS=quotes: the real-time feed's rounds, which resting paper orders are matched against and whose quotes
# each process keeps as the latest (an order arriving is matched against them at once). It comes on the one queue of
# the feed's rounds (live_quotes.QUOTES_CONSUMER: each process's own, not durable — a round is superseded by the next,
# and a process that was down must not match old rounds on start).
# How long shutdown waits for background work to reach a safe point (the broker call in hand has its own timeout).
STOP_GRACE_S = 15.0
log = logging.getLogger(__name__)


def create_app(settings: Settings, infra: Infra | None = None, *, broker: BrokerAdapter | None = None) -> FastAPI:
    """`broker`: the adapter to trade through; the paper broker (fed by the data service) when None."""
    infra = infra or Infra.from_settings(settings, NAME)
    db = Database(settings.database_url_for(NAME), lock_wait_s=settings.db_lock_wait_s)
    store = ExecutionStore(db, source=NAME, opening_cash_fen=to_fen(settings.paper_opening_cash))
    relay = OutboxRelay(db, outbox, infra.bus)
    clock = infra.clock  # shared with risk (and every service) in standalone mode
    quotes = PaperQuotes(infra.services, settings.internal_secret, today=exchange_today(clock.now))
    calendar = DataServiceCalendar(infra.services, settings.internal_secret)
    order_sessions = OrderSessions(calendar)  # the calendar's days in memory, for the desk and the paper broker alike
    adapter: BrokerAdapter = broker or PaperBroker(
        db,
        quotes,
        clock=clock.now,
        market_session=clock.session,
        sessions=quotes,
        rules=paper_fill_rules(settings),
        calendar=calendar,
        fills=settings.paper_fills,
        order_sessions=order_sessions,
        live_quotes=quotes,
    )
    # The paper broker matching on the real clock: a complete `bars.updated` brings the bars that resting orders wait
    # for, so the day-order pass runs at once rather than at its next turn.
    matches_on_bars = isinstance(adapter, PaperBroker) and adapter.fills in ("session", "quotes")
    matches_on_quotes = isinstance(adapter, PaperBroker) and adapter.fills == "quotes"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.connect()
        try:
            await db.migrate(MIGRATIONS)
            # no bridge configured and no account bound to one: every order is the paper broker's, without a read
            app.state.desk.qmt_possible = bool(bridges.secrets) or bool(await store.bound_bridges())
            relay.start()
            reconciler = app.state.desk.reconciler(stop_grace_s=STOP_GRACE_S)
            reconciler.start()
            qmt_sync.loop.start()
            try:
                # Conditional orders: armed ones loaded and the start noted (a trigger seen from before it was missed
                # while down) before the quotes' queue, which kept the rounds published meanwhile, is consumed.
                await conditional_watcher.start()
                conditional_loop.start()
                amend_loop.start()  # amends a restart interrupted are completed (once) by its first pass
                if settings.quotes_ticks and settings.quotes_feed_mode() == "bridge":
                    watch_loop.start()
                await infra.bus.subscribe(
                    conditional.CONSUMER,
                    ["quotes.snapshot"],
                    conditional_watcher.on_quotes,
                    max_bytes=conditional.QUEUE_MAX_BYTES,
                )
                await infra.bus.subscribe(REFERENCE_CONSUMER, ["bars.updated"], quotes.announced, durable=False)

                # The feed's rounds, on one queue: the latest price of each code (an order's arrival price,
                # docs/tca.md) and, with the paper broker on quotes, its matching of the resting orders.
                async def on_quotes(event: Envelope) -> None:
                    await held_quotes.on_snapshot(event)
                    if matches_on_quotes:
                        await app.state.desk.on_quotes(event)

                await infra.bus.subscribe(QUOTES_CONSUMER, ["quotes.snapshot"], on_quotes, durable=False)
                if matches_on_bars:

                    async def on_bars(event: Envelope) -> None:
                        parsed = event.parsed()
                        if isinstance(parsed, BarsUpdated) and parsed.complete:
                            reconciler.wake()

                    await infra.bus.subscribe(BARS_CONSUMER, ["bars.updated"], on_bars)
                yield
            finally:
                await watch_loop.stop(grace_s=STOP_GRACE_S)
                await amend_loop.stop(grace_s=STOP_GRACE_S)
                await conditional_loop.stop(grace_s=STOP_GRACE_S)
                await qmt_sync.loop.stop(grace_s=STOP_GRACE_S)
                await reconciler.stop()
                await relay.stop(grace_s=STOP_GRACE_S)
        finally:
            await db.dispose()

    app = create_service_app(
        NAME,
        infra,
        routers=[api.router, amend_api.router, conditional_api.router, bridge_api.router],
        public_routers=[bridge_api.bridge_socket],  # a bridge authenticates by the protocol's handshake
        lifespan=lifespan,
        readiness={"db": db.ping},
    )
    # QMT bridges (docs/qmt-bridge.md, "Execution"): the accounts an admin bound to one trade through it.
    bridge_metrics = BridgeMetrics(app.state.metrics_registry)
    bridges = BridgeRegistry(
        settings.qmt_bridge_secret_map(),
        bound_account=store.account_of_bridge,
        switches=_switches(store),
        metrics=bridge_metrics,
    )  # the wall clock (a hello's timestamp is checked against it), not the market clock
    qmt = QmtBroker(store, bridges, grace_s=settings.qmt_unknown_grace_s)
    qmt.notify, qmt.source = relay.notify, NAME
    held_quotes = HeldQuotes()
    app.state.db = db
    db.register_metrics(app.state.metrics_registry)
    app.state.store = store
    app.state.relay = relay
    app.state.broker = adapter
    app.state.desk = OrderDesk(
        approval_secret=settings.require_approval_secret(),  # refuses to start without a real one
        approval_ttl_s=settings.approval_ttl_s,
        store=store,
        broker=adapter,
        metrics=ExecutionMetrics(app.state.metrics_registry),
        notify=relay.notify,
        quotes=quotes,
        calendar=calendar,
        clock=clock.now,
        market_session=clock.session,
        order_sessions=order_sessions,
        ex_dates=DataServiceExDates(infra.services, settings.internal_secret),
        qmt=qmt,
        held_quotes=held_quotes,
        live_quotes=DataServiceQuotes(infra.services, settings.internal_secret),
    )
    app.state.bridges = bridges
    app.state.qmt = qmt
    # Conditional orders (docs/conditional-orders.md): held here, triggered by the quotes and the market clock,
    # their children decided by risk.
    conditional_store = ConditionalStore(db, source=NAME, on_event=relay.notify)
    conditional_prices = conditional.DataLivePrices(infra.services, settings.internal_secret)
    desk = app.state.desk

    async def conditional_session(at: datetime) -> date:
        """The session of a conditional order triggered at `at`: that of an order placed then (the trade calendar's,
        or the replayed one); its child not placed by that session's close, it expires."""
        return (await desk.order_session(at)).day

    conditional_watcher = conditional.ConditionalWatcher(
        conditional_store,
        conditional.RiskService(infra.services, settings.internal_secret),
        conditional_prices,
        _OrderStates(store),
        market_now=clock.now,
        session_of=conditional_session,
    )
    conditional_loop = PeriodicTask("conditional-orders", conditional.PASS_S, conditional_watcher.run_pass,
                                    stop_grace_s=STOP_GRACE_S)  # fmt: skip
    app.state.conditional_store = conditional_store
    app.state.conditional_prices = conditional_prices
    app.state.conditional_watcher = conditional_watcher
    app.state.conditional_loop = conditional_loop
    app.state.conditional_clock = clock.now

    # The codes whose ticks the QMT bridge should forward (docs/quotes.md, "Ticks of the watched codes"): those of
    # the open orders and of the armed price-triggered conditional orders, leased at the data service.
    async def watched_codes() -> set[str]:
        return await store.open_order_codes() | set(conditional_watcher.by_code)

    quote_watch = QuoteWatch(owner_name(NAME), watched_codes, data_service_put(infra.services,
                             settings.internal_secret, NAME))  # fmt: skip
    watch_loop = PeriodicTask("quote-watch", CHECK_S, quote_watch.check, stop_grace_s=STOP_GRACE_S)
    app.state.quote_watch = quote_watch

    # Amends (docs/order-path.md "Amending an order"): cancel, then the replacement through risk once confirmed.
    amend_store = AmendStore(db)
    amender = amending.Amender(
        amend_store,
        desk,
        amending.RiskReplacements(infra.services, settings.internal_secret),
        market_now=clock.now,
        session_of=conditional_session,
    )
    desk.amends = amender  # a user's cancel (or cancel-all) stops an amend in progress first
    amend_loop = PeriodicTask("order-amends", amending.PASS_S, amender.run_pass, stop_grace_s=STOP_GRACE_S)
    app.state.amend_store = amend_store
    app.state.amender = amender
    app.state.amend_loop = amend_loop

    async def positions_session() -> Any:
        return await desk.order_session(clock.now())

    qmt_sync = QmtSync(store, qmt, bridges, bridge_metrics, sessions=positions_session, notify=relay.notify,
                       interval_s=settings.qmt_reconcile_s)  # fmt: skip
    bridges.on_push = qmt.on_push
    bridges.on_hello = qmt_sync.wake
    bridges.on_link = _link_publisher(infra, bridges.clock)
    app.state.qmt_sync = qmt_sync
    return app


def _link_publisher(infra: Infra, clock: Callable[[], datetime]) -> Callable[[str, str, bool, str | None], None]:
    """Publishes `broker.bridge.connected|disconnected` in the background: a bridge's link is never held up by the
    bus, and a publish that fails is logged (Prometheus's bridge gauge still tells)."""
    in_flight: set[asyncio.Task[None]] = set()

    async def publish(bridge_id: str, account_id: str, connected: bool, why: str | None) -> None:
        event = bridge_link_event(bridge_id, account_id, connected=connected, why=why, at=clock(), source=NAME)
        try:
            await infra.bus.publish(event)
        except Exception:
            log.exception("bridge link event not published", extra={"bridge_id": bridge_id, "type": event.type})

    def on_link(bridge_id: str, account_id: str, connected: bool, why: str | None) -> None:
        task = asyncio.create_task(publish(bridge_id, account_id, connected, why))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    return on_link


class _OrderStates:
    """The status and filled quantity of an order execution holds (a bracket's entry)."""

    def __init__(self, store: ExecutionStore) -> None:
        self.store = store

    async def order_status(self, order_id: str) -> tuple[OrderStatus, int] | None:
        stored = await self.store.get_order(order_id)
        return None if stored is None else (stored.order.status, stored.order.filled_qty)


def _switches(store: ExecutionStore) -> Callable[[str], Awaitable[dict[str, bool]]]:
    async def switches(bridge_id: str) -> dict[str, bool]:
        return (await store.trading_switch(bridge_id)).wire()

    return switches


def paper_fill_rules(settings: Settings) -> FillRules:
    """The paper broker's matching rules on a replayed session (LH_PAPER_*), the backtest's rules of the same names;
    the A-share rules (price limits, lots, T+1) always apply, and an order for a suspended symbol waits."""
    return FillRules(
        fill_price=settings.paper_fill_price,
        slippage=settings.paper_slippage,
        slippage_amount=settings.paper_slippage_amount,
        volume_cap=settings.paper_volume_cap,
        suspended_orders="wait",
    )
