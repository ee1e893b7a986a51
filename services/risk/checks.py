"""Pre-trade checks: pure functions over the order and the data service's quote. Every failing check adds a
machine-readable reason; all reasons are collected, not just the first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.core.domain import InvalidTsCode, OrderSide, OrderType, SecurityCode, money, parse_ts_code
from shared.core.market.order_types import needs_protection
from shared.core.market.orders import Holding, buy_cost, oversell_error
from shared.core.market.rules import band_error, buy_qty_error, on_tick, sell_qty_error
from shared.platform.clock import OrderSession
from shared.platform.quotes import Quote, limits_unknown
from shared.platform.request_model import AccountId


class ReasonCode(StrEnum):
    INVALID_TS_CODE = "invalid_ts_code"
    UNKNOWN_SECURITY = "unknown_security"
    SUSPENDED = "suspended"
    LOT_SIZE = "lot_size"
    PRICE_TICK = "price_tick"
    PRICE_LIMIT = "price_limit"
    MAX_ORDER_VALUE = "max_order_value"
    INSUFFICIENT_POSITION = "insufficient_position"
    INSUFFICIENT_CASH = "insufficient_cash"
    PRICE_CAP_UNKNOWN = "price_cap_unknown"  # a market buy with no limit-up to reserve cash at
    # On the real clock: the latest quote's limits are not those of the order's session (its previous session's bars
    # are not in yet), and no trading day ahead in the calendar.
    LIMITS_UNKNOWN = "limits_unknown"  # shared.platform.quotes.LIMITS_UNKNOWN
    NO_SESSION = "no_session"
    RISK_UNAVAILABLE = "risk_unavailable"
    # Orders for a strategy instance: checked against its sleeve (its share of the account, carried in the order) as
    # well as the account.
    STRATEGY_INSTANCE_NOT_RUNNING = "strategy_instance_not_running"
    INSUFFICIENT_STRATEGY_CASH = "insufficient_strategy_cash"
    INSUFFICIENT_STRATEGY_POSITION = "insufficient_strategy_position"
    # The kill switch (services/risk/trading_states.py): the strictest state of global, the account, the instance.
    TRADING_HALTED = "trading_halted"
    TRADING_REDUCING = "trading_reducing"


@dataclass(frozen=True)
class Reason:
    code: str  # a ReasonCode, or a rule's finding code (services/risk/rules)
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message}


@dataclass(frozen=True)
class OrderIntent:
    """The order as the trader asked for it (not yet known to be valid)."""

    ts_code: str
    side: OrderSide
    order_type: OrderType
    qty: int
    price: Decimal | None = None


def static_checks(order: OrderIntent, *, max_order_value: Decimal) -> tuple[SecurityCode | None, list[Reason]]:
    """The checks that need no market data: the code and its board, the lot size of a buy, the tick, and the
    value of a limit order. Returns the parsed security (None when the code is not an A-share stock) and the
    reasons. A sell's lot size depends on the position (an odd lot may close it): see position_checks."""
    reasons: list[Reason] = []
    try:
        security: SecurityCode | None = parse_ts_code(order.ts_code)
    except InvalidTsCode as exc:
        security = None
        reasons.append(Reason(ReasonCode.INVALID_TS_CODE, str(exc)))
    if security is not None and order.side is OrderSide.BUY:
        lot_error = buy_qty_error(security.board, order.qty)
        if lot_error:
            reasons.append(Reason(ReasonCode.LOT_SIZE, f"{order.qty} shares of {security}: {lot_error}"))
    if order.price is not None and not on_tick(order.price):
        what = "price" if order.order_type is OrderType.LIMIT else "protection price"
        reasons.append(Reason(ReasonCode.PRICE_TICK, f"{what} {order.price} is not on the 0.01 tick"))
    if order.order_type is OrderType.LIMIT and order.price is not None:
        reasons.extend(_value_check(order.qty, order.price, "limit price", max_order_value))
    return security, reasons


