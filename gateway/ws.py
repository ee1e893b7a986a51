"""`/ws`: order, trade, backtest and strategy-instance events pushed to the browser. One bus subscription per
gateway process fans out to every socket; each socket sees only its own account's events (an admin sees all).
Real-time quotes (`quotes.snapshot`, `bars.1m`) go only to sockets that subscribed to codes, each receiving only its
codes' items (docs/quotes.md): `{"op": "subscribe" | "unsubscribe", "codes": [...]}`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Query, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gateway.auth import CurrentUser, HeaderError, authenticate, client_group, enforce_rate_limit
from gateway.schemas import QuoteSubscription
from shared.core.domain.codes import InvalidTsCode, parse_ts_code
from shared.platform.events.envelope import Envelope
from shared.platform.events.schemas import (
    BacktestFinished,
    BacktestProgress,
    ConditionalOrderChanged,
    OrderDenied,
    OrderUpdated,
    RiskAlert,
    StopTriggered,
    StrategyCodeRejected,
    StrategyInstanceBar,
    StrategyInstanceChanged,
    TradeExecuted,
)
from shared.platform.roles import Role

log = logging.getLogger(__name__)

EVENT_PATTERNS = [
    "order.*",
    "trade.*",
    "risk.order.denied",
    "risk.alert",
    "risk.stop.*",
    "conditional.*",
    "backtest.*",
    "strategy.instance.*",
    "strategy.code.*",
    "quotes.snapshot",
    "bars.1m",
]
# Market data for the sockets subscribed to codes, by the payload's list of items (each with its ts_code).
QUOTE_EVENTS = {"quotes.snapshot": "quotes", "bars.1m": "bars"}
MAX_CODES = 50  # the default of LH_QUOTES_WS_MAX_CODES
CONSUMER = "gateway-ws"
# Events waiting for one socket. A client this far behind is not reading: it is dropped rather than let its backlog
# grow without bound (it reconnects and reloads the orders table, which is the source of truth anyway).
QUEUE_SIZE = 256
CLOSE_TIMEOUT_S = 2.0
# An open socket re-checks its credentials this often: a revoked API key, a disabled user or a demoted role stops
# (or narrows) its stream within this time, as REST requests stop at once.
REAUTH_INTERVAL_S = 30.0
# Event ids remembered to drop duplicates: delivery is at-least-once (outbox relays may publish an event twice).
RECENT_EVENT_IDS = 4096

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4408
CLOSE_TOO_MANY = 4429  # more handshakes from this client address than the rate limit allows this minute
CLOSE_GOING_AWAY = 1001

router = APIRouter()


def visible_to(user: CurrentUser, event: Envelope) -> bool:
    """Order events (risk's denials, alerts and stop triggers, execution's conditional orders too) and trade events
    name their `account_id`; backtest events their `owner` (a username); a strategy instance's events its `owner`
    (and its lifecycle events its `account_id`, whose user sees the instance too); a refused hot reload
    (`strategy.code.rejected`) the owner of the instance it names. Read from the payload as its schema: the bus
    dead-letters one that does not parse, before this."""
    if user.role is Role.ADMIN:
        return True
    payload = event.parsed()
    if isinstance(
        payload, OrderUpdated | OrderDenied | TradeExecuted | RiskAlert | StopTriggered | ConditionalOrderChanged
    ):
        return payload.account_id == user.account_id
    if isinstance(payload, BacktestFinished | BacktestProgress):
        return payload.owner is not None and payload.owner == user.username
    if isinstance(payload, StrategyInstanceChanged):
        return payload.owner == user.username or payload.account_id == user.account_id
    if isinstance(payload, StrategyInstanceBar):
        return payload.owner == user.username
    if isinstance(payload, StrategyCodeRejected):
        # an instance kept its old code: its owner hears; a file that did not import names no one (admins)
        return payload.owner is not None and payload.owner == user.username
    return False  # an event of a type this stream does not route: nobody but an admin sees it


@dataclass(eq=False)
class Subscriber:
    user: CurrentUser
    queue: asyncio.Queue[str]
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    codes: set[str] = field(default_factory=set)  # real-time quotes subscribed to
    stop_code: int = CLOSE_GOING_AWAY
    stop_reason: str = ""

    def stop(self, code: int, reason: str) -> None:
        if not self.stopped.is_set():
            self.stop_code, self.stop_reason = code, reason
            self.stopped.set()


class EventHub:
    """The bus handler never awaits a socket: it only queues, so one slow client cannot hold up the others."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._recent: OrderedDict[str, None] = OrderedDict()

    def _seen(self, event_id: str) -> bool:
        if event_id in self._recent:
            return True
        self._recent[event_id] = None
        if len(self._recent) > RECENT_EVENT_IDS:
            self._recent.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._subscribers)

    def add(self, user: CurrentUser) -> Subscriber:
        subscriber = Subscriber(user, asyncio.Queue(maxsize=self.queue_size))
        self._subscribers.add(subscriber)
        return subscriber

    def remove(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def watched_codes(self) -> set[str]:
        """Every code a socket of this process subscribed to (the gateway's lease of watched codes)."""
        return {code for subscriber in self._subscribers for code in subscriber.codes}

    async def dispatch(self, event: Envelope) -> None:
        if self._seen(event.id):
            return  # a redelivery or a second publish of the same fact: the browser has it already
        if event.type in QUOTE_EVENTS:
            self._dispatch_quotes(event, QUOTE_EVENTS[event.type])
            return
        text: str | None = None
        for subscriber in list(self._subscribers):
            if not visible_to(subscriber.user, event):
                continue
            text = text or event.model_dump_json()
            self._queue(subscriber, text)

    def _queue(self, subscriber: Subscriber, text: str) -> None:
        try:
            subscriber.queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning(
                "websocket client too slow; dropped",
                extra={"username": subscriber.user.username, "queued": subscriber.queue.qsize()},
            )
            self.remove(subscriber)
            subscriber.stop(CLOSE_TOO_SLOW, f"too slow: more than {self.queue_size} events waiting")

    def _dispatch_quotes(self, event: Envelope, items_key: str) -> None:
        """Each subscribed socket gets the event with only its codes' items (none of them: nothing). Market data is
        every role's to read; no socket gets the whole market (an admin's neither: a full-market round is MBs)."""
        watching = [s for s in self._subscribers if s.codes]
        if not watching:
            return
        by_code: dict[str, list[Any]] = {}
        for item in event.payload.get(items_key, ()):
            by_code.setdefault(item["ts_code"], []).append(item)
        head = event.model_dump(mode="json", exclude={"payload"})
        rest = {k: v for k, v in event.payload.items() if k != items_key}
        for subscriber in watching:
            items = [item for code in sorted(subscriber.codes) for item in by_code.get(code, ())]
            if items:
                self._queue(subscriber, json.dumps({**head, "payload": {**rest, items_key: items}}))

    def close_all(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.stop(CLOSE_GOING_AWAY, "the gateway is shutting down")
        self._subscribers.clear()


@router.websocket("/ws")
async def event_stream(
    websocket: WebSocket,
    token: str | None = Query(default=None, description="a bearer token from /api/v1/auth/token"),
    api_key: str | None = Query(default=None),
) -> None:
    """Authenticate with `?token=` or `?api_key=`; bad credentials close the socket with code 4401, more handshakes
    from one client address in a minute than the rate limit allows with 4429. The first
    message is `{"type": "ws.connected", ...}`; then each event is its envelope JSON
    (`{id, type, version, occurred_at, source, correlation_id, payload}`). Send `{"op": "subscribe", "codes":
    ["600000.SH", ...]}` (or `"unsubscribe"`) for real-time quotes: answered `{"type": "ws.subscribed", "payload":
    {"codes"}}` or `{"type": "ws.error", "payload": {"code", "message"}}`; then `quotes.snapshot` and `bars.1m`
    events carry only the socket's codes (at most LH_QUOTES_WS_MAX_CODES)."""
    state = websocket.app.state
    client = client_group(websocket.client.host if websocket.client else "unknown")
    try:
        # Handshakes per client address (an IPv6 /64), before any lookup: bad keys cost a database lookup each.
        await enforce_rate_limit(state.infra.cache, f"ws:{client}", state.settings.rate_limit_per_minute)
        user = await authenticate(state.store, state.settings, token=token, api_key=api_key)
    except HeaderError as exc:
        # Accept first, then close: a browser sees a close code (and reason) only on an accepted socket; a refused
        # handshake reaches its script as a bare error it cannot tell from a network failure.
        await websocket.accept()
        code = CLOSE_TOO_MANY if exc.status_code == 429 else CLOSE_UNAUTHENTICATED
        await websocket.close(code=code, reason=exc.message[:120])
        return

    hub: EventHub = state.hub
    await websocket.accept()
    subscriber = hub.add(user)
    tasks: list[asyncio.Task[None]] = []
    try:
        await websocket.send_json(
            {"type": "ws.connected", "payload": {"username": user.username, "role": user.role.value}}
        )
        max_codes: int = getattr(state.settings, "quotes_ws_max_codes", MAX_CODES)
        tasks = [
            asyncio.create_task(_send_events(websocket, subscriber.queue)),
            asyncio.create_task(_until_disconnected(websocket, subscriber, max_codes)),
            asyncio.create_task(_wait(subscriber.stopped)),
        ]
        if user.token_expires_at is not None:
            tasks.append(asyncio.create_task(_expire(subscriber, user.token_expires_at)))
        tasks.append(asyncio.create_task(_recheck(websocket, subscriber, token=token, api_key=api_key)))
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass  # gone before the greeting: nothing to clean up beyond the finally block
    finally:
        hub.remove(subscriber)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if subscriber.stopped.is_set():
            await _close(websocket, subscriber.stop_code, subscriber.stop_reason)


async def _send_events(websocket: WebSocket, queue: asyncio.Queue[str]) -> None:
    while True:
        await websocket.send_text(await queue.get())


async def _until_disconnected(websocket: WebSocket, subscriber: Subscriber, max_codes: int = MAX_CODES) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        # A JSON object with an "op" is a command (quote subscriptions); anything else the client sends is ignored
        # (clients may send keep-alive pings).
        text = message.get("text")
        if not text or not text.lstrip().startswith("{"):
            continue
        try:
            command = json.loads(text)
        except ValueError:
            continue
        if isinstance(command, dict) and "op" in command:
            answer = subscription_answer(subscriber, command, max_codes)
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.queue.put_nowait(json.dumps(answer))


def subscription_answer(subscriber: Subscriber, command: dict[str, Any], max_codes: int) -> dict[str, Any]:
    """Apply a quote subscription command to the socket's codes; the message to send back: `ws.subscribed` with the
    codes now subscribed, or `ws.error` (`invalid_request` naming the field, `too_many_codes`) changing nothing."""
    try:
        request = QuoteSubscription.model_validate(command)
        codes = set()
        for i, code in enumerate(request.codes):
            try:
                codes.add(parse_ts_code(code).ts_code)
            except InvalidTsCode as exc:
                return _ws_error("invalid_request", f"codes[{i}]: {exc}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        return _ws_error("invalid_request", f"{where}: {first['msg']}")
    wanted = subscriber.codes | codes if request.op == "subscribe" else subscriber.codes - codes
    if len(wanted) > max_codes:
        return _ws_error(
            "too_many_codes", f"codes: at most {max_codes} codes per socket ({len(wanted)} asked); nothing changed"
        )
    subscriber.codes = wanted
    return {"type": "ws.subscribed", "payload": {"codes": sorted(wanted)}}


def _ws_error(code: str, message: str) -> dict[str, Any]:
    return {"type": "ws.error", "payload": {"code": code, "message": message}}


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


async def _expire(subscriber: Subscriber, expires_at: int) -> None:
    await asyncio.sleep(max(0.0, expires_at - time.time()))
    subscriber.stop(CLOSE_UNAUTHENTICATED, "the token has expired")


async def _recheck(websocket: WebSocket, subscriber: Subscriber, *, token: str | None, api_key: str | None) -> None:
    state = websocket.app.state
    while not subscriber.stopped.is_set():
        await asyncio.sleep(REAUTH_INTERVAL_S)
        try:
            subscriber.user = await authenticate(state.store, state.settings, token=token, api_key=api_key)
        except HeaderError as exc:
            subscriber.stop(CLOSE_UNAUTHENTICATED, exc.message[:120])
        except Exception:
            # The user store did not answer: keep the stream (REST fails closed; a read-only stream may wait).
            log.warning("could not re-check websocket credentials", exc_info=True)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state is not WebSocketState.CONNECTED:
        return
    # A client that is not reading may never take the close frame either: give it a moment, then let the server
    # drop the connection when this handler returns.
    with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), CLOSE_TIMEOUT_S)
