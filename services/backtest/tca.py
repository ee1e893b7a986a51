"""A backtest's transaction cost analysis (docs/tca.md, "Backtests"): the same arithmetic as execution's
(`shared.core.market.tca`) on the backtest's own orders, so that a backtest's costs and a live strategy's can be set
side by side. The arrival price is the decision's close (the close of the day the strategy decided on, which its
order was sized against); the fills are the backtest's trades (slippage and fees as its config modelled them). A
backtest trades on daily bars: there is no intraday interval, so no interval VWAP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pandas as pd

from shared.core.domain import to_fen
from shared.core.market.tca import CostSummary, OrderCost


@dataclass(frozen=True)
class BacktestOrderCost:
    sleeve: str | None
    order_id: int
    ts_code: str
    side: str
    decision_date: date | None
    decision_close: Decimal | None
    first_fill: date
    last_fill: date
    cost: OrderCost


def _none(value: Any) -> Any:
    return None if value is None or value != value else value  # NaN from Parquet: None


def order_costs(trades: pd.DataFrame, decisions: pd.DataFrame) -> list[BacktestOrderCost]:
    """Each traded order's cost, in the order of its first trade. `trades`: the stored trades frame (CNY strings);
    `decisions`: the stored decisions frame (services/backtest/runner.py)."""
    has_sleeve = "sleeve" in trades.columns
    decided: dict[tuple[str | None, int], dict[str, Any]] = {}
    for row in decisions.to_dict("records"):
        decided[(row.get("sleeve") if has_sleeve else None, int(row["order_id"]))] = row
    groups: dict[tuple[str | None, int], dict[str, Any]] = {}
    for row in trades.to_dict("records"):
        key = (row["sleeve"] if has_sleeve else None, int(row["order_id"]))
        day = date.fromisoformat(str(row["trade_date"]))
        group = groups.setdefault(
            key, {"ts_code": row["ts_code"], "side": row["side"], "qty": 0, "amount": 0, "fees": 0,
                  "first": day, "last": day},
        )  # fmt: skip
        group["qty"] += int(row["qty"])
        group["amount"] += to_fen(Decimal(str(row["amount"])))
        group["fees"] += to_fen(Decimal(str(row["fees"])))
        group["last"] = max(group["last"], day)
    out: list[BacktestOrderCost] = []
    for key, g in groups.items():
        decision = decided.get(key, {})
        close = _none(decision.get("decision_close"))
        decision_date = _none(decision.get("decision_date"))
        arrival = None if close is None else Decimal(str(close))
        cost = OrderCost(
            is_buy=g["side"] == "buy",
            filled_qty=g["qty"],
            filled_amount_fen=g["amount"],
            fees_fen=g["fees"],
            arrival_fen=None if arrival is None else Fraction(to_fen(arrival)),
        )
        out.append(
            BacktestOrderCost(
                sleeve=key[0], order_id=key[1], ts_code=g["ts_code"], side=g["side"],
                decision_date=None if decision_date is None else date.fromisoformat(str(decision_date)),
                decision_close=arrival, first_fill=g["first"], last_fill=g["last"], cost=cost,
            )
        )  # fmt: skip
    return out


def by_day(costs: list[BacktestOrderCost]) -> dict[str, CostSummary]:
    """Summaries by the decision's day (the day the order was made, as live orders count by their creation day)."""
    groups: dict[str, CostSummary] = {}
    for c in costs:
        key = (c.decision_date or c.first_fill).isoformat()
        groups[key] = groups.get(key, CostSummary()).add(c.cost)
    return dict(sorted(groups.items()))


def total(costs: list[BacktestOrderCost]) -> CostSummary:
    summary = CostSummary()
    for c in costs:
        summary = summary.add(c.cost)
    return summary