def quote_checks(order: OrderIntent, quote: Quote | None, *, max_order_value: Decimal) -> list[Reason]:
    """The checks against the quote: known, not suspended, a limit price or a STAR market order's protection price
    inside the next session's price limits, and the value of a market order (at the last close). `quote` None: the
    data service does not know the security."""
    if quote is None:
        return [Reason(ReasonCode.UNKNOWN_SECURITY, f"{order.ts_code} is not a known security")]
    reasons: list[Reason] = []
    if quote.suspended:
        reasons.append(Reason(ReasonCode.SUSPENDED, f"{quote.ts_code} is suspended"))
    session = f" of the session on {quote.next_trade_date}" if quote.next_trade_date else " of the next session"
    # A limit price, and a STAR market order's protection price (保护限价), must lie within the session's price
    # limits (the exchange rejects either outside them); the tick of both is a static check, the cage a rule.
    what = "price" if order.order_type is OrderType.LIMIT else "protection price"
    if order.price is not None and (
        order.order_type is OrderType.LIMIT or needs_protection(order.ts_code, order.order_type)
    ):
        outside = band_error(order.price, quote.limit_up, quote.limit_down, what)
        if outside is not None:
            reasons.append(Reason(ReasonCode.PRICE_LIMIT, f"{outside}{session}"))
    if order.order_type is OrderType.MARKET:
        if quote.last_close is None:
            reasons.append(
                Reason(ReasonCode.MAX_ORDER_VALUE, f"{quote.ts_code} has no last close to value a market order at")
            )
        else:
            reasons.extend(_value_check(order.qty, quote.last_close, "last close", max_order_value))
    return reasons


def session_limits_checks(order: OrderIntent, quote: Quote | None, session: OrderSession) -> list[Reason]:
    """On the real clock: the quote's price limits (and a market buy's limit-up) must be those of the session the
    order is for (`session`). Between a session's close and its bars being stored, an order is for the next session
    while the latest quote still carries the limits of the one that closed: refused (`limits_unknown`) rather than
    checked against another session's limits. `quote` None (an unknown security): nothing to check here."""
    if quote is None:
        return []
    unknown = limits_unknown(quote.ts_code, quote.next_trade_date, session.day, session.previous)
    return [] if unknown is None else [Reason(ReasonCode.LIMITS_UNKNOWN, unknown)]


def position_checks(order: OrderIntent, security: SecurityCode, holding: Holding | None) -> list[Reason]:
    """A sell against the account's position (`holding` None: the account holds none of it): no more than the
    sellable shares (no naked short selling, T+1), and in lots unless it sells the whole sellable position
    (an odd lot may only go out in one order that closes it). Buys: nothing to check here."""
    if order.side is not OrderSide.SELL:
        return []
    oversold = oversell_error(str(security), order.qty, holding)
    if oversold:
        return [Reason(ReasonCode.INSUFFICIENT_POSITION, oversold)]
    sellable = 0 if holding is None else holding.sellable_qty
    lot_error = sell_qty_error(security.board, order.qty, sellable)
    if lot_error:
        return [Reason(ReasonCode.LOT_SIZE, f"{order.qty} shares of {security} ({sellable} sellable): {lot_error}")]
    return []


def buy_cap(order: OrderIntent, quote: Quote | None) -> tuple[Decimal, str] | Reason | None:
    """The most a buy may pay a share and what that is (the limit price, or for a market buy the next session's
    limit-up price), a reason when a market buy has none, or None when there is nothing to check (not a buy, no
    price, or an unknown security, rejected for that already)."""
    if order.side is not OrderSide.BUY:
        return None
    if order.order_type is OrderType.LIMIT:
        return None if order.price is None else (order.price, "limit price")
    if quote is None:
        return None
    if quote.limit_up is None:
        return Reason(
            ReasonCode.PRICE_CAP_UNKNOWN,
            f"a market buy of {order.ts_code} reserves cash at the limit-up price and its next session has "
            "no price limit: place a limit order",
        )
    return quote.limit_up, "limit-up price"


