"""Per-stock position limit: what a buy would bring one stock to — its market value held, plus the open buys of it,
plus this order — as a share of equity and as a value. Sells reduce a position and are not checked."""

from __future__ import annotations

from decimal import Decimal

from services.risk.rules.base import (
    Finding,
    NonNegative,
    Percent,
    RiskState,
    RuleConfig,
    RuleOrder,
    against_limit,
    cny,
    pct,
)
from shared.core.domain import OrderSide

RULE = "position_limit"


class PositionLimitConfig(RuleConfig):
    max_pct_of_equity: Percent | None = None
    max_value: NonNegative | None = None  # CNY


def committed(state: RiskState, ts_code: str) -> Decimal:
    """One stock's market value held plus the value its open buys commit."""
    held = state.positions.get(ts_code)
    open_buys = sum(
        (o.value for o in state.open_orders if o.ts_code == ts_code and o.side is OrderSide.BUY), Decimal(0)
    )
    return (held.market_value if held else Decimal(0)) + open_buys


def check(order: RuleOrder, state: RiskState, config: PositionLimitConfig) -> list[Finding]:
    if order.side is not OrderSide.BUY:
        return []
    after = committed(state, order.ts_code) + order.value
    findings: list[Finding] = []
    values = {"after": str(after), "equity": str(state.equity)}
    if config.max_value is not None:
        limit = config.max_value
        findings += against_limit(
            RULE, "position_value", after, limit, config.warn_at_pct,
            lambda: f"{order.ts_code} would reach {cny(after)} with open buys and this order, "
            f"against a limit of {cny(limit)}",
            values,
        )  # fmt: skip
    if config.max_pct_of_equity is not None:
        limit = state.equity * config.max_pct_of_equity / 100
        share = after * 100 / state.equity if state.equity > 0 else Decimal(100)
        bound = config.max_pct_of_equity
        findings += against_limit(
            RULE, "position_pct", after, limit, config.warn_at_pct,
            lambda: f"{order.ts_code} would be {pct(share)} of equity {cny(state.equity)} with open buys and this "
            f"order, against a limit of {pct(bound)}",
            values,
        )  # fmt: skip
    return findings
