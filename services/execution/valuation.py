"""Positions valued and an account summed up (docs/order-path.md, "Positions and the account"). Pure: the store reads
the trades and corporate actions, the desk the prices; this module does the arithmetic, in integer fen.

Cost basis is the average cost, fees in: a buy adds its amount and its fees to the position's cost; a sell takes out
the cost of the shares it sold (cost x sold / held, rounded half-up to the fen, so the rest of the cost stays exact)
and realises its amount, less its fees, less that cost. A corporate action's bonus shares add shares at no cost, and
its cash in lieu of a fraction of a share is realised. Within a session the corporate actions of its ex-date come
first, then the sells, then the buys: under T+1 a sell can only sell shares held before the session, so it is costed
at the average of those.

A position is valued at a price (`Price`): the latest live quote or else the last close. P&L today is the position's
value now, less its value at the reference price (the live quote's pre_close; without a live quote of today, the
price itself: nothing moved today) for the shares held at the session's start, plus the cash of today's trades (sells
in, buys out, fees out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from shared.core.domain import OrderSide
from shared.core.market.orders import Holding
from shared.platform.clock import EXCHANGE_TZ

LIVE = "live"
LAST_CLOSE = "last_close"


@dataclass(frozen=True)
class CostedTrade:
    ts_code: str
    side: OrderSide
    qty: int
    amount_fen: int
    fees_fen: int
    traded_at: datetime  # aware; its exchange date is its session


@dataclass(frozen=True)
class CostedAdjustment:
    ts_code: str
    ex_date: date
    qty: int  # shares added (qty_after - qty_before)
    cash_in_lieu_fen: int


@dataclass(frozen=True)
class Price:
    """What a position is valued at: `price` (CNY), where from (`live` or `last_close`), as of when, and the
    reference P&L today is counted from."""

    price: Decimal
    source: str
    as_of: datetime
    reference: Decimal


@dataclass
class Book:
    """One code's running book."""

    qty: int = 0
    cost_fen: int = 0
    realised_fen: int = 0
    start_qty: int = 0  # held at the start of session `today` (its corporate actions in)
    today_buy_qty: int = 0
    today_sell_qty: int = 0
    today_cash_fen: int = 0  # today's trades' cash: sells' amount less fees in, buys' amount and fees out
    traded_today: bool = False


@dataclass(frozen=True)
class PositionValue:
    ts_code: str
    qty: int
    sellable_qty: int
    frozen_qty: int
    today_buy_qty: int
    today_sell_qty: int
    cost_fen: int
    avg_cost: Decimal | None  # CNY a share, 4 places half-up; None when nothing is held
    realised_fen: int
    price: Price | None  # None: no price could be had
    market_value_fen: int | None
    unrealised_fen: int | None
    pnl_today_fen: int | None


@dataclass(frozen=True)
class AccountSummary:
    market_value_fen: int | None  # None: some held position has no price
    realised_fen: int
    unrealised_fen: int | None
    pnl_today_fen: int | None
    unpriced: list[str] = field(default_factory=list)  # codes held (or traded today) that have no price


def _half_up(value: Fraction) -> int:
    """A non-negative or negative Fraction rounded half-up (away from zero) to an integer."""
    whole = (2 * abs(value.numerator) + value.denominator) // (2 * value.denominator)
    return -whole if value < 0 else whole


def session_of(at: datetime) -> date:
    return at.astimezone(EXCHANGE_TZ).date()


