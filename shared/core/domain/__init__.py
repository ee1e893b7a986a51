"""Domain types shared by every service: codes, money, orders and their state machine."""

from shared.core.domain.codes import Board, Exchange, InvalidTsCode, SecurityCode, parse_ts_code
from shared.core.domain.models import (
    ORDER_TRANSITIONS,
    IllegalTransition,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    check_transition,
)
from shared.core.domain.money import FEN, PRICE_TICK, from_fen, money, price, to_fen

__all__ = [
    "FEN",
    "ORDER_TRANSITIONS",
    "PRICE_TICK",
    "Board",
    "Exchange",
    "IllegalTransition",
    "InvalidTsCode",
    "Order",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "SecurityCode",
    "check_transition",
    "from_fen",
    "money",
    "parse_ts_code",
    "price",
    "to_fen",
]
