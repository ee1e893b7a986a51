"""Industry concentration: what a buy would bring its industry (stock_basic's industry) to — the market value held in
it plus open buys plus this order — as a share of equity. A security without an industry is not checked."""

from __future__ import annotations

from decimal import Decimal

from services.risk.rules.base import Finding, Percent, RiskState, RuleConfig, RuleOrder, against_limit, cny, pct
from shared.core.domain import OrderSide

RULE = "industry_concentration"


class IndustryConfig(RuleConfig):
    max_pct_of_equity: Percent | None = None


def in_industry(state: RiskState, industry: str) -> Decimal:
    held = sum((p.market_value for p in state.positions.values() if p.industry == industry), Decimal(0))
    buys = sum((o.value for o in state.open_orders if o.side is OrderSide.BUY and o.industry == industry), Decimal(0))
    return held + buys


def check(order: RuleOrder, state: RiskState, config: IndustryConfig) -> list[Finding]:
    industry = order.reference.industry
    if order.side is not OrderSide.BUY or industry is None or config.max_pct_of_equity is None:
        return []
    after = in_industry(state, industry) + order.value
    bound = config.max_pct_of_equity
    limit = state.equity * bound / 100
    share = after * 100 / state.equity if state.equity > 0 else Decimal(100)
    return against_limit(
        RULE, "industry_pct", after, limit, config.warn_at_pct,
        lambda: f"industry {industry} would be {pct(share)} of equity {cny(state.equity)} with open buys and this "
        f"order, against a limit of {pct(bound)}",
        {"industry": industry, "after": str(after), "equity": str(state.equity)},
    )  # fmt: skip
