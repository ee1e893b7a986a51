"""The backtest engine: `run_backtest(strategy, bars, config) -> BacktestResult` over daily bars in Tushare's layout,
with the A-share rules enforced, money exact in integer fen, and a deterministic, hashed result. How it works and
why: docs/engine.md."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.core.market.matching import REASONS, STATUS_NAMES
from shared.research.engine.config import BacktestConfig
from shared.research.engine.context import BacktestContext, StrategyError
from shared.research.engine.core import Engine, EngineError, outside_band
from shared.research.engine.data import BarsError, Panel, load_bars, panel_data_key, read_bars
from shared.research.engine.metrics import MetricsConfig, compute_metrics
from shared.research.engine.result import BacktestResult, yuan
from shared.research.strategy import Strategy

__all__ = [
    "REASONS",
    "STATUS_NAMES",
    "BacktestConfig",
    "BacktestContext",
    "BacktestResult",
    "BarsError",
    "EngineError",
    "Panel",
    "StrategyError",
    "benchmark_returns",
    "load_bars",
    "panel_data_key",
    "read_bars",
    "run_backtest",
    "yuan",
]


def _canonical_config(config: BacktestConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    data["st_codes"] = sorted(data["st_codes"])
    data["list_dates"] = dict(sorted(data["list_dates"].items()))
    return data


def benchmark_returns(benchmark: pd.DataFrame | pd.Series, dates: list[date]) -> npt.NDArray[np.float64]:
    """Daily simple returns of a benchmark on the run's trading days.

    `benchmark`: a DataFrame with trade_date and close (e.g. Tushare index_daily of 000300.SH; pre_close used for the
    first day when present) or a Series of closes indexed by date. The first day's return is against the last close
    before the run when the benchmark has one, else against that day's pre_close, else 0."""
    if isinstance(benchmark, pd.Series):
        frame = pd.DataFrame({"trade_date": benchmark.index, "close": benchmark.to_numpy()})
    elif isinstance(benchmark, pd.DataFrame):
        missing = [c for c in ("trade_date", "close") if c not in benchmark.columns]
        if missing:
            raise BarsError(f"benchmark is missing column(s) {', '.join(missing)}")
        frame = benchmark
    else:
        raise BarsError(f"benchmark must be a DataFrame or a Series, got {type(benchmark).__name__}")
    raw = frame["trade_date"]
    if len(raw) and not isinstance(raw.iloc[0], date):
        parsed = pd.to_datetime(raw.astype(str), format="%Y%m%d", errors="coerce")
    else:
        parsed = pd.to_datetime(raw, errors="coerce")
    if parsed.isna().any():
        raise BarsError("benchmark: trade_date must be 'YYYYMMDD' or a date")
    days = [d.date() for d in parsed]
    closes = frame["close"].to_numpy(dtype=np.float64)
    if len(set(days)) != len(days):
        raise BarsError("benchmark: duplicate trade_date")
    if not (closes > 0).all():
        raise BarsError("benchmark: close must be positive")
    by_day = dict(zip(days, closes.tolist(), strict=True))
    absent = [d for d in dates if d not in by_day]
    if absent:
        raise BarsError(f"benchmark: no close on {len(absent)} trading day(s), first {absent[0]}")
    series = np.array([by_day[d] for d in dates])
    before = [d for d in days if d < dates[0]]
    if before:
        first_base = by_day[max(before)]
    elif "pre_close" in frame.columns:
        first_base = float(frame["pre_close"].to_numpy(dtype=np.float64)[days.index(dates[0])])
    else:
        first_base = series[0]
    previous = np.concatenate(([first_base], series[:-1]))
    return series / previous - 1.0


