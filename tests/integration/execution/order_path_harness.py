"""An in-process fleet for the order-path tests: the risk and execution apps with their lifespans (real MariaDB,
RabbitMQ and Redis from `backing.settings()`), a fake data service implementing `GET /v1/quotes/{ts_code}` and
`GET /v1/reference` (the quotes of every security, with the data version as an ETag) as docs/architecture.md
describes them, and announcing a change of its quotes as the real one announces new bars (`bars.updated`), a fake
strategy service holding its instances' sleeves (which their orders carry; risk never asks it), switchable transports
and bus to simulate outages, and a RabbitMQ consumer."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import update

from services.execution.app import create_app as create_execution_app
from services.execution.store import ExecutionStore, trades
from services.risk.app import create_app as create_risk_app
from shared.core.market.calendar import FIRST_YEAR, LAST_YEAR, is_trading_day
from shared.platform.app import Infra, market_clock
from shared.platform.approval import OrderTerms, sign_approval
from shared.platform.bus import EventBus, EventHandler, JobHandler, create_bus
from shared.platform.bus.amqp import AmqpBus
from shared.platform.cache import create_cache
from shared.platform.clock import EXCHANGE_TZ, order_session, utcnow
from shared.platform.errors import ServiceError
from shared.platform.events import BarsUpdated, Envelope
from shared.platform.events.envelope import make_event
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token, verify_internal_token
from shared.platform.observability import new_id
from shared.platform.settings import Settings

# A quote's default next_trade_date: the fake data service answers the session an order placed now is for (on the
# real clock its limits are that session's only when the data service's newest session is the one before it).
NOW_SESSION = "the session of an order placed now"


def open_day(d: date) -> bool:
    """The fake data service's calendar: the built-in SSE calendar where it has the year, else weekdays."""
    return is_trading_day(d) if FIRST_YEAR <= d.year <= LAST_YEAR else d.weekday() < 5


def now_session(clock: Callable[[], datetime] = utcnow) -> str:
    """The session an order placed now (by `clock`, default the wall clock) is for, by the fake calendar."""
    now = clock()
    start = now.astimezone(EXCHANGE_TZ).date()
    day = order_session(now, [start + timedelta(days=i) for i in range(15) if open_day(start + timedelta(days=i))])
    assert day is not None
    return day.isoformat()


def quote(ts_code: str, last_close: str, limit_up: str, limit_down: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ts_code": ts_code,
        "name": ts_code,
        "board": "main",
        "is_st": False,
        "last_trade_date": "2024-12-31",
        "last_close": last_close,
        "suspended": False,
        "next_trade_date": NOW_SESSION,
        "limit_up": limit_up,
        "limit_down": limit_down,
    }
    body.update(kw)
    return body


# Main board, last close 10.00: limits 11.00 / 9.00 (10%). ST, last close 10.00: 10.50 / 9.50 (5%).
QUOTES = {
    "600000.SH": quote("600000.SH", "10.00", "11.00", "9.00"),
    "600001.SH": quote("600001.SH", "10.00", "10.50", "9.50", is_st=True),
    "000002.SZ": quote("000002.SZ", "8.00", "8.80", "7.20", suspended=True),
    "688981.SH": quote("688981.SH", "50.00", "60.00", "40.00", board="star"),
}


