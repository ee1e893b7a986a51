"""The paper broker: fills orders on paper, keeping its own book (paper_orders, paper_fills in execution's schema) so
that it is idempotent by order_id across restarts. It follows the market clock (docs/order-path.md, "The paper
broker"):

On a replay clock (a session is set) it matches an order at that session's own bar with the backtest engine's rules
(`shared.core.market.matching.match_order`, the fill rules from the settings): filled in full; partly (the volume
cap) with the rest cancelled at once; not at all because the limit price was not reached (rests, a day order) or the
symbol has no bar that session (rests and is matched again on the next session it trades, `resume`); or cancelled
at the limit-up (a buy) or limit-down (a sell). Its fills are stamped with the session's time (09:30 for open fills,
15:00 for close and VWAP fills, Asia/Shanghai), so fees by date and T+1 follow the replayed day.

A strategy instance's order carries its own fill rules (`paper_fill`: fill price, slippage, volume cap, suspended
orders), which it is matched by instead of the platform's, on a replayed session and on the real clock; fees are the
account's either way (execution charges them).

On the real clock (`LH_PAPER_FILLS=session`, the default) an order belongs to a session: the day it was placed on,
if that is a trading day and its 15:00 close has not passed, else the next trading day. It rests (`awaiting: ...`)
until that session has closed and its bar is in the data service, and is then matched on that bar by the same rules
(`resume`, called by execution's day-order pass, which runs again as soon as a `bars.updated` arrives): an order
placed before the continuous session (09:30) at the rule's price (the open by default); one placed during it at the
close (the open had passed when it arrived; VWAP stays VWAP). What a session's bar does not fill is a day order that
expired with it. A paper account may instead refuse orders placed while the market is closed (`paper_accounts`).

With `LH_PAPER_FILLS=quotes` (standalone's `make run`) an order is matched against the real-time quotes (docs/quotes.md)
on either clock, only in continuous trading (09:30-11:30, 13:00-14:57) of its own session (placed after the close:
the next one; an account refusing orders on a closed market refuses it) and only on quotes of that session: at once
against the latest quote of its code when it arrives, taking the other side's levels at prices that reach its
limit, at most the volume quoted at each (`shared.core.market.matching.match_on_book`); then a limit order rests and
is matched against each `quotes.snapshot` of its code that execution hears (`match_snapshot`), but only up to the
volume that traded since the round before (shared among the resting orders oldest first): partial fills, the rest
resting until it fills, is cancelled or expires at the close. A market order fills on arrival
against the latest quote's levels and what they do not fill is cancelled. A strategy instance's order (`paper_fill`)
is still matched on bars by its own rules, as in `session` mode (or on the replayed session).

With `LH_PAPER_FILLS=immediate` (tests and benchmarks of the order path only) it fills at once at the latest close
from the data service, whatever the time: a market order in full; a limit buy when its limit is at or above it, a
limit sell when its limit is at or below it; any other limit order rests until execution expires it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from services.execution.brokers.base import (
    AlreadyBooked,
    Booking,
    BrokerReport,
    BrokerUnavailable,
    CancelTooLate,
    Fill,
    MarketDataError,
)
from services.execution.brokers.paper_tables import paper_accounts, paper_fills, paper_orders
from services.execution.events import EXCHANGE_TZ
from services.execution.sessions import expiry_reason
from shared.core.domain import Order, OrderSide, OrderStatus, OrderType, from_fen, price, to_fen
from shared.core.domain.codes import Board
from shared.core.market.matching import (
    REASON_CODES,
    REASONS,
    BookFill,
    FillRules,
    MarketMatch,
    SessionBar,
    match_market_on_book,
    match_on_book,
    match_order,
)
from shared.core.market.order_types import DEFAULT_MARKET_TYPE, REST_AS_LIMIT, needs_protection
from shared.core.market.rules import band_error, board_lots, lot_sizes
from shared.platform.approval import PaperFill
from shared.platform.calendar import BarsCalendar, CalendarUnavailable, OrderSessions
from shared.platform.clock import continuous_trading, market_today, no_session, session_close, utcnow
from shared.platform.db import Database, DbSession
from shared.platform.errors import ServiceError
from shared.platform.events.envelope import Envelope
from shared.platform.events.schemas import LiveQuote, QuotesSnapshot
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers
from shared.platform.quotes import Quote, QuoteSource, QuoteUnavailable, ReferenceData, ReferenceQuotes

NEVER_REACHED_BROKER = "cancelled before it reached the broker"
DAYS_OF_BARS_KEPT = 2  # sessions whose bars the paper broker holds (a replay's current one and the one before)
CLIENT_CANCEL = "cancelled by the client"
# the data service's answers to a live quote read that mean "no quote" rather than "no data service"
LIVE_QUOTE_MISSING = ("no_live_quote", "quotes_feed_off", "unknown_security")
FILL_MODES = ("session", "immediate", "quotes")  # LH_PAPER_FILLS
# LH_PAPER_FILLS=quotes: a limit order resting until the live quotes reach its price (matched on each snapshot).
ON_QUOTES = "quotes: "
RESTING_ON_QUOTES = f"{ON_QUOTES}resting until the live quotes reach its price"
OPEN_STATUSES = (OrderStatus.SUBMITTED.value, OrderStatus.PARTIALLY_FILLED.value)
TRADED_KEPT = 8  # rounds per code whose traded volume is kept (a redelivered round is matched by what it traded)


class LiveQuotes:
    """The latest real-time quote of each code as the `quotes.snapshot` events brought it (docs/quotes.md), in this
    process's memory: what an order arriving is matched against at once, with no read of the data service."""

    def __init__(self) -> None:
        self._latest: dict[str, LiveQuote] = {}
        # code -> {quote time: shares traded since the quote before it}, the last TRADED_KEPT rounds of each code
        self._traded: dict[str, dict[datetime, int]] = {}

    def put(self, quote: LiveQuote) -> bool:
        """Keep `quote` if it is newer than the code's held one of the same day, or of another day (a replay moved
        to an earlier session); whether it was. What traded since the held quote (the increase of the day's
        cumulative volume; all of it when the held one is of another day) is noted for `traded`."""
        held = self._latest.get(quote.ts_code)
        if held is not None and held.time >= quote.time and _exchange_day(held.time) == _exchange_day(quote.time):
            return False
        self._latest[quote.ts_code] = quote
        if held is not None:
            same_day = _exchange_day(held.time) == _exchange_day(quote.time) and held.time < quote.time
            since = quote.volume - held.volume if same_day else quote.volume
            rounds = self._traded.setdefault(quote.ts_code, {})
            rounds[quote.time] = max(0, since)
            for old in sorted(rounds)[:-TRADED_KEPT]:
                del rounds[old]
        return True

    def traded(self, quote: LiveQuote) -> int:
        """The shares of `quote`'s code that traded between the round before it and it, as this process heard the
        rounds; 0 when it did not hear the one before (just started: the next round has a baseline)."""
        return self._traded.get(quote.ts_code, {}).get(quote.time, 0)

    def get(self, ts_code: str) -> LiveQuote | None:
        return self._latest.get(ts_code)


async def _written(_: DbSession) -> None:
    """The book write of an order whose book rows are written already (matched on quotes)."""


def _exchange_day(at: datetime) -> date:
    return at.astimezone(EXCHANGE_TZ).date()


def quote_key(quote: LiveQuote) -> str:
    """A snapshot of one code, as a fill id names it: its time (UTC, to the microsecond). A feed sends a code's quote
    once per time (a repeat is skipped by the data service), so (order, quote time, level) names one fill."""
    return quote.time.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")


