"""Defects a review found (issue 4): history reachable through a view's `.base`, a shared cache that thrashed when a
pass needed more arrays than it holds, a sale whose fees drove cash negative, and optimisation metrics that need a
benchmark the optimiser never loads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from pydantic import Field

import shared.research.engine.context as context_module
from shared.research.engine import BacktestConfig, load_bars, run_backtest
from shared.research.engine.batch import BatchEngine
from shared.research.engine.core import Engine
from shared.research.engine.data import Panel
from shared.research.engine.optimize import Constraint, Evaluator, Objective, OptimisationError, SharedCache
from shared.research.strategy import CrossSection, Strategy, StrategyContext, StrategyParams
from tests.unit.engine.support import Script, bars, check_identity

A, B = "600000.SH", "000001.SZ"


def _days(n: int, start: str = "2024-01-02") -> list[str]:
    return [d.strftime("%Y%m%d") for d in pd.bdate_range(start, periods=n)]


def _random_frame(symbols: int, days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    codes = [f"600{i:03d}.SH" for i in range(symbols)]
    rows = []
    for j, code in enumerate(codes):
        price = 10.0 + j
        for d in _days(days):
            close = round(price * (1 + rng.uniform(-0.05, 0.05)), 2)
            rows.append((code, d, price, close))
            price = close
    return bars(rows)


# --- 1. nothing after today through .base ------------------------------------------------------------------------


def _owners(array: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    """The array and every array its memory comes from (`.base`, recursively)."""
    chain: list[npt.NDArray[Any]] = []
    current: Any = array
    while isinstance(current, np.ndarray):
        chain.append(current)
        current = current.base
    return chain


def _assert_nothing_after(array: npt.NDArray[Any], t: int, what: str) -> None:
    for owner in _owners(array):
        assert owner.ndim == 2, what
        later = owner[t + 1 :]
        if owner.dtype.kind == "f":
            assert not np.isfinite(later).any(), f"{what}: a finite value after day {t}"
        else:
            assert not later.any(), f"{what}: a non-zero value after day {t}"


def _every_accessor(ctx: StrategyContext) -> dict[str, npt.NDArray[Any]]:
    return {
        "history(close)": ctx.history("close"),
        "history(close, unadjusted)": ctx.history("close", adjusted=False),
        "history(vol)": ctx.history("vol"),
        "history(pe_ttm)": ctx.history("pe_ttm"),
        "history_fen(open)": ctx.history_fen("open"),
        "history_fen(close, unadjusted)": ctx.history_fen("close", adjusted=False),
        "has_bar_history": ctx.has_bar_history(),  # type: ignore[attr-defined]  # BacktestContext only
        "rolling_sum_fen(2)": ctx.rolling_sum_fen(2),
        "indicator(SMA 2)": ctx.indicator("SMA", timeperiod=2),
        "indicator(BBANDS lower)": ctx.indicator("BBANDS", output="lowerband", timeperiod=2),
    }


class Inspector(Strategy):
    name = "inspector"
    title = "Inspector"
    description = "checks that no accessor's memory holds a later bar"

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[int] = []

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        for what, array in _every_accessor(ctx).items():
            assert array.shape[0] == bar.index + 1
            _assert_nothing_after(array, bar.index, what)
        self.checked.append(bar.index)


def _frame_with_factor() -> pd.DataFrame:
    days = _days(6)
    rows = [(A, d, 10.0 + i, 10.5 + i) for i, d in enumerate(days)] + [(B, d, 5.0, 5.0 + i) for i, d in enumerate(days)]
    frame = bars(rows, adj_factor=[1.0, 1.0, 1.0, 2.0, 2.0, 2.0] * 2, pe_ttm=[float(i + 1) for i in range(12)])
    return frame


def test_no_accessor_exposes_a_later_bar_through_base() -> None:
    inspector = Inspector()
    run_backtest(inspector, _frame_with_factor())
    assert inspector.checked == [0, 1, 2, 3, 4, 5]


def test_a_shared_cache_never_carries_a_later_day_from_an_earlier_run() -> None:
    # a first pass fills everything up to its last day; a second pass over the same cache starts on day 0 again
    config = BacktestConfig()
    panel = load_bars(_frame_with_factor(), config)
    cache = SharedCache()
    first = BatchEngine([Inspector(), Inspector()], panel, config, cache=cache)
    first.run()
    second = BatchEngine([Inspector(), Inspector()], panel, config, cache=cache)
    second.run()
    assert first.errors == second.errors == [None, None]
    assert all(s.checked == [0, 1, 2, 3, 4, 5] for s in second.strategies)  # type: ignore[attr-defined]
    engine = Engine(Inspector(), panel, config, store=cache)
    engine.run()
    assert engine.strategy.checked == [0, 1, 2, 3, 4, 5]  # type: ignore[attr-defined]


def test_the_context_has_no_attribute_leading_to_the_engine_or_the_panel() -> None:
    found: list[str] = []

    def look(ctx: StrategyContext) -> None:
        for name in dir(ctx):
            value = getattr(ctx, name, None)
            if isinstance(value, Engine | Panel | dict) and name != "_columns":
                found.append(name)
        found.extend(n for n in ("_e", "_cache", "_engine", "_book", "panel") if hasattr(ctx, n))

    run_backtest(Script({0: look}), _frame_with_factor())
    assert found == []


# --- 2. a cache smaller than a pass does not thrash ----------------------------------------------------------------


class SmaParams(StrategyParams):
    n: int = Field(default=2, ge=2, le=200)


class SmaTrend(Strategy):
    name = "sma_trend"
    title = "SMA trend"
    description = "holds symbol 0 while its close is above its n-day SMA"
    Params = SmaParams
    params: SmaParams

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        sma = ctx.indicator("SMA", timeperiod=self.params.n)[-1, 0]
        if np.isnan(sma):
            return
        if ctx.history("close")[-1, 0] > sma:
            ctx.order_target_percent(0, 0.5)
        elif ctx.position(0) > 0:
            ctx.close_position(0)


def test_a_small_cache_computes_each_window_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    symbols, days, windows = 4, 60, 40
    config = BacktestConfig(initial_cash=Decimal(1_000_000))
    panel = load_bars(_random_frame(symbols, days, seed=3), config)
    array = days * symbols * 8  # bytes of one days x symbols float panel
    calls = {"n": 0}
    real = context_module.compute

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1  # one call per symbol of one indicator panel
        return real(*args, **kwargs)

    monkeypatch.setattr(context_module, "compute", counting)
    points = [{"n": n} for n in range(2, 2 + windows)]
    points = points[::2] + points[1::2]  # interleaved: ordering is the evaluator's job
    small = Evaluator(panel, config, SmaTrend, cache_bytes=10 * array, batch_size=windows)
    results = small(points)
    computed = calls["n"] // symbols
    # each window's SMA panel is needed once; stopped passes may compute a few again, never once a day
    assert windows <= computed <= 2 * windows, computed
    assert small.cache.bytes <= 10 * array
    assert small.pass_limit < windows  # the pass was split to fit
    monkeypatch.setattr(context_module, "compute", real)
    alone = Evaluator(panel, config, SmaTrend, batch_size=1)(points)
    assert [r.metrics for r in results] == [r.metrics for r in alone]
    assert any(r.metrics and r.metrics["trade_count"] for r in results)


def test_a_pass_keeps_what_it_uses_and_evicts_the_rest_after_it() -> None:
    cache = SharedCache(max_bytes=2000)  # two 800-byte arrays
    a, b, c = (np.zeros(100, dtype=np.int64) for _ in range(3))
    cache[("old",)] = a
    with cache.batch_pass(splittable=False):
        cache[("x",)] = b
        cache[("y",)] = c  # over the budget: only the unused entry goes
        assert list(cache) == [("x",), ("y",)]
        cache.reserve(800)  # a visible buffer: nothing left that may go, a one-point pass runs over the budget
        assert list(cache) == [("x",), ("y",)]
    assert cache.bytes <= 2000 and cache.computed == 3
    from shared.research.engine.context import PassTooLarge

    with pytest.raises(PassTooLarge), cache.batch_pass(splittable=True):
        cache[("x",)]
        cache[("z",)] = np.zeros(100, dtype=np.int64)
        cache.reserve(800)


def test_the_cache_budget_must_be_a_byte_count() -> None:
    with pytest.raises(OptimisationError, match="cache_bytes"):
        SharedCache(max_bytes=-1)


# --- 3. a sale whose fees exceed its amount -----------------------------------------------------------------------


def test_a_sale_whose_fees_the_cash_cannot_pay_is_refused_and_cash_stays_at_zero() -> None:
    # 10 CNY, no lots: 2 shares at 2.50 cost 5.00 + the 5 CNY minimum commission (transfer fee 0.005 fen -> 0) = all
    # the cash. Selling them back: 5.00 - 5.00 commission - 0.01 stamp duty (0.1% of 500 fen = 0.5 -> 1 fen before
    # 2023-08-28) = -0.01 CNY, which the empty cash cannot pay: refused, the 2 shares stay.
    days = _days(4, "2023-08-01")
    frame = bars([(A, d, 2.50, 2.50) for d in days])
    script = Script({0: lambda ctx: ctx.buy(A, 2), 1: lambda ctx: ctx.sell(A, 2)})
    config = BacktestConfig(initial_cash=Decimal(10), lots=False)
    result = run_backtest(script, frame, config)
    check_identity(result)
    orders = result.orders_frame().to_dict("records")
    assert orders[0]["status"] == "filled" and orders[0]["filled_qty"] == 2
    assert orders[1]["status"] == "cancelled" and orders[1]["filled_qty"] == 0
    assert orders[1]["reason"].startswith("fees_exceed_cash")
    assert result.cash_fen.tolist() == [1000, 0, 0, 0]
    assert result.positions[:, 0].tolist() == [0, 2, 2, 2]
    assert result.metrics["total_return"] == pytest.approx(5.00 / 10 - 1)
    # the batch engine refuses it the same way
    again = Script({0: lambda ctx: ctx.buy(A, 2), 1: lambda ctx: ctx.sell(A, 2)})
    batch = BatchEngine([again], load_bars(frame, config), config)
    batch.run()
    assert batch.cash_hist[0].tolist() == result.cash_fen.tolist()
    assert batch.metrics(0) == result.metrics


def test_a_costly_sale_goes_through_when_the_cash_pays_the_difference() -> None:
    days = _days(4, "2023-08-01")
    frame = bars([(A, d, 2.50, 2.50) for d in days])
    script = Script({0: lambda ctx: ctx.buy(A, 2), 1: lambda ctx: ctx.sell(A, 2)})
    result = run_backtest(script, frame, BacktestConfig(initial_cash=Decimal(11), lots=False))
    check_identity(result)
    # 11.00 - 10.00 for the buy; the sale brings -0.01: 0.99 CNY left, no shares
    assert result.cash_fen.tolist() == [1100, 100, 99, 99]
    assert result.orders_frame()["status"].tolist() == ["filled", "filled"]


# --- 4. metrics that need a benchmark -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric",
    [
        "benchmark_total_return",
        "benchmark_annual_return",
        "excess_total_return",
        "excess_annual_return",
        "information_ratio",
        "tracking_error",
        "alpha",
        "beta",
    ],
)
def test_benchmark_metrics_are_refused_as_objective_and_constraint(metric: str) -> None:
    with pytest.raises(OptimisationError, match=f"objective: {metric} needs a benchmark"):
        Objective(metric)
    with pytest.raises(OptimisationError, match=f"{metric} needs a benchmark"):
        Constraint.parse(f"{metric} >= 0.1")
    assert Constraint.parse("sharpe >= 1").metric == "sharpe"
