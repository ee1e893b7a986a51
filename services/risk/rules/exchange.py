"""The exchanges' own limits on an order (dated data in shared/core/market/rules.py): the most shares one order may
ask for by board and type, STAR market orders' protection price, the windows of the call auctions, and the price cage
of limit orders in continuous trading. An order the exchange would reject is refused before it leaves."""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal

from services.risk.rules.base import Finding, Level, RuleConfig, RuleOrder
from shared.core.domain import OrderSide, OrderType
from shared.core.domain.codes import Board
from shared.core.market.rules import max_order_qty, price_cage
from shared.platform.clock import CONTINUOUS_TRADING, EXCHANGE_TZ
from shared.platform.request_model import StrictBool

RULE = "exchange"

# SSE/SZSE trading rules: the opening call auction takes orders 9:15-9:25 and cancels only until 9:20; 9:25-9:30
# takes nothing; the closing call auction 14:57-15:00 takes no cancels. Continuous trading 9:30-11:30, 13:00-14:57.
NO_CANCELS = ((time(9, 20), time(9, 25)), (time(14, 57), time(15, 0)))
NO_ORDERS = ((time(9, 25), time(9, 30)),)
CONTINUOUS = CONTINUOUS_TRADING  # the one statement of it (shared/platform/clock.py)
# The price cage (有效申报价格范围) and its bounds: shared/core/market/rules.py (`price_cage`), one statement for risk
# and execution.
cage = price_cage


class ExchangeConfig(RuleConfig):
    # The cage's benchmark is the best opposite quote, else the best same-side quote, else the last trade: risk has
    # none of them until the real-time feed (the QMT issue) and only the last close, which intraday moves can leave
    # far behind; so the cage is off by default and, turned on, checks against the last close.
    price_cage: StrictBool = False


def _within(at: time, windows: tuple[tuple[time, time], ...]) -> bool:
    return any(start <= at < end for start, end in windows)


def check(order: RuleOrder, config: ExchangeConfig) -> list[Finding]:
    findings: list[Finding] = []
    market = order.order_type is OrderType.MARKET
    most = max_order_qty(order.board, market=market, trade_date=order.session)
    if most is not None and order.qty > most:
        kind = "market" if market else "limit"
        findings.append(
            Finding(
                RULE,
                "exchange_max_qty",
                Level.DENY,
                f"{order.qty} shares is more than the {most:,} a {kind} order may ask for on the {order.board} board",
                {"qty": str(order.qty), "max_qty": str(most)},
            )
        )
    if market and order.board is Board.STAR and order.protection_price is None:
        findings.append(
            Finding(RULE, "protection_price_required", Level.DENY, "a STAR market order needs a protection price")
        )
    clock = order.at.astimezone(EXCHANGE_TZ)
    if clock.date() == order.session and _within(clock.time(), NO_ORDERS):
        findings.append(
            Finding(
                RULE,
                "auction_closed",
                Level.DENY,
                "the exchanges take no orders from 9:25 to 9:30 (after the opening call auction)",
                {"at": clock.time().isoformat("seconds")},
            )
        )
    last = order.reference.last_price
    in_continuous = clock.date() == order.session and _within(clock.time(), CONTINUOUS)
    # the cage holds a limit order's price and a STAR market order's protection price (SSE 科创板交易特别规定) alike
    caged = order.price if not market else order.protection_price if order.board is Board.STAR else None
    if config.price_cage and caged is not None and last is not None and in_continuous:
        findings.extend(_cage(order, caged, last))
    return findings


def _cage(order: RuleOrder, price: Decimal, benchmark: Decimal) -> list[Finding]:
    highest, lowest = cage(order.board, benchmark)
    values = {"price": str(price), "benchmark": str(benchmark), "highest_buy": str(highest), "lowest_sell": str(lowest)}
    if order.side is OrderSide.BUY and price > highest:
        message = f"buy at {price} is above the price cage's {highest} (benchmark {benchmark})"
        return [Finding(RULE, "price_cage", Level.DENY, message, values)]
    if order.side is OrderSide.SELL and price < lowest:
        message = f"sell at {price} is below the price cage's {lowest} (benchmark {benchmark})"
        return [Finding(RULE, "price_cage", Level.DENY, message, values)]
    return []


def cancel_check(at: datetime) -> list[Finding]:
    """A cancel in the exchanges' no-cancel windows (9:20-9:25, 14:57-15:00) would be rejected by the exchange. The
    only exchange rule that applies to a cancel: no risk rule blocks one."""
    clock = at.astimezone(EXCHANGE_TZ).time()
    if _within(clock, NO_CANCELS):
        return [
            Finding(
                RULE,
                "cancel_window",
                Level.DENY,
                "the exchanges take no cancels from 9:20 to 9:25 and from 14:57 to 15:00",
                {"at": clock.isoformat("seconds")},
            )
        ]
    return []