def cash_checks(order: OrderIntent, quote: Quote | None, available: Decimal, *, trade_date: date) -> list[Reason]:
    """A buy against the account's available cash (execution's `GET /v1/account`): it must cover qty x the
    limit price, or for a market buy the next session's limit-up price, plus fees. Sells: nothing here."""
    cap = buy_cap(order, quote)
    if cap is None:
        return []
    if isinstance(cap, Reason):
        return [cap]
    return _cash_reason(order, cap, available, trade_date, ReasonCode.INSUFFICIENT_CASH, "")


def _cash_reason(
    order: OrderIntent, cap: tuple[Decimal, str], available: Decimal, trade_date: date, code: ReasonCode, whose: str
) -> list[Reason]:
    price, priced_at = cap
    needed = buy_cost(order.qty, price, trade_date)
    if needed <= available:
        return []
    return [
        Reason(
            code,
            f"buying {order.qty} shares of {order.ts_code} at up to {price} ({priced_at}) needs {money(needed)} CNY "
            f"with fees; {money(available)} available{whose}",
        )
    ]


class Sleeve(BaseModel):
    """A strategy instance's share of its account as an order of it is checked against it (from the sleeve the order
    carries, services/risk/schemas.py CarriedSleeve): its state, the cash it may spend and the shares it holds."""

    model_config = ConfigDict(frozen=True)

    instance_id: str
    account_id: AccountId  # goes into the approval: the same characters as any account id
    owner: str | None = None
    state: str
    cash_available: Decimal = Field(allow_inf_nan=False)
    positions: list[Holding] = []

    def holding(self, ts_code: str) -> Holding | None:
        return next((p for p in self.positions if p.ts_code == ts_code), None)


RUNNING = "running"


def sleeve_state_checks(sleeve: Sleeve) -> list[Reason]:
    """A strategy instance places orders only while it is running."""
    if sleeve.state == RUNNING:
        return []
    return [
        Reason(
            ReasonCode.STRATEGY_INSTANCE_NOT_RUNNING,
            f"strategy instance {sleeve.instance_id} is {sleeve.state}, not running: it places no orders",
        )
    ]


def sleeve_checks(order: OrderIntent, quote: Quote | None, sleeve: Sleeve, *, trade_date: date) -> list[Reason]:
    """An order of a strategy instance against its sleeve: a buy's cost (the same arithmetic as the account's cash
    check: qty x price cap + fees) must fit the sleeve's cash, a sell its sellable shares. The account's own checks
    run as well (a market buy without a price cap is refused by those); the state by sleeve_state_checks."""
    cap = buy_cap(order, quote)
    if isinstance(cap, tuple):
        whose = f" to strategy instance {sleeve.instance_id}"
        return _cash_reason(order, cap, sleeve.cash_available, trade_date, ReasonCode.INSUFFICIENT_STRATEGY_CASH, whose)
    if order.side is OrderSide.SELL:
        oversold = oversell_error(order.ts_code, order.qty, sleeve.holding(order.ts_code))
        if oversold:
            return [
                Reason(ReasonCode.INSUFFICIENT_STRATEGY_POSITION, f"strategy instance {sleeve.instance_id}: {oversold}")
            ]
    return []


def order_value(qty: int, unit_price: Decimal) -> Decimal:
    return qty * unit_price


def _value_check(qty: int, unit_price: Decimal, priced_at: str, max_order_value: Decimal) -> list[Reason]:
    value = order_value(qty, unit_price)
    if value <= max_order_value:
        return []
    return [
        Reason(
            ReasonCode.MAX_ORDER_VALUE,
            f"order value {money(value)} ({qty} x {priced_at} {unit_price}) exceeds the maximum of "
            f"{money(max_order_value)} per order",
        )
    ]
