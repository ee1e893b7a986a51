"""Self-trade prevention: a buy at or above the account's own resting sell of the same stock (or a sell at or below
its own resting buy) could trade with itself. A market order crosses any resting order on the other side."""

from __future__ import annotations

from services.risk.rules.base import Finding, Level, RiskState, RuleConfig, RuleOrder
from shared.core.domain import OrderSide
from shared.platform.request_model import StrictBool

RULE = "self_trade"


class SelfTradeConfig(RuleConfig):
    # Off unless a rule set turns it on: it refuses a market order whenever the account rests any order on the other
    # side of the stock (risk has no order book to tell whether that order is the best), which surprises a trader
    # who did not ask for it.
    enabled: StrictBool = False


def check(order: RuleOrder, state: RiskState, config: SelfTradeConfig) -> list[Finding]:
    other = OrderSide.SELL if order.side is OrderSide.BUY else OrderSide.BUY
    for resting in state.open_orders:
        if resting.ts_code != order.ts_code or resting.side is not other or resting.remaining_qty <= 0:
            continue
        if order.price is None or resting.price is None:
            crosses = True
        elif order.side is OrderSide.BUY:
            crosses = order.price >= resting.price
        else:
            crosses = order.price <= resting.price
        if crosses:
            at = "market" if resting.price is None else str(resting.price)
            return [
                Finding(
                    RULE,
                    "self_trade",
                    Level.DENY,
                    f"a {order.side} of {order.ts_code} at {order.price or 'market'} would cross the account's own "
                    f"resting {other} at {at}",
                    {"resting_price": at},
                )
            ]
    return []
