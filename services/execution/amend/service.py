"""Amends as cancel-replace (docs/order-path.md "Amending an order"): the request cancels the original; only once its
cancel is confirmed (the paper broker at once; QMT by the broker's report, which the pass waits for) is the
replacement — the new total less what the original filled by then — asked of risk as a new decision carrying the
original's id (`replaces_order_id`), and, approved, placed by risk through execution's `POST /v1/orders` as any order.

Exactly once: every step is a version-checked move of the amend's row (store.py); the replacement's client_order_id
is derived from the original's id (`amend-<order_id>`), so an attempt made again — after a crash between the cancel
and the replacement, after a "not now" answer, or by another process — is the same order at risk (which replays its
approved decision) and at execution (which finds the order by it). A pass every PASS_S seconds completes what a
request left: a cancel confirmed later (QMT), a replacement not answered, an amend a restart interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from services.execution.admission import principal_account
from services.execution.amend.rules import (
    ACTIVE,
    FINAL,
    Original,
    Status,
    after_cancel,
    refusal,
    replacement_client_order_id,
)
from services.execution.amend.store import Amend, AmendExists, AmendStore, StaleMove
from services.execution.brokers.base import BrokerUnavailable, CancelOutcomeUnknown, CancelTooLate
from services.execution.desk import OrderDesk
from services.execution.store import StoredOrder
from shared.platform.approval import OrderTerms
from shared.platform.clock import session_close, utcnow
from shared.platform.db import DbSession
from shared.platform.errors import Conflict, Forbidden, NotFound, ServiceError, Unavailable
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import Principal, service_headers
from shared.platform.observability import new_id
from shared.platform.placement import Outcome, PlacementAnswer
from shared.platform.roles import Role

log = logging.getLogger(__name__)

PASS_S = 1.0  # the pass: cancels confirmed since (QMT), replacements to attempt again
LEASE_S = 30.0  # a replacement with no final answer this long after its last attempt is attempted again by any process
RETRY_S = 3.0  # an attempt answered "not now" (or not at all) is tried again this soon by the process that made it
CANCEL_RESEND_S = 30.0  # a cancel not confirmed this long after it was sent is sent again (idempotent at the broker)
STOP_ATTEMPTS = 5  # a user's cancel reads its amend again this often when the pass moves it meanwhile
NOTE_SEP = "; then: "  # a stopped amend's message: the stop's words, then what became of a replacement placed before


class RiskPort(Protocol):
    async def check_replacement(
        self, original: StoredOrder, principal: Principal, price: Decimal, qty: int
    ) -> tuple[int, dict[str, Any]]:
        """Ask risk whether a replacement of `original` for `qty` at `price` passes the checks that need no
        reservation, before the original is cancelled (`check_only`): (HTTP status, JSON body). Raises on no
        answer."""

    async def submit_replacement(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        """Ask risk to decide (and, approved, place) the replacement: (HTTP status, JSON body). Raises on no
        answer."""


class RiskReplacements:
    """Risk's `POST /v1/replacement-orders`, asked by execution as itself (`svc:execution`): risk decides the
    replacement as the amend's owner, and an approved one comes back to execution's `POST /v1/orders` signed. With
    `check_only` (before the original is cancelled) risk only checks the new terms."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def check_replacement(
        self, original: StoredOrder, principal: Principal, price: Decimal, qty: int
    ) -> tuple[int, dict[str, Any]]:
        o = original.order
        body = _body(original, account_id=o.account_id, owner=principal.subject, owner_role=principal.role,
                     qty=qty, price=price)  # fmt: skip
        return await self._post({**body, "check_only": True})

    async def submit_replacement(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        assert amend.replacement_qty is not None
        body = _body(original, account_id=amend.account_id, owner=amend.owner, owner_role=amend.owner_role,
                     qty=amend.replacement_qty, price=amend.new_price)  # fmt: skip
        return await self._post(body)

    async def _post(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        headers = service_headers(self.internal_secret, "execution")
        response = await self.services.client("risk").request(
            "POST", "/v1/replacement-orders", json=body, headers=headers
        )
        try:
            payload = response.json()
        except ValueError:
            payload = {"message": response.text[:200]}
        return response.status_code, payload if isinstance(payload, dict) else {"body": payload}


def _body(
    original: StoredOrder, *, account_id: str, owner: str, owner_role: str, qty: int, price: Decimal
) -> dict[str, Any]:
    o = original.order
    return {
        "replaces_order_id": o.order_id,
        "account_id": account_id,
        "owner": owner,
        "owner_role": owner_role,
        # the original as it ended: risk's book counts it final before deciding (its order.cancelled event may
        # not have reached risk yet, and the replacement would otherwise be checked against its reservation too);
        # for a check before the cancel, as it is (its unfilled shares count as the account's for a sell)
        "original": {
            "client_order_id": o.client_order_id,
            "ts_code": o.ts_code,
            "side": o.side.value,
            "qty": o.qty,
            "status": o.status.value,
            "filled_qty": o.filled_qty,
        },
        "order": {
            "client_order_id": replacement_client_order_id(o.order_id),
            "ts_code": o.ts_code,
            "side": o.side.value,
            "order_type": "limit",
            "qty": qty,
            "price": format(price, "f"),
        },
    }


def _original(stored: StoredOrder) -> Original:
    o = stored.order
    return Original(o.status, o.order_type, o.side, o.ts_code, o.qty, o.price, o.filled_qty, o.strategy_instance_id)


class Amender:
    def __init__(
        self,
        store: AmendStore,
        desk: OrderDesk,
        risk: RiskPort,
        *,
        market_now: Callable[[], datetime],
        wall_now: Callable[[], datetime] = utcnow,
        session_of: Callable[[datetime], Awaitable[date]] | None = None,
        lease_s: float = LEASE_S,
    ) -> None:
        self.store = store
        self.desk = desk
        self.risk = risk
        self.market_now = market_now
        self.wall_now = wall_now
        self.session_of = session_of  # the session of an order placed at a moment (None: the replacement never expires)
        self.lease_s = lease_s
        self.retry_at: dict[str, datetime] = {}  # amend_id -> when this process attempts its replacement again

    # --- the request ---------------------------------------------------------------------------------------------

    async def request(
        self, order_id: str, price: Decimal | None, qty: int | None, principal: Principal
    ) -> tuple[Amend, bool]:
        """Amend the caller's own order: (the amend, True when it was created now; False: the same request made
        before). Raises 403 / 404 / 409 / 422 with nothing stored or sent, or 503 when the broker cannot take the
        cancel (nothing stored)."""
        if principal.is_service or not principal.at_least(Role.TRADER):
            raise Forbidden("forbidden", f"role {principal.role} may not amend orders: traders amend their own")
        stored = await self.desk.get(order_id, principal)  # 404 for another account's (a person's view)
        if stored.order.account_id != principal_account(principal):
            raise Forbidden("forbidden", "an order is amended by its own account's trader: cancel it instead")
        o = stored.order
        new_price = price if price is not None else o.price
        new_qty = qty if qty is not None else o.qty
        earlier = await self.store.of_order(order_id)
        if earlier is not None:
            return self._repeat(earlier, new_price, new_qty), False
        refused = refusal(_original(stored), price, qty)
        if refused is not None:
            details: dict[str, Any] = {"field": refused.field} if refused.field else {}
            if refused.code == "qty_not_above_filled":
                details["filled_qty"] = o.filled_qty
            raise ServiceError(refused.code, refused.message, status_code=refused.status_code, **details)
        assert new_price is not None  # (a limit order has its price)
        await self._precheck(stored, principal, new_price, new_qty - o.filled_qty)
        now, wall = self.market_now(), self.wall_now()
        amend = Amend(
            amend_id=new_id(), order_id=order_id, account_id=o.account_id, owner=principal.subject,
            owner_role=principal.role, ts_code=o.ts_code, side=o.side, old_qty=o.qty, old_price=o.price or new_price,
            new_qty=new_qty, new_price=new_price, status=Status.CANCELLING, version=1, created_at=now,
            updated_at=now, cancel_sent_at=wall, message="cancelling the original",
        )  # fmt: skip
        try:
            await self.store.create(amend)
        except AmendExists:
            earlier = await self.store.of_order(order_id)
            if earlier is None:
                raise
            return self._repeat(earlier, new_price, new_qty), False
        try:
            after, _requested = await self.desk.cancel_at_broker(stored)
        except CancelOutcomeUnknown as exc:
            # the cancel went out and its answer was lost: it may have taken, so the amend stays (the original's
            # reports decide; the pass sends the cancel again after CANCEL_RESEND_S) and the answer says so
            log.warning("amend: the cancel's answer was lost", extra={"amend_id": amend.amend_id, "error": str(exc)})
            return await self._noted(amend, f"cancel sent, its answer lost ({exc}): waiting for the original's "
                                     "report"), True  # fmt: skip
        except (CancelTooLate, BrokerUnavailable) as exc:
            await self.store.forget(amend)  # nothing was cancelled: nothing is kept, the order may be amended again
            if isinstance(exc, CancelTooLate):
                raise Conflict("order_not_amendable", f"too late to cancel the original: {exc}") from exc
            raise Unavailable("broker_unavailable", f"the broker could not take the cancel now ({exc}); nothing "
                              "was changed") from exc  # fmt: skip
        log.info("amend: the original's cancel sent", extra={"amend_id": amend.amend_id, "order_id": order_id})
        if after.order.status.is_final:
            amend = await self.confirmed(amend, after)
        return amend, True

    async def _precheck(self, stored: StoredOrder, principal: Principal, price: Decimal, qty: int) -> None:
        """Risk's checks of the new terms that need no reservation (price limits, tick, price cage, the board's
        maximum, a sell's sellable shares), before anything is stored or cancelled: 422 with risk's reasons (the
        first one's code, naming its field), or 503 when risk cannot answer (fail closed: nothing cancelled). Cash is
        decided with the replacement itself, once the original's reservation is freed."""
        try:
            status, body = await self.risk.check_replacement(stored, principal, price, qty)
        except Exception as exc:
            log.warning("an amend's terms could not be checked: %r", exc, extra={"order_id": stored.order.order_id})
            raise Unavailable("risk_unavailable", f"risk could not check the new terms ({type(exc).__name__}); "
                              "nothing was changed") from exc  # fmt: skip
        if status == 200:
            return
        reasons = body.get("reasons")
        if status == 422 and isinstance(reasons, list) and reasons and all(isinstance(r, dict) for r in reasons):
            listed = [{"code": str(r.get("code")), "message": str(r.get("message", "")),
                       "field": None if r.get("field") is None else str(r.get("field"))} for r in reasons]  # fmt: skip
            first = listed[0]
            message = "; ".join(str(r["message"]) for r in listed)
            details: dict[str, Any] = {"reasons": listed}
            if first["field"] is not None:
                details["field"] = first["field"]
            raise ServiceError(str(first["code"]), f"{message}: the order was left as it is", status_code=422,
                               **details)  # fmt: skip
        message = str(body.get("message", ""))
        log.warning("risk did not check an amend's terms", extra={"status": status, "code": body.get("code")})
        raise Unavailable("risk_unavailable", f"risk could not check the new terms (HTTP {status}: {message}); "
                          "nothing was changed")  # fmt: skip

    # --- a user's cancel ------------------------------------------------------------------------------------------

    async def stop_for_cancel(self, order_id: str) -> bool:
        """The user cancels `order_id` (or a cancel-all reaches it): its amend, if still cancelling or replacing,
        moves to cancelled_by_user first, so its replacement is never submitted. True when one was stopped now.
        Raises 503 when the amend keeps moving under it (the cancel is then not made: fail closed)."""
        for _ in range(STOP_ATTEMPTS):
            amend = await self.store.of_order(order_id)
            if amend is None or amend.status not in ACTIVE:
                return False
            try:
                await self._stop(amend)
            except StaleMove:
                continue  # the pass or the request moved it meanwhile: read it again
            return True
        raise Unavailable("amend_busy", "the order's amend kept changing; the cancel was not made: send it again")

    async def stop_for_cancel_all(self, account_id: str, ts_code: str | None) -> list[str]:
        """A cancel-all of the account: every amend of it still cancelling or replacing (of `ts_code`) stops; the
        client_order_ids of their replacements, which the cancel-all cancels too should one have been placed (an
        attempt in flight)."""
        replacements: list[str] = []
        for amend in await self.store.active_of_account(account_id, ts_code):
            try:
                await self.stop_for_cancel(amend.order_id)
            except Unavailable:
                log.warning("cancel-all: an amend kept changing", extra={"amend_id": amend.amend_id})
            replacements.append(amend.client_order_id)
        return replacements

    async def _stop(self, amend: Amend) -> Amend:
        self.retry_at.pop(amend.amend_id, None)
        # claimed_at set: the pass owes the stop a look for a replacement placed before it (execution admits none
        # after it: `admit`); cancel_sent_at cleared: no replacement's cancel was sent yet
        stopped = await self.store.move(
            amend, Status.CANCELLED_BY_USER, self.market_now(), claimed_at=self.wall_now(), cancel_sent_at=None,
            message=f"stopped while {amend.status.value}: the user cancelled the order; no replacement is placed",
        )  # fmt: skip
        log.info("amend stopped by the user's cancel", extra={"amend_id": amend.amend_id, "order_id": amend.order_id})
        return stopped

    async def admit(self, s: DbSession, terms: OrderTerms) -> None:
        """Execution's admission of an order (`POST /v1/orders`, in its transaction, under the account's lock): the
        replacement of an amend the user's cancel stopped is refused — 409 `amend_stopped`, nothing stored or sent —
        however late risk's forward of it arrives (an attempt timed out, a crash mid-attempt)."""
        stopped = await self.store.stopped_for(s, terms.account_id, terms.client_order_id)
        if stopped is not None:
            log.info("a stopped amend's replacement refused", extra={"amend_id": stopped.amend_id})
            raise Conflict("amend_stopped", f"the amend {stopped.amend_id} of order {stopped.order_id} was stopped by "
                           "the user's cancel: its replacement is not placed", amend_id=stopped.amend_id)  # fmt: skip

    async def _settle_stopped(self, amend: Amend) -> Amend:
        """A stopped amend the pass still owes a look (claimed_at set): a replacement placed before the stop (an
        attempt in flight, a crash, a cancel that failed) is cancelled — each pass until it is final (a cancel the
        broker took but has not confirmed, QMT, is sent again after CANCEL_RESEND_S) — and named on the amend; with
        none open, the amend is settled (claimed_at cleared: none can be placed after the stop)."""
        placed, _ = await self.desk.store.find_by_key_or_decision(amend.account_id, amend.client_order_id, "")
        if placed is None:
            return await self._stopped_note(amend, None, None, settled=True)
        order_id = placed.order.order_id
        if placed.order.status.is_final:
            return await self._stopped_note(amend, order_id, f"the replacement {order_id} placed before the stop "
                                            f"ended {placed.order.status.value}", settled=True)  # fmt: skip
        wall = self.wall_now()
        if amend.cancel_sent_at is not None and amend.cancel_sent_at > wall - timedelta(seconds=CANCEL_RESEND_S):
            return amend  # its cancel was taken: the broker's report is awaited
        try:
            after, _ = await self.desk.cancel_at_broker(placed)
        except Exception as exc:  # tried again next pass (the cancel is idempotent at the broker)
            log.warning("a replacement placed before the user's cancel could not be cancelled: %r", exc,
                        extra={"amend_id": amend.amend_id, "order_id": order_id})  # fmt: skip
            note = f"the replacement {order_id} placed before the stop could not be cancelled yet ({exc}): tried again"
            return await self._stopped_note(amend, order_id, note, settled=False)
        if after.order.status.is_final:
            return await self._stopped_note(amend, order_id, f"the replacement {order_id} placed before the stop "
                                            "was cancelled", settled=True)  # fmt: skip
        return await self._stopped_note(amend, order_id, f"the replacement {order_id} placed before the stop: its "
                                        "cancel was sent", settled=False, cancel_sent_at=wall)  # fmt: skip

    async def _stopped_note(
        self, amend: Amend, order_id: str | None, note: str | None, *, settled: bool,
        cancel_sent_at: datetime | None = None,
    ) -> Amend:  # fmt: skip
        base = (amend.message or "").split(NOTE_SEP, 1)[0]
        moved = replace(
            amend,
            replacement_order_id=order_id or amend.replacement_order_id,
            message=base if note is None else f"{base}{NOTE_SEP}{note}",
            claimed_at=None if settled else amend.claimed_at,
            cancel_sent_at=cancel_sent_at or amend.cancel_sent_at,
        )
        if moved == amend:
            return amend
        try:
            return await self.store.touch(moved, amend)
        except StaleMove:
            return await self.store.get(amend.amend_id) or amend

    async def _noted(self, amend: Amend, message: str) -> Amend:
        try:
            return await self.store.touch(replace(amend, message=message))
        except StaleMove:
            return await self.store.get(amend.amend_id) or amend

    @staticmethod
    def _repeat(earlier: Amend, price: Decimal | None, qty: int) -> Amend:
        if price is not None and earlier.same_terms(price, qty):
            return earlier  # the same request again (a lost answer): the same amend
        if earlier.status in FINAL:
            then = (f"amend its replacement {earlier.replacement_order_id}" if earlier.replacement_order_id
                    else "place a new order")  # fmt: skip
            raise Conflict("order_not_amendable", f"the order was amended already (amend {earlier.amend_id}, "
                           f"{earlier.status.value}): {then}", amend_id=earlier.amend_id)  # fmt: skip
        raise Conflict("amend_in_progress", f"the order has an amend in progress (amend {earlier.amend_id}, "
                       f"{earlier.status.value}): wait for it", amend_id=earlier.amend_id)  # fmt: skip

    # --- after the cancel ------------------------------------------------------------------------------------------

    async def confirmed(self, amend: Amend, original: StoredOrder) -> Amend:
        """The original is final (its cancel confirmed, or it filled first): the replacement for what the new total
        still wants is submitted, or nothing is (it filled)."""
        o = original.order
        to, qty = after_cancel(o.status, amend.new_qty, o.filled_qty)
        now = self.market_now()
        try:
            if to is Status.NOT_NEEDED:
                return await self.store.move(
                    amend, Status.NOT_NEEDED, now, filled_qty=o.filled_qty, replacement_qty=0,
                    message=f"nothing placed: the original ended {o.status.value} with {o.filled_qty} of "
                    f"{amend.new_qty} filled before its cancel took",
                )  # fmt: skip
            if await self._session_over(amend):
                return await self._expire(amend, f"the original ended {o.status.value} after the close")
            claimed = await self.store.move(
                amend, Status.REPLACING, now, filled_qty=o.filled_qty, replacement_qty=qty,
                claimed_at=self.wall_now(), attempts=amend.attempts + 1,
                message=f"the original ended {o.status.value} with {o.filled_qty} filled: replacing with {qty}",
            )  # fmt: skip
        except StaleMove:
            return await self.store.get(amend.amend_id) or amend  # another process moved it first
        return await self.submit(claimed, original)

    async def submit(self, amend: Amend, original: StoredOrder) -> Amend:
        """Ask risk for the replacement and record its answer: replaced, replacement_refused (risk's reasons), or "not
        now" (attempted again, with the same client_order_id)."""
        try:
            status, body = await self.risk.submit_replacement(amend, original)
        except Exception as exc:  # no answer: attempted again (RETRY_S here, the lease anywhere)
            log.warning("an amend's replacement got no answer: %r", exc, extra={"amend_id": amend.amend_id})
            return await self._retry(amend, f"no answer from risk: {type(exc).__name__}")
        answer = PlacementAnswer.read(status, body)
        code, message = answer.code, answer.message
        now = self.market_now()
        try:
            if answer.outcome in (Outcome.PLACED, Outcome.ACCEPTED):
                self.retry_at.pop(amend.amend_id, None)
                how = f"({answer.order_status})" if answer.outcome is Outcome.PLACED else f"(accepted: {message})"
                return await self.store.move(
                    amend, Status.REPLACED, now, replacement_order_id=answer.order_id, decision_id=answer.decision_id,
                    message=f"replaced by order {answer.order_id} {how}",
                )  # fmt: skip
            if answer.outcome is Outcome.RETRY:
                return await self._retry(amend, f"{code}: {message}")
            placed, _ = await self.desk.store.find_by_key_or_decision(amend.account_id, amend.client_order_id, "")
            if placed is not None:
                # an earlier attempt placed it and its answer was lost; this attempt, decided afresh (its decision
                # older than the approval's TTL), was refused — e.g. for the cash that very order holds: it stands
                self.retry_at.pop(amend.amend_id, None)
                return await self.store.move(
                    amend, Status.REPLACED, now, replacement_order_id=placed.order.order_id,
                    message=f"replaced by order {placed.order.order_id} (placed by an earlier attempt)",
                )  # fmt: skip
            self.retry_at.pop(amend.amend_id, None)
            return await self.store.move(
                amend, Status.REPLACEMENT_REFUSED, now, decision_id=answer.decision_id, reasons=list(answer.reasons),
                message=f"the replacement was refused ({code}: {message}); the original stays cancelled",
            )  # fmt: skip
        except StaleMove:
            return await self._moved_meanwhile(amend)

    async def _retry(self, amend: Amend, message: str) -> Amend:
        self.retry_at[amend.amend_id] = self.wall_now() + timedelta(seconds=RETRY_S)
        try:
            return await self.store.touch(replace(amend, message=f"replacement to be attempted again: {message}",
                                                  claimed_at=self.wall_now()))  # fmt: skip
        except StaleMove:
            return await self._moved_meanwhile(amend)

    async def _moved_meanwhile(self, amend: Amend) -> Amend:
        """An attempt's answer found the amend moved by another: as it is now. Stopped by the user's cancel while the
        attempt was in flight: a replacement that attempt placed is cancelled (never left open after the cancel; one
        placed after the stop is refused by `admit`)."""
        latest = await self.store.get(amend.amend_id) or amend
        if latest.status is not Status.CANCELLED_BY_USER:
            return latest
        self.retry_at.pop(amend.amend_id, None)
        if latest.claimed_at is None:
            return latest  # settled already (by the pass)
        return await self._settle_stopped(latest)

    async def _session_over(self, amend: Amend) -> bool:
        """The amend's session (that of an order placed when it was asked) has closed: its replacement is not placed
        on another day. False when it cannot be told (then it is attempted; risk checks the session anyway)."""
        if self.session_of is None:
            return False
        try:
            day = await self.session_of(amend.created_at)
        except Exception as exc:
            log.warning("cannot tell an amend's session: %r", exc, extra={"amend_id": amend.amend_id})
            return False
        return self.market_now() >= session_close(day)

    async def _expire(self, amend: Amend, why: str) -> Amend:
        reason = f"the replacement could not be placed by the close of the amend's session ({why})"
        try:
            return await self.store.move(amend, Status.EXPIRED, self.market_now(),
                                         reasons=[{"code": "session_closed", "message": reason}],
                                         message=f"expired: {reason}; the original stays cancelled")  # fmt: skip
        except StaleMove:
            return amend

    # --- the pass --------------------------------------------------------------------------------------------------

    async def run_pass(self) -> None:
        """Amends whose original's cancel was confirmed since (QMT's report) go on to their replacement; a cancel not
        confirmed for CANCEL_RESEND_S is sent again; replacements answered "not now", or left by a crash (their
        lease run out), are attempted again; a replacement placed before a user's cancel stopped its amend is
        cancelled (each pass until it is final)."""
        wall = self.wall_now()
        for amend in await self.store.with_status(Status.CANCELLING, Status.REPLACING):
            try:
                if amend.status is Status.CANCELLING:
                    await self._cancelling(amend, wall)
                else:
                    await self._replacing(amend, wall)
            except Exception:
                log.exception("an amend's pass failed; attempted again next pass", extra={"amend_id": amend.amend_id})
        for amend in await self.store.stopped_unsettled():
            try:
                await self._settle_stopped(amend)
            except Exception:
                log.exception("a stopped amend's pass failed; attempted again next pass",
                              extra={"amend_id": amend.amend_id})  # fmt: skip

    async def _cancelling(self, amend: Amend, wall: datetime) -> None:
        stored = await self.desk.store.get_order(amend.order_id)
        if stored is None:
            return
        if stored.order.status.is_final:
            await self.confirmed(amend, stored)
            return
        if amend.cancel_sent_at is not None and amend.cancel_sent_at > wall - timedelta(seconds=CANCEL_RESEND_S):
            return
        try:
            amend = await self.store.touch(replace(amend, cancel_sent_at=wall))
        except StaleMove:
            return
        try:
            after, _ = await self.desk.cancel_at_broker(stored)
        except (CancelTooLate, BrokerUnavailable) as exc:
            log.warning("an amend's cancel could not be sent again: %r", exc, extra={"amend_id": amend.amend_id})
            return
        if after.order.status.is_final:
            await self.confirmed(amend, after)

    async def _replacing(self, amend: Amend, wall: datetime) -> None:
        retry_at = self.retry_at.get(amend.amend_id)
        due = retry_at is not None and retry_at <= wall
        stalled = amend.claimed_at is None or amend.claimed_at <= wall - timedelta(seconds=self.lease_s)
        if not (due or stalled):
            return
        self.retry_at.pop(amend.amend_id, None)
        if await self._session_over(amend):
            await self._expire(amend, f"last answer: {amend.message or 'none'}")
            return
        try:
            claimed = await self.store.touch(replace(amend, claimed_at=wall, attempts=amend.attempts + 1))
        except StaleMove:
            return
        original = await self.desk.store.get_order(amend.order_id)
        if original is None or not original.order.status.is_final:
            return
        await self.submit(claimed, original)

    # --- reading -------------------------------------------------------------------------------------------------

    async def get(self, amend_id: str, principal: Principal) -> Amend:
        amend = await self.store.get(amend_id)
        if amend is None or not (principal.acts_for_everyone or amend.account_id == principal_account(principal)):
            raise NotFound("amend_not_found", f"no amend {amend_id}")
        return amend
