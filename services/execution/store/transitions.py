"""The transactions that move an order: its admission (under the account's lock, with the position and cash
checks) and the application of a broker's report (status changes, trades, their cash and events)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from services.execution import cash as cashbook
from services.execution import events
from services.execution.admission import Refusal
from services.execution.brokers.base import BrokerReport
from services.execution.cash import Cash, buy_refusal
from services.execution.lifecycle import ReportPlan, average_price, plan_report
from services.execution.positions import OpenSell, ShareAdjustment, TradeLot, sell_refusal
from services.execution.store.accounts import AccountStore, AdmissionRefused
from services.execution.store.base import outbox
from services.execution.store.orders import (
    AlreadyPlaced,
    ConcurrentUpdate,
    OrderReads,
    StoredOrder,
    order_transitions,
    orders,
    paper_fill_json,
    stored_order,
)
from services.execution.store.trades import ValuationReads, trades
from services.execution.tca import Arrival
from shared.core.domain import Order, OrderSide, OrderStatus, OrderType, from_fen, to_fen
from shared.core.domain.money import FEN
from shared.core.market.order_types import DEFAULT_MARKET_TYPE
from shared.core.market.orders import buy_reservation_fen, fill_cash_fen
from shared.core.market.rules import Fees, trade_fees
from shared.platform.approval import OrderTerms
from shared.platform.clock import utcnow
from shared.platform.db import DbSession
from shared.platform.errors import ServiceError
from shared.platform.events import Envelope
from shared.platform.observability import current_correlation_id, new_id
from shared.platform.outbox import add_many_to_outbox

# The report's version-checked UPDATE of the order, built once (a constant statement with its parameters: SQLAlchemy
# neither builds nor cache-keys it again per report).
_ADVANCE_ORDER = (
    update(orders)
    .where(orders.c.order_id == bindparam("p_order_id"), orders.c.version == bindparam("p_version"))
    .values(
        status=bindparam("p_status"),
        filled_qty=bindparam("p_filled_qty"),
        filled_amount=bindparam("p_filled_amount"),
        reason=bindparam("p_reason"),
        version=bindparam("p_new_version"),
        updated_at=bindparam("p_updated_at"),
    )
)


@dataclass(frozen=True)
class AppliedReport:
    """The order after a broker report was applied, and what changed (for metrics)."""

    stored: StoredOrder
    statuses: tuple[OrderStatus, ...]  # every status the order entered, in order
    new_trades: int


class OrderTransitions(OrderReads, ValuationReads, AccountStore):
    async def create_order(
        self,
        terms: OrderTerms,
        decision_id: str,
        *,
        today: date,
        opens_after: datetime | None = None,
        price_cap: Decimal | None = None,
        now: datetime | None = None,
        arrival: Arrival | None = None,
        admit: Callable[[DbSession, OrderTerms], Awaitable[None]] | None = None,
    ) -> StoredOrder:
        """Admit a new order: in one transaction, lock the account, check that a sell has the sellable shares
        (trades, T+1 in session `today`, which began after `opens_after`: `positions.session_start`; open sells'
        reservations) and a buy the available cash (at `price_cap` a
        share: the limit price, or the limit-up price of a market buy), then record it ACCEPTED with its
        `order.accepted` event. Under the lock and before any check, an order with the same (account_id,
        client_order_id) or decision_id raises AlreadyPlaced (nothing stored). Raises AdmissionRefused (nothing
        stored) when the account cannot afford it, and IntegrityError when a concurrent insert of the same keys
        was not serialised by the lock (cannot happen once the account row exists; kept as the last word).
        `now`: when it is created, by the market clock (a replayed session's time: day-order expiry reads it);
        default the wall clock. `arrival`: the price it arrived at, for cost analysis (docs/tca.md). `admit`: a
        further check in this transaction, after the look for the same order and before the account's checks (an
        amend's replacement whose amend the user stopped: it raises, nothing stored). `create_orders` of one."""
        new = NewOrder(terms, decision_id, price_cap=price_cap, arrival=arrival)
        (outcome,) = await self.create_orders([new], today=today, opens_after=opens_after, now=now, admit=admit)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def create_orders(
        self,
        new: Sequence[NewOrder],
        *,
        today: date,
        opens_after: datetime | None = None,
        now: datetime | None = None,
        admit: Callable[[DbSession, OrderTerms], Awaitable[None]] | None = None,
    ) -> list[StoredOrder | AlreadyPlaced | AdmissionRefused | ServiceError]:
        """Admit several new orders in one transaction, each exactly as `create_order` admits it alone, one after the
        other in the order given: the accounts' locks taken once (in account order), the look for orders already
        placed under the items' keys or decisions made once, each account's cash read once and each item's buy
        reserved from it before the next item is checked, the shares of the sells' codes read once and each
        admitted sell's shares promised before the next. An item's outcome is its order (stored) or, with nothing
        stored for it, the AlreadyPlaced, AdmissionRefused or `admit`'s error it would have raised alone (an item
        repeating an earlier item's key or decision is AlreadyPlaced by that item's order). What the database
        raises (a dependency down, IntegrityError for a race the locks did not serialise) leaves nothing stored."""
        now = now or utcnow()
        # each item stamped a microsecond after the one before it: the orders list (by creation) in the order given
        prepared = [_prepared(n, now + timedelta(microseconds=i)) for i, n in enumerate(new)]
        account_ids = sorted({stored.order.account_id for stored, _ in prepared})
        for _ in range(2):
            async for attempt in self.db.transaction():
                async with attempt as s:
                    missing = [a for a in account_ids if not await self._lock_account(s, a)]
                    outcomes = [] if missing else await self._admit(s, new, prepared, today, opens_after, admit)
            if not missing:
                return outcomes
            for account_id in missing:
                await self.ensure_account(account_id)
        raise AssertionError(f"accounts {account_ids} could not be created")

    async def _admit(
        self,
        s: DbSession,
        new: Sequence[NewOrder],
        prepared: list[tuple[StoredOrder, int | None]],
        today: date,
        opens_after: datetime | None,
        admit: Callable[[DbSession, OrderTerms], Awaitable[None]] | None,
    ) -> list[StoredOrder | AlreadyPlaced | AdmissionRefused | ServiceError]:
        """`create_orders`' work under the accounts' locks (taken by the caller)."""
        by_key, by_decision = await self._find_by_keys_or_decisions(
            s, [(n.terms.account_id, n.terms.client_order_id, n.decision_id) for n in new]
        )
        cash: dict[str, Cash] = {}
        sell_codes: dict[str, list[str]] = {}
        for stored, _ in prepared:
            if stored.order.side is OrderSide.SELL:
                sell_codes.setdefault(stored.order.account_id, []).append(stored.order.ts_code)
        shares: dict[str, tuple[list[TradeLot | ShareAdjustment], list[OpenSell]]] = {}
        outcomes: list[StoredOrder | AlreadyPlaced | AdmissionRefused | ServiceError] = []
        admitted: list[tuple[StoredOrder, NewOrder]] = []
        for item, (stored, cap_fen) in zip(new, prepared, strict=True):
            order = stored.order
            same_key = by_key.get((order.account_id, order.client_order_id))
            used = by_decision.get(item.decision_id)
            if same_key is not None or used is not None:
                outcomes.append(AlreadyPlaced(same_key, used))
                continue
            if admit is not None:
                try:
                    await admit(s, item.terms)
                except ServiceError as exc:
                    outcomes.append(exc)
                    continue
            refusal: Refusal | None
            if order.side is OrderSide.SELL:
                account_id = order.account_id
                if account_id not in shares:
                    shares[account_id] = await self._position_inputs(
                        s, account_id, today, opens_after, ts_codes=sorted(set(sell_codes[account_id]))
                    )
                lots, sells = shares[account_id]
                refusal = sell_refusal(lots, sells, order.ts_code, order.qty, today=today, opens_after=opens_after)
                if refusal is None:
                    sells.append(OpenSell(order.ts_code, order.qty))
            else:
                assert cap_fen is not None
                account_cash = cash.get(order.account_id)
                if account_cash is None:
                    account_cash = await self._locked_cash(s, order.account_id, today)
                refusal = buy_refusal(order.ts_code, order.qty, cap_fen, account_cash, today=today)
                if refusal is None:
                    reserved = buy_reservation_fen(order.qty, cap_fen, today)
                    account_cash = replace(account_cash, reserved_fen=account_cash.reserved_fen + reserved)
                cash[order.account_id] = account_cash
            if refusal is not None:
                outcomes.append(AdmissionRefused.of(refusal))
                continue
            outcomes.append(stored)
            admitted.append((stored, item))
            by_key[(order.account_id, order.client_order_id)] = stored
            by_decision[item.decision_id] = stored
        if admitted:
            # one statement each (an executemany: one multi-row INSERT on MariaDB)
            await s.execute(orders.insert(), [_order_row(stored, item) for stored, item in admitted])
            await s.execute(
                order_transitions.insert(),
                [_transition_row(stored.order.order_id, None, OrderStatus.ACCEPTED, None, stored.order.created_at)
                 for stored, _ in admitted],
            )  # fmt: skip
            await add_many_to_outbox(
                s,
                outbox,
                [events.order_event(stored.order, source=self.source, price_cap=stored.price_cap, session=today)
                 for stored, _ in admitted],
            )  # fmt: skip
        return outcomes

    async def apply_report(
        self,
        order_id: str,
        report: BrokerReport,
        *,
        attempts: int = 3,
        now: datetime | None = None,
        known: StoredOrder | None = None,
        within: Callable[[DbSession], Awaitable[None]] | None = None,
    ) -> AppliedReport:
        """Record what the broker reported: status changes, new trades and their events, in one transaction,
        stamped `now` (the market clock's time; default the wall clock).

        Safe to call again with the same report (fills already recorded are skipped) and from two places at
        once (the version check makes the loser re-read and find nothing left to do).

        `known`: the order as the caller recorded it, used instead of reading it back when nothing of it is filled
        (nor are its trades read: an order gets trades only in a transaction that moves its version on, so at that
        version it has none). The version-checked update proves it still current; when it is not, the next attempt
        reads the order as usual.

        `within`: a write run first in the same transaction (the paper broker's book of a new order: `Booking`), so
        that the report and what it reports are committed together; what it raises (e.g. AlreadyBooked) is raised
        with nothing written."""
        # A lost race (the version moved, or the other applier inserted the trade first) is run again at once: the
        # next attempt re-reads the order and finds less, or nothing, left to do.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            retry=retry_if_exception_type((ConcurrentUpdate, IntegrityError)),
            reraise=True,
        )
        trusted = known if known is not None and known.order.order_id == order_id else None
        async for attempt in retrying:
            with attempt:
                given, trusted = trusted, None  # only the first attempt: a lost race re-reads
                return await self._apply_once(order_id, report, now, given, within)
        raise AssertionError("unreachable")

    async def _apply_once(
        self,
        order_id: str,
        report: BrokerReport,
        at: datetime | None,
        known: StoredOrder | None = None,
        within: Callable[[DbSession], Awaitable[None]] | None = None,
    ) -> AppliedReport:
        async for attempt in self.db.transaction():
            async with attempt as s:
                if within is not None:
                    await within(s)
                applied = await self._apply_in(s, order_id, report, at, known)
        return applied

    async def apply_booked(
        self,
        booked: Sequence[Booked],
        *,
        now: datetime | None = None,
        within: Callable[[DbSession], Awaitable[None]] | None = None,
    ) -> list[AppliedReport]:
        """The reports of several new orders (`known`: each as its admission recorded it) with their book writes
        (`within`: the broker's write of them all, run first; or each item's own), in one transaction: each as
        `apply_report` applies it with its write first, all committed or none, the rows of all written together. What
        would make one of them try again alone (a lost race: ConcurrentUpdate, IntegrityError; the book had the
        order: AlreadyBooked) is raised with nothing written: the caller applies them one by one then."""
        at = now or utcnow()
        async for attempt in self.db.transaction():
            async with attempt as s:
                if within is not None:
                    await within(s)
                for item in booked:
                    if item.within is not None:
                        await item.within(s)
                planned = [_known_plan(item.known, item.report) for item in booked]
                if all(p is not None for p in planned):
                    applied = await self._write_reports(s, [p for p in planned if p is not None], at)
                else:  # an order already filled in part, or not known: each read as `apply_report` reads it
                    applied = [await self._apply_in(s, i.order_id, i.report, at, i.known) for i in booked]
        return applied

    async def _apply_in(
        self, s: DbSession, order_id: str, report: BrokerReport, at: datetime | None, known: StoredOrder | None
    ) -> AppliedReport:
        """`_apply_once`'s work in the caller's transaction."""
        planned = _known_plan(known, report)
        if planned is None:  # read what the database says (also when what we know leaves nothing to write)
            row = (await s.execute(select(orders).where(orders.c.order_id == order_id))).first()
            if row is None:
                raise LookupError(f"order {order_id} does not exist")
            current = stored_order(row)
            recorded = set((await s.execute(select(trades.c.trade_id).where(trades.c.order_id == order_id))).scalars())
            plan = plan_report(current.progress, report, recorded)
            if not plan.changed:
                return AppliedReport(current, (), 0)
            planned = (current, plan)
        (applied,) = await self._write_reports(s, [planned], at or utcnow())
        return applied

    async def _write_reports(
        self, s: DbSession, planned: list[tuple[StoredOrder, ReportPlan]], at: datetime
    ) -> list[AppliedReport]:
        """Write what each (order, plan) changes, one statement a kind for all of them: the orders' version-checked
        updates first (each takes its row's lock, so a concurrent applier waits there and then finds the version
        moved on, before it could insert a trade; ConcurrentUpdate when one moved), then their transitions, events,
        trades, cash entries and each account's balance."""
        applied: list[AppliedReport] = []
        steps_rows: list[dict[str, Any]] = []
        events_out: list[Envelope] = []
        trade_rows: list[dict[str, Any]] = []
        ledger_rows: list[dict[str, Any]] = []
        moved_fen: dict[str, int] = {}
        for k, (current, plan) in enumerate(planned):
            # each report stamped a microsecond after the one before it: trades and transitions list in the order
            # the reports were applied, as when each had its own transaction
            now = at + timedelta(microseconds=k)
            order = current.order
            after = _advance(current, plan, now)
            result = await s.execute(
                _ADVANCE_ORDER,
                {
                    "p_order_id": order.order_id,
                    "p_version": current.version,
                    "p_status": after.order.status.value,
                    "p_filled_qty": after.order.filled_qty,
                    "p_filled_amount": after.filled_amount,
                    "p_reason": None if after.order.reason is None else after.order.reason[:255],
                    "p_new_version": after.version,
                    "p_updated_at": now,
                },
            )
            if result.rowcount != 1:
                raise ConcurrentUpdate(order.order_id)
            previous = order.status
            for status in plan.steps:
                reason = plan.reason if status.is_final else None
                steps_rows.append(_transition_row(order.order_id, previous, status, reason, now))
                previous = status
            # Each fill's fees once: the trade row, its cash and its event carry the same figures.
            fees_of = {
                fill.fill_id: trade_fees(
                    fill.price * fill.qty,
                    is_sell=order.side is OrderSide.SELL,
                    trade_date=events.exchange_date(fill.traded_at),
                )
                for fill in plan.new_fills
            }
            events_out.extend(self._events(current, after, plan, now, fees_of))
            for fill in plan.new_fills:
                amount = fill.price * fill.qty
                fees = fees_of[fill.fill_id]
                trade_rows.append(
                    dict(
                        trade_id=fill.fill_id,
                        order_id=order.order_id,
                        client_order_id=order.client_order_id,
                        account_id=order.account_id,
                        ts_code=order.ts_code,
                        side=order.side.value,
                        qty=fill.qty,
                        price=fill.price,
                        amount=amount,
                        commission=fees.commission,
                        stamp_duty=fees.stamp_duty,
                        transfer_fee=fees.transfer_fee,
                        traded_at=fill.traded_at,
                        created_at=now,
                        strategy_instance_id=order.strategy_instance_id,
                    )
                )
                cash_fen = fill_cash_fen(order.side, to_fen(amount), to_fen(fees.total))
                ledger_rows.append(
                    dict(
                        account_id=order.account_id,
                        amount=from_fen(cash_fen),
                        kind=cashbook.BUY_FILL if order.side is OrderSide.BUY else cashbook.SELL_FILL,
                        idempotency_key=cashbook.trade_key(fill.fill_id),
                        trade_id=fill.fill_id,
                        created_by=self.source,
                        correlation_id=current_correlation_id(),
                        created_at=now,
                    )
                )
                moved_fen[order.account_id] = moved_fen.get(order.account_id, 0) + cash_fen
            applied.append(AppliedReport(after, plan.steps, len(plan.new_fills)))
        if steps_rows:
            await s.execute(order_transitions.insert(), steps_rows)
        await add_many_to_outbox(s, outbox, events_out)
        if trade_rows:
            await s.execute(trades.insert(), trade_rows)
        if ledger_rows:
            await self._add_entries(s, ledger_rows, moved_fen)
        return applied

    def _events(
        self, before: StoredOrder, after: StoredOrder, plan: ReportPlan, now: datetime, fees_of: dict[str, Fees]
    ) -> list[Envelope]:
        """The events of one report, in the order they happened: submitted, then the trades, then the status
        the fills (or the cancel / rejection) led to."""
        out: list[Envelope] = []
        steps = list(plan.steps)
        if steps and steps[0] is OrderStatus.SUBMITTED:
            submitted = before.order.model_copy(update={"status": OrderStatus.SUBMITTED, "updated_at": now})
            out.append(events.order_event(submitted, source=self.source, price_cap=before.price_cap))
            steps = steps[1:]
        for fill in plan.new_fills:
            out.append(events.trade_event(after.order, fill, fees_of[fill.fill_id], source=self.source))
        for status in steps:
            changed = after.order.model_copy(update={"status": status})
            out.append(events.order_event(changed, source=self.source, price_cap=after.price_cap))
        return out


