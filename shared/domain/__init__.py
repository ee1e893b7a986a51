"""Domain types shared by every service: codes, money, bars, orders, trades, positions, accounts."""

from shared.domain.codes import Board, Exchange, InvalidTsCode, SecurityCode, parse_ts_code
from shared.domain.models import (
    ORDER_TRANSITIONS,
    Account,
    Bar,
    IllegalTransition,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
    Trade,
    check_transition,
)
from shared.domain.money import FEN, PRICE_TICK, from_fen, money, price, to_fen

__all__ = [
    "FEN",
    "ORDER_TRANSITIONS",
    "PRICE_TICK",
    "Account",
    "Bar",
    "Board",
    "Exchange",
    "IllegalTransition",
    "InvalidTsCode",
    "Order",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "Position",
    "SecurityCode",
    "Trade",
    "check_transition",
    "from_fen",
    "money",
    "parse_ts_code",
    "price",
    "to_fen",
]
