"""The QMT bridges connected to execution (`/v1/bridge/trading`, docs/qmt-bridge.md): the handshake that
authenticates a bridge and checks the account it names, one live link per bridge (a second hello replaces the
first), requests answered by replies with the same id (with a timeout), and the bridge's pushes handed to the QMT
adapter in the order they came. The wire format is bridge/qmt/protocol.py's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from prometheus_client import CollectorRegistry, Counter, Gauge

from bridge.qmt import protocol
from shared.platform.clock import utcnow

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0  # a bridge that says nothing this long after the challenge is closed
REQUEST_TIMEOUT_S = 10.0  # a request without a reply this long: its outcome is unknown
REPLACED_CLOSE_CODE = 4409  # a newer hello of the same bridge took over the link
REBOUND_CLOSE_CODE = 4410  # an admin changed the bridge's account binding: it says hello again, checked anew


class BridgeError(Exception):
    """A request got no answer (a timeout, the link closed): the bridge may or may not have acted on it."""


class BridgeNotConnected(Exception):
    """No live link to the bridge: nothing was sent."""


class BridgeRefused(Exception):
    """The bridge answered the request with an error (`reply` with ok=false)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


PushHandler = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (bridge_id, type, body)
HelloHandler = Callable[[str], None]  # a bridge said hello (bridge_id): reconcile it


