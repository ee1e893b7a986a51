"""The wire protocol between a QMT bridge and the platform (docs/qmt-bridge.md, "Protocol"). Standard library only:
the bridge runs on a Windows box with few dependencies, and the platform's side imports this module, so the two
cannot drift apart.

One WebSocket per concern, opened by the bridge (the Windows box needs no open port):
  {platform_url}/bridge/v1/trading   -> execution (orders, cancels, queries, order/trade/asset pushes)
  {platform_url}/bridge/v1/quotes    -> data (real-time snapshots)

Handshake (both directions authenticated with the bridge's shared secret):
  platform -> bridge  {"type": "challenge", "nonce": <hex>, "server_time": <iso>}
  bridge -> platform  {"type": "hello", "bridge_id", "account_id", "channel", "version", "nonce", "ts", "sig"}
                      sig = HMAC(secret, hello_text(...))
  platform -> bridge  {"type": "welcome", "session", "trading": {...}, "sig"}   sig = HMAC(secret, welcome_text(...))
                  or  {"type": "refused", "code", "message"} and the socket closes (REFUSED_CLOSE_CODE)

Then every frame is a header line and a body: `{"id", "seq", "sig", "type"}` (canonical JSON), a newline, and the
body's JSON text; `seq` counts up from 1 in each direction, and `sig` = HMAC(secret, session | direction | seq | type
| id | the body's text as sent). A frame with a bad signature or a seq that does not go up closes the connection (a
replayed or forged frame is never acted on)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

VERSION = 1
TRADING_PATH = "/bridge/v1/trading"
QUOTES_PATH = "/bridge/v1/quotes"
CHANNELS = ("trading", "quotes")
MAX_CLOCK_SKEW_S = 60.0  # a hello whose `ts` is further than this from the platform's clock is refused
REFUSED_CLOSE_CODE = 4403  # the platform refused the hello (unknown bridge, bad signature, account mismatch)
PROTOCOL_CLOSE_CODE = 4400  # a frame failed its signature or sequence check
REMARK_LENGTH = 24  # MiniQMT keeps at most 24 ASCII characters of `order_remark`

# Directions, part of every frame's signature: a frame the platform sent cannot be replayed back to it.
TO_BRIDGE = "p2b"
TO_PLATFORM = "b2p"

# --- request types, platform -> bridge (each answered by a `reply` with the same id) -------------------------------
PLACE = "place"  # body: PlaceOrder fields
CANCEL = "cancel"  # body: {"order_id"}
QUERY_ORDER = "query_order"  # body: {"order_id"} -> {"known": bool, "order": order|None, "trades": [trade]}
QUERY_ORDERS = "query_orders"  # body: {} -> {"orders": [order]}
QUERY_TRADES = "query_trades"  # body: {} -> {"trades": [trade]}
QUERY_POSITIONS = "query_positions"  # body: {} -> {"positions": [position]}
QUERY_ASSET = "query_asset"  # body: {} -> {"asset": asset}
SET_TRADING = "set_trading"  # body: {"enabled": bool, "read_only": bool} -> the switches now
SUBSCRIBE = "subscribe"  # quotes channel: body {"codes": [ts_code] | ["*"]} (whole market)
# quotes channel: body {"codes": [ts_code]} (at most MAX_TICK_CODES; [] for none), REPLACING the set of codes whose
# ticks the bridge forwards (xtdata.subscribe_quote(code, period="tick")) -> {"codes", "added", "removed", "failed"}
SUBSCRIBE_TICKS = "subscribe_ticks"
MAX_TICK_CODES = 300
REPLY = "reply"  # bridge -> platform: {"ok": true, "body": {...}} or {"ok": false, "error": {"code", "message"}}

# --- pushes, bridge -> platform (no id; never acknowledged: what a lost push carried comes back by the queries the
# platform makes on every reconnect and periodically) ---------------------------------------------------------------
ORDER = "order"  # an order's state at MiniQMT (on_stock_order, and the async place response)
TRADE = "trade"  # one fill (on_stock_trade)
ORDER_ERROR = "order_error"  # on_order_error: the order was refused (body: order_id, qmt_order_id, error_id, error_msg)
CANCEL_ERROR = "cancel_error"  # on_cancel_error
POSITION = "position"
ASSET = "asset"
ACCOUNT_STATUS = "account_status"  # body: {"status": int} (ACCOUNT_STATUSES codes)
CONNECTION = "connection"  # body: {"qmt": "connected" | "disconnected"}: the bridge's link to MiniQMT
QUOTES = "quotes"  # quotes channel: body {"quotes": [snapshot]}
TICKS = "ticks"  # quotes channel: body {"ticks": [snapshot]}: the subscribed codes' ticks of a short window

# --- error codes in a failed reply ---------------------------------------------------------------------------------
TRADING_DISABLED = "trading_disabled"  # the platform has not enabled trading on this bridge (or it is read-only)
QMT_DISCONNECTED = "qmt_disconnected"  # the bridge has no live link to MiniQMT now: nothing was sent
QMT_REFUSED = "qmt_refused"  # MiniQMT answered the call with a failure (-1) at once: nothing was placed
UNKNOWN_ORDER = "unknown_order"  # the bridge has no order with that order_id
BAD_REQUEST = "bad_request"
TOO_MANY_CODES = "too_many_codes"  # subscribe_ticks with more than MAX_TICK_CODES codes: nothing changed

# --- MiniQMT's codes (xtconstant; ../shared/qmt.md) ----------------------------------------------------------------
STOCK_BUY = 23
STOCK_SELL = 24
FIX_PRICE = 11
# Market price types and the exchanges where each is valid.
MARKET_PRICE_TYPES: dict[int, frozenset[str]] = {
    42: frozenset({"SH", "BJ"}),  # best five then cancel
    43: frozenset({"SH", "BJ"}),  # best five then limit
    44: frozenset({"SH", "SZ", "BJ"}),  # counterparty best
    45: frozenset({"SH", "SZ", "BJ"}),  # own best
    46: frozenset({"SZ"}),  # immediate or cancel
    47: frozenset({"SZ"}),  # best five then cancel
    48: frozenset({"SZ"}),  # fill or kill
}
ORDER_STATUSES = {
    48: "unreported",  # 未报
    49: "pending_report",  # 待报
    50: "reported",  # 已报
    51: "reported_cancel_pending",  # 已报待撤
    52: "partial_cancel_pending",  # 部成待撤
    53: "partially_cancelled",  # 部撤 (final: some filled, the rest cancelled)
    54: "cancelled",  # 已撤
    55: "partially_filled",  # 部成
    56: "filled",  # 已成
    57: "junk",  # 废单 (rejected)
    255: "unknown",
}
FINAL_ORDER_STATUS = frozenset({53, 54, 56, 57})
ACCOUNT_STATUSES = {
    -1: "invalid",
    0: "ok",
    1: "waiting_login",
    2: "logging_in",
    3: "failed",
    4: "initialising",
    5: "correcting",
    6: "closed",
    7: "assist_link_failed",
    8: "disabled_by_system",
    9: "disabled_by_user",
}


class ProtocolError(Exception):
    """A frame that fails its signature, sequence or shape check: the connection is closed."""


def remark_for(order_id: str) -> str:
    """The `order_remark` an order is placed with: the platform's order id cut to what MiniQMT keeps (24 ASCII
    characters; a uuid4 hex keeps 96 random bits, so two orders never share one). Both sides store the mapping."""
    if not order_id.isascii() or not order_id:
        raise ValueError("an order id must be non-empty ASCII")
    return order_id[:REMARK_LENGTH]


def canonical(value: Any) -> str:
    """The one text a JSON value is signed as: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def verify(secret: str, text: str, sig: Any) -> bool:
    return isinstance(sig, str) and hmac.compare_digest(sign(secret, text), sig)


