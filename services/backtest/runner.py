"""The bridge between the backtest service and the research engine (`shared.engine`): a job's settings as the engine's
config, its run, and the engine's result as what the service stores: a summary (metrics and manifest) and the
frames a report needs (daily series, trades, unfilled orders) as Parquet."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import pandas as pd

from services.backtest.store import frame_to_parquet
from shared.engine import BacktestConfig, BacktestResult, run_backtest
from shared.strategy import Strategy

RATIO_QUANTUM = Decimal("0.00000001")


def job_config(
    *, initial_cash: Decimal, start: date, end: date, costs: Mapping[str, Any], calendar: Sequence[date]
) -> BacktestConfig:
    return BacktestConfig(
        initial_cash=initial_cash, start=start, end=end, calendar=tuple(calendar) or None, **dict(costs)
    )


def clip_calendar(calendar: Sequence[date], frame: pd.DataFrame, start: date, end: date) -> list[date]:
    """The calendar clipped to the span the bars cover within [start, end], so a day on which every symbol was
    suspended still counts as a day, and a day before the first bar does not."""
    if frame.empty or not calendar:
        return []
    days = pd.to_datetime(frame["trade_date"]).dt.date
    days = days[(days >= start) & (days <= end)]
    if days.empty:
        return []
    first, last = days.min(), days.max()
    return [d for d in calendar if first <= d <= last]


def run_job(
    strategy: Strategy,
    frame: pd.DataFrame,
    config: BacktestConfig,
    *,
    benchmark: pd.DataFrame | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    return run_backtest(strategy, frame, config, benchmark=benchmark, progress=progress)


def total_return(result: BacktestResult) -> Decimal:
    """Exact: a fraction of two fen amounts, rounded half-even to 8 places."""
    initial = Decimal(result.initial_cash_fen)
    return ((Decimal(int(result.equity_fen[-1])) - initial) / initial).quantize(RATIO_QUANTUM, ROUND_HALF_EVEN)


def summary_json(result: BacktestResult, *, benchmark: str | None) -> dict[str, Any]:
    """What the service stores and serves as a backtest's summary: the engine's summary, its metrics, and the run
    manifest (inputs hash, parameters, config, code version). Trades and orders are artifacts (see `artifacts`)."""
    orders = result.orders_frame()
    return {
        **result.summary(),
        "total_return": str(total_return(result)),
        "unfilled_orders": int((orders["status"] != "filled").sum()),
        "benchmark": benchmark,
        "metrics": result.metrics,
        "data_report": {k: v for k, v in result.data_report.items() if k != "suspensions"},
        "manifest": {
            "input_sha256": result.input_sha256,
            "code_version": result.code_version,
            "strategy": result.strategy,
            "params": result.params,
            "config": result.config,
            "benchmark": benchmark,
        },
    }


def daily_frame(result: BacktestResult, benchmark: pd.DataFrame | None) -> pd.DataFrame:
    """One row per trading day: cash, market_value, equity (int64 fen), benchmark (the index close that day, NaN
    without one), exposure (market_value / equity) and holdings (symbols held at the close)."""
    equity = result.equity_fen
    frame = pd.DataFrame(
        {
            "trade_date": [date.fromisoformat(d) for d in result.dates],
            "cash": result.cash_fen.astype(np.int64),
            "market_value": result.market_value_fen.astype(np.int64),
            "equity": equity.astype(np.int64),
        }
    )
    if benchmark is not None:
        closes = dict(zip(benchmark["trade_date"], benchmark["close"], strict=True))
        frame["benchmark"] = [closes.get(d, np.nan) for d in frame["trade_date"]]
    else:
        frame["benchmark"] = np.nan
    frame["exposure"] = np.where(equity > 0, result.market_value_fen / np.where(equity > 0, equity, 1), np.nan)
    frame["holdings"] = (result.positions != 0).sum(axis=1).astype(np.int64)
    return frame


def artifacts(result: BacktestResult, benchmark: pd.DataFrame | None) -> dict[str, bytes]:
    """The frames a report needs, as Parquet bytes by artifact name."""
    orders = result.orders_frame()
    return {
        "daily": frame_to_parquet(daily_frame(result, benchmark)),
        "trades": frame_to_parquet(result.trades_frame()),
        "unfilled": frame_to_parquet(orders[orders["status"] != "filled"].reset_index(drop=True)),
    }


def equity_curve(result: BacktestResult) -> list[tuple[date, Decimal]]:
    return [
        (date.fromisoformat(day), Decimal(int(fen)) / 100)
        for day, fen in zip(result.dates, result.equity_fen.tolist(), strict=True)
    ]