class FakeDataService:
    """The data service's quote and reference-data contract, nothing more. Checks the internal token like the real
    one. Its data version is a digest of its quotes: a test that changes them announces it (`Fleet.data_changed`)."""

    def __init__(self, internal_secret: str) -> None:
        self.quotes: dict[str, dict[str, Any]] = {k: dict(v) for k, v in QUOTES.items()}
        self.callers: list[str] = []
        self.fail_with: int | None = None  # answer every quote with this HTTP status
        # the live quotes (`GET /v1/quotes/{ts_code}/live`, docs/quotes.md): ts_code -> (last, time); none: 503
        # no_live_quote
        self.live: dict[str, tuple[str, datetime]] = {}
        # the clock whose order session a quote's default next_trade_date is (a test that moves execution's clock
        # moves this one with it)
        self.clock: Callable[[], datetime] = utcnow
        self.watches: list[dict[str, Any]] = []  # the bodies of PUT /v1/quotes/watch (the codes to have ticks of)
        self.app = FastAPI()

        @self.app.put("/v1/quotes/watch")
        async def put_watch(request: Request) -> JSONResponse:
            try:
                verify_internal_token(internal_secret, request.headers.get(INTERNAL_HEADER, ""))
            except ServiceError as exc:
                return JSONResponse(exc.body(), status_code=401)
            body = await request.json()
            self.watches.append(body)
            return JSONResponse({**body, "expires_at": utcnow().isoformat(), "watched": len(body["codes"]),
                                 "ticked": len(body["codes"])})  # fmt: skip

        @self.app.get("/v1/quotes/{ts_code}/live")
        async def get_live(ts_code: str, request: Request) -> JSONResponse:
            try:
                verify_internal_token(internal_secret, request.headers.get(INTERNAL_HEADER, ""))
            except ServiceError as exc:
                return JSONResponse(exc.body(), status_code=401)
            if ts_code not in self.quotes:
                return JSONResponse({"code": "unknown_security", "message": ts_code}, status_code=404)
            if ts_code not in self.live:
                return JSONResponse({"code": "no_live_quote", "message": f"no live quote of {ts_code}"},
                                    status_code=404)  # fmt: skip
            last, at = self.live[ts_code]
            return JSONResponse({"ts_code": ts_code, "last": last, "time": at.isoformat()})

        @self.app.get("/v1/quotes/{ts_code}")
        async def get_quote(ts_code: str, request: Request) -> JSONResponse:
            try:
                principal = verify_internal_token(internal_secret, request.headers.get(INTERNAL_HEADER, ""))
            except ServiceError as exc:
                return JSONResponse(exc.body(), status_code=401)
            self.callers.append(principal.subject)
            if self.fail_with is not None:
                return JSONResponse({"code": "internal_error", "message": "boom"}, status_code=self.fail_with)
            body = self.quotes.get(ts_code)
            if body is None:
                return JSONResponse({"code": "not_found", "message": f"no security {ts_code}"}, status_code=404)
            if body.get("next_trade_date") == NOW_SESSION:
                body = {**body, "next_trade_date": now_session(self.clock)}
            return JSONResponse(body)

        @self.app.get("/v1/reference")
        async def get_reference(request: Request, session: date | None = None) -> Response:
            try:
                principal = verify_internal_token(internal_secret, request.headers.get(INTERNAL_HEADER, ""))
            except ServiceError as exc:
                return JSONResponse(exc.body(), status_code=401)
            self.callers.append(principal.subject)
            if self.fail_with is not None:
                return JSONResponse({"code": "internal_error", "message": "boom"}, status_code=self.fail_with)
            # the session an order placed now is for stands in for "the session after the newest stored one" (the
            # data is current): the version covers it, so a copy held from before the clock moved is not served
            now = now_session(self.clock)
            quotes = {
                code: {**q, "next_trade_date": now} if q.get("next_trade_date") == NOW_SESSION else q
                for code, q in self.quotes.items()
            }
            text = json.dumps(quotes, sort_keys=True)
            version = int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
            tag = f'"v{version}"'
            if request.headers.get("If-None-Match") == tag:
                return Response(status_code=304, headers={"ETag": tag})
            rows = [{**q, "industry": None, "avg_vol_20d": None} for q in quotes.values()]
            next_day = str(session) if session is not None else now
            body = {"data_version": version, "session": None if session is None else str(session),
                    "next_trade_date": next_day, "securities": rows}  # fmt: skip
            return JSONResponse(body, headers={"ETag": tag})

        @self.app.get("/v1/calendar")
        async def get_calendar(start: date, end: date, request: Request) -> JSONResponse:
            # Not counted in `callers` (execution reads it in the background). The built-in SSE calendar where it
            # has the year, else weekdays.
            try:
                verify_internal_token(internal_secret, request.headers.get(INTERNAL_HEADER, ""))
            except ServiceError as exc:
                return JSONResponse(exc.body(), status_code=401)
            if self.fail_with is not None:
                return JSONResponse({"code": "internal_error", "message": "boom"}, status_code=self.fail_with)
            days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
            open_days = [d for d in days if open_day(d)]
            return JSONResponse(
                {"exchange": "SSE", "start": str(start), "end": str(end), "trading_days": [str(d) for d in open_days]}
            )


