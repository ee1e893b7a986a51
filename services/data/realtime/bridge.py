"""`/v1/bridge/quotes`: where a QMT bridge delivers xtdata's snapshots (docs/qmt-bridge.md, docs/quotes.md).

The bridge authenticates with its shared secret (LH_QMT_BRIDGE_SECRETS) by the protocol's challenge / hello /
welcome (bridge/qmt/protocol.py, channel "quotes"), and must be one LH_QUOTES_BRIDGES allows to feed quotes (none by
default); every later frame is signed and sequenced (`protocol.Channel`).
After the welcome the data service sends `subscribe` (LH_QUOTES_SUBSCRIBE, default the whole market); each `quotes`
frame then is one round for the real-time provider. A refused hello closes with 4403, a forged, replayed or
malformed frame with 4400. The route is public (no internal token: the bridge holds none); the gateway relays
`/bridge/v1/quotes` here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, NamedTuple

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from bridge.qmt import protocol
from services.data.realtime.gc_pause import collection_paused
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes, RoundResult
from shared.platform.clock import utcnow

log = logging.getLogger(__name__)

PATH = "/v1/bridge/quotes"
HELLO_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 16 * 1024 * 1024  # a whole market's snapshot is about 3 MB

bridge_router = APIRouter()


def subscribed_codes(setting: str) -> list[str]:
    codes = [part.strip().upper() for part in setting.split(",") if part.strip()]
    return codes or ["*"]


async def _refuse(websocket: WebSocket, metrics: QuoteMetrics, code: str, message: str, **extra: Any) -> None:
    metrics.refused_bridges.labels(code=code).inc()
    log.warning("quotes bridge refused", extra={"code": code, "reason": message, **extra})
    with contextlib.suppress(Exception):
        await websocket.send_text(protocol.canonical(protocol.refused(code, message)))
        await websocket.close(code=protocol.REFUSED_CLOSE_CODE, reason=code)


async def _receive(websocket: WebSocket) -> str | bytes:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text: str | bytes | None = message.get("text") if message.get("text") is not None else message.get("bytes")
    return text or ""


class Frame(NamedTuple):
    type: str
    body: dict[str, Any]  # ({} for a quotes frame: its round is taken, and its snapshots let go)
    round: RoundResult | None  # a quotes frame's round (None: another frame, or a round that could not be taken)


async def take_frame(
    channel: protocol.Channel, provider: RealtimeQuotes, text: str | bytes, *, bridge_id: str = ""
) -> Frame:
    """Check a frame the bridge sent (its size, signature and sequence: `protocol.Channel.open`) and, for a `quotes`
    frame, take its round. Raises ProtocolError for a frame to close the connection on. From the frame's arrival to
    its round published, cyclic garbage collection is held off (gc_pause.py): parsing a whole market's frame is
    where a full collection would otherwise fall."""
    with collection_paused():
        if len(text) > MAX_FRAME_BYTES:
            raise protocol.ProtocolError(f"a frame of {len(text)} bytes is more than {MAX_FRAME_BYTES}")
        type_, _, body = channel.open(text)
        if type_ != protocol.QUOTES:
            return Frame(type_, body, None)
        quotes = body.get("quotes")
        if not isinstance(quotes, list):
            raise protocol.ProtocolError('a quotes frame\'s body is {"quotes": [snapshot]}')
        taken = None
        try:
            taken = await provider.ingest(quotes, "bridge")
        except Exception:
            # The store cannot be read (the database): the round is lost, the connection kept.
            log.exception("a quotes round could not be taken", extra={"bridge_id": bridge_id})
        # The round's objects go now, by their reference counts, before the collector is back on: left to it, they
        # would be walked and promoted by the first collections after the round (some 70,000 containers).
        del body, quotes
        return Frame(type_, {}, taken)


@bridge_router.websocket(PATH)
async def bridge_quotes(websocket: WebSocket) -> None:
    state = websocket.app.state
    provider: RealtimeQuotes | None = getattr(state, "realtime", None)
    metrics: QuoteMetrics = state.quote_metrics
    await websocket.accept()
    if provider is None or state.settings.quotes_feed_mode() != "bridge":
        await _refuse(websocket, metrics, "feed_off", "this data service does not take quotes from a bridge")
        return
    challenge = protocol.challenge(utcnow())
    await websocket.send_text(protocol.canonical(challenge))
    try:
        text = await asyncio.wait_for(_receive(websocket), HELLO_TIMEOUT_S)
        hello = json.loads(text)
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            raise ValueError("not a hello")
    except (TimeoutError, ValueError, KeyError):
        await _refuse(websocket, metrics, "bad_hello", "the first message must be the protocol's hello")
        return
    except WebSocketDisconnect:
        return
    bridge_id = str(hello.get("bridge_id", ""))[:64]
    try:
        secrets = state.settings.qmt_bridge_secret_map()
    except ValueError as exc:
        log.error("LH_QMT_BRIDGE_SECRETS is malformed: %s", exc)
        secrets = {}
    secret = secrets.get(bridge_id)
    if secret is None:
        await _refuse(websocket, metrics, "unknown_bridge", "this bridge is not known here", bridge_id=bridge_id)
        return
    problem = protocol.check_hello(secret, hello, server_nonce=challenge["nonce"], now=utcnow())
    if problem is None and hello.get("channel") != "quotes":
        problem = f"this endpoint takes the quotes channel, not {hello.get('channel')!r}"
    if problem is not None:
        await _refuse(websocket, metrics, "bad_hello", problem, bridge_id=bridge_id)
        return
    if bridge_id not in state.settings.quotes_bridge_ids():
        # Authenticated, but not one LH_QUOTES_BRIDGES lets feed quotes (none unless configured): no quote is taken.
        await _refuse(
            websocket, metrics, "quotes_not_allowed", "this bridge may not feed quotes here (LH_QUOTES_BRIDGES)",
            bridge_id=bridge_id,
        )  # fmt: skip
        return
    welcome = protocol.welcome(
        secret, bridge_id=bridge_id, nonce=str(hello["nonce"]), trading={"enabled": False, "read_only": True}
    )
    await websocket.send_text(protocol.canonical(welcome))
    channel = protocol.Channel(secret=secret, session=welcome["session"], outgoing=protocol.TO_BRIDGE)
    codes = subscribed_codes(state.settings.quotes_subscribe)
    log.info("quotes bridge connected", extra={"bridge_id": bridge_id, "subscribe": codes[:10]})
    try:
        await websocket.send_text(channel.seal(protocol.SUBSCRIBE, {"codes": codes}, id_=channel.new_id()))
        while True:
            type_, body, _ = await take_frame(channel, provider, await _receive(websocket), bridge_id=bridge_id)
            if type_ == protocol.QUOTES:
                continue  # taken
            if type_ == protocol.REPLY:
                if body.get("ok") is not True:
                    log.warning("the bridge refused the subscription", extra={"bridge_id": bridge_id,
                                                                             "error": body.get("error")})  # fmt: skip
            elif type_ == protocol.CONNECTION:
                log.info("bridge's link to MiniQMT", extra={"bridge_id": bridge_id, "qmt": body.get("qmt")})
            else:
                log.debug("frame ignored on the quotes channel", extra={"bridge_id": bridge_id, "type": type_})
    except protocol.ProtocolError as exc:
        log.warning("quotes bridge frame refused; closing", extra={"bridge_id": bridge_id, "reason": str(exc)})
        with contextlib.suppress(Exception):
            await websocket.close(code=protocol.PROTOCOL_CLOSE_CODE, reason="bad frame")
    except WebSocketDisconnect:
        log.info("quotes bridge disconnected", extra={"bridge_id": bridge_id})