@dataclass(frozen=True)
class Booked:
    """One report of `apply_booked`: a new order's broker report, the order as its admission recorded it, and the
    broker's write of its book (run first, in the same transaction)."""

    order_id: str
    report: BrokerReport
    known: StoredOrder | None = None
    within: Callable[[DbSession], Awaitable[None]] | None = None


@dataclass(frozen=True)
class NewOrder:
    """One order of `create_orders`: its signed terms, the decision that approved it, the most a buy may pay a share
    (its cash is reserved at it: the limit price, or a market buy's limit-up; None: the limit price) and the price it
    arrived at (cost analysis)."""

    terms: OrderTerms
    decision_id: str
    price_cap: Decimal | None = None
    arrival: Arrival | None = None


def _prepared(new: NewOrder, now: datetime) -> tuple[StoredOrder, int | None]:
    """The order `new` is stored as if admitted, and a buy's price cap in fen (None for a sell)."""
    terms = new.terms
    side = OrderSide(terms.side)
    cap_fen: int | None = None
    if side is OrderSide.BUY:
        cap = new.price_cap if new.price_cap is not None else terms.price
        if cap is None:
            raise ValueError("a buy needs a price cap to reserve cash at")
        cap_fen = to_fen(cap)
    order = Order(
        order_id=new_id(),
        client_order_id=terms.client_order_id,
        account_id=terms.account_id,
        ts_code=terms.ts_code,
        side=side,
        order_type=OrderType(terms.order_type),
        qty=terms.qty,
        price=terms.price,
        status=OrderStatus.ACCEPTED,
        strategy_instance_id=terms.strategy_instance_id,
        # a market order signed without one (risk names it for every market order) is counterparty best
        market_type=(terms.market_type or DEFAULT_MARKET_TYPE) if terms.order_type == OrderType.MARKET.value else None,
        time_in_force=terms.time_in_force,
        created_at=now,
        updated_at=now,
    )
    stored = StoredOrder(
        order=order,
        decision_id=new.decision_id,
        filled_amount=Decimal("0.00"),
        version=1,
        price_cap=None if cap_fen is None else from_fen(cap_fen),
        paper_fill=terms.paper_fill,
    )
    return stored, cap_fen


