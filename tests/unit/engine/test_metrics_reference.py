"""Backtest metrics against empyrical-reloaded's definitions and against plain-loop re-implementations.

empyrical-reloaded (a test dependency) is the maintained fork of Quantopian's empyrical; where docs/metrics.md
deliberately differs from it (losses reported positive, an annualised information ratio, None instead of NaN) the
comparison converts explicitly and says so.
"""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pytest

from shared.research.engine.metrics import MetricsConfig, compute_metrics

SQRT_252 = math.sqrt(252)


def _close(expected: float) -> object:
    # The two implementations sum in different orders and we recompute returns from equity: float noise only.
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


def _series(seed: int, days: int, drift: float) -> tuple[np.ndarray, np.ndarray]:
    """Daily strategy and benchmark returns: the strategy loads on the benchmark plus its own noise."""
    rng = np.random.default_rng(seed)
    bench = rng.normal(0.0003, 0.013, days)
    returns = drift + 0.8 * bench + rng.normal(0.0, 0.009, days)
    return returns, bench


CASES = [
    # (seed, days, daily drift, annual risk-free rate)
    (1, 1_000, 0.0004, 0.0),
    (2, 2_500, 0.0002, 0.025),
    (3, 600, -0.0015, 0.03),  # a losing strategy with a long drawdown
    (4, 30, 0.001, 0.015),
]


@pytest.mark.parametrize(("seed", "days", "drift", "rf"), CASES)
def test_matches_empyrical(seed: int, days: int, drift: float, rf: float) -> None:
    returns, bench = _series(seed, days, drift)
    initial = 1_000_000.0
    equity = initial * np.cumprod(1.0 + returns)
    config = MetricsConfig(risk_free_rate=rf)
    m = compute_metrics(equity, initial, bench, config=config)
    # empyrical takes the risk-free rate per period; ours is annual, de-compounded over 252 days
    rf_daily = (1.0 + rf) ** (1.0 / 252) - 1.0

    assert m.total_return == _close(empyrical.cum_returns_final(returns))
    assert m.annual_return == _close(empyrical.annual_return(returns))
    assert m.volatility == _close(empyrical.annual_volatility(returns))
    assert m.sharpe == _close(empyrical.sharpe_ratio(returns, risk_free=rf_daily))
    assert m.sortino == _close(empyrical.sortino_ratio(returns, required_return=rf_daily))
    # empyrical reports drawdown and VaR as (negative) returns; we report them as positive losses
    assert m.max_drawdown == _close(-empyrical.max_drawdown(returns))
    assert m.calmar == _close(empyrical.calmar_ratio(returns))
    assert m.var == _close(-empyrical.value_at_risk(returns, cutoff=0.05))
    assert m.cvar == _close(-empyrical.conditional_value_at_risk(returns, cutoff=0.05))
    alpha, beta = empyrical.alpha_beta(returns, bench, risk_free=rf_daily)
    assert m.beta == _close(beta)
    assert m.alpha == _close(alpha)
    # empyrical's excess_sharpe is the daily information ratio; ours is annualised with sqrt(252)
    assert m.information_ratio == _close(empyrical.excess_sharpe(returns, bench) * SQRT_252)
    assert m.benchmark_total_return == _close(empyrical.cum_returns_final(bench))
    assert m.benchmark_annual_return == _close(empyrical.annual_return(bench))


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_var_level_matches_empyrical_cutoff(level: float) -> None:
    returns, _ = _series(7, 2_000, 0.0)
    m = compute_metrics(np.cumprod(1.0 + returns), 1.0, config=MetricsConfig(var_level=level))
    cutoff = round(1.0 - level, 10)
    assert m.var == pytest.approx(-empyrical.value_at_risk(returns, cutoff=cutoff), rel=1e-9)
    assert m.cvar == pytest.approx(-empyrical.conditional_value_at_risk(returns, cutoff=cutoff), rel=1e-9)


def _plain_drawdown_duration(equity: list[float], initial: float) -> int:
    """Longest stretch of consecutive closes below the highest earlier value (initial equity included)."""
    peak, run, longest = initial, 0, 0
    for value in equity:
        if value >= peak:
            peak, run = value, 0
        else:
            run += 1
            longest = max(longest, run)
    return longest


@pytest.mark.parametrize(("seed", "days", "drift", "rf"), CASES)
def test_drawdown_duration_matches_a_plain_loop(seed: int, days: int, drift: float, rf: float) -> None:
    returns, _ = _series(seed, days, drift)
    equity = 1e6 * np.cumprod(1.0 + returns)
    m = compute_metrics(equity, 1e6)
    expected = _plain_drawdown_duration(equity.tolist(), 1e6)
    assert expected > 0
    assert m.max_drawdown_duration == expected


def test_trade_statistics_and_turnover_match_plain_loops() -> None:
    rng = np.random.default_rng(11)
    days = 500
    equity = 2e6 * np.cumprod(1.0 + rng.normal(0.0003, 0.01, days))
    traded = np.where(rng.random(days) < 0.3, rng.uniform(1e4, 5e5, days), 0.0)
    pnl = np.round(rng.normal(50.0, 2_000.0, 300), 2)
    pnl[:5] = 0.0  # break-even trades count as trades but not as wins
    m = compute_metrics(equity, 2e6, trade_pnl=pnl, traded_value=traded)

    wins = [p for p in pnl.tolist() if p > 0]
    losses = [p for p in pnl.tolist() if p < 0]
    assert m.trade_count == 300
    assert m.win_rate == pytest.approx(len(wins) / 300)
    assert m.profit_loss_ratio == pytest.approx((sum(wins) / len(wins)) / (-sum(losses) / len(losses)), rel=1e-12)

    start_of_day = [2e6, *equity[:-1].tolist()]
    daily = [t / 2 / e for t, e in zip(traded.tolist(), start_of_day, strict=True)]
    assert m.turnover == pytest.approx(sum(daily) / days * 252, rel=1e-12)
