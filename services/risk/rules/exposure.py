"""Total exposure: the market value of every stock held plus every open buy plus this order, as a share of equity."""

from __future__ import annotations

from decimal import Decimal

from services.risk.rules.base import Finding, Percent, RiskState, RuleConfig, RuleOrder, against_limit, cny, pct
from shared.core.domain import OrderSide

RULE = "total_exposure"


class ExposureConfig(RuleConfig):
    max_pct_of_equity: Percent | None = None


def exposure(state: RiskState) -> Decimal:
    held = sum((p.market_value for p in state.positions.values()), Decimal(0))
    return held + sum((o.value for o in state.open_orders if o.side is OrderSide.BUY), Decimal(0))


def check(order: RuleOrder, state: RiskState, config: ExposureConfig) -> list[Finding]:
    if order.side is not OrderSide.BUY or config.max_pct_of_equity is None:
        return []
    after = exposure(state) + order.value
    bound = config.max_pct_of_equity
    share = after * 100 / state.equity if state.equity > 0 else Decimal(100)
    return against_limit(
        RULE, "exposure_pct", after, state.equity * bound / 100, config.warn_at_pct,
        lambda: f"stocks would be {pct(share)} of equity {cny(state.equity)} with open buys and this order, "
        f"against a limit of {pct(bound)}",
        {"after": str(after), "equity": str(state.equity)},
    )  # fmt: skip
