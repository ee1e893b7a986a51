"""An account's book as risk keeps it hot, built from execution's events: the one implementation of the hot state's
arithmetic (docs/risk-rules.md, "Hot state"). The memory store (`memory_book.py`) keeps whole `AccountBook`s; the
Redis store (`redis_book.py`) loads the part of one an event touches, applies the same methods, and writes back what
changed — so both give the same answers for the same history.

Every event applies idempotently and in any order, and every gap errs on risk's side (it may refuse what execution
would accept, never the reverse):
- `trade.executed` (by trade id, once): moves the cash balance by the fill's cash and the shares (a buy counts as
  bought in its session — the caller names it by `shared.platform.clock.order_session` of the trade's time, as
  execution's T+1 does: a fill after a close belongs to the next session — and is sellable from the next one);
- `position.adjusted` (by its key, once): a corporate action's shares (sellable at once) and cash in lieu;
- `order.<status>`: an order's state only moves forward (more filled, or final); an order commits, while open, what
  its trades seen so far have not used (a buy: its remaining shares at its price cap plus fees; a sell: its remaining
  shares) and, once final, what its announced fills have that their trades have not brought yet — so a fill whose
  order event arrives before its trade is still counted against the account;
- cash movements (by entry id, once).
Orders are keyed by client_order_id (unique per account), so that risk records an order it approves before execution
has it (`decided`, reserving its whole quantity at the `need_fen` its decision checked): an order is reserved from
risk's decision on, and released when execution refuses it (`rejected`), it ends, or its decision expires unanswered.

The running totals (`reserved_fen`, `selling`) always equal the sum over the orders: each buy order keeps the
reservation (fen) computed when its committed quantity or cap last changed, with the fee date of its own session (from
its decision or an order event that names one), else the event's (a trade's session), else the account's
`fee_session` (the session of its last reservation, or the seed's date). The arithmetic is execution's
(`shared.core.market.orders.buy_reservation_fen`, as execution's `services/execution/cash.py`; `positions.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from services.risk.state.ports import (
    AdjustmentEvent,
    BookEvent,
    BookSnapshot,
    BookView,
    CashEvent,
    HoldingView,
    OpenOrderView,
    OrderEvent,
    Reservation,
    TradeEvent,
    Verdict,
)
from shared.core.domain import OrderSide
from shared.core.market.orders import buy_reservation_fen
from shared.platform.clock import EXCHANGE_TZ

FINAL = frozenset({"filled", "cancelled", "rejected", "expired"})
DECIDED = "decided"  # risk approved it; execution has not answered yet


@dataclass
class OrderState:
    ts_code: str
    side: OrderSide
    qty: int
    cap_fen: int  # a buy's price cap (its limit price, or the limit-up it was admitted at); 0 for a sell
    filled_qty: int = 0  # as the order's events announce it
    final: bool = False
    traded_qty: int = 0  # as its trades brought it
    reserved_fen: int = 0  # a buy's reservation for its committed qty, as computed when that last changed
    decided: bool = False  # risk approved it; execution has not reported it yet
    decided_at: datetime | None = None
    session: date | None = None  # the session the order is for: its reservation's fee date
    # the order as the last view showed it (kept while it does not change: a view is read for every decision)
    shown: OpenOrderView | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def committed_qty(self) -> int:
        """Shares (a sell) or shares to pay for (a buy) the account still owes for this order."""
        announced = self.filled_qty if self.final else self.qty
        return max(announced - self.traded_qty, 0)

    def view(self, client_order_id: str, committed_qty: int) -> OpenOrderView:
        shown = self.shown
        if (
            shown is None
            or shown.remaining_qty != committed_qty
            or shown.decided != self.decided
            or shown.cap_fen != self.cap_fen
        ):
            shown = self.shown = OpenOrderView(
                client_order_id, self.ts_code, self.side, self.cap_fen, committed_qty, self.decided
            )
        return shown


# A buy this long before a newer one of the same code is sellable in any session a book is asked about: folded into
# `Lots.base` (execution's risk snapshot folds the buys before its 7-day window the same way).
FOLD_AFTER = timedelta(days=7)


@dataclass
class Lots:
    """One security's shares: `base` sellable in any session (seeded base, corporate actions), buys by session (T+1),
    sells."""

    base: int = 0
    bought_by_session: dict[date, int] = field(default_factory=dict)
    sold: int = 0
    # qty and the sellable shares by session, as last worked out: every decision's view reads every holding's, and
    # they change only with the methods below (which forget them)
    memo: dict[date | None, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def qty(self) -> int:
        qty = self.memo.get(None)
        if qty is None:
            qty = self.memo[None] = self.base + sum(self.bought_by_session.values()) - self.sold
        return qty

    def buy(self, session: date, qty: int) -> None:
        self.bought_by_session[session] = self.bought_by_session.get(session, 0) + qty
        self.fold_before(session - FOLD_AFTER)
        self.memo.clear()

    def sell(self, qty: int) -> None:
        self.sold += qty
        self.memo.clear()

    def adjust(self, qty_delta: int) -> None:
        """A corporate action's shares: sellable at once."""
        self.base += qty_delta
        self.memo.clear()

    def fold_before(self, day: date) -> None:
        """The buys of sessions before `day` counted in `base`: sellable in any session to come, as execution's
        snapshot counts a buy older than its window (services/execution/snapshot.py). Keeps the sessions a book sums
        as few as a week's, however long the account trades."""
        for session in [d for d in self.bought_by_session if d < day]:
            self.base += self.bought_by_session.pop(session)
        self.memo.clear()

    def sellable_before_sells(self, session: date) -> int:
        """Shares sellable in `session` before open sells take theirs: bought before it + base - sold."""
        sellable = self.memo.get(session)
        if sellable is None:
            before = sum(q for d, q in self.bought_by_session.items() if d < session)
            sellable = self.memo[session] = self.base + before - self.sold
        return sellable