def quote_fill_id(order_id: str, quote: LiveQuote, level: int) -> str:
    return f"paper-{order_id}-q{quote_key(quote)}-{level}"


def book_of(quote: LiveQuote, side: OrderSide) -> list[tuple[int, int]]:
    """The levels an order of `side` takes from: the asks for a buy, the bids for a sell, (price fen, shares)."""
    levels = quote.ask if side is OrderSide.BUY else quote.bid
    return [(to_fen(level.price), level.volume) for level in levels]


@dataclass(frozen=True)
class PaperQuote:
    last_close: Decimal | None  # None only for a security that never traded (then it is suspended)
    suspended: bool
    limit_up: Decimal | None = None  # the next session's limit-up price; None on sessions without limits
    limits_for: date | None = None  # the session limit_up is for (the quote's next_trade_date)
    last_trade_date: date | None = None  # the symbol's newest stored session
    limit_down: Decimal | None = None  # the next session's limit-down price; None on sessions without limits


@dataclass(frozen=True)
class PaperSession:
    """A symbol on a replayed session: its board (for the lot sizes) and its bar with that day's limits."""

    board: Board
    bar: SessionBar | None  # None: no bar that day (suspended)


class PaperQuoteSource(Protocol):
    """What the paper broker fills at: not the data service's whole quote (`shared.platform.quotes.QuoteSource`)
    but its latest close and limit-up checked onto the tick, and failures as the broker's own (BrokerUnavailable)."""

    async def latest(self, ts_code: str, session: date | None = None) -> PaperQuote | None:
        """The latest close, or None for a security the data service does not know; with `session`, as the data
        stood before that trading day (its limit-up is that day's). Raises BrokerUnavailable."""


class LiveQuoteSource(Protocol):
    """The data service's latest real-time quote of a code: read by the paper broker on quotes only for an order
    whose code it holds no quote of today from the events yet (a process just started, a round not heard yet)."""

    async def live(self, ts_code: str) -> LiveQuote | None:
        """None when no feed has quoted it. Raises BrokerUnavailable."""


class PaperSessionSource(Protocol):
    """A replayed session's own bar, which the paper broker matches orders at on a replay clock."""

    async def session(self, ts_code: str, day: date) -> PaperSession | None:
        """The symbol's bar on trading day `day` (unadjusted, fen) with that day's limits, or None for a security
        the data service does not know. Raises BrokerUnavailable."""