class FakeStrategyService:
    """The strategy service's side of an instance's order: the sleeves of its instances, which each of their orders
    carries to risk (`carried`, as the runner computes it when it sends the order). It also serves
    `GET /v1/strategy-instances/{id}/sleeve` (checking the internal token like the real one; 404
    `instance_not_found` for an instance it does not hold) and records every caller: risk must never ask it."""

    def __init__(self, internal_secret: str) -> None:
        self.sleeves: dict[str, dict[str, Any]] = {}
        self.callers: list[str] = []
        self.app = FastAPI()

        @self.app.get("/v1/strategy-instances/{instance_id}/sleeve")
        async def get_sleeve(instance_id: str, request: Request) -> JSONResponse:
            try:
                principal = verify_internal_token(internal_secret, request.headers.get(INTERNAL_HEADER, ""))
            except ServiceError as exc:
                return JSONResponse(exc.body(), status_code=401)
            self.callers.append(principal.subject)
            body = self.sleeves.get(instance_id)
            if body is None:
                return JSONResponse(
                    {"code": "instance_not_found", "message": f"no strategy instance {instance_id}"}, status_code=404
                )
            return JSONResponse(body)

    def add(
        self, account_id: str, *, state: str = "running", cash: str = "100000.00", positions: list[Any] | None = None
    ) -> str:
        """A new instance trading in `account_id`, with this sleeve; its id."""
        instance_id = new_id()
        assert len(instance_id) == 32
        self.sleeves[instance_id] = {
            "instance_id": instance_id,
            "account_id": account_id,
            "owner": account_id,
            "state": state,
            "cash_available": cash,
            "positions": positions or [],
        }
        return instance_id

    def carried(self, instance_id: str, ts_code: str = "600000.SH") -> dict[str, Any]:
        """The sleeve an order of the instance in `ts_code` carries (risk's OrderRequest.sleeve): its state, cash
        available and its position in that symbol (none: null)."""
        sleeve = self.sleeves[instance_id]
        position = next((p for p in sleeve["positions"] if p["ts_code"] == ts_code), None)
        return {
            "instance_id": instance_id,
            "account_id": sleeve["account_id"],
            "state": sleeve["state"],
            "cash_available": sleeve["cash_available"],
            "position": None if position is None else dict(position),
        }

    def order(self, body: dict[str, Any]) -> dict[str, Any]:
        """`body` (an order naming its strategy_instance_id) with the sleeve it carries."""
        return {**body, "sleeve": self.carried(body["strategy_instance_id"], body["ts_code"])}


