"""Backtest metrics on small series worked out by hand (the arithmetic is in the comments; see docs/metrics.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from shared.research.engine.metrics import Metrics, MetricsConfig, MetricsInputError, compute_metrics

# Five trading days from 1,000,000 CNY with daily returns +1%, -1%, +3%, -2%, +1%:
#   1,010,000 -> 999,900 -> 1,029,897 -> 1,009,299.06 -> 1,019,392.0506
INITIAL = 1_000_000.0
EQUITY = np.array([1_010_000.0, 999_900.0, 1_029_897.0, 1_009_299.06, 1_019_392.0506])
# Benchmark daily returns +0.5%, -1%, +2%, 0%, -0.5%.
BENCH = np.array([0.005, -0.01, 0.02, 0.0, -0.005])
TRADE_PNL = np.array([500.0, -200.0, 300.0, -100.0, 0.0])
# Day 0 buys 200,000 CNY on a 1,000,000 start; day 1 trades 101,000 on a 1,010,000 start.
TRADED = np.array([200_000.0, 101_000.0, 0.0, 0.0, 0.0])


def full() -> Metrics:
    return compute_metrics(EQUITY, INITIAL, BENCH, TRADE_PNL, TRADED)


def test_returns_by_hand() -> None:
    m = full()
    assert m.days == 5
    # 1.01 * 0.99 * 1.03 * 0.98 * 1.01 = 1.0193920506
    assert m.total_return == pytest.approx(0.0193920506, rel=1e-12)
    # CAGR over 5 of 252 trading days
    assert m.annual_return == pytest.approx(1.0193920506 ** (252 / 5) - 1, rel=1e-12)
    # 1.005 * 0.99 * 1.02 * 1.0 * 0.995 = 1.009774755
    assert m.benchmark_total_return == pytest.approx(0.009774755, rel=1e-12)
    assert m.benchmark_annual_return == pytest.approx(1.009774755 ** (252 / 5) - 1, rel=1e-12)
    # excess = plain difference of strategy and benchmark
    assert m.excess_total_return == pytest.approx(0.0193920506 - 0.009774755, rel=1e-10)
    assert m.excess_annual_return == pytest.approx(
        (1.0193920506 ** (252 / 5) - 1) - (1.009774755 ** (252 / 5) - 1), rel=1e-10
    )


def test_risk_by_hand() -> None:
    m = full()
    # mean = 0.02 / 5 = 0.004; deviations 0.006, -0.014, 0.026, -0.024, 0.006;
    # squares 36e-6 + 196e-6 + 676e-6 + 576e-6 + 36e-6 = 1520e-6; sample variance 1520e-6 / 4 = 0.00038
    assert m.volatility == pytest.approx(math.sqrt(0.00038 * 252), rel=1e-10)
    assert m.sharpe == pytest.approx(0.004 / math.sqrt(0.00038) * math.sqrt(252), rel=1e-10)
    # downside: min(r, 0) = 0, -0.01, 0, -0.02, 0; mean square over all 5 days = (1e-4 + 4e-4) / 5 = 1e-4;
    # downside deviation 0.01 a day. Sortino = 0.004 * 252 / (0.01 * sqrt(252)) = 0.4 * sqrt(252)
    assert m.sortino == pytest.approx(0.4 * math.sqrt(252), rel=1e-10)
    # peaks 1,010,000 (day 0) then 1,029,897 (day 2); deepest fall 1,029,897 -> 1,009,299.06 = -2%.
    # Under water on day 1 (one day) and days 3-4 (two days: 1,019,392.05 is still below 1,029,897).
    assert m.max_drawdown == pytest.approx(0.02, rel=1e-10)
    assert m.max_drawdown_duration == 2
    assert m.calmar == pytest.approx((1.0193920506 ** (252 / 5) - 1) / 0.02, rel=1e-10)
    # sorted returns -0.02, -0.01, 0.01, 0.01, 0.03; the 5% quantile sits at position 4 * 0.05 = 0.2:
    # -0.02 + 0.2 * (-0.01 - -0.02) = -0.018 -> VaR 1.8% (a loss, positive)
    assert m.var == pytest.approx(0.018, rel=1e-10)
    # CVaR tail = floor(4 * 0.05) + 1 = 1 worst day -> 2%
    assert m.cvar == pytest.approx(0.02, rel=1e-10)


def test_benchmark_relative_by_hand() -> None:
    m = full()
    # active = r - b = 0.005, 0, 0.01, -0.02, 0.015; mean 0.002; deviations 0.003, -0.002, 0.008, -0.022, 0.013;
    # squares 9e-6 + 4e-6 + 64e-6 + 484e-6 + 169e-6 = 730e-6; sample variance 730e-6 / 4 = 1.825e-4
    assert m.tracking_error == pytest.approx(math.sqrt(1.825e-4 * 252), rel=1e-10)
    assert m.information_ratio == pytest.approx(0.002 / math.sqrt(1.825e-4) * math.sqrt(252), rel=1e-10)
    # b - mean(b) (mean 0.002) = 0.003, -0.012, 0.018, -0.002, -0.007; r - mean(r) = 0.006, -0.014, 0.026, -0.024, 0.006
    # covariance sum 18e-6 + 168e-6 + 468e-6 + 48e-6 - 42e-6 = 660e-6; variance sum 9 + 144 + 324 + 4 + 49 = 530e-6
    assert m.beta == pytest.approx(66 / 53, rel=1e-10)
    # daily alpha = mean(r) - beta * mean(b) = 0.004 - 66/53 * 0.002 = (0.212 - 0.132) / 53 = 0.08 / 53
    assert m.alpha == pytest.approx((1 + 0.08 / 53) ** 252 - 1, rel=1e-10)


def test_trades_and_turnover_by_hand() -> None:
    m = full()
    assert m.trade_count == 5
    # 2 winners of 5 trades (the break-even trade is not a win)
    assert m.win_rate == pytest.approx(0.4)
    # average win (500 + 300) / 2 = 400; average loss (200 + 100) / 2 = 150
    assert m.profit_loss_ratio == pytest.approx(400 / 150)
    # daily one-way turnover: 200,000 / 2 / 1,000,000 = 0.1; 101,000 / 2 / 1,010,000 = 0.05; then 0;
    # mean (0.15 / 5 = 0.03) * 252
    assert m.turnover == pytest.approx(0.03 * 252, rel=1e-12)


def test_risk_free_rate_is_compounded_to_a_daily_rate() -> None:
    # An annual rate of 1.0001^252 - 1 is exactly 0.01% a trading day.
    config = MetricsConfig(risk_free_rate=1.0001**252 - 1)
    assert config.daily_risk_free_rate == pytest.approx(0.0001, rel=1e-9)
    m = compute_metrics(EQUITY, INITIAL, BENCH, config=config)
    # excess mean 0.004 - 0.0001; the standard deviation does not move with a constant shift
    assert m.sharpe == pytest.approx(0.0039 / math.sqrt(0.00038) * math.sqrt(252), rel=1e-8)
    # r - rf = 0.0099, -0.0101, 0.0299, -0.0201, 0.0099; downside squares 0.0101^2 + 0.0201^2 = 0.00050602
    assert m.sortino == pytest.approx(0.0039 * 252 / (math.sqrt(0.00050602 / 5) * math.sqrt(252)), rel=1e-8)
    # beta unchanged; daily alpha = 0.0039 - 66/53 * (0.002 - 0.0001) = (0.2067 - 0.1254) / 53 = 0.0813 / 53
    assert m.beta == pytest.approx(66 / 53, rel=1e-9)
    assert m.alpha == pytest.approx((1 + 0.0813 / 53) ** 252 - 1, rel=1e-8)
    # total, drawdown and VaR do not depend on the risk-free rate
    assert m.total_return == pytest.approx(0.0193920506, rel=1e-12)
    assert m.var == pytest.approx(0.018, rel=1e-10)


def test_as_dict_has_a_stable_key_order_and_is_valid_json() -> None:
    d = full().as_dict()
    assert list(d) == [
        "days",
        "total_return",
        "annual_return",
        "benchmark_total_return",
        "benchmark_annual_return",
        "excess_total_return",
        "excess_annual_return",
        "volatility",
        "max_drawdown",
        "max_drawdown_duration",
        "var",
        "cvar",
        "sharpe",
        "sortino",
        "calmar",
        "information_ratio",
        "tracking_error",
        "alpha",
        "beta",
        "trade_count",
        "win_rate",
        "profit_loss_ratio",
        "turnover",
    ]
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert all(type(v) in (int, float) for v in d.values())


def _json_ok(m: Metrics) -> dict[str, float | int | None]:
    d = m.as_dict()
    json.dumps(d, allow_nan=False)  # raises on NaN / inf
    return d


def test_constant_equity() -> None:
    flat = np.full(4, 500_000.0)
    bench = np.array([0.01, -0.01, 0.02, 0.0])
    m = compute_metrics(flat, 500_000.0, bench, np.array([]), np.zeros(4))
    _json_ok(m)
    assert (m.total_return, m.annual_return, m.volatility) == (0.0, 0.0, 0.0)
    assert (m.max_drawdown, m.max_drawdown_duration, m.var, m.cvar) == (0.0, 0, 0.0, 0.0)
    # zero volatility: no Sharpe; no day below the (zero) risk-free rate: no Sortino; no drawdown: no Calmar
    assert (m.sharpe, m.sortino, m.calmar) == (None, None, None)
    # flat returns do not co-move with the market: beta 0, alpha 0
    assert m.beta == 0.0
    assert m.alpha == 0.0
    # active return = -b = -0.01, 0.01, -0.02, 0: mean -0.02 / 4 = -0.005; deviations -0.005, 0.015, -0.015, 0.005;
    # squares 25e-6 + 225e-6 + 225e-6 + 25e-6 = 500e-6; sample variance 500e-6 / 3
    assert m.information_ratio == pytest.approx(-0.005 / math.sqrt(500e-6 / 3) * math.sqrt(252), rel=1e-10)
    assert m.turnover == 0.0
    assert (m.trade_count, m.win_rate, m.profit_loss_ratio) == (0, None, None)


def test_constant_equity_with_a_risk_free_rate_has_a_sortino() -> None:
    # Every day is 0.01% below the risk-free rate: downside deviation 0.0001, Sortino = -0.0001*252/(0.0001*sqrt(252))
    m = compute_metrics(np.full(3, 100.0), 100.0, config=MetricsConfig(risk_free_rate=1.0001**252 - 1))
    assert m.sortino == pytest.approx(-math.sqrt(252), rel=1e-8)
    assert m.sharpe is None


def test_steady_growth_has_no_volatility_rather_than_float_noise() -> None:
    # +1% every day: the computed returns differ only in the last bits, which must not give a Sharpe of ~1e15
    equity = 100.0 * 1.01 ** np.arange(1, 31)
    m = compute_metrics(equity, 100.0)
    assert m.volatility == 0.0
    assert m.sharpe is None
    assert m.sortino is None  # no day below zero
    assert m.total_return == pytest.approx(1.01**30 - 1, rel=1e-12)


def test_one_day() -> None:
    m = compute_metrics(np.array([101.0]), 100.0, np.array([0.004]), np.array([3.0]), np.array([50.0]))
    d = _json_ok(m)
    assert m.total_return == pytest.approx(0.01)
    assert m.annual_return == pytest.approx(1.01**252 - 1)
    assert m.excess_total_return == pytest.approx(0.006)
    # a single day has no sample standard deviation, so nothing that divides by one
    for key in ("volatility", "sharpe", "sortino", "information_ratio", "tracking_error", "alpha", "beta"):
        assert d[key] is None, key
    assert (m.max_drawdown, m.max_drawdown_duration, m.calmar) == (0.0, 0, None)
    # the only day is a 1% gain: the "loss" at 95% is -1%
    assert m.var == pytest.approx(-0.01)
    assert m.cvar == pytest.approx(-0.01)
    assert (m.trade_count, m.win_rate, m.profit_loss_ratio) == (1, 1.0, None)  # no losing trade: no ratio
    assert m.turnover == pytest.approx(50 / 2 / 100 * 252)


def test_all_losses() -> None:
    # -10% a day for three days: 100 -> 90 -> 81 -> 72.9
    m = compute_metrics(np.array([90.0, 81.0, 72.9]), 100.0, trade_pnl=np.array([-5.0, -1.0]))
    _json_ok(m)
    assert m.total_return == pytest.approx(-0.271)
    assert m.annual_return == pytest.approx(0.729**84 - 1)
    assert m.max_drawdown == pytest.approx(0.271)
    assert m.max_drawdown_duration == 3
    assert m.volatility == 0.0
    assert m.sharpe is None
    # downside deviation sqrt(mean(0.01)) = 0.1; Sortino = -0.1 * 252 / (0.1 * sqrt(252)) = -sqrt(252)
    assert m.sortino == pytest.approx(-math.sqrt(252))
    assert m.calmar == pytest.approx((0.729**84 - 1) / 0.271)
    assert m.var == pytest.approx(0.1)
    assert m.cvar == pytest.approx(0.1)
    assert (m.trade_count, m.win_rate, m.profit_loss_ratio) == (2, 0.0, 0.0)


def test_no_benchmark_no_trades_no_traded_value() -> None:
    d = _json_ok(compute_metrics(EQUITY, INITIAL))
    for key in (
        "benchmark_total_return",
        "benchmark_annual_return",
        "excess_total_return",
        "excess_annual_return",
        "information_ratio",
        "tracking_error",
        "alpha",
        "beta",
        "trade_count",
        "win_rate",
        "profit_loss_ratio",
        "turnover",
    ):
        assert d[key] is None, key
    assert d["sharpe"] == pytest.approx(0.004 / math.sqrt(0.00038) * math.sqrt(252), rel=1e-10)


def test_zero_length_trade_pnl() -> None:
    m = compute_metrics(EQUITY, INITIAL, trade_pnl=np.array([], dtype=np.float64))
    assert (m.trade_count, m.win_rate, m.profit_loss_ratio) == (0, None, None)


def test_constant_benchmark_has_no_beta() -> None:
    m = compute_metrics(EQUITY, INITIAL, np.zeros(5))
    assert (m.alpha, m.beta) == (None, None)
    # against a flat benchmark the active return is the return itself
    assert m.information_ratio == pytest.approx(0.004 / math.sqrt(0.00038) * math.sqrt(252), rel=1e-10)


def test_drawdown_duration_is_the_longest_not_the_deepest() -> None:
    # 100 -> 95 (-5%, one day under water) -> 100 (recovered) -> 99, 99.5, 99.8 (-1%, three days) -> 101
    m = compute_metrics(np.array([95.0, 100.0, 99.0, 99.5, 99.8, 101.0]), 100.0)
    assert m.max_drawdown == pytest.approx(0.05)
    assert m.max_drawdown_duration == 3


def test_unrecovered_drawdown_runs_to_the_last_day() -> None:
    # peak 102 on day 0, below it on days 1 and 2 (end of data)
    m = compute_metrics(np.array([102.0, 101.0, 100.5]), 100.0)
    assert m.max_drawdown == pytest.approx(1 - 100.5 / 102)
    assert m.max_drawdown_duration == 2


def test_initial_equity_is_the_first_peak() -> None:
    # a loss on day 0 is a drawdown from the starting capital
    m = compute_metrics(np.array([98.0, 99.0]), 100.0)
    assert m.max_drawdown == pytest.approx(0.02)
    assert m.max_drawdown_duration == 2


def test_full_round_trip_a_year_is_turnover_one() -> None:
    # buy the whole 1,000,000 on the first day, sell it all on the last of 252 flat days
    traded = np.zeros(252)
    traded[0] = traded[-1] = 1_000_000.0
    m = compute_metrics(np.full(252, 1_000_000.0), 1_000_000.0, traded_value=traded)
    assert m.turnover == pytest.approx(1.0)


def test_a_huge_one_day_gain_has_no_annual_return_rather_than_inf() -> None:
    m = compute_metrics(np.array([1e6]), 1.0)
    assert m.annual_return is None
    assert m.calmar is None
    assert m.total_return == pytest.approx(999_999.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"equity": np.array([])}, "equity"),
        ({"equity": np.array([[1.0, 2.0]])}, "equity"),
        ({"equity": np.array([100.0, np.nan])}, "equity"),
        ({"equity": np.array([100.0, 0.0])}, "equity"),
        ({"equity": np.array(["a"])}, "equity"),
        ({"initial_equity": 0.0}, "initial_equity"),
        ({"initial_equity": math.inf}, "initial_equity"),
        ({"benchmark_returns": np.zeros(4)}, "benchmark_returns"),
        ({"benchmark_returns": np.array([0.0, -1.0, 0.0, 0.0, 0.0])}, "benchmark_returns"),
        ({"trade_pnl": np.array([1.0, math.inf])}, "trade_pnl"),
        ({"traded_value": np.array([0.0, -1.0, 0.0, 0.0, 0.0])}, "traded_value"),
        ({"traded_value": np.zeros(6)}, "traded_value"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"equity": EQUITY, "initial_equity": INITIAL} | kwargs
    with pytest.raises(MetricsInputError) as caught:
        compute_metrics(**args)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"risk_free_rate": -1.0}, "risk_free_rate"),
        ({"risk_free_rate": math.nan}, "risk_free_rate"),
        ({"periods_per_year": 0}, "periods_per_year"),
        ({"periods_per_year": 252.0}, "periods_per_year"),
        ({"var_level": 1.0}, "var_level"),
        ({"var_level": 0.0}, "var_level"),
    ],
)
def test_bad_config_names_the_setting(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(MetricsInputError) as caught:
        MetricsConfig(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