class PaperQuotes:
    """The latest closes the paper broker fills at, from the data service's reference data held in memory
    (`shared.platform.quotes.ReferenceQuotes`: no quote read per order), and a session's bars (every bar of the day
    in one request, `GET /v1/cross-section`, held like the reference data) with that session's limits (the reference
    data of that session)."""

    def __init__(
        self, services: ServiceDirectory, internal_secret: str, *, today: Callable[[], date] | None = None
    ) -> None:
        self.services = services
        self.internal_secret = internal_secret
        self.reference = ReferenceQuotes(services, internal_secret, "execution", today=today)
        self.quotes: QuoteSource = self.reference
        self._day_bars: dict[date, tuple[int, dict[str, dict[str, Any]]]] = {}  # day -> (data version, bar by code)

    async def announced(self, event: Envelope) -> None:
        """The data service's `bars.updated`: what is held is confirmed or loaded again before its next use."""
        await self.reference.announced(event)

    async def _quote(self, ts_code: str, session: date | None) -> Quote | None:
        try:
            # Without a session, asked exactly as before the market clock existed.
            return await (self.quotes.quote(ts_code) if session is None else self.quotes.quote(ts_code, session))
        except QuoteUnavailable as exc:
            raise BrokerUnavailable(f"no market data for {ts_code}: {exc}") from exc

    async def session(self, ts_code: str, day: date) -> PaperSession | None:
        quote = await self._quote(ts_code, day)
        if quote is None:
            return None
        if quote.suspended:
            return PaperSession(quote.board, None)
        row = await self._day_bar(ts_code, day)
        if row is None:
            return PaperSession(quote.board, None)
        try:
            bar = SessionBar(
                trade_date=day,
                open=to_fen(price(row["open"])),
                high=to_fen(price(row["high"])),
                low=to_fen(price(row["low"])),
                close=to_fen(price(row["close"])),
                vol=int(row["vol"]),
                amount_fen=to_fen(Decimal(str(row["amount"]))),
                up_limit=None if quote.limit_up is None else to_fen(price(quote.limit_up)),
                down_limit=None if quote.limit_down is None else to_fen(price(quote.limit_down)),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise MarketDataError(f"malformed market data for {ts_code} on {day}: {exc!r}") from exc
        return PaperSession(quote.board, bar)

    async def _day_bar(self, ts_code: str, day: date) -> dict[str, Any] | None:
        """The symbol's bar on `day` (the cross-section's row: CNY strings), None without one. Every bar of the day
        is read in one request (`GET /v1/cross-section`) and held while the reference data of `day` keeps its
        data version (`session`'s quote has just confirmed it current)."""
        version = (await self._reference_data(day)).data_version
        held = self._day_bars.get(day)
        if held is None or held[0] != version:
            try:
                body = await self.services.client("data").get_json(
                    "/v1/cross-section",
                    params={"trade_date": day.isoformat()},
                    headers=service_headers(self.internal_secret, "execution"),
                )
            except ServiceError as exc:
                raise BrokerUnavailable(f"no bar of {ts_code} on {day}: the data service answered {exc.code}") from exc
            except ValueError as exc:
                raise BrokerUnavailable(
                    f"no bar of {ts_code} on {day}: the data service answered without JSON"
                ) from exc
            try:
                rows = {str(r["ts_code"]): r for r in body["bars"]}
            except (KeyError, TypeError) as exc:
                raise MarketDataError(f"malformed market data for {ts_code} on {day}: {exc!r}") from exc
            # Labelled with the version read before asking: a write in between makes it read again, not kept.
            held = (version, rows)
            self._day_bars[day] = held
            for old in sorted(self._day_bars)[:-DAYS_OF_BARS_KEPT]:
                del self._day_bars[old]
        return held[1].get(ts_code)

    async def _reference_data(self, day: date) -> ReferenceData:
        try:
            return await self.reference.reference_data(day)
        except QuoteUnavailable as exc:
            raise BrokerUnavailable(f"no market data for {day}: {exc}") from exc

    async def live(self, ts_code: str) -> LiveQuote | None:
        """The data service's latest real-time quote of `ts_code` (`GET /v1/quotes/{ts_code}/live`), None when no
        feed has quoted it (or the feed is off, or the code is unknown). Raises BrokerUnavailable."""
        try:
            answer = await self.services.client("data").request(
                "GET", f"/v1/quotes/{ts_code}/live", headers=service_headers(self.internal_secret, "execution")
            )
        except ServiceError as exc:  # the data service did not answer
            raise BrokerUnavailable(f"no live quote of {ts_code}: {exc.code}") from exc
        try:
            body = answer.json()
        except ValueError as exc:
            raise BrokerUnavailable(f"no live quote of {ts_code}: the data service answered without JSON") from exc
        if answer.status_code != 200:
            code = body.get("code") if isinstance(body, dict) else None
            if answer.status_code in (404, 503) and code in LIVE_QUOTE_MISSING:
                return None
            raise BrokerUnavailable(f"no live quote of {ts_code}: the data service answered {answer.status_code}")
        try:
            fields = {k: v for k, v in body.items() if k not in ("as_of", "age_s")}
            return LiveQuote.model_validate(fields)
        except (AttributeError, ValueError) as exc:
            raise MarketDataError(f"malformed live quote of {ts_code}: {exc}") from exc

    async def latest(self, ts_code: str, session: date | None = None) -> PaperQuote | None:
        quote = await self._quote(ts_code, session)
        if quote is None:
            return None
        try:
            last_close = None if quote.last_close is None else price(quote.last_close)
            limit_up = None if quote.limit_up is None else price(quote.limit_up)
            limit_down = None if quote.limit_down is None else price(quote.limit_down)
        except ValueError as exc:  # a price off the tick
            raise MarketDataError(f"malformed market data for {ts_code}: {exc}") from exc
        if last_close is None and not quote.suspended:
            raise MarketDataError(f"market data for {ts_code} has no usable last close")
        return PaperQuote(
            last_close=last_close,
            suspended=quote.suspended,
            limit_up=limit_up,
            limits_for=quote.next_trade_date,
            last_trade_date=quote.last_trade_date,
            limit_down=limit_down,
        )


def paper_fill_price(
    order_type: OrderType, side: OrderSide, limit_price: Decimal | None, last_close: Decimal
) -> Decimal | None:
    """The price a paper order fills at now, or None when it does not (a limit order rests). A market order fills
    at the last close, unless a STAR market order's protection price (`limit_price`) is below it (a buy; above: a
    sell)."""
    if order_type is OrderType.MARKET:
        if limit_price is not None and (
            last_close > limit_price if side is OrderSide.BUY else last_close < limit_price
        ):
            return None
        return last_close
    if limit_price is None:
        raise ValueError("a limit order needs a limit price")
    if side is OrderSide.BUY:
        return last_close if limit_price >= last_close else None
    return last_close if limit_price <= last_close else None


def _cancels_rest(order: Order) -> bool:
    """A market order whose type cancels what it cannot fill at once (best5_cancel, ioc, fok); the others
    (best5_limit, counterparty_best, own_best) rest it as a limit order (`order_types.REST_AS_LIMIT`)."""
    return order.order_type is OrderType.MARKET and (order.market_type or DEFAULT_MARKET_TYPE) not in REST_AS_LIMIT


def cap_refusal(order: Order, fill_price: Decimal | None, price_cap: Decimal | None) -> str | None:
    """Why a buy may not fill at `fill_price`: above the price cap its cash was reserved at, or a market buy with
    no cap at all (nothing bounds what it would pay). None when it may (or when it rests)."""
    if order.side is not OrderSide.BUY:
        return None
    if price_cap is None:
        if order.order_type is OrderType.MARKET:
            return "a market buy without a price cap: no cash was reserved to bound what it pays"
        return None  # a limit buy never fills above its limit
    if fill_price is not None and fill_price > price_cap:
        return f"would fill at {fill_price}, above {price_cap}, the price cap its cash was reserved at"
    return None


SESSION_CLOSE = time(15, 0)
AUCTION_END = time(9, 25)  # the opening call auction has run: an order placed from here on missed the open
CANCELS_UNTIL = (time(9, 20), time(14, 57))  # no cancels in the opening call's last minutes, nor in the closing call
ORDERS_FROM = time(9, 15)  # the exchanges take orders from the call auction's start (09:15) to the close (15:00)
# A resting order whose symbol had no bar on the session it was matched on: matched again on the next (`resume`).
WAITING = "waiting: "
# On the real clock: an order resting until its session has closed and that session's bar is in.
AWAITING = "awaiting: "
CLOSED_MARKET = ("rest", "refuse")  # how a paper account treats an order placed while the market is closed


def awaiting_reason(day: date) -> str:
    return f"{AWAITING}matched on the bar of session {day.isoformat()} once that session has closed and its bar is in"


def market_open(now: datetime, session: date) -> bool:
    """The exchanges take orders now, `session` being the session of an order placed now (`order_session`): a
    trading day (the session is today's: its close has not passed), from 09:15 to the 15:00 close (Asia/Shanghai)."""
    local = now.astimezone(EXCHANGE_TZ)
    return local.date() == session and ORDERS_FROM <= local.time() < SESSION_CLOSE


def waiting_reason(ts_code: str, day: date) -> str:
    return f"{WAITING}{ts_code} has no bar on {day.isoformat()} (suspended); matched again on the next session"


def fill_time(day: date, fill_price: str) -> datetime:
    """When a replayed session's fill happened: its open (09:30) for open fills, its close (15:00) for close and
    VWAP fills, Asia/Shanghai."""
    at = time(9, 30) if fill_price == "open" else SESSION_CLOSE
    return datetime.combine(day, at, tzinfo=EXCHANGE_TZ)


def match_reason(code: str, day: date) -> str:
    """The reason an order carries for a matching outcome: the machine-readable name first (`limit_up: ...`)."""
    return f"{code}: {REASONS[REASON_CODES.index(code)]} (session {day.isoformat()})"


@dataclass(frozen=True)
class Outcome:
    status: OrderStatus
    fills: tuple[Fill, ...] = ()
    reason: str | None = None


class PaperBroker:
    name = "paper"

    def __init__(
        self,
        db: Database,
        quotes: PaperQuoteSource,
        *,
        clock: Callable[[], datetime] = utcnow,
        market_session: Callable[[], date | None] = no_session,
        sessions: PaperSessionSource | None = None,
        rules: FillRules | None = None,
        calendar: BarsCalendar | None = None,
        fills: str = "immediate",
        order_sessions: OrderSessions | None = None,
        live_quotes: LiveQuoteSource | None = None,
    ) -> None:
        """`market_session`: the market clock's replayed session (None on the real clock). On a replay clock the broker
        matches at the session's bar from `sessions` with `rules` (both needed then). `fills` (LH_PAPER_FILLS): on the
        real clock, "session" (match at the bar of the order's session, with `sessions`, `rules` and the trade
        `calendar`) or "immediate" (at once at the latest close). `order_sessions`: the calendar's trading days kept
        in memory that an order's session is found in (default: kept here, from `calendar`; execution's app gives
        the desk's)."""
        if fills not in FILL_MODES:
            raise ValueError(f"fills: {fills!r} is not one of {', '.join(FILL_MODES)}")
        if fills in ("session", "quotes") and (sessions is None or calendar is None):
            raise ValueError("matching at the session's bar needs a source of session bars and a trade calendar")
        self.db = db
        self.quotes = quotes
        self.clock = clock
        self.market_session = market_session
        self.sessions = sessions
        self.rules = rules or FillRules()
        self.calendar = calendar
        self.order_sessions = (
            order_sessions if order_sessions is not None or calendar is None else OrderSessions(calendar)
        )
        self.fills = fills
        self.live = LiveQuotes()  # LH_PAPER_FILLS=quotes: the latest quote of every code, from `quotes.snapshot`
        self.live_quotes = live_quotes  # ... and the data service's, read only when none of today is held
        # one match at a time per code in this process: an arriving order and a round must not take the same level
        self._code_locks: dict[str, asyncio.Lock] = {}

    def _matching(self, ts_code: str) -> asyncio.Lock:
        lock = self._code_locks.get(ts_code)
        if lock is None:
            lock = self._code_locks[ts_code] = asyncio.Lock()
        return lock

    def order_rules(self, paper_fill: PaperFill | None) -> FillRules:
        """The rules an order is matched by: a strategy instance's own (`paper_fill`, which its order carries) on top
        of the platform's (which A-share rules apply), else the platform's (LH_PAPER_*)."""
        return self.rules if paper_fill is None else paper_fill.rules(self.rules)

    async def submit(
        self, order: Order, *, price_cap: Decimal | None = None, paper_fill: PaperFill | None = None
    ) -> BrokerReport:
        # Idempotent: an order the book has already (a resubmission after a crash, or a cancel's tombstone) makes the
        # insert fail on its primary key, and is answered with what the book says. No read first: every order
        # is new here but for those, and a read per order cost a transaction; a resubmission is matched again for
        # nothing (its market data asked once more), and an outage of that data leaves it for the next pass.
        booking = await self.book(order, price_cap=price_cap, paper_fill=paper_fill)
        try:
            async for attempt in self.db.transaction():
                async with attempt as s:
                    await booking.write(s)
        except AlreadyBooked:
            # Submitted concurrently (or cancelled first): the book already has the answer.
            known = await self.report(order.order_id)
            if known is None:
                raise BrokerUnavailable(f"paper order {order.order_id} vanished from the book") from None
            return known
        return booking.report

    async def book(
        self, order: Order, *, price_cap: Decimal | None = None, paper_fill: PaperFill | None = None
    ) -> Booking:
        """The order matched (as `submit` matches it), and the write of the book's rows for it, which the caller runs
        in a transaction of its own (execution's desk: the one that applies the report, `BookingBroker`)."""
        session = self.market_session()
        now = self.clock()
        resting_for: date | None = None
        outside = await self._protection_outside_band(order, session)
        if outside is not None:
            # as the exchange: an order whose protection price is outside the day's limits is invalid (rejected)
            outcome = Outcome(OrderStatus.REJECTED, reason=f"price_limit: {outside}")
        elif self.fills == "quotes" and paper_fill is None:
            # Matched on the live quotes under the code's lock, which also writes the book (its fills take volume
            # from a round another order may be matched against): nothing is left for the caller's transaction.
            return Booking(await self._submit_on_quotes(order, price_cap, now), _written)
        elif session is not None:
            outcome = await self._match_on_session(order, price_cap, session, self.order_rules(paper_fill))
        elif self.fills == "immediate":
            outcome = await self._match_on_latest_close(order, price_cap, now)
        else:
            outcome, resting_for = await self._rest_for_session(order, price_cap, now)

        order_row = _book_row(order, outcome.status, outcome.reason, now, resting_for)
        fill_rows = tuple(_fill_row(order.order_id, f) for f in outcome.fills)

        async def write(s: DbSession) -> None:
            await _write_book(s, [order_row], fill_rows)

        report = BrokerReport(status=outcome.status, fills=outcome.fills, reason=outcome.reason)
        return Booking(report, write, (order_row, fill_rows))

    def write_many(self, bookings: Sequence[Booking]) -> Callable[[DbSession], Awaitable[None]]:
        """The bookings' rows in one statement each; a booking without rows (matched on the live quotes: written as it
        was matched) by its own write."""
        order_rows = [b.rows[0] for b in bookings if b.rows is not None]
        fill_rows = [f for b in bookings if b.rows is not None for f in b.rows[1]]
        others = [b.write for b in bookings if b.rows is None]

        async def write(s: DbSession) -> None:
            if order_rows:
                await _write_book(s, order_rows, fill_rows)
            for each in others:
                await each(s)

        return write

    async def _protection_outside_band(self, order: Order, session: date | None) -> str | None:
        """Why a STAR market order's protection price is outside the session's price limits (None: inside, not such
        an order, or no limits known), by the statement risk checks it with (`shared.core.market.rules.band_error`).
        Risk refuses such an order before it is signed: this holds the simulation to the exchange's rule whatever
        reaches it. Raises BrokerUnavailable (the data service)."""
        if order.price is None or not needs_protection(order.ts_code, order.order_type):
            return None
        quote = await (
            self.quotes.latest(order.ts_code) if session is None else self.quotes.latest(order.ts_code, session)
        )
        if quote is None:
            return None  # an unknown security: each way of matching rejects it as such
        return band_error(order.price, quote.limit_up, quote.limit_down, "protection price")

    async def _match_on_latest_close(self, order: Order, price_cap: Decimal | None, now: datetime) -> Outcome:
        quote = await self.quotes.latest(order.ts_code)
        if quote is None:
            return Outcome(OrderStatus.REJECTED, reason=f"unknown security {order.ts_code}")
        if quote.suspended or quote.last_close is None:
            return Outcome(OrderStatus.REJECTED, reason=f"{order.ts_code} is suspended")
        fill_price = paper_fill_price(order.order_type, order.side, order.price, quote.last_close)
        over_cap = cap_refusal(order, fill_price, price_cap)
        if over_cap is not None:
            return Outcome(OrderStatus.REJECTED, reason=over_cap)
        if fill_price is None:
            if _cancels_rest(order):
                return Outcome(OrderStatus.CANCELLED, reason=(
                    f"limit_not_reached: the latest close {quote.last_close} is beyond the protection price "
                    f"{order.price} of a {order.market_type} market order; cancelled"
                ))  # fmt: skip
            return Outcome(OrderStatus.SUBMITTED)  # rests
        return Outcome(OrderStatus.FILLED, (Fill(f"paper-{order.order_id}-1", order.qty, fill_price, now),))

    # --- LH_PAPER_FILLS=quotes -------------------------------------------------------------------------------------

    def _quote_of_today(self, ts_code: str, now: datetime) -> LiveQuote | None:
        """The code's latest live quote if it is of today's session (a quote of an earlier day is no market now)."""
        quote = self.live.get(ts_code)
        if quote is None:
            return None
        today = market_today(now, self.market_session())
        return quote if quote.time.astimezone(EXCHANGE_TZ).date() == today else None

    async def _arrival_quote(self, order: Order, now: datetime) -> LiveQuote | None:
        """The quote an arriving order is matched against: the latest of today held from the events, else (none
        held yet: a process just started, or the round not heard yet) the data service's, read once. A market order
        whose quote cannot be read waits (BrokerUnavailable: it stays accepted and is sent again); a limit order
        rests and meets the next round."""
        quote = self._quote_of_today(order.ts_code, now)
        if quote is not None or self.live_quotes is None:
            return quote
        try:
            read = await self.live_quotes.live(order.ts_code)
        except BrokerUnavailable:
            if order.order_type is OrderType.MARKET:
                raise
            return None
        if read is not None:
            self.live.put(read)
        return self._quote_of_today(order.ts_code, now)

    async def _submit_on_quotes(self, order: Order, price_cap: Decimal | None, now: datetime) -> BrokerReport:
        """An order arriving with LH_PAPER_FILLS=quotes: matched at once against its code's latest quote of today (in
        memory, from the events), in the transaction that books it. A limit order rests with what is not filled; a
        market order's rest is cancelled (as the exchanges' best-five-levels-then-cancel market orders: SH 42, SZ 47),
        as is a market order with no quote of today to fill against."""
        # the reference data held in memory (of the replayed session on a replay clock): a known security?
        session = self.market_session()
        known = await (
            self.quotes.latest(order.ts_code) if session is None else self.quotes.latest(order.ts_code, session)
        )
        refusal = f"unknown security {order.ts_code}" if known is None else cap_refusal(order, None, price_cap)
        day = session
        if refusal is None and session is None:
            # the order's own session (after the close: the next one), refused on a closed market if the account says
            day, refusal = await self._order_session(order, now)
        booked = (
            Outcome(OrderStatus.REJECTED, reason=refusal)
            if refusal is not None
            else Outcome(OrderStatus.SUBMITTED, reason=RESTING_ON_QUOTES)
        )
        outcome = booked
        # matched on arrival only in its own session's continuous trading, against a quote of it
        trading = refusal is None and day is not None and continuous_trading(now, day)
        quote = await self._arrival_quote(order, now) if trading else None
        if quote is not None and not continuous_trading(quote.time, day):
            quote = None  # the opening call's quote (09:25), or the morning's last before the lunch break
        try:
            async with self._matching(order.ts_code):
                async for attempt in self.db.transaction():
                    async with attempt as s:
                        outcome = booked
                        rests_for = None if refusal is not None else day
                        row = _book_row(order, booked.status, booked.reason, now, rests_for)
                        await s.execute(paper_orders.insert().values(**row))
                        if refusal is not None:
                            continue
                        fills: tuple[Fill, ...] = ()
                        market: MarketMatch | None = None
                        if quote is not None:
                            consumed = await _consumed(s, order.ts_code, order.side, quote)
                            if order.order_type is OrderType.MARKET:
                                market = self._market_fills(order, quote, consumed, price_cap)
                                book = market.fills
                            else:
                                book = self._book_fills(order.side, order.qty, order.price, quote, consumed, price_cap)
                            fills = tuple(
                                Fill(quote_fill_id(order.order_id, quote, f.level), f.qty, from_fen(f.price_fen), now)
                                for f in book
                            )
                        outcome = _quotes_outcome(order, fills, quote, trading=trading, day=day, market=market)
                        await _insert_fills(s, order.order_id, fills)
                        resting_at = None if market is None else market.rest_price_fen
                        if outcome.status is not OrderStatus.SUBMITTED or resting_at is not None:
                            values: dict[str, Any] = {
                                "status": outcome.status.value,
                                "reason": None if outcome.reason is None else outcome.reason[:255],
                            }
                            if resting_at is not None and not outcome.status.is_final:
                                # a market order whose rest became a limit order: later rounds match it at that price
                                values["price"] = from_fen(resting_at)
                            await s.execute(
                                update(paper_orders).where(paper_orders.c.order_id == order.order_id).values(**values)
                            )
        except IntegrityError:
            known_report = await self.report(order.order_id)
            if known_report is None:
                raise
            return known_report
        return BrokerReport(status=outcome.status, fills=outcome.fills, reason=outcome.reason)

    def _book_fills(
        self,
        side: OrderSide,
        qty: int,
        limit_price: Decimal | None,
        quote: LiveQuote,
        consumed: dict[int, int],
        price_cap: Decimal | None = None,
        most: int | None = None,
    ) -> tuple[BookFill, ...]:
        _, lot_step = lot_sizes(quote.ts_code)
        return match_on_book(
            side=side.value,
            qty=qty,
            limit_price_fen=None if limit_price is None else to_fen(limit_price),
            levels=book_of(quote, side),
            consumed=consumed,
            price_cap_fen=None if price_cap is None else to_fen(price_cap),
            up_limit=None if quote.limit_up is None else to_fen(quote.limit_up),
            down_limit=None if quote.limit_down is None else to_fen(quote.limit_down),
            lot_step=lot_step,
            rules=self.rules,
            most=most,
        )

    def _market_fills(
        self, order: Order, quote: LiveQuote, consumed: dict[int, int], price_cap: Decimal | None
    ) -> MarketMatch:
        """A market order arriving on `quote`, by its market type (`match_market_on_book`): its fills and whether
        its rest is cancelled or rests as a limit order (and at what price). A STAR market order's `price` is its
        protection price."""
        _, lot_step = lot_sizes(quote.ts_code)
        own = OrderSide.SELL if order.side is OrderSide.BUY else OrderSide.BUY
        return match_market_on_book(
            order.market_type or DEFAULT_MARKET_TYPE,
            side=order.side.value,
            qty=order.qty,
            levels=book_of(quote, order.side),
            own_levels=book_of(quote, own),
            protection_fen=None if order.price is None else to_fen(order.price),
            consumed=consumed,
            price_cap_fen=None if price_cap is None else to_fen(price_cap),
            up_limit=None if quote.limit_up is None else to_fen(quote.limit_up),
            down_limit=None if quote.limit_down is None else to_fen(quote.limit_down),
            lot_step=lot_step,
            rules=self.rules,
        )

    async def match_snapshot(self, snapshot: QuotesSnapshot) -> list[str]:
        """A round of the real-time feed (`quotes.snapshot`): its quotes become the codes' latest, and the limit
        orders resting on quotes of its codes are matched against them, oldest first (time priority), each taking
        what the ones before it left of a level. Idempotent: an order takes from a quote at most once (a fill's id
        names the order, the quote's time and the level) and never from one older than its arrival or its last
        fill, so a redelivered round fills nothing twice. Returns the orders with fills from this round's quotes
        (also those filled by an earlier delivery of it), whose reports the caller records."""
        for quote in snapshot.quotes:
            self.live.put(quote)
        if self.fills != "quotes" or not snapshot.quotes:
            return []
        now = self.clock()
        today = market_today(now, self.market_session())
        # redelivered quotes (not newer than the held ones) are matched again: what they filled is reported once more
        # only quotes of continuous trading today: not the opening call's (09:25), the lunch break's or the closing
        # call's (14:57-15:00)
        quotes = {q.ts_code: q for q in snapshot.quotes if continuous_trading(q.time, today)}
        if not quotes:
            return []
        async for attempt in self.db.transaction():
            async with attempt as s:
                resting = (
                    await s.execute(
                        select(paper_orders.c.order_id, paper_orders.c.ts_code, paper_orders.c.session).where(
                            paper_orders.c.status.in_(OPEN_STATUSES),
                            paper_orders.c.reason.like(f"{ON_QUOTES}%"),
                        )
                    )
                ).all()
        by_code: dict[str, list[str]] = {}
        for order_id, ts_code, session in resting:
            # an order of a later session (placed after today's close) waits for that session's quotes
            if ts_code in quotes and (session is None or session == today):
                by_code.setdefault(ts_code, []).append(order_id)
        touched: list[str] = []
        for code in sorted(by_code):
            async with self._matching(code):
                touched.extend(await self._match_code(quotes[code], by_code[code]))
        return touched

    async def _match_code(self, quote: LiveQuote, order_ids: list[str]) -> list[str]:
        """The orders `order_ids` resting on quotes of `quote`'s code against it, in one transaction holding their
        rows (locked by primary key: another process matching the same round waits, and then finds them matched).
        Resting orders take only what traded since the round before (`LiveQuotes.traded`), oldest first, each side
        at most that much in all, at the levels that reach their limits."""
        touched: list[str] = []
        key = f"-q{quote_key(quote)}-"
        traded = self.live.traded(quote)
        async for attempt in self.db.transaction():
            async with attempt as s:
                touched = []
                rows = (
                    await s.execute(
                        select(paper_orders)
                        .where(paper_orders.c.order_id.in_(order_ids))
                        .order_by(paper_orders.c.created_at, paper_orders.c.order_id)
                        .with_for_update()
                    )
                ).all()
                # still resting (cancelled, expired or filled meanwhile: left alone)
                rows = [r for r in rows if r.status in OPEN_STATUSES and (r.reason or "").startswith(ON_QUOTES)]
                if not rows:
                    continue
                own = (
                    await s.execute(
                        select(paper_fills.c.order_id, paper_fills.c.fill_id, paper_fills.c.qty,
                               paper_fills.c.traded_at)
                        .where(paper_fills.c.order_id.in_([r.order_id for r in rows]))
                    )
                ).all()  # fmt: skip
                consumed = {
                    side: await _consumed(s, quote.ts_code, side, quote) for side in (OrderSide.BUY, OrderSide.SELL)
                }
                # what resting orders (placed before the quote) already took of this round's traded volume
                left = {
                    side: traded - await _taken_resting(s, quote.ts_code, side, quote)
                    for side in (OrderSide.BUY, OrderSide.SELL)
                }
                for row in rows:
                    fills_of = [f for f in own if f.order_id == row.order_id]
                    if any(key in f.fill_id for f in fills_of):
                        touched.append(row.order_id)  # matched on this quote already (a redelivery)
                        continue
                    last = max([row.created_at, *(f.traded_at for f in fills_of)])
                    if quote.time < last:
                        continue  # a quote from before the order arrived (or before its last fill)
                    side = OrderSide(row.side)
                    filled = sum(int(f.qty) for f in fills_of)
                    if left[side] <= 0:
                        continue  # nothing (more) traded since the round before
                    book = self._book_fills(
                        side, int(row.qty) - filled, row.price, quote, consumed[side], most=left[side]
                    )
                    if not book:
                        continue
                    left[side] -= sum(f.qty for f in book)
                    for f in book:
                        consumed[side][f.price_fen] = consumed[side].get(f.price_fen, 0) + f.qty
                    fills = [
                        Fill(quote_fill_id(row.order_id, quote, f.level), f.qty, from_fen(f.price_fen), quote.time)
                        for f in book
                    ]
                    await _insert_fills(s, row.order_id, fills)
                    done = filled + sum(f.qty for f in book) == row.qty
                    status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
                    await s.execute(
                        update(paper_orders)
                        .where(paper_orders.c.order_id == row.order_id)
                        .values(status=status.value, updated_at=self.clock())
                    )
                    touched.append(row.order_id)
        return touched

    async def _rest_for_session(
        self, order: Order, price_cap: Decimal | None, now: datetime
    ) -> tuple[Outcome, date | None]:
        """On the real clock: the order rests until its session's bar is in (`resume` matches it then), or is refused
        now: an unknown security, a market buy without a price cap, no session ahead in the trade calendar, or a
        closed market on an account that refuses orders then. The order's own time decides its session (a
        resubmission after a restart keeps its session), by the rule admission and risk place it by
        (`shared.platform.clock.order_session`)."""
        quote = await self.quotes.latest(order.ts_code)
        if quote is None:
            return Outcome(OrderStatus.REJECTED, reason=f"unknown security {order.ts_code}"), None
        uncapped = cap_refusal(order, None, price_cap)
        if uncapped is not None:
            return Outcome(OrderStatus.REJECTED, reason=uncapped), None
        day, refusal = await self._order_session(order, now)
        if day is None:
            return Outcome(OrderStatus.REJECTED, reason=refusal), None
        return Outcome(OrderStatus.SUBMITTED, reason=awaiting_reason(day)), day

    async def _order_session(self, order: Order, now: datetime) -> tuple[date | None, str | None]:
        """On the real clock: the session the order is for (`shared.platform.clock.order_session`, by its own time,
        so a resubmission keeps it), or why it is refused: no session ahead in the trade calendar, or a closed
        market on an account that refuses orders then (`paper_accounts`)."""
        now = min(order.created_at, now)
        assert self.order_sessions is not None  # a calendar is checked in __init__
        try:
            found = await self.order_sessions.session_of(now)
        except CalendarUnavailable as exc:
            raise BrokerUnavailable(f"no trade calendar to place the order in a session: {exc}") from exc
        day = None if found is None else found.day
        if day is None:
            local = now.astimezone(EXCHANGE_TZ).strftime("%Y-%m-%d %H:%M")
            reason = f"no_session: the trade calendar has no trading day after {local} (Asia/Shanghai) to match it on"
            return None, reason
        if not market_open(now, day) and await self.closed_market(order.account_id) == "refuse":
            reason = (
                f"market_closed: orders are taken 09:15-15:00 on trading days and account {order.account_id} "
                f"refuses them while the market is closed; the next session is {day.isoformat()}"
            )
            return None, reason
        return day, None

    def _rules_for(self, placed_at: datetime, day: date, rules: FillRules | None = None) -> FillRules:
        """The rules (`rules`: the order's own, default the platform's) an order of session `day` placed at
        `placed_at` is matched by: an order that arrived after the opening call auction (09:25) cannot have traded
        at the open, so an open fill becomes a close fill."""
        rules = rules or self.rules
        if rules.fill_price == "open" and placed_at >= datetime.combine(day, AUCTION_END, tzinfo=EXCHANGE_TZ):
            return replace(rules, fill_price="close")
        return rules

    def _cancels_until(
        self, order_created_at: datetime, day: date, waits: bool, own: FillRules | None = None
    ) -> datetime:
        """Until when an order resting for session `day`'s bar may be withdrawn: its price is set by the opening call
        (an open fill: cancels end at 09:20, as on the exchanges) or by the close (cancels end at 14:57, when the
        closing call begins); after that its outcome is only waiting to be reported. `own`: the order's own rules
        (a strategy instance's), default the platform's."""
        own = own or self.rules
        rules = own if waits else self._rules_for(order_created_at, day, own)
        until = CANCELS_UNTIL[0] if rules.fill_price == "open" else CANCELS_UNTIL[1]
        return datetime.combine(day, until, tzinfo=EXCHANGE_TZ)

    async def _bars_in(self, day: date) -> bool:
        """The data service holds session `day`'s bars in full (not while an ingest is still writing them)."""
        assert self.calendar is not None
        try:
            through = await self.calendar.complete_through()
        except CalendarUnavailable as exc:
            raise BrokerUnavailable(f"cannot tell whether the bars of {day.isoformat()} are in: {exc}") from exc
        return through is not None and through >= day

    async def _match_on_session(
        self, order: Order, price_cap: Decimal | None, day: date, rules: FillRules | None = None
    ) -> Outcome:
        """The order on session `day`'s own bar, by the engine's rules (`match_order`): `rules`, default the
        platform's. A symbol without a bar that day: the order waits for the next session it trades, or (the rules'
        `suspended_orders` "cancel", as the engine does then) is cancelled."""
        rules = rules or self.rules
        if self.sessions is None:
            raise BrokerUnavailable("the paper broker has no source of session bars to replay on")
        market = await self.sessions.session(order.ts_code, day)
        if market is None:
            return Outcome(OrderStatus.REJECTED, reason=f"unknown security {order.ts_code}")
        lot_min, lot_step = board_lots(market.board)
        match = match_order(
            rules,
            market.bar,
            side=order.side.value,
            qty=order.qty,
            limit_price_fen=None if order.price is None else to_fen(order.price),
            lot_min=lot_min,
            lot_step=lot_step,
        )
        cancels_rest = _cancels_rest(order)
        if match.qty == 0:
            if match.reason == "suspended" and rules.suspended_orders == "wait":
                return Outcome(OrderStatus.SUBMITTED, reason=waiting_reason(order.ts_code, day))
            if match.reason == "limit_not_reached" and not cancels_rest:
                # rests: a day order (a limit order; a STAR market order of a type whose rest becomes a limit order,
                # at its protection price), expired at the session's close
                return Outcome(OrderStatus.SUBMITTED)
            return Outcome(OrderStatus.CANCELLED, reason=match_reason(match.reason, day))
        fill_price = from_fen(match.price_fen)
        over_cap = cap_refusal(order, fill_price, price_cap)
        if over_cap is not None:
            return Outcome(OrderStatus.REJECTED, reason=over_cap)
        fills = (Fill(f"paper-{order.order_id}-1", match.qty, fill_price, fill_time(day, rules.fill_price)),)
        if match.qty == order.qty:
            return Outcome(OrderStatus.FILLED, fills)
        if order.order_type is OrderType.MARKET and order.market_type == "fok":
            reason = (
                f"fok_not_filled: {match.qty} of {order.qty} shares could trade on the bar (session "
                f"{day.isoformat()}); a fill-or-kill order fills in full or not at all: cancelled, nothing filled"
            )
            return Outcome(OrderStatus.CANCELLED, reason=reason)
        # Part of it traded (the volume cap): the rest is cancelled at once, as the engine does.
        return Outcome(OrderStatus.CANCELLED, fills, match_reason(match.reason or "volume_cap", day))

    async def resume(
        self, order: Order, *, price_cap: Decimal | None = None, paper_fill: PaperFill | None = None
    ) -> BrokerReport | None:
        """Match again an order that rests for a session's bar: on a replay clock, one whose symbol had no bar on an
        earlier session (`waiting_reason`), now on the current session; on the real clock, one whose session has
        closed (`awaiting_reason`, or waiting for its suspended symbol), once that session's bar is in. It fills, is
        cancelled, rests as a day order (a replay), expires with its session (the real clock), or keeps waiting.
        An order whose session's bar is not in yet is answered as it stands (it must not expire meanwhile). None
        for an order that does not wait: the caller expires it as a day order. `paper_fill`: the order's own fill
        rules (a strategy instance's), else the platform's."""
        replayed = self.market_session()
        if replayed is None and self.fills == "immediate":
            return None
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(paper_orders).where(paper_orders.c.order_id == order.order_id))).first()
        if row is None or row.status != OrderStatus.SUBMITTED.value:
            return None
        reason = row.reason or ""
        waits = reason.startswith(WAITING)
        next_session: date | None = None
        if replayed is not None:
            if not waits:
                return None
            if reason == waiting_reason(order.ts_code, replayed):
                return await self.report(order.order_id)  # matched on this session already
            outcome = await self._match_on_session(order, price_cap, replayed, self.order_rules(paper_fill))
        else:
            day = row.session
            if day is None or not (waits or reason.startswith(AWAITING)):
                return None
            if session_close(day) > self.clock():
                return await self.report(order.order_id)  # its session is still to close
            if not await self._bars_in(day):
                return await self.report(order.order_id)  # the session's bars are not in (in full) yet
            # an order waiting for its suspended symbol was placed before this session opened
            own = self.order_rules(paper_fill)
            rules = own if waits else self._rules_for(order.created_at, day, own)
            outcome = await self._match_on_session(order, price_cap, day, rules)
            if outcome.status is OrderStatus.SUBMITTED:
                if (outcome.reason or "").startswith(WAITING):
                    next_session = await self._session_after(day)  # None: no later session known, it expires
                else:  # its limit was not reached: a day order that expired with its session
                    outcome = Outcome(OrderStatus.CANCELLED, reason=expiry_reason(day))
        now = self.clock()
        async for attempt in self.db.transaction():
            async with attempt as s:
                changed = await s.execute(
                    update(paper_orders)
                    .where(
                        paper_orders.c.order_id == order.order_id,
                        paper_orders.c.status == row.status,
                        paper_orders.c.reason == row.reason,
                    )
                    .values(
                        status=outcome.status.value,
                        reason=None if outcome.reason is None else outcome.reason[:255],
                        updated_at=now,
                        session=next_session,
                    )
                )
                if changed.rowcount == 1:  # else cancelled (or resumed) meanwhile: the book says what happened
                    await _insert_fills(s, order.order_id, outcome.fills)
        return await self.report(order.order_id)

    async def _session_after(self, day: date) -> date | None:
        assert self.calendar is not None
        try:
            days = await self.calendar.trading_days(day + timedelta(days=1), day + timedelta(days=30))
        except CalendarUnavailable as exc:
            raise BrokerUnavailable(f"no trade calendar for the session after {day.isoformat()}: {exc}") from exc
        return days[0] if days else None

    # --- a paper account's settings --------------------------------------------------------------------------------

    async def earliest_resting_session(self) -> date | None:
        """The earliest session an order rests for (`submitted`, awaiting or waiting for its session's bar), or None."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                earliest = await s.scalar(
                    select(func.min(paper_orders.c.session)).where(
                        paper_orders.c.status == OrderStatus.SUBMITTED.value,
                        paper_orders.c.session.is_not(None),
                        paper_orders.c.reason.not_like(f"{ON_QUOTES}%"),  # on quotes: no bar awaited
                    )
                )
        return earliest if isinstance(earliest, date) or earliest is None else date.fromisoformat(str(earliest))

    async def closed_market(self, account_id: str) -> str:
        """How `account_id` treats an order placed while the market is closed: `rest` (the default) or `refuse`."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                value = (
                    await s.execute(
                        select(paper_accounts.c.closed_market).where(paper_accounts.c.account_id == account_id)
                    )
                ).scalar_one_or_none()
        return str(value) if value is not None else "rest"

    async def set_closed_market(self, account_id: str, closed_market: str, *, by: str) -> None:
        if closed_market not in CLOSED_MARKET:
            raise ValueError(f"closed_market: {closed_market!r} is not one of {', '.join(CLOSED_MARKET)}")
        now = self.clock()
        async for attempt in self.db.transaction():
            async with attempt as s:
                changed = await s.execute(
                    update(paper_accounts)
                    .where(paper_accounts.c.account_id == account_id)
                    .values(closed_market=closed_market, updated_by=by, updated_at=now)
                )
                if changed.rowcount == 0:
                    await s.execute(
                        paper_accounts.insert().values(
                            account_id=account_id, closed_market=closed_market, updated_by=by, updated_at=now
                        )
                    )

    async def cancel(self, order_id: str, *, paper_fill: PaperFill | None = None) -> BrokerReport:
        """Withdraw what rests of the order. On the real clock an order resting for its session's bar can no longer
        be withdrawn once its price is set (`_cancels_until`, by the order's own rules `paper_fill` if it has them):
        CancelTooLate, since a paper account must not be able to cancel a fill it can already see (the exchange
        would have filled or expired it)."""
        if self.market_session() is None and self.fills in ("session", "quotes"):
            async for attempt in self.db.transaction():
                async with attempt as s:
                    row = (await s.execute(select(paper_orders).where(paper_orders.c.order_id == order_id))).first()
            reason = (row.reason or "") if row is not None else ""
            if (
                row is not None
                and row.session is not None
                and row.status == OrderStatus.SUBMITTED.value
                and (reason.startswith(AWAITING) or reason.startswith(WAITING))
            ):
                until = self._cancels_until(
                    row.created_at, row.session, reason.startswith(WAITING), self.order_rules(paper_fill)
                )
                if self.clock() >= until:
                    raise CancelTooLate(
                        f"its price on the session of {row.session.isoformat()} was set at "
                        f"{until.strftime('%H:%M')} (Asia/Shanghai): it is matched when that session's bar is in"
                    )
        return await self._withdraw(order_id, CLIENT_CANCEL, tombstone_reason=NEVER_REACHED_BROKER)

    async def expire(self, order_id: str, reason: str) -> BrokerReport:
        """End a day order at the close of its trading day: what rests of it is cancelled with `reason` (fills so far
        stay), like an exchange does with unfilled day orders. An order the book never had gets a tombstone, so a
        late resubmission cannot fill it on another day."""
        return await self._withdraw(order_id, reason, tombstone_reason=reason)

    async def _withdraw(self, order_id: str, reason: str, *, tombstone_reason: str) -> BrokerReport:
        now = self.clock()
        try:
            async for attempt in self.db.transaction():
                async with attempt as s:
                    row = (await s.execute(select(paper_orders).where(paper_orders.c.order_id == order_id))).first()
                    if row is None:
                        # A tombstone, so that a submission still in flight can no longer fill it.
                        await s.execute(
                            paper_orders.insert().values(
                                order_id=order_id,
                                status=OrderStatus.CANCELLED.value,
                                reason=tombstone_reason[:255],
                                created_at=now,
                                updated_at=now,
                            )
                        )
                    elif row.status in (OrderStatus.SUBMITTED.value, OrderStatus.PARTIALLY_FILLED.value):
                        await s.execute(
                            update(paper_orders)
                            .where(paper_orders.c.order_id == order_id, paper_orders.c.status == row.status)
                            .values(status=OrderStatus.CANCELLED.value, reason=reason[:255], updated_at=now)
                        )
        except IntegrityError:
            pass  # submitted at the same moment: the book below says which came first
        report = await self.report(order_id)
        if report is None:
            raise BrokerUnavailable(f"paper order {order_id} vanished while cancelling")
        return report

    async def report(self, order_id: str) -> BrokerReport | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(paper_orders).where(paper_orders.c.order_id == order_id))).first()
                if row is None:
                    return None
                fill_rows = (
                    await s.execute(
                        select(paper_fills).where(paper_fills.c.order_id == order_id).order_by(paper_fills.c.fill_id)
                    )
                ).all()
                report = _report(row, fill_rows)
        return report


