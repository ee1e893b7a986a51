"""Performance metrics of a backtest: returns, risk, risk-adjusted ratios, trade statistics and turnover.

Every metric is defined in docs/metrics.md; this module is the one implementation of those definitions, used by the
backtest engine and anything that reports a result. Inputs are plain numpy arrays (one value per trading day), the
work is vectorised, and a metric that is undefined for the inputs (no benchmark, zero dispersion, no trades, too few
days) is ``None`` — never NaN or inf — so ``Metrics.as_dict()`` always serialises to valid JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

__all__ = ["Metrics", "MetricsConfig", "MetricsInputError", "compute_metrics"]

FloatArray = NDArray[np.float64]

# A daily series whose max - min is at most this is treated as having no dispersion. Dividing equal fen amounts
# by slightly different equities leaves float noise of ~1e-17 in "constant" returns; without a floor a ratio over
# that noise comes out as an arbitrary 1e15 instead of undefined. No real return series has a range this small.
DISPERSION_FLOOR = 1e-12


class MetricsInputError(ValueError):
    """An input array or setting cannot be turned into metrics; ``field`` names the argument at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class MetricsConfig:
    risk_free_rate: float = 0.0  # annual, converted to a daily rate by geometric de-compounding
    periods_per_year: int = 252
    var_level: float = 0.95

    def __post_init__(self) -> None:
        if not math.isfinite(self.risk_free_rate) or self.risk_free_rate <= -1.0:
            raise MetricsInputError("risk_free_rate", f"must be finite and > -1, got {self.risk_free_rate}")
        if isinstance(self.periods_per_year, bool) or not isinstance(self.periods_per_year, int):
            raise MetricsInputError("periods_per_year", f"must be an int, got {self.periods_per_year!r}")
        if self.periods_per_year <= 0:
            raise MetricsInputError("periods_per_year", f"must be positive, got {self.periods_per_year}")
        if not (0.0 < self.var_level < 1.0):
            raise MetricsInputError("var_level", f"must be strictly between 0 and 1, got {self.var_level}")

    @property
    def daily_risk_free_rate(self) -> float:
        """The per-period rate that compounds to ``risk_free_rate`` over ``periods_per_year`` periods."""
        return float((1.0 + self.risk_free_rate) ** (1.0 / self.periods_per_year) - 1.0)


