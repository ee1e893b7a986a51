"""The hot state's port: what the risk desk asks of an account's book, and what feeds it. Two stores implement it —
memory (standalone mode, one process) and Redis (fleet mode, shared by every risk process) — and give the same answers
for the same history (tests/integration/risk/test_hot_book_equivalence.py). The reference arithmetic is
services/risk/state/book.py's, itself execution's (docs/risk-rules.md, "Hot state").

A decision is two calls: `view` (one read: the account's cash, reservations, holdings and open orders, for the rules)
then `reserve`, which re-checks the binding limits — available cash for a buy, sellable shares for a sell — and records
the approved order's reservation in one atomic step (Redis: a Lua script), so that concurrent decisions on one account
never spend the same cash or shares twice. Everything here errs on risk's side: an order is reserved from risk's
decision on (`decided`), and is released only when execution refuses it, it ends, or its decision expires unanswered.
Amounts are integer fen."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from shared.core.domain import OrderSide


class BookUnavailable(Exception):
    """The store cannot be read or written (Redis down): risk refuses new orders (503 risk_unavailable)."""


# -- what feeds the book -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderEvent:
    """`order.<status>` from execution. `cap_fen`: a buy's price cap (its limit price, or the limit-up a market buy
    was admitted at) when known, else None (the book keeps the cap it has, e.g. from risk's own decision)."""

    account_id: str
    client_order_id: str
    ts_code: str
    side: OrderSide
    qty: int
    status: str  # accepted, submitted, partially_filled, unknown (open), filled, rejected, cancelled, expired
    filled_qty: int
    cap_fen: int | None = None
    session: date | None = None  # the session the order is for (fee date of its reservation); None: the book's


@dataclass(frozen=True)
class TradeEvent:
    """`trade.executed`: `cash_fen` is what the fill did to the balance (a buy: -(amount + fees); a sell: amount -
    fees); `session`: the session the fill counts in for T+1 (`shared.platform.clock.order_session` of its time)."""

    account_id: str
    trade_id: str
    client_order_id: str
    ts_code: str
    side: OrderSide
    qty: int
    cash_fen: int
    session: date


@dataclass(frozen=True)
class AdjustmentEvent:
    """`position.adjusted` for the account's own holding (not an instance's part): shares sellable at once, cash in
    lieu. `key`: the adjustment's unique key."""

    account_id: str
    key: str
    ts_code: str
    qty_delta: int
    cash_fen: int


@dataclass(frozen=True)
class CashEvent:
    """A cash movement (deposit, withdrawal) by its ledger entry id."""

    account_id: str
    entry_id: str
    amount_fen: int


BookEvent = OrderEvent | TradeEvent | AdjustmentEvent | CashEvent


# -- the snapshot the book is seeded from (execution's GET /v1/risk-snapshot) ----------------------------------------


@dataclass(frozen=True)
class SnapshotOrder:
    client_order_id: str
    ts_code: str
    side: OrderSide
    qty: int
    cap_fen: int  # 0 for a sell
    status: str
    filled_qty: int
    traded_qty: int  # what its trades (in the snapshot's balance and lots) brought


@dataclass(frozen=True)
class SnapshotLots:
    """One security's shares: `bought_by_session` the recent buys by session (T+1 still matters for them), `base`
    every other share (older buys + corporate actions - sells), sellable in any session."""

    ts_code: str
    base: int
    bought_by_session: Mapping[date, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BookSnapshot:
    """Execution's account as of `as_of`: the balance (ledger sum), open orders and recent final ones, the lots, and
    the ids of recent trades, adjustments and cash entries already counted (so that their events, arriving after
    the seed, are not counted twice)."""

    account_id: str
    as_of: datetime
    balance_fen: int
    orders: tuple[SnapshotOrder, ...]
    lots: tuple[SnapshotLots, ...]
    trade_ids: frozenset[str]
    entry_keys: frozenset[str]  # adjustment keys and cash entry ids


# -- what the desk reads and does --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenOrderView:
    client_order_id: str
    ts_code: str
    side: OrderSide
    cap_fen: int  # 0 for a sell
    remaining_qty: int  # shares it still commits (unfilled, or filled but not yet traded)
    decided: bool  # risk approved it; execution has not reported it yet


@dataclass(frozen=True)
class HoldingView:
    ts_code: str
    qty: int
    sellable_qty: int  # for the session asked: bought before it + base - sold - open sells' shares (>= 0, <= qty)


@dataclass(frozen=True)
class BookView:
    account_id: str
    balance_fen: int
    reserved_fen: int  # open (and decided) buys' reservations
    holdings: Mapping[str, HoldingView]
    open_orders: tuple[OpenOrderView, ...]

    @property
    def available_fen(self) -> int:
        return self.balance_fen - self.reserved_fen


class Verdict(StrEnum):
    RESERVED = "reserved"
    ALREADY = "already"  # this client_order_id holds a reservation already (a retry): nothing changed
    INSUFFICIENT_CASH = "insufficient_cash"
    INSUFFICIENT_POSITION = "insufficient_position"
    NOT_SEEDED = "not_seeded"


@dataclass(frozen=True)
class Reservation:
    verdict: Verdict
    available: int = 0  # fen (a buy) or sellable shares (a sell) the check found


class HotBook(Protocol):
    async def seeded(self, account_id: str) -> bool:
        """Whether the account's book has been seeded (and not dropped since)."""

    async def seed(self, snapshot: BookSnapshot, *, keep_decided_since: datetime, forget_events: bool = False) -> None:
        """Replace the account's book with the snapshot, atomically; `decided` orders not in the snapshot and decided
        at or after `keep_decided_since` are kept (their execution answer may still come). The account's recent events
        are applied again over it — or, with `forget_events` (a drift repair: one of them may be the wrong one),
        dropped: the snapshot, read after they were applied, counts every real one."""

    async def apply(self, event: BookEvent) -> bool:
        """Apply one event, idempotently (trades by id, adjustments and cash by key; orders only move forward).
        Every event is also kept a while in the account's recent events (seeded or not), which `seed` applies again
        over the snapshot: an event that arrives while a seed's snapshot is being read is not lost. Events of an
        account not seeded change nothing else. False when nothing changed."""

    async def view(self, account_id: str, session: date) -> BookView | None:
        """The account's book for an order of `session` (T+1 and fee dates). None: not seeded."""

    async def reserve(
        self,
        account_id: str,
        client_order_id: str,
        *,
        ts_code: str,
        side: OrderSide,
        qty: int,
        cap_fen: int,
        need_fen: int,
        session: date,
        decided_at: datetime,
    ) -> Reservation:
        """Atomically: a buy passes if available cash >= `need_fen` (its qty at `cap_fen` plus fees), a sell if the
        sellable shares of `ts_code` for `session` >= `qty`; a passing order is recorded `decided`, reserving it."""

    async def release(self, account_id: str, client_order_id: str) -> None:
        """Drop a `decided` order execution refused (never an order execution has reported)."""

    async def expire_decided(self, before: datetime) -> int:
        """Drop `decided` orders decided before `before` that execution never reported; how many."""

    async def drop(self, account_id: str, *, forget_events: bool = False) -> None:
        """Forget the account (it is seeded again before its next decision). `forget_events`: its recent events too,
        so that the next seed does not apply them again (reconciliation repairing drift: an event that made the book
        wrong must not make the new one wrong; every event heard so far is in a snapshot read after this)."""

    async def accounts(self) -> list[str]:
        """The accounts seeded (reconciliation's round)."""


# -- an account's recent events, kept a while so that a seed can apply them again (see HotBook.apply) ---------------

RECENT_EVENTS_S = 120  # longer than any seed takes (one snapshot request); shorter than the snapshot's id window
RECENT_EVENTS_MAX = 2000  # per account


def encode_event(event: BookEvent) -> str:
    """The event as JSON (the Redis store keeps the recent ones)."""
    body: dict[str, object] = {"kind": type(event).__name__}
    for name, value in vars(event).items():
        if isinstance(value, OrderSide):
            body[name] = value.value
        elif isinstance(value, date):
            body[name] = value.isoformat()
        else:
            body[name] = value
    return json.dumps(body, separators=(",", ":"))


def decode_event(raw: str | bytes) -> BookEvent:
    body = json.loads(raw)
    kind = body.pop("kind")
    if "side" in body:
        body["side"] = OrderSide(body["side"])
    if body.get("session") is not None:
        body["session"] = date.fromisoformat(body["session"])
    cls = {c.__name__: c for c in (OrderEvent, TradeEvent, AdjustmentEvent, CashEvent)}[kind]
    return cls(**body)
