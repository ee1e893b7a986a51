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

With `LH_PAPER_FILLS=immediate` (tests and benchmarks of the order path only) it fills at once at the latest close
from the data service, whatever the time: a market order in full; a limit buy when its limit is at or above it, a
limit sell when its limit is at or below it; any other limit order rests until execution expires it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
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
from shared.core.market.matching import REASON_CODES, REASONS, FillRules, SessionBar, match_order
from shared.core.market.rules import board_lots
from shared.platform.approval import PaperFill
from shared.platform.calendar import BarsCalendar, CalendarUnavailable, OrderSessions
from shared.platform.clock import no_session, session_close, utcnow
from shared.platform.db import Database, DbSession
from shared.platform.errors import ServiceError
from shared.platform.events.envelope import Envelope
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers
from shared.platform.quotes import Quote, QuoteSource, QuoteUnavailable, ReferenceData, ReferenceQuotes

NEVER_REACHED_BROKER = "cancelled before it reached the broker"
DAYS_OF_BARS_KEPT = 2  # sessions whose bars the paper broker holds (a replay's current one and the one before)
CLIENT_CANCEL = "cancelled by the client"


@dataclass(frozen=True)
class PaperQuote:
    last_close: Decimal | None  # None only for a security that never traded (then it is suspended)
    suspended: bool
    limit_up: Decimal | None = None  # the next session's limit-up price; None on sessions without limits
    limits_for: date | None = None  # the session limit_up is for (the quote's next_trade_date)
    last_trade_date: date | None = None  # the symbol's newest stored session


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

    async def latest(self, ts_code: str, session: date | None = None) -> PaperQuote | None:
        quote = await self._quote(ts_code, session)
        if quote is None:
            return None
        try:
            last_close = None if quote.last_close is None else price(quote.last_close)
            limit_up = None if quote.limit_up is None else price(quote.limit_up)
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
        )