@dataclass(frozen=True)
class Metrics:
    """The metrics of one equity curve. Fractions are plain decimals (0.12 = 12%); losses are positive numbers."""

    days: int
    total_return: float
    annual_return: float | None
    benchmark_total_return: float | None
    benchmark_annual_return: float | None
    excess_total_return: float | None
    excess_annual_return: float | None
    volatility: float | None
    max_drawdown: float
    max_drawdown_duration: int
    var: float
    cvar: float
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    information_ratio: float | None
    tracking_error: float | None
    alpha: float | None
    beta: float | None
    trade_count: int | None
    win_rate: float | None
    profit_loss_ratio: float | None
    turnover: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        """The metrics in field order (stable across runs and versions that add no field)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _clean(value: float | np.floating | None) -> float | None:
    """A plain Python float, or None for a value that is not a finite number (overflow, 0/0)."""
    if value is None:
        return None
    result = float(value)
    if not math.isfinite(result):
        return None
    return result + 0.0  # turns -0.0 into 0.0 so JSON never shows "-0.0"


def _required(name: str, value: float) -> float:
    """A metric that is defined for every valid input; non-finite only if the inputs overflow float arithmetic."""
    result = _clean(value)
    if result is None:
        raise MetricsInputError("equity", f"values too extreme to compute {name} in float arithmetic")
    return result


def _as_1d(name: str, values: object, length: int | None) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricsInputError(name, f"must be numeric ({exc})") from exc
    if array.ndim != 1:
        raise MetricsInputError(name, f"must be one-dimensional, got shape {array.shape}")
    if length is not None and array.shape[0] != length:
        raise MetricsInputError(name, f"must have one value per day ({length}), got {array.shape[0]}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise MetricsInputError(name, f"must be finite; first bad value at index {int(np.argmax(bad))}")
    return array


def _has_dispersion(series: FloatArray) -> bool:
    return bool(series.max() - series.min() > DISPERSION_FLOOR)


def _cagr(growth: float, days: int, periods_per_year: int) -> float | None:
    """(growth)^(periods_per_year / days) - 1, in logs so that a huge short-run gain overflows to None, not inf."""
    if growth <= 0.0:
        return -1.0
    exponent = math.log(growth) * periods_per_year / days
    if exponent > 700.0:  # exp(709.8) is the largest float
        return None
    return math.expm1(exponent)


def _longest_run(flags: NDArray[np.bool_]) -> int:
    """Length of the longest run of consecutive True values."""
    if not flags.any():
        return 0
    padded = np.concatenate(([0], flags.astype(np.int8), [0]))
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return int((ends - starts).max())


def compute_metrics(
    equity: np.ndarray,
    initial_equity: float,
    benchmark_returns: np.ndarray | None = None,
    trade_pnl: np.ndarray | None = None,
    traded_value: np.ndarray | None = None,
    config: MetricsConfig = MetricsConfig(),  # frozen, so one shared default instance is safe
) -> Metrics:
    """Compute every metric of docs/metrics.md for one backtest.

    ``equity``: end-of-day equity in CNY, one per trading day (at least one day, all > 0).
    ``initial_equity``: the equity before the first day, so ``returns[0] = equity[0] / initial_equity - 1``.
    ``benchmark_returns``: the benchmark's daily simple returns on the same days (each > -1).
    ``trade_pnl``: realised P&L in CNY, after fees, of each closing sell (may be empty).
    ``traded_value``: per day, value bought + value sold in CNY (>= 0).
    Raises ``MetricsInputError`` naming the argument when an input is malformed.
    """
    eq = _as_1d("equity", equity, None)
    days = eq.shape[0]
    if days == 0:
        raise MetricsInputError("equity", "needs at least one trading day")
    if not math.isfinite(initial_equity) or initial_equity <= 0.0:
        raise MetricsInputError("initial_equity", f"must be finite and > 0, got {initial_equity}")
    nonpositive = eq <= 0.0
    if nonpositive.any():
        first = int(np.argmax(nonpositive))
        raise MetricsInputError("equity", f"must be > 0 on every day; equity[{first}] = {eq[first]}")
    bench = None if benchmark_returns is None else _as_1d("benchmark_returns", benchmark_returns, days)
    if bench is not None and (bench <= -1.0).any():
        first = int(np.argmax(bench <= -1.0))
        raise MetricsInputError("benchmark_returns", f"a daily return must be > -1; index {first} is {bench[first]}")
    pnl = None if trade_pnl is None else _as_1d("trade_pnl", trade_pnl, None)
    traded = None if traded_value is None else _as_1d("traded_value", traded_value, days)
    if traded is not None and (traded < 0.0).any():
        first = int(np.argmax(traded < 0.0))
        raise MetricsInputError("traded_value", f"must be >= 0; index {first} is {traded[first]}")

    ppy = config.periods_per_year
    rf_daily = config.daily_risk_free_rate
    sqrt_ppy = math.sqrt(ppy)

    # Start-of-day equity: what each day's return is earned on.
    prev = np.empty(days, dtype=np.float64)
    prev[0] = initial_equity
    prev[1:] = eq[:-1]
    returns = eq / prev - 1.0
    excess = returns - rf_daily

    total_return = float(eq[-1] / initial_equity - 1.0)
    annual_return = _cagr(float(eq[-1] / initial_equity), days, ppy)

    # Dispersion-based metrics need at least two days (sample standard deviation, ddof=1).
    volatility: float | None = None
    sharpe: float | None = None
    sortino: float | None = None
    if days >= 2:
        dispersed = _has_dispersion(returns)
        daily_std = float(returns.std(ddof=1)) if dispersed else 0.0
        volatility = daily_std * sqrt_ppy
        mean_excess = float(excess.mean())
        if dispersed:
            sharpe = mean_excess / daily_std * sqrt_ppy
        downside = np.minimum(excess, 0.0)
        downside_dev = math.sqrt(float(np.dot(downside, downside)) / days)
        if downside_dev > DISPERSION_FLOOR:
            sortino = mean_excess * ppy / (downside_dev * sqrt_ppy)

    # Drawdown against the running peak, the initial equity included as the first peak.
    peak = np.maximum.accumulate(prev)
    peak = np.maximum(peak, eq)
    drawdown = 1.0 - eq / peak
    max_drawdown = float(drawdown.max())
    max_drawdown_duration = _longest_run(eq < peak)
    calmar: float | None = None
    if annual_return is not None and max_drawdown > 0.0:
        calmar = annual_return / max_drawdown

    # Historical one-day VaR / CVaR as positive losses.
    tail = 1.0 - config.var_level
    var = -float(np.quantile(returns, tail))
    # The tail averaged for CVaR: the k worst days, k = floor((n - 1) * tail) + 1 (empyrical's choice). The epsilon
    # keeps a product that is an integer on paper (e.g. 20 * 0.05) from flooring to one less through float error.
    k = math.floor((days - 1) * tail + 1e-9) + 1
    cvar = -float(np.partition(returns, k - 1)[:k].mean())

    benchmark_total: float | None = None
    benchmark_annual: float | None = None
    excess_total: float | None = None
    excess_annual: float | None = None
    information_ratio: float | None = None
    tracking_error: float | None = None
    alpha: float | None = None
    beta: float | None = None
    if bench is not None:
        bench_growth = float(np.prod(1.0 + bench))
        benchmark_total = bench_growth - 1.0
        benchmark_annual = _cagr(bench_growth, days, ppy)
        excess_total = total_return - benchmark_total
        if annual_return is not None and benchmark_annual is not None:
            excess_annual = annual_return - benchmark_annual
        if days >= 2:
            active = returns - bench
            if _has_dispersion(active):
                active_std = float(active.std(ddof=1))
                tracking_error = active_std * sqrt_ppy
                information_ratio = float(active.mean()) / active_std * sqrt_ppy
            else:
                tracking_error = 0.0
            if _has_dispersion(bench):
                bench_excess = bench - rf_daily
                centred = bench_excess - bench_excess.mean()
                beta = float(np.dot(centred, excess) / np.dot(centred, centred))
                alpha = _cagr(1.0 + float((excess - beta * bench_excess).mean()), 1, ppy)

    trade_count: int | None = None
    win_rate: float | None = None
    profit_loss_ratio: float | None = None
    if pnl is not None:
        trade_count = int(pnl.shape[0])
        if trade_count > 0:
            wins = pnl[pnl > 0.0]
            losses = pnl[pnl < 0.0]
            win_rate = wins.shape[0] / trade_count
            if losses.shape[0] > 0:
                average_win = float(wins.mean()) if wins.shape[0] > 0 else 0.0
                profit_loss_ratio = average_win / -float(losses.mean())

    turnover: float | None = None
    if traded is not None:
        turnover = float((traded / (2.0 * prev)).mean()) * ppy

    return Metrics(
        days=days,
        total_return=_required("total_return", total_return),
        annual_return=_clean(annual_return),
        benchmark_total_return=_clean(benchmark_total),
        benchmark_annual_return=_clean(benchmark_annual),
        excess_total_return=_clean(excess_total),
        excess_annual_return=_clean(excess_annual),
        volatility=_clean(volatility),
        max_drawdown=_required("max_drawdown", max_drawdown),
        max_drawdown_duration=max_drawdown_duration,
        var=_required("var", var),
        cvar=_required("cvar", cvar),
        sharpe=_clean(sharpe),
        sortino=_clean(sortino),
        calmar=_clean(calmar),
        information_ratio=_clean(information_ratio),
        tracking_error=_clean(tracking_error),
        alpha=_clean(alpha),
        beta=_clean(beta),
        trade_count=trade_count,
        win_rate=_clean(win_rate),
        profit_loss_ratio=_clean(profit_loss_ratio),
        turnover=_clean(turnover),
    )
