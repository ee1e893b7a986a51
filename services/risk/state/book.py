"""An account's book as risk keeps it hot, built from execution's events — the reference model of the risk engine's
state (docs/risk-rules.md, "Hot state"): the memory store of standalone mode uses it as is, and a shared store must
give the same answers for the same events.

Every event applies idempotently and in any order, and every gap errs on risk's side (it may refuse what execution
would accept, never the reverse):
- `trade.executed` (by trade id, once): moves the cash balance by the fill's cash and the shares (a buy counts as
  bought in its session — the caller names it by `shared.platform.clock.order_session` of the trade's time, as
  execution's T+1 does: a fill after a close belongs to the next session — and is sellable from the next one);
- `position.adjusted` (by its key, once): a corporate action's shares (sellable at once) and cash in lieu;
- `order.<status>`: an order's state only moves forward (more filled, or final); an order reserves, while open, what
  its trades seen so far have not used (a buy: its remaining shares at its price cap plus fees; a sell: its remaining
  shares) and, once final, what its announced fills have that their trades have not brought yet — so a fill whose
  order event arrives before its trade is still counted against the account;
- cash movements (by entry id, once).
Orders are keyed by client_order_id (unique per account), so that risk records an order it approves before execution
has it (`decided`, reserving its whole quantity): an order is reserved from risk's decision on, and released when
execution refuses it (`rejected`) or it ends.
The arithmetic is execution's (`services/execution/cash.py`, `positions.py`, shared/core/market/orders.py): the same
history gives the same balance, reservation, holdings and sellable shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from shared.core.domain import OrderSide, from_fen, to_fen
from shared.core.market.orders import Holding, buy_cost

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

    @property
    def committed_qty(self) -> int:
        """Shares (a sell) or shares to pay for (a buy) the account still owes for this order."""
        announced = self.filled_qty if self.final else self.qty
        return max(announced - self.traded_qty, 0)


@dataclass
class Lots:
    bought_by_day: dict[date, int] = field(default_factory=dict)  # by session
    sold: int = 0
    adjusted: int = 0  # corporate actions: sellable at once


@dataclass
class AccountBook:
    account_id: str
    balance_fen: int = 0
    orders: dict[str, OrderState] = field(default_factory=dict)
    lots: dict[str, Lots] = field(default_factory=dict)
    seen_trades: set[str] = field(default_factory=set)
    seen_entries: set[str] = field(default_factory=set)
    # trades whose order has not been seen yet: applied to the order when it arrives
    _early: dict[str, int] = field(default_factory=dict)

    # -- events ------------------------------------------------------------------------------------------------------

    def on_order(
        self,
        client_order_id: str,
        *,
        ts_code: str,
        side: OrderSide,
        qty: int,
        cap_fen: int,
        status: str,
        filled_qty: int,
    ) -> None:
        state = self.orders.get(client_order_id)
        if state is None:
            state = OrderState(ts_code, side, qty, cap_fen if side is OrderSide.BUY else 0)
            state.traded_qty = self._early.pop(client_order_id, 0)
            self.orders[client_order_id] = state
        state.filled_qty = max(state.filled_qty, filled_qty)
        state.final = state.final or status in FINAL
        if state.side is OrderSide.BUY and cap_fen > state.cap_fen:
            state.cap_fen = cap_fen  # the larger reservation: risk's side

    def on_trade(
        self, trade_id: str, *, client_order_id: str, ts_code: str, side: OrderSide, qty: int, cash_fen: int,
        session: date,
    ) -> bool:  # fmt: skip
        """`cash_fen`: what the fill did to the balance (a buy's amount plus fees, negative; a sell's amount less
        fees); `session`: the trading session the fill belongs to (T+1). False when this trade was applied before."""
        if trade_id in self.seen_trades:
            return False
        self.seen_trades.add(trade_id)
        self.balance_fen += cash_fen
        lots = self.lots.setdefault(ts_code, Lots())
        if side is OrderSide.BUY:
            lots.bought_by_day[session] = lots.bought_by_day.get(session, 0) + qty
        else:
            lots.sold += qty
        state = self.orders.get(client_order_id)
        if state is None:
            self._early[client_order_id] = self._early.get(client_order_id, 0) + qty
        else:
            state.traded_qty += qty
        return True

    def on_adjustment(self, key: str, *, ts_code: str, qty_delta: int, cash_fen: int) -> bool:
        """A corporate action on the account's shares of `ts_code` (sellable at once, as execution has it) and its
        cash in lieu. False when applied before."""
        if key in self.seen_entries:
            return False
        self.seen_entries.add(key)
        self.balance_fen += cash_fen
        self.lots.setdefault(ts_code, Lots()).adjusted += qty_delta
        return True

    def on_cash(self, entry_id: str, amount_fen: int) -> bool:
        if entry_id in self.seen_entries:
            return False
        self.seen_entries.add(entry_id)
        self.balance_fen += amount_fen
        return True

    # -- reads -------------------------------------------------------------------------------------------------------

    def reserved_fen(self, today: date) -> int:
        total = 0
        for o in self.orders.values():
            if o.side is OrderSide.BUY and o.committed_qty:
                total += to_fen(buy_cost(o.committed_qty, from_fen(o.cap_fen), today))
        return total

    def available_fen(self, today: date) -> int:
        return self.balance_fen - self.reserved_fen(today)

    def holdings(self, today: date) -> list[Holding]:
        """As execution's `GET /v1/positions` for session `today`: qty = bought + adjusted - sold; sellable = bought
        in sessions before `today` + adjusted - sold - what open sells reserve (never below 0, never above qty)."""
        selling: dict[str, int] = {}
        for o in self.orders.values():
            if o.side is OrderSide.SELL and o.committed_qty:
                selling[o.ts_code] = selling.get(o.ts_code, 0) + o.committed_qty
        out = []
        for code in sorted(self.lots):
            lots = self.lots[code]
            before = sum(q for d, q in lots.bought_by_day.items() if d < today) + lots.adjusted
            qty = sum(lots.bought_by_day.values()) + lots.adjusted - lots.sold
            if qty == 0:
                continue
            sellable = max(before - lots.sold - selling.get(code, 0), 0)
            out.append(Holding(ts_code=code, qty=qty, sellable_qty=min(sellable, max(qty, 0))))
        return out
