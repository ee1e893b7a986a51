"""A-share market rules, one small function per rule, used alike by backtest, paper broker and risk."""

from shared.core.market.calendar import is_trading_day, sse_trading_days
from shared.core.market.rules import (
    FeeSchedule,
    LotError,
    buy_qty_error,
    limit_prices,
    on_tick,
    price_limit_ratio,
    sell_qty_error,
    stamp_duty_rate,
    trade_fees,
)

__all__ = [
    "FeeSchedule",
    "LotError",
    "buy_qty_error",
    "is_trading_day",
    "limit_prices",
    "on_tick",
    "price_limit_ratio",
    "sell_qty_error",
    "sse_trading_days",
    "stamp_duty_rate",
    "trade_fees",
]
