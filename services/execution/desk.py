"""The order desk: admits only risk-approved orders, creates each (account, client_order_id) once, takes it
through the broker, records what the broker did, cancels resting orders and resubmits orders a crash left
ACCEPTED. No HTTP here: the routes in api.py are thin wrappers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError

from services.execution import cash as cashbook
from services.execution import snapshot as snapshots
from services.execution import tca
from services.execution import valuation as valuations
from services.execution.admission import principal_account, refusal_reason
from services.execution.brokers.base import (
    AlreadyBooked,
    Booking,
    BookingBroker,
    BrokerAdapter,
    BrokerReport,
    BrokerUnavailable,
    CancelTooLate,
    ExpiringBroker,
    MarketDataError,
    ResumingBroker,
)
from services.execution.brokers.paper import PaperBroker, PaperQuoteSource
from services.execution.brokers.qmt import QmtBroker
from services.execution.corporate import ExDateSource, RatiosUnavailable, plan_adjustments
from services.execution.lifecycle import InconsistentReport
from services.execution.live_quotes import DataServiceQuotes, HeldQuotes, LiveQuote, LiveQuotesUnavailable
from services.execution.metrics import ExecutionMetrics
from services.execution.positions import holdings
from services.execution.schemas import OrderSubmission, RiskSnapshotOut
from services.execution.sessions import expiry_reason, last_close
from services.execution.store import (
    AdjustmentRecord,
    AdmissionRefused,
    AlreadyPlaced,
    Booked,
    ConcurrentUpdate,
    EntryExists,
    ExecutionStore,
    LedgerEntry,
    NewOrder,
    StoredOrder,
    TradeRecord,
)
from services.execution.store.brokers import QMT
from services.execution.tca import Arrival
from shared.core.domain import IllegalTransition, OrderSide, OrderStatus, OrderType, parse_ts_code, to_fen
from shared.core.market.fees import FenFees
from shared.core.market.matching import affordable
from shared.core.market.rules import Fees, FeeSchedule, lot_sizes, max_order_qty, trade_fees
from shared.platform.approval import OrderTerms
from shared.platform.calendar import CalendarUnavailable, OrderSessions, TradingCalendar
from shared.platform.clock import (
    EXCHANGE_TZ,
    MarketClock,
    OrderSession,
    ReplayClock,
    ShiftedClock,
    fill_session,
    market_today,
    no_session,
    session_close,
    utcnow,
)
from shared.platform.db import DbSession
from shared.platform.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ServiceError,
    Unavailable,
    dependency_failure,
    unavailable_message,
)
from shared.platform.events import Envelope, QuotesSnapshot
from shared.platform.internal_auth import RISK_SUBJECT, Principal
from shared.platform.periodic import PeriodicTask
from shared.platform.quotes import LIMITS_UNKNOWN, limits_unknown, quote_ahead_of
from shared.platform.roles import Role

log = logging.getLogger(__name__)

# Reconciliation: a first pass at start-up over every ACCEPTED order, then a pass every interval over those
# untouched for the grace period (younger ones are most likely still on their way to the broker).
RECONCILE_INTERVAL_S = 15.0
OPEN_ORDERS_PAGE = 500  # the store's page of open orders (open_orders_created_before's limit)
RECONCILE_GRACE_S = 10.0
CALENDAR_LOOKBACK = timedelta(days=30)  # the trading days read back from today to find the last closed session
ARRIVAL_WAIT_S = 1.0  # the longest an order's creation waits for the last close it arrives at (docs/tca.md)
CATCH_UP_ROUNDS = 31  # corporate actions then matching, a session at a time, over at most the lookback's sessions


@dataclass(frozen=True)
class AccountCash:
    account_id: str
    cash: cashbook.Cash


PRICE_BASIS_PRICE = "price"  # an estimate at the price given
PRICE_BASIS_LIMIT_UP = "limit_up"  # a buy without a price: at the limit-up price its cash would be reserved at


@dataclass(frozen=True)
class Estimate:
    """An order's figures before it is placed (`OrderDesk.estimate`)."""

    account_id: str
    ts_code: str
    side: OrderSide
    trade_date: date  # the session an order placed now is for: the fees' date
    price: Decimal | None  # the price reckoned at (None: a sell without a price)
    price_basis: str | None
    qty: int | None
    amount: Decimal | None  # price x qty (None without both)
    fees: Fees | None
    max_qty: int  # a buy: the most shares the available cash pays for, fees in; a sell: the sellable shares
    available_fen: int


@dataclass(frozen=True)
class CashMovement:
    entry: LedgerEntry
    created: bool  # False: the idempotency key was used already (the same movement, answered again)
    account: AccountCash


@dataclass
class CancelAll:
    """What a cancel-all did to the open orders it found (`requested` of them)."""

    requested: int = 0
    cancelled: list[str] = field(default_factory=list)
    cancel_requested: list[str] = field(default_factory=list)  # a broker that cancels asynchronously (QMT)
    failed: list[dict[str, str]] = field(default_factory=list)  # order_id, code, message


class AmendGuard(Protocol):
    """The amends (services/execution/amend/service.py) as a user's cancel meets them: an amend still cancelling or
    replacing is stopped (`cancelled_by_user`) before the cancel goes on, so its replacement is never submitted."""

    async def stop_for_cancel(self, order_id: str) -> bool:
        """Stop the order's amend if it is cancelling or replacing: True when one was stopped now."""

    async def stop_for_cancel_all(self, account_id: str, ts_code: str | None) -> list[str]:
        """Stop the account's amends cancelling or replacing (of `ts_code` when named): the client_order_ids
        (`amend-<order_id>`) of the replacements a cancel-all must cancel too, should one have been placed."""

    async def admit(self, s: DbSession, terms: OrderTerms) -> None:
        """In the admission's transaction: raise 409 `amend_stopped` for the replacement (`amend-<order_id>`) of an
        amend a user's cancel stopped (nothing is stored or sent)."""


@dataclass(frozen=True)
class Submission:
    stored: StoredOrder
    created: bool  # False: the order existed already (a repeated client_order_id)


@dataclass(frozen=True)
class SubmittedItem:
    """One submission of `submit_many`: the status `POST /v1/orders` would have answered, with the order (200/201)
    or the error's code, message and details."""

    index: int
    status_code: int
    stored: StoredOrder | None = None
    code: str | None = None
    message: str | None = None
    details: dict[str, Any] | None = None


