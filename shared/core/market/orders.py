"""An order's shape and the money and shares it needs, in one place for risk (its pre-trade checks) and execution
(its admission, under the account's lock): a limit order has a price and a market order none, what a buy can cost at
most (qty x its price cap, plus the fees of that amount), and the oversell rule (no sell of more shares than are
sellable now: T+1, less what open sell orders reserve). Pure: no I/O."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from shared.core.domain.models import OrderSide, OrderType
from shared.core.domain.money import from_fen, money, to_fen
from shared.core.market.order_types import needs_protection
from shared.core.market.rules import trade_fees


class Holding(BaseModel):
    """An account's position in one security: the shares held, and how many of them may be sold now (T+1: shares
    bought today are not; open sell orders have reserved theirs). Execution computes it from its trades and serves it
    on `GET /v1/positions`; risk reads it from there (a security not listed is held at zero)."""

    model_config = ConfigDict(frozen=True)

    ts_code: str
    qty: int
    sellable_qty: int


def price_shape_error(order_type: OrderType, price: Decimal | None, ts_code: str | None = None) -> str | None:
    """Why the price does not fit the order type (a limit order needs one, a market order takes none but on STAR,
    where `price` is its protection price: `order_types.needs_protection`), or None. A STAR market order without
    one is `order_types.order_type_error`'s (422 protection_price_required). Whether a price is on the tick is
    `rules.on_tick`: risk reports it as a reason, execution refuses the shape."""
    if order_type is OrderType.LIMIT and price is None:
        return "a limit order needs a price"
    if order_type is OrderType.MARKET and price is not None and not (ts_code and needs_protection(ts_code, order_type)):
        return "a market order takes no price (only a STAR market order: its protection price)"
    return None


def buy_cost(qty: int, price_cap: Decimal, trade_date: date) -> Decimal:
    """The most a buy of `qty` shares at no more than `price_cap` a share can cost: the amount plus its fees
    (`rules.trade_fees`: commission with its 5 CNY minimum, transfer fee; no stamp duty on buys), in CNY to the fen.
    Nothing for no shares or no known cap (<= 0): not even the commission minimum, which is only due on a trade."""
    if qty <= 0 or price_cap <= 0:
        return money(0)
    amount = qty * price_cap
    return money(amount + trade_fees(amount, is_sell=False, trade_date=trade_date).total)


def buy_reservation_fen(qty: int, cap_fen: int, trade_date: date) -> int:
    """`buy_cost` in fen: what execution reserves for an open buy and risk's book holds for it."""
    return to_fen(buy_cost(qty, from_fen(cap_fen), trade_date))


def fill_cash_fen(side: OrderSide, amount_fen: int, fees_total_fen: int) -> int:
    """What a fill does to the cash balance: a buy pays amount + fees, a sell receives amount - fees."""
    if side is OrderSide.BUY:
        return -(amount_fen + fees_total_fen)
    return amount_fen - fees_total_fen


def oversell_error(ts_code: str, qty: int, holding: Holding | None) -> str | None:
    """Why a sell of `qty` shares cannot go (more than the sellable shares; `holding` None: none held), or None."""
    held = 0 if holding is None else holding.qty
    sellable = 0 if holding is None else holding.sellable_qty
    if qty <= sellable:
        return None
    return (
        f"cannot sell {qty} shares of {ts_code}: {sellable} sellable now (held {held}; shares bought today "
        "become sellable on the next trading day, open sell orders reserve theirs)"
    )