async def _consumed(s: DbSession, ts_code: str, side: OrderSide, quote: LiveQuote) -> dict[int, int]:
    """The shares per price (fen) that fills of `side` orders of `ts_code` have taken from `quote` already (its fills
    are named by the quote's time: `quote_fill_id`), so that a level is not offered twice."""
    rows = (
        await s.execute(
            select(paper_fills.c.price, func.sum(paper_fills.c.qty))
            .join(paper_orders, paper_orders.c.order_id == paper_fills.c.order_id)
            .where(
                paper_orders.c.ts_code == ts_code,
                paper_orders.c.side == side.value,
                paper_fills.c.fill_id.like(f"%-q{quote_key(quote)}-%"),
            )
            .group_by(paper_fills.c.price)
        )
    ).all()
    return {to_fen(Decimal(str(px))): int(total) for px, total in rows}


async def _taken_resting(s: DbSession, ts_code: str, side: OrderSide, quote: LiveQuote) -> int:
    """The shares that resting orders (placed before `quote`'s time, unlike one arriving after it, which takes the
    displayed depth) of `side` in `ts_code` have filled from `quote` already: a part of what traded since the round
    before, which is not offered again."""
    total = await s.scalar(
        select(func.sum(paper_fills.c.qty))
        .join(paper_orders, paper_orders.c.order_id == paper_fills.c.order_id)
        .where(
            paper_orders.c.ts_code == ts_code,
            paper_orders.c.side == side.value,
            paper_orders.c.created_at <= quote.time,
            paper_fills.c.fill_id.like(f"%-q{quote_key(quote)}-%"),
        )
    )
    return int(total or 0)


