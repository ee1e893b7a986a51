"""Order activity: orders and cancels per second and per day (the exchanges call an account high-frequency at 300 a
second or 20,000 a day; the defaults stay below), the count of active orders, and a watch on the day's cancel
ratio (a warning only: the exchanges' thresholds are unpublished)."""

from __future__ import annotations

from decimal import Decimal

from services.risk.rules.base import Count, Finding, Level, Percent, RiskState, RuleConfig, against_limit, pct

RULE = "order_activity"

# The exchanges' programmatic-trading rules (CSRC 2024-10-08; SSE/SZSE 2025-07-07): high-frequency from 300
# orders + cancels in one second or 20,000 in one day.
HIGH_FREQUENCY_PER_SECOND = 300
HIGH_FREQUENCY_PER_DAY = 20_000


class ActivityConfig(RuleConfig):
    max_per_second: Count | None = 100
    max_per_day: Count | None = 10_000
    max_active_orders: Count | None = None
    cancel_ratio_watch_pct: Percent | None = Decimal(50)  # warn above this share of cancels to orders today
    cancel_ratio_min_orders: Count = 100  # ...once the day has this many orders


def check(state: RiskState, config: ActivityConfig) -> list[Finding]:
    c = state.counters
    findings: list[Finding] = []
    if config.max_per_second is not None:
        used = c.orders_last_second + c.cancels_last_second + 1
        most = config.max_per_second
        findings += against_limit(
            RULE, "order_rate_second", Decimal(used), Decimal(most), config.warn_at_pct,
            lambda: f"{used} orders and cancels in one second with this one (at most {most})",
            {"last_second": str(used - 1)},
        )  # fmt: skip
    if config.max_per_day is not None:
        used_day = c.orders_today + c.cancels_today + 1
        most_day = config.max_per_day
        findings += against_limit(
            RULE, "order_rate_day", Decimal(used_day), Decimal(most_day), config.warn_at_pct,
            lambda: f"{used_day:,} orders and cancels today with this one (at most {most_day:,})",
            {"today": str(used_day - 1)},
        )  # fmt: skip
    if config.max_active_orders is not None:
        active = len(state.open_orders) + 1
        most_active = config.max_active_orders
        findings += against_limit(
            RULE, "active_orders", Decimal(active), Decimal(most_active), config.warn_at_pct,
            lambda: f"{active} active orders with this one (at most {most_active})",
            {"active": str(active - 1)},
        )  # fmt: skip
    watch = config.cancel_ratio_watch_pct
    if watch is not None and c.orders_today >= config.cancel_ratio_min_orders and c.orders_today > 0:
        ratio = Decimal(c.cancels_today) * 100 / c.orders_today
        if ratio > watch:
            findings.append(
                Finding(
                    RULE,
                    "cancel_ratio",
                    Level.WARN,
                    f"cancels are {pct(ratio)} of today's {c.orders_today:,} orders (watched above {pct(watch)})",
                    {"orders_today": str(c.orders_today), "cancels_today": str(c.cancels_today)},
                )
            )
    return findings
