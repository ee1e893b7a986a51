"""Stops (docs/risk-stops.md): stop-loss, take-profit and trailing stops on a position of an account, set through the
API (`services/risk/stops_api.py`) and watched here.

The watcher (`StopWatcher.run_pass`) runs when the data service announces new data (`bars.updated`) and every
STOP_PASS_S seconds. It reads each armed stop's price — the last close in the reference data risk holds in memory
(`shared.platform.quotes.ReferenceQuotes`) for the market clock's session — and evaluates it (`evaluate`): a stop-loss
triggers at or below its trigger price, a take-profit at or above it, a trailing stop raises its high-water mark to
the highest price seen and triggers at or below that mark less `trail_pct` percent (floored to the fen: see
`trailing_level`).

A trigger is claimed with a conditional UPDATE (armed -> triggered): of several risk processes watching one database,
exactly one wins it. The winner fixes the exit's size (the stop's qty, or the whole position, at most the sellable
shares) and places a market sell through the same `RiskDesk.place` a person's order takes, as the stop's owner, with
client_order_id `stop-<stop_id>`: every check applies (a halted account's exit is refused), and a repeat of that
client_order_id is the same order (the desk replays its approved decision, execution finds the order by it). What the
desk answers is recorded (`stop_triggers`), and the stop ends triggered (the exit was placed: its order_id) or failed
(refused: why), with the event `risk.stop.triggered` written to risk's outbox in the same transaction.

A crash between the claim and the answer leaves a stop triggered without an outcome. Its claim is a lease
(`claimed_at`): once LEASE_S has passed, the next pass of any process claims it again (a conditional UPDATE on the old
`claimed_at`) and places the same exit with the same client_order_id — whatever happened to the first attempt,
execution holds at most one order for it. An answer that says "not now" (503: risk or execution unavailable; 422
whose only reasons are the session's price limits not known yet) is recorded and retried the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Row

from services.risk.desk import AccountBooks, Placement
from services.risk.events import SOURCE
from services.risk.schemas import OrderRequest
from services.risk.state.ports import BookUnavailable
from services.risk.store import outbox, stop_triggers, stops
from shared.core.domain import OrderSide, OrderType
from shared.core.domain.codes import Board
from shared.core.market.order_types import needs_protection
from shared.core.market.orders import Holding
from shared.core.market.rules import price_cage
from shared.platform.calendar import CalendarUnavailable
from shared.platform.clock import utcnow
from shared.platform.db import Database
from shared.platform.errors import ServiceError
from shared.platform.events import Envelope, StopTriggered, make_event
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from shared.platform.outbox import add_to_outbox
from shared.platform.placement import Outcome, PlacementAnswer
from shared.platform.quotes import QuoteSource, QuoteUnavailable

log = logging.getLogger(__name__)

STOP_PASS_S = 5.0  # a pass at least this often, besides the one each bars.updated wakes
LEASE_S = 30.0  # a triggered stop whose exit has no answer this long after its last attempt is attempted again
CENT = Decimal("0.01")
# Refusals that say "not now" rather than "no" (shared.platform.placement): the exit is attempted again after the
# lease.
HUNDRED = Decimal(100)


class StopKind(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING = "trailing"


class StopStatus(StrEnum):
    ARMED = "armed"
    TRIGGERED = "triggered"
    CANCELLED = "cancelled"
    FAILED = "failed"


def exit_client_order_id(stop_id: str) -> str:
    """The exit order's client_order_id: one per stop, so every attempt at it is the same order."""
    return f"stop-{stop_id}"


def trailing_level(high_water: Decimal, trail_pct: Decimal) -> Decimal:
    """The price at or below which a trailing stop triggers: high_water * (1 - trail_pct/100), floored to the fen.
    Prices move in fen, and for a price p on the fen grid `p <= x` holds exactly when `p <= floor_fen(x)`: flooring
    changes no decision and gives a level a person can read. E.g. 10.37 less 3% is 10.0589: level 10.05 (10.05
    triggers, 10.06 does not)."""
    exact = high_water * (HUNDRED - trail_pct) / HUNDRED
    return exact.quantize(CENT, rounding=ROUND_FLOOR)


