"""The exchanges' market order types (市价申报类型) and time in force: which type each exchange takes, what each does
with what it cannot fill at once, the broker's (MiniQMT's) code for each, and the checks an order request gets. One
table for risk, execution (its paper broker and its QMT adapter) and conditional orders (docs/order-path.md "Market
order types and time in force").

Sources: SSE 交易规则 (2023 revision) 3.3.4 and the STAR special rules (科创板交易特别规定, 2019; 保护限价);
SZSE 交易规则 (2023 revision) 3.3.4; BSE 交易规则 (2021) 3.3.4; MiniQMT's xtconstant codes (../shared/qmt.md).

- `best5_cancel` (SH 42, SZ 47, BJ 42): takes up to the best five levels of the other side; the rest is cancelled.
- `best5_limit` (SH 43, BJ 43): takes up to the best five levels; the rest becomes a limit order at its last fill
  price (no fill: at the best own-side price; no own side either: cancelled).
- `counterparty_best` (SH, SZ, BJ 44): a limit order at the best price of the other side (none: cancelled).
- `own_best` (SH, SZ, BJ 45): a limit order at the best price of its own side (none: cancelled).
- `ioc` (SZ 46): takes every level of the other side it can; the rest is cancelled.
- `fok` (SZ 48): fills in full at once against the other side, or not at all (cancelled).

STAR (688/689) market orders carry a protection price (保护限价): a buy fills and rests at no more than it, a sell at
no less. The order request's `price` is that protection price on a STAR market order (required there); any other
market order takes no price.

Time in force: A-share limit orders are day orders (the exchanges' rules know no other limit order: an unfilled
limit order stays in the book until the close, or until cancelled). Immediate-or-cancel and fill-or-kill exist only
as the SZ market types `ioc` and `fok` above, without a limit price, so a limit order with `time_in_force` `ioc` or
`fok` is refused rather than simulated: no broker could carry it to the exchange. `day` is the only time in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from pydantic import Field

from shared.core.domain.codes import Board, InvalidTsCode, parse_ts_code
from shared.core.domain.models import OrderType

__all__ = [
    "ALL_MARKET_TYPES",
    "DEFAULT_MARKET_TYPE",
    "DEFAULT_TIME_IN_FORCE",
    "MARKET_TYPES",
    "QMT_PRICE_TYPES",
    "REST_AS_LIMIT",
    "TIME_IN_FORCE",
    "MarketType",
    "OrderTypeError",
    "TimeInForce",
    "market_type_error",
    "needs_protection",
    "order_type_error",
    "qmt_price_type",
    "time_in_force_error",
]

MarketType = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9_]{1,24}$",
        description="a market order's type: SH best5_cancel | best5_limit | counterparty_best | own_best; SZ "
        "counterparty_best | own_best | ioc | best5_cancel | fok; BJ best5_cancel | best5_limit | counterparty_best | "
        "own_best (another: 422 market_type_invalid)",
    ),
]
TimeInForce = Annotated[
    str,
    Field(
        pattern=r"^[a-z]{1,8}$",
        description='"day" (the default and the only one the exchanges take for an A-share order: "ioc" and "fok" are '
        "refused with 422 time_in_force_unsupported; on SZ they are market types)",
    ),
]

DEFAULT_MARKET_TYPE = "counterparty_best"
DEFAULT_TIME_IN_FORCE = "day"
TIME_IN_FORCE = ("day", "ioc", "fok")  # what a request may name; only "day" is placeable (module docstring)

# The exchange -> (market type -> MiniQMT price type). The keys per exchange are the types it takes.
QMT_PRICE_TYPES: dict[str, dict[str, int]] = {
    "SH": {"best5_cancel": 42, "best5_limit": 43, "counterparty_best": 44, "own_best": 45},
    "SZ": {"counterparty_best": 44, "own_best": 45, "ioc": 46, "best5_cancel": 47, "fok": 48},
    "BJ": {"best5_cancel": 42, "best5_limit": 43, "counterparty_best": 44, "own_best": 45},
}
MARKET_TYPES: dict[str, frozenset[str]] = {ex: frozenset(codes) for ex, codes in QMT_PRICE_TYPES.items()}
ALL_MARKET_TYPES: tuple[str, ...] = tuple(
    sorted(frozenset().union(*(frozenset(codes) for codes in QMT_PRICE_TYPES.values())))
)
# The types whose unfilled rest stays in the book as a limit order (a day order); the others cancel it at once.
REST_AS_LIMIT = frozenset({"best5_limit", "counterparty_best", "own_best"})


@dataclass(frozen=True)
class OrderTypeError:
    """Why an order's type fields cannot be placed: a 422 `code`, the request `field` it names, a message."""

    code: str
    field: str
    message: str


