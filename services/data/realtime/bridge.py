"""`/v1/bridge/quotes`: where a QMT bridge delivers xtdata's snapshots (docs/qmt-bridge.md, docs/quotes.md).

The bridge authenticates with its shared secret (LH_QMT_BRIDGE_SECRETS) by the protocol's challenge / hello /
welcome (bridge/qmt/protocol.py, channel "quotes"), and must be one LH_QUOTES_BRIDGES allows to feed quotes (none by
default); every later frame is signed and sequenced (`protocol.Channel`).
After the welcome the data service sends `subscribe` (LH_QUOTES_SUBSCRIBE, default the whole market) and
`subscribe_ticks` (the watched codes: watch.py), and `subscribe_ticks` again whenever the watched codes change; each
`quotes` frame then is one round for the real-time provider, and each `ticks` frame one round of the subscribed
codes' ticks (the same path). A refused hello closes with 4403, a forged, replayed or
malformed frame with 4400. The route is public (no internal token: the bridge holds none); the gateway relays
`/bridge/v1/quotes` here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from bridge.qmt import protocol
from services.data.realtime.gc_pause import collection_paused
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes, RoundResult
from services.data.realtime.store import LiveStore
from services.data.realtime.watch import tick_codes
from shared.platform.clock import utcnow

log = logging.getLogger(__name__)

PATH = "/v1/bridge/quotes"
HELLO_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 16 * 1024 * 1024  # a whole market's snapshot is about 3 MB
WATCH_POLL_S = 1.0  # how often the watched codes are read to see whether the bridge's tick set must change
TICKS_RETRY_S = 30.0  # a subscribe_ticks answered with failures (or refused, or not at all) is sent again after this
TICK_IDS_KEPT = 16  # the ids of the newest subscribe_ticks whose replies are recognised (older ones are forgotten)

bridge_router = APIRouter()


# Every digit of a text as "0", every other byte as ".": a run of LONG_NUMBER digits is a number orjson may read
# otherwise than json.loads (an integer outside 64 bits: orjson gives a float, json.loads the exact int).
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x2E for byte in range(256))
LONG_NUMBER = b"0" * 19  # -(2**63) and 2**64 have 19 and 20 digits: every integer orjson reads exactly is shorter


def parse_json(text: str) -> Any:
    """What `json.loads(text)` gives, read by orjson where that is the same (a whole market's frame: some 7 ms of CPU
    less than json.loads' 19): a text with a run of 19 digits or more anywhere (an integer orjson may read as a float)
    or one orjson refuses (NaN or Infinity, which json.loads reads; a lone surrogate; nesting deeper than 1,024; a
    text that is no JSON) is read by json.loads, as before: the same objects, or json.loads' own error."""
    if LONG_NUMBER not in text.encode(errors="surrogatepass").translate(_DIGITS):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def platform_channel(secret: str, session: str) -> protocol.Channel:
    """The platform's side of a bridge's quotes connection, after the welcome: what it receives checked by its
    signature and sequence (`protocol.Channel.open`), then parsed by `parse_json`."""
    return protocol.Channel(secret=secret, session=session, outgoing=protocol.TO_BRIDGE, loads=parse_json)


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
    id: str | None = None  # the frame's id (a reply's: the request it answers)


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
        type_, id_, body = channel.open(text)
        if type_ not in (protocol.QUOTES, protocol.TICKS):
            return Frame(type_, body, None, id_)
        quotes = body.get(type_)  # {"quotes": [...]} or {"ticks": [...]}
        if not isinstance(quotes, list):
            raise protocol.ProtocolError(f'a {type_} frame\'s body is {{"{type_}": [snapshot]}}')
        taken = None
        try:
            taken = await provider.ingest(quotes, "bridge", ticks=type_ == protocol.TICKS)
        except Exception:
            # The store cannot be read (the database): the round is lost, the connection kept.
            log.exception("a quotes round could not be taken", extra={"bridge_id": bridge_id})
        # The round's objects go now, by their reference counts, before the collector is back on: left to it, they
        # would be walked and promoted by the first collections after the round (some 70,000 containers).
        del body, quotes
        return Frame(type_, {}, taken)


@dataclass
class TickSubscription:
    """What the connection asked the bridge ticks of, and whether to ask again: the answer had failures, was not
    one of the protocol's shape, or did not come within TICKS_RETRY_S."""

    sent: list[str] | None = None
    sent_at: float = 0.0
    retry: bool = False
    pending: str | None = None  # the newest subscribe_ticks' id while it is unanswered
    ids: deque[str] = field(default_factory=lambda: deque(maxlen=TICK_IDS_KEPT))  # the newest ids sent (bounded)

    def due(self, codes: list[str], moment: float) -> bool:
        """Whether to send `codes` now: they changed, or the last send failed or is unanswered for TICKS_RETRY_S."""
        if codes != self.sent:
            return True
        return (self.retry or self.pending is not None) and moment - self.sent_at >= TICKS_RETRY_S

    def sending(self, id_: str, codes: list[str], moment: float) -> None:
        self.ids.append(id_)
        self.sent, self.sent_at, self.retry, self.pending = codes, moment, False, id_

    def answered(self, id_: str, body: Any) -> str | None:
        """Take a reply to one of our subscribe_ticks: None when every code was subscribed, else what went wrong
        (the newest request is then sent again after TICKS_RETRY_S). A reply to an older request only settles it."""
        if id_ in self.ids:
            self.ids.remove(id_)
        newest = id_ == self.pending
        if newest:
            self.pending = None
        problem = reply_problem(body)
        if problem is not None and newest:
            self.retry = True
        return problem


def reply_problem(body: Any) -> str | None:
    """What is wrong with a subscribe_ticks reply (`{"ok": true, "body": {"failed": [codes]}}` when it worked), or
    None: a refusal, failed codes, or a reply not of that shape (taken as a failure, never raised on)."""
    if not isinstance(body, dict):
        return f"a reply body that is not an object: {type(body).__name__}"
    if body.get("ok") is not True:
        return f"refused: {str(body.get('error'))[:200]}"
    inner = body.get("body", {})
    failed = inner.get("failed") if isinstance(inner, dict) else None
    if not isinstance(inner, dict) or not isinstance(failed, list | None):
        return "a reply not of the protocol's shape"
    if failed:
        return f"{len(failed)} codes failed: {', '.join(str(code) for code in failed[:10])}"
    return None


async def watch_ticks(
    websocket: WebSocket, channel: protocol.Channel, live: LiveStore, state: TickSubscription, bridge_id: str
) -> None:
    """Send `subscribe_ticks` with the watched codes at once and whenever they change (read every WATCH_POLL_S);
    again after TICKS_RETRY_S when the bridge's answer had failures or did not come. The only sender after the
    welcome's subscribe: the frames' seq goes up in the order they are sent."""
    while True:
        codes: list[str] | None
        try:
            codes, dropped = tick_codes(await live.watches(time.time()))
        except Exception:
            log.warning("the watched codes cannot be read; the bridge's tick set is left as it is", exc_info=True)
            codes, dropped = state.sent, 0
        moment = time.monotonic()
        if codes is not None and state.due(codes, moment):
            if dropped:
                log.warning(
                    "watched codes over the tick limit left out",
                    extra={"bridge_id": bridge_id, "dropped": dropped, "limit": protocol.MAX_TICK_CODES},
                )
            if codes == state.sent and state.pending is not None:
                log.warning("subscribe_ticks unanswered; sending it again", extra={"bridge_id": bridge_id})
            id_ = channel.new_id()
            state.sending(id_, codes, moment)
            await websocket.send_text(channel.seal(protocol.SUBSCRIBE_TICKS, {"codes": codes}, id_=id_))
            log.info("ticks subscribed", extra={"bridge_id": bridge_id, "codes": len(codes)})
        await asyncio.sleep(WATCH_POLL_S)


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
    channel = platform_channel(secret, welcome["session"])
    codes = subscribed_codes(state.settings.quotes_subscribe)
    log.info("quotes bridge connected", extra={"bridge_id": bridge_id, "subscribe": codes[:10]})
    ticks = TickSubscription()
    watcher: asyncio.Task[None] | None = None
    metrics.bridges[bridge_id] += 1
    try:
        await websocket.send_text(channel.seal(protocol.SUBSCRIBE, {"codes": codes}, id_=channel.new_id()))
        watcher = asyncio.create_task(watch_ticks(websocket, channel, state.live_store, ticks, bridge_id))
        while True:
            type_, body, _, id_ = await take_frame(channel, provider, await _receive(websocket), bridge_id=bridge_id)
            if type_ in (protocol.QUOTES, protocol.TICKS):
                continue  # taken
            if type_ == protocol.REPLY and id_ is not None and id_ in ticks.ids:
                problem = ticks.answered(id_, body)
                if problem is not None:
                    log.warning("the bridge did not subscribe every tick", extra={"bridge_id": bridge_id,
                                                                                "problem": problem})  # fmt: skip
            elif type_ == protocol.REPLY:
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
    except Exception:
        # Not a frame's fault we know of: logged, and the connection closed cleanly (the bridge reconnects).
        log.exception("quotes bridge connection failed; closing", extra={"bridge_id": bridge_id})
        with contextlib.suppress(Exception):
            await websocket.close(code=1011, reason="internal error")
    finally:
        metrics.bridges[bridge_id] -= 1
        if metrics.bridges[bridge_id] <= 0:
            del metrics.bridges[bridge_id]
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
