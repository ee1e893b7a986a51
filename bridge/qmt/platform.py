"""The bridge's WebSocket link to the platform, one per channel ({platform_url}/bridge/v1/trading, and
/bridge/v1/quotes when quotes are on): challenge -> hello -> welcome (its signature checked: a wrong one stops the
bridge, it may be talking to an impostor), then signed, sequenced frames both ways (protocol.Channel). Requests are
answered by replies; pushes are sent as they come (and dropped while the platform is not connected: the platform's
queries after every reconnect bring back what they carried). A lost connection is retried with exponential backoff
(1 s doubling to 60 s, jitter) and says hello again.

`TradingService` dispatches the trading channel's requests to the MiniQMT link and keeps the trading switches:
trading is DISABLED when the bridge starts, until the platform enables it (the welcome's `trading`, or
set_trading): disabled refuses place (a cancel still goes); read-only refuses place and cancel and still serves the
queries."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from bridge.qmt import protocol
from bridge.qmt.backoff import Backoff
from bridge.qmt.journal import CST
from bridge.qmt.trader import QmtLink

log = logging.getLogger("bridge.qmt.platform")

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
HANDSHAKE_TIMEOUT_S = 15.0
MAX_QUEUED_PUSHES = 100_000


class Refused(Exception):
    """The platform refused the hello (unknown bridge, wrong secret, account mismatch)."""


class ForgedWelcome(Exception):
    """The welcome's signature is wrong: whatever answered is not the platform holding our secret. Fatal."""


class PlatformLink:
    def __init__(
        self,
        *,
        url: str,
        channel: str,
        bridge_id: str,
        account_id: str,
        secret: str,
        handler: Handler,
        on_welcome: Callable[[dict[str, Any]], None] = lambda welcome: None,
        reconnect_initial_s: float = 1.0,
        reconnect_max_s: float = 60.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.bridge_id = bridge_id
        self.account_id = account_id
        self._secret = secret
        self.handler = handler
        self.on_welcome = on_welcome
        self._backoff = Backoff(reconnect_initial_s, reconnect_max_s)
        self._outbox: asyncio.Queue[tuple[str, str | None, dict[str, Any]]] | None = None
        self.welcomes = 0

    @property
    def connected(self) -> bool:
        return self._outbox is not None

    def push(self, type_: str, body: dict[str, Any]) -> None:
        outbox = self._outbox
        if outbox is None:
            log.debug("%s push %s dropped: the platform is not connected", self.channel, type_)
            return
        if outbox.qsize() >= MAX_QUEUED_PUSHES:
            log.warning("%s push %s dropped: %d frames are waiting to be sent", self.channel, type_, outbox.qsize())
            return
        outbox.put_nowait((type_, None, body))

    async def run(self) -> None:
        """Connect, serve, reconnect; returns never (ForgedWelcome propagates and stops the bridge)."""
        while True:
            try:
                await self._session()
            except Refused as exc:
                log.error("%s: the platform refused this bridge: %s", self.channel, exc)
            except protocol.ProtocolError as exc:
                log.error("%s: protocol error, connection closed: %s", self.channel, exc)
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError, ValueError) as exc:
                log.warning("%s: connection to the platform lost or failed: %s", self.channel, exc)
            finally:
                self._outbox = None
            wait = self._backoff.next()
            log.info("%s: reconnecting in %.1f s", self.channel, wait)
            await asyncio.sleep(wait)

    async def _handshake(self, ws: ClientConnection) -> tuple[protocol.Channel, dict[str, Any]]:
        challenge = json.loads(await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT_S))
        if (
            not isinstance(challenge, dict)
            or challenge.get("type") != "challenge"
            or not isinstance(challenge.get("nonce"), str)
        ):
            raise protocol.ProtocolError("the platform did not open with a challenge")
        hello = protocol.hello(
            self._secret,
            bridge_id=self.bridge_id,
            account_id=self.account_id,
            channel=self.channel,
            server_nonce=challenge["nonce"],
            now=datetime.now(CST),
        )
        await ws.send(json.dumps(hello))
        answer = json.loads(await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT_S))
        if isinstance(answer, dict) and answer.get("type") == "refused":
            raise Refused(f"{answer.get('code')}: {answer.get('message')}")
        if not isinstance(answer, dict) or not protocol.check_welcome(
            self._secret, answer, bridge_id=self.bridge_id, nonce=hello["nonce"]
        ):
            await ws.close(protocol.PROTOCOL_CLOSE_CODE, "the welcome's signature is wrong")
            raise ForgedWelcome(
                f"the welcome on {self.url} is not signed with this bridge's secret: not talking to an impostor"
            )
        return protocol.Channel(self._secret, str(answer["session"]), protocol.TO_PLATFORM), answer

    async def _session(self) -> None:
        async with connect(self.url, open_timeout=HANDSHAKE_TIMEOUT_S, max_size=16 * 2**20) as ws:
            channel, welcome = await self._handshake(ws)
            outbox: asyncio.Queue[tuple[str, str | None, dict[str, Any]]] = asyncio.Queue()
            self._outbox = outbox
            self.welcomes += 1
            self._backoff.reset()
            log.info("%s: connected to the platform (%s)", self.channel, self.url)
            self.on_welcome(welcome)
            writer = asyncio.create_task(self._write(ws, channel, outbox))
            try:
                async for text in ws:
                    try:
                        type_, id_, body = channel.open(text)
                    except protocol.ProtocolError as exc:
                        await ws.close(protocol.PROTOCOL_CLOSE_CODE, "bad frame")
                        raise protocol.ProtocolError(str(exc)) from None
                    if id_ is None:
                        log.info("%s: a frame %s without an id is ignored", self.channel, type_)
                        continue
                    try:
                        reply = await self.handler(type_, body)
                    except Exception as exc:
                        log.exception("%s: handling %s failed", self.channel, type_)
                        reply = protocol.failed(protocol.BAD_REQUEST, f"the bridge failed on {type_}: {exc}")
                    outbox.put_nowait((protocol.REPLY, id_, reply))
            finally:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)

    async def _write(
        self, ws: ClientConnection, channel: protocol.Channel, outbox: asyncio.Queue[tuple[str, str | None, Any]]
    ) -> None:
        while True:
            type_, id_, body = await outbox.get()
            await ws.send(channel.seal(type_, body, id_=id_))