class SwitchableTransport(httpx.AsyncBaseTransport):
    """An ASGI transport that can be 'unplugged': then every request fails to connect."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.down = False
        self.down_for: set[tuple[str, str]] = set()  # (method, path) pairs that fail while others go through
        self.attempts = 0  # every request tried through it, up or down

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.down or (request.method, request.url.path) in self.down_for:
            raise httpx.ConnectError("connection refused (test)", request=request)
        return await self.inner.handle_async_request(request)


class SwitchableBus:
    """The real AMQP bus, which a test can stop (connection closed, publishes fail) and restart."""

    def __init__(self, inner: AmqpBus) -> None:
        self.inner = inner
        self.down = False
        self.publish_failures = 0
        self.rejected_events = inner.rejected_events

    async def stop(self) -> None:
        self.down = True
        await self.inner.close()

    async def restart(self) -> None:
        await self.inner.start()
        self.down = False

    async def start(self) -> None:
        if not self.down:
            await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> bool:
        return not self.down and await self.inner.ping()

    async def publish(self, event: Envelope) -> None:
        if self.down:
            self.publish_failures += 1
            raise ConnectionError("the message broker is down (test)")
        await self.inner.publish(event)

    async def subscribe(
        self,
        consumer: str,
        patterns: list[str],
        handler: EventHandler,
        *,
        durable: bool = True,
        max_bytes: int | None = None,
    ) -> None:
        await self.inner.subscribe(consumer, patterns, handler, durable=durable, max_bytes=max_bytes)

    async def enqueue(self, queue: str, body: dict[str, Any], *, message_id: str) -> None:
        await self.inner.enqueue(queue, body, message_id=message_id)

    async def consume_jobs(self, queue: str, handler: JobHandler, *, prefetch: int = 1) -> None:
        await self.inner.consume_jobs(queue, handler, prefetch=prefetch)

    async def waiting_jobs(self, queue: str) -> int:
        return await self.inner.waiting_jobs(queue)


@dataclass
class EventLog:
    """Everything a test consumer received on RabbitMQ, from its own private queue."""

    events: list[Envelope] = field(default_factory=list)

    async def handle(self, event: Envelope) -> None:
        self.events.append(event)

    def of_order(self, order_id: str) -> list[Envelope]:
        return [e for e in self.events if e.payload.get("order_id") == order_id]

    def types_of(self, order_id: str) -> list[str]:
        return [e.type for e in self.of_order(order_id)]


@asynccontextmanager
async def event_log(settings: Settings) -> AsyncIterator[EventLog]:
    bus = AmqpBus(settings.amqp_url, namespace=settings.bus_namespace, source="test-consumer")
    log = EventLog()
    await bus.start()
    try:
        await bus.subscribe(
            f"test-{new_id()[:8]}", ["order.*", "trade.*", "risk.order.denied"], log.handle, durable=False
        )
        yield log
    finally:
        await bus.close()


async def until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await _value(predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.05)


async def _value(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


def trader(name: str | None = None) -> Principal:
    """A fresh trader with an account no other test uses (the run's databases are shared by all tests)."""
    name = name or f"trader-{new_id()[:8]}"
    return Principal(name, "trader", f"acct-{name}")


def order_body(**kw: Any) -> dict[str, Any]:
    """The body of an order sent to risk (`POST /v1/orders`): a limit buy of 1,000 600000.SH at 10.00 under a new
    client_order_id unless `kw` says otherwise."""
    body: dict[str, Any] = {
        "client_order_id": f"c-{new_id()[:10]}",
        "ts_code": "600000.SH",
        "side": "buy",
        "order_type": "limit",
        "qty": 1000,
        "price": "10.00",
    }
    body.update(kw)
    return body


def limit_buy(principal: Principal, **kw: Any) -> OrderTerms:
    """An order's terms for `principal`: a limit buy of 1,000 600000.SH at 10.00 unless `kw` says otherwise."""
    values: dict[str, Any] = {
        "client_order_id": f"c-{new_id()[:10]}",
        "account_id": principal.account_id,
        "ts_code": "600000.SH",
        "side": "buy",
        "order_type": "limit",
        "qty": 1000,
        "price": "10.00",
    }
    values.update(kw)
    return OrderTerms.model_validate(values)


def signed_order(settings: Settings, terms: OrderTerms) -> dict[str, Any]:
    """Execution's `POST /v1/orders` body: the terms with a fresh risk approval of them."""
    approval = sign_approval(settings.approval_secret, terms, new_id()).model_dump(mode="json")
    return {**terms.model_dump(mode="json"), "approval": approval}


def previous_session_moment() -> datetime:
    """10:00 (Asia/Shanghai) on the trading day before the session of an order placed now, by the fake calendar:
    shares bought then are sellable in that session (T+1)."""
    day = date.fromisoformat(now_session()) - timedelta(days=1)
    while not open_day(day):
        day -= timedelta(days=1)
    return datetime.combine(day, time(10, 0), tzinfo=EXCHANGE_TZ)


async def trades_were_yesterday(f: Fleet, account_id: str) -> None:
    """Move the account's trades back to the session before the one an order placed now is for (T+1: that
    session's buys are sellable now)."""
    async with f.store.db.session() as s:
        await s.execute(
            update(trades).where(trades.c.account_id == account_id).values(traded_at=previous_session_moment())
        )
    # Rewritten behind execution's back (no event says so): risk's book of the account is seeded again from
    # execution's snapshot, as its reconciliation would repair it.
    await f.risk_app.state.hot_book.drop(account_id)


def headers(settings: Settings, principal: Principal) -> dict[str, str]:
    return {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, principal)}


@dataclass
class Fleet:
    settings: Settings
    data: FakeDataService
    data_transport: SwitchableTransport
    execution_transport: SwitchableTransport
    execution_bus: EventBus
    risk_app: FastAPI
    execution_app: FastAPI
    risk: httpx.AsyncClient
    execution: httpx.AsyncClient
    strategy: FakeStrategyService
    strategy_transport: SwitchableTransport
    risk_transport: SwitchableTransport  # execution's way to risk (a conditional order's child)

    async def data_changed(self) -> None:
        """The data service announces new data (`bars.updated` on RabbitMQ, as after an ingest run), and risk and
        execution have heard it: what they hold of the data service's reference data is confirmed before its next
        use. Call it after changing `data.quotes`, as the real data service stores bars before announcing them."""
        holders = [self.risk_app.state.quotes, self.execution_app.state.broker.quotes.reference]
        before = [h.announcements for h in holders]
        day = date(2025, 1, 2)
        payload = BarsUpdated(trade_date=day, start_date=day, end_date=day, symbols=len(self.data.quotes), rows=1)
        await self.execution_bus.publish(make_event("bars.updated", payload, source="data"))
        await until(
            lambda: all(h.announcements > b for h, b in zip(holders, before, strict=True)),
            what="risk and execution hear bars.updated",
        )

    @property
    def store(self) -> ExecutionStore:
        store: ExecutionStore = self.execution_app.state.store
        return store

    def headers(self, principal: Principal) -> dict[str, str]:
        return headers(self.settings, principal)