class OrderDesk:
    def __init__(
        self,
        *,
        approval_secret: str,
        approval_ttl_s: int,
        store: ExecutionStore,
        broker: BrokerAdapter,
        metrics: ExecutionMetrics,
        notify: Callable[[], None],
        quotes: PaperQuoteSource | None = None,
        calendar: TradingCalendar | None = None,
        clock: Callable[[], datetime] = utcnow,
        market_session: Callable[[], date | None] = no_session,
        order_sessions: OrderSessions | None = None,
        ex_dates: ExDateSource | None = None,
        qmt: QmtBroker | None = None,
        held_quotes: HeldQuotes | None = None,
        live_quotes: DataServiceQuotes | None = None,
    ) -> None:
        self.approval_secret = approval_secret
        self.approval_ttl_s = approval_ttl_s
        self.store = store
        self.broker = broker  # the paper broker (or a test's): the broker of every account not bound to QMT
        # The QMT adapter of the accounts an admin bound to a QMT bridge (None: every account is paper). Its pushes
        # and reconciliation record reports through this desk.
        self.qmt = qmt
        self.qmt_possible = qmt is not None  # the app's start-up narrows it (broker_for)
        if qmt is not None:
            qmt.record = self._record
        self.metrics = metrics
        self.notify = notify  # wakes the outbox relay after a commit
        self.quotes = quotes  # the limit-up price a market buy reserves cash at (None: market buys are refused)
        self.calendar = calendar  # trading days, for expiring day orders (None: orders never expire here)
        # The session an order placed now is for, from the calendar's trading days kept in memory (`order_sessions`:
        # shared with the paper broker; default kept here. None: no calendar here, the exchange date of now is today).
        self.order_sessions = (
            order_sessions if order_sessions is not None or calendar is None else OrderSessions(calendar)
        )
        self.clock = clock  # decides "today" for T+1 and which sessions have closed, and stamps orders
        # The market clock's replayed session (None on the real clock): "today" when set.
        self.market_session = market_session
        # where a session's ex-dates come from (None: corporate actions are not applied here)
        self.ex_dates = ex_dates
        # fills on quotes the paper broker booked but this desk could not record yet (tried again next round)
        self.unrecorded_quote_fills: dict[str, None] = {}
        self.adjusted_through: date | None = None  # the real clock: the last session whose corporate actions ran
        self.corporate_actions_gated = False  # the last pass stopped at a session an earlier one's orders hold up
        self.first_reconcile_done = asyncio.Event()
        # Real-time quotes: those held from the feed's events (an order's arrival price), and the data service's
        # reads (positions' prices, the minute bars of cost analysis). None: not here (last closes only).
        self.held_quotes = held_quotes
        self.live_quotes = live_quotes
        self.amends: AmendGuard | None = None  # set by the app: a user's cancel stops an amend in progress first

    # --- placing --------------------------------------------------------------------------------------

    async def submit(
        self, submission: OrderSubmission, principal: Principal, *, now: datetime | None = None
    ) -> Submission:
        """`now`: when it is placed (default the clock's now; a batch's item: the batch's, a microsecond an item)."""
        terms = submission.terms()
        raw = submission.approval
        decision_id = raw.get("decision_id") if raw is not None else None
        decision_id = decision_id if isinstance(decision_id, str) else None
        reason = refusal_reason(self.approval_secret, terms, raw, principal, max_age_s=self.approval_ttl_s)
        if reason is not None or decision_id is None:
            raise await self._refuse(reason or "approval has no decision id", terms, decision_id, principal)

        # The look for an order already placed under this client_order_id or decision is the one create_order makes
        # under the account's lock (a first look before it cost every new order a transaction). A retry of a market
        # buy asks the data service for its cap again, and any retry the calendar for its session; if either fails,
        # the retry is still answered with its order.
        now = now or self.clock()
        try:
            session = await self.order_session(now, placing=True)
            price_cap = await self._price_cap(terms, session)
            broker = await self._broker_ready(terms.account_id)
        except ServiceError:
            existing = await self._existing(terms, decision_id, principal)
            if existing is not None:
                return Submission(existing, created=False)
            raise
        new = NewOrder(terms, decision_id, price_cap=price_cap, arrival=await self._arrival(terms.ts_code, now))
        try:
            (outcome,) = await self.store.create_orders(
                [new], today=session.day, opens_after=session.opens_after, now=now, admit=self._admit_hook()
            )
        except IntegrityError:
            # Lost a race with the same submission: the unique constraints decided, read the winner.
            existing = await self._existing(terms, decision_id, principal)
            if existing is None:
                raise
            return Submission(existing, created=False)
        admitted = await self._admitted(new, outcome, principal)
        if not admitted.created:
            return admitted
        try:
            sent = await self._send(admitted.stored, fresh=True, broker=broker)
        finally:
            # The relay publishes `order.accepted` with the report's events, in one flush (its read and its mark)
            # rather than one flush for it and one for them; at once whether or not the report was recorded.
            self.notify()
        return Submission(sent, created=True)

    def _admit_hook(self) -> Callable[[DbSession, OrderTerms], Awaitable[None]] | None:
        return None if self.amends is None else self.amends.admit

    async def _admitted(self, new: NewOrder, outcome: Admission, principal: Principal) -> Submission:
        """What an admission's outcome (`create_orders`) answers: the new order (created, not sent yet), the order a
        repeated submission is answered with, or the error (raised)."""
        terms = new.terms
        if isinstance(outcome, AlreadyPlaced):
            # A duplicate that waited for the lock behind the first copy: the same answer as a later retry.
            placed = await self._placed(terms, new.decision_id, principal, outcome.same_key, outcome.by_decision)
            assert placed is not None
            return Submission(placed, created=False)
        if isinstance(outcome, AdmissionRefused):
            # The account cannot afford it (shares or cash, checked under its lock): nothing was stored.
            self.metrics.refused.inc()
            log.info("submission refused", extra={"reason": outcome.code, "client_order_id": terms.client_order_id})
            raise ServiceError(outcome.code, outcome.message, status_code=422, **outcome.details) from outcome
        if isinstance(outcome, ServiceError):
            raise outcome
        self.metrics.entered(OrderStatus.ACCEPTED)
        return Submission(outcome, created=True)

    async def submit_many(self, submissions: Sequence[OrderSubmission], principal: Principal) -> list[SubmittedItem]:
        """Risk's approved orders of one batch (`POST /v1/order-submissions`), each answered exactly as `submit`
        answers it alone, in the order given, in one request instead of one each. The items whose approval, session,
        price cap and broker check out are admitted together (`create_orders`: one transaction, each item checked
        against the cash and shares the earlier ones took) and the paper broker's reports and book of those admitted
        recorded together (`apply_booked`: one transaction); an item that needs more (an approval refused, a
        dependency failing its checks) goes alone through `submit`, in its place. An item answered 5xx (a dependency
        down) stops the batch: the items after it are not tried (503 `not_sent`), so a later order never goes ahead
        of an earlier one; risk sends them again with their client_order_ids. An error that is no dependency's (a
        bug) fails the request: risk then treats every item's outcome as unknown, as for a single order."""
        answers: list[SubmittedItem] = []
        group: list[_Ready] = []
        now = self.clock()

        def stopped() -> bool:
            return any(a.status_code >= 500 for a in answers)

        for index, submission in enumerate(submissions):
            ready = await self._ready(index, submission, principal, now)
            if ready is not None and (not group or group[0].session == ready.session):
                group.append(ready)
                continue
            if group:
                answers.extend(await self._submit_group(group, principal, now))
                group = []
                if stopped():
                    break
            if ready is not None:
                group.append(ready)
                continue
            answers.append(await self._submitted_alone(index, submission, principal, now))
            if stopped():
                break
        if group:
            answers.extend(await self._submit_group(group, principal, now))
        first_failed = next((a.index for a in answers if a.status_code >= 500), None)
        for index in range(len(answers), len(submissions)):
            message = f"not tried: submission {first_failed} before it could not be taken; send it again"
            answers.append(SubmittedItem(index, 503, code="not_sent", message=message))
        return answers

    async def _ready(
        self, index: int, submission: OrderSubmission, principal: Principal, now: datetime
    ) -> _Ready | None:
        """An item of a batch whose approval, session, price cap and broker check out, ready to be admitted with the
        others; None: it is to be submitted alone (`submit` answers what failed, or finds the order placed)."""
        terms = submission.terms()
        raw = submission.approval
        decision_id = raw.get("decision_id") if raw is not None else None
        if not isinstance(decision_id, str):
            return None
        if refusal_reason(self.approval_secret, terms, raw, principal, max_age_s=self.approval_ttl_s) is not None:
            return None
        try:
            session = await self.order_session(now, placing=True)
            price_cap = await self._price_cap(terms, session)
            broker = await self._broker_ready(terms.account_id)
        except Exception:
            return None
        arrival = await self._arrival(terms.ts_code, now)
        return _Ready(
            index, submission, NewOrder(terms, decision_id, price_cap=price_cap, arrival=arrival), session, broker
        )

    async def _submitted_alone(
        self, index: int, submission: OrderSubmission, principal: Principal, now: datetime
    ) -> SubmittedItem:
        """An item of a batch submitted as a single order, stamped as the batch's item `index` (creation order)."""
        try:
            result = await self.submit(submission, principal, now=now + timedelta(microseconds=index))
        except Exception as exc:
            return _failed_item(index, exc)
        return SubmittedItem(index, 201 if result.created else 200, stored=result.stored)

    async def _submit_group(self, group: list[_Ready], principal: Principal, now: datetime) -> list[SubmittedItem]:
        """`submit_many`'s items that checked out (one session), admitted in one transaction and sent: their answers
        in order (only up to the first answered 5xx when it is not the group's own)."""
        session = group[0].session
        try:
            outcomes = await self.store.create_orders(
                [r.new for r in group],
                today=session.day,
                opens_after=session.opens_after,
                now=now + timedelta(microseconds=group[0].index),  # item i of the batch: now + i µs (creation order)
                admit=self._admit_hook(),
            )
        except IntegrityError:
            # A race on an item's keys the locks did not serialise: nothing was stored. Each alone finds the winner
            # (up to one answered 5xx: the caller answers the rest `not_sent`).
            alone: list[SubmittedItem] = []
            for r in group:
                alone.append(await self._submitted_alone(r.index, r.submission, principal, now))
                if alone[-1].status_code >= 500:
                    break
            return alone
        except Exception as exc:
            # Nothing was stored: the first item answers why (a bug is raised), the others were not tried.
            first = _failed_item(group[0].index, exc)
            message = f"not tried: submission {first.index} before it could not be taken; send it again"
            return [first, *(SubmittedItem(r.index, 503, code="not_sent", message=message) for r in group[1:])]
        answers: dict[int, SubmittedItem] = {}
        created: list[tuple[_Ready, StoredOrder]] = []
        for ready, outcome in zip(group, outcomes, strict=True):
            try:
                admitted = await self._admitted(ready.new, outcome, principal)
            except Exception as exc:
                answers[ready.index] = _failed_item(ready.index, exc)
                continue
            if admitted.created:
                created.append((ready, admitted.stored))
            else:
                answers[ready.index] = SubmittedItem(ready.index, 200, stored=admitted.stored)
        if created:
            # an item the group answered 5xx before a created one: that one and the later ones are held, as alone
            first_failed = min((i for i, a in answers.items() if a.status_code >= 500), default=None)
            try:
                answers.update(await self._send_group(created, held_after=first_failed))
            finally:
                self.notify()  # the `order.accepted` events, with the reports' (see `submit`)
        return [answers[r.index] for r in group]

    async def _send_group(
        self, created: list[tuple[_Ready, StoredOrder]], *, held_after: int | None = None
    ) -> dict[int, SubmittedItem]:
        """Send a group's new orders: the paper broker's matches (`book`) first, then their reports and book writes in
        one transaction (`apply_booked`); an order of another broker (QMT) is sent on its own (`_send`). An order
        the broker could not take (or whose match a dependency failed) stays accepted (503 naming it;
        reconciliation sends it), and so do the group's later ones, not sent — as do those after item `held_after`
        (an item of the group answered 5xx). When the joint record cannot be made as it is (a lost race, a
        book that had an order, a report contradicting its order), each is sent alone, as `submit` sends it, up to
        one answered 5xx."""
        answers: dict[int, SubmittedItem] = {}
        booked: list[tuple[_Ready, StoredOrder, Booking]] = []

        def stopped(index: int) -> bool:
            return (held_after is not None and index > held_after) or any(
                a.status_code >= 500 for a in answers.values()
            )

        def hold(ready: _Ready, stored: StoredOrder) -> None:
            waiting = BrokerUnavailable("not sent: an order before it in its batch was not taken")
            answers[ready.index] = _failed_item(ready.index, _stays_accepted(stored.order.order_id, waiting))

        async def alone(ready: _Ready, stored: StoredOrder) -> None:
            try:
                sent = await self._send(stored, fresh=True, broker=ready.broker)
            except Exception as exc:
                answers[ready.index] = _failed_item(ready.index, exc)
            else:
                answers[ready.index] = SubmittedItem(ready.index, 201, stored=sent)

        for ready, stored in created:
            order_id = stored.order.order_id
            if stopped(ready.index):
                hold(ready, stored)
            elif not isinstance(ready.broker, BookingBroker):
                await alone(ready, stored)
            else:
                try:
                    booking = await ready.broker.book(
                        stored.order, price_cap=stored.price_cap, paper_fill=stored.paper_fill
                    )
                except BrokerUnavailable as exc:
                    answers[ready.index] = _failed_item(ready.index, _stays_accepted(order_id, exc))
                except Exception as exc:  # a dependency failing its match: it stays accepted (a bug is raised)
                    answers[ready.index] = _failed_item(ready.index, exc, order_id=order_id)
                else:
                    booked.append((ready, stored, booking))
        if not booked:
            return answers
        # One broker's bookings (the paper broker's: every booking broker is) are written together, the others each.
        writer = booked[0][0].broker
        assert isinstance(writer, BookingBroker)
        together = [b for r, _, b in booked if r.broker is writer]
        try:
            applied = await self.store.apply_booked(
                [
                    Booked(stored.order.order_id, booking.report, stored, None if r.broker is writer else booking.write)
                    for r, stored, booking in booked
                ],
                now=self.clock(),
                within=writer.write_many(together),
            )
        except (AlreadyBooked, ConcurrentUpdate, IntegrityError, InconsistentReport, IllegalTransition, LookupError):
            first_held = len(answers)
            for ready, stored, _ in booked:
                if len(answers) > first_held and any(a.status_code >= 500 for a in answers.values()):
                    hold(ready, stored)
                else:
                    await alone(ready, stored)
            return answers
        except Exception as exc:
            if dependency_failure(exc) is None:
                raise
            for ready, stored, _ in booked:  # recorded accepted, not sent: reconciliation sends them
                answers[ready.index] = _failed_item(ready.index, exc, order_id=stored.order.order_id)
            return answers
        for (ready, _, _), report in zip(booked, applied, strict=True):
            if report.statuses or report.new_trades:
                self.metrics.entered(*report.statuses)
                self.metrics.trades.inc(report.new_trades)
            answers[ready.index] = SubmittedItem(ready.index, 201, stored=report.stored)
        return answers

    async def _price_cap(self, terms: OrderTerms, session: OrderSession) -> Decimal | None:
        """The most a buy may pay a share, which its cash is reserved at: the limit price, or for a market buy
        the limit-up price of the order's session from the data service. A market buy without one (no data, no
        price limits that session, or on the real clock a latest quote whose limits are another session's: the
        bars of the session before the order's are not in yet) is refused: there is no bound to reserve cash for."""
        if terms.side != OrderSide.BUY.value:
            return None
        if terms.order_type == OrderType.LIMIT.value:
            return terms.price
        return await self._market_buy_cap(terms.ts_code, session)

    async def _market_buy_cap(self, ts_code: str, session: OrderSession) -> Decimal:
        """The limit-up price of `ts_code` in `session`, which a market buy reserves its cash at (`_price_cap`)."""
        if self.quotes is None:
            raise ServiceError(
                "price_cap_unknown", "market buys are not accepted here: place a limit order", status_code=422
            )
        try:
            replayed = self.market_session()
            # On a replay clock, the limit-up of the replayed session; else of the next session.
            quote = await (self.quotes.latest(ts_code) if replayed is None else self.quotes.latest(ts_code, replayed))
            if (
                quote is not None
                and self._real_sessions()
                and quote_ahead_of(quote.limits_for, quote.last_trade_date, session.day)
            ):
                # the store is past the order's session (a shifted clock over history): that session's limit-up
                quote = await self.quotes.latest(ts_code, session.day)
        except BrokerUnavailable as exc:
            raise Unavailable("market_data_unavailable", f"cannot price a market buy of {ts_code} now: {exc}") from exc
        if quote is not None and self._real_sessions():
            unknown = limits_unknown(ts_code, quote.limits_for, session.day, session.previous)
            if unknown is not None:
                raise ServiceError(LIMITS_UNKNOWN, f"a market buy reserves cash at the limit-up price: {unknown}",
                                   status_code=422)  # fmt: skip
        if quote is None or quote.limit_up is None:
            why = "it is not a known security" if quote is None else "its next session has no price limit"
            raise ServiceError(
                "price_cap_unknown",
                f"a market buy of {ts_code} reserves cash at the limit-up price and {why}: place a limit order",
                status_code=422,
            )
        return quote.limit_up

    async def _arrival(self, ts_code: str, now: datetime) -> Arrival | None:
        """The price an order created at `now` arrives at, for cost analysis (docs/tca.md): the latest live quote
        execution holds when it is of today's session (by the market clock), else the last close before the session
        (the data service's reference data, held in memory). Never fails an order: None when neither is had."""
        replayed = self.market_session()
        today = market_today(now, replayed)
        held = self.held_quotes.get(ts_code) if self.held_quotes is not None else None
        if held is not None and held.time <= now and held.time.astimezone(EXCHANGE_TZ).date() == today:
            return Arrival(held.last, tca.ARRIVAL_LIVE, held.time)
        if self.quotes is None:
            return None
        try:
            # held in memory; a reload of the reference data (one request per data version) is waited for briefly:
            # the order is not held up for a benchmark
            async with asyncio.timeout(ARRIVAL_WAIT_S):
                quote = await (
                    self.quotes.latest(ts_code) if replayed is None else self.quotes.latest(ts_code, replayed)
                )
        except (BrokerUnavailable, MarketDataError, TimeoutError) as exc:
            log.warning("an order has no arrival price", extra={"ts_code": ts_code, "error": repr(exc)})
            return None
        if quote is None or quote.last_close is None or quote.last_trade_date is None:
            return None
        return tca.last_close_arrival(quote.last_close, quote.last_trade_date)

    async def _existing(self, terms: OrderTerms, decision_id: str, principal: Principal) -> StoredOrder | None:
        same_key, used = await self.store.find_by_key_or_decision(terms.account_id, terms.client_order_id, decision_id)
        return await self._placed(terms, decision_id, principal, same_key, used)

    async def _placed(
        self,
        terms: OrderTerms,
        decision_id: str,
        principal: Principal,
        same_key: StoredOrder | None,
        used: StoredOrder | None,
    ) -> StoredOrder | None:
        """The order a repeated submission is answered with (same client_order_id, same terms), or a 409 for other
        terms, or a 403 for an approval spent on another client_order_id; None when neither exists."""
        if same_key is not None:
            if same_key.terms() != terms:
                raise Conflict(
                    "client_order_id_conflict",
                    f"client_order_id {terms.client_order_id} is already used by order {same_key.order.order_id} "
                    "with different terms",
                )
            return same_key
        if used is not None:
            raise await self._refuse(
                f"approval {decision_id} was already used for client_order_id {used.order.client_order_id}",
                terms,
                decision_id,
                principal,
            )
        return None

    async def _refuse(
        self, reason: str, terms: OrderTerms, decision_id: str | None, principal: Principal
    ) -> ServiceError:
        await self.store.record_refusal(reason=reason, terms=terms, decision_id=decision_id, principal=principal)
        self.metrics.refused.inc()
        log.warning(
            "submission refused",
            extra={"reason": reason, "client_order_id": terms.client_order_id, "subject": principal.subject},
        )
        return Forbidden("approval_invalid", reason)

    async def _broker_ready(self, account_id: str) -> BrokerAdapter:
        """A new order of an account trading through QMT is taken only while its bridge (and the bridge's MiniQMT) is
        there: otherwise 503 `broker_unavailable` with nothing stored and nothing sent — a trader told "unavailable"
        must not find the order sent later when the bridge comes back. (An order stored just before the link dropped
        stays `accepted` and is sent when it is back, within its session: docs/qmt-bridge.md.) The account's broker,
        which the new order is then sent to (read once an order)."""
        broker = await self.broker_for(account_id)
        if not isinstance(broker, QmtBroker):
            return broker
        try:
            await broker.ready(account_id)
        except BrokerUnavailable as exc:
            raise Unavailable(
                "broker_unavailable", f"the broker cannot take orders now ({exc}); nothing was sent"
            ) from exc
        return broker

    async def broker_for(self, account_id: str) -> BrokerAdapter:
        """The broker an account trades through: the QMT adapter when an admin bound it to a QMT bridge, else the
        paper broker. With no bridge configured and no account bound to one (`qmt_possible` False, found at start;
        an account can only be bound to a configured bridge), every account is paper: no read."""
        if self.qmt is None or not self.qmt_possible:
            return self.broker
        bound = await self.store.account_broker(account_id)
        return self.qmt if bound.broker == QMT else self.broker

    async def _send(
        self, stored: StoredOrder, *, fresh: bool = False, broker: BrokerAdapter | None = None
    ) -> StoredOrder:
        """Send the order to the broker and record its report. `fresh`: `stored` is the order as this request has
        just recorded it (its report is then applied without reading the order back first; a broker whose book is in
        this database, the paper broker, has its book written in the report's transaction: `BookingBroker`). `broker`:
        the account's broker when the caller has read it already."""
        order_id = stored.order.order_id
        try:
            if broker is None:
                broker = await self.broker_for(stored.order.account_id)
            if fresh and isinstance(broker, BookingBroker):
                booking = await broker.book(stored.order, price_cap=stored.price_cap, paper_fill=stored.paper_fill)
            else:
                report = await broker.submit(stored.order, price_cap=stored.price_cap, paper_fill=stored.paper_fill)
                return await self._record(order_id, report, known=stored if fresh else None)
        except BrokerUnavailable as exc:
            raise _stays_accepted(order_id, exc) from exc
        try:
            return await self._record(order_id, booking.report, known=stored, within=booking.write)
        except AlreadyBooked:
            # The book had it already (a cancel's tombstone written first): what the book says is the report.
            booked = await broker.report(order_id)
            if booked is None:
                raise _stays_accepted(order_id, BrokerUnavailable(f"paper order {order_id} vanished")) from None
            return await self._record(order_id, booked)

    async def _record(
        self,
        order_id: str,
        report: BrokerReport,
        *,
        known: StoredOrder | None = None,
        within: Callable[[DbSession], Awaitable[None]] | None = None,
    ) -> StoredOrder:
        try:
            applied = await self.store.apply_report(order_id, report, now=self.clock(), known=known, within=within)
        except (InconsistentReport, IllegalTransition) as exc:
            log.error("broker report contradicts the order", extra={"order_id": order_id, "error": str(exc)})
            raise ServiceError("broker_report_inconsistent", str(exc), status_code=502, order_id=order_id) from exc
        if applied.statuses or applied.new_trades:
            self.notify()
            self.metrics.entered(*applied.statuses)
            self.metrics.trades.inc(applied.new_trades)
        return applied.stored

    def today(self) -> date:
        """The exchange date of now (Asia/Shanghai), or the replayed session on a replay clock: where day-order
        expiry and reconciliation read the calendar from. T+1, fee dates and cash reservations are by the session
        an order placed now is for (`order_session`)."""
        return market_today(self.clock(), self.market_session())

    def _real_sessions(self) -> bool:
        """Sessions come from the trade calendar: the real clock (no replayed session) with a calendar here."""
        return self.order_sessions is not None and self.market_session() is None

    async def order_session(self, now: datetime, *, placing: bool = False) -> OrderSession:
        """The session of T+1, fee dates and cash reservations: that of an order placed at `now` (on the real
        clock, the next trading day once today's 15:00 close has passed or on a closed day:
        `shared.platform.clock.order_session`, from the calendar's trading days kept in memory); the replayed
        session on a replay clock; without a calendar here, the exchange date of now. Fails closed: 503
        `calendar_unavailable` when the calendar cannot be read and the days kept do not answer; `placing`, 422
        `no_session` when the calendar has no trading day ahead (else, for a listing, the exchange date of now)."""
        replayed = self.market_session()
        if replayed is not None or self.order_sessions is None:
            return OrderSession.of_date(market_today(now, replayed))
        try:
            found = await self.order_sessions.session_of(now)
        except CalendarUnavailable as exc:
            raise Unavailable(
                "calendar_unavailable", f"cannot tell which trading session an order placed now is for: {exc}"
            ) from exc
        if found is not None:
            return found
        if placing:
            local = now.astimezone(EXCHANGE_TZ).strftime("%Y-%m-%d %H:%M")
            raise ServiceError(
                "no_session",
                f"the trade calendar has no trading day after {local} (Asia/Shanghai) for the order to trade on",
                status_code=422,
            )
        return OrderSession.of_date(market_today(now, None))

    async def replay_session(
        self, principal: Principal, clock: MarketClock, day: date, *, rewind: bool = False
    ) -> date:
        """Move a replay clock to trading day `day` and run `on_session` (`POST /v1/paper/session`: in standalone
        mode the strategy service's replayer reaches the desk only through it). Services only. Refused on the real
        clock (409 `not_replay`), for a day that is not a trading day (422 `not_a_trading_day`) or before the
        current session (409 `session_in_the_past`: orders and fills of later days exist) unless `rewind` (a new
        replay starts over). The same session again only runs `on_session`."""
        if not principal.is_service:
            raise Forbidden("forbidden", f"{principal.subject} may not move the market clock: services only")
        if not isinstance(clock, ReplayClock):
            name = "shifted" if isinstance(clock, ShiftedClock) else "real"
            raise Conflict(
                "not_replay",
                f"the market clock is not a replay clock (LH_MARKET_CLOCK={name}): there is no session to set",
            )
        current = self.market_session()
        if current is not None and day < current and not rewind:
            raise Conflict(
                "session_in_the_past",
                f"session: {day.isoformat()} is before the replayed session {current.isoformat()}",
            )
        if self.calendar is None:
            raise Unavailable("calendar_unavailable", "no trade calendar here to check the session against")
        try:
            # the days expiry needs once the clock is on `day` too: one read of the calendar a session
            days = await self.calendar.trading_days(day - CALENDAR_LOOKBACK, day)
        except CalendarUnavailable as exc:
            raise Unavailable("calendar_unavailable", f"cannot check the session against the calendar: {exc}") from exc
        if day not in days:
            raise ServiceError(
                "not_a_trading_day", f"session: {day.isoformat()} is not a trading day in the calendar", status_code=422
            )
        if day != current:
            clock.set_session(day)
        await self.on_session(days)
        return day

    async def on_quotes(self, event: Envelope) -> None:
        """A round of the real-time feed (`quotes.snapshot`) with the paper broker on quotes (LH_PAPER_FILLS=quotes):
        the broker matches the orders resting on its codes' quotes and each order it filled is recorded here (its
        trades and events, once: trades are unique by fill id). A report that could not be recorded (the database
        failed between the broker's book and execution's) is tried again with the next round, and at the latest by
        the day-order pass, which reads the broker's book at the close."""
        snapshot = event.parsed()
        if not isinstance(snapshot, QuotesSnapshot) or not isinstance(self.broker, PaperBroker):
            return
        touched = await self.broker.match_snapshot(snapshot)
        for order_id in [*self.unrecorded_quote_fills, *touched]:
            report = await self.broker.report(order_id)
            if report is None:
                continue
            try:
                await self._record(order_id, report)
            except Exception:
                log.exception("could not record a fill on quotes; tried again next round", extra={"order_id": order_id})
                self.unrecorded_quote_fills[order_id] = None
            else:
                self.unrecorded_quote_fills.pop(order_id, None)

    async def on_session(self, days: list[date] | None = None) -> None:
        """The market clock moved to a new session (a replay): first the session's corporate actions (before any of
        its orders is matched, as the backtest engine applies them at the start of its day), then expire now what
        rests of the day orders of the sessions that have closed, and match the orders waiting for a suspended
        symbol on the new session, rather than at the background pass's next turn. `days`: the trading days of the
        calendar from CALENDAR_LOOKBACK before the session to it, when the caller has them (else they are read)."""
        session = self.market_session()
        if session is not None:
            try:
                await self.corporate_actions(session, days)
            except RatiosUnavailable as exc:
                raise Unavailable(
                    "market_data_unavailable",
                    f"cannot apply the corporate actions of {session.isoformat()} before its orders: {exc}",
                ) from exc
        await self.expire_day_orders(days=days)

    # --- corporate actions -------------------------------------------------------------------------------------

    async def corporate_actions(self, day: date, days: list[date] | None = None) -> int:
        """Apply session `day`'s corporate actions (docs/order-path.md, "Corporate actions"): every holder's shares
        at the start of the session — each account's own part and each strategy instance's part, floored apart —
        of a code whose bar on `day` has another adj_factor than its previous bar become what the backtest engine's
        rule gives (shared.core.market.corporate), the fraction paid to the account in cash (ledger) with a
        `position.adjusted` event each. Idempotent: an adjustment already recorded is left as it is. Returns how
        many were recorded now. Raises RatiosUnavailable (nothing half-applied: each adjustment is one transaction
        and the next call completes the rest). `days`: trading days up to `day` when the caller has them (the
        factors are then read from the session before it only)."""
        if self.ex_dates is None:
            return 0
        earlier = [d for d in days or () if d < day]
        # the session's trades are those after the previous session's close (`positions.session_start`)
        holders = await self.store.holders_before(day, session_close(max(earlier)) if earlier else None)
        codes = sorted({h.ts_code for h in holders if h.qty > 0})
        if not codes:
            return 0
        ex_dates = await self.ex_dates.ex_dates(day, codes, max(earlier) if earlier else None)
        recorded = 0
        for adjustment in plan_adjustments(holders, ex_dates):
            if await self.store.record_adjustment(adjustment):
                recorded += 1
        if recorded:
            self.notify()
            log.info("corporate actions applied", extra={"session": day.isoformat(), "adjustments": recorded})
        return recorded

    async def corporate_actions_due(self, *, stop: asyncio.Event | None = None) -> int:
        """The real clock: the corporate actions of every session that has closed and whose bars are in (the paper
        broker matches a session's orders only then, after this pass), oldest first, from CALENDAR_LOOKBACK back at
        the first pass. A replay clock moves them with its sessions (`on_session`). Returns how many were recorded."""
        complete_through = getattr(self.calendar, "complete_through", None)
        if self.ex_dates is None or self.calendar is None or complete_through is None:
            return 0
        if self.market_session() is not None:
            return 0
        now, today = self.clock(), self.today()
        try:
            days = await self.calendar.trading_days(today - CALENDAR_LOOKBACK, today)
            through = await complete_through()
        except CalendarUnavailable as exc:
            log.warning("corporate actions wait: no trade calendar", extra={"error": str(exc)})
            return 0
        recorded = 0
        self.corporate_actions_gated = False
        # A session's actions count the shares held at its start, so every order of an earlier session must have been
        # matched first: when several sessions' bars arrive together (a catch-up), this stops at the first session
        # with an earlier one's order still to match, the expiry pass matches those, and the next round goes on.
        unmatched = await self._earliest_unmatched_session()
        for day in days:
            if stop is not None and stop.is_set():
                break
            if through is None or day > through or session_close(day) > now:
                break
            if self.adjusted_through is not None and day <= self.adjusted_through:
                continue
            if unmatched is not None and unmatched < day:
                self.corporate_actions_gated = True
                break
            recorded += await self.corporate_actions(day, days)
            self.adjusted_through = day
        return recorded

    async def _earliest_unmatched_session(self) -> date | None:
        """The earliest session an order still rests for at the paper broker (None: none, or not the paper broker)."""
        if not isinstance(self.broker, PaperBroker):
            return None
        return await self.broker.earliest_resting_session()

    # --- a paper account's settings -------------------------------------------------------------------

    def _paper(self) -> PaperBroker:
        if not isinstance(self.broker, PaperBroker):
            raise Conflict("not_paper", f"execution trades through the {self.broker.name} broker: no paper settings")
        return self.broker

    async def paper_settings(self, principal: Principal, account_id: str | None) -> tuple[str, str]:
        """How the caller's account (or, for services and admins, `account_id`) treats an order placed while the
        market is closed: `rest` or `refuse`."""
        account = self._named_account(principal, account_id, "paper settings")
        await self._paper_account(account)
        return account, await self._paper().closed_market(account)

    async def _paper_account(self, account_id: str) -> None:
        """409 `not_paper` for an account that trades through a real broker (QMT): paper settings are not its."""
        if await self.broker_for(account_id) is not self.broker:
            raise Conflict("not_paper", f"account {account_id} trades through a QMT bridge: it has no paper settings")

    async def set_paper_settings(self, principal: Principal, account_id: str, closed_market: str) -> tuple[str, str]:
        if not principal.acts_for_everyone:
            raise Forbidden("forbidden", f"role {principal.role} may not change an account's paper settings")
        await self._paper_account(account_id)
        await self._paper().set_closed_market(account_id, closed_market, by=principal.subject)
        log.info("paper account settings changed", extra={"account_id": account_id, "closed_market": closed_market,
                                                          "by": principal.subject})  # fmt: skip
        return account_id, closed_market

    # --- reading --------------------------------------------------------------------------------------

    @staticmethod
    def visible_account(principal: Principal) -> str | None:
        """The account a principal may see, or None for all (admins and services)."""
        return None if principal.acts_for_everyone else principal_account(principal)

    async def get(self, order_id: str, principal: Principal) -> StoredOrder:
        stored = await self.store.get_order(order_id)
        account = self.visible_account(principal)
        if stored is None or (account is not None and stored.order.account_id != account):
            raise NotFound("order_not_found", f"no order {order_id}")
        return stored

    def _listed_account(self, principal: Principal, account_id: str | None, what: str) -> str | None:
        """The account a listing is limited to: the one named (services and admins; a person only their own),
        else the caller's own, or None (all) for services and admins."""
        if account_id is not None:
            return self._named_account(principal, account_id, what)
        return self.visible_account(principal)

    async def list_orders(
        self,
        principal: Principal,
        status: OrderStatus | None,
        limit: int,
        *,
        strategy_instance_id: str | None = None,
        account_id: str | None = None,
        oldest_first: bool = False,
        after: str | None = None,
    ) -> list[StoredOrder]:
        try:
            return await self.store.list_orders(
                account_id=self._listed_account(principal, account_id, "orders"),
                status=status,
                limit=limit,
                strategy_instance_id=strategy_instance_id,
                oldest_first=oldest_first,
                after=after,
            )
        except LookupError:
            raise NotFound("order_not_found", f"no order {after} to list the orders after (after)") from None

    async def list_trades(
        self,
        principal: Principal,
        order_id: str | None,
        limit: int,
        *,
        strategy_instance_id: str | None = None,
        account_id: str | None = None,
        oldest_first: bool = False,
        after: str | None = None,
        ts_code: str | None = None,
    ) -> list[TradeRecord]:
        try:
            return await self.store.list_trades(
                account_id=self._listed_account(principal, account_id, "trades"),
                order_id=order_id,
                limit=limit,
                strategy_instance_id=strategy_instance_id,
                oldest_first=oldest_first,
                after=after,
                ts_code=ts_code,
            )
        except LookupError:
            raise NotFound("trade_not_found", f"no trade {after} to list the trades after (after)") from None

    async def adjustments(
        self, principal: Principal, account_id: str | None, strategy_instance_id: str | None, limit: int
    ) -> list[AdjustmentRecord]:
        """The corporate actions applied to the positions of the caller's account (services and admins: of
        `account_id`, or everyone's), oldest first."""
        return await self.store.list_adjustments(
            account_id=self._listed_account(principal, account_id, "positions"),
            strategy_instance_id=strategy_instance_id,
            limit=limit,
        )

    # --- positions valued, the account summed up, cost analysis ---------------------------------------

    async def _prices(self, codes: list[str], now: datetime) -> dict[str, valuations.Price]:
        """Each code's price (docs/order-path.md, "Positions and the account"): its live quote from the data service
        (one bulk read for all the codes) unless the last close in the store is newer, else that last close (the
        reference data held in memory). A code with neither is left out (its value is not given)."""
        replayed = self.market_session()
        today = market_today(now, replayed)
        live: dict[str, LiveQuote] = {}
        if self.live_quotes is not None and codes:
            try:
                live = await self.live_quotes.live(codes)
            except LiveQuotesUnavailable as exc:
                log.warning("positions valued at the last close: no live quotes", extra={"error": str(exc)})
        out: dict[str, valuations.Price] = {}
        for code in codes:
            close: valuations.Price | None = None
            if self.quotes is not None:
                try:
                    quote = await (self.quotes.latest(code) if replayed is None else self.quotes.latest(code, replayed))
                except (BrokerUnavailable, MarketDataError) as exc:
                    log.warning("no last close to value a position at", extra={"ts_code": code, "error": str(exc)})
                    quote = None
                if quote is not None and quote.last_close is not None and quote.last_trade_date is not None:
                    at = tca.last_close_arrival(quote.last_close, quote.last_trade_date).at
                    close = valuations.Price(quote.last_close, valuations.LAST_CLOSE, at, quote.last_close)
            got = live.get(code)
            if got is not None and got.time <= now and (close is None or got.time >= close.as_of):
                of_today = got.time.astimezone(EXCHANGE_TZ).date() == today
                out[code] = valuations.Price(
                    got.last, valuations.LIVE, got.time, got.pre_close if of_today else got.last
                )
            elif close is not None:
                out[code] = close
        return out

    async def valued_positions(
        self, principal: Principal, account_id: str | None
    ) -> tuple[list[valuations.PositionValue], valuations.AccountSummary]:
        """The positions of `account_id` (services and admins) or the caller's own, each valued, and the account's
        market value and P&L over all its codes."""
        account = self._named_account(principal, account_id, "positions")
        return await self._valuation(account)

    async def _valuation(self, account: str) -> tuple[list[valuations.PositionValue], valuations.AccountSummary]:
        now = self.clock()
        session = await self.order_session(now)  # sellable: in the session of a sell placed now
        lots, open_sells, costed, adjusted = await self.store.valuation_inputs(
            account, session.day, session.opens_after
        )
        held = holdings(lots, open_sells, today=session.day, opens_after=session.opens_after)
        books = valuations.books(costed, adjusted, today=self.today())
        codes = sorted(set(valuations.codes_to_price(books)) | {h.ts_code for h in held})
        prices = await self._prices(codes, now)
        reserved: dict[str, int] = {}
        for sell in open_sells:
            reserved[sell.ts_code] = reserved.get(sell.ts_code, 0) + max(sell.remaining_qty, 0)
        positions = [
            valuations.value_position(
                books.get(h.ts_code, valuations.Book(qty=h.qty, start_qty=h.qty)),
                h,
                reserved.get(h.ts_code, 0),
                prices.get(h.ts_code),
                h.ts_code,
            )
            for h in held
        ]
        return positions, valuations.summarise(books, prices)

    async def account_valuation(self, account: str) -> valuations.AccountSummary:
        """The market value and P&L of an account the caller may see (`account` as `account()` resolved it)."""
        return (await self._valuation(account))[1]

    async def tca_orders(
        self,
        principal: Principal,
        *,
        account_id: str | None,
        strategy_instance_id: str | None,
        start: date | None,
        end: date | None,
        order_id: str | None = None,
        filled_only: bool = False,
        limit: int,
    ) -> list[tca.OrderTca]:
        """Each order's cost analysis (docs/tca.md), oldest first: the caller's orders (services and admins:
        `account_id`'s, or everyone's) created on the days from `start` to `end` (Asia/Shanghai, both included)."""
        if start is not None and end is not None and start > end:
            raise ServiceError("invalid_range", f"start {start} is after end {end}", status_code=422)
        rows = await self.store.tca_rows(
            account_id=self._listed_account(principal, account_id, "orders"),
            strategy_instance_id=strategy_instance_id,
            created_from=None if start is None else datetime.combine(start, time.min, EXCHANGE_TZ),
            created_before=None if end is None else datetime.combine(end + timedelta(days=1), time.min, EXCHANGE_TZ),
            order_id=order_id,
            filled_only=filled_only,
            limit=limit,
        )
        return await tca.analyse(rows, self.live_quotes)

    # --- risk's snapshot ------------------------------------------------------------------------------

    async def risk_snapshot(self, principal: Principal, account_id: str) -> RiskSnapshotOut:
        """The account as risk seeds its hot book from (services/execution/snapshot.py: what it holds, and its 7-day
        window). Risk only (403 otherwise); 404 `account_not_found` for an account never seen."""
        if not (principal.is_service and principal.subject == RISK_SUBJECT):
            raise Forbidden("forbidden", f"{principal.subject} may not read risk's snapshot: the risk service only")
        now = self.clock()
        days: list[date] | None = None
        if self._real_sessions():
            assert self.order_sessions is not None
            try:
                days = await self.order_sessions.days_around(now)
            except CalendarUnavailable as exc:
                raise Unavailable(
                    "calendar_unavailable", f"cannot tell which session each recent buy counts in: {exc}"
                ) from exc
        since = now - snapshots.WINDOW
        rows = await self.store.snapshot_rows(account_id, since)
        if rows is None:
            # an account whose orders predate the accounts table has no row yet: opened as its cash read opens it
            if not await self.store.known_account(account_id):
                raise NotFound("account_not_found", f"no account {account_id}: it has no orders and no cash movements")
            await self.store.ensure_account(account_id)
            rows = await self.store.snapshot_rows(account_id, since)
            if rows is None:
                raise AssertionError(f"account {account_id} could not be created")
        return snapshots.risk_snapshot(account_id, now, since, rows, lambda at: fill_session(at, days))

    # --- cash -----------------------------------------------------------------------------------------

    def _named_account(self, principal: Principal, account_id: str | None, what: str) -> str:
        own = principal_account(principal)
        if account_id is not None and account_id != own and not principal.acts_for_everyone:
            raise Forbidden("forbidden", f"{principal.subject} may not see the {what} of account {account_id}")
        return account_id or own

    async def account(self, principal: Principal, account_id: str | None) -> AccountCash:
        """The cash of `account_id` (services and admins only) or else of the caller's own account. The caller's
        own account is opened (with the paper opening cash) the first time it is seen; an account someone else
        names must have been seen already (404 otherwise), so that a mistyped account_id opens nothing."""
        account = self._named_account(principal, account_id, "cash")
        if account != principal_account(principal) and not await self.store.known_account(account):
            raise NotFound("account_not_found", f"no account {account}: it has no orders and no cash movements")
        # reservations' fees by the date of the session an order placed now is for, as admission reckons them
        return AccountCash(account, await self.store.cash(account, (await self.order_session(self.clock())).day))

    # --- the ticket's estimate -------------------------------------------------------------------------

    async def estimate(
        self,
        principal: Principal,
        account_id: str | None,
        ts_code: str,
        side: OrderSide,
        price: Decimal | None,
        qty: int | None,
    ) -> Estimate:
        """What an order placed now would come to (`GET /v1/orders/estimate`): its amount and fees (`trade_fees` on
        the date of the session an order placed now is for, as admission reckons them) and the most shares it may
        take: a buy the most the available cash pays for, fees included, on the code's lot (`lot_sizes`,
        `matching.affordable`) and within the exchange's largest order (`max_order_qty`); a sell the sellable
        shares. A buy without a price (a market buy) is reckoned at the limit-up price its cash would be reserved
        at. The account: the caller's own, or for services and admins the one named."""
        account = await self.account(principal, account_id)
        now = self.clock()
        session = await self.order_session(now)
        basis: str | None = PRICE_BASIS_PRICE if price is not None else None
        if price is None and side is OrderSide.BUY:
            price, basis = await self._market_buy_cap(ts_code, session), PRICE_BASIS_LIMIT_UP
        elif self.quotes is not None:
            try:
                unknown = await self.quotes.latest(ts_code) is None
            except BrokerUnavailable:
                unknown = False  # the figures need no data: the code is checked again when the order is placed
            if unknown:
                raise ServiceError(
                    "unknown_security", f"the data service knows no security {ts_code}", status_code=422,
                    field="ts_code",
                )  # fmt: skip
        board = parse_ts_code(ts_code).board
        if side is OrderSide.BUY:
            assert price is not None
            lot_min, lot_step = lot_sizes(ts_code)
            schedule = FenFees.from_schedule(FeeSchedule())
            most = affordable(schedule, max(account.cash.available_fen, 0), to_fen(price), lot_min, lot_step)
            ceiling = max_order_qty(board, market=basis == PRICE_BASIS_LIMIT_UP, trade_date=session.day)
            if ceiling is not None and most > ceiling:
                most = ceiling - (ceiling - lot_min) % lot_step
        else:
            lots, open_sells, _, _ = await self.store.valuation_inputs(
                account.account_id, session.day, session.opens_after
            )
            held = holdings(lots, open_sells, today=session.day, opens_after=session.opens_after)
            most = next((h.sellable_qty for h in held if h.ts_code == ts_code), 0)
        amount = price * qty if price is not None and qty is not None else None
        is_sell = side is OrderSide.SELL
        fees = None if amount is None else trade_fees(amount, is_sell=is_sell, trade_date=session.day)
        return Estimate(
            account_id=account.account_id,
            ts_code=ts_code,
            side=side,
            trade_date=session.day,
            price=price,
            price_basis=basis,
            qty=qty,
            amount=amount,
            fees=fees,
            max_qty=most,
            available_fen=account.cash.available_fen,
        )

    async def move_cash(
        self, principal: Principal, account_id: str, kind: str, amount: Decimal, idempotency_key: str
    ) -> CashMovement:
        """A deposit or withdrawal (admins and services), once per (account, idempotency_key)."""
        if not principal.acts_for_everyone:
            raise Forbidden("forbidden", f"role {principal.role} may not move cash")
        if cashbook.reserved_key(idempotency_key):
            raise ServiceError(
                "idempotency_key_reserved",
                f"idempotency_key {idempotency_key!r} is reserved for execution's own ledger entries (the opening "
                f"cash, {cashbook.TRADE_KEY_PREFIX}<trade_id> for fills, {cashbook.ADJUSTMENT_KEY_PREFIX}... for "
                "corporate actions): choose another",
                status_code=422,
            )
        signed = to_fen(amount) if kind == cashbook.DEPOSIT else -to_fen(amount)
        today = (await self.order_session(self.clock())).day
        existing = await self.store.find_entry(account_id, idempotency_key)
        if existing is None:
            try:
                entry, created = await self.store.move_cash(
                    account_id, kind, signed, idempotency_key, created_by=principal.subject, today=today
                )
                self.notify()  # its `cash.moved` event
            except EntryExists as exc:
                # A duplicate that waited for the lock behind the first copy: answered with the first copy.
                existing = exc.entry
            except AdmissionRefused as exc:
                raise ServiceError(exc.code, exc.message, status_code=422, **exc.details) from exc
            except IntegrityError:
                existing = await self.store.find_entry(account_id, idempotency_key)
                if existing is None:
                    raise
        if existing is not None:
            if (existing.kind, existing.amount_fen) != (kind, signed):
                raise Conflict(
                    "idempotency_key_conflict",
                    f"idempotency_key {idempotency_key} was used for a {existing.kind} of "
                    f"{cashbook.cny(abs(existing.amount_fen))} CNY",
                )
            entry, created = existing, False
        return CashMovement(entry, created, AccountCash(account_id, await self.store.cash(account_id, today)))

    # --- cancelling -----------------------------------------------------------------------------------

    async def cancel(self, order_id: str, principal: Principal) -> StoredOrder:
        return (await self.cancel_order(order_id, principal))[0]

    async def cancel_order(self, order_id: str, principal: Principal) -> tuple[StoredOrder, bool]:
        """Cancel what rests of the order: (the order after, whether the cancel was only requested). A broker that
        cancels asynchronously (QMT) takes the request and reports the outcome later: the order is still open and
        the second value is True (the API answers 202)."""
        stored = await self.get(order_id, principal)
        # an amend of the order still cancelling or replacing stops first: its replacement is never submitted
        stopped = self.amends is not None and await self.amends.stop_for_cancel(order_id)
        if stopped:
            stored = await self.get(order_id, principal)  # (its amend's cancel may have ended it meanwhile)
            if stored.order.status is OrderStatus.CANCELLED:
                return stored, False  # the amend had cancelled it: the user's cancel is done
        if stored.order.status.is_final:
            raise Conflict("order_not_cancellable", f"the order is already {stored.order.status.value}")
        try:
            after, requested = await self.cancel_at_broker(stored)
        except CancelTooLate as exc:
            raise Conflict("order_not_cancellable", f"too late to cancel: {exc}") from exc
        except BrokerUnavailable as exc:
            raise Unavailable("broker_unavailable", f"the broker could not take the cancel now ({exc})") from exc
        if requested:
            return after, True
        if after.order.status is not OrderStatus.CANCELLED:
            raise Conflict(
                "order_not_cancellable", f"the order was {after.order.status.value} before the cancel reached it"
            )
        return after, False

    async def cancel_at_broker(self, stored: StoredOrder) -> tuple[StoredOrder, bool]:
        """Ask the order's broker to cancel what rests of it and record the report: (the order after, True when the
        broker only took the request — QMT — and the order is still open). An amend's cancel too. Raises
        CancelTooLate, BrokerUnavailable."""
        order_id = stored.order.order_id
        broker = await self.broker_for(stored.order.account_id)
        report = await broker.cancel(order_id, paper_fill=stored.paper_fill)
        after = await self._record(order_id, report)
        return after, report.cancel_requested and not after.order.status.is_final

    def cancel_all_account(self, principal: Principal, account_id: str | None) -> str:
        """The account a cancel-all is for: the caller's own (a trader), or the one an admin or a service names
        (a service names one: it has no account of its own). Raises Forbidden / ServiceError (422)."""
        if not principal.acts_for_everyone and not principal.at_least(Role.TRADER):
            raise Forbidden("forbidden", f"role {principal.role} may not cancel orders")
        own = principal_account(principal)
        if account_id is not None and account_id != own and not principal.acts_for_everyone:
            raise Forbidden(
                "forbidden", f"{principal.subject} may cancel only their own account's orders, not {account_id}'s",
                field="account_id",
            )  # fmt: skip
        if account_id is None and principal.is_service:
            raise ServiceError(
                "invalid_request", "account_id: a service names the account whose orders it cancels",
                status_code=422, field="account_id",
            )  # fmt: skip
        return account_id or own

    async def cancel_all(
        self, principal: Principal, account_id: str, *, strategy_instance_id: str | None, ts_code: str | None
    ) -> CancelAll:
        """Cancel every open order of the account (of the instance, of the code, when named) through the single
        cancel's path (`cancel_order`), oldest first: each is cancelled, or its cancel requested (QMT), or its
        failure reported; one failing does not stop the others."""
        outcome = CancelAll()
        # amends in progress stop first (an instance's orders are never amended: none with strategy_instance_id)
        replacements: list[str] = []
        if self.amends is not None and strategy_instance_id is None:
            replacements = await self.amends.stop_for_cancel_all(account_id, ts_code)
        seen: set[str] = set()
        after: tuple[datetime, str] | None = None
        while True:
            page = await self.store.open_orders_created_before(
                None, limit=OPEN_ORDERS_PAGE, after=after, account_id=account_id,
                strategy_instance_id=strategy_instance_id, ts_code=ts_code,
            )  # fmt: skip
            for stored in page:
                seen.add(stored.order.order_id)
                await self._cancel_one(stored.order.order_id, principal, outcome)
            if len(page) < OPEN_ORDERS_PAGE:
                break
            after = (page[-1].order.created_at, page[-1].order.order_id)
        # a replacement an amend's attempt placed after the listing above (the race with the stopped amend)
        for client_order_id in replacements:
            placed, _ = await self.store.find_by_key_or_decision(account_id, client_order_id, "")
            if placed is not None and placed.order.order_id not in seen and not placed.order.status.is_final:
                await self._cancel_one(placed.order.order_id, principal, outcome)
        log.info(
            "cancel-all",
            extra={"account_id": account_id, "by": principal.subject, "requested": outcome.requested,
                   "cancelled": len(outcome.cancelled), "failed": len(outcome.failed)},
        )  # fmt: skip
        return outcome

    async def _cancel_one(self, order_id: str, principal: Principal, outcome: CancelAll) -> None:
        outcome.requested += 1
        try:
            _, requested = await self.cancel_order(order_id, principal)
        except ServiceError as exc:
            outcome.failed.append({"order_id": order_id, "code": exc.code, "message": exc.message})
            return
        (outcome.cancel_requested if requested else outcome.cancelled).append(order_id)

    # --- reconciliation -------------------------------------------------------------------------------

    async def reconcile(self, *, grace_s: float = 0.0, stop: asyncio.Event | None = None) -> int:
        """Resubmit orders left ACCEPTED (a crash, a DB error or an unavailable broker between recording the
        order and recording the broker's answer). The broker is idempotent by order_id and trades are unique
        by fill id, so a fill is neither lost nor recorded twice. Only orders of the session still open: an order
        created before the last close that has passed is a day order of a closed session, left to the expiry pass
        (never sent to fill on another day at another day's price). Returns how many orders were resolved."""
        updated_before = self.clock() - timedelta(seconds=grace_s) if grace_s > 0 else None
        created_since = await self._session_start()
        resolved = 0
        for stored in await self.store.accepted_orders(updated_before=updated_before, created_since=created_since):
            if stop is not None and stop.is_set():
                break
            order_id = stored.order.order_id
            broker = await self.broker_for(stored.order.account_id)
            try:
                report = await broker.submit(stored.order, price_cap=stored.price_cap, paper_fill=stored.paper_fill)
            except BrokerUnavailable as exc:
                if broker is not self.broker:  # one QMT bridge down: the orders of the other accounts go on
                    log.warning("an order waits for its QMT bridge", extra={"order_id": order_id, "error": str(exc)})
                    continue
                log.warning("reconciliation paused: broker unavailable", extra={"error": str(exc)})
                break  # the others would meet the same wall
            try:
                await self._record(order_id, report)
            except Exception:
                log.exception("reconciliation could not record an order", extra={"order_id": order_id})
                continue
            resolved += 1
        if resolved:
            log.info("reconciled accepted orders", extra={"resolved": resolved})
        return resolved

    async def _session_start(self) -> datetime:
        """The close of the last session that has ended: orders created before it belong to a closed session.
        From the trade calendar; without it (the data service is down, or no calendar here), the latest 15:00 in
        Shanghai of any calendar day, which is never earlier than the true one: an order placed after a Friday
        close is then held until the calendar answers rather than risk filling an order of a closed session."""
        now = self.clock()
        today = self.today()
        if self.calendar is not None:
            try:
                days = await self.calendar.trading_days(today - CALENDAR_LOOKBACK, today)
            except CalendarUnavailable as exc:
                log.warning(
                    "reconciliation without a trade calendar: holding back older orders", extra={"error": str(exc)}
                )
            else:
                day = last_close(days, now)
                if day is not None:
                    return session_close(day)
        close = session_close(today)
        return close if close <= now else session_close(today - timedelta(days=1))

    # --- day orders ------------------------------------------------------------------------------------

    async def expire_day_orders(self, *, stop: asyncio.Event | None = None, days: list[date] | None = None) -> int:
        """Expire what rests of every order whose trading day has closed (A-share orders are day orders): the
        broker cancels it with the reason, and it is recorded `cancelled` with its `order.cancelled` event, which
        releases the shares or cash it reserved. Only for a broker that is told (the paper broker); a real broker's
        exchange expires them and reports so. `days`: the calendar's trading days from CALENDAR_LOOKBACK before
        today to today, when the caller has read them. Returns how many orders were expired."""
        if self.calendar is None or not isinstance(self.broker, ExpiringBroker):
            return 0
        now = self.clock()
        today = self.today()
        if days is None:
            try:
                days = await self.calendar.trading_days(today - CALENDAR_LOOKBACK, today)
            except CalendarUnavailable as exc:
                log.warning("day orders not expired: no trade calendar", extra={"error": str(exc)})
                return 0
        day = last_close(days, now)
        if day is None:
            return 0
        reason = expiry_reason(day)
        expired = 0
        async for stored in self._open_orders_before(session_close(day)):
            if stop is not None and stop.is_set():
                break
            order_id = stored.order.order_id
            if await self.broker_for(stored.order.account_id) is not self.broker:
                continue  # a real broker's exchange expires it; the QMT reconciliation's query records that
            try:
                report = None
                if isinstance(self.broker, ResumingBroker):
                    # An order waiting for its suspended symbol to trade is matched on this session instead.
                    report = await self.broker.resume(
                        stored.order, price_cap=stored.price_cap, paper_fill=stored.paper_fill
                    )
                if report is None:
                    report = await self.broker.expire(order_id, reason)
            except MarketDataError as exc:
                # this symbol's data cannot be used now: its order waits for the next pass, the others go on
                log.warning("a day order waits: its market data cannot be used",
                            extra={"order_id": order_id, "error": str(exc)})  # fmt: skip
                continue
            except BrokerUnavailable as exc:
                log.warning("day-order expiry paused: broker unavailable", extra={"error": str(exc)})
                break
            try:
                after = await self._record(order_id, report)
            except Exception:
                log.exception("could not record an expired order", extra={"order_id": order_id})
                continue
            if after.order.status is OrderStatus.CANCELLED:
                expired += 1
        if expired:
            log.info("expired day orders", extra={"expired": expired, "session": day.isoformat()})
        return expired

    async def keep_sessions(self) -> None:
        """Read the trade calendar's days around today into memory if a new day has begun (the background pass
        does it, so that an order's admission finds them and needs no read of its own, and can still place orders
        in their session through a short outage of the data service). On the real clock with a calendar only."""
        if not self._real_sessions():
            return
        assert self.order_sessions is not None
        try:
            await self.order_sessions.session_of(self.clock())
        except CalendarUnavailable as exc:
            log.warning("the trade calendar's days could not be read", extra={"error": str(exc)})

    async def _open_orders_before(self, cutoff: datetime) -> AsyncIterator[StoredOrder]:
        """Every order not final created before `cutoff`, page by page: orders that keep resting (waiting for a
        suspended symbol, or for their session's bars) never hold back the ones behind them."""
        after: tuple[datetime, str] | None = None
        while True:
            page = await self.store.open_orders_created_before(cutoff, limit=OPEN_ORDERS_PAGE, after=after)
            for stored in page:
                yield stored
            if len(page) < OPEN_ORDERS_PAGE:
                return
            last = page[-1]
            after = (last.order.created_at, last.order.order_id)

    def reconciler(self, interval_s: float = RECONCILE_INTERVAL_S, *, stop_grace_s: float = 10.0) -> PeriodicTask:
        """The loop that expires day orders whose session has closed, then reconciles, at start-up and then every
        `interval_s` (expiring first, so that an order left ACCEPTED on a past day is not sent to fill on another).
        Both passes check the loop's `stopping` between orders: stopping lets the order in hand finish, since
        cancelling a task inside an asyncmy transaction can leave it waiting forever on its rollback. The caller
        starts and stops it."""
        first = True

        async def one_pass() -> None:
            nonlocal first
            try:
                await self.keep_sessions()
                # a session's corporate actions before its orders are matched (the expiry pass matches them); a
                # catch-up over several sessions goes a session at a time (`corporate_actions_gated`)
                for _ in range(CATCH_UP_ROUNDS):
                    try:
                        await self.corporate_actions_due(stop=loop.stopping)
                    except Exception:
                        log.exception("corporate-action pass failed; its sessions' orders wait for the next pass")
                        break
                    try:
                        await self.expire_day_orders(stop=loop.stopping)
                    except Exception:
                        log.exception("day-order expiry pass failed; reconciling anyway")
                        break
                    if not self.corporate_actions_gated or loop.stopping.is_set():
                        break
                await self.reconcile(grace_s=0.0 if first else RECONCILE_GRACE_S, stop=loop.stopping)
            finally:
                if first:
                    self.first_reconcile_done.set()
                    first = False

        loop = PeriodicTask("execution-reconciler", interval_s, one_pass, stop_grace_s=stop_grace_s)
        return loop


