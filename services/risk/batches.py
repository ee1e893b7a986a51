"""Batches of orders (`POST /v1/order-batches`, docs/order-management.md): up to LH_BATCH_MAX_ORDERS orders in one
request (a portfolio rebalance, a strategy instance's round), each decided by the desk exactly as a single order
(every check, the hot book's reservation, the decision recorded) in the order given, so each buy's reservation holds
before the next item is checked; the approved ones then go to execution in one request, where each is admitted as a
single order, in the same order (`RiskDesk.place_many`).

A batch is idempotent by its `batch_id` per account. It is stored (`order_batches`) with a digest of its items'
terms, and every item's final answer (placed or refused) once its items are placed (`order_batch_items`, one
transaction). Sent again:

- the same items, the batch complete: the stored answer, nothing placed;
- the same items, the batch incomplete (an item failed because a dependency was down, or the request died mid-way):
  the items without a final answer are placed now (an item placed before its answer was recorded is found again by
  its client_order_id: risk replays its decision, execution answers with the order it holds);
- other items: 409 `batch_id_reused`.

One request at a time places a batch's items: it holds the batch's lease (`claim_token`, LEASE_S long), renewed
before the items are decided, every RENEW_S while they are being placed (a place may wait on HTTP timeouts longer
than the lease) and with the answers it records; each renewal is conditional on the request's own token, so a request
whose lease was taken over sends nothing more (409 `batch_in_progress`). A copy arriving meanwhile is 409
`batch_in_progress`. The lease of a request that died runs out, and the batch sent again then completes it.

The first item that fails (503: execution, risk's data or a dependency of risk is down) stops the batch: it and the
items after it are answered `failed` (those not yet decided are not sent), so a rebalance's later items never go
ahead of an earlier one."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.risk.desk import Placement, RiskDesk, check_request
from services.risk.schemas import OrderBatchRequest, OrderRequest
from services.risk.store import order_batch_items, order_batches
from shared.core.domain import InvalidTsCode, parse_ts_code
from shared.platform.clock import utcnow
from shared.platform.columns import json_text
from shared.platform.db import Database, DbSession
from shared.platform.errors import Conflict, ServiceError, dependency_failure, unavailable_message
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id

log = logging.getLogger(__name__)
_T = TypeVar("_T")

LEASE_S = 30.0  # a batch whose placing request renewed nothing for this long may be taken over by a copy
RENEW_S = LEASE_S / 3  # while an item is being placed, its lease is renewed this often


class BatchStatus(StrEnum):
    OPEN = "open"  # some item has no final answer yet
    COMPLETE = "complete"  # every item placed or refused


class Opened(StrEnum):
    CLAIMED = "claimed"  # this request places its open items (a new batch, or one sent again)
    COMPLETE = "complete"  # nothing to place: the stored answer
    BUSY = "busy"  # another request holds the lease
    REUSED = "reused"  # the batch_id holds other items


@dataclass
class OpenedBatch:
    outcome: Opened
    items: dict[int, dict[str, Any]] = field(default_factory=dict)  # the final answers recorded so far, by index


class LeaseLost(Exception):
    """Another request took the batch over (this one's lease had run out)."""


def batch_digest(orders: list[OrderRequest]) -> str:
    """sha256 of the items' terms, written canonically: the price as a plain decimal without trailing zeros (10.5
    and "10.50" are one price), the code as risk reads it. The sleeve is left out: the strategy service sends each
    attempt with its instance's sleeve as it is then (docs/order-path.md), as for a single order."""
    items = []
    for order in orders:
        terms = order.model_dump(mode="json", exclude={"sleeve"})
        terms["price"] = None if order.price is None else format(order.price.normalize(), "f")
        with suppress(InvalidTsCode):  # (refused by risk's checks: compared as written)
            terms["ts_code"] = parse_ts_code(order.ts_code).ts_code
        items.append(terms)
    return hashlib.sha256(json.dumps(items, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class BatchStore:
    """The batches and their items' answers, in risk's database."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def open(self, account_id: str, batch_id: str, digest: str, size: int, *, by: str, token: str) -> OpenedBatch:
        """Create the batch claimed by `token`, or find it: its recorded answers, and claimed by `token` when it is
        open and nobody's lease holds it."""
        for _ in range(2):  # a copy that created it at the same moment: found on the second pass
            try:
                return await self._open(account_id, batch_id, digest, size, by=by, token=token)
            except IntegrityError:
                continue
        raise Conflict("batch_in_progress", f"batch {batch_id} is being placed by another request: send it again")

    async def _open(
        self, account_id: str, batch_id: str, digest: str, size: int, *, by: str, token: str
    ) -> OpenedBatch:
        key = and_(order_batches.c.account_id == account_id, order_batches.c.batch_id == batch_id)
        now = self.clock()
        until = now + timedelta(seconds=LEASE_S)

        async def unit(s: DbSession) -> OpenedBatch:
            row = (await s.execute(select(order_batches).where(key))).first()
            if row is None:
                await s.execute(
                    order_batches.insert().values(
                        account_id=account_id, batch_id=batch_id, body_digest=digest, size=size,
                        status=BatchStatus.OPEN.value, created_by=by, created_at=now, updated_at=now,
                        claim_token=token, claimed_until=until,
                    )
                )  # fmt: skip
                return OpenedBatch(Opened.CLAIMED)
            if row.body_digest != digest or row.size != size:
                return OpenedBatch(Opened.REUSED)
            items = await s.execute(
                select(order_batch_items.c.item_index, order_batch_items.c.answer).where(
                    order_batch_items.c.account_id == account_id, order_batch_items.c.batch_id == batch_id
                )
            )
            answers = {r.item_index: json.loads(r.answer) for r in items.all()}
            if row.status == BatchStatus.COMPLETE.value:
                return OpenedBatch(Opened.COMPLETE, answers)
            claimed = await s.execute(
                update(order_batches)
                .where(
                    key,
                    order_batches.c.status == BatchStatus.OPEN.value,
                    or_(order_batches.c.claim_token.is_(None), order_batches.c.claimed_until < now),
                )
                .values(claim_token=token, claimed_until=until, updated_at=now)
            )
            return OpenedBatch(Opened.CLAIMED if claimed.rowcount == 1 else Opened.BUSY, answers)

        opened = OpenedBatch(Opened.BUSY)
        async for tx in self.db.transaction():
            async with tx as s:
                opened = await unit(s)
        return opened

    async def _renew(self, s: DbSession, account_id: str, batch_id: str, token: str, now: datetime) -> None:
        """The lease extended to LEASE_S from `now`, if `token` still holds it (else LeaseLost: a copy took it over
        after this request's lease had run out)."""
        renewed = await s.execute(
            update(order_batches)
            .where(
                order_batches.c.account_id == account_id,
                order_batches.c.batch_id == batch_id,
                order_batches.c.claim_token == token,
            )
            .values(claimed_until=now + timedelta(seconds=LEASE_S), updated_at=now)
        )
        if renewed.rowcount != 1:
            raise LeaseLost(batch_id)

    async def renew(self, account_id: str, batch_id: str, token: str) -> None:
        """The lease renewed by the request holding it (`token`). Raises LeaseLost."""
        now = self.clock()
        async for tx in self.db.transaction():
            async with tx as s:
                await self._renew(s, account_id, batch_id, token, now)

    async def record_many(self, account_id: str, batch_id: str, token: str, answers: dict[int, dict[str, Any]]) -> None:
        """Items' final answers (by index), with the lease renewed in the same transaction. Raises LeaseLost."""
        now = self.clock()
        rows = [
            {
                "account_id": account_id, "batch_id": batch_id, "item_index": index,
                "client_order_id": answer["client_order_id"], "status": answer["status"],
                "answer": json_text(answer, sort_keys=True), "decided_at": now,
            }
            for index, answer in sorted(answers.items())
        ]  # fmt: skip
        async for tx in self.db.transaction():
            async with tx as s:
                await self._renew(s, account_id, batch_id, token, now)
                await s.execute(order_batch_items.insert(), rows)

    async def release(self, account_id: str, batch_id: str, token: str, *, complete: bool) -> None:
        """Give the lease up; the batch is complete when every item has a final answer."""
        values: dict[str, Any] = {"claim_token": None, "claimed_until": None, "updated_at": self.clock()}
        if complete:
            values["status"] = BatchStatus.COMPLETE.value
        async for tx in self.db.transaction():
            async with tx as s:
                await s.execute(
                    update(order_batches)
                    .where(
                        order_batches.c.account_id == account_id,
                        order_batches.c.batch_id == batch_id,
                        order_batches.c.claim_token == token,
                    )
                    .values(**values)
                )


class OrderBatches:
    def __init__(self, desk: RiskDesk, store: BatchStore, *, max_orders: int, renew_s: float = RENEW_S) -> None:
        self.desk = desk
        self.store = store
        self.max_orders = max_orders
        self.renew_s = renew_s  # how often an item's lease is renewed while it is being placed

    async def place(self, request: OrderBatchRequest, principal: Principal) -> dict[str, Any]:
        orders = request.orders
        self._check(orders, principal)
        account_id = principal.account_id or principal.subject  # the strategy service's batches: its own
        token = new_id()
        opened = await self.store.open(
            account_id, request.batch_id, batch_digest(orders), len(orders), by=principal.subject, token=token
        )
        if opened.outcome is Opened.REUSED:
            raise Conflict(
                "batch_id_reused",
                f"batch_id {request.batch_id} was used for other orders: a batch's orders cannot change; choose "
                "another batch_id",
                field="batch_id",
            )
        if opened.outcome is Opened.BUSY:
            raise Conflict(
                "batch_in_progress",
                f"batch {request.batch_id} is being placed by another request: send it again in a moment for its "
                "answer",
                field="batch_id",
            )
        if opened.outcome is Opened.COMPLETE:
            return _answer(request.batch_id, [opened.items[i] for i in range(len(orders))])
        return await self._run(request, principal, account_id, token, opened.items)

    def _check(self, orders: list[OrderRequest], principal: Principal) -> None:
        """What refuses the whole batch, before anything is read or placed: its size, a client_order_id twice, and
        each item's own checks that come before any decision (who may place it, its sleeve)."""
        if len(orders) > self.max_orders:
            raise ServiceError(
                "batch_too_large",
                f"orders: {len(orders)} orders, more than the {self.max_orders} a batch may carry "
                "(LH_BATCH_MAX_ORDERS): nothing was placed; split it into batches",
                status_code=422,
                field="orders",
                max_orders=self.max_orders,
            )
        first: dict[str, int] = {}
        for index, order in enumerate(orders):
            earlier = first.setdefault(order.client_order_id, index)
            if earlier != index:
                raise ServiceError(
                    "duplicate_client_order_id",
                    f"orders.{index}.client_order_id: {order.client_order_id} is also item {earlier}'s: each order "
                    "of a batch has its own; nothing was placed",
                    status_code=422,
                    field=f"orders.{index}.client_order_id",
                    index=index,
                )
            try:
                check_request(order, principal)
            except ServiceError as exc:
                inner = exc.details.get("field")
                details = {**exc.details, "field": f"orders.{index}" + (f".{inner}" if inner else ""), "index": index}
                raise ServiceError(
                    exc.code, f"orders.{index}: {exc.message}; nothing was placed", status_code=exc.status_code,
                    **details,
                ) from exc  # fmt: skip

    async def _run(
        self,
        request: OrderBatchRequest,
        principal: Principal,
        account_id: str,
        token: str,
        recorded: dict[int, dict[str, Any]],
    ) -> dict[str, Any]:
        """The items without a final answer decided and placed together (`RiskDesk.place_many`: each decided as a
        single order, in order, the approved ones sent to execution in one request), then their final answers
        recorded in one transaction with the lease renewed. A request that dies before recording them leaves them
        to the batch sent again, which finds each placed one by its client_order_id (risk replays its decision,
        execution answers with the order it holds)."""
        todo = [index for index in range(len(request.orders)) if index not in recorded]
        answers: dict[int, dict[str, Any]] = dict(recorded)
        stopped: dict[str, Any] | None = None  # the first item that failed: the rest are not sent
        error: BaseException | None = None
        try:
            if todo:
                # still ours? (else a copy places them: this request sends nothing)
                await self.store.renew(account_id, request.batch_id, token)
                orders = [request.orders[index] for index in todo]
                lost = asyncio.Event()  # the lease was taken over: no further item is decided
                placed = await self._leased(
                    self.desk.place_many(orders, principal, stop=lost.is_set), account_id, request.batch_id, token,
                    lost=lost,
                )  # fmt: skip
                final: dict[int, dict[str, Any]] = {}
                for index, order, outcome in zip(todo, orders, placed, strict=True):
                    if outcome is None:  # not decided: after the first item that failed, or the lease was lost
                        stopped = _LEASE_LOST if lost.is_set() else (stopped or _LEASE_LOST)
                        answers[index] = _not_sent(index, order, stopped)
                        continue
                    try:
                        answer = _item(index, order, outcome)
                    except Exception as exc:  # a bug deciding it: the other answers are still recorded
                        error = error or exc
                        stopped = stopped or {"index": index, "code": "internal_error", "http_status": 500}
                        continue
                    # each decided item keeps its own answer (execution admitted those after a failed one)
                    answers[index] = answer
                    if answer["status"] == "failed":
                        stopped = stopped or answer
                    else:
                        final[index] = answer
                if final:
                    await self.store.record_many(account_id, request.batch_id, token, final)
                if lost.is_set():
                    raise LeaseLost(request.batch_id)  # (recorded nothing then: a copy holds the batch)
        except LeaseLost:
            raise Conflict(
                "batch_in_progress",
                f"batch {request.batch_id} was taken over by another request (this one ran past its lease): send it "
                "again for its answer",
                field="batch_id",
            ) from None
        except BaseException:
            await self._release(account_id, request.batch_id, token, complete=False)
            raise
        if error is not None:
            await self._release(account_id, request.batch_id, token, complete=False)
            raise error
        await self._release(account_id, request.batch_id, token, complete=stopped is None)
        return _answer(request.batch_id, [answers[index] for index in range(len(request.orders))])

    async def _leased(
        self,
        placing: Coroutine[Any, Any, _T],
        account_id: str,
        batch_id: str,
        token: str,
        *,
        lost: asyncio.Event | None = None,
    ) -> _T:
        """The items' placing, with the lease renewed every `renew_s` while it runs: a placing that waits on HTTP
        timeouts longer than LEASE_S does not let a copy of the batch send the same items meanwhile. A renewal that
        fails (the database, or the lease lost) is logged and tried again on the next beat; the record of the answers
        after it is the check that counts (LeaseLost there)."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.renew_s)
                try:
                    await self.store.renew(account_id, batch_id, token)
                except LeaseLost:
                    log.error("a batch's lease was taken over while its items were being placed",
                              extra={"batch_id": batch_id})  # fmt: skip
                    if lost is not None:
                        lost.set()  # no further item is decided; what was sent is found by its client_order_id
                    return
                except Exception:
                    log.exception("could not renew a batch's lease", extra={"batch_id": batch_id})

        heart = asyncio.create_task(beat())
        try:
            return await placing
        finally:
            heart.cancel()
            with suppress(asyncio.CancelledError):
                await heart

    async def _release(self, account_id: str, batch_id: str, token: str, *, complete: bool) -> None:
        try:
            await self.store.release(account_id, batch_id, token, complete=complete)
        except Exception:
            # the lease runs out by itself; only a copy sent within LEASE_S is told to wait (batch_in_progress)
            log.exception("could not release a batch's lease", extra={"batch_id": batch_id})
            if complete:
                raise


def _item(index: int, order: OrderRequest, outcome: Placement | Exception) -> dict[str, Any]:
    """An item's answer from what `RiskDesk.place_many` gave for it: the placement, or the error deciding it (a
    service's error, or a dependency down: `failed`; anything else is raised)."""
    base: dict[str, Any] = {"index": index, "client_order_id": order.client_order_id}
    if isinstance(outcome, ServiceError):
        status = "failed" if outcome.status_code >= 500 else "refused"
        return {**base, "status": status, "code": outcome.code, "message": outcome.message,
                "http_status": outcome.status_code}  # fmt: skip
    if isinstance(outcome, Exception):
        code = dependency_failure(outcome)
        if code is None:
            raise outcome
        log.error("a batch's order could not be decided", extra={"code": code, "error": type(outcome).__name__})
        message = unavailable_message("risk", code, "send the batch again")
        return {**base, "status": "failed", "code": code, "message": message, "http_status": 503}
    body = outcome.body
    decision = body.get("decision")
    if isinstance(decision, dict):
        base["decision_id"] = decision.get("decision_id")
    if outcome.status_code in (200, 201):
        return {**base, "status": "placed", "order": body["order"]}
    answer = {
        **base,
        "status": "failed" if outcome.status_code >= 500 else "refused",
        "code": body.get("code"),
        "message": body.get("message"),
        "http_status": outcome.status_code,
    }
    if body.get("code") == "order_rejected" and isinstance(decision, dict):
        answer["reasons"] = decision.get("reasons")
    if isinstance(body.get("details"), dict):
        answer["details"] = body["details"]
    return answer


# what the items not decided are answered with when the batch stopped because its lease was taken over
_LEASE_LOST: dict[str, Any] = {"index": -1, "code": "batch_in_progress", "http_status": 409}


def _not_sent(index: int, order: OrderRequest, stopped: dict[str, Any]) -> dict[str, Any]:
    if stopped is _LEASE_LOST:
        return {"index": index, "client_order_id": order.client_order_id, "status": "failed",
                "code": stopped["code"], "http_status": stopped["http_status"],
                "message": "not sent: another request took the batch over; send it again for its answer"}  # fmt: skip
    return {
        "index": index,
        "client_order_id": order.client_order_id,
        "status": "failed",
        "code": stopped["code"],
        "message": f"not sent: item {stopped['index']} before it could not be placed ({stopped['code']}); send the "
        "batch again",
        "http_status": stopped["http_status"],
    }


def _answer(batch_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {
        status: sum(1 for item in items if item["status"] == status) for status in ("placed", "refused", "failed")
    }
    return {"batch_id": batch_id, "items": items, **counts, "complete": counts["failed"] == 0}
