"""The day loop: corporate actions, fills, marking to market and the strategy's turn, one trading day at a time, with
each day's cross-section as arrays. Python work per day is a few dozen numpy calls; per fill, nothing (fills are
vectorised too) except when the cash runs short, where buys are settled one by one in order-id order.

Money is integer fen (int64) throughout: prices are rounded to the fen once on load, amounts are qty x price, fees
are integer half-up roundings (shared.core.market.fees), so every fill is exact and the accounting identity
cash + market value = equity holds to the fen every day. What decides a fill (the fill price, slippage, the band,
lots, T+1, the volume cap, what the cash affords) is `shared.core.market.matching`, shared with the paper broker; this
module keeps the book: positions, cash, costs, the order and trade logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.core.market.corporate import adjusted_holdings
from shared.core.market.fees import FenFees
from shared.core.market.matching import (
    R_CASH,
    R_END,
    R_FEES,
    R_LIMIT_DOWN,
    R_LIMIT_UP,
    R_NONE,
    R_T1,
    R_VOLUME_CAP,
    REASONS,
    STATUS_CANCELLED,
    STATUS_FILLED,
    STATUS_NAMES,
    STATUS_PARTIAL,
    STATUS_REJECTED,
    FillRules,
    board_lots,
    buys_paid_for,
    fill_prices,
    fill_rounds,
    fillable,
    sells_paid_for,
    size_orders,
)
from shared.research.engine.config import BacktestConfig
from shared.research.engine.context import (
    BacktestContext,
    RunHistory,
    Store,
)
from shared.research.engine.data import Panel
from shared.research.engine.result import yuan
from shared.research.strategy import Strategy
from shared.research.strategy.context import CrossSection, OrderEvent, TradeEvent

__all__ = [
    # the reason codes tests read from the engine (they are the matching's)
    "R_CASH",
    "R_LIMIT_DOWN",
    "R_LIMIT_UP",
    "R_T1",
    "R_VOLUME_CAP",
    "Engine",
    "EngineError",
    "Sizing",
    "cross_section",
    "outside_band",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class EngineError(ValueError):
    """The run cannot go on: inconsistent configuration or input."""


@dataclass
class _Log:
    """Columns appended in chunks (one numpy array per day), concatenated once at the end."""

    columns: dict[str, list[npt.NDArray[Any]]]

    @classmethod
    def of(cls, *names: str) -> _Log:
        return cls({name: [] for name in names})

    def add(self, **values: npt.NDArray[Any]) -> None:
        for name, value in values.items():
            self.columns[name].append(value)

    def arrays(self, dtypes: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
        return {
            name: np.concatenate(chunks) if chunks else np.empty(0, dtype=dtypes[name])
            for name, chunks in self.columns.items()
        }


@dataclass(frozen=True)
class Sizing:
    """What turns an order into a quantity and a price on a fill day: the fill rules, the panel, the fill-price panel
    and the lot sizes per symbol. Shared by the one-portfolio engine and the batch engine
    (shared.research.engine.batch), so both size every order with the same code (`shared.core.market.matching`)."""

    rules: FillRules
    panel: Panel
    fill_prices: IntArray
    lot_min: IntArray
    lot_step: IntArray

    @classmethod
    def of(cls, panel: Panel, config: BacktestConfig) -> Sizing:
        n = len(panel.codes)
        if config.lots:
            lots = np.array([board_lots(b) for b in panel.boards], dtype=np.int64).reshape(n, 2)
            lot_min, lot_step = lots[:, 0].copy(), lots[:, 1].copy()
        else:
            lot_min = np.ones(n, dtype=np.int64)
            lot_step = np.ones(n, dtype=np.int64)
        rules = config.fill_rules()
        prices = fill_prices(rules.fill_price, panel.open, panel.close, panel.vol, panel.amount, 100.0)
        return cls(rules, panel, prices, lot_min, lot_step)

    def size(
        self, t: int, syms: IntArray, kinds: IntArray, amts: IntArray, pos: IntArray, sellable: IntArray
    ) -> tuple[IntArray, IntArray, BoolArray, BoolArray, IntArray, BoolArray]:
        """`matching.size_orders` for one round of orders on day t."""
        p = self.panel
        return size_orders(
            self.rules, self.fill_prices[t], p.up_limit[t], p.down_limit[t], p.vol[t],
            self.lot_min, self.lot_step, syms, kinds, amts, pos, sellable,
        )  # fmt: skip


def outside_band(panel: Panel, fill_prices: IntArray) -> tuple[IntArray, IntArray]:
    """(days, symbols) of the bars whose fill price lies outside their day's limit band: prints the band says the
    exchange could not have made, so the band (or the bar) is wrong. `size_orders` fills orders on them at the
    printed price, without the band; run_backtest lists them in the result's warnings."""
    fp = fill_prices
    outside = panel.has_bar & (fp > 0) & ((fp > panel.up_limit) | (fp < panel.down_limit))
    days, syms = np.nonzero(outside)
    return days.astype(np.int64), syms.astype(np.int64)


