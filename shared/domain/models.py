"""Bars, orders, trades, positions and accounts, with exact prices and amounts, and the order state machine."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field


class Bar(BaseModel):
    """One daily bar, unadjusted. Units: prices in CNY, `vol` in shares, `amount` in CNY
    (Tushare reports vol in lots of 100 and amount in thousand CNY; the data service converts on the way in)."""

    ts_code: str
    trade_date: date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    pre_close: Decimal
    vol: int
    amount: Decimal
    adj_factor: Decimal = Decimal(1)


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

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)


ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.ACCEPTED: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED, OrderStatus.CANCELLED}),
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
    price: Decimal | None = None  # limit price; None for market orders
    status: OrderStatus = OrderStatus.ACCEPTED
    filled_qty: int = 0
    avg_fill_price: Decimal | None = None
    reason: str | None = None
    created_at: datetime
    updated_at: datetime


class Trade(BaseModel):
    trade_id: str
    order_id: str
    account_id: str
    ts_code: str
    side: OrderSide
    qty: int
    price: Decimal
    amount: Decimal  # qty * price, exact
    fees: Decimal = Decimal("0.00")
    traded_at: datetime


class Position(BaseModel):
    ts_code: str
    qty: int
    sellable_qty: int  # T+1: shares bought today are not sellable until the next trading day
    cost: Decimal  # total cost in CNY including fees
    last_price: Decimal | None = None

    @property
    def market_value(self) -> Decimal:
        return (self.last_price or Decimal(0)) * self.qty


class Account(BaseModel):
    account_id: str
    cash: Decimal
    positions: dict[str, Position] = Field(default_factory=dict)

    @property
    def market_value(self) -> Decimal:
        return sum((p.market_value for p in self.positions.values()), Decimal(0))

    @property
    def equity(self) -> Decimal:
        return self.cash + self.market_value
