"""Parameter optimisation library: space parsing and bounds, grid counts, objective ranking with None and
constraints, GA determinism and no re-evaluation, walk-forward window arithmetic, and evaluate() against
run_backtest."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from bench.engine import synthetic_bars
from shared.research.engine import BacktestConfig, load_bars, run_backtest
from shared.research.engine.optimize import (
    Constraint,
    GeneticSettings,
    Objective,
    OptimisationError,
    ParameterSpace,
    PointResult,
    SpaceError,
    evaluate,
    genetic_search,
    grid_search,
    point_key,
    rank,
    score,
    walk_forward,
    walk_forward_windows,
)
from strategies.bollinger import Bollinger
from strategies.dual_ma import DualMA


def test_ranges_lists_and_choices() -> None:
    space = ParameterSpace.from_spec(
        DualMA, {"fast": {"min": 2, "max": 11, "step": 3}, "cash_reserve": {"min": 0, "max": 0.3, "step": 0.1}}
    )
    assert space.domains[0].values == (2, 5, 8, 11)
    assert space.domains[1].values == (0.0, 0.1, 0.2, 0.3)  # decimal steps: no 0.30000000000000004
    assert space.size == 16
    bands = ParameterSpace.from_spec(Bollinger, {"exit_band": ["upper", "middle"]})
    assert bands.domains[0].values == ("upper", "middle")


@pytest.mark.parametrize(
    ("strategy", "spec", "parameter", "words"),
    [
        (DualMA, {"fast": [0, 5]}, "fast", "below the minimum 1"),
        (DualMA, {"slow": {"min": 100, "max": 600, "step": 100}}, "slow", "above the maximum 500"),
        (DualMA, {"cash_reserve": [0.5, 1.0]}, "cash_reserve", "less than 1"),
        (DualMA, {"fast": [2.5]}, "fast", "not an integer"),
        (DualMA, {"fast": {"min": 1, "max": 5, "step": 0.5}}, "fast", "must be integers"),
        (DualMA, {"fastt": [1]}, "fastt", "no such parameter"),
        (DualMA, {"fast": {"min": 5, "max": 1, "step": 1}}, "fast", "above max"),
        (DualMA, {"fast": []}, "fast", "empty"),
        (Bollinger, {"exit_band": ["middle", "lower"]}, "exit_band", "not one of the choices"),
    ],
)
def test_bad_specs_name_the_parameter(strategy: Any, spec: dict[str, Any], parameter: str, words: str) -> None:
    with pytest.raises(SpaceError) as caught:
        ParameterSpace.from_spec(strategy, spec)
    assert caught.value.parameter == parameter
    assert words in str(caught.value)


def test_grid_skips_points_the_validators_refuse() -> None:
    space = ParameterSpace.from_spec(DualMA, {"fast": [5, 10, 20], "slow": [10, 20, 30]})
    points, skipped = space.grid()
    # by hand: fast < slow holds for (5,10) (5,20) (5,30) (10,20) (10,30) (20,30); not for (10,10) (20,10) (20,20)
    assert [(p["fast"], p["slow"]) for p in points] == [(5, 10), (5, 20), (5, 30), (10, 20), (10, 30), (20, 30)]
    assert sorted((p["fast"], p["slow"]) for p, _ in skipped) == [(10, 10), (20, 10), (20, 20)]
    assert all("fast" in reason for _, reason in skipped)


def test_fixed_parameters_ride_along_and_cannot_also_be_searched() -> None:
    space = ParameterSpace.from_spec(DualMA, {"fast": [3]}, {"slow": 9})
    assert space.grid()[0] == [{"slow": 9, "fast": 3}]
    with pytest.raises(SpaceError, match="both searched and fixed"):
        ParameterSpace.from_spec(DualMA, {"fast": [3]}, {"fast": 4})


def _result(
    name: str, sharpe: float | None, drawdown: float, trades: int, constraints: list[Constraint]
) -> PointResult:
    metrics = {"sharpe": sharpe, "max_drawdown": drawdown, "trade_count": trades}
    return score({"p": name}, metrics, Objective("sharpe"), constraints)


def test_ranking_puts_none_and_infeasible_last() -> None:
    cons = [Constraint.parse("max_drawdown <= 0.3"), Constraint.parse("trade_count >= 10")]
    a = _result("a", 1.0, 0.2, 50, cons)
    b = _result("b", 2.0, 0.4, 50, cons)  # best Sharpe but drawdown too deep
    c = _result("c", None, 0.1, 50, cons)  # feasible, undefined Sharpe
    d = _result("d", 0.5, 0.1, 20, cons)
    e = _result("e", 3.0, 0.1, 5, cons)  # too few trades
    failed = score({"p": "f"}, None, Objective("sharpe"), error="boom")
    ranked = rank([a, b, c, d, e, failed], Objective("sharpe"))
    assert [r.params["p"] for r in ranked] == ["a", "d", "c", "e", "b", "f"]
    assert b.violations == ["max_drawdown <= 0.3"] and e.violations == ["trade_count >= 10"]
    low_first = rank([a, d], Objective("sharpe", "minimize"))
    assert [r.params["p"] for r in low_first] == ["d", "a"]


def test_ranking_uses_the_objective_it_is_given_not_the_one_scored_with() -> None:
    # Scored for Sharpe (the evaluator's default), ranked by drawdown, smallest first: c (0.1), a (0.2), b (0.4).
    a, b, c = _result("a", 1.0, 0.2, 50, []), _result("b", 2.0, 0.4, 50, []), _result("c", None, 0.1, 50, [])
    ranked = rank([a, b, c], Objective("max_drawdown", "minimize"))
    assert [r.params["p"] for r in ranked] == ["c", "a", "b"]


def test_constraint_and_objective_errors_name_the_metric() -> None:
    with pytest.raises(OptimisationError, match="unknown metric 'drawdown'"):
        Constraint.parse("drawdown <= 0.3")
    with pytest.raises(OptimisationError, match="metric <= number"):
        Constraint.parse("max_drawdown is small")
    with pytest.raises(OptimisationError, match="unknown metric 'sharp'"):
        Objective("sharp")
    assert not Constraint.parse("sharpe >= 1").holds({"sharpe": None})


def _toy(calls: list[str]) -> Any:
    def evaluate_fn(points: list[dict[str, Any]]) -> list[PointResult]:
        out = []
        for p in points:
            calls.append(point_key(p))
            value = -((p["fast"] - 7) ** 2) - (p["slow"] - 30) ** 2 / 10  # best at (7, 30)
            out.append(score(p, {"sharpe": value}, Objective("sharpe")))
        return out

    return evaluate_fn


def test_genetic_search_is_deterministic_never_repeats_and_stays_in_bounds() -> None:
    space = ParameterSpace.from_spec(
        DualMA, {"fast": {"min": 1, "max": 20, "step": 1}, "slow": {"min": 10, "max": 60, "step": 5}}
    )
    settings = GeneticSettings(population=12, generations=8, budget=60, seed=42)
    first: list[str] = []
    second: list[str] = []
    one = genetic_search(space, _toy(first), Objective("sharpe"), settings)
    two = genetic_search(space, _toy(second), Objective("sharpe"), settings)
    assert first == second and len(first) == len(set(first)) <= 60
    assert one.evaluations == len(first)
    assert one.best is not None and two.best is not None and one.best.key == two.best.key
    # Mutation is clipped to the domain and lands on its grid: every evaluated point must be a point of the space
    # (fast 1..20; slow 10..60 in steps of 5), which a mutation that overshot or left the grid would break.
    domain = {(fast, slow) for fast in range(1, 21) for slow in range(10, 61, 5)}
    for key in first:
        point = json.loads(key)
        assert (point["fast"], point["slow"]) in domain
        assert point["fast"] < point["slow"]
    other: list[str] = []
    genetic_search(
        space, _toy(other), Objective("sharpe"), GeneticSettings(population=12, generations=8, budget=60, seed=7)
    )
    assert other != first
    # the grid's optimum is (7, 30); the GA, with 60 of 220 points, gets there or next to it
    assert abs(one.best.params["fast"] - 7) <= 2 and abs(one.best.params["slow"] - 30) <= 5


def test_walk_forward_windows_by_hand() -> None:
    rolling = walk_forward_windows(11, 4, 2)
    assert [(w.is_start, w.is_end, w.oos_start, w.oos_end) for w in rolling] == [
        (0, 4, 4, 6),
        (2, 6, 6, 8),
        (4, 8, 8, 10),
    ]
    anchored = walk_forward_windows(11, 4, 2, 3, anchored=True)
    assert [(w.is_start, w.is_end, w.oos_start, w.oos_end) for w in anchored] == [(0, 4, 4, 6), (0, 7, 7, 9)]
    with pytest.raises(OptimisationError, match="data has 5"):
        walk_forward_windows(5, 4, 2)
    with pytest.raises(OptimisationError, match="out_of_sample"):
        walk_forward_windows(10, 4, 0)


@pytest.fixture(scope="module")
def market() -> Any:
    return synthetic_bars(12, 160, 3)


def test_evaluate_gives_run_backtest_metrics(market: Any) -> None:
    config = BacktestConfig(initial_cash=Decimal("1000000"))
    panel = load_bars(market, config)
    points = [{"fast": 3, "slow": 10}, {"fast": 5, "slow": 20}, {"fast": 9, "slow": 8}]
    results = evaluate(points, panel, config, DualMA, constraints=[Constraint.parse("trade_count >= 1")])
    for point, result in zip(points[:2], results[:2], strict=True):
        assert result.metrics == run_backtest(DualMA(point), market, config).metrics
        assert result.objective == result.metrics["sharpe"]
    assert results[2].error is not None and "fast" in results[2].error and not results[2].feasible
    best = grid_search(
        ParameterSpace.from_spec(DualMA, {"fast": [3, 5], "slow": [10, 20]}),
        lambda ps: evaluate(ps, panel, config, DualMA),
        Objective("total_return"),
    )
    returns = {
        (p["fast"], p["slow"]): float(run_backtest(DualMA(p), market, config).metrics["total_return"] or 0.0)
        for p in ({"fast": f, "slow": s} for f in (3, 5) for s in (10, 20))
    }
    assert best.best is not None
    assert (best.best.params["fast"], best.best.params["slow"]) == max(returns, key=lambda k: returns[k])


def test_walk_forward_carries_capital_and_stitches(market: Any) -> None:
    config = BacktestConfig(initial_cash=Decimal("1000000"))
    space = ParameterSpace.from_spec(DualMA, {"fast": [2, 4], "slow": [6, 12]})
    result = walk_forward(market, config, space, Objective("total_return"), in_sample=60, out_of_sample=30)
    assert len(result.windows) == 3 and result.unused_days == 160 - 150
    assert len(result.equity) == len(result.dates) == 90
    days = sorted(set(market["trade_date"]))
    assert result.windows[1]["out_of_sample"] == [
        f"{days[90][:4]}-{days[90][4:6]}-{days[90][6:]}",
        f"{days[119][:4]}-{days[119][4:6]}-{days[119][6:]}",
    ]
    assert result.windows[0]["starting_capital"] == "1000000"
    # each window starts with the previous one's last equity
    assert Decimal(result.windows[1]["starting_capital"]) == Decimal(str(result.equity[29])).quantize(Decimal("0.01"))
    assert Decimal(result.windows[2]["starting_capital"]) == Decimal(str(result.equity[59])).quantize(Decimal("0.01"))
    assert result.metrics["total_return"] == pytest.approx(result.equity[-1] / 1_000_000 - 1, abs=1e-12)
    # each window's OOS run is the best IS point run alone over the OOS days with the carried capital
    w = result.windows[2]
    oos = config.model_copy(update={"initial_cash": Decimal(w["starting_capital"]), "start": None, "end": None})
    lo, hi = (d.replace("-", "") for d in w["out_of_sample"])
    window_bars = market[(market["trade_date"] >= lo) & (market["trade_date"] <= hi)]
    assert run_backtest(DualMA(w["best_params"]), window_bars, oos).metrics == w["oos_metrics"]


def test_shared_cache_evicts_the_least_recently_used_by_bytes() -> None:
    import numpy as np

    from shared.research.engine.optimize import SharedCache

    cache = SharedCache(max_bytes=2000)  # room for two 800-byte arrays
    a, b, c = (np.zeros(100, dtype=np.int64) for _ in range(3))
    cache[("sum", 5)] = a
    cache[("sum", 20)] = b
    assert cache[("sum", 5)] is a  # now the most recently used
    cache[("sum", 60)] = c
    assert list(cache) == [("sum", 5), ("sum", 60)] and cache.bytes == 1600


def test_a_shared_cache_gives_the_same_metrics_as_fresh_runs(market: Any) -> None:
    from shared.research.engine.optimize import Evaluator

    config = BacktestConfig(initial_cash=Decimal("1000000"))
    panel = load_bars(market, config)
    points = [{"fast": 3, "slow": 10}, {"fast": 3, "slow": 20}, {"fast": 10, "slow": 20}, {"fast": 3, "slow": 10}]
    shared = Evaluator(panel, config, DualMA)(points)
    assert len(Evaluator(panel, config, DualMA).cache) == 0
    for point, result in zip(points, shared, strict=True):
        assert result.metrics == evaluate([point], panel, config, DualMA)[0].metrics


def test_tasks_are_sized_for_several_workers_unless_the_request_says() -> None:
    from services.backtest.optimize import batch_for

    # 1,000 points in 8 tasks would be 125 each: capped at the evaluator's pass of 100 -> 10 tasks.
    assert batch_for({"batch_size": None}, 1000) == 100
    assert batch_for({"batch_size": None}, 200) == 25  # 8 tasks of 25
    assert batch_for({"batch_size": None}, 20) == 3  # ceil(20 / 8)
    assert batch_for({"batch_size": None}, 1) == 1
    assert batch_for({"batch_size": 7}, 1000) == 7  # the request's size wins
    assert batch_for({}, 1000) == 10  # jobs stored before the size was automatic keep theirs