@dataclass(frozen=True)
class Stop:
    stop_id: str
    account_id: str
    owner: str
    owner_role: str
    ts_code: str
    kind: str
    trigger_price: Decimal | None
    trail_pct: Decimal | None
    high_water: Decimal | None
    qty: int | None
    status: str
    created_at: datetime
    strategy_instance_id: str | None = None
    triggered_at: datetime | None = None
    trigger_seen: Decimal | None = None
    exit_qty: int | None = None
    claimed_at: datetime | None = None
    client_order_id: str | None = None
    order_id: str | None = None
    outcome: str | None = None
    cancelled_at: datetime | None = None

    @property
    def level(self) -> Decimal:
        """The price it triggers at (a trailing stop's: from its high-water mark)."""
        if self.kind == StopKind.TRAILING:
            assert self.high_water is not None and self.trail_pct is not None
            return trailing_level(self.high_water, self.trail_pct)
        assert self.trigger_price is not None
        return self.trigger_price

    def as_json(self) -> dict[str, Any]:
        def text(d: Decimal | None) -> str | None:
            return None if d is None else format(d, "f")

        def when(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "stop_id": self.stop_id,
            "account_id": self.account_id,
            "owner": self.owner,
            "strategy_instance_id": self.strategy_instance_id,
            "ts_code": self.ts_code,
            "kind": self.kind,
            "trigger_price": text(self.trigger_price),
            "trail_pct": text(self.trail_pct),
            "high_water": text(self.high_water),
            "stop_level": text(self.level) if self.status == StopStatus.ARMED else None,
            "qty": self.qty,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "triggered_at": when(self.triggered_at),
            "trigger_seen": text(self.trigger_seen),
            "exit_qty": self.exit_qty,
            "client_order_id": self.client_order_id,
            "order_id": self.order_id,
            "outcome": self.outcome,
            "cancelled_at": when(self.cancelled_at),
        }


@dataclass(frozen=True)
class Crossing:
    """A stop's price crossed its level: the price seen, the level, and (trailing) the high-water mark then."""

    price: Decimal
    level: Decimal
    high_water: Decimal | None


def evaluate(stop: Stop, price: Decimal) -> tuple[Decimal | None, Crossing | None]:
    """(a trailing stop's new high-water mark if `price` raised it, else None; the crossing if `price` triggers it,
    else None). Stop-loss: price <= trigger; take-profit: price >= trigger; trailing: the mark becomes max(mark,
    price), and it triggers when price <= `trailing_level(mark, trail_pct)`."""
    if stop.kind == StopKind.STOP_LOSS:
        assert stop.trigger_price is not None
        return None, Crossing(price, stop.trigger_price, None) if price <= stop.trigger_price else None
    if stop.kind == StopKind.TAKE_PROFIT:
        assert stop.trigger_price is not None
        return None, Crossing(price, stop.trigger_price, None) if price >= stop.trigger_price else None
    assert stop.high_water is not None and stop.trail_pct is not None
    mark = max(stop.high_water, price)
    raised = mark if mark > stop.high_water else None
    level = trailing_level(mark, stop.trail_pct)
    return raised, Crossing(price, level, mark) if price <= level else None


def _stop(row: Row[Any]) -> Stop:
    return Stop(
        stop_id=row.stop_id,
        account_id=row.account_id,
        owner=row.owner,
        owner_role=row.owner_role,
        ts_code=row.ts_code,
        kind=row.kind,
        trigger_price=row.trigger_price,
        trail_pct=row.trail_pct,
        high_water=row.high_water,
        qty=row.qty,
        status=row.status,
        created_at=row.created_at,
        strategy_instance_id=row.strategy_instance_id,
        triggered_at=row.triggered_at,
        trigger_seen=row.trigger_seen,
        exit_qty=row.exit_qty,
        claimed_at=row.claimed_at,
        client_order_id=row.client_order_id,
        order_id=row.order_id,
        outcome=row.outcome,
        cancelled_at=row.cancelled_at,
    )


@dataclass(frozen=True)
class Attempt:
    """One attempt at a stop's exit, as `stop_triggers` records it."""

    stop_id: str
    price: Decimal
    stop_level: Decimal
    high_water: Decimal | None
    at: datetime
    qty: int
    client_order_id: str
    result: str  # placed | failed | retry
    message: str
    http_status: int | None = None
    code: str | None = None
    order_id: str | None = None
    decision_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "price": format(self.price, "f"),
            "stop_level": format(self.stop_level, "f"),
            "high_water": None if self.high_water is None else format(self.high_water, "f"),
            "at": self.at.isoformat(),
            "qty": self.qty,
            "client_order_id": self.client_order_id,
            "result": self.result,
            "http_status": self.http_status,
            "code": self.code,
            "message": self.message,
            "order_id": self.order_id,
            "decision_id": self.decision_id,
        }


