"""The rules' inputs, built from what risk holds hot: the order as the rules see it (`RuleOrder`: its value, its
security's reference data of the session), and the account's state (`RiskState`: equity marked at the last prices,
positions and open orders with their values and industries, the recent orders, the counters, the losses' marks).
No I/O here: the desk reads the book, the reference data and the activity, then calls these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache

from services.risk.rules.base import (
    Counters,
    HeldPosition,
    OpenOrder,
    RecentOrder,
    Reference,
    RiskState,
    RuleOrder,
    TradingState,
)
from services.risk.state.activity import Activity
from services.risk.state.ports import BookView, OpenOrderView
from shared.core.domain import OrderSide, OrderType, from_fen
from shared.core.domain.codes import Board
from shared.platform.quotes import Quote
from shared.platform.quotes import Reference as ReferenceQuote


def reference_of(quote: Quote | None) -> Reference:
    """The rules' reference data of a security from its quote (a `Reference` from the data service's reference data
    carries the industry and the 20-day average volume; a plain quote does not)."""
    if quote is None:
        return Reference(last_price=None)
    industry = quote.industry if isinstance(quote, ReferenceQuote) else None
    avg = quote.avg_vol_20d if isinstance(quote, ReferenceQuote) else None
    return Reference(
        last_price=quote.last_close,
        is_st=quote.is_st,
        suspended=quote.suspended,
        industry=industry,
        avg_volume_20d=avg,
    )


def _industry(quote: Quote | None) -> str | None:
    """`reference_of(quote).industry`, without building the rest (it is asked for every holding of every order)."""
    return quote.industry if isinstance(quote, ReferenceQuote) else None


def order_value(side: OrderSide, order_type: OrderType, qty: int, price: Decimal | None, quote: Quote | None) -> (
    Decimal
):  # fmt: skip
    """What an order commits: qty x its limit price; a market buy at the session's limit-up, a market sell at the
    last price (0 when neither is known: the checks before have refused such an order)."""
    if order_type is OrderType.LIMIT and price is not None:
        return qty * price
    if quote is None:
        return Decimal(0)
    unit = quote.limit_up if side is OrderSide.BUY else quote.last_close
    return Decimal(0) if unit is None else qty * unit


def rule_order(
    *,
    ts_code: str,
    board: Board,
    side: OrderSide,
    order_type: OrderType,
    qty: int,
    price: Decimal | None,
    quote: Quote | None,
    at: datetime,
    session: date,
) -> RuleOrder:
    return RuleOrder(
        ts_code=ts_code,
        board=board,
        side=side,
        order_type=order_type,
        qty=qty,
        price=price,
        value=order_value(side, order_type, qty, price, quote),
        at=at,
        session=session,
        reference=reference_of(quote),
        protection_price=protection_price(board, side, order_type, quote, price),
    )


def protection_price(
    board: Board, side: OrderSide, order_type: OrderType, quote: Quote | None, price: Decimal | None = None
) -> Decimal | None:
    """A STAR market order's protection price (保护限价): the order's `price` (a STAR market order request must name
    one: 422 protection_price_required before any check), else — an order built without a request — the session's
    price limit the order may not cross (the limit-up for a buy, the limit-down for a sell). None: not a STAR market
    order, or no price and no limit known (then the exchange rule refuses it)."""
    if board is not Board.STAR or order_type is not OrderType.MARKET:
        return None
    if price is not None:
        return price
    if quote is None:
        return None
    return quote.limit_up if side is OrderSide.BUY else quote.limit_down


def priced(view: BookView, quotes: Mapping[str, Quote | None]) -> bool:
    """Whether every holding has a last price (else the equity is not known: the losses rule cannot judge it)."""
    return all((q := quotes.get(code)) is not None and q.last_close is not None for code in view.holdings)


def equity_of(view: BookView, quotes: Mapping[str, Quote | None]) -> Decimal:
    """Cash (the balance) plus the holdings at their last prices (a holding without a known price counts 0: the
    smaller equity is the stricter for the limits against equity; the losses rule does not run then, see `priced`)."""
    held = Decimal(0)
    for code, holding in view.holdings.items():
        quote = quotes.get(code)
        if quote is not None and quote.last_close is not None:
            held += holding.qty * quote.last_close
    return from_fen(view.balance_fen) + held


def risk_state(
    view: BookView,
    quotes: Mapping[str, Quote | None],
    activity: Activity,
    *,
    equity: Decimal,
    client_order_id: str,
    session: date,
    trading_state: TradingState = TradingState.ACTIVE,
    ages_to: tuple[datetime, datetime] | None = None,
) -> RiskState:
    """The account's state for the rules: `quotes` holds the quote of every security held or with an open order;
    the recent orders are the others (not an earlier attempt of this client_order_id) for the same `session`."""
    positions: dict[str, HeldPosition] = {}
    for code, holding in view.holdings.items():
        quote = quotes.get(code)
        positions[code] = _held(holding.qty, None if quote is None else quote.last_close, _industry(quote))
    open_orders = []
    for o in view.open_orders:
        quote = quotes.get(o.ts_code)
        open_orders.append(_open_order(o, None if quote is None else quote.last_close, _industry(quote)))
    return RiskState(
        equity=equity,
        positions=positions,
        open_orders=tuple(open_orders),
        recent_orders=tuple(
            _aged(r, ages_to)
            for r in activity.recent
            if r.client_order_id != client_order_id and r.session in (None, session)
        ),
        counters=activity.counters,
        trading_state=trading_state,
        pnl_today=Decimal(0) if activity.opening_equity is None else equity - activity.opening_equity,
        equity_high_water=activity.high_water,
    )


# A decision reads every holding and open order of the account: the same ones, with the same prices, order after
# order (a batch of 500 buys would otherwise build 125,000 of them). Pure functions of their arguments, cached.
@lru_cache(maxsize=1 << 16)
def _held(qty: int, last_close: Decimal | None, industry: str | None) -> HeldPosition:
    return HeldPosition(qty=qty, market_value=Decimal(0) if last_close is None else qty * last_close, industry=industry)


@lru_cache(maxsize=1 << 16)
def _open_order(o: OpenOrderView, last_close: Decimal | None, industry: str | None) -> OpenOrder:
    """A buy commits its cap a share; a sell its shares at the last close (0 without one)."""
    if o.side is OrderSide.BUY:
        price: Decimal | None = from_fen(o.cap_fen)
        unit = price
    else:
        price = None
        unit = Decimal(0) if last_close is None else last_close
    assert unit is not None
    return OpenOrder(
        ts_code=o.ts_code,
        side=o.side,
        price=price,
        remaining_qty=o.remaining_qty,
        value=o.remaining_qty * unit,
        industry=industry,
    )


def _aged(order: RecentOrder, ages_to: tuple[datetime, datetime] | None) -> RecentOrder:
    """A recent order (kept by the wall clock's time it was sent) at the same age on the order's clock: `ages_to` is
    (now on the wall, now on the order's clock, the market's), so the duplicate rule measures real seconds whatever
    clock the market runs on (a replayed market's time stands still or jumps)."""
    if ages_to is None:
        return order
    wall_now, market_now = ages_to
    return replace(order, at=market_now - (wall_now - order.at))


def recent_order(
    ts_code: str, side: OrderSide, price: Decimal | None, qty: int, at: datetime, client_order_id: str, session: date
) -> RecentOrder:
    return RecentOrder(
        ts_code=ts_code, side=side, price=price, qty=qty, at=at, client_order_id=client_order_id, session=session
    )


__all__ = ["Counters", "equity_of", "order_value", "recent_order", "reference_of", "risk_state", "rule_order"]
