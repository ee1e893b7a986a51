"""Duplicate orders: the same code, side, price and quantity as an order of the last N seconds, whatever its
client_order_id (a script sending one order twice under two ids)."""

from __future__ import annotations

from datetime import timedelta

from services.risk.rules.base import Count, Finding, Level, RiskState, RuleConfig, RuleOrder
from shared.platform.request_model import StrictBool

RULE = "duplicates"


class DuplicatesConfig(RuleConfig):
    stricter_larger = frozenset({"window_s"})
    # Off unless a rule set turns it on (e.g. global `{"duplicates": {"window_s": 5}}`): the same order twice is
    # often meant (a ladder of equal slices, a test, a second lot), and a rule that refuses it by default surprises.
    enabled: StrictBool = False
    window_s: Count | None = 5


def check(order: RuleOrder, state: RiskState, config: DuplicatesConfig) -> list[Finding]:
    if not config.window_s:
        return []
    since = order.at - timedelta(seconds=config.window_s)
    for seen in state.recent_orders:
        same = (seen.ts_code, seen.side, seen.price, seen.qty) == (order.ts_code, order.side, order.price, order.qty)
        if same and since <= seen.at <= order.at:
            ago = (order.at - seen.at).total_seconds()
            return [
                Finding(
                    RULE,
                    "duplicate_order",
                    Level.DENY,
                    f"the same order ({order.side} {order.qty:,} {order.ts_code} at {order.price or 'market'}) was "
                    f"placed {ago:.1f} s ago (window {config.window_s} s)",
                    {"seconds_ago": f"{ago:.3f}"},
                )
            ]
    return []
