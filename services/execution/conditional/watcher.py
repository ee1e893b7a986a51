"""The conditional orders' watcher (docs/conditional-orders.md "How it triggers"): it hears the real-time quotes
(`quotes.snapshot`, on a durable queue of execution's own), runs a pass every PASS_S seconds on the market clock
(time conditions, orders waiting for another to fill, attempts to resume), and submits each triggered order's child
through risk, as a new decision carrying the conditional order's id.

Exactly once: a trigger is claimed by the version-checked move armed -> triggered (store.py); a trigger delivered
twice, or seen by two processes, is claimed by one; the loser changes nothing. The child's client_order_id is
`cond-<conditional_id>`: an attempt made again (a crash between the claim and risk's answer, a "not now" answer) is
the same order at risk (which replays its approved decision) and at execution (which finds the order by it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from services.execution.conditional.rules import (
    ConditionType,
    OnMissed,
    Status,
    crossed,
    leg_qty_after_partial_fill,
    missed,
    time_reached,
)
from services.execution.conditional.store import Conditional, ConditionalStore, StaleMove
from shared.core.domain import OrderStatus
from shared.platform.clock import continuous_trading, market_today, session_close, utcnow
from shared.platform.errors import ServiceError
from shared.platform.events import Envelope, QuotesSnapshot
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers
from shared.platform.placement import Outcome, PlacementAnswer

log = logging.getLogger(__name__)

PASS_S = 1.0  # the watcher's pass: time conditions, waiting orders, resumed attempts, the armed index refreshed
LEASE_S = 30.0  # a triggered order whose child has no final answer this long after its last attempt is tried again
RETRY_S = 3.0  # an attempt answered "not now" (or not at all) is tried again this soon by the process that made it
CONSUMER = "execution-conditional-orders"
# The queue keeps at most this many bytes of rounds while execution is down (a full-market round is ~3 MB): the
# oldest are dropped (they are superseded; the start-up catch-up reads the latest live quote of every armed code).
QUEUE_MAX_BYTES = 256 * 1024 * 1024
NO_LIVE_QUOTE = frozenset({"no_live_quote", "quotes_feed_off"})  # the data service's 404/503 that mean "none to read"


@dataclass(frozen=True)
class LivePrice:
    price: Decimal
    time: datetime  # the quote's exchange time


class RiskPort(Protocol):
    async def submit_child(self, c: Conditional) -> tuple[int, dict[str, Any]]:
        """Ask risk to decide (and, approved, place) the child of `c`: (HTTP status, JSON body). Raises on no
        answer."""


class PricePort(Protocol):
    async def live(self, ts_code: str) -> LivePrice | None:
        """The latest live quote's price and time; None when there is none. Raises ServiceError when the data
        service cannot answer."""


class OrderPort(Protocol):
    async def order_status(self, order_id: str) -> tuple[OrderStatus, int] | None:
        """(status, filled_qty) of an order execution holds; None: no such order."""


class RiskService:
    """Risk's `POST /v1/conditional-children`, asked by execution as itself (`svc:execution`): risk decides the
    child as the conditional order's owner, and an approved child comes back to execution's `POST /v1/orders`
    signed, as any order does."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def submit_child(self, c: Conditional) -> tuple[int, dict[str, Any]]:
        order: dict[str, Any] = {
            "client_order_id": c.client_order_id,
            "ts_code": c.ts_code,
            "side": c.side.value,
            "order_type": c.order_type.value,
            "qty": c.qty,
        }
        if c.price is not None:
            order["price"] = format(c.price, "f")  # a limit child's price; a STAR market child's protection price
        if c.market_type is not None:
            order["market_type"] = c.market_type
        body = {
            "conditional_order_id": c.conditional_id,
            "account_id": c.account_id,
            "owner": c.owner,
            "owner_role": c.owner_role,
            "order": order,
        }
        headers = service_headers(self.internal_secret, "execution")
        response = await self.services.client("risk").request(
            "POST", "/v1/conditional-children", json=body, headers=headers
        )
        try:
            payload = response.json()
        except ValueError:
            payload = {"message": response.text[:200]}
        return response.status_code, payload if isinstance(payload, dict) else {"body": payload}


