"""Many portfolios in one pass over the days: P strategy instances (e.g. the points of a parameter search) over one
panel and one config, with their books as P x symbols arrays, so the day loop's fixed cost (fills, marking to
market, the cross-section) is paid once per day for all P instead of once per point.

Each strategy still gets its own `BacktestContext` and its `on_init`/`on_bar`/`on_stop` are called as in
`run_backtest`: strategies run unmodified. The orders all P place on a day are sized with the one-portfolio engine's
own code (`shared.core.market.matching.size_orders`, rounds by portfolio and symbol) and filled in one vectorised pass;
buys are settled one by one in order-id order, as the one-portfolio engine does, only for the portfolios that
cannot pay for all of that round's buys. Every portfolio's days, cash, positions, trades and metrics are therefore
exactly those of running its strategy alone (tests/unit/engine/test_engine_batch.py checks it on random grids).

What it does not do: strategies that override `on_order` or `on_trade` (their events interleave with the fill of
their own portfolio) and the full `BacktestResult` (orders table, position history); `run_backtest` one point at a
time does both. Money is integer fen throughout, as in core.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.core.market.corporate import adjusted_holdings
from shared.core.market.fees import FenFees
from shared.core.market.matching import buys_paid_for, fill_rounds, fillable, sells_paid_for
from shared.research.engine.config import BacktestConfig
from shared.research.engine.context import BacktestContext, RunHistory, Store
from shared.research.engine.core import EngineError, Sizing, cross_section
from shared.research.engine.data import Panel
from shared.research.engine.metrics import MetricsConfig, compute_metrics
from shared.research.strategy import Strategy

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def listens_to_events(strategy: Strategy) -> bool:
    """Whether the strategy overrides on_order/on_trade: such a strategy runs on the one-portfolio engine."""
    cls = type(strategy)
    return cls.on_order is not Strategy.on_order or cls.on_trade is not Strategy.on_trade


class _Portfolio:
    """One portfolio of a batch, as its context sees it (`shared.research.engine.context.Book`): rows of the batch's
    state."""

    def __init__(self, batch: BatchEngine, p: int) -> None:
        self._batch = batch
        self._p = p
        self.panel = batch.panel
        self.config = batch.config
        self.positions = batch.positions[p]  # a row view: the batch's fills show through
        self.next_id = 0

    @property
    def t(self) -> int:
        return self._batch.t

    @property
    def initial_cash_fen(self) -> int:
        return self._batch.initial_cash_fen

    @property
    def cash_fen(self) -> int:
        return int(self._batch.cash[self._p])

    def sellable(self) -> IntArray:
        if not self.config.t_plus_one:
            return self.positions.copy()
        return self.positions - self._batch.bought_today[self._p]

    def market_value_fen(self) -> int:
        t = self._batch.t
        if t < 0:
            return 0
        return int(self.positions @ self.panel.close[t])

    def queue(self, cols: IntArray, kind: int, amounts: IntArray) -> IntArray:
        ids = np.arange(self.next_id, self.next_id + len(cols), dtype=np.int64)
        self.next_id += len(cols)
        self._batch._new.append((self._p, ids, cols, kind, amounts.astype(np.int64)))
        return ids


class BatchEngine:
    """`strategies[p]` runs as portfolio p. After `run()`, `metrics(p)` is what `run_backtest(strategies[p], panel,
    config).metrics` would be (without a benchmark), `errors[p]` the exception portfolio p's strategy raised (its
    results are then meaningless; the other portfolios are unaffected), and `cash`/`positions` the final books.

    `cache`: a dict shared by the contexts (the optimiser's `SharedCache`); every entry is a function of the panel
    and `config.adjust_history` only, so sharing it between portfolios and runs is exact."""

    def __init__(
        self,
        strategies: Sequence[Strategy],
        panel: Panel,
        config: BacktestConfig,
        *,
        cache: Store | None = None,
    ) -> None:
        if not strategies:
            raise EngineError("a batch needs at least one strategy")
        for s in strategies:
            if not isinstance(s, Strategy):
                raise TypeError(f"strategies must be Strategy instances, got {type(s).__name__}")
            if listens_to_events(s):
                raise EngineError(
                    f"{type(s).__name__} listens to on_order/on_trade: run it with run_backtest, not in a batch"
                )
        self.strategies = list(strategies)
        self.panel = panel
        self.config = config
        days, n = panel.shape
        count = len(strategies)
        self.t = -1
        self.sizing = Sizing.of(panel, config)
        self.fees = FenFees.from_schedule(config.fee_schedule(), stamp_duty=config.stamp_duty)
        self.initial_cash_fen = int(config.initial_cash * 100)
        self.cash = np.full(count, self.initial_cash_fen, dtype=np.int64)
        self.positions = np.zeros((count, n), dtype=np.int64)
        self.bought_today = np.zeros((count, n), dtype=np.int64)
        self.cost_fen = np.zeros((count, n), dtype=np.int64)
        # pending orders, one entry per order; within a portfolio always in order-id order
        self.pend_pf = np.empty(0, dtype=np.int64)
        self.pend_sym = np.empty(0, dtype=np.int64)
        self.pend_kind = np.empty(0, dtype=np.int64)
        self.pend_amt = np.empty(0, dtype=np.int64)
        self._new: list[tuple[int, IntArray, IntArray, int, IntArray]] = []
        # per portfolio and day: what the metrics need
        self.cash_hist = np.zeros((count, days), dtype=np.int64)
        self.mv_hist = np.zeros((count, days), dtype=np.int64)
        self.traded_hist = np.zeros((count, days), dtype=np.int64)
        self._sell_pnl: list[tuple[IntArray, IntArray]] = []  # (portfolio, realised P&L) per sell, in fill order
        self._pnl_by_pf: list[IntArray] | None = None
        self.errors: list[Exception | None] = [None] * count
        self.books = [_Portfolio(self, p) for p in range(count)]
        # one history for the pass: every portfolio stands on the same day, so they share the visible buffers
        history = RunHistory(panel, config, cache)
        self.contexts = [BacktestContext(book, history) for book in self.books]
        for name in ("open", "high", "low", "close", "pre_close", "vol", "amount", "has_bar"):
            getattr(panel, name).flags.writeable = False

    # --- the strategies' turns -----------------------------------------------------------------------------------
    def _call(self, method: str, *args: Any) -> None:
        for p, strategy in enumerate(self.strategies):
            if self.errors[p] is not None:
                continue
            try:
                getattr(strategy, method)(self.contexts[p], *args)
            except Exception as exc:  # one point failing fails that point, not the batch
                self.errors[p] = exc
        self._take_new_orders()

    def _take_new_orders(self) -> None:
        if not self._new:
            return
        new, self._new = self._new, []
        lengths = np.array([len(c[1]) for c in new], dtype=np.int64)
        pf = np.repeat(np.array([c[0] for c in new], dtype=np.int64), lengths)
        kinds = np.repeat(np.array([c[3] for c in new], dtype=np.int64), lengths)
        self.pend_pf = np.concatenate([self.pend_pf, pf])
        self.pend_sym = np.concatenate([self.pend_sym, *(c[2] for c in new)])
        self.pend_kind = np.concatenate([self.pend_kind, kinds])
        self.pend_amt = np.concatenate([self.pend_amt, *(c[4] for c in new)])

    # --- one day -------------------------------------------------------------------------------------------------
    def _corporate_actions(self, t: int) -> None:
        adj = self.panel.adj_factor
        if adj is None or t == 0 or not self.config.corporate_actions:
            return
        ratio = adj[t] / adj[t - 1]
        for j in np.flatnonzero((ratio != 1.0) & self.panel.has_bar[t]).tolist():
            held = np.flatnonzero(self.positions[:, j] > 0)
            if len(held) == 0:
                continue
            # the same rule as Engine._corporate_actions (shared.core.market.corporate), over the portfolios
            after, cash = adjusted_holdings(
                self.positions[held, j], np.full(len(held), ratio[j]),
                np.full(len(held), int(self.panel.pre_close[t, j]), dtype=np.int64),
            )  # fmt: skip
            self.positions[held, j] = after
            self.cash[held] += cash
            self.cost_fen[held, j] = np.maximum(self.cost_fen[held, j] - cash, 0)

    def _fill(self, t: int) -> None:
        if len(self.pend_pf) == 0:
            return
        has_bar, _ = fillable(
            self.sizing.rules, self.panel.has_bar[t, self.pend_sym], self.sizing.fill_prices[t, self.pend_sym]
        )
        waiting = ~has_bar
        if self.config.suspended_orders == "cancel":
            waiting[:] = False
        active = np.flatnonzero(has_bar)
        pend = (self.pend_pf, self.pend_sym, self.pend_kind, self.pend_amt)
        pf, syms, kinds, amts = (a[active] for a in pend)
        if waiting.any():
            keep = np.flatnonzero(waiting)
            self.pend_pf, self.pend_sym, self.pend_kind, self.pend_amt = (a[keep] for a in pend)
        else:
            self.pend_pf, self.pend_sym, self.pend_kind, self.pend_amt = (a[:0] for a in pend)
        if len(pf) == 0:
            return
        # rounds per (portfolio, symbol): each portfolio's rounds are exactly those it would have alone
        for sel in fill_rounds(pf * self.positions.shape[1] + syms):
            self._fill_round(t, pf[sel], syms[sel], kinds[sel], amts[sel])

    def _fill_round(self, t: int, pf: IntArray, syms: IntArray, kinds: IntArray, amts: IntArray) -> None:
        pos = self.positions[pf, syms]
        sellable = pos - self.bought_today[pf, syms] if self.config.t_plus_one else pos.copy()
        qty, px, buy, sell, _, _ = self.sizing.size(t, syms, kinds, amts, pos, sellable)
        s = np.flatnonzero(sell & (qty > 0))
        if len(s):
            self._execute_sells(t, pf[s], syms[s], qty[s], px[s], pos[s])
        b = np.flatnonzero(buy & (qty > 0))
        if len(b):
            self._execute_buys(t, pf[b], syms[b], qty[b], px[b])

    def _execute_sells(self, t: int, pf: IntArray, syms: IntArray, qty: IntArray, px: IntArray, pos: IntArray) -> None:
        amount = qty * px
        commission = self.fees.commission(amount)
        stamp = self.fees.stamp(amount, self.panel.dates[t])
        transfer = self.fees.transfer(amount)
        proceeds = amount - commission - stamp - transfer
        if (proceeds < 0).any():
            # fees above the amount: refused where the cash cannot pay them, per portfolio as Engine does
            done = np.ones(len(pf), dtype=np.bool_)
            for p in np.unique(pf[proceeds < 0]).tolist():
                mine = np.flatnonzero(pf == p)
                done[mine] = sells_paid_for(int(self.cash[p]), proceeds[mine])
            pf, syms, qty, px, pos = pf[done], syms[done], qty[done], px[done], pos[done]
            amount, proceeds = amount[done], proceeds[done]
        cost = self.cost_fen[pf, syms]
        removed = np.where(qty == pos, cost, (2 * cost * qty + pos) // (2 * np.maximum(pos, 1)))
        self.cost_fen[pf, syms] = cost - removed
        self.positions[pf, syms] -= qty  # one order per (portfolio, symbol) in a round: no repeated index
        np.add.at(self.cash, pf, proceeds)
        np.add.at(self.traded_hist[:, t], pf, amount)
        self._sell_pnl.append((pf, proceeds - removed))

    def _execute_buys(self, t: int, pf: IntArray, syms: IntArray, qty: IntArray, px: IntArray) -> None:
        amount = qty * px
        commission = self.fees.commission(amount)
        transfer = self.fees.transfer(amount)
        total = amount + commission + transfer
        need = np.zeros(len(self.cash), dtype=np.int64)
        np.add.at(need, pf, total)
        short = np.flatnonzero(need > self.cash)
        if len(short):
            # those portfolios settle their buys one by one in order-id order, as Engine._execute_buys does
            qty = qty.copy()
            lot_min, lot_step = self.sizing.lot_min, self.sizing.lot_step
            for p in short.tolist():
                mine = np.flatnonzero(pf == p)
                qty[mine] = buys_paid_for(
                    self.fees, int(self.cash[p]), qty[mine], px[mine], total[mine],
                    lot_min[syms[mine]], lot_step[syms[mine]],
                )  # fmt: skip
            amount = qty * px
            commission = np.where(qty > 0, self.fees.commission(amount), 0)
            transfer = self.fees.transfer(amount)
            total = amount + commission + transfer
        self.positions[pf, syms] += qty
        self.bought_today[pf, syms] += qty
        self.cost_fen[pf, syms] += total
        np.subtract.at(self.cash, pf, total)
        if (self.cash < 0).any():
            raise AssertionError("cash went negative")
        np.add.at(self.traded_hist[:, t], pf, amount)

    def run(self, progress: Callable[[int, int], None] | None = None, every: int = 50) -> None:
        """Every day for every portfolio. `progress(days_done, days)` as in `Engine.run`; it may raise to stop."""
        days = len(self.panel.dates)
        close = self.panel.close
        self._call("on_init")
        for t in range(days):
            if progress is not None and t % every == 0 and t:
                progress(t, days)
            self.t = t
            self.bought_today.fill(0)
            self._corporate_actions(t)
            self._fill(t)
            self.cash_hist[:, t] = self.cash
            self.mv_hist[:, t] = self.positions @ close[t]
            self._call("on_bar", cross_section(self.panel, t))
        self._call("on_stop")
        # orders still pending are cancelled at the end: they change nothing the metrics read
        self.pend_pf = self.pend_pf[:0]
        if progress is not None:
            progress(days, days)

    # --- results -------------------------------------------------------------------------------------------------
    def equity_fen(self, p: int) -> IntArray:
        return self.cash_hist[p] + self.mv_hist[p]

    def sell_pnl_fen(self, p: int) -> IntArray:
        """Realised P&L of portfolio p's sells, in fill order (the order of run_backtest's trades table)."""
        if self._pnl_by_pf is None:
            if self._sell_pnl:
                pf = np.concatenate([c[0] for c in self._sell_pnl])
                pnl = np.concatenate([c[1] for c in self._sell_pnl])
            else:
                pf = pnl = np.empty(0, dtype=np.int64)
            order = np.argsort(pf, kind="stable")  # stable: each portfolio's sells stay in fill order
            bounds = np.searchsorted(pf[order], np.arange(len(self.cash) + 1))
            self._pnl_by_pf = [pnl[order[bounds[q] : bounds[q + 1]]] for q in range(len(self.cash))]
        return self._pnl_by_pf[p]

    def metrics(self, p: int) -> dict[str, Any]:
        """Portfolio p's metrics, computed as run_backtest computes them (no benchmark)."""
        cfg = self.config
        return compute_metrics(
            self.equity_fen(p) / 100.0,
            self.initial_cash_fen / 100.0,
            trade_pnl=self.sell_pnl_fen(p) / 100.0,
            traded_value=self.traded_hist[p] / 100.0,
            config=MetricsConfig(risk_free_rate=cfg.risk_free_rate, var_level=cfg.var_level),
        ).as_dict()