@dataclass
class Switches:
    enabled: bool = False
    read_only: bool = False

    def as_dict(self) -> dict[str, bool]:
        return {"enabled": self.enabled, "read_only": self.read_only}


def _switches(body: Any) -> Switches | None:
    if (
        isinstance(body, dict)
        and set(body) == {"enabled", "read_only"}
        and all(isinstance(body[k], bool) for k in body)
    ):
        return Switches(enabled=body["enabled"], read_only=body["read_only"])
    return None


class TradingService:
    """The trading channel's requests, dispatched to the MiniQMT link behind the trading switches."""

    def __init__(self, link: QmtLink) -> None:
        self.link = link
        self.switches = Switches()  # disabled until the platform enables trading
        self.platform: PlatformLink | None = None

    def on_welcome(self, welcome: dict[str, Any]) -> None:
        switches = _switches(welcome.get("trading"))
        self.switches = switches if switches is not None else Switches()
        log.info("trading switches from the platform: %s", self.switches.as_dict())
        if self.platform is not None:
            self.platform.push(protocol.CONNECTION, {"qmt": self.link.connection_state()})

    async def handle(self, type_: str, body: dict[str, Any]) -> dict[str, Any]:
        if type_ in (protocol.PLACE, protocol.CANCEL):
            # Disabled stops new orders; a cancel still goes (switching trading off must not pin the orders resting
            # at the broker). Read-only stops both: the bridge only watches.
            if not self.switches.enabled and type_ == protocol.PLACE:
                return protocol.failed(protocol.TRADING_DISABLED, "trading is not enabled on this bridge")
            if self.switches.read_only:
                return protocol.failed(protocol.TRADING_DISABLED, "this bridge is read-only: place and cancel refused")
            return self.link.place(body) if type_ == protocol.PLACE else self.link.cancel(body)
        if type_ == protocol.SET_TRADING:
            switches = _switches(body)
            if switches is None:
                return protocol.failed(protocol.BAD_REQUEST, "set_trading: needs enabled and read_only (booleans)")
            self.switches = switches
            log.warning("trading switches set by the platform: %s", switches.as_dict())
            return protocol.ok(switches.as_dict())
        queries = {
            protocol.QUERY_ORDER: self.link.query_order,
            protocol.QUERY_ORDERS: self.link.query_orders,
            protocol.QUERY_TRADES: self.link.query_trades,
            protocol.QUERY_POSITIONS: self.link.query_positions,
            protocol.QUERY_ASSET: self.link.query_asset,
        }
        query = queries.get(type_)
        if query is None:
            return protocol.failed(protocol.BAD_REQUEST, f"type: {type_!r} is not a request of the trading channel")
        if type_ != protocol.QUERY_ORDER and body:
            return protocol.failed(protocol.BAD_REQUEST, f"{sorted(body)[0]}: unknown field ({type_} takes none)")
        return query(body)
