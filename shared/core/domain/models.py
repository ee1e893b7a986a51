"""Orders with exact prices, and the order state machine."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class OrderStatus(StrEnum):
    ACCEPTED = "accepted"  # approved by risk, recorded by execution, not yet at the broker
    SUBMITTED = "submitted"  # the broker has it
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # refused by the broker (risk rejections never become orders)
    # Sent to a real broker (QMT) with no answer (a timeout, a disconnect): it may be there or not. Still open (it
    # keeps its reservation); resolved only by asking the broker, never sent again.
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)


ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.ACCEPTED: frozenset(
        {OrderStatus.SUBMITTED, OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.UNKNOWN}
    ),
    OrderStatus.UNKNOWN: frozenset(
        {
            OrderStatus.SUBMITTED,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.REJECTED,
        }
    ),
    OrderStatus.SUBMITTED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED}),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}


class IllegalTransition(ValueError):
    pass


def check_transition(current: OrderStatus, new: OrderStatus) -> None:
    if new not in ORDER_TRANSITIONS[current]:
        raise IllegalTransition(f"an order cannot go from {current.value} to {new.value}")


class Order(BaseModel):
    order_id: str
    client_order_id: str
    account_id: str
    ts_code: str
    side: OrderSide
    order_type: OrderType
    qty: int = Field(gt=0)
    # limit price; a STAR market order's protection price (保护限价); None for other market orders
    price: Decimal | None = None
    # a market order's type (shared.core.market.order_types: counterparty_best, best5_cancel, ...); None: a limit order
    market_type: str | None = None
    time_in_force: str = "day"  # the only one the exchanges take (order_types.time_in_force_error)
    status: OrderStatus = OrderStatus.ACCEPTED
    filled_qty: int = 0
    avg_fill_price: Decimal | None = None
    reason: str | None = None
    strategy_instance_id: str | None = None  # the strategy instance that placed it; None for a person's order
    created_at: datetime
    updated_at: datetime