def _quotes_outcome(
    order: Order,
    fills: tuple[Fill, ...],
    quote: LiveQuote | None,
    *,
    trading: bool = True,
    day: date | None = None,
    market: MarketMatch | None = None,
) -> Outcome:
    """What an order arriving on quotes is after its fills on arrival: filled, or (a limit order, or a market order
    whose type rests its rest as a limit: `market.rest_price_fen`) resting with or without a part filled, or (a
    market order) its rest cancelled. `trading`: it arrived in continuous trading of its session `day` (else a
    market order is cancelled unmatched)."""
    filled = sum(f.qty for f in fills)
    if filled == order.qty:
        return Outcome(OrderStatus.FILLED, fills)
    if order.order_type is OrderType.LIMIT or (market is not None and market.rest_price_fen is not None):
        status = OrderStatus.PARTIALLY_FILLED if fills else OrderStatus.SUBMITTED
        return Outcome(status, fills, RESTING_ON_QUOTES)
    market_type = order.market_type or DEFAULT_MARKET_TYPE
    if not trading:
        session = "" if day is None else f" of session {day.isoformat()}"
        reason = (
            f"not_trading: a market order is matched on quotes only in continuous trading{session} "
            "(09:30-11:30, 13:00-14:57 Asia/Shanghai); cancelled"
        )
    elif quote is None:
        reason = f"no_quote: no live quote of {order.ts_code} today for a market order to fill against; cancelled"
    else:
        at = quote.time.astimezone(EXCHANGE_TZ).strftime("%H:%M:%S")
        why = "no_liquidity" if market is None else market.why
        if why == "fok_not_filled":
            reason = (
                f"fok_not_filled: the quote of {at} could not fill all {order.qty} shares at once within the order's "
                "bounds (the levels shown, the price limits, the price cap); a fill-or-kill order fills in full or "
                "not at all: cancelled, nothing filled"
            )
        elif why in ("no_counterparty", "no_own_side"):
            book = "other" if why == "no_counterparty" else "its own"
            reason = (
                f"{why}: the quote of {at} shows no price on {book} side for a {market_type} market order to take "
                "as its price; cancelled"
            )
        else:
            reason = (
                f"no_liquidity: the quote of {at} offered {filled} of {order.qty} shares within the order's bounds "
                f"(a {market_type} market order's levels, the price limits, the price cap, a protection price); the "
                "rest is cancelled"
            )
    return Outcome(OrderStatus.CANCELLED, fills, reason)