def new_nonce() -> str:
    return secrets.token_hex(16)


def hello_text(*, bridge_id: str, account_id: str, channel: str, server_nonce: str, nonce: str, ts: str) -> str:
    return "|".join(("hello", str(VERSION), bridge_id, account_id, channel, server_nonce, nonce, ts))


def welcome_text(*, bridge_id: str, session: str, nonce: str, trading: dict[str, Any]) -> str:
    """The platform's answer is signed over the bridge's own nonce: the bridge knows it talks to the platform."""
    return "|".join(("welcome", str(VERSION), bridge_id, session, nonce, canonical(trading)))


def challenge(server_time: datetime) -> dict[str, Any]:
    return {"type": "challenge", "nonce": new_nonce(), "server_time": server_time.isoformat()}


def hello(
    secret: str, *, bridge_id: str, account_id: str, channel: str, server_nonce: str, now: datetime
) -> dict[str, Any]:
    nonce = new_nonce()
    ts = now.isoformat()
    text = hello_text(
        bridge_id=bridge_id, account_id=account_id, channel=channel, server_nonce=server_nonce, nonce=nonce, ts=ts
    )
    return {
        "type": "hello",
        "version": VERSION,
        "bridge_id": bridge_id,
        "account_id": account_id,
        "channel": channel,
        "nonce": nonce,
        "ts": ts,
        "sig": sign(secret, text),
    }