def _stays_accepted(order_id: str, exc: BrokerUnavailable) -> Unavailable:
    """The 503 of an order the broker could not take now: it stays accepted and is sent again (reconciliation)."""
    log.warning("broker unavailable; order stays accepted", extra={"order_id": order_id, "error": str(exc)})
    return Unavailable(
        "broker_unavailable",
        f"the broker could not take the order now ({exc}); it stays accepted and will be resubmitted",
        order_id=order_id,
    )


Admission = StoredOrder | AlreadyPlaced | AdmissionRefused | ServiceError  # an item's outcome of `create_orders`


@dataclass(frozen=True)
class _Ready:
    """An item of `submit_many` whose approval, session, price cap and broker checked out."""

    index: int
    submission: OrderSubmission
    new: NewOrder
    session: OrderSession
    broker: BrokerAdapter


def _failed_item(index: int, exc: Exception, *, order_id: str | None = None) -> SubmittedItem:
    """The answer of an item whose submission raised `exc`: a ServiceError's status and code, a dependency's failure
    503 (the error raised again when it is neither: a bug fails the request). `order_id`: the order stored
    `accepted` for it (its details name it, as a single order's 503 after its admission does)."""
    if isinstance(exc, ServiceError):
        return SubmittedItem(index, exc.status_code, code=exc.code, message=exc.message, details=exc.details or None)
    code = dependency_failure(exc)
    if code is None:
        raise exc
    log.error("a batch's submission could not be taken", extra={"code": code, "error": type(exc).__name__})
    message = unavailable_message("execution", code, "send the order again")
    return SubmittedItem(
        index, 503, code=code, message=message, details=None if order_id is None else {"order_id": order_id}
    )