class DataLivePrices:
    """The data service's `GET /v1/quotes/{ts_code}/live` (docs/quotes.md)."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def live(self, ts_code: str) -> LivePrice | None:
        headers = service_headers(self.internal_secret, "execution")
        response = await self.services.client("data").request("GET", f"/v1/quotes/{ts_code}/live", headers=headers)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code in (404, 503) and isinstance(body, dict) and body.get("code") in NO_LIVE_QUOTE:
            return None  # no feed quotes it (yet): nothing to see
        if response.status_code != 200 or not isinstance(body, dict):
            code = body.get("code") if isinstance(body, dict) else None
            status = 503 if response.status_code >= 500 else response.status_code
            raise ServiceError(str(code or f"data_{response.status_code}"), f"live quote of {ts_code}: HTTP "
                               f"{response.status_code}", status_code=status)  # fmt: skip
        return LivePrice(Decimal(str(body["last"])), datetime.fromisoformat(str(body["time"])))

    async def last_close(self, ts_code: str) -> Decimal | None:
        """The stored last close (`GET /v1/quotes/{ts_code}`): the market's price when no feed quotes it live."""
        headers = service_headers(self.internal_secret, "execution")
        body = await self.services.client("data").get_json(f"/v1/quotes/{ts_code}", headers=headers)
        close = body.get("last_close")
        return None if close is None else Decimal(str(close))


async def exchange_day(at: datetime) -> date:
    """The session of a trigger at `at` without a calendar: its exchange date (Asia/Shanghai)."""
    return market_today(at, None)