class StopStore:
    """The stops and their triggers in risk's database (tables in services/risk/store.py)."""

    def __init__(self, db: Database, *, on_event: Callable[[], None] | None = None) -> None:
        self.db = db
        self.on_event = on_event

    async def create(self, stop: Stop) -> None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(
                    stops.insert().values(
                        stop_id=stop.stop_id,
                        account_id=stop.account_id,
                        owner=stop.owner,
                        owner_role=stop.owner_role,
                        strategy_instance_id=stop.strategy_instance_id,
                        ts_code=stop.ts_code,
                        kind=stop.kind,
                        trigger_price=stop.trigger_price,
                        trail_pct=stop.trail_pct,
                        high_water=stop.high_water,
                        qty=stop.qty,
                        status=stop.status,
                        created_at=stop.created_at,
                    )
                )

    async def get(self, stop_id: str) -> Stop | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(stops).where(stops.c.stop_id == stop_id))).first()
        return None if row is None else _stop(row)

    async def listed(self, *, account_id: str | None, status: str | None, limit: int) -> list[Stop]:
        query = select(stops).order_by(stops.c.created_at.desc(), stops.c.stop_id).limit(limit)
        if account_id is not None:
            query = query.where(stops.c.account_id == account_id)
        if status is not None:
            query = query.where(stops.c.status == status)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_stop(r) for r in rows]

    async def with_status(self, status: StopStatus) -> list[Stop]:
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(select(stops).where(stops.c.status == status.value))).all()
        return [_stop(r) for r in rows]

    async def attempts(self, stop_id: str) -> list[Attempt]:
        c = stop_triggers.c
        query = select(stop_triggers).where(c.stop_id == stop_id).order_by(c.at, c.trigger_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [
            Attempt(
                stop_id=r.stop_id,
                price=r.price,
                stop_level=r.stop_level,
                high_water=r.high_water,
                at=r.at,
                qty=r.qty,
                client_order_id=r.client_order_id,
                result=r.result,
                message=r.message,
                http_status=r.http_status,
                code=r.code,
                order_id=r.order_id,
                decision_id=r.decision_id,
            )
            for r in rows
        ]

    async def cancel(self, stop_id: str, at: datetime) -> bool:
        """Armed -> cancelled; False when it was not armed (any more)."""
        return await self._conditional(
            and_(stops.c.stop_id == stop_id, stops.c.status == StopStatus.ARMED.value),
            {"status": StopStatus.CANCELLED.value, "cancelled_at": at},
        )

    async def raise_high_water(self, stop_id: str, seen: Decimal, mark: Decimal) -> bool:
        """A trailing stop's new high-water mark, if it still has the one `seen` (the text is compared: two
        processes raising it at once, one wins and the other's pass reads it again next time)."""
        return await self._conditional(
            and_(stops.c.stop_id == stop_id, stops.c.status == StopStatus.ARMED.value, stops.c.high_water == str(seen)),
            {"high_water": mark},
        )

    async def claim(self, stop: Stop, crossing: Crossing, exit_qty: int, at: datetime) -> bool:
        """Armed -> triggered, with the price seen and the exit's size; exactly one caller wins."""
        values: dict[str, Any] = {
            "status": StopStatus.TRIGGERED.value,
            "triggered_at": at,
            "trigger_seen": crossing.price,
            "exit_qty": exit_qty,
            "claimed_at": at,
            "client_order_id": exit_client_order_id(stop.stop_id),
        }
        if crossing.high_water is not None:
            values["high_water"] = crossing.high_water
        return await self._conditional(
            and_(stops.c.stop_id == stop.stop_id, stops.c.status == StopStatus.ARMED.value), values
        )

    async def reclaim(self, stop: Stop, at: datetime) -> bool:
        """A triggered stop without an outcome, attempted again: the caller whose UPDATE finds the `claimed_at` it
        read wins."""
        assert stop.claimed_at is not None
        return await self._conditional(
            and_(
                stops.c.stop_id == stop.stop_id,
                stops.c.status == StopStatus.TRIGGERED.value,
                stops.c.outcome.is_(None),
                stops.c.claimed_at == stop.claimed_at,
            ),
            {"claimed_at": at},
        )

    async def record(self, attempt: Attempt) -> None:
        """An attempt that changes nothing (retry later)."""
        async for tx in self.db.transaction():
            async with tx as s:
                await s.execute(stop_triggers.insert().values(trigger_id=new_id(), **attempt.__dict__))

    async def finish(self, attempt: Attempt, status: StopStatus, outcome: str, event: Envelope) -> bool:
        """The exit's answer, final: the stop's status, order and outcome, the attempt and the event, in one
        transaction; only while it is triggered without an outcome (False: another process finished it)."""
        done = False
        async for tx in self.db.transaction():
            async with tx as s:
                result = await s.execute(
                    update(stops)
                    .where(
                        stops.c.stop_id == attempt.stop_id,
                        stops.c.status == StopStatus.TRIGGERED.value,
                        stops.c.outcome.is_(None),
                    )
                    .values(status=status.value, outcome=outcome, order_id=attempt.order_id)
                )
                done = result.rowcount == 1
                if done:
                    await s.execute(stop_triggers.insert().values(trigger_id=new_id(), **attempt.__dict__))
                    await add_to_outbox(s, outbox, event)
        if done and self.on_event is not None:
            self.on_event()
        return done

    async def _conditional(self, where: Any, values: dict[str, Any]) -> bool:
        changed = False
        async for tx in self.db.transaction():
            async with tx as s:
                changed = (await s.execute(update(stops).where(where).values(**values))).rowcount == 1
        return changed


class ExitPlacer(Protocol):
    async def place(self, request: OrderRequest, principal: Principal) -> Placement:
        """RiskDesk.place: check, record, sign and forward an order as `principal`."""


def stop_triggered(stop: Stop, attempt: Attempt, status: StopStatus) -> Envelope:
    payload = StopTriggered(
        stop_id=stop.stop_id,
        account_id=stop.account_id,
        owner=stop.owner,
        ts_code=stop.ts_code,
        kind=stop.kind,
        price=attempt.price,
        stop_level=attempt.stop_level,
        high_water=attempt.high_water,
        qty=attempt.qty,
        client_order_id=attempt.client_order_id,
        status=status.value,
        order_id=attempt.order_id,
        code=attempt.code,
        message=attempt.message,
        at=attempt.at,
    )
    return make_event("risk.stop.triggered", payload, source=SOURCE)


class PositionsUnavailable(Exception):
    """The account's position cannot be read: the stop stays armed for the next pass."""


class PositionSource(Protocol):
    async def holding(self, account_id: str, ts_code: str) -> Holding | None:
        """The account's position in `ts_code` (None: none held). Raises PositionsUnavailable."""


class BookPositions:
    """Positions from risk's hot books (services/risk/state), as risk itself: sellable shares of `session()`."""

    def __init__(self, books: AccountBooks, day: Callable[[], Awaitable[date]]) -> None:
        self.books = books
        self.day = day  # the session an exit placed now is for: whose sellable shares count

    async def holding(self, account_id: str, ts_code: str) -> Holding | None:
        try:
            view = await self.books.view(account_id, await self.day(), RISK_PRINCIPAL)
        except (BookUnavailable, CalendarUnavailable) as exc:
            raise PositionsUnavailable(str(exc)) from exc
        if view is None:
            return None
        held = view.holdings.get(ts_code)
        return None if held is None else Holding(ts_code=ts_code, qty=held.qty, sellable_qty=held.sellable_qty)


RISK_PRINCIPAL = Principal("risk", "service")


class StopWatcher:
    """Evaluates the armed stops against the prices risk holds, and places the exits of those that trigger."""

    def __init__(
        self,
        store: StopStore,
        desk: ExitPlacer,
        quotes: QuoteSource,
        positions: PositionSource,
        *,
        market_session: Callable[[], date | None],
        now: Callable[[], datetime] = utcnow,
        lease_s: float = LEASE_S,
        on_trigger: Callable[[Stop], None] | None = None,
    ) -> None:
        self.store = store
        self.on_trigger = on_trigger  # told of each stop this process triggered (risk's lh_risk_stops_triggered)
        self.desk = desk
        self.quotes = quotes
        self.positions = positions
        self.market_session = market_session
        self.now = now  # wall time: records and leases (not the market's)
        self.lease_s = lease_s
        self.passes = 0

    async def price(self, ts_code: str) -> Decimal | None:
        """The latest price risk holds for `ts_code`: the last close of the market clock's session's reference data
        (a replayed session's: the close before it). None: unknown, never traded, or suspended (nothing moves)."""
        session = self.market_session()
        quote = await (self.quotes.quote(ts_code) if session is None else self.quotes.quote(ts_code, session))
        if quote is None or quote.suspended or quote.last_close is None:
            return None
        return quote.last_close

    async def _protection(self, stop: Stop) -> Decimal:
        """A STAR exit's protection price (保护限价), the least the market sell takes: the price cage's lowest sell
        against the price the stop triggered at (STAR: 98% of it, up to the tick), never below the session's
        limit-down. The exchange refuses a protection price outside the cage (and risk does with `price_cage` on), so
        the limit-down itself, 20% down, would be refused in continuous trading; and a listing's first five sessions
        have no limit-down at all, the cage holds there too. From the trigger's price, not the latest: a resumed exit
        is the same order (its client_order_id with other terms would be a conflict). Raises QuoteUnavailable (the
        exit is attempted again)."""
        assert stop.trigger_seen is not None
        _, lowest_sell = price_cage(Board.STAR, stop.trigger_seen)
        session = self.market_session()
        code = stop.ts_code
        quote = await (self.quotes.quote(code) if session is None else self.quotes.quote(code, session))
        limit_down = None if quote is None else quote.limit_down
        return lowest_sell if limit_down is None else max(lowest_sell, limit_down)

    async def run_pass(self) -> int:
        """One pass: resume the stalled exits, then evaluate every armed stop. How many exits it attempted."""
        self.passes += 1
        attempted = 0
        stalled_before = self.now() - timedelta(seconds=self.lease_s)
        for stop in await self.store.with_status(StopStatus.TRIGGERED):
            stalled = stop.outcome is None and stop.claimed_at is not None and stop.claimed_at <= stalled_before
            if stalled and await self.store.reclaim(stop, self.now()):
                await self._exit(stop)
                attempted += 1
        prices: dict[str, Decimal | None] = {}
        for stop in await self.store.with_status(StopStatus.ARMED):
            if stop.ts_code not in prices:
                try:
                    prices[stop.ts_code] = await self.price(stop.ts_code)
                except QuoteUnavailable as exc:
                    log.warning("stops cannot read a price", extra={"ts_code": stop.ts_code, "error": str(exc)})
                    prices[stop.ts_code] = None
            price = prices[stop.ts_code]
            if price is None:
                continue
            attempted += await self._evaluate(stop, price)
        return attempted

    async def _evaluate(self, stop: Stop, price: Decimal) -> int:
        raised, crossing = evaluate(stop, price)
        if crossing is None:
            if raised is not None:
                assert stop.high_water is not None
                await self.store.raise_high_water(stop.stop_id, stop.high_water, raised)
            return 0
        try:
            holding = await self.positions.holding(stop.account_id, stop.ts_code)
        except PositionsUnavailable as exc:
            log.warning("a stop triggered but its position cannot be read", extra={"stop": stop.stop_id,
                        "error": str(exc)})  # fmt: skip
            return 0  # still armed: the next pass sees it again
        sellable = 0 if holding is None else holding.sellable_qty
        wanted = (0 if holding is None else holding.qty) if stop.qty is None else stop.qty
        exit_qty = max(min(wanted, sellable), 0)
        at = self.now()
        if not await self.store.claim(stop, crossing, exit_qty, at):
            return 0  # another process triggered (or the owner cancelled) it
        log.info("stop triggered", extra={"stop": stop.stop_id, "price": str(price), "level": str(crossing.level)})
        if self.on_trigger is not None:
            self.on_trigger(stop)
        claimed = replace(
            stop,
            status=StopStatus.TRIGGERED.value,
            triggered_at=at,
            trigger_seen=crossing.price,
            exit_qty=exit_qty,
            claimed_at=at,
            client_order_id=exit_client_order_id(stop.stop_id),
            high_water=crossing.high_water if crossing.high_water is not None else stop.high_water,
        )
        await self._exit(claimed, crossing.level)
        return 1

    async def _exit(self, stop: Stop, level: Decimal | None = None) -> None:
        """Place the exit of a claimed stop and record what the desk answered."""
        assert stop.trigger_seen is not None and stop.exit_qty is not None
        client_order_id = exit_client_order_id(stop.stop_id)

        def attempt(result: str, message: str, **kw: Any) -> Attempt:
            return Attempt(
                stop_id=stop.stop_id,
                price=stop.trigger_seen or Decimal(0),
                stop_level=level if level is not None else _level_at_trigger(stop),
                high_water=stop.high_water if stop.kind == StopKind.TRAILING else None,
                at=self.now(),
                qty=stop.exit_qty or 0,
                client_order_id=client_order_id,
                result=result,
                message=message,
                **kw,
            )

        if stop.exit_qty == 0:
            done = attempt("failed", "nothing to sell: no sellable shares (none held, bought this session, or "
                           "reserved by open sells)", code="nothing_to_sell")  # fmt: skip
            await self.store.finish(done, StopStatus.FAILED, done.message, stop_triggered(stop, done,
                                    StopStatus.FAILED))  # fmt: skip
            return
        protection: Decimal | None = None
        if needs_protection(stop.ts_code, OrderType.MARKET):
            # a STAR market sell carries a protection price, the least the exit accepts (`_protection`)
            try:
                protection = await self._protection(stop)
            except QuoteUnavailable as exc:
                await self._record_retry(attempt("retry", f"no protection price for the STAR exit: {exc}"))
                return
        request = OrderRequest(
            client_order_id=client_order_id,
            ts_code=stop.ts_code,
            side=OrderSide.SELL,
            order_type=OrderType.MARKET,
            qty=stop.exit_qty,
            price=protection,
        )
        principal = Principal(stop.owner, stop.owner_role, stop.account_id)
        try:
            placement = await self.desk.place(request, principal)
        except ServiceError as exc:
            placement = Placement(exc.status_code, exc.body())
        except Exception as exc:  # the database, a bug: no answer; the lease brings it back
            log.exception("a stop's exit could not be placed", extra={"stop": stop.stop_id})
            await self._record_retry(attempt("retry", f"no answer: {exc!r}"))
            return
        status, body = placement.status_code, placement.body
        answer = PlacementAnswer.read(status, body)
        code, message, decision_id = answer.code, answer.message, answer.decision_id
        if answer.outcome is Outcome.PLACED:
            done = attempt("placed", f"exit order {answer.order_id} placed ({answer.order_status})", http_status=status,
                           order_id=answer.order_id, decision_id=decision_id)  # fmt: skip
            await self.store.finish(done, StopStatus.TRIGGERED, done.message,
                                    stop_triggered(stop, done, StopStatus.TRIGGERED))  # fmt: skip
        elif answer.outcome is Outcome.ACCEPTED:  # execution holds the order and sends it itself
            done = attempt("placed", f"exit order {answer.order_id} accepted: {message}", http_status=status,
                           code=code, order_id=answer.order_id, decision_id=decision_id)  # fmt: skip
            await self.store.finish(done, StopStatus.TRIGGERED, done.message,
                                    stop_triggered(stop, done, StopStatus.TRIGGERED))  # fmt: skip
        elif answer.outcome is Outcome.RETRY:
            await self._record_retry(attempt("retry", message, http_status=status, code=code, decision_id=decision_id))
        else:
            done = attempt("failed", message, http_status=status, code=code, decision_id=decision_id)
            await self.store.finish(done, StopStatus.FAILED, f"{code}: {message}",
                                    stop_triggered(stop, done, StopStatus.FAILED))  # fmt: skip

    async def _record_retry(self, attempt: Attempt) -> None:
        log.warning("a stop's exit will be attempted again", extra={"stop": attempt.stop_id, "why": attempt.message})
        try:
            await self.store.record(attempt)
        except Exception:
            log.exception("could not record a stop's attempt", extra={"stop": attempt.stop_id})


def _level_at_trigger(stop: Stop) -> Decimal:
    """The level a claimed stop crossed (a resumed exit's: from the stored mark, as at the trigger)."""
    if stop.kind == StopKind.TRAILING:
        assert stop.high_water is not None and stop.trail_pct is not None
        return trailing_level(stop.high_water, stop.trail_pct)
    assert stop.trigger_price is not None
    return stop.trigger_price