@asynccontextmanager
async def fleet(
    settings: Settings, *, stoppable_bus: bool = False, risk_redis_url: str | None = None
) -> AsyncIterator[Fleet]:
    """`risk_redis_url`: a Redis of the test's own for risk (its hot books and activity), e.g. one the test stops;
    execution keeps `settings.redis_url`."""
    data = FakeDataService(settings.internal_secret)
    data_transport = SwitchableTransport(data.app)

    execution_bus: EventBus = create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="execution")
    if stoppable_bus:
        assert isinstance(execution_bus, AmqpBus)
        execution_bus = SwitchableBus(execution_bus)
    # filled in once risk exists: execution asks risk to decide a conditional order's child
    execution_transports: dict[str, httpx.AsyncBaseTransport] = {"data": data_transport}
    execution_infra = Infra(
        settings,
        execution_bus,
        create_cache(settings.redis_url),
        ServiceDirectory(settings, transports=execution_transports),
        clock=market_clock(settings),  # LH_MARKET_CLOCK: real unless a test shifts it
    )
    execution_app = create_execution_app(settings, execution_infra)
    execution_transport = SwitchableTransport(execution_app)
    strategy = FakeStrategyService(settings.internal_secret)
    strategy_transport = SwitchableTransport(strategy.app)

    risk_infra = Infra(
        settings,
        create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="risk"),
        create_cache(risk_redis_url or settings.redis_url),
        ServiceDirectory(
            settings,
            transports={"execution": execution_transport, "data": data_transport, "strategy": strategy_transport},
        ),
        clock=market_clock(settings),
    )
    risk_app = create_risk_app(settings, risk_infra)
    risk_transport = SwitchableTransport(risk_app)
    execution_transports["risk"] = risk_transport

    async with (
        execution_app.router.lifespan_context(execution_app),
        risk_app.router.lifespan_context(risk_app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=risk_app), base_url="http://risk") as risk,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=execution_app), base_url="http://execution") as execution,
    ):
        yield Fleet(
            settings=settings,
            data=data,
            data_transport=data_transport,
            execution_transport=execution_transport,
            execution_bus=execution_bus,
            risk_app=risk_app,
            execution_app=execution_app,
            risk=risk,
            execution=execution,
            strategy=strategy,
            strategy_transport=strategy_transport,
            risk_transport=risk_transport,
        )


async def settle(f: Fleet) -> None:
    """Wait until execution's outbox relay has published everything and is idle. Leaving the fleet while the relay
    is being woken up can make its shutdown wait the full grace period: on Python 3.11, asyncio.wait_for swallows a
    cancellation that arrives as the awaited wake-up completes (the idle wait of shared/platform/periodic.py's loop, which the relay runs)."""
    from services.execution.store import outbox

    relay = f.execution_app.state.relay
    await until(_drained(f, outbox), what="the outbox drained")
    await until(lambda: not relay._lock.locked() and not relay._loop.woken, what="the relay idle")


def _drained(f: Fleet, table: Any) -> Callable[[], Any]:
    async def check() -> bool:
        return await f.store.count(table, published_at=None) == 0

    return check


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one Prometheus sample in /metrics text, e.g. metric(t, "lh_orders_total", 'status="filled"')."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {wanted}")


async def set_global_rules(f: Fleet, rules: dict[str, Any], reason: str = "test") -> None:
    """Set the global rule set through risk's API as an admin (e.g. turn the duplicate rule off for a test that
    sends identical orders on purpose)."""
    admin = Principal("root", "admin", "acct-root")
    answer = await f.risk.put(
        "/v1/risk/rules/global", json={"key": "", "rules": rules, "reason": reason}, headers=f.headers(admin)
    )
    assert answer.status_code in (200, 201), answer.text


async def risk_caught_up(f: Fleet, account_id: str) -> None:
    """Wait until risk's hot book of the account agrees with execution (its events delivered): risk learns of a fill
    from execution's events, a few milliseconds after execution answered."""
    keeper = f.risk_app.state.keeper
    session = datetime.now(UTC).date()

    async def agrees() -> bool:
        return await keeper.difference(account_id, session) is None

    await until(agrees, what=f"risk's book of {account_id} agreeing with execution")
