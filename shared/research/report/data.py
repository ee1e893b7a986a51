"""The data of a backtest report, computed from what a stored run has (the daily frame, the trades frame, the metrics,
the summary and the manifest): equity against the benchmark, the underwater curve, monthly and yearly returns,
rolling Sharpe, exposure, the trade list, the labelled metrics table and the run manifest.

Pure and I/O-free: the backtest service, the CLI and notebooks all call `build_report` (or `report_from_result` on an
engine result) and get a `ReportData`, a pydantic model whose `model_dump(mode="json")` is what the web UI reads and
what `shared.research.report.html.render_html` draws. Definitions follow docs/metrics.md; docs/reports.md describes
each piece.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from shared.research.engine.metrics import DISPERSION_FLOOR, MetricsConfig, MetricsInputError

if TYPE_CHECKING:
    from shared.research.engine.portfolio import PortfolioResult
    from shared.research.engine.result import BacktestResult

__all__ = [
    "REPORT_FORMAT",
    "TRADE_COLUMNS",
    "Manifest",
    "MetricRow",
    "MonthlyReturns",
    "ReportData",
    "ReportInputError",
    "SideBySide",
    "SideBySideRow",
    "SummaryRow",
    "TradePage",
    "build_report",
    "drawdown_series",
    "monthly_returns",
    "paginate_trades",
    "report_from_portfolio",
    "report_from_result",
    "rolling_sharpe",
]

REPORT_FORMAT = 1
PERIODS_PER_YEAR = 252
FloatArray = NDArray[np.float64]
Frameish: TypeAlias = pd.DataFrame | Mapping[str, Sequence[Any]]

# The columns of BacktestResult.trades_frame(), in its order; a trades frame may carry more (kept, after these).
TRADE_COLUMNS = (
    "trade_date",
    "ts_code",
    "side",
    "qty",
    "price",
    "amount",
    "commission",
    "stamp_duty",
    "transfer_fee",
    "fees",
    "realised_pnl",
    "order_id",
)


class ReportInputError(ValueError):
    """An input cannot be turned into a report; ``field`` names it (``daily.equity``, ``manifest.input_sha256``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --- the model -------------------------------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MonthlyReturns(_Model):
    """Compounded returns by calendar month: ``values[i][m - 1]`` is year ``years[i]``, month ``m`` (None: no trading
    day of that month is in the run). ``year_totals[i]`` compounds the year's days that are in the run."""

    years: list[int]
    values: list[list[float | None]]
    year_totals: list[float]


class MetricRow(_Model):
    key: str
    label: str
    kind: Literal["percent", "ratio", "days", "count", "times", "number"]
    value: float | int | None
    display: str


class SummaryRow(_Model):
    key: str
    label: str
    display: str


class Manifest(_Model):
    """What identifies a run: the same manifest, the same result (docs/engine.md, "determinism and provenance")."""

    strategy: str
    input_sha256: str
    params: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    code_version: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)  # any other manifest key (job id, data version, ...)


class TradePage(_Model):
    total: int
    offset: int
    limit: int
    columns: dict[str, list[Any]]


class SideBySideRow(_Model):
    """One sleeve of a run with several strategies (or the combined account, the last row)."""

    label: str
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    weight: float  # its share of the initial cash (1.0 for the combined account)
    initial_equity: float  # CNY
    final_equity: float  # CNY
    equity: list[float]  # equity / initial equity, aligned on ReportData.dates
    fills: int | None  # trades executed (buys and sells)
    metrics: list[MetricRow]  # the SIDE_BY_SIDE_METRICS, in that order


class SideBySide(_Model):
    """The sleeves of a run with several strategies next to each other and to the combined account."""

    sleeves: list[SideBySideRow]
    combined: SideBySideRow