def check_hello(secret: str, message: dict[str, Any], *, server_nonce: str, now: datetime) -> str | None:
    """Why a hello is refused (None: it is good). The caller has found `secret` by the hello's bridge_id."""
    try:
        text = hello_text(
            bridge_id=str(message["bridge_id"]),
            account_id=str(message["account_id"]),
            channel=str(message["channel"]),
            server_nonce=server_nonce,
            nonce=str(message["nonce"]),
            ts=str(message["ts"]),
        )
        ts = datetime.fromisoformat(str(message["ts"]))
    except (KeyError, ValueError):
        return "the hello is malformed"
    if message.get("version") != VERSION:
        return f"protocol version {message.get('version')!r} is not {VERSION}"
    if message["channel"] not in CHANNELS:
        return f"unknown channel {message['channel']!r}"
    if not verify(secret, text, message.get("sig")):
        return "the hello's signature is wrong"
    if ts.tzinfo is None or abs((now - ts).total_seconds()) > MAX_CLOCK_SKEW_S:
        return "the hello's timestamp is too far from the platform's clock"
    return None


def welcome(secret: str, *, bridge_id: str, nonce: str, trading: dict[str, Any]) -> dict[str, Any]:
    session = new_nonce()
    text = welcome_text(bridge_id=bridge_id, session=session, nonce=nonce, trading=trading)
    return {"type": "welcome", "session": session, "trading": trading, "sig": sign(secret, text)}


def check_welcome(secret: str, message: dict[str, Any], *, bridge_id: str, nonce: str) -> bool:
    try:
        text = welcome_text(
            bridge_id=bridge_id, session=str(message["session"]), nonce=nonce, trading=message["trading"]
        )
    except (KeyError, TypeError):
        return False
    return message.get("type") == "welcome" and verify(secret, text, message.get("sig"))


def refused(code: str, message: str) -> dict[str, Any]:
    return {"type": "refused", "code": code, "message": message}


@dataclass
class Channel:
    """One side's view of an authenticated connection: signs what it sends, checks what it receives.
    `outgoing` is TO_BRIDGE on the platform's side, TO_PLATFORM on the bridge's. `loads` parses a received body's
    text once its signature is checked: `json.loads` here (the bridge's side: standard library only); a faster
    parser that gives the same objects for every text json.loads takes, and raises ValueError where it raises, may
    be given (the data service's quotes endpoint: services/data/realtime/bridge.py `parse_json`)."""

    secret: str
    session: str
    outgoing: str
    sent_seq: int = 0
    received_seq: int = 0
    _next_id: int = field(default=0, repr=False)
    loads: Callable[[str], Any] = field(default=json.loads, repr=False, compare=False)

    @property
    def incoming(self) -> str:
        return TO_PLATFORM if self.outgoing == TO_BRIDGE else TO_BRIDGE

    def _text(self, direction: str, seq: int, type_: str, id_: str | None, body_text: str) -> str:
        return "|".join((self.session, direction, str(seq), type_, id_ or "", body_text))

    def new_id(self) -> str:
        self._next_id += 1
        return f"{self.outgoing}-{self._next_id}"

    def seal(self, type_: str, body: dict[str, Any], *, id_: str | None = None) -> str:
        """The frame to send, as text: its header (seq, type, id, sig) as one line of JSON, a newline, then the
        body's JSON exactly as it was signed. The receiver checks the signature over the body's text as it came,
        so a full-market snapshot (megabytes) is hashed once and parsed once, never serialised again to check it."""
        self.sent_seq += 1
        body_text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        sig = sign(self.secret, self._text(self.outgoing, self.sent_seq, type_, id_, body_text))
        return canonical({"seq": self.sent_seq, "type": type_, "id": id_, "sig": sig}) + "\n" + body_text

    def open(self, text: str | bytes) -> tuple[str, str | None, dict[str, Any]]:
        """(type, id, body) of a received frame; raises ProtocolError when it is not authentic or out of order."""
        if isinstance(text, bytes):
            try:
                text = text.decode()
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"malformed frame: {exc}") from exc
        head_text, newline, body_text = text.partition("\n")
        if not newline:
            raise ProtocolError("malformed frame: no header line")
        try:
            head = json.loads(head_text)
            seq, type_, id_, sig = head["seq"], head["type"], head["id"], head["sig"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed frame: {exc}") from exc
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(type_, str):
            raise ProtocolError("malformed frame: seq or type has the wrong type")
        if id_ is not None and not isinstance(id_, str):
            raise ProtocolError("malformed frame: id is not a string")
        if not verify(self.secret, self._text(self.incoming, seq, type_, id_, body_text), sig):
            raise ProtocolError(f"frame {seq} ({type_}) has a wrong signature")
        if seq <= self.received_seq:
            raise ProtocolError(f"frame {seq} ({type_}) is not after frame {self.received_seq}: replayed or reordered")
        try:
            body = self.loads(body_text)  # the text just checked, as it came: parsed after, never before
        except ValueError as exc:
            raise ProtocolError(f"malformed frame {seq} ({type_}): its body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ProtocolError(f"malformed frame {seq} ({type_}): its body is not an object")
        self.received_seq = seq
        return type_, id_, body


def ok(body: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "body": body}


def failed(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}