def _book_row(
    order: Order, status: OrderStatus, reason: str | None, now: datetime, session: date | None
) -> dict[str, Any]:
    """The book's row of a new order (`session`: the session it rests for, None when it does not)."""
    return dict(
        order_id=order.order_id,
        ts_code=order.ts_code,
        side=order.side.value,
        order_type=order.order_type.value,
        qty=order.qty,
        price=order.price,
        status=status.value,
        reason=None if reason is None else reason[:255],
        created_at=now,
        updated_at=now,
        session=session,
    )


def _fill_row(order_id: str, f: Fill) -> dict[str, Any]:
    return {"fill_id": f.fill_id, "order_id": order_id, "qty": f.qty, "price": f.price, "traded_at": f.traded_at}


async def _insert_fills(s: DbSession, order_id: str, fills: Sequence[Fill]) -> None:
    if fills:
        await s.execute(paper_fills.insert(), [_fill_row(order_id, f) for f in fills])


async def _write_book(s: DbSession, order_rows: list[dict[str, Any]], fill_rows: Sequence[dict[str, Any]]) -> None:
    """New orders' rows in the book and their fills; AlreadyBooked (nothing written: the caller's transaction is
    rolled back) when the book has one of them."""
    try:
        await s.execute(paper_orders.insert(), order_rows)
    except IntegrityError as exc:  # an order's primary key: the book has it already
        raise AlreadyBooked(", ".join(r["order_id"] for r in order_rows)) from exc
    if fill_rows:
        await s.execute(paper_fills.insert(), list(fill_rows))


def _report(row: Row[Any], fill_rows: Sequence[Row[Any]]) -> BrokerReport:
    fills = tuple(Fill(fill_id=f.fill_id, qty=f.qty, price=f.price, traded_at=f.traded_at) for f in fill_rows)
    return BrokerReport(status=OrderStatus(row.status), fills=fills, reason=row.reason)
