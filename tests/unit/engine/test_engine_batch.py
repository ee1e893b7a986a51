"""The batch engine (many portfolios in one pass over the days) gives every portfolio exactly what running its
strategy alone through run_backtest gives: the same metrics (==), cash and market value every day, final positions.
The second method here is run_backtest itself, one point at a time; the markets and the trading strategy are built
so that the A-share rules all bite (and a test checks that they did)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import Field

from shared.research.engine import BacktestConfig, BacktestResult, load_bars, run_backtest
from shared.research.engine.batch import BatchEngine
from shared.research.engine.core import R_CASH, R_LIMIT_DOWN, R_LIMIT_UP, R_T1, R_VOLUME_CAP, EngineError
from shared.research.engine.optimize import Evaluator, Objective
from shared.research.strategy import CrossSection, Strategy, StrategyContext, StrategyParams
from shared.research.strategy.context import OrderEvent
from strategies.buy_and_hold import BuyAndHold
from strategies.dual_ma import DualMA

CODES = ("600000.SH", "600001.SH", "000001.SZ", "300001.SZ", "688001.SH", "688002.SH", "830001.BJ")


def market(days: int = 90, seed: int = 3) -> pd.DataFrame:
    """Random walks with limit-up and limit-down days (opens at the limit), suspensions (rows dropped), a 2-for-1
    split through adj_factor, and a thin volume so a volume cap binds."""
    rng = np.random.default_rng(seed)
    day_list = [date(2024, 1, 1) + timedelta(days=i) for i in range(days)]
    rows = []
    for s, code in enumerate(CODES):
        limit = 0.2 if code.startswith(("300", "688")) else (0.3 if code.endswith(".BJ") else 0.1)
        price = float(rng.uniform(5, 40))
        adj = 1.0
        for d, day in enumerate(day_list):
            pre = price
            move = rng.normal(0, 0.03)
            gap = rng.normal(0, 0.01)
            if rng.random() < 0.06:
                gap = limit  # opens at limit-up
            elif rng.random() < 0.06:
                gap = -limit  # opens at limit-down
            open_ = round(min(max(pre * (1 + gap), pre * (1 - limit)), pre * (1 + limit)), 2)
            close = round(min(max(pre * (1 + move), pre * (1 - limit) + 0.01), pre * (1 + limit) - 0.01), 2)
            open_ = min(max(open_, round(pre * (1 - limit), 2) + 0.0), round(pre * (1 + limit), 2))
            if s == 1 and d == 40:  # split 2-for-1: the price halves, the factor doubles
                adj *= 2.0
            price = close
            if rng.random() < 0.07 and 0 < d < days - 1:
                continue  # suspended
            vol = float(rng.integers(20, 400))  # lots
            rows.append(
                {
                    "ts_code": code,
                    "trade_date": day.strftime("%Y%m%d"),
                    "open": open_,
                    "high": max(open_, close) + 0.01,
                    "low": max(min(open_, close) - 0.01, 0.01),
                    "close": close,
                    "pre_close": round(pre, 2),
                    "vol": vol,
                    "amount": vol * 100 * (open_ + close) / 2 / 1000,
                    "adj_factor": adj,
                }
            )
    return pd.DataFrame(rows)


class TraderParams(StrategyParams):
    seed: int = Field(default=0, ge=0)
    budget: float = Field(default=0.2, gt=0, description="fraction of the equity a buy may target")
    churn: float = Field(default=0.5, ge=0, le=1, description="probability of trading a symbol on a day")
    fail_on_day: int = Field(default=-1, description="raise on this day (a point that fails)")


class Trader(Strategy):
    """Random but deterministic (seeded by its parameters) trading that touches every order path: explicit lots
    and odd quantities, values, targets, percents, closes, a buy and a sell of one symbol on one day (T+1, rounds),
    oversized budgets (cash shortage), sells of more than held."""

    name = "trader"
    title = "Trader"
    description = "Test strategy."
    Params = TraderParams
    params: TraderParams

    def on_init(self, ctx: StrategyContext) -> None:
        self.rng = np.random.default_rng(self.params.seed)
        ctx.order_value(np.ones(len(ctx.universe), dtype=np.bool_), ctx.initial_cash * self.params.budget)

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        p, rng = self.params, self.rng
        if bar.index == p.fail_on_day:
            raise RuntimeError("this point fails")
        n = len(ctx.universe)
        held = ctx.positions
        for j in range(n):
            if rng.random() > p.churn:
                continue
            action = int(rng.integers(0, 8))
            if action == 0:
                ctx.buy(j, int(rng.integers(1, 6)) * 100)
            elif action == 1:
                ctx.buy(j, int(rng.integers(1, 500)))  # often not a valid lot: rejected (STAR/BSE take any >= 200)
            elif action == 2 and held[j] > 0:
                ctx.sell(j, int(rng.integers(1, held[j] + 150)))  # odd, partial, or more than held
            elif action == 3:
                ctx.order_value(j, float(rng.uniform(-0.5, 1.5)) * ctx.equity * p.budget or 1.0)
            elif action == 4:
                ctx.order_target_value(j, float(rng.uniform(0, 2)) * ctx.equity * p.budget)
            elif action == 5:
                ctx.close_position(j)
            elif action == 6:
                ctx.order_target_percent(j, float(rng.uniform(0, 1.5)) * p.budget)
            else:
                ctx.buy(j, 200)
                if held[j] > 0:
                    ctx.sell(j, int(held[j]))  # after the buy: the round sees today's shares as not sellable
        if bar.index % 9 == 0:
            ctx.order_value(np.ones(n, dtype=np.bool_), ctx.cash * 0.6)  # together far more than the cash


class Listener(Trader):
    name = "listener"

    def on_order(self, ctx: StrategyContext, event: OrderEvent) -> None:
        pass


CONFIGS = {
    "default": BacktestConfig(initial_cash=Decimal("300000")),
    "capped": BacktestConfig(
        initial_cash=Decimal("200000"), volume_cap=Decimal("0.05"), slippage="bps", slippage_amount=Decimal("7.5")
    ),
    "ticks-cancel": BacktestConfig(
        initial_cash=Decimal("150000.37"),
        slippage="ticks",
        slippage_amount=Decimal(2),
        suspended_orders="cancel",
        fill_price="close",
        min_commission=Decimal("0"),
    ),
    "vwap-no-rules": BacktestConfig(
        initial_cash=Decimal("500000"), fill_price="vwap", t_plus_one=False, lots=False, price_limits=False
    ),
}


def assert_same(engine: BatchEngine, p: int, alone: BacktestResult) -> None:
    assert engine.metrics(p) == alone.metrics
    assert (engine.cash_hist[p] == alone.cash_fen).all()
    assert (engine.mv_hist[p] == alone.market_value_fen).all()
    assert (engine.positions[p] == alone.positions[-1]).all()
    assert int(engine.cash[p]) == int(alone.cash_fen[-1])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_trader_grid_matches_one_point_at_a_time(name: str) -> None:
    config = CONFIGS[name]
    panel = load_bars(market(), config)
    rng = np.random.default_rng(len(name))
    points = [
        {"seed": int(rng.integers(0, 10_000)), "budget": float(rng.choice([0.05, 0.2, 0.6])), "churn": 0.4}
        for _ in range(6)
    ]
    engine = BatchEngine([Trader(pt) for pt in points], panel, config)
    engine.run()
    reasons: set[int] = set()
    for p, point in enumerate(points):
        assert engine.errors[p] is None
        alone = run_backtest(Trader(point), panel, config)
        assert_same(engine, p, alone)
        reasons |= set(alone.orders["reason"].tolist())
        assert len(alone.trades["qty"]) > 20
    # the scenario did exercise the rules (the equality above is over runs that hit them)
    if name == "default":
        assert {R_T1, R_LIMIT_UP, R_LIMIT_DOWN, R_CASH} <= reasons
    if name == "capped":
        assert R_VOLUME_CAP in reasons


def test_the_scenario_covers_star_lots_odd_lot_exits_suspensions_and_the_split() -> None:
    config = CONFIGS["default"]
    panel = load_bars(market(), config)
    alone = [run_backtest(Trader({"seed": s, "budget": 0.2, "churn": 0.4}), panel, config) for s in range(3)]
    trades = pd.concat([r.trades_frame() for r in alone])
    sells = trades[trades["side"] == "sell"]
    assert (sells["qty"] % 100 != 0).any()  # odd-lot sells (whole positions) happened
    star = trades[trades["ts_code"].str.startswith("688") & (trades["side"] == "buy")]
    assert len(star) and (star["qty"] >= 200).all() and (star["qty"] % 100 != 0).any()
    assert panel.suspensions
    assert any(r.corporate_actions for r in alone)


@pytest.mark.parametrize("name", ["default", "capped"])
def test_dual_ma_and_buy_and_hold_grids_match(name: str) -> None:
    config = CONFIGS[name]
    panel = load_bars(market(days=120, seed=11), config)
    strategies: list[Strategy] = [DualMA({"fast": f, "slow": s}) for f, s in [(2, 5), (3, 8), (2, 10), (5, 12)]]
    strategies += [BuyAndHold(), BuyAndHold({"cash_reserve": "0.3"})]
    engine = BatchEngine(strategies, panel, config)
    engine.run()
    for p, strategy in enumerate(strategies):
        fresh = type(strategy)(strategy.params)
        assert_same(engine, p, run_backtest(fresh, panel, config))


def test_a_failing_point_fails_alone_and_the_others_are_unaffected() -> None:
    config = CONFIGS["default"]
    panel = load_bars(market(), config)
    points = [{"seed": 1}, {"seed": 2, "fail_on_day": 30}, {"seed": 3}]
    engine = BatchEngine([Trader(pt) for pt in points], panel, config)
    engine.run()
    assert engine.errors[0] is None and engine.errors[2] is None
    assert isinstance(engine.errors[1], RuntimeError)
    for p in (0, 2):
        assert_same(engine, p, run_backtest(Trader(points[p]), panel, config))


def test_the_evaluator_batches_and_gives_the_same_results_as_one_at_a_time() -> None:
    config = CONFIGS["capped"]
    panel = load_bars(market(), config)
    points: list[dict[str, Any]] = [{"seed": s, "budget": 0.3} for s in range(7)]
    points.insert(3, {"seed": 9, "fail_on_day": 12})
    points.insert(5, {"seed": -1})  # refused by the schema
    objective = Objective("total_return")
    batched = Evaluator(panel, config, Trader, objective, batch_size=3)(points)
    single = Evaluator(panel, config, Trader, objective, batch_size=1)(points)
    assert [r.to_json() for r in batched] == [r.to_json() for r in single]
    assert batched[3].error == "RuntimeError: this point fails"
    assert batched[5].error is not None and batched[5].error.startswith("invalid parameters")
    assert sum(r.error is None for r in batched) == 7


def test_strategies_listening_to_events_are_not_batched() -> None:
    config = CONFIGS["default"]
    panel = load_bars(market(days=30), config)
    with pytest.raises(EngineError, match="on_order/on_trade"):
        BatchEngine([Listener()], panel, config)
    # the evaluator runs them one at a time instead, with the same metrics as run_backtest
    (result,) = Evaluator(panel, config, Listener, batch_size=10)([{"seed": 4}])
    assert result.metrics == run_backtest(Listener({"seed": 4}), panel, config).metrics
