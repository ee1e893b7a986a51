"""A strategy instance's sleeve: its cash, positions and cost, its orders waiting for a bar, and what it sent.

`SleeveBook` is the runner's side of the strategy API: it implements the engine's `Book` (the portfolio the
`BacktestContext` reads and queues orders into), so a strategy runs live through the very context it is backtested
with. Where the engine fills its queued orders itself, the book only *plans* them: each day it sizes the orders due
with the engine's own matching functions (the same quantity, price and refusals), and the runner sends the plans
through risk to execution. The book's cash and positions change only by the fills execution reports (idempotent by
trade id), so the sleeve is what the account really did for this instance, and by the corporate actions of its
ex-dates (`corporate_actions`: the engine's rule, shared.core.market.corporate, from the panel's adj_factor), which
execution applies to the instance's part of the account alike.

Pure: no I/O. The book round-trips through JSON (`to_json` / `from_json`) so that a restarted runner carries on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.core.market.corporate import adjusted_holdings
from shared.core.market.fees import FenFees
from shared.core.market.matching import (
    R_CASH,
    R_END,
    R_FEES,
    R_NONE,
    REASONS,
    STATUS_CANCELLED,
    STATUS_FILLED,
    STATUS_PARTIAL,
    STATUS_REJECTED,
    buys_paid_for,
    fill_rounds,
    fillable,
    sells_paid_for,
    size_orders,
)
from shared.research.engine.config import BacktestConfig
from shared.research.engine.core import Sizing
from shared.research.engine.data import Panel
from shared.research.engine.result import yuan

IntArray = npt.NDArray[np.int64]
INIT_BAR = "init"  # the bar key of orders placed in on_init
# how long the shares bought and sold each day are kept (a day's corporate actions apply to the shares held before
# its fills, which on the real clock are booked before its bar arrives)
DAYS_KEPT = timedelta(days=14)


def client_order_id(instance_id: str, bar_key: str, seq: int) -> str:
    """The id of the `seq`-th order an instance's strategy placed on the bar `bar_key` (YYYYMMDD, or "init"): the
    same order gets the same id however often the bar is run again, so execution never takes it twice."""
    return f"{instance_id}-{bar_key}-{seq}"


def bar_key(day: date | None) -> str:
    return INIT_BAR if day is None else day.strftime("%Y%m%d")


@dataclass(frozen=True)
class SessionRow:
    """One session's prices over the universe, by symbol column: what the orders due that session are sized at.
    In a replay, the session's own bar (`SleeveBook.panel_row`); on the real clock, reference prices known before
    the session opens (the last close, and the session's limits from it)."""

    day: date
    prices: IntArray  # the fill price of each symbol (fen; 0 where none)
    up_limit: IntArray
    down_limit: IntArray
    vol: npt.NDArray[np.float64]
    has_bar: npt.NDArray[np.bool_]


@dataclass
class Intent:
    """An order the strategy queued, in the engine's terms (a kind and an amount), not yet sent."""

    intent_id: int
    sym: int
    kind: int
    amount: int
    bar: str  # bar key of the bar that placed it
    seq: int  # its position among that bar's orders

    def as_json(self, codes: tuple[str, ...]) -> list[Any]:
        return [self.intent_id, codes[self.sym], self.kind, self.amount, self.bar, self.seq]


@dataclass
class Plan:
    """One order to send: sized at the session's prices exactly as the engine would fill it."""

    intent: Intent
    client_order_id: str
    ts_code: str
    side: str  # buy | sell
    qty: int
    price_fen: int  # the limit price: the price the engine's matching gives on this bar
    reason: int  # the engine's reason code already known at sizing (e.g. volume cap), R_NONE otherwise


@dataclass
class Settlement:
    """How an intent ended, as the strategy's on_order hears it."""

    intent: Intent
    status: int
    filled_qty: int
    reason: str


@dataclass
class TradeFill:
    trade_id: str
    client_order_id: str
    ts_code: str
    side: str
    qty: int
    price_fen: int
    commission_fen: int
    stamp_duty_fen: int
    transfer_fee_fen: int
    trade_date: date

    @property
    def fees_fen(self) -> int:
        return self.commission_fen + self.stamp_duty_fen + self.transfer_fee_fen


@dataclass
class DayRecord:
    day: date
    cash_fen: int
    market_value_fen: int
    traded_fen: int
    fees_fen: int
    realised_fen: int


@dataclass(frozen=True)
class DayClose:
    """The sleeve at a day's close, as the instance's daily record keeps it (the strategy_instance_days table)."""

    trade_date: date
    cash_fen: int
    market_value_fen: int  # the positions at the day's close
    realised_pnl_fen: int  # since the instance began: sells' proceeds less fees less the cost they took
    day_realised_pnl_fen: int  # of that day's sells
    unrealised_pnl_fen: int  # market value less the cost of what is held (fees included)
    fees_fen: int  # that day's
    total_fees_fen: int  # since the instance began
    turnover_fen: int  # that day's traded amount, buys and sells
    positions: list[dict[str, Any]]  # ts_code, qty, sellable_qty, cost_fen, close_fen, market_value_fen

    @property
    def equity_fen(self) -> int:
        return self.cash_fen + self.market_value_fen


@dataclass
class SleeveBook:
    """Implements shared.research.engine.context.Book for one instance over `panel` (its universe's days)."""

    panel: Panel
    config: BacktestConfig
    instance_id: str
    positions: IntArray = field(init=False)
    bought_today: IntArray = field(init=False)
    cost_fen: IntArray = field(init=False)
    cash_fen: int = field(init=False)
    initial_cash_fen: int = field(init=False)
    t: int = -1
    session_day: date | None = None  # the session orders are sized for and fills count as "today" in (T+1)
    sent_session: date | None = None  # the last session whose orders were all sent (or settled)
    bar_done: bool = True  # day t's on_bar ran (False while its orders are being sent: a restart runs it again)
    next_intent: int = 0
    pending: list[Intent] = field(default_factory=list)
    # queued by a hook and not yet pending: on_bar's, and those on_trade / on_order place while a session is open
    # (they join on that day's on_bar's, as in the engine); stored with the book, so a new panel or a restart keeps them
    fresh: list[Intent] = field(default_factory=list)
    seq_by_bar: dict[str, int] = field(default_factory=dict)
    applied_trades: dict[str, None] = field(default_factory=dict)  # trade ids booked, in booking order
    filled_by_order: dict[str, int] = field(default_factory=dict)
    buys_by_day: dict[str, dict[str, int]] = field(default_factory=dict)  # ISO day -> code -> shares bought
    sells_by_day: dict[str, dict[str, int]] = field(default_factory=dict)  # ISO day -> code -> shares sold
    actions_day: date | None = None  # the last day whose corporate actions were applied
    actions: list[dict[str, Any]] = field(default_factory=list)  # as the engine's result.corporate_actions
    history: list[DayRecord] = field(default_factory=list)
    realised_fen: int = 0
    sell_pnl: list[int] = field(default_factory=list)  # realised P&L of each sell, after fees (the metrics' trades)
    fees_paid_fen: int = 0
    traded_today_fen: int = 0
    fees_today_fen: int = 0
    realised_today_fen: int = 0

    def __post_init__(self) -> None:
        n = len(self.panel.codes)
        self.positions = np.zeros(n, dtype=np.int64)
        self.bought_today = np.zeros(n, dtype=np.int64)
        self.cost_fen = np.zeros(n, dtype=np.int64)
        self.initial_cash_fen = int(self.config.initial_cash * 100)
        self.cash_fen = self.initial_cash_fen
        self.sizing = Sizing.of(self.panel, self.config)
        self.fees = FenFees.from_schedule(self.config.fee_schedule(), stamp_duty=self.config.stamp_duty)
        self.columns = {code: j for j, code in enumerate(self.panel.codes)}

    # --- Book ----------------------------------------------------------------------------------------------------
    def sellable(self) -> IntArray:
        if not self.config.t_plus_one:
            return self.positions.copy()
        return self.positions - self.bought_today

    def market_value_fen(self) -> int:
        if self.t < 0:
            return 0
        return int(self.positions @ self.panel.close[self.t])

    def queue(self, cols: IntArray, kind: int, amounts: IntArray) -> IntArray:
        key = bar_key(self.panel.dates[self.t] if self.t >= 0 else None)
        first_seq = self.seq_by_bar.get(key, 0)
        ids = np.arange(self.next_intent, self.next_intent + len(cols), dtype=np.int64)
        self.next_intent += len(cols)
        self.seq_by_bar[key] = first_seq + len(cols)
        for k, (col, amount) in enumerate(zip(cols.tolist(), amounts.astype(np.int64).tolist(), strict=True)):
            self.fresh.append(Intent(int(ids[k]), int(col), kind, int(amount), key, first_seq + k))
        return ids

    def take_new(self) -> None:
        """The orders queued during the hook that just ran join the pending ones (in order-id order)."""
        self.pending.extend(self.fresh)
        self.fresh = []

    # --- a session ------------------------------------------------------------------------------------------------
    def begin_day(self, t: int) -> None:
        """Day t of the panel is the session (a replay: its bar is known when it opens): its corporate actions
        first, as the engine applies them before the day's fills."""
        self.t = t
        self.open_session(self.panel.dates[t])
        self.corporate_actions(t)

    def corporate_actions(self, t: int) -> list[dict[str, Any]]:
        """Day t's corporate actions, once: each position held at the start of the session (before the day's fills,
        which on the real clock are booked before its bar) of a symbol with a bar on t whose adj_factor moved
        becomes what the engine's rule gives (shared.core.market.corporate), the fraction paid in cash at the day's
        pre_close, which lowers the position's cost. The same rule and numbers as execution's adjustment of the
        instance's part of the account. Returns what it applied (the engine's `corporate_actions` rows)."""
        day = self.panel.dates[t]
        if self.actions_day is not None and day <= self.actions_day:
            return []
        self.actions_day = day
        adj = self.panel.adj_factor
        if adj is None or t == 0 or not self.config.corporate_actions:
            return []
        ratio = adj[t] / adj[t - 1]
        start = self.positions.copy()
        for code, qty in self.buys_by_day.get(day.isoformat(), {}).items():
            start[self.columns[code]] -= qty
        for code, qty in self.sells_by_day.get(day.isoformat(), {}).items():
            start[self.columns[code]] += qty
        held = np.flatnonzero((ratio != 1.0) & (start > 0) & self.panel.has_bar[t])
        if len(held) == 0:
            return []
        before = start[held]
        after, cash = adjusted_holdings(before, ratio[held], self.panel.pre_close[t, held])
        self.positions[held] += after - before
        self.cash_fen += int(cash.sum())
        self.cost_fen[held] = np.maximum(self.cost_fen[held] - cash, 0)
        applied = [
            {
                "trade_date": day.isoformat(),
                "ts_code": self.panel.codes[j],
                "ratio": float(ratio[j]),
                "qty_before": int(before[k]),
                "qty_after": int(after[k]),
                "cash_in_lieu": yuan(int(cash[k])),
            }
            for k, j in enumerate(held.tolist())
        ]
        self.actions.extend(applied)
        return applied

    def open_session(self, day: date) -> None:
        """`day`'s session opens: T+1 counts the shares bought on it (fills booked before its bar arrived too)."""
        if self.session_day == day:
            return
        self.session_day = day
        self.bar_done = False
        self.bought_today[:] = 0
        today = day.isoformat()
        for code, qty in self.buys_by_day.get(today, {}).items():
            self.bought_today[self.columns[code]] = qty
        kept = (day - DAYS_KEPT).isoformat()
        self.buys_by_day = {d: b for d, b in self.buys_by_day.items() if d >= kept}
        self.sells_by_day = {d: b for d, b in self.sells_by_day.items() if d >= kept}
        self.traded_today_fen = self.fees_today_fen = self.realised_today_fen = 0

    def panel_row(self, t: int) -> SessionRow:
        """Day t's own bar as the session's prices (a replay, and the backtest)."""
        p = self.panel
        return SessionRow(p.dates[t], self.sizing.fill_prices[t], p.up_limit[t], p.down_limit[t], p.vol[t],
                          p.has_bar[t])  # fmt: skip

    def due(self, row: SessionRow) -> tuple[list[Intent], list[Settlement]]:
        """The pending orders that may fill this session (their symbol has a bar), in order-id order, and the ones a
        suspension cancels (`suspended_orders="cancel"`); the others keep waiting, as in the engine. The tradeable ones
        stay pending until each is sent or settled (`done`), so a book stored between two rounds still holds the
        orders of the later rounds."""
        if not self.pending:
            return [], []
        syms = np.array([i.sym for i in self.pending], dtype=np.int64)
        ok, why = fillable(self.sizing.rules, row.has_bar[syms], row.prices[syms])
        tradeable: list[Intent] = []
        cancelled: list[Settlement] = []
        for k, intent in enumerate(self.pending):
            if ok[k]:
                tradeable.append(intent)
            elif self.config.suspended_orders == "cancel":
                cancelled.append(Settlement(intent, STATUS_CANCELLED, 0, REASONS[int(why[k])]))
        return tradeable, cancelled

    def done(self, intent: Intent) -> None:
        """The intent left the book's hands: settled, or sent (execution holds its order now)."""
        self.pending = [i for i in self.pending if i.intent_id != intent.intent_id]

    @staticmethod
    def rounds(intents: list[Intent]) -> list[list[Intent]]:
        """Several orders for one symbol in a day go in rounds, each seeing the book the previous one left."""
        if not intents:
            return []
        syms = np.array([i.sym for i in intents], dtype=np.int64)
        return [[intents[k] for k in sel.tolist()] for sel in fill_rounds(syms)]

    def size(self, intents: list[Intent], row: SessionRow) -> tuple[list[Plan], list[Plan], list[Settlement]]:
        """One round sized against the book as it stands, at the session's prices: (sells to send, buys to size
        against the cash once the sells filled, intents settled without an order: nothing to trade, a bad lot,
        limit-up/down...)."""
        syms = np.array([i.sym for i in intents], dtype=np.int64)
        kinds = np.array([i.kind for i in intents], dtype=np.int64)
        amts = np.array([i.amount for i in intents], dtype=np.int64)
        pos = self.positions[syms]
        sellable = pos - self.bought_today[syms] if self.config.t_plus_one else pos.copy()
        sz = self.sizing
        qty, px, _buy, sell, reason, bad_lot = size_orders(
            sz.rules, row.prices, row.up_limit, row.down_limit, row.vol, sz.lot_min, sz.lot_step, syms, kinds, amts,
            pos, sellable,
        )  # fmt: skip
        sells: list[Plan] = []
        buys: list[Plan] = []
        settled: list[Settlement] = []
        sell_idx = [k for k in range(len(intents)) if sell[k] and qty[k] > 0]
        if sell_idx:
            # a sale whose fees exceed its amount goes only if the cash pays the difference (the engine's rule)
            amount = qty[sell_idx] * px[sell_idx]
            proceeds = (
                amount - self.fees.commission(amount) - self.fees.stamp(amount, row.day) - self.fees.transfer(amount)
            )
            keep = sells_paid_for(self.cash_fen, proceeds)
        for k, intent in enumerate(intents):
            if bad_lot[k]:
                settled.append(Settlement(intent, STATUS_REJECTED, 0, REASONS[int(reason[k])]))
            elif qty[k] <= 0:
                settled.append(Settlement(intent, STATUS_CANCELLED, 0, REASONS[int(reason[k])]))
            elif sell[k]:
                if not keep[sell_idx.index(k)]:
                    settled.append(Settlement(intent, STATUS_CANCELLED, 0, REASONS[R_FEES]))
                else:
                    sells.append(self._plan(intent, "sell", int(qty[k]), int(px[k]), int(reason[k])))
            else:
                buys.append(self._plan(intent, "buy", int(qty[k]), int(px[k]), int(reason[k])))
        return sells, buys, settled

    def afford(self, buys: list[Plan]) -> tuple[list[Plan], list[Settlement]]:
        """The round's buys cut to what the cash pays, in order-id order, as the engine does (after the sells)."""
        if not buys:
            return [], []
        qty = np.array([b.qty for b in buys], dtype=np.int64)
        px = np.array([b.price_fen for b in buys], dtype=np.int64)
        amount = qty * px
        total = amount + self.fees.commission(amount) + self.fees.transfer(amount)
        if int(total.sum()) <= self.cash_fen:
            return buys, []
        syms = np.array([b.intent.sym for b in buys], dtype=np.int64)
        got = buys_paid_for(self.fees, self.cash_fen, qty, px, total, self.sizing.lot_min[syms],
                            self.sizing.lot_step[syms])  # fmt: skip
        kept: list[Plan] = []
        dropped: list[Settlement] = []
        for plan, q in zip(buys, got.tolist(), strict=True):
            why = plan.reason if plan.reason != R_NONE or q == plan.qty else R_CASH
            if q == 0:
                dropped.append(Settlement(plan.intent, STATUS_CANCELLED, 0, REASONS[why]))
            else:
                kept.append(Plan(plan.intent, plan.client_order_id, plan.ts_code, "buy", q, plan.price_fen, why))
        return kept, dropped

    def _plan(self, intent: Intent, side: str, qty: int, price_fen: int, reason: int) -> Plan:
        return Plan(
            intent=intent,
            client_order_id=client_order_id(self.instance_id, intent.bar, intent.seq),
            ts_code=self.panel.codes[intent.sym],
            side=side,
            qty=qty,
            price_fen=price_fen,
            reason=reason,
        )

    @staticmethod
    def settle_sent(plan: Plan, filled_qty: int, broker_status: str, broker_reason: str | None) -> Settlement:
        """How a sent order ends for the strategy: as the engine says it (filled, or partly with the sizing's
        reason), or, when the trading path refused or cancelled it, with that path's reason."""
        if filled_qty > 0:
            full = filled_qty == plan.qty and plan.reason == R_NONE
            reason = REASONS[plan.reason] if plan.reason != R_NONE else (broker_reason or "")
            return Settlement(plan.intent, STATUS_FILLED if full else STATUS_PARTIAL, filled_qty, reason)
        status = STATUS_REJECTED if broker_status == "rejected" else STATUS_CANCELLED
        return Settlement(plan.intent, status, 0, broker_reason or broker_status)

    def end_of_data(self) -> list[Settlement]:
        """What is still pending when a replay ends is cancelled, as the engine does."""
        out = [Settlement(i, STATUS_CANCELLED, 0, REASONS[R_END]) for i in self.pending]
        self.pending = []
        return out

    # --- fills ----------------------------------------------------------------------------------------------------
    def apply(self, fill: TradeFill) -> bool:
        """Books one fill of this instance; False when it was booked already (a redelivered event)."""
        if fill.trade_id in self.applied_trades:
            return False
        j = self.columns.get(fill.ts_code)
        if j is None:
            raise ValueError(f"fill {fill.trade_id} of {fill.ts_code}, outside the instance's universe")
        self.applied_trades[fill.trade_id] = None
        self.filled_by_order[fill.client_order_id] = self.filled_by_order.get(fill.client_order_id, 0) + fill.qty
        amount = fill.qty * fill.price_fen
        fees = fill.fees_fen
        if fill.side == "buy":
            self.positions[j] += fill.qty
            day = self.buys_by_day.setdefault(fill.trade_date.isoformat(), {})
            day[fill.ts_code] = day.get(fill.ts_code, 0) + fill.qty
            if fill.trade_date == self.session_day:
                self.bought_today[j] += fill.qty
            self.cost_fen[j] += amount + fees
            self.cash_fen -= amount + fees
        else:
            pos = int(self.positions[j])
            cost = int(self.cost_fen[j])
            # the sold fraction of the position's cost, half-up to the fen; a full exit takes all of it (the engine's)
            removed = cost if fill.qty >= pos else (2 * cost * fill.qty + pos) // (2 * max(pos, 1))
            self.cost_fen[j] = cost - removed
            self.positions[j] = pos - fill.qty
            day = self.sells_by_day.setdefault(fill.trade_date.isoformat(), {})
            day[fill.ts_code] = day.get(fill.ts_code, 0) + fill.qty
            self.cash_fen += amount - fees
            self.realised_fen += amount - fees - removed
            self.sell_pnl.append(amount - fees - removed)
            self.realised_today_fen += amount - fees - removed
        self.fees_paid_fen += fees
        self.fees_today_fen += fees
        self.traded_today_fen += amount
        return True

    def close_day(self) -> DayRecord:
        """The day's record once its fills are booked (marked at the day's close)."""
        record = DayRecord(
            day=self.panel.dates[self.t],
            cash_fen=self.cash_fen,
            market_value_fen=self.market_value_fen(),
            traded_fen=self.traded_today_fen,
            fees_fen=self.fees_today_fen,
            realised_fen=self.realised_today_fen,
        )
        if self.history and self.history[-1].day == record.day:
            self.history[-1] = record
        else:
            self.history.append(record)
        return record

    def day_close(self) -> DayClose:
        """Day t's close as stored per day: call after `close_day` (the day's fills booked, its session open)."""
        positions = [{**p, "market_value_fen": p["qty"] * p["close_fen"]} for p in self.holdings()]
        return DayClose(
            trade_date=self.panel.dates[self.t],
            cash_fen=self.cash_fen,
            market_value_fen=self.market_value_fen(),
            realised_pnl_fen=self.realised_fen,
            day_realised_pnl_fen=self.realised_today_fen,
            unrealised_pnl_fen=self.unrealised_fen(),
            fees_fen=self.fees_today_fen,
            total_fees_fen=self.fees_paid_fen,
            turnover_fen=self.traded_today_fen,
            positions=positions,
        )

    # --- the sleeve as risk and people see it ------------------------------------------------------------------------
    def unrealised_fen(self) -> int:
        return self.market_value_fen() - int(self.cost_fen[self.positions > 0].sum())

    def sellable_in(self, session: date | None) -> IntArray:
        """The shares that may be sold in `session` (T+1): those bought before it. A session after the book's own
        (on the real clock, an order placed after the close is for the next session) may also sell what was bought
        in the book's session; None, or a session not after the book's: the book's session (`sellable`)."""
        if session is None or self.session_day is None or session <= self.session_day or not self.config.t_plus_one:
            return self.sellable()
        sellable = self.positions.copy()
        for day, bought in self.buys_by_day.items():
            if day >= session.isoformat():
                for code, qty in bought.items():
                    sellable[self.columns[code]] -= qty
        return np.maximum(sellable, 0)

    def holdings(self, ts_code: str | None = None, session: date | None = None) -> list[dict[str, Any]]:
        """Every position held, or only `ts_code`'s (none when it is not held or not in the universe); sellable in
        `session` (`sellable_in`: default the book's session)."""
        if ts_code is None:
            held = np.flatnonzero(self.positions).tolist()
        else:
            j = self.columns.get(ts_code)
            held = [] if j is None or not self.positions[j] else [j]
        sellable = self.sellable_in(session)
        return [
            {
                "ts_code": self.panel.codes[j],
                "qty": int(self.positions[j]),
                "sellable_qty": int(sellable[j]),
                "cost_fen": int(self.cost_fen[j]),
                "close_fen": int(self.panel.close[self.t, j]) if self.t >= 0 else 0,
            }
            for j in held
        ]

    # --- persistence ----------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        held = np.flatnonzero(self.positions | self.cost_fen).tolist()
        return {
            "t": self.t,
            "session_day": self.session_day.isoformat() if self.session_day else None,
            "bar_done": self.bar_done,
            "day": self.panel.dates[self.t].isoformat() if self.t >= 0 else None,
            "cash_fen": self.cash_fen,
            "initial_cash_fen": self.initial_cash_fen,
            "positions": {self.panel.codes[j]: [int(self.positions[j]), int(self.cost_fen[j])] for j in held},
            "buys_by_day": self.buys_by_day,
            "sells_by_day": self.sells_by_day,
            "actions_day": self.actions_day.isoformat() if self.actions_day else None,
            "actions": self.actions,
            "next_intent": self.next_intent,
            "pending": [i.as_json(self.panel.codes) for i in self.pending],
            "fresh": [i.as_json(self.panel.codes) for i in self.fresh],
            "sent_session": self.sent_session.isoformat() if self.sent_session else None,
            "seq_by_bar": self.seq_by_bar,
            "applied_trades": list(self.applied_trades),
            "filled_by_order": self.filled_by_order,
            "realised_fen": self.realised_fen,
            "sell_pnl": self.sell_pnl,
            "fees_paid_fen": self.fees_paid_fen,
            # the session's own figures so far (on the real clock its fills come before its bar, in another panel)
            "today": [self.traded_today_fen, self.fees_today_fen, self.realised_today_fen],
            "history": [
                [r.day.isoformat(), r.cash_fen, r.market_value_fen, r.traded_fen, r.fees_fen, r.realised_fen]
                for r in self.history
            ],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """The state `to_json` saved, onto a book over a panel that holds the saved day (columns by code)."""
        saved_day = data.get("day")
        self.t = self.panel.dates.index(date.fromisoformat(saved_day)) if saved_day else -1
        self.bar_done = bool(data["bar_done"])
        self.session_day = date.fromisoformat(data["session_day"]) if data.get("session_day") else None
        self.cash_fen = int(data["cash_fen"])
        self.initial_cash_fen = int(data["initial_cash_fen"])
        for code, (qty, cost) in data["positions"].items():
            j = self.columns[code]
            self.positions[j], self.cost_fen[j] = qty, cost
        self.buys_by_day = {str(d): {str(c): int(q) for c, q in b.items()} for d, b in data["buys_by_day"].items()}
        # a book stored before corporate actions were applied has none of these
        self.sells_by_day = {
            str(d): {str(c): int(q) for c, q in b.items()} for d, b in data.get("sells_by_day", {}).items()
        }
        self.actions_day = date.fromisoformat(data["actions_day"]) if data.get("actions_day") else None
        self.actions = list(data.get("actions", []))
        if self.session_day is not None:
            for code, qty in self.buys_by_day.get(self.session_day.isoformat(), {}).items():
                self.bought_today[self.columns[code]] = qty
        self.next_intent = int(data["next_intent"])
        self.pending = [Intent(i, self.columns[code], k, a, b, q) for i, code, k, a, b, q in data["pending"]]
        # a book stored before "fresh" was kept has none
        self.fresh = [Intent(i, self.columns[code], k, a, b, q) for i, code, k, a, b, q in data.get("fresh", [])]
        self.sent_session = date.fromisoformat(data["sent_session"]) if data.get("sent_session") else None
        self.seq_by_bar = {str(k): int(v) for k, v in data["seq_by_bar"].items()}
        self.applied_trades = dict.fromkeys(str(t) for t in data["applied_trades"])
        self.filled_by_order = {str(k): int(v) for k, v in data["filled_by_order"].items()}
        self.realised_fen = int(data["realised_fen"])
        self.sell_pnl = [int(v) for v in data["sell_pnl"]]
        self.fees_paid_fen = int(data["fees_paid_fen"])
        self.traded_today_fen, self.fees_today_fen, self.realised_today_fen = (
            int(v) for v in data.get("today", (0, 0, 0))
        )
        self.history = [DayRecord(date.fromisoformat(d), c, mv, tr, fe, re) for d, c, mv, tr, fe, re in data["history"]]