class ReportData(_Model):
    """Everything a report page shows. Series are aligned on ``dates`` (ISO trading days); fractions are decimals
    (0.12 = 12%); a value that is undefined is None, never NaN, so ``model_dump_json()`` is valid JSON."""

    format: int = REPORT_FORMAT
    title: str
    dates: list[str]
    initial_equity: float
    equity: list[float]  # equity / initial equity: starts from 1.0 before the first day, ends at 1 + total_return
    benchmark: list[float] | None  # benchmark close / its close on the first day
    drawdown: list[float]  # underwater: equity / running peak - 1, <= 0; min() is -max_drawdown
    daily_returns: list[float]
    exposure: list[float] | None  # market value / equity
    rolling_window: int
    rolling_sharpe: list[float | None]  # None until the window is complete, and where returns have no dispersion
    risk_free_rate: float
    monthly_returns: MonthlyReturns
    metrics: list[MetricRow]
    summary: list[SummaryRow]
    manifest: Manifest
    trade_count: int
    trades: dict[str, list[Any]]  # every trade, column-wise (TRADE_COLUMNS first); see docs/reports.md on size
    side_by_side: SideBySide | None = None  # a run with several strategies only


# --- labels and formats of the metrics ------------------------------------------------------------------------------
_METRIC_LABELS: dict[str, tuple[str, str]] = {
    "days": ("Trading days", "days"),
    "total_return": ("Total return", "percent"),
    "annual_return": ("Annual return (CAGR)", "percent"),
    "benchmark_total_return": ("Benchmark total return", "percent"),
    "benchmark_annual_return": ("Benchmark annual return", "percent"),
    "excess_total_return": ("Excess total return", "percent"),
    "excess_annual_return": ("Excess annual return", "percent"),
    "volatility": ("Volatility (annualised)", "percent"),
    "max_drawdown": ("Max drawdown", "percent"),
    "max_drawdown_duration": ("Longest drawdown", "days"),
    "var": ("Daily VaR", "percent"),
    "cvar": ("Daily CVaR (expected shortfall)", "percent"),
    "sharpe": ("Sharpe ratio", "ratio"),
    "sortino": ("Sortino ratio", "ratio"),
    "calmar": ("Calmar ratio", "ratio"),
    "information_ratio": ("Information ratio", "ratio"),
    "tracking_error": ("Tracking error", "percent"),
    "alpha": ("Alpha (annualised)", "percent"),
    "beta": ("Beta", "ratio"),
    "trade_count": ("Closing trades", "count"),
    "win_rate": ("Win rate", "percent"),
    "profit_loss_ratio": ("Profit/loss ratio", "ratio"),
    "turnover": ("Turnover (annual, one-way)", "times"),
}

_SUMMARY_LABELS: dict[str, str] = {
    "strategy": "Strategy",
    "first_day": "First day",
    "last_day": "Last day",
    "trading_days": "Trading days",
    "symbols": "Symbols",
    "initial_cash": "Initial cash (CNY)",
    "final_equity": "Final equity (CNY)",
    "fees_paid": "Fees paid (CNY)",
    "trades": "Fills",
    "orders": "Orders",
}


def format_value(kind: str, value: float | int | None) -> str:
    """How a metric reads in a table: percent 12.35%, ratio 1.23, days 1,234 days, count 1,234, times 3.10×/yr."""
    if value is None:
        return "n/a"
    if kind == "percent":
        return f"{value * 100:.2f}%"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "days":
        return f"{int(value):,} days"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "times":
        return f"{value:.2f}×/yr"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def format_metric(key: str, value: float | int | None) -> str:
    """One metric as the report's tables show it (its kind from docs/metrics.md: percent, ratio, days, ...)."""
    return format_value(_METRIC_LABELS.get(key, ("", "number"))[1], value)


def metric_rows(metrics: Mapping[str, Any]) -> list[MetricRow]:
    """A metrics dict (shared.research.engine.metrics keys) as the report's table rows: labelled, formatted, in
    docs/metrics.md order."""
    rows = []
    # Known metrics in docs/metrics.md order, then any the engine adds later, labelled by their key.
    keys = [k for k in _METRIC_LABELS if k in metrics] + [k for k in metrics if k not in _METRIC_LABELS]
    for key in keys:
        raw = metrics[key]
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int | float)):
            raise ReportInputError(f"metrics.{key}", f"must be a number or None, got {raw!r}")
        value: float | int | None = None if raw is None or (isinstance(raw, float) and not math.isfinite(raw)) else raw
        label, kind = _METRIC_LABELS.get(key, (key.replace("_", " ").capitalize(), "number"))
        rows.append(MetricRow(key=key, label=label, kind=kind, value=value, display=format_value(kind, value)))  # type: ignore[arg-type]
    return rows