def _sha256_inputs(
    panel: Panel, strategy: Strategy, config: BacktestConfig, bench: npt.NDArray[np.float64] | None
) -> str:
    digest = hashlib.sha256()
    digest.update(panel.input_sha256.encode())
    digest.update(strategy.name.encode() or type(strategy).__qualname__.encode())
    digest.update(json.dumps(strategy.params.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(json.dumps(_canonical_config(config), sort_keys=True).encode())
    if bench is not None:
        digest.update(b"benchmark")
        digest.update(bench.tobytes())
    return digest.hexdigest()


OUTSIDE_BAND_LISTED = 100  # bars listed in data_report.outside_limits (the count is always the full total)
OUTSIDE_BAND_WARNED = 20  # of which named one by one in the warnings


def _outside_band_report(panel: Panel, fill_prices: npt.NDArray[np.int64], config: BacktestConfig) -> dict[str, Any]:
    """The bars whose fill price lies outside the day's limit band (`core.outside_band`): the band the engine
    computed (or was given) contradicts the print, so the data is wrong somewhere. Orders on them filled at the
    printed price; the result lists the bars and warns, naming each."""
    days, syms = outside_band(panel, fill_prices)
    bars: list[dict[str, Any]] = []
    warnings: list[str] = []
    for k, (t, j) in enumerate(zip(days.tolist(), syms.tolist(), strict=True)):
        if k == OUTSIDE_BAND_LISTED:
            break
        code, day = panel.codes[j], panel.dates[t].isoformat()
        price, up, down = int(fill_prices[t, j]), int(panel.up_limit[t, j]), int(panel.down_limit[t, j])
        bars.append(
            {
                "ts_code": code,
                "trade_date": day,
                "fill_price": yuan(price),
                "up_limit": yuan(up),
                "down_limit": yuan(down),
                "pre_close": yuan(int(panel.pre_close[t, j])),
            }
        )
        if k < OUTSIDE_BAND_WARNED:
            side = f"above the limit-up {yuan(up)}" if price > up else f"below the limit-down {yuan(down)}"
            warnings.append(
                f"{code} {day}: the {config.fill_price} {yuan(price)} is {side} (band {yuan(down)}-{yuan(up)} from "
                f"pre_close {yuan(int(panel.pre_close[t, j]))}): an exchange could not have printed it, so the band "
                "or the bar is wrong (check is_st / st_codes, list_dates, pre_close, up_limit / down_limit); orders "
                "on this bar filled at the printed price, without the limit rules"
            )
    if len(days) > OUTSIDE_BAND_WARNED:
        warnings.append(
            f"... and {len(days) - OUTSIDE_BAND_WARNED} more bar(s) with the fill price outside the limit band "
            "(data_report.outside_limits)"
        )
    return {"outside_limits": {"count": len(days), "bars": bars}, "warnings": warnings}


def run_backtest(
    strategy: Strategy,
    bars: pd.DataFrame | Panel,
    config: BacktestConfig | None = None,
    *,
    benchmark: pd.DataFrame | pd.Series | None = None,
    progress: Callable[[int, int], None] | None = None,
    code_version: Mapping[str, str | None] | None = None,
) -> BacktestResult:
    """Run `strategy` over `bars` (Tushare daily layout: ts_code, trade_date 'YYYYMMDD' or date, open, high, low,
    close, pre_close, vol in lots, amount in thousand CNY; optional adj_factor, up_limit, down_limit, is_st).

    Raises BarsError for bad bars (naming the column/rows), StrategyError when the strategy misuses the context,
    pydantic.ValidationError for a bad config; an exception from the strategy itself propagates unchanged.

    `bars` may also be a `Panel` from `load_bars(bars, config)`, loaded once and reused by runs whose config has the
    same data fields (start, end, calendar, ST codes, list dates): a parameter search loads the market once.
    `progress(days_done, days)` is called every 50 days and at the end; raising from it stops the run.
    `code_version` is recorded in the result as given (the caller's package version and commit, e.g.
    `shared.platform.provenance.code_version()`); the engine does not look it up itself."""
    config = config or BacktestConfig()
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be a Strategy instance, got {type(strategy).__name__}")
    if isinstance(bars, Panel):
        panel = bars
        if panel.data_key != panel_data_key(config):
            raise ValueError(
                "the panel was loaded with other start/end/calendar/st_codes/list_dates than this config; "
                "load it again with this config"
            )
    else:
        panel = load_bars(bars, config)
    bench = benchmark_returns(benchmark, panel.dates) if benchmark is not None else None
    engine = Engine(strategy, panel, config)
    engine.run(progress)

    orders = engine.orders.arrays(
        {"id": np.int64, "sym": np.int64, "kind": np.int64, "amount": np.int64, "created": np.int64}
    )
    settled = engine.settled.arrays({k: np.int64 for k in ("id", "status", "filled", "reason", "day")})
    count = len(orders["id"])
    for name, fill in (("status", 0), ("filled", 0), ("reason", 0), ("day", -1)):
        column = np.full(count, fill, dtype=np.int64)
        column[settled["id"]] = settled[name]
        orders["settled" if name == "day" else name] = column
    trades = engine.trades.arrays({k: np.int64 for k in engine.trades.columns})

    equity_fen = engine.cash_hist + engine.mv_hist
    sells = trades["side"] < 0
    metrics = compute_metrics(
        equity_fen / 100.0,
        engine.initial_cash_fen / 100.0,
        benchmark_returns=bench,
        trade_pnl=trades["pnl"][sells] / 100.0,
        traded_value=engine.traded_hist / 100.0,
        config=MetricsConfig(risk_free_rate=config.risk_free_rate, var_level=config.var_level),
    )
    report = {
        "rows": panel.rows,
        "symbols": len(panel.codes),
        "trading_days": len(panel.dates),
        "input_sorted": panel.input_sorted,
        "suspensions": panel.suspensions,
        "adj_factor": panel.adj_factor is not None,
        "extra_columns": sorted(panel.extra),
        "ignored_columns": panel.ignored_columns,
        "warnings": [],
    }
    if config.price_limits:
        report.update(_outside_band_report(panel, engine.fill_prices, config))
    return BacktestResult(
        strategy=strategy.name or type(strategy).__qualname__,
        params=strategy.params.model_dump(mode="json"),
        config=_canonical_config(config),
        input_sha256=_sha256_inputs(panel, strategy, config, bench),
        code_version=dict(code_version or {}),
        dates=[d.isoformat() for d in panel.dates],
        codes=panel.codes,
        initial_cash_fen=engine.initial_cash_fen,
        cash_fen=engine.cash_hist,
        market_value_fen=engine.mv_hist,
        positions=engine.pos_hist,
        close_fen=panel.close,
        orders=orders,
        trades=trades,
        corporate_actions=engine.actions,
        metrics=metrics.as_dict(),
        data_report=report,
    )