def _order_row(stored: StoredOrder, new: NewOrder) -> dict[str, Any]:
    order, arrival = stored.order, new.arrival
    now = order.created_at
    return dict(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        account_id=order.account_id,
        decision_id=stored.decision_id,
        ts_code=order.ts_code,
        side=order.side.value,
        order_type=order.order_type.value,
        qty=order.qty,
        price=order.price,
        price_cap=stored.price_cap,
        status=order.status.value,
        filled_qty=0,
        filled_amount=Decimal("0.00"),
        reason=None,
        version=1,
        correlation_id=current_correlation_id(),
        created_at=now,
        updated_at=now,
        strategy_instance_id=order.strategy_instance_id,
        paper_fill=paper_fill_json(new.terms.paper_fill),
        arrival_price=None if arrival is None else arrival.price,
        arrival_source=None if arrival is None else arrival.source,
        arrival_at=None if arrival is None else arrival.at,
        market_type=order.market_type,
        time_in_force=order.time_in_force,
    )


def _known_plan(known: StoredOrder | None, report: BrokerReport) -> tuple[StoredOrder, ReportPlan] | None:
    """The order as its caller recorded it, nothing filled, and what `report` changes of it: no trades at this
    version (see `apply_report`). None: the database is to be read (not known, filled in part, nothing to write)."""
    if known is None or known.order.filled_qty != 0:
        return None
    plan = plan_report(known.progress, report, set())
    return (known, plan) if plan.changed else None


def _transition_row(
    order_id: str, before: OrderStatus | None, after: OrderStatus, reason: str | None, at: datetime
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "from_status": None if before is None else before.value,
        "to_status": after.value,
        "reason": None if reason is None else reason[:255],
        "at": at,
    }


def _advance(current: StoredOrder, plan: ReportPlan, now: datetime) -> StoredOrder:
    order = current.order.model_copy(
        update={
            "status": plan.final_status,
            "filled_qty": plan.filled_qty,
            "avg_fill_price": average_price(plan.filled_amount, plan.filled_qty),
            "reason": plan.reason,
            "updated_at": now,
        }
    )
    return StoredOrder(
        order=order,
        decision_id=current.decision_id,
        filled_amount=plan.filled_amount.quantize(FEN),
        version=current.version + 1,
        price_cap=current.price_cap,
        paper_fill=current.paper_fill,
    )