def paper_fill_price(
    order_type: OrderType, side: OrderSide, limit_price: Decimal | None, last_close: Decimal
) -> Decimal | None:
    """The price a paper order fills at now, or None when it rests."""
    if order_type is OrderType.MARKET:
        return last_close
    if limit_price is None:
        raise ValueError("a limit order needs a limit price")
    if side is OrderSide.BUY:
        return last_close if limit_price >= last_close else None
    return last_close if limit_price <= last_close else None


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
    ) -> None:
        """`market_session`: the market clock's replayed session (None on the real clock). On a replay clock the broker
        matches at the session's bar from `sessions` with `rules` (both needed then). `fills` (LH_PAPER_FILLS): on the
        real clock, "session" (match at the bar of the order's session, with `sessions`, `rules` and the trade
        `calendar`) or "immediate" (at once at the latest close). `order_sessions`: the calendar's trading days kept
        in memory that an order's session is found in (default: kept here, from `calendar`; execution's app gives
        the desk's)."""
        if fills not in ("session", "immediate"):
            raise ValueError(f"fills: {fills!r} is neither 'session' nor 'immediate'")
        if fills == "session" and (sessions is None or calendar is None):
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
        if session is not None:
            outcome = await self._match_on_session(order, price_cap, session, self.order_rules(paper_fill))
        elif self.fills == "immediate":
            outcome = await self._match_on_latest_close(order, price_cap, now)
        else:
            outcome, resting_for = await self._rest_for_session(order, price_cap, now)

        async def write(s: DbSession) -> None:
            try:
                await s.execute(
                    paper_orders.insert(),
                    dict(
                        order_id=order.order_id,
                        ts_code=order.ts_code,
                        side=order.side.value,
                        order_type=order.order_type.value,
                        qty=order.qty,
                        price=order.price,
                        status=outcome.status.value,
                        reason=None if outcome.reason is None else outcome.reason[:255],
                        created_at=now,
                        updated_at=now,
                        session=resting_for,
                    ),
                )
            except IntegrityError as exc:  # the order's primary key: the book has it already
                raise AlreadyBooked(order.order_id) from exc
            await _insert_fills(s, order.order_id, outcome.fills)

        return Booking(BrokerReport(status=outcome.status, fills=outcome.fills, reason=outcome.reason), write)

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
            return Outcome(OrderStatus.SUBMITTED)  # rests
        return Outcome(OrderStatus.FILLED, (Fill(f"paper-{order.order_id}-1", order.qty, fill_price, now),))

    async def _rest_for_session(
        self, order: Order, price_cap: Decimal | None, now: datetime
    ) -> tuple[Outcome, date | None]:
        """On the real clock: the order rests until its session's bar is in (`resume` matches it then), or is refused
        now: an unknown security, a market buy without a price cap, no session ahead in the trade calendar, or a
        closed market on an account that refuses orders then. The order's own time decides its session (a
        resubmission after a restart keeps its session), by the rule admission and risk place it by
        (`shared.platform.clock.order_session`)."""
        now = min(order.created_at, now)
        quote = await self.quotes.latest(order.ts_code)
        if quote is None:
            return Outcome(OrderStatus.REJECTED, reason=f"unknown security {order.ts_code}"), None
        uncapped = cap_refusal(order, None, price_cap)
        if uncapped is not None:
            return Outcome(OrderStatus.REJECTED, reason=uncapped), None
        assert self.order_sessions is not None  # a calendar is checked in __init__
        try:
            found = await self.order_sessions.session_of(now)
        except CalendarUnavailable as exc:
            raise BrokerUnavailable(f"no trade calendar to place the order in a session: {exc}") from exc
        day = None if found is None else found.day
        if day is None:
            local = now.astimezone(EXCHANGE_TZ).strftime("%Y-%m-%d %H:%M")
            reason = f"no_session: the trade calendar has no trading day after {local} (Asia/Shanghai) to match it on"
            return Outcome(OrderStatus.REJECTED, reason=reason), None
        if not market_open(now, day) and await self.closed_market(order.account_id) == "refuse":
            reason = (
                f"market_closed: orders are taken 09:15-15:00 on trading days and account {order.account_id} "
                f"refuses them while the market is closed; the next session is {day.isoformat()}"
            )
            return Outcome(OrderStatus.REJECTED, reason=reason), None
        return Outcome(OrderStatus.SUBMITTED, reason=awaiting_reason(day)), day

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
        if match.qty == 0:
            if match.reason == "suspended" and rules.suspended_orders == "wait":
                return Outcome(OrderStatus.SUBMITTED, reason=waiting_reason(order.ts_code, day))
            if match.reason == "limit_not_reached":
                return Outcome(OrderStatus.SUBMITTED)  # rests: a day order, expired at the session's close
            return Outcome(OrderStatus.CANCELLED, reason=match_reason(match.reason, day))
        fill_price = from_fen(match.price_fen)
        over_cap = cap_refusal(order, fill_price, price_cap)
        if over_cap is not None:
            return Outcome(OrderStatus.REJECTED, reason=over_cap)
        fills = (Fill(f"paper-{order.order_id}-1", match.qty, fill_price, fill_time(day, rules.fill_price)),)
        if match.qty == order.qty:
            return Outcome(OrderStatus.FILLED, fills)
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
                        paper_orders.c.status == OrderStatus.SUBMITTED.value, paper_orders.c.session.is_not(None)
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
        if self.market_session() is None and self.fills == "session":
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


async def _insert_fills(s: DbSession, order_id: str, fills: Sequence[Fill]) -> None:
    if fills:
        await s.execute(
            paper_fills.insert(),
            [
                {"fill_id": f.fill_id, "order_id": order_id, "qty": f.qty, "price": f.price, "traded_at": f.traded_at}
                for f in fills
            ],
        )


def _report(row: Row[Any], fill_rows: Sequence[Row[Any]]) -> BrokerReport:
    fills = tuple(Fill(fill_id=f.fill_id, qty=f.qty, price=f.price, traded_at=f.traded_at) for f in fill_rows)
    return BrokerReport(status=OrderStatus(row.status), fills=fills, reason=row.reason)
