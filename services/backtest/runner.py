"""The bridge between the backtest service and the research engine (`shared.engine`): the data service's bars as the
engine's input frame, and the engine's result as the summary the service stores and serves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pandas as pd

from shared.domain.models import Bar
from shared.engine import BacktestConfig, BacktestResult, run_backtest
from shared.strategy import Strategy

RATIO_QUANTUM = Decimal("0.00000001")


def bars_frame(bars: Mapping[str, Sequence[Bar]]) -> pd.DataFrame:
    """The engine reads Tushare's daily layout: prices in CNY, vol in lots of 100, amount in thousand CNY. The data
    service serves shares and CNY, so both are scaled back (an odd-lot volume becomes a fractional lot, which the
    engine's volume cap handles as shares again)."""
    rows = [
        (
            b.ts_code,
            b.trade_date.strftime("%Y%m%d"),
            float(b.open),
            float(b.high),
            float(b.low),
            float(b.close),
            float(b.pre_close),
            b.vol / 100.0,
            float(b.amount) / 1000.0,
            float(b.adj_factor),
        )
        for series in bars.values()
        for b in series
    ]
    columns = ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount", "adj_factor"]
    return pd.DataFrame(rows, columns=columns)


def run_job(
    strategy: Strategy,
    bars: Mapping[str, Sequence[Bar]],
    *,
    initial_cash: Decimal,
    start: date,
    end: date,
    calendar: Sequence[date],
) -> BacktestResult:
    """One backtest over the span the bars cover within [start, end]. The calendar (the built-in SSE one where it
    covers the range) is clipped to that span, so a day on which every symbol was suspended still counts as a day,
    and a day before the first bar does not."""
    frame = bars_frame(bars)
    days = sorted({b.trade_date for series in bars.values() for b in series if start <= b.trade_date <= end})
    span = tuple(d for d in calendar if days and days[0] <= d <= days[-1]) or None
    config = BacktestConfig(initial_cash=initial_cash, start=start, end=end, calendar=span)
    return run_backtest(strategy, frame, config)


def total_return(result: BacktestResult) -> Decimal:
    """Exact: a fraction of two fen amounts, rounded half-even to 8 places."""
    initial = Decimal(result.initial_cash_fen)
    return ((Decimal(int(result.equity_fen[-1])) - initial) / initial).quantize(RATIO_QUANTUM, ROUND_HALF_EVEN)


def summary_json(result: BacktestResult) -> dict[str, Any]:
    """What the service stores and serves as a backtest's summary: the engine's summary, its metrics, the trades
    and the orders that did not fill (with the reason), and the run manifest (inputs hash and code version)."""
    trades = result.trades_frame()
    orders = result.orders_frame()
    unfilled = orders[orders["status"] != "filled"]
    return {
        **result.summary(),
        "total_return": str(total_return(result)),
        "metrics": result.metrics,
        "trades": [
            {
                "trade_date": t.trade_date,
                "ts_code": t.ts_code,
                "side": t.side,
                "qty": int(t.qty),
                "price": t.price,
                "amount": t.amount,
                "fees": t.fees,
                "realised_pnl": t.realised_pnl,
            }
            for t in trades.itertuples(index=False)
        ],
        "unfilled": [
            {"ts_code": o.ts_code, "status": o.status, "filled_qty": int(o.filled_qty), "reason": o.reason}
            for o in unfilled.itertuples(index=False)
        ],
        "manifest": {
            "input_sha256": result.input_sha256,
            "code_version": result.code_version,
            "params": result.params,
            "config": result.config,
        },
    }


def equity_curve(result: BacktestResult) -> list[tuple[date, Decimal]]:
    return [
        (date.fromisoformat(day), Decimal(int(fen)) / 100)
        for day, fen in zip(result.dates, result.equity_fen.tolist(), strict=True)
    ]