class ConditionalWatcher:
    def __init__(
        self,
        store: ConditionalStore,
        risk: RiskPort,
        prices: PricePort,
        orders: OrderPort,
        *,
        market_now: Callable[[], datetime],
        wall_now: Callable[[], datetime] = utcnow,
        lease_s: float = LEASE_S,
        session_of: Callable[[datetime], Awaitable[date]] = exchange_day,
    ) -> None:
        self.store = store
        self.risk = risk
        self.prices = prices
        self.orders = orders
        self.market_now = market_now  # the market clock: time conditions, and what "missed" is judged against
        self.wall_now = wall_now  # leases
        self.lease_s = lease_s
        # the trading session of an order placed at a moment (execution's desk: by the trade calendar): a triggered
        # order whose child is not placed by that session's close expires
        self.session_of = session_of
        self.previous: dict[str, Decimal] = {}  # conditional_id -> the last price it saw (in this process)
        self.by_code: dict[str, dict[str, Conditional]] = {}  # the armed price-triggered orders, by ts_code
        self.watching_since: datetime | None = None  # market time this process started watching
        self.to_catch_up: set[str] | None = None  # codes whose latest live quote is still to be read after start
        self.passes = 0
        self.triggered = 0  # claims this process won
        self.retry_at: dict[str, datetime] = {}  # conditional_id -> when this process tries its child again

    # --- the index of armed orders --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Before the queue is consumed: note when watching began (anything seen from before it was missed) and load
        the armed orders; the first pass reads the latest live quote of each of their codes (the catch-up)."""
        self.watching_since = self.market_now()
        await self.refresh()
        self.to_catch_up = set(self.by_code)

    async def refresh(self, armed: list[Conditional] | None = None) -> None:
        """Rebuild the index of armed price-triggered orders from the table (or from `armed`, just read from it)."""
        index: dict[str, dict[str, Conditional]] = {}
        for c in armed if armed is not None else await self.store.with_status(Status.ARMED):
            if c.trigger.type is not ConditionType.AT_TIME:
                index.setdefault(c.ts_code, {})[c.conditional_id] = c
        self.by_code = index

    def add(self, c: Conditional) -> None:
        """A conditional order just created (or armed) in this process: watched from the next quote."""
        if c.status is Status.ARMED and c.trigger.type is not ConditionType.AT_TIME:
            self.by_code.setdefault(c.ts_code, {})[c.conditional_id] = c

    def forget(self, c: Conditional) -> None:
        self.by_code.get(c.ts_code, {}).pop(c.conditional_id, None)
        self.previous.pop(c.conditional_id, None)

    # --- triggers ----------------------------------------------------------------------------------------------

    async def on_quotes(self, event: Envelope) -> None:
        """A `quotes.snapshot` round: each quote of a code with armed orders is checked against them."""
        parsed = event.parsed()
        if not isinstance(parsed, QuotesSnapshot) or not self.by_code:
            return
        for quote in parsed.quotes:
            watched = self.by_code.get(quote.ts_code)
            if watched:
                for c in list(watched.values()):
                    await self.observe(c, quote.last, quote.time)

    async def observe(self, c: Conditional, price: Decimal, at: datetime) -> bool:
        """`price` quoted at `at` for an armed order: triggers it if it crosses. True: this call claimed it. A quote
        from outside continuous trading (the call auctions, the lunch break, after the close) is not a trade price:
        it neither triggers nor counts as the previous price."""
        if not continuous_trading(at):
            return False
        previous = self.previous.get(c.conditional_id, c.ref_price)
        if not crossed(c.trigger, previous, price):
            self.previous[c.conditional_id] = price
            return False
        return await self.fire(c, price, at)

    async def fire(self, c: Conditional, seen: Decimal | None, evidence_at: datetime) -> bool:
        """Claim a trigger (armed -> triggered, its OCO partners cancelled) and submit the child; or, a trigger missed
        while execution was down whose order says `expire`, expire it. True: this call claimed it."""
        assert self.watching_since is not None, "start() first"
        was_missed = missed(evidence_at, self.watching_since)
        now = self.market_now()
        self.forget(c)
        try:
            if was_missed and c.on_missed is OnMissed.EXPIRE:
                await self.store.move(
                    c, Status.EXPIRED, now, trigger_seen=seen, trigger_time=evidence_at, missed=True,
                    message="expired: its trigger came while execution was down (on_missed: expire)",
                )  # fmt: skip
                return False
            claimed = await self.store.move(
                c, Status.TRIGGERED, now, cancel_partners=True, triggered_at=now, trigger_seen=seen,
                trigger_time=evidence_at, missed=was_missed, claimed_at=self.wall_now(), attempts=c.attempts + 1,
                child_client_order_id=c.client_order_id,
                message="triggered" + (" (missed while execution was down: on_missed fire)" if was_missed else ""),
            )  # fmt: skip
        except StaleMove:
            return False  # another process (or an earlier delivery of this trigger) moved it first
        if c.oco_group is not None:
            for watched in self.by_code.values():
                for partner in [p for p in watched.values() if p.oco_group == c.oco_group]:
                    self.forget(partner)
        self.triggered += 1
        log.info("conditional order triggered", extra={"conditional_id": c.conditional_id, "seen": str(seen)})
        await self.submit(claimed)
        return True

    async def submit(self, c: Conditional) -> Conditional:
        """Ask risk for the child of a triggered order and record its answer: placed, refused (with risk's reasons),
        or "not now" (attempted again after the lease, with the same client_order_id)."""
        try:
            status, body = await self.risk.submit_child(c)
        except Exception as exc:  # no answer: the lease brings it back
            log.warning(
                "a conditional order's child got no answer: %r", exc, extra={"conditional_id": c.conditional_id}
            )
            return await self._retry(c, f"no answer from risk: {type(exc).__name__}")
        answer = PlacementAnswer.read(status, body)
        code, message = answer.code, answer.message
        now = self.market_now()
        try:
            if answer.outcome is Outcome.PLACED:
                return await self.store.move(
                    c, Status.PLACED, now, child_order_id=answer.order_id, decision_id=answer.decision_id,
                    message=f"child order {answer.order_id} placed ({answer.order_status})",
                )  # fmt: skip
            if answer.outcome is Outcome.ACCEPTED:
                return await self.store.move(
                    c, Status.PLACED, now, child_order_id=answer.order_id, decision_id=answer.decision_id,
                    message=f"child order {answer.order_id} accepted: {message}",
                )  # fmt: skip
            if answer.outcome is Outcome.RETRY:
                return await self._retry(c, f"{code}: {message}")
            return await self.store.move(
                c, Status.REFUSED, now, decision_id=answer.decision_id, reasons=list(answer.reasons),
                message=f"{code}: {message}",
            )  # fmt: skip
        except StaleMove:
            return c  # another process recorded the answer first

    async def _retry(self, c: Conditional, message: str) -> Conditional:
        self.retry_at[c.conditional_id] = self.wall_now() + timedelta(seconds=RETRY_S)
        try:
            return await self.store.retry_later(c, self.wall_now(), message)
        except StaleMove:
            return c
        except Exception:
            log.exception("could not record a conditional order's attempt", extra={"conditional_id": c.conditional_id})
            return c

    # --- the pass ----------------------------------------------------------------------------------------------

    async def run_pass(self) -> None:
        """Catch up after start, arm (or cancel) orders waiting for another to fill, fire the time conditions that are
        due, resume stalled attempts, and refresh the index of armed orders."""
        if self.watching_since is None:
            await self.start()
        self.passes += 1
        await self._waiting()
        armed = await self.store.with_status(Status.ARMED)
        await self.refresh(armed)
        await self._catch_up()
        now = self.market_now()
        for c in armed:
            if time_reached(c.trigger, now):
                assert c.at is not None
                await self.fire(c, None, c.at)
        wall = self.wall_now()
        stalled_before = wall - timedelta(seconds=self.lease_s)
        for c in await self.store.with_status(Status.TRIGGERED):
            retry_at = self.retry_at.pop(c.conditional_id, None)
            due = retry_at is not None and retry_at <= wall
            if retry_at is not None and not due:
                self.retry_at[c.conditional_id] = retry_at
            if due or (c.claimed_at is not None and c.claimed_at <= stalled_before):
                if await self._expired(c):
                    continue
                try:
                    again = await self.store.reclaim(c, self.wall_now())
                except StaleMove:
                    continue
                await self.submit(again)

    async def _expired(self, c: Conditional) -> bool:
        """A triggered order about to be attempted again whose session has closed is expired instead (its child
        could not be placed by the close: a stop does not carry over to another day). True: it is no longer to be
        attempted now (expired here, moved by another process, or its session cannot be told this pass)."""
        if c.triggered_at is None:
            return False
        try:
            day = await self.session_of(c.triggered_at)
        except Exception as exc:  # the calendar cannot say: not attempted on a guess (it could be the next day's
            # order), nor expired; judged again at the next pass
            log.warning("cannot tell a triggered conditional order's session: %r", exc,
                        extra={"conditional_id": c.conditional_id})  # fmt: skip
            self.retry_at[c.conditional_id] = self.wall_now()  # due again at the next pass
            return True
        close = session_close(day)
        now = self.market_now()
        if now < close:
            return False
        self.retry_at.pop(c.conditional_id, None)
        reason = (
            f"its child could not be placed by the close of its session {day.isoformat()} "
            f"(last answer: {c.message or 'none'})"
        )
        with contextlib.suppress(StaleMove):  # another process moved it first
            await self.store.move(
                c, Status.EXPIRED, now, reasons=[{"code": "session_closed", "message": reason}],
                message=f"expired: {reason}",
            )  # fmt: skip
        return True

    async def _catch_up(self) -> None:
        """After start: the latest live quote of each armed code, checked as a quote (one from before start is a
        missed trigger). A code whose quote cannot be read is tried again at the next pass."""
        if not self.to_catch_up:
            return
        for code in sorted(self.to_catch_up):
            try:
                live = await self.prices.live(code)
            except Exception as exc:
                log.warning("the catch-up cannot read a live quote of %s: %r", code, exc)
                continue
            self.to_catch_up.discard(code)
            if live is None:
                continue
            for c in list(self.by_code.get(code, {}).values()):
                await self.observe(c, live.price, live.time)

    async def _waiting(self) -> None:
        """Orders waiting for another to fill (a bracket's legs): armed once it is filled; once it ended partly filled
        (cancelled, or expired at the close), armed for what it filled (`leg_qty_after_partial_fill`); cancelled
        once it ended with nothing filled (or too little for a buy leg's lot)."""
        for c in await self.store.with_status(Status.WAITING):
            assert c.after_order_id is not None
            state = await self.orders.order_status(c.after_order_id)
            if state is None:
                continue
            status, filled = state
            now = self.market_now()
            try:
                if status is OrderStatus.FILLED:
                    armed = await self.store.move(
                        c, Status.ARMED, now, ref_price=None, message=f"armed: order {c.after_order_id} filled"
                    )
                    self.add(armed)
                elif status.is_final and (qty := leg_qty_after_partial_fill(c.side, c.ts_code, c.qty, filled)) > 0:
                    # The entry ended partly filled: the shares it bought are held, and protected.
                    armed = await self.store.move(
                        c, Status.ARMED, now, ref_price=None, qty=qty,
                        message=f"armed for {qty} of {c.qty}: order {c.after_order_id} ended {status.value} with "
                        f"{filled} filled",
                    )  # fmt: skip
                    self.add(armed)
                elif status.is_final:
                    await self.store.move(
                        c, Status.CANCELLED, now,
                        message=f"cancelled: order {c.after_order_id} ended {status.value} with {filled} filled",
                    )  # fmt: skip
            except StaleMove:
                continue