def books(trades: Iterable[CostedTrade], adjustments: Iterable[CostedAdjustment], *, today: date) -> dict[str, Book]:
    """Every code's book after all its trades and corporate actions; `today` the session whose trades are today's."""
    # (session, rank, sequence): corporate actions (0), sells (1), buys (2) of a session, each in trade-time order
    events: list[tuple[date, int, int, CostedTrade | CostedAdjustment]] = []
    for i, a in enumerate(adjustments):
        events.append((a.ex_date, 0, i, a))
    ordered = sorted(trades, key=lambda t: t.traded_at)
    for i, t in enumerate(ordered):
        events.append((session_of(t.traded_at), 1 if t.side is OrderSide.SELL else 2, i, t))
    events.sort(key=lambda e: e[:3])
    out: dict[str, Book] = {}
    started: set[str] = set()
    for day, _, _, event in events:
        book = out.setdefault(event.ts_code, Book())
        if day >= today and event.ts_code not in started and not isinstance(event, CostedAdjustment):
            book.start_qty = book.qty  # the session's start: before its first trade
            started.add(event.ts_code)
        if isinstance(event, CostedAdjustment):
            book.qty += event.qty
            book.realised_fen += event.cash_in_lieu_fen
        elif event.side is OrderSide.BUY:
            book.qty += event.qty
            book.cost_fen += event.amount_fen + event.fees_fen
        else:
            released = (
                book.cost_fen if event.qty >= book.qty else _half_up(Fraction(book.cost_fen * event.qty, book.qty))
            )
            book.cost_fen -= released
            book.qty -= event.qty
            book.realised_fen += event.amount_fen - event.fees_fen - released
        if day == today and not isinstance(event, CostedAdjustment):
            book.traded_today = True
            if event.side is OrderSide.BUY:
                book.today_buy_qty += event.qty
                book.today_cash_fen -= event.amount_fen + event.fees_fen
            else:
                book.today_sell_qty += event.qty
                book.today_cash_fen += event.amount_fen - event.fees_fen
    for code, book in out.items():
        if code not in started:
            book.start_qty = book.qty  # no trade today: held since before it
    return out


def _fen(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def value_position(book: Book, holding: Holding | None, reserved: int, price: Price | None, code: str) -> PositionValue:
    """A position's figures; `holding` its qty and sellable qty (positions.holdings), `reserved` what open sells
    hold."""
    qty = holding.qty if holding is not None else book.qty
    sellable = holding.sellable_qty if holding is not None else 0
    avg = None if qty <= 0 else (Decimal(book.cost_fen) / Decimal(100 * qty)).quantize(Decimal("0.0001"), ROUND_HALF_UP)
    mv = unrealised = today = None
    if price is not None:
        mv = _fen(price.price * qty)
        unrealised = mv - book.cost_fen
        today = mv - _fen(price.reference * book.start_qty) + book.today_cash_fen
    return PositionValue(
        ts_code=code,
        qty=qty,
        sellable_qty=sellable,
        frozen_qty=min(max(reserved, 0), max(qty, 0)),
        today_buy_qty=book.today_buy_qty,
        today_sell_qty=book.today_sell_qty,
        cost_fen=book.cost_fen,
        avg_cost=avg,
        realised_fen=book.realised_fen,
        price=price,
        market_value_fen=mv,
        unrealised_fen=unrealised,
        pnl_today_fen=today,
    )


def codes_to_price(all_books: Mapping[str, Book]) -> list[str]:
    """The codes a valuation needs a price of: those held, and those traded today (their P&L today)."""
    return sorted(code for code, b in all_books.items() if b.qty != 0 or b.traded_today or b.start_qty != 0)


def summarise(all_books: Mapping[str, Book], prices: Mapping[str, Price]) -> AccountSummary:
    """The account's market value and P&L over every code (closed positions count in realised P&L; a code held at
    the session's start or traded today in P&L today)."""
    realised = sum(b.realised_fen for b in all_books.values())
    mv = unrealised = today = 0
    unpriced: list[str] = []
    for code in codes_to_price(all_books):
        book, price = all_books[code], prices.get(code)
        if price is None:
            unpriced.append(code)
            continue
        value = value_position(book, None, 0, price, code)
        assert value.market_value_fen is not None and value.unrealised_fen is not None
        assert value.pnl_today_fen is not None
        mv += value.market_value_fen
        unrealised += value.unrealised_fen
        today += value.pnl_today_fen
    if unpriced:
        return AccountSummary(None, realised, None, None, unpriced)
    return AccountSummary(mv, realised, unrealised, today)
