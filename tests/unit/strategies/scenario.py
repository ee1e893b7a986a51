"""Helpers for the example-strategy tests: bars built from a few hand-written price paths, the trades of a result in
a form a test can compare with a hand-worked list, and the book-keeping invariants every run must satisfy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

from shared.research.engine import BacktestResult

DAYS = pd.bdate_range("2024-01-02", periods=80)  # weekdays: the engine needs no exchange calendar for these


def make_bars(
    closes: Mapping[str, Sequence[float | None]],
    opens: Mapping[str, Mapping[int, float]] | None = None,
    extra: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> pd.DataFrame:
    """Tushare daily rows from close paths (None: no bar that day, i.e. suspended). The open is the previous close
    (the first day's: its close) unless `opens[code][day]` says otherwise; high and low span open and close; volume
    is ample so no fill is capped. `extra[column][code]` adds a numeric column (e.g. daily_basic's pe_ttm)."""
    rows = []
    for code, path in closes.items():
        previous: float | None = None
        for t, close in enumerate(path):
            if close is None:
                continue
            open_ = (opens or {}).get(code, {}).get(t, previous if previous is not None else close)
            row = {
                "ts_code": code,
                "trade_date": DAYS[t].strftime("%Y%m%d"),
                "open": open_,
                "high": max(open_, close),
                "low": min(open_, close),
                "close": close,
                "pre_close": previous if previous is not None else close,
                "vol": 1_000_000.0,
                "amount": 1_000_000.0 * close / 10,
            }
            for column, values in (extra or {}).items():
                row[column] = values[code][t]
            rows.append(row)
            previous = close
    return pd.DataFrame(rows)


def trades(result: BacktestResult) -> list[tuple[int, str, str, int, str]]:
    """(day index, ts_code, side, qty, price) of every fill, in the order they happened."""
    t = result.trades
    return [
        (int(day), result.codes[int(sym)], "buy" if side > 0 else "sell", int(qty), f"{price / 100:.2f}")
        for day, sym, side, qty, price in zip(t["day"], t["sym"], t["side"], t["qty"], t["price"], strict=True)
    ]


def check_books(result: BacktestResult) -> None:
    """What a user checks on any run: cash never negative; equity = cash + shares x close every day; and the final
    cash re-derived from the trades and corporate actions alone."""
    assert (result.cash_fen >= 0).all()
    marked = (result.positions * result.close_fen).sum(axis=1)
    assert np.array_equal(result.market_value_fen, marked)
    assert np.array_equal(result.equity_fen, result.cash_fen + marked)
    t = result.trades
    fees = t["commission"] + t["stamp_duty"] + t["transfer_fee"]
    flows = np.where(t["side"] > 0, -(t["amount"] + fees), t["amount"] - fees)
    in_lieu = sum(int(Decimal(a["cash_in_lieu"]) * 100) for a in result.corporate_actions)
    assert result.initial_cash_fen + int(flows.sum()) + in_lieu == int(result.cash_fen[-1])
    # positions follow from the fills (and the corporate actions, which only a demo run has)
    if not result.corporate_actions:
        net = np.zeros(len(result.codes), dtype=np.int64)
        np.add.at(net, t["sym"], t["side"] * t["qty"])
        assert np.array_equal(net, result.positions[-1])