@dataclass
class AccountBook:
    account_id: str
    balance_fen: int = 0
    reserved_fen: int = 0  # running total: the sum of the buy orders' `reserved_fen`
    fee_session: date | None = None
    orders: dict[str, OrderState] = field(default_factory=dict)
    lots: dict[str, Lots] = field(default_factory=dict)
    selling: dict[str, int] = field(default_factory=dict)  # running total by code: the sells' committed shares
    seen_trades: set[str] = field(default_factory=set)
    seen_entries: set[str] = field(default_factory=set)
    early: dict[str, int] = field(default_factory=dict)  # traded qty of orders not seen yet, by client_order_id
    # Orders that are over — final, every announced fill traded, reported by execution — kept only as their ids: a
    # late event of one changes nothing, and the book a decision reads holds only the orders that still matter.
    done: set[str] = field(default_factory=set)

    def _retire(self, client_order_id: str) -> None:
        """Move an order that is over out of `orders` (its reservation is already nothing)."""
        state = self.orders.get(client_order_id)
        if state is not None and state.final and not state.decided and state.committed_qty == 0:
            self._drop_order(client_order_id)  # (its reservation off the totals: e.g. a decided buy whose trades came
            self.done.add(client_order_id)  # first reserved its whole need and still holds it)

    # -- the running totals ------------------------------------------------------------------------------------------

    def _settle(self, state: OrderState, before_qty: int, before_cap: int | None, fee_date: date | None) -> None:
        """Bring the running totals and the order's reservation up to date after a change of `state` (whose
        committed qty and cap were `before_qty`, `before_cap`: None for a new order)."""
        after = state.committed_qty
        if state.side is OrderSide.BUY:
            if after != before_qty or state.cap_fen != before_cap:
                when = state.session or fee_date or self.fee_session or date.min
                new = buy_reservation_fen(after, state.cap_fen, when)
                self.reserved_fen += new - state.reserved_fen
                state.reserved_fen = new
        elif after != before_qty:
            total = self.selling.get(state.ts_code, 0) + after - before_qty
            if total:
                self.selling[state.ts_code] = total
            else:
                self.selling.pop(state.ts_code, None)

    def _drop_order(self, client_order_id: str) -> None:
        state = self.orders.pop(client_order_id)
        if state.side is OrderSide.BUY:
            self.reserved_fen -= state.reserved_fen
        else:
            committed = state.committed_qty
            total = self.selling.get(state.ts_code, 0) - committed
            if total:
                self.selling[state.ts_code] = total
            else:
                self.selling.pop(state.ts_code, None)

    def totals_consistent(self) -> bool:
        """The running totals equal the sums over the orders (what every store must keep true)."""
        selling: dict[str, int] = {}
        for o in self.orders.values():
            if o.side is OrderSide.SELL and o.committed_qty:
                selling[o.ts_code] = selling.get(o.ts_code, 0) + o.committed_qty
        reserved = sum(o.reserved_fen for o in self.orders.values() if o.side is OrderSide.BUY)
        return reserved == self.reserved_fen and selling == self.selling

    # -- events ------------------------------------------------------------------------------------------------------

    def apply(self, event: BookEvent) -> bool:
        if isinstance(event, OrderEvent):
            return self.on_order(event)
        if isinstance(event, TradeEvent):
            return self.on_trade(event)
        if isinstance(event, AdjustmentEvent):
            return self.on_adjustment(event)
        return self.on_cash(event)

    def on_order(self, event: OrderEvent) -> bool:
        cid = event.client_order_id
        if cid in self.done:
            return False
        state = self.orders.get(cid)
        cap = event.cap_fen or 0
        if state is None:
            state = OrderState(event.ts_code, event.side, event.qty, cap if event.side is OrderSide.BUY else 0)
            state.traded_qty = self.early.pop(cid, 0)
            state.session = event.session
            state.decided = event.status == DECIDED
            self.orders[cid] = state
            before: tuple[int, int | None, tuple[object, ...]] = (0, None, ())
        else:
            before = (state.committed_qty, state.cap_fen, _order_key(state))
        if event.status != DECIDED:  # (risk's own decisions come through `reserve`)
            state.decided = False  # reported by execution: no longer released nor expired
        state.filled_qty = max(state.filled_qty, event.filled_qty)
        state.final = state.final or event.status in FINAL
        if state.side is OrderSide.BUY and cap > state.cap_fen:
            state.cap_fen = cap  # the larger reservation: risk's side
        if event.session is not None:
            state.session = event.session
        self._settle(state, before[0], before[1], event.session)
        changed = before[2] != _order_key(state)
        self._retire(cid)
        return changed

    def on_trade(self, event: TradeEvent) -> bool:
        """False when this trade was applied before."""
        if event.trade_id in self.seen_trades:
            return False
        self.seen_trades.add(event.trade_id)
        self.balance_fen += event.cash_fen
        lots = self.lots.setdefault(event.ts_code, Lots())
        if event.side is OrderSide.BUY:
            lots.buy(event.session, event.qty)
        else:
            lots.sell(event.qty)
        self._drop_empty_lots(event.ts_code)
        state = self.orders.get(event.client_order_id)
        if state is None:
            if event.client_order_id not in self.done:
                self.early[event.client_order_id] = self.early.get(event.client_order_id, 0) + event.qty
        else:
            before_qty, before_cap = state.committed_qty, state.cap_fen
            state.traded_qty += event.qty
            self._settle(state, before_qty, before_cap, event.session)
            self._retire(event.client_order_id)
        return True

    def on_adjustment(self, event: AdjustmentEvent) -> bool:
        """A corporate action on the account's shares of `ts_code` (sellable at once, as execution has it) and its
        cash in lieu. False when applied before."""
        if event.key in self.seen_entries:
            return False
        self.seen_entries.add(event.key)
        self.balance_fen += event.cash_fen
        self.lots.setdefault(event.ts_code, Lots()).adjust(event.qty_delta)
        self._drop_empty_lots(event.ts_code)
        return True

    def on_cash(self, event: CashEvent) -> bool:
        if event.entry_id in self.seen_entries:
            return False
        self.seen_entries.add(event.entry_id)
        self.balance_fen += event.amount_fen
        return True

    def _drop_empty_lots(self, ts_code: str) -> None:
        lots = self.lots[ts_code]
        if not lots.base and not lots.sold and not any(lots.bought_by_session.values()):
            del self.lots[ts_code]

    # -- decisions ---------------------------------------------------------------------------------------------------

    def sellable(self, ts_code: str, session: date) -> int:
        """Shares of `ts_code` a sell of `session` may still take: bought before it + base - sold - open sells' shares,
        never below 0 nor above the shares held."""
        lots = self.lots.get(ts_code)
        if lots is None:
            return 0
        free = lots.sellable_before_sells(session) - self.selling.get(ts_code, 0)
        return max(min(free, lots.qty), 0)

    def reserve(
        self,
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
        """Check the binding limit and, if it passes, record the order `decided` with its whole reservation: a buy
        reserves `need_fen` (its qty at `cap_fen` plus fees, as the decision computed it), a sell its qty."""
        if client_order_id in self.orders or client_order_id in self.done:
            return Reservation(Verdict.ALREADY)
        if side is OrderSide.BUY:
            available = self.balance_fen - self.reserved_fen
            if available < need_fen:
                return Reservation(Verdict.INSUFFICIENT_CASH, available)
        else:
            available = self.sellable(ts_code, session)
            if available < qty:
                return Reservation(Verdict.INSUFFICIENT_POSITION, available)
        is_buy = side is OrderSide.BUY
        state = OrderState(ts_code, side, qty, cap_fen if is_buy else 0, decided=True, decided_at=decided_at)
        state.session = session
        state.traded_qty = self.early.pop(client_order_id, 0)
        self.orders[client_order_id] = state
        if is_buy:
            state.reserved_fen = need_fen
            self.reserved_fen += need_fen
        else:
            self._settle(state, 0, None, session)
        self.fee_session = session
        return Reservation(Verdict.RESERVED, available)

    def release(self, client_order_id: str) -> bool:
        """Drop a `decided` order execution refused; never one execution has reported. False: nothing dropped."""
        state = self.orders.get(client_order_id)
        if state is None or not state.decided:
            return False
        self._drop_order(client_order_id)
        return True

    def expire_decided(self, before: datetime) -> int:
        stale = [
            cid for cid, o in self.orders.items() if o.decided and o.decided_at is not None and o.decided_at < before
        ]
        for cid in stale:
            self._drop_order(cid)
        return len(stale)

    # -- reads -------------------------------------------------------------------------------------------------------

    def view(self, session: date) -> BookView:
        holdings = {}
        for code in sorted(self.lots):
            qty = self.lots[code].qty
            if qty:
                holdings[code] = HoldingView(code, qty, self.sellable(code, session))
        open_orders = []
        for cid, o in sorted(self.orders.items()):
            if not o.final:
                committed = o.committed_qty
                if committed > 0:
                    open_orders.append(o.view(cid, committed))
        return BookView(self.account_id, self.balance_fen, self.reserved_fen, holdings, tuple(open_orders))

    # -- seeding -----------------------------------------------------------------------------------------------------

    @classmethod
    def from_snapshot(
        cls, snapshot: BookSnapshot, *, previous: AccountBook | None, keep_decided_since: datetime
    ) -> AccountBook:
        """The book of execution's snapshot, plus `previous`'s decided orders the snapshot lacks that were decided at
        or after `keep_decided_since` (their execution answer may still come). Fee date of the snapshot's orders: the
        snapshot's date in exchange time."""
        book = cls(
            snapshot.account_id,
            balance_fen=snapshot.balance_fen,
            fee_session=snapshot.as_of.astimezone(EXCHANGE_TZ).date(),
            seen_trades=set(snapshot.trade_ids),
            seen_entries=set(snapshot.entry_keys),
        )
        for lot in snapshot.lots:
            book.lots[lot.ts_code] = Lots(lot.base, {d: q for d, q in lot.bought_by_session.items() if q})
            book._drop_empty_lots(lot.ts_code)
        for o in snapshot.orders:
            state = OrderState(
                o.ts_code,
                o.side,
                o.qty,
                o.cap_fen if o.side is OrderSide.BUY else 0,
                filled_qty=o.filled_qty,
                final=o.status in FINAL,
                traded_qty=o.traded_qty,
            )
            book.orders[o.client_order_id] = state
            book._settle(state, 0, None, None)
            book._retire(o.client_order_id)
        if previous is not None:
            for cid, prev in previous.orders.items():
                kept = prev.decided and prev.decided_at is not None and prev.decided_at >= keep_decided_since
                if kept and cid not in book.orders and cid not in book.done:
                    state = OrderState(
                        prev.ts_code, prev.side, prev.qty, prev.cap_fen, decided=True, decided_at=prev.decided_at,
                        session=prev.session, reserved_fen=prev.reserved_fen,
                    )  # fmt: skip
                    book.orders[cid] = state
                    if state.side is OrderSide.BUY:
                        book.reserved_fen += state.reserved_fen
                    else:
                        book._settle(state, 0, None, None)
        return book


def _order_key(state: OrderState) -> tuple[object, ...]:
    return (state.filled_qty, state.final, state.cap_fen, state.decided, state.session, state.traded_qty)