def _summary_rows(summary: Mapping[str, Any]) -> list[SummaryRow]:
    keys = [k for k in _SUMMARY_LABELS if k in summary] + [
        k
        for k in summary
        if k not in _SUMMARY_LABELS and k != "input_sha256"  # the hash is in the manifest
    ]
    rows = []
    for key in keys:
        value = summary[key]
        display = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        rows.append(
            SummaryRow(key=key, label=_SUMMARY_LABELS.get(key, key.replace("_", " ").capitalize()), display=display)
        )
    return rows


# The metrics a side-by-side table compares (docs/metrics.md keys).
SIDE_BY_SIDE_METRICS = ("total_return", "annual_return", "volatility", "max_drawdown", "sharpe", "trade_count")


# --- the series, each a small pure function (tested by hand) --------------------------------------------------------
def daily_returns(equity: FloatArray, initial_equity: float) -> FloatArray:
    """r_t = E_t / E_{t-1} - 1 with E_{-1} the initial equity (docs/metrics.md)."""
    prev = np.concatenate(([initial_equity], equity[:-1]))
    return np.asarray(equity / prev - 1.0, dtype=np.float64)


def drawdown_series(equity: FloatArray, initial_equity: float) -> FloatArray:
    """Underwater curve E_t / M_t - 1 with the running peak M_t = max(E_{-1}, E_0, ..., E_t): the starting capital
    is the first peak, as for max_drawdown, so -min() of this series is the metrics' max_drawdown."""
    peak = np.maximum.accumulate(np.concatenate(([initial_equity], equity)))[1:]
    return np.asarray(equity / peak - 1.0, dtype=np.float64)


def monthly_returns(dates: Sequence[str], returns: FloatArray) -> MonthlyReturns:
    """Daily returns compounded within each calendar month (prod(1 + r) - 1) and within each year."""
    months = np.array([int(d[:4]) * 12 + int(d[5:7]) - 1 for d in dates], dtype=np.int64)
    growth = 1.0 + returns
    years = sorted({int(d[:4]) for d in dates})
    row_of = {y: i for i, y in enumerate(years)}
    values: list[list[float | None]] = [[None] * 12 for _ in years]
    totals = [1.0] * len(years)
    for key in np.unique(months).tolist():
        g = float(np.prod(growth[months == key]))
        year, month = divmod(key, 12)
        values[row_of[year]][month] = g - 1.0
        totals[row_of[year]] *= g
    return MonthlyReturns(years=years, values=values, year_totals=[t - 1.0 for t in totals])


def rolling_sharpe(
    returns: FloatArray, window: int, risk_free_rate: float = 0.0, periods_per_year: int = PERIODS_PER_YEAR
) -> list[float | None]:
    """Sharpe over the `window` days ending on each day, as docs/metrics.md defines it: mean(r - rf_d) / std(r)
    (sample, ddof=1) x sqrt(P). None before the window is complete and where the window's returns have no
    dispersion (the metrics' floor), so a flat stretch reads as undefined instead of a huge number."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ReportInputError("rolling_window", f"must be an int >= 2, got {window!r}")
    try:
        rf_daily = MetricsConfig(risk_free_rate=risk_free_rate, periods_per_year=periods_per_year).daily_risk_free_rate
    except MetricsInputError as exc:
        raise ReportInputError(exc.field, exc.reason) from exc
    out: list[float | None] = [None] * len(returns)
    if len(returns) < window:
        return out
    windows = sliding_window_view(returns, window)
    std = windows.std(axis=1, ddof=1)
    spread = windows.max(axis=1) - windows.min(axis=1)
    mean_excess = windows.mean(axis=1) - rf_daily
    scale = math.sqrt(periods_per_year)
    for i, (m, s, dispersed) in enumerate(
        zip(mean_excess.tolist(), std.tolist(), (spread > DISPERSION_FLOOR).tolist(), strict=True)
    ):
        if dispersed:
            out[window - 1 + i] = m / s * scale
    return out


# --- input normalisation ---------------------------------------------------------------------------------------------
_YYYYMMDD = re.compile(r"^\d{8}$")


def _iso_day(value: Any, field: str, row: int) -> str:
    if isinstance(value, datetime | pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    try:
        if _YYYYMMDD.match(text):
            return datetime.strptime(text, "%Y%m%d").date().isoformat()
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise ReportInputError(field, f"row {row}: {value!r} is not a date (YYYY-MM-DD or YYYYMMDD)") from None


def _frame(value: Frameish | None, name: str) -> pd.DataFrame | None:
    if value is None:
        return None
    if isinstance(value, pd.DataFrame):
        return value.reset_index(drop=True)
    if isinstance(value, Mapping):
        try:
            return pd.DataFrame(dict(value))
        except ValueError as exc:
            raise ReportInputError(name, f"columns of unequal length ({exc})") from exc
    raise ReportInputError(name, f"must be a DataFrame or a mapping of columns, got {type(value).__name__}")


def _numbers(frame: pd.DataFrame, column: str, field: str) -> FloatArray:
    """A column of CNY strings ('1234.56') or numbers as floats; a blank or non-number names its row."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argmax(bad))
        raise ReportInputError(field, f"row {first}: {raw.iloc[first]!r} is not a finite number")
    return np.asarray(values, dtype=np.float64)