def _exchange(ts_code: str) -> str:
    return ts_code.rsplit(".", 1)[-1].upper()


def market_type_error(ts_code: str, market_type: str) -> OrderTypeError | None:
    """`market_type` is not one the code's exchange takes: 422 `market_type_invalid` naming `market_type`."""
    exchange = _exchange(ts_code)
    valid = MARKET_TYPES.get(exchange, frozenset())
    if market_type in valid:
        return None
    return OrderTypeError(
        "market_type_invalid",
        "market_type",
        f"market_type: {market_type} is not a market order type of the {exchange} exchange "
        f"(it takes: {', '.join(sorted(valid)) or 'none'})",
    )


def time_in_force_error(order_type: OrderType, time_in_force: str) -> OrderTypeError | None:
    """Anything but a day order: 422 `time_in_force_unsupported` naming `time_in_force` (module docstring: the
    exchanges have no limit IOC/FOK; a market order's behaviour is its `market_type`)."""
    if time_in_force == DEFAULT_TIME_IN_FORCE:
        return None
    if order_type is OrderType.LIMIT:
        why = (
            "A-share limit orders are day orders: the exchanges take no immediate-or-cancel or fill-or-kill limit "
            f"order. For {time_in_force} place a market order on SZ with market_type {time_in_force}"
        )
    else:
        why = "a market order's handling of what it cannot fill is its market_type (ioc and fok are SZ market types)"
    return OrderTypeError(
        "time_in_force_unsupported", "time_in_force", f"time_in_force: {time_in_force} is not supported: {why}"
    )


def needs_protection(ts_code: str, order_type: OrderType) -> bool:
    """A STAR market order: its `price` is its protection price, and it must have one."""
    if order_type is not OrderType.MARKET:
        return False
    try:
        return parse_ts_code(ts_code).board is Board.STAR
    except InvalidTsCode:
        return False


def order_type_error(
    ts_code: str, order_type: OrderType, price: Decimal | None, market_type: str | None, time_in_force: str
) -> OrderTypeError | None:
    """The order type fields of a request checked together, the first problem found (None: fine). `market_type`
    None: the default (counterparty best) for a market order; a limit order naming one is refused."""
    if order_type is OrderType.LIMIT:
        if market_type is not None:
            return OrderTypeError(
                "market_type_invalid", "market_type", "market_type: only a market order has a market type"
            )
    else:
        error = market_type_error(ts_code, market_type or DEFAULT_MARKET_TYPE)
        if error is not None:
            return error
        if needs_protection(ts_code, order_type) and price is None:
            return OrderTypeError(
                "protection_price_required",
                "price",
                f"price: a STAR market order ({ts_code}) needs a protection price (保护限价): the most a buy pays, "
                "the least a sell takes",
            )
    return time_in_force_error(order_type, time_in_force)


def qmt_price_type(ts_code: str, market_type: str) -> int:
    """MiniQMT's price type for a market order of `market_type` on the code's exchange. Raises ValueError for a type
    the exchange does not take (refused before any order gets here)."""
    exchange = _exchange(ts_code)
    code = QMT_PRICE_TYPES.get(exchange, {}).get(market_type)
    if code is None:
        raise ValueError(f"{market_type} is not a market order type of the {exchange} exchange")
    return code