@dataclass
class BridgeLink:
    """One authenticated connection to a bridge."""

    bridge_id: str
    account_id: str
    websocket: WebSocket
    channel: protocol.Channel
    connected_at: datetime
    qmt: str | None = None  # the bridge's link to MiniQMT, from its `connection` pushes
    account_status: int | None = None  # MiniQMT's account status code, from `account_status` pushes
    closed: bool = False
    timeout_s: float = REQUEST_TIMEOUT_S  # how long a request waits for its reply
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, type_: str, body: dict[str, Any], *, id_: str | None = None) -> None:
        async with self.send_lock:  # sealed and sent in one step: the frames go out in their seq order
            text = self.channel.seal(type_, body, id_=id_)
            await self.websocket.send_text(text)

    async def request(self, type_: str, body: dict[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        """The reply's body. Raises BridgeNotConnected (nothing sent), BridgeError (sent, no answer) or
        BridgeRefused (the bridge's error)."""
        if self.closed:
            raise BridgeNotConnected(f"bridge {self.bridge_id} is not connected")
        id_ = self.channel.new_id()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[id_] = future
        try:
            try:
                await self.send(type_, body, id_=id_)
            except Exception as exc:  # the socket is gone: the frame may or may not have left
                raise BridgeError(f"bridge {self.bridge_id}: sending {type_} failed: {exc}") from exc
            try:
                reply = await asyncio.wait_for(future, timeout_s or self.timeout_s)
            except TimeoutError as exc:
                raise BridgeError(f"bridge {self.bridge_id}: no reply to {type_} in time") from exc
        finally:
            self.pending.pop(id_, None)
        if reply.get("ok") is True and isinstance(reply.get("body"), dict):
            body_: dict[str, Any] = reply["body"]
            return body_
        raw_error = reply.get("error")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        raise BridgeRefused(str(error.get("code", protocol.BAD_REQUEST)), str(error.get("message", "")))

    def answered(self, id_: str | None, body: dict[str, Any]) -> None:
        future = self.pending.get(id_ or "")
        if future is not None and not future.done():
            future.set_result(body)
        else:
            log.warning("a reply to no pending request", extra={"bridge_id": self.bridge_id, "id": id_})

    def fail_pending(self) -> None:
        self.closed = True
        for future in self.pending.values():
            if not future.done():
                future.set_exception(BridgeError(f"bridge {self.bridge_id} disconnected before replying"))


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "lh_broker_bridge_connected",
            "1 while the QMT bridge has a live authenticated link to execution",
            ["bridge_id"],
            registry=registry,
        )
        self.bound = Gauge(
            "lh_broker_bridge_bound",
            "1 while an account is bound to the QMT bridge (an admin chose it as the account's broker)",
            ["bridge_id"],
            registry=registry,
        )
        self.unknown = Gauge(
            "lh_broker_orders_unknown",
            "Orders sent to a QMT bridge whose outcome is unknown (waiting for a query to settle them)",
            registry=registry,
        )
        self.differences = Counter(
            "lh_broker_reconciliation_differences",
            "Position and cash differences found by reconciliations with a QMT bridge's broker",
            ["bridge_id"],
            registry=registry,
        )
        self.after_final = Counter(
            "lh_broker_reports_after_final",
            "Broker reports (a fill, or another final state) for an order already final with another outcome: the "
            "platform's record and the broker disagree (reported, never applied)",
            ["bridge_id"],
            registry=registry,
        )
        self.not_listed = Counter(
            "lh_broker_orders_not_listed",
            "Look-ups of an order the broker acknowledged today and no longer knows (left open): after a MiniQMT "
            "restart the bridge could not tell which of MiniQMT's orders it is, or the bridge lost its journal",
            ["bridge_id"],
            registry=registry,
        )
        self.refused = Counter(
            "lh_broker_bridge_refused",
            "Bridge connections refused (unknown bridge, bad signature, account mismatch) or closed for a bad frame",
            ["reason"],
            registry=registry,
        )


class BridgeRegistry:
    """The live links, one per bridge_id. `secrets`: {bridge_id: secret} (LH_QMT_BRIDGE_SECRETS, never logged);
    `bound_account(bridge_id)`: the account an admin bound it to; `switches(bridge_id)`: its trading switches."""

    def __init__(
        self,
        secrets: dict[str, str],
        *,
        bound_account: Callable[[str], Awaitable[str | None]],
        switches: Callable[[str], Awaitable[dict[str, bool]]],
        metrics: BridgeMetrics,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.secrets = secrets
        self.bound_account = bound_account
        self.switches = switches
        self.metrics = metrics
        self.clock = clock
        self.links: dict[str, BridgeLink] = {}
        self.on_push: PushHandler | None = None
        self.on_hello: HelloHandler | None = None
        # (bridge_id, account_id, connected, why): a link opened (why None) or closed; must not block or raise
        self.on_link: Callable[[str, str, bool, str | None], None] | None = None
        self.last_seen: dict[str, datetime] = {}
        self.request_timeout_s = REQUEST_TIMEOUT_S
        for bridge_id in secrets:
            self.metrics.connected.labels(bridge_id=bridge_id).set(0)
            self.metrics.bound.labels(bridge_id=bridge_id).set(0)

    def link(self, bridge_id: str) -> BridgeLink:
        found = self.links.get(bridge_id)
        if found is None or found.closed:
            raise BridgeNotConnected(f"bridge {bridge_id} is not connected")
        return found

    async def serve(self, websocket: WebSocket) -> None:
        """One bridge connection, from the challenge to its close."""
        await websocket.accept()
        challenge = protocol.challenge(self.clock())
        await websocket.send_text(json.dumps(challenge))
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), HELLO_TIMEOUT_S)
            hello = json.loads(raw)
            if not isinstance(hello, dict) or hello.get("type") != "hello":
                raise ValueError("not a hello")
        except (TimeoutError, ValueError, WebSocketDisconnect, KeyError):
            await self._refuse(websocket, "bad_hello", "the first message must be a hello", None)
            return
        bridge_id = str(hello.get("bridge_id", ""))
        secret = self.secrets.get(bridge_id)
        if secret is None:
            await self._refuse(websocket, "unknown_bridge", f"no bridge {bridge_id!r} is configured here", bridge_id)
            return
        why = protocol.check_hello(secret, hello, server_nonce=challenge["nonce"], now=self.clock())
        if why is not None:
            await self._refuse(websocket, "bad_hello", why, bridge_id)
            return
        if hello.get("channel") != "trading":
            await self._refuse(websocket, "bad_hello", "this endpoint serves the trading channel", bridge_id)
            return
        account_id = str(hello["account_id"])
        bound = await self.bound_account(bridge_id)
        if bound is None:
            await self._refuse(
                websocket,
                "account_mismatch",
                f"bridge {bridge_id} is bound to no account here: an admin binds it first",
                bridge_id,
            )
            return
        if bound != account_id:
            await self._refuse(
                websocket,
                "account_mismatch",
                f"bridge {bridge_id} is bound to another account than {account_id}",
                bridge_id,
            )
            return
        trading = await self.switches(bridge_id)
        welcome = protocol.welcome(secret, bridge_id=bridge_id, nonce=str(hello["nonce"]), trading=trading)
        await websocket.send_text(json.dumps(welcome))
        link = BridgeLink(
            bridge_id=bridge_id,
            account_id=account_id,
            websocket=websocket,
            channel=protocol.Channel(secret=secret, session=welcome["session"], outgoing=protocol.TO_BRIDGE),
            connected_at=self.clock(),
            timeout_s=self.request_timeout_s,
        )
        previous = self.links.get(bridge_id)
        self.links[bridge_id] = link
        if previous is not None:
            previous.fail_pending()
            with contextlib.suppress(Exception):
                await previous.websocket.close(code=REPLACED_CLOSE_CODE)
        self.metrics.connected.labels(bridge_id=bridge_id).set(1)
        self.last_seen[bridge_id] = link.connected_at
        log.info("bridge connected", extra={"bridge_id": bridge_id, "account_id": account_id})
        if self.on_link is not None:
            self.on_link(bridge_id, account_id, True, None)
        pushes: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        worker = asyncio.create_task(self._pushes(link, pushes))
        if self.on_hello is not None:
            self.on_hello(bridge_id)
        try:
            await self._receive(link, pushes)
        finally:
            link.fail_pending()
            await pushes.put(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker, 30)
            if self.links.get(bridge_id) is link:
                del self.links[bridge_id]
                self.metrics.connected.labels(bridge_id=bridge_id).set(0)
                if self.on_link is not None:
                    self.on_link(bridge_id, link.account_id, False, "closed")
            self.last_seen[bridge_id] = self.clock()
            log.info("bridge disconnected", extra={"bridge_id": bridge_id})

    async def _receive(self, link: BridgeLink, pushes: asyncio.Queue[tuple[str, dict[str, Any]] | None]) -> None:
        while True:
            try:
                message = await link.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message.get("type") == "websocket.disconnect":
                return
            try:
                text = message.get("text")
                if text is None:
                    raise protocol.ProtocolError("a binary frame: the protocol's frames are text")
                type_, id_, body = link.channel.open(text)
            except protocol.ProtocolError as exc:
                # a forged, replayed or malformed frame: never acted on, and the link is closed
                log.warning("bridge frame refused; closing", extra={"bridge_id": link.bridge_id, "error": str(exc)})
                self.metrics.refused.labels(reason="bad_frame").inc()
                with contextlib.suppress(Exception):
                    await link.websocket.close(code=protocol.PROTOCOL_CLOSE_CODE)
                return
            if type_ == protocol.REPLY:
                link.answered(id_, body)
            else:
                await pushes.put((type_, body))

    async def _pushes(self, link: BridgeLink, pushes: asyncio.Queue[tuple[str, dict[str, Any]] | None]) -> None:
        while True:
            item = await pushes.get()
            if item is None:
                return
            type_, body = item
            if type_ == protocol.CONNECTION:
                link.qmt = str(body.get("qmt"))
            elif type_ == protocol.ACCOUNT_STATUS and isinstance(body.get("status"), int):
                link.account_status = body["status"]
            if self.on_push is None:
                continue
            try:
                await self.on_push(link.bridge_id, type_, body)
            except Exception:
                log.exception("a bridge push could not be handled", extra={"bridge_id": link.bridge_id, "type": type_})

    async def _refuse(self, websocket: WebSocket, code: str, message: str, bridge_id: str | None) -> None:
        log.warning("bridge refused", extra={"code": code, "reason": message, "bridge_id": bridge_id})
        self.metrics.refused.labels(reason=code).inc()
        with contextlib.suppress(Exception):
            await websocket.send_text(json.dumps(protocol.refused(code, message)))
            await websocket.close(code=protocol.REFUSED_CLOSE_CODE)

    async def drop(self, bridge_id: str, why: str) -> bool:
        """Close the bridge's live link (its binding changed): its pending requests fail, nothing more is sent on it,
        and the bridge must say hello again, checked against the binding as it is now. Whether a link was closed."""
        link = self.links.pop(bridge_id, None)
        if link is None:
            return False
        link.fail_pending()
        self.metrics.connected.labels(bridge_id=bridge_id).set(0)
        self.last_seen[bridge_id] = self.clock()
        log.warning("bridge link closed", extra={"bridge_id": bridge_id, "account_id": link.account_id, "why": why})
        if self.on_link is not None:
            self.on_link(bridge_id, link.account_id, False, "rebound")
        with contextlib.suppress(Exception):
            await link.websocket.close(code=REBOUND_CLOSE_CODE)
        return True

    async def set_trading(self, bridge_id: str, trading: dict[str, bool]) -> bool:
        """Send the switches to the bridge if it is connected; whether it took them."""
        link = self.links.get(bridge_id)
        if link is None or link.closed:
            return False
        try:
            await link.request(protocol.SET_TRADING, dict(trading))
        except (BridgeError, BridgeNotConnected, BridgeRefused) as exc:
            log.warning("trading switches not taken by the bridge", extra={"bridge_id": bridge_id, "error": str(exc)})
            return False
        return True