def _plain(value: Any) -> Any:
    """A JSON-able Python value: numpy scalars unwrapped, NaN/NaT/None -> None, dates -> ISO text."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NaT:
        return None
    if isinstance(value, datetime | pd.Timestamp):
        return value.date().isoformat() if value == value else None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _trade_columns(trades: pd.DataFrame | None) -> tuple[int, dict[str, list[Any]]]:
    if trades is None:
        return 0, {c: [] for c in TRADE_COLUMNS}
    missing = [c for c in ("trade_date", "ts_code", "side", "qty", "price") if c not in trades.columns]
    if missing:
        raise ReportInputError("trades", f"missing column(s) {', '.join(missing)}")
    order = [c for c in TRADE_COLUMNS if c in trades.columns] + [c for c in trades.columns if c not in TRADE_COLUMNS]
    columns: dict[str, list[Any]] = {}
    for name in order:
        if name == "trade_date":
            columns[name] = [_iso_day(v, "trades.trade_date", i) for i, v in enumerate(trades[name].tolist())]
        else:
            columns[str(name)] = [_plain(v) for v in trades[name].tolist()]
    return len(trades), columns


def _manifest(manifest: Mapping[str, Any], summary: Mapping[str, Any]) -> Manifest:
    if not isinstance(manifest, Mapping):
        raise ReportInputError("manifest", f"must be a mapping, got {type(manifest).__name__}")
    sha = manifest.get("input_sha256") or summary.get("input_sha256")
    if not isinstance(sha, str) or not sha:
        raise ReportInputError("manifest.input_sha256", "is required: it identifies the run's inputs")
    strategy = manifest.get("strategy") or summary.get("strategy") or ""
    for key in ("params", "config", "code_version"):
        if manifest.get(key) is not None and not isinstance(manifest[key], Mapping):
            raise ReportInputError(f"manifest.{key}", f"must be a mapping, got {type(manifest[key]).__name__}")
    known = {"strategy", "input_sha256", "params", "config", "code_version"}
    return Manifest(
        strategy=str(strategy),
        input_sha256=sha,
        params=dict(manifest.get("params") or {}),
        config=dict(manifest.get("config") or {}),
        code_version=dict(manifest.get("code_version") or {}),
        extra={str(k): v for k, v in manifest.items() if k not in known},
    )


def _side_by_side_row(
    field: str,
    *,
    label: Any,
    strategy: Any,
    params: Any,
    weight: Any,
    initial: Any,
    equity: FloatArray,
    fills: Any,
    metrics: Any,
) -> SideBySideRow:
    if not isinstance(label, str) or not label.strip():
        raise ReportInputError(f"{field}.label", f"must be a non-blank text, got {label!r}")
    if params is not None and not isinstance(params, Mapping):
        raise ReportInputError(f"{field}.params", f"must be a mapping, got {type(params).__name__}")
    if not isinstance(metrics, Mapping):
        raise ReportInputError(f"{field}.metrics", f"must be a mapping, got {type(metrics).__name__}")
    numbers: dict[str, float] = {}
    for name, value in (("weight", weight), ("initial_cash", initial)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ReportInputError(f"{field}.{name}", f"{value!r} is not a number") from None
        if not math.isfinite(number) or number <= 0:
            raise ReportInputError(f"{field}.{name}", f"must be > 0, got {value!r}")
        numbers[name] = number
    if fills is not None and (isinstance(fills, bool) or not isinstance(fills, int)):
        raise ReportInputError(f"{field}.trades", f"must be an int, got {fills!r}")
    rows = metric_rows({k: metrics.get(k) for k in SIDE_BY_SIDE_METRICS})
    return SideBySideRow(
        label=label,
        strategy=str(strategy or ""),
        params=dict(params or {}),
        weight=numbers["weight"],
        initial_equity=numbers["initial_cash"],
        final_equity=float(equity[-1]),
        equity=(equity / numbers["initial_cash"]).tolist(),
        fills=fills,
        metrics=rows,
    )


def _side_by_side(
    sleeves: Sequence[Mapping[str, Any]],
    days: int,
    *,
    equity: FloatArray,
    initial_equity: float,
    metrics: Mapping[str, Any],
    summary: Mapping[str, Any],
) -> SideBySide:
    if isinstance(sleeves, str | bytes) or not isinstance(sleeves, Sequence) or not sleeves:
        raise ReportInputError("sleeves", "must be a non-empty list of mappings")
    rows = []
    for i, sleeve in enumerate(sleeves):
        field = f"sleeves[{i}]"
        if not isinstance(sleeve, Mapping):
            raise ReportInputError(field, f"must be a mapping, got {type(sleeve).__name__}")
        if "equity" not in sleeve:
            raise ReportInputError(f"{field}.equity", "is required: the sleeve's equity on each day")
        values = _numbers(pd.DataFrame({"equity": list(sleeve["equity"])}), "equity", f"{field}.equity")
        if len(values) != days:
            raise ReportInputError(f"{field}.equity", f"needs one value per trading day ({days}), got {len(values)}")
        rows.append(
            _side_by_side_row(
                field,
                label=sleeve.get("label"),
                strategy=sleeve.get("strategy"),
                params=sleeve.get("params"),
                weight=sleeve.get("weight"),
                initial=sleeve.get("initial_cash"),
                equity=values,
                fills=sleeve.get("trades"),
                metrics=sleeve.get("metrics") or {},
            )
        )
    labels = [r.label for r in rows]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            other = labels.index(label)
            raise ReportInputError(f"sleeves[{i}].label", f"{label!r} is the label of sleeves[{other}] too")
    fills = summary.get("trades")
    combined = _side_by_side_row(
        "summary",
        label="Combined",
        strategy=summary.get("strategy") or "portfolio",
        params={},
        weight=1.0,
        initial=initial_equity,
        equity=equity,
        fills=fills if isinstance(fills, int) and not isinstance(fills, bool) else None,
        metrics=metrics,
    )
    return SideBySide(sleeves=rows, combined=combined)


# --- the entry points -------------------------------------------------------------------------------------------------
def build_report(
    daily: Frameish,
    trades: Frameish | None,
    *,
    metrics: Mapping[str, Any],
    summary: Mapping[str, Any],
    manifest: Mapping[str, Any],
    title: str | None = None,
    risk_free_rate: float = 0.0,
    rolling_window: int = 126,
    sleeves: Sequence[Mapping[str, Any]] | None = None,
) -> ReportData:
    """The report of one stored run.

    ``daily``: trade_date, equity (CNY strings or floats), optionally cash, market_value, exposure (else computed as
    market_value / equity) and benchmark (the index close on the same days). ``trades``: as
    ``BacktestResult.trades_frame()`` (or None). ``summary["initial_cash"]`` is the equity before the first day; without
    it the first day's equity is used (so that day's return is 0). ``risk_free_rate`` is annual, as in the metrics.
    ``sleeves`` (a run with several strategies): per sleeve ``label``, ``strategy``, ``params``, ``weight``,
    ``initial_cash`` (CNY), ``equity`` (CNY, one per day of ``daily``), ``metrics`` and ``trades`` (fills); ``daily``
    and ``metrics`` are then the combined account's. Gives the report its ``side_by_side`` part.
    Raises ``ReportInputError`` naming the field at fault."""
    frame = _frame(daily, "daily")
    assert frame is not None
    for column in ("trade_date", "equity"):
        if column not in frame.columns:
            raise ReportInputError("daily", f"missing column {column!r}")
    if frame.empty:
        raise ReportInputError("daily", "needs at least one trading day")
    dates = [_iso_day(v, "daily.trade_date", i) for i, v in enumerate(frame["trade_date"].tolist())]
    for i in range(1, len(dates)):
        if dates[i] <= dates[i - 1]:
            raise ReportInputError("daily.trade_date", f"row {i}: {dates[i]} does not come after {dates[i - 1]}")
    equity = _numbers(frame, "equity", "daily.equity")
    if (equity <= 0).any():
        first = int(np.argmax(equity <= 0))
        raise ReportInputError("daily.equity", f"row {first}: must be > 0, got {equity[first]}")

    initial = summary.get("initial_cash") if isinstance(summary, Mapping) else None
    if initial is None:
        initial_equity = float(equity[0])
    else:
        try:
            initial_equity = float(initial)
        except (TypeError, ValueError):
            raise ReportInputError("summary.initial_cash", f"{initial!r} is not a number") from None
        if not math.isfinite(initial_equity) or initial_equity <= 0:
            raise ReportInputError("summary.initial_cash", f"must be > 0, got {initial!r}")

    benchmark: list[float] | None = None
    if "benchmark" in frame.columns:
        closes = _numbers(frame, "benchmark", "daily.benchmark")
        if (closes <= 0).any():
            first = int(np.argmax(closes <= 0))
            raise ReportInputError("daily.benchmark", f"row {first}: a close must be > 0, got {closes[first]}")
        benchmark = (closes / closes[0]).tolist()

    exposure: list[float] | None = None
    if "exposure" in frame.columns:
        exposure = _numbers(frame, "exposure", "daily.exposure").tolist()
    elif "market_value" in frame.columns:
        exposure = (_numbers(frame, "market_value", "daily.market_value") / equity).tolist()

    returns = daily_returns(equity, initial_equity)
    count, trade_columns = _trade_columns(_frame(trades, "trades"))
    manifest_model = _manifest(manifest, summary)
    side_by_side = None
    if sleeves is not None:
        side_by_side = _side_by_side(
            sleeves, len(dates), equity=equity, initial_equity=initial_equity, metrics=metrics, summary=summary
        )
    if title is None:
        title = f"{manifest_model.strategy or 'Backtest'} {dates[0]} to {dates[-1]}"
    return ReportData(
        title=title,
        dates=dates,
        initial_equity=initial_equity,
        equity=(equity / initial_equity).tolist(),
        benchmark=benchmark,
        drawdown=drawdown_series(equity, initial_equity).tolist(),
        daily_returns=returns.tolist(),
        exposure=exposure,
        rolling_window=rolling_window,
        rolling_sharpe=rolling_sharpe(returns, rolling_window, risk_free_rate),
        risk_free_rate=risk_free_rate,
        monthly_returns=monthly_returns(dates, returns),
        metrics=metric_rows(metrics),
        summary=_summary_rows(summary),
        manifest=manifest_model,
        trade_count=count,
        trades=trade_columns,
        side_by_side=side_by_side,
    )


def _aligned_closes(benchmark_close: Any, dates: Sequence[str]) -> list[float]:
    """Benchmark closes on the run's days from a Series indexed by date, a frame with trade_date and close, or a
    sequence already aligned (one close per day)."""
    if isinstance(benchmark_close, pd.DataFrame):
        missing = [c for c in ("trade_date", "close") if c not in benchmark_close.columns]
        if missing:
            raise ReportInputError("benchmark_close", f"missing column(s) {', '.join(missing)}")
        keys = benchmark_close["trade_date"].tolist()
        values = benchmark_close["close"].tolist()
    elif isinstance(benchmark_close, pd.Series):
        keys = benchmark_close.index.tolist()
        values = benchmark_close.tolist()
    else:
        values = list(benchmark_close)
        if len(values) != len(dates):
            raise ReportInputError(
                "benchmark_close", f"needs one close per trading day ({len(dates)}), got {len(values)}"
            )
        return values
    by_day = {
        _iso_day(k, "benchmark_close.trade_date", i): v for i, (k, v) in enumerate(zip(keys, values, strict=True))
    }
    absent = [d for d in dates if d not in by_day]
    if absent:
        raise ReportInputError("benchmark_close", f"no close on {len(absent)} trading day(s), first {absent[0]}")
    return [by_day[d] for d in dates]


def report_from_result(
    result: BacktestResult,
    benchmark_close: pd.Series | pd.DataFrame | Sequence[float] | None = None,
    *,
    title: str | None = None,
    rolling_window: int = 126,
) -> ReportData:
    """The report of an engine result in memory; ``benchmark_close`` as the run's benchmark (the engine keeps only
    its returns in the hash): a Series of closes by date, a frame with trade_date and close, or one close per day."""
    daily = result.equity_frame()
    if benchmark_close is not None:
        daily["benchmark"] = _aligned_closes(benchmark_close, result.dates)
    manifest = {
        "strategy": result.strategy,
        "input_sha256": result.input_sha256,
        "params": result.params,
        "config": result.config,
        "code_version": result.code_version,
    }
    return build_report(
        daily,
        result.trades_frame(),
        metrics=result.metrics,
        summary=result.summary(),
        manifest=manifest,
        title=title,
        risk_free_rate=float(result.config.get("risk_free_rate", 0.0)),
        rolling_window=rolling_window,
    )


def report_from_portfolio(
    result: PortfolioResult,
    benchmark_close: pd.Series | pd.DataFrame | Sequence[float] | None = None,
    *,
    title: str | None = None,
    rolling_window: int = 126,
) -> ReportData:
    """The report of a `shared.research.engine.portfolio.run_portfolio` result in memory: the combined account's
    report with
    the side-by-side part (each sleeve's equity and key metrics); trades carry a ``sleeve`` column."""
    daily = result.equity_frame()[["trade_date", "cash", "market_value", "equity"]]
    if benchmark_close is not None:
        daily["benchmark"] = _aligned_closes(benchmark_close, result.dates)
    summary = result.summary()
    sleeves = [
        {
            **{k: row[k] for k in ("label", "strategy", "params", "weight", "initial_cash", "metrics")},
            "equity": (run.result.equity_fen / 100.0).tolist(),
            "trades": len(run.result.trades["qty"]),
        }
        for row, run in zip(summary["sleeves"], result.sleeves, strict=True)
    ]
    manifest = {
        "strategy": "portfolio",
        "input_sha256": result.input_sha256,
        "params": {"sleeves": [{k: s[k] for k in ("label", "strategy", "params", "weight")} for s in sleeves]},
        "config": result.config,
        "code_version": result.code_version,
    }
    return build_report(
        daily,
        result.trades_frame(),
        metrics=result.metrics,
        summary={k: v for k, v in summary.items() if k != "sleeves"},
        manifest=manifest,
        title=title,
        risk_free_rate=float(result.config.get("risk_free_rate", 0.0)),
        rolling_window=rolling_window,
        sleeves=sleeves,
    )


def paginate_trades(trades: ReportData | Frameish, offset: int = 0, limit: int = 100) -> TradePage:
    """One page of a run's trades for the web UI (the report JSON carries them all; a route serving the charts can
    dump the report without ``trades`` and serve the list page by page with this)."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ReportInputError("offset", f"must be an int >= 0, got {offset!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise ReportInputError("limit", f"must be an int from 1 to 10000, got {limit!r}")
    if isinstance(trades, ReportData):
        total, columns = trades.trade_count, trades.trades
    else:
        total, columns = _trade_columns(_frame(trades, "trades"))
    page = {name: values[offset : offset + limit] for name, values in columns.items()}
    return TradePage(total=total, offset=offset, limit=limit, columns=page)