def cross_section(p: Panel, t: int) -> CrossSection:
    """Day t over the universe, as the strategy sees it (read-only copies, unadjusted CNY)."""
    return CrossSection(
        trade_date=p.dates[t],
        index=t,
        codes=p.codes,
        open=_read_only(p.open[t] / 100.0),
        high=_read_only(p.high[t] / 100.0),
        low=_read_only(p.low[t] / 100.0),
        close=_read_only(p.close[t] / 100.0),
        pre_close=_read_only(p.pre_close[t] / 100.0),
        # copies, not views: a view's .base would be the whole panel, tomorrow included
        vol=_read_only(p.vol[t].copy()),
        amount=_read_only(p.amount[t].copy()),
        has_bar=_read_only(p.has_bar[t].copy()),
    )


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


class Engine:
    def __init__(
        self,
        strategy: Strategy,
        panel: Panel,
        config: BacktestConfig,
        *,
        record_positions: bool = True,
        store: Store | None = None,
    ) -> None:
        self.strategy = strategy
        self.panel = panel
        self.config = config
        days, n = panel.shape
        self.t = -1
        self.initial_cash_fen = int(config.initial_cash * 100)
        self.cash_fen = self.initial_cash_fen
        self.positions = np.zeros(n, dtype=np.int64)
        self.bought_today = np.zeros(n, dtype=np.int64)
        self.cost_fen = np.zeros(n, dtype=np.int64)  # total cost (fees included) of the shares held
        self.fees = FenFees.from_schedule(config.fee_schedule(), stamp_duty=config.stamp_duty)
        self.sizing = Sizing.of(panel, config)
        self.lot_min, self.lot_step = self.sizing.lot_min, self.sizing.lot_step
        # orders
        self.next_id = 0
        self.pend_id = np.empty(0, dtype=np.int64)
        self.pend_sym = np.empty(0, dtype=np.int64)
        self.pend_kind = np.empty(0, dtype=np.int64)
        self.pend_amt = np.empty(0, dtype=np.int64)
        self._new: list[tuple[IntArray, IntArray, IntArray, IntArray]] = []
        self.orders = _Log.of("id", "sym", "kind", "amount", "created")
        self.settled = _Log.of("id", "status", "filled", "reason", "day")
        self.trades = _Log.of(
            "day",
            "sym",
            "side",
            "qty",
            "price",
            "amount",
            "commission",
            "stamp_duty",
            "transfer_fee",
            "order_id",
            "pnl",
        )
        self.actions: list[dict[str, Any]] = []
        # daily records
        self.cash_hist = np.zeros(days, dtype=np.int64)
        self.mv_hist = np.zeros(days, dtype=np.int64)
        self.traded_hist = np.zeros(days, dtype=np.int64)
        # days x symbols: only when the result object is wanted (an optimiser needs the metrics only)
        self.record_positions = record_positions
        self.pos_hist = np.zeros((days, n) if record_positions else (0, n), dtype=np.int64)
        cls = type(strategy)
        self.listens_orders = cls.on_order is not Strategy.on_order
        self.listens_trades = cls.on_trade is not Strategy.on_trade
        # store: where the context keeps its whole-panel arrays (the optimiser shares one between runs)
        self.ctx = BacktestContext(self, RunHistory(panel, config, store))
        self.fill_prices = self.sizing.fill_prices
        for name in ("open", "high", "low", "close", "pre_close", "vol", "amount", "has_bar"):
            self._read_only(getattr(panel, name))

    @staticmethod
    def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        array.flags.writeable = False
        return array

    # --- the book ------------------------------------------------------------------------------------------------
    def sellable(self) -> IntArray:
        if not self.config.t_plus_one:
            return self.positions.copy()
        return self.positions - self.bought_today

    def market_value_fen(self) -> int:
        if self.t < 0:
            return 0
        return int(self.positions @ self.panel.close[self.t])

    def queue(self, cols: IntArray, kind: int, amounts: IntArray) -> IntArray:
        ids = np.arange(self.next_id, self.next_id + len(cols), dtype=np.int64)
        self.next_id += len(cols)
        kinds = np.full(len(cols), kind, dtype=np.int64)
        self._new.append((ids, cols, kinds, amounts.astype(np.int64)))
        self.orders.add(
            id=ids, sym=cols, kind=kinds, amount=amounts.astype(np.int64), created=np.full(len(cols), self.t)
        )
        return ids

    def _take_new_orders(self) -> None:
        if not self._new:
            return
        parts = list(zip(*self._new, strict=True))
        self._new = []
        self.pend_id = np.concatenate([self.pend_id, *parts[0]])
        self.pend_sym = np.concatenate([self.pend_sym, *parts[1]])
        self.pend_kind = np.concatenate([self.pend_kind, *parts[2]])
        self.pend_amt = np.concatenate([self.pend_amt, *parts[3]])

    def _settle(
        self, ids: IntArray, syms: IntArray, status: IntArray | int, filled: IntArray | int, reason: IntArray | int
    ) -> None:
        k = len(ids)
        if k == 0:
            return
        self.settled.add(
            id=ids,
            status=np.broadcast_to(np.asarray(status, dtype=np.int64), (k,)).copy(),
            filled=np.broadcast_to(np.asarray(filled, dtype=np.int64), (k,)).copy(),
            reason=np.broadcast_to(np.asarray(reason, dtype=np.int64), (k,)).copy(),
            day=np.full(k, self.t, dtype=np.int64),
        )
        if self.listens_orders:
            st = np.broadcast_to(np.asarray(status), (k,))
            fq = np.broadcast_to(np.asarray(filled), (k,))
            rs = np.broadcast_to(np.asarray(reason), (k,))
            for i in range(k):
                self.strategy.on_order(
                    self.ctx,
                    OrderEvent(
                        order_id=int(ids[i]),
                        ts_code=self.panel.codes[int(syms[i])],
                        trade_date=self.panel.dates[self.t],
                        status=STATUS_NAMES[int(st[i])],  # type: ignore[arg-type]
                        filled_qty=int(fq[i]),
                        reason=REASONS[int(rs[i])],
                    ),
                )

    # --- one day -------------------------------------------------------------------------------------------------
    def _corporate_actions(self, t: int) -> None:
        adj = self.panel.adj_factor
        if adj is None or t == 0 or not self.config.corporate_actions:
            return
        ratio = adj[t] / adj[t - 1]
        held = np.flatnonzero((ratio != 1.0) & (self.positions > 0) & self.panel.has_bar[t])
        if len(held) == 0:
            return
        before = self.positions[held].copy()
        # the platform's one rule (execution and the strategy service's sleeve book apply it too)
        after, cash = adjusted_holdings(before, ratio[held], self.panel.pre_close[t, held])
        self.positions[held] = after
        self.cash_fen += int(cash.sum())
        self.cost_fen[held] = np.maximum(self.cost_fen[held] - cash, 0)
        for k, j in enumerate(held.tolist()):
            self.actions.append(
                {
                    "trade_date": self.panel.dates[t].isoformat(),
                    "ts_code": self.panel.codes[j],
                    "ratio": float(ratio[j]),
                    "qty_before": int(before[k]),
                    "qty_after": int(after[k]),
                    "cash_in_lieu": yuan(int(cash[k])),
                }
            )

    def _fill(self, t: int) -> None:
        if len(self.pend_id) == 0:
            return
        syms = self.pend_sym
        has_bar, why = fillable(self.sizing.rules, self.panel.has_bar[t, syms], self.fill_prices[t, syms])
        waiting = ~has_bar
        if waiting.any() and self.config.suspended_orders == "cancel":
            self._settle(self.pend_id[waiting], self.pend_sym[waiting], STATUS_CANCELLED, 0, why[waiting])
            waiting[:] = False
        active = np.flatnonzero(has_bar)
        ids, syms, kinds, amts = (a[active] for a in (self.pend_id, self.pend_sym, self.pend_kind, self.pend_amt))
        keep = np.flatnonzero(waiting)
        pend = (self.pend_id, self.pend_sym, self.pend_kind, self.pend_amt)
        self.pend_id, self.pend_sym, self.pend_kind, self.pend_amt = (a[keep] for a in pend)
        if len(ids) == 0:
            return
        # Several orders for one symbol on one day are filled in rounds, in order-id order, each round seeing the
        # book the previous one left (so a buy and a sell of one symbol meet T+1 as they would at the exchange).
        for sel in fill_rounds(syms):
            self._fill_round(t, ids[sel], syms[sel], kinds[sel], amts[sel])

    def _fill_round(self, t: int, ids: IntArray, syms: IntArray, kinds: IntArray, amts: IntArray) -> None:
        pos = self.positions[syms]
        sellable = pos - self.bought_today[syms] if self.config.t_plus_one else pos.copy()
        qty, px, buy, sell, reason, bad_lot = self.sizing.size(t, syms, kinds, amts, pos, sellable)

        # sells first: their proceeds pay for the same day's buys, as at the exchange
        filled = np.zeros(len(ids), dtype=np.int64)
        s = np.flatnonzero(sell & (qty > 0))
        if len(s):
            done = self._execute_sells(t, ids[s], syms[s], qty[s], px[s], pos[s])
            filled[s] = np.where(done, qty[s], 0)
            reason[s[~done]] = R_FEES
        b = np.flatnonzero(buy & (qty > 0))
        if len(b):
            got = self._execute_buys(t, ids[b], syms[b], qty[b], px[b])
            cut = got < qty[b]
            reason[b[cut]] = np.where(reason[b[cut]] == 0, R_CASH, reason[b[cut]])
            filled[b] = got
        status = np.where(
            bad_lot,
            STATUS_REJECTED,
            np.where(filled > 0, np.where(reason == R_NONE, STATUS_FILLED, STATUS_PARTIAL), STATUS_CANCELLED),
        )
        self._settle(ids, syms, status, filled, reason)

    def _execute_sells(
        self, t: int, ids: IntArray, syms: IntArray, qty: IntArray, px: IntArray, pos: IntArray
    ) -> BoolArray:
        """Executes the sells the cash can pay the fees of; returns which went through."""
        amount = qty * px
        commission = self.fees.commission(amount)
        stamp = self.fees.stamp(amount, self.panel.dates[t])
        transfer = self.fees.transfer(amount)
        proceeds = amount - commission - stamp - transfer
        done = sells_paid_for(self.cash_fen, proceeds)
        if not done.all():
            ids, syms, qty, px, pos = ids[done], syms[done], qty[done], px[done], pos[done]
            amount, commission, stamp = amount[done], commission[done], stamp[done]
            transfer, proceeds = transfer[done], proceeds[done]
        cost = self.cost_fen[syms]
        # average cost: the sold fraction of the position's total cost (fees included), half-up to the fen;
        # a full exit takes the whole remaining cost, so nothing is left behind by rounding
        removed = np.where(qty == pos, cost, (2 * cost * qty + pos) // (2 * np.maximum(pos, 1)))
        pnl = proceeds - removed
        self.cost_fen[syms] = cost - removed
        self.positions[syms] -= qty
        self.cash_fen += int(proceeds.sum())
        self.traded_hist[t] += int(amount.sum())
        self.trades.add(
            day=np.full(len(ids), t), sym=syms, side=np.full(len(ids), -1), qty=qty, price=px, amount=amount,
            commission=commission, stamp_duty=stamp, transfer_fee=transfer, order_id=ids, pnl=pnl,
        )  # fmt: skip
        self._tell_trades(t, ids, syms, qty, px, amount, commission + stamp + transfer, "sell")
        return done

    def _execute_buys(self, t: int, ids: IntArray, syms: IntArray, qty: IntArray, px: IntArray) -> IntArray:
        amount = qty * px
        commission = self.fees.commission(amount)
        transfer = self.fees.transfer(amount)
        total = amount + commission + transfer
        if int(total.sum()) > self.cash_fen:
            # not enough for all: settle one by one in order-id order, shrinking each to what the cash pays
            qty = buys_paid_for(self.fees, self.cash_fen, qty, px, total, self.lot_min[syms], self.lot_step[syms])
            keep = qty > 0
            amount = qty * px
            commission = np.where(keep, self.fees.commission(amount), 0)
            transfer = self.fees.transfer(amount)
            total = amount + commission + transfer
        else:
            keep = np.ones(len(ids), dtype=np.bool_)
        self.positions[syms] += qty
        self.bought_today[syms] += qty
        self.cost_fen[syms] += total
        self.cash_fen -= int(total.sum())
        assert self.cash_fen >= 0, "cash went negative"
        self.traded_hist[t] += int(amount.sum())
        k = np.flatnonzero(keep)
        self.trades.add(
            day=np.full(len(k), t), sym=syms[k], side=np.full(len(k), 1), qty=qty[k], price=px[k], amount=amount[k],
            commission=commission[k], stamp_duty=np.zeros(len(k), dtype=np.int64), transfer_fee=transfer[k],
            order_id=ids[k], pnl=np.zeros(len(k), dtype=np.int64),
        )  # fmt: skip
        self._tell_trades(t, ids[k], syms[k], qty[k], px[k], amount[k], commission[k] + transfer[k], "buy")
        return qty

    def _tell_trades(
        self,
        t: int,
        ids: IntArray,
        syms: IntArray,
        qty: IntArray,
        px: IntArray,
        amount: IntArray,
        fees: IntArray,
        side: str,
    ) -> None:
        if not self.listens_trades:
            return
        for i in range(len(ids)):
            self.strategy.on_trade(
                self.ctx,
                TradeEvent(
                    order_id=int(ids[i]),
                    ts_code=self.panel.codes[int(syms[i])],
                    trade_date=self.panel.dates[t],
                    side=side,  # type: ignore[arg-type]
                    qty=int(qty[i]),
                    price=int(px[i]) / 100,
                    amount=int(amount[i]) / 100,
                    fees=int(fees[i]) / 100,
                ),
            )

    def cross_section(self, t: int) -> CrossSection:
        return cross_section(self.panel, t)

    def run(self, progress: Callable[[int, int], None] | None = None, every: int = 50) -> None:
        """Drive the strategy over every day. `progress(days_done, days)` is called every `every` days and at the
        end; it may raise (e.g. a cancellation) to stop the run, and the exception propagates unchanged."""
        days = len(self.panel.dates)
        self.strategy.on_init(self.ctx)
        self._take_new_orders()
        for t in range(days):
            if progress is not None and t % every == 0 and t:
                progress(t, days)
            self.t = t
            self.bought_today[:] = 0
            self._corporate_actions(t)
            self._fill(t)
            self.cash_hist[t] = self.cash_fen
            self.mv_hist[t] = self.positions @ self.panel.close[t]
            if self.record_positions:
                self.pos_hist[t] = self.positions
            self.strategy.on_bar(self.ctx, self.cross_section(t))
            self._take_new_orders()
        self.strategy.on_stop(self.ctx)
        self._take_new_orders()
        if len(self.pend_id):
            self._settle(self.pend_id, self.pend_sym, STATUS_CANCELLED, 0, R_END)
            self.pend_id = self.pend_id[:0]
        if progress is not None:
            progress(days, days)
