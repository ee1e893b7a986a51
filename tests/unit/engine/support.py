"""Helpers for the engine tests: bars from a few hand-written rows, a strategy that follows a script, and the
accounting identity every run must satisfy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from shared.research.engine import BacktestConfig, BacktestResult, run_backtest
from shared.research.strategy import CrossSection, Strategy, StrategyContext

Action = Callable[[StrategyContext], Any]


def bars(rows: list[tuple[Any, ...]], **columns: list[Any]) -> pd.DataFrame:
    """Rows (ts_code, 'YYYYMMDD', open, close[, pre_close]) -> a Tushare daily frame. high/low span open and close;
    pre_close defaults to the symbol's previous close (its open on its first row); vol 10,000 lots."""
    last: dict[str, float] = {}
    out = []
    for row in rows:
        code, day, open_, close = row[:4]
        pre = row[4] if len(row) > 4 else last.get(code, open_)
        last[code] = close
        out.append(
            {
                "ts_code": code,
                "trade_date": day,
                "open": open_,
                "high": max(open_, close),
                "low": min(open_, close),
                "close": close,
                "pre_close": pre,
                "vol": 10_000.0,
                "amount": 10_000.0 * 100 * (open_ + close) / 2 / 1000,
            }
        )
    frame = pd.DataFrame(out)
    for name, values in columns.items():
        frame[name] = values
    return frame


class Script(Strategy):
    """Runs `actions[day_index](ctx)` on that day's bar (-1: in on_init) and records what it saw."""

    name = "script"
    title = "Script"
    description = "Test strategy that follows a script."

    def __init__(self, actions: dict[int, Action] | None = None) -> None:
        super().__init__()
        self.actions = actions or {}
        self.seen: dict[int, Any] = {}
        self.events: list[Any] = []

    def on_init(self, ctx: StrategyContext) -> None:
        if -1 in self.actions:
            self.seen[-1] = self.actions[-1](ctx)

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        if bar.index in self.actions:
            self.seen[bar.index] = self.actions[bar.index](ctx)


def check_identity(result: BacktestResult) -> None:
    """cash + market value = equity every day; market value = sum of shares x close; cash never negative; and the
    cash every day equals the initial cash plus every trade's cash flow and corporate-action cash up to that day."""
    assert (result.equity_fen == result.cash_fen + result.market_value_fen).all()
    assert (result.market_value_fen == (result.positions * result.close_fen).sum(axis=1)).all()
    assert (result.cash_fen >= 0).all()
    t = result.trades
    fees = t["commission"] + t["stamp_duty"] + t["transfer_fee"]
    flow = np.where(t["side"] > 0, -(t["amount"] + fees), t["amount"] - fees)
    per_day = np.zeros(len(result.dates), dtype=np.int64)
    np.add.at(per_day, t["day"], flow)
    for action in result.corporate_actions:
        cents = round(float(action["cash_in_lieu"]) * 100)
        per_day[result.dates.index(action["trade_date"])] += cents
    assert (result.cash_fen == result.initial_cash_fen + np.cumsum(per_day)).all()
    # positions follow from the trades and the corporate actions
    held = np.zeros(len(result.codes), dtype=np.int64)
    actions_by_day: dict[str, list[dict[str, Any]]] = {}
    for action in result.corporate_actions:
        actions_by_day.setdefault(action["trade_date"], []).append(action)
    for d, day in enumerate(result.dates):
        for action in actions_by_day.get(day, []):
            j = result.codes.index(action["ts_code"])
            assert held[j] == action["qty_before"]
            held[j] = action["qty_after"]
        today = t["day"] == d
        np.add.at(held, t["sym"][today], t["side"][today] * t["qty"][today])
        assert (held == result.positions[d]).all(), day


def run(strategy: Strategy, frame: pd.DataFrame, config: BacktestConfig | None = None, **kw: Any) -> BacktestResult:
    result = run_backtest(strategy, frame, config or BacktestConfig(**kw))
    check_identity(result)
    return result


def orders(result: BacktestResult) -> list[dict[str, Any]]:
    return result.orders_frame().to_dict("records")


def trades(result: BacktestResult) -> list[dict[str, Any]]:
    return result.trades_frame().to_dict("records")
