"""Liquidity: an order's quantity against a share of the stock's 20-day average daily volume. Not checked for a
stock whose average is not known."""

from __future__ import annotations

from decimal import Decimal

from services.risk.rules.base import Finding, Percent, RuleConfig, RuleOrder, against_limit, pct

RULE = "liquidity"


class LiquidityConfig(RuleConfig):
    max_pct_of_avg_volume: Percent | None = None


def check(order: RuleOrder, config: LiquidityConfig) -> list[Finding]:
    avg = order.reference.avg_volume_20d
    if config.max_pct_of_avg_volume is None or not avg:
        return []
    bound = config.max_pct_of_avg_volume
    share = Decimal(order.qty) * 100 / avg
    return against_limit(
        RULE, "liquidity_pct", Decimal(order.qty), Decimal(avg) * bound / 100, config.warn_at_pct,
        lambda: f"{order.qty:,} shares is {pct(share)} of {order.ts_code}'s 20-day average volume of {avg:,} "
        f"(at most {pct(bound)})",
        {"qty": str(order.qty), "avg_volume_20d": str(avg)},
    )  # fmt: skip
