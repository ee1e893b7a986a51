"""The bridge between the backtest service and the research engine (`shared.research.engine`): a job's settings as
the engine's
config, its run, and the engine's result as what the service stores: a summary (metrics and manifest) and the
frames a report needs (daily series, trades, unfilled orders) as Parquet. A job with several strategies (sleeves)
runs them side by side through `shared.research.engine.portfolio.run_portfolio`; its summary adds a `sleeves` list, its
daily frame one equity column per sleeve and its trades and unfilled orders a `sleeve` column."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import pandas as pd

from services.backtest.store import frame_to_parquet
from shared.platform.provenance import code_version
from shared.research.engine import BacktestConfig, BacktestResult, run_backtest
from shared.research.engine.portfolio import PortfolioResult, Sleeve, run_portfolio
from shared.research.engine.result import yuan
from shared.research.strategy import Strategy

RATIO_QUANTUM = Decimal("0.00000001")
# What a stored backtest of kind portfolio (several strategies, BacktestKind) shows as its `strategy`; its `params` are
# {"sleeves": [...]}. Only shown: the kind column, not this name, says which runs have sleeves.
PORTFOLIO_STRATEGY = "portfolio"
AnyResult = BacktestResult | PortfolioResult


def job_config(
    *, initial_cash: Decimal, start: date, end: date, costs: Mapping[str, Any], calendar: Sequence[date]
) -> BacktestConfig:
    return BacktestConfig(
        initial_cash=initial_cash, start=start, end=end, calendar=tuple(calendar) or None, **dict(costs)
    )


def run_job(
    strategy: Strategy,
    frame: pd.DataFrame,
    config: BacktestConfig,
    *,
    benchmark: pd.DataFrame | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    return run_backtest(strategy, frame, config, benchmark=benchmark, progress=progress, code_version=code_version())


def run_portfolio_job(
    sleeves: Sequence[Sleeve],
    frame: pd.DataFrame,
    config: BacktestConfig,
    *,
    benchmark: pd.DataFrame | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PortfolioResult:
    return run_portfolio(sleeves, frame, config, benchmark=benchmark, progress=progress, code_version=code_version())


def total_return(result: AnyResult) -> Decimal:
    """Exact: a fraction of two fen amounts, rounded half-even to 8 places."""
    initial = Decimal(result.initial_cash_fen)
    return ((Decimal(int(result.equity_fen[-1])) - initial) / initial).quantize(RATIO_QUANTUM, ROUND_HALF_EVEN)


def summary_json(result: BacktestResult, *, benchmark: str | None) -> dict[str, Any]:
    """What the service stores and serves as a backtest's summary: the engine's summary, its metrics, and the run
    manifest (inputs hash, parameters, config, code version). Trades and orders are artifacts (see `artifacts`)."""
    orders = result.orders_frame()
    return {
        **result.summary(),
        "total_return": format(total_return(result), "f"),
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


def portfolio_summary_json(result: PortfolioResult, *, benchmark: str | None) -> dict[str, Any]:
    """As `summary_json` for the combined account (metrics of the combined equity, trades pooled), plus `sleeves`:
    per sleeve its label, strategy, params, weight, initial_cash, final_equity, total_return, fees_paid, trades,
    unfilled_orders, input_sha256 and metrics. The manifest's params are the sleeves as run."""
    sleeves = []
    unfilled = 0
    for row, run in zip(result.sleeve_summaries(), result.sleeves, strict=True):
        orders = run.result.orders_frame()
        sleeve_unfilled = int((orders["status"] != "filled").sum())
        unfilled += sleeve_unfilled
        own = run.result.summary()
        sleeves.append(
            {
                **row,
                "total_return": format(total_return(run.result), "f"),
                "fees_paid": own["fees_paid"],
                "trades": own["trades"],
                "unfilled_orders": sleeve_unfilled,
            }
        )
    data_report = result.sleeves[0].result.data_report  # one panel: the same for every sleeve
    summary = result.summary()
    return {
        **summary,
        "sleeves": sleeves,
        "total_return": format(total_return(result), "f"),
        "unfilled_orders": unfilled,
        "benchmark": benchmark,
        "metrics": result.metrics,
        "data_report": {k: v for k, v in data_report.items() if k != "suspensions"},
        "manifest": {
            "input_sha256": result.input_sha256,
            "code_version": result.code_version,
            "strategy": PORTFOLIO_STRATEGY,
            "params": {
                "sleeves": [
                    {k: s[k] for k in ("label", "strategy", "params", "weight", "weight_fraction", "input_sha256")}
                    for s in sleeves
                ]
            },
            "config": result.config,
            "benchmark": benchmark,
        },
    }


def daily_frame(result: AnyResult, benchmark: pd.DataFrame | None) -> pd.DataFrame:
    """One row per trading day: cash, market_value, equity (int64 fen), benchmark (the index close that day, NaN
    without one), exposure (market_value / equity) and holdings (symbols held at the close). For several
    strategies: the combined account's, plus `equity_1` .. `equity_n` (int64 fen), each sleeve's equity in the
    order of the summary's `sleeves`; holdings counts the symbols any sleeve holds."""
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
    if isinstance(result, PortfolioResult):
        for number, run in enumerate(result.sleeves, start=1):
            frame[f"equity_{number}"] = run.result.equity_fen.astype(np.int64)
    return frame


def artifacts(result: AnyResult, benchmark: pd.DataFrame | None) -> dict[str, bytes]:
    """The frames a report needs, as Parquet bytes by artifact name."""
    orders = result.orders_frame()  # with a `sleeve` column for several strategies, as the trades
    return {
        "daily": frame_to_parquet(daily_frame(result, benchmark)),
        "trades": frame_to_parquet(result.trades_frame()),
        "unfilled": frame_to_parquet(orders[orders["status"] != "filled"].reset_index(drop=True)),
        "decisions": frame_to_parquet(decisions_frame(result)),
    }


def _decisions(result: BacktestResult) -> pd.DataFrame:
    """One row per order that traded: its id, code, the day it was decided on (its `created` day: the strategy's
    turn after that day's close) and that day's close of its symbol, the price the decision saw (exact CNY string;
    None for an order placed before the first day)."""
    o, t = result.orders, result.trades
    traded = set(t["order_id"].tolist())
    rows = []
    for order_id, sym, created in zip(o["id"].tolist(), o["sym"].tolist(), o["created"].tolist(), strict=True):
        if order_id not in traded:
            continue
        rows.append(
            {
                "order_id": order_id,
                "ts_code": result.codes[sym],
                "decision_date": result.dates[created] if created >= 0 else None,
                "decision_close": yuan(int(result.close_fen[created, sym])) if created >= 0 else None,
            }
        )
    return pd.DataFrame(rows, columns=["order_id", "ts_code", "decision_date", "decision_close"])


def decisions_frame(result: AnyResult) -> pd.DataFrame:
    """The backtest's decisions for cost analysis (services/backtest/tca.py): `_decisions` of each sleeve, with a
    `sleeve` column in a run of several strategies (order ids are per sleeve)."""
    if isinstance(result, BacktestResult):
        return _decisions(result)
    frames = []
    for sleeve in result.sleeves:
        frame = _decisions(sleeve.result)
        frame.insert(0, "sleeve", sleeve.label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def equity_curve(result: AnyResult) -> list[tuple[date, Decimal]]:
    return [
        (date.fromisoformat(day), Decimal(int(fen)) / 100)
        for day, fen in zip(result.dates, result.equity_fen.tolist(), strict=True)
    ]
