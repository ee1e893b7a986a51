"""Per-order limits of an account or instance: its value and quantity, and the fat-finger check (a limit price too
far from the last price)."""

from __future__ import annotations

from decimal import Decimal

from services.risk.rules.base import (
    Count,
    Finding,
    Level,
    NonNegative,
    Percent,
    RuleConfig,
    RuleOrder,
    against_limit,
    cny,
    pct,
)

RULE = "order_limits"


class OrderLimitsConfig(RuleConfig):
    max_order_value: NonNegative | None = None  # CNY
    max_order_qty: Count | None = None  # shares
    max_price_deviation_pct: Percent | None = None  # |limit price - last price| / last price, percent


def check(order: RuleOrder, config: OrderLimitsConfig) -> list[Finding]:
    findings: list[Finding] = []
    if config.max_order_value is not None:
        limit = config.max_order_value
        findings += against_limit(
            RULE,
            "max_order_value",
            order.value,
            limit,
            config.warn_at_pct,
            lambda: f"order value {cny(order.value)} against the maximum of {cny(limit)} an order",
            {"value": str(order.value), "limit": str(limit)},
        )
    if config.max_order_qty is not None:
        most = Decimal(config.max_order_qty)
        findings += against_limit(
            RULE,
            "max_order_qty",
            Decimal(order.qty),
            most,
            config.warn_at_pct,
            lambda: f"{order.qty:,} shares against the maximum of {int(most):,} an order",
            {"qty": str(order.qty), "limit": str(most)},
        )
    last = order.reference.last_price
    if config.max_price_deviation_pct is not None and order.price is not None and last:
        deviation = abs(order.price - last) * 100 / last
        bound = config.max_price_deviation_pct
        if deviation > bound:
            findings.append(
                Finding(
                    RULE,
                    "price_deviation",
                    Level.DENY,
                    f"price {order.price} is {pct(deviation)} from the last price {last} (at most {pct(bound)})",
                    {"price": str(order.price), "last_price": str(last), "deviation_pct": str(deviation)},
                )
            )
    return findings
