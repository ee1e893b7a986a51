"""Reading the answer to an order placed on someone's behalf by a service (risk's stops, execution's conditional
orders): was it placed, refused, or "not now" (try again later with the same client_order_id)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# Refusals that say "not now" rather than "no". Risk's reasons (all of a 422 order_rejected's reasons must be among
# them) and execution's codes: the session's price limits not known yet (between a close and its bars being
# stored), no session ahead in the calendar, risk unable to check.
RETRY_REASONS = frozenset({"limits_unknown", "no_session", "risk_unavailable"})
RETRY_CODES = frozenset({"limits_unknown", "price_cap_unknown", "no_session"})


def not_now(status: int, code: str | None, decision: Any) -> bool:
    """A 422 that says "not now": attempt the order again later."""
    if status != 422:
        return False
    if code in RETRY_CODES:
        return True
    reasons = decision.get("reasons") if isinstance(decision, dict) else None
    if code != "order_rejected" or not isinstance(reasons, list) or not reasons:
        return False
    return all(isinstance(r, dict) and r.get("code") in RETRY_REASONS for r in reasons)


class Outcome(StrEnum):
    PLACED = "placed"  # risk approved and execution took the order (answer 200/201 with the order)
    ACCEPTED = "accepted"  # execution holds the order but its answer was a 5xx (it sends the order itself)
    RETRY = "retry"  # "not now": attempt again later with the same client_order_id
    REFUSED = "refused"  # "no": risk's reasons, or execution's refusal


@dataclass(frozen=True, slots=True)
class PlacementAnswer:
    """Risk's answer to a placement (POST /v1/orders and its siblings), read once for every service that places an
    order on someone's behalf: what happened, the decision, the order (when there is one) and the reasons."""

    outcome: Outcome
    http_status: int
    decision_id: str | None
    order_id: str | None
    order_status: str | None
    code: str | None  # None when placed
    message: str
    reasons: tuple[dict[str, str], ...]  # REFUSED only: risk's reasons, else the error itself as one reason

    @classmethod
    def read(cls, status: int, body: Any) -> PlacementAnswer:
        body = body if isinstance(body, dict) else {}
        decision = body.get("decision") if isinstance(body.get("decision"), dict) else {}
        decision_id = decision.get("decision_id")
        order = body.get("order") if isinstance(body.get("order"), dict) else None
        details = body.get("details") if isinstance(body.get("details"), dict) else None
        code = None if order is not None else str(body.get("code", f"http_{status}"))
        message = str(body.get("message", ""))
        decision_id = str(decision_id) if decision_id is not None else None
        if status in (200, 201) and order is not None:
            order_status = order.get("status")
            return cls(Outcome.PLACED, status, decision_id, str(order.get("order_id")),
                       None if order_status is None else str(order_status), None, message, ())  # fmt: skip
        if status >= 500 and details is not None and details.get("order_id"):
            return cls(Outcome.ACCEPTED, status, decision_id, str(details["order_id"]), None, code, message, ())
        if (status >= 500 and status != 502) or not_now(status, code, decision):
            return cls(Outcome.RETRY, status, decision_id, None, None, code, message, ())
        raw = decision.get("reasons")
        if not isinstance(raw, list) or not raw:
            raw = [{"code": code, "message": message}]
        reasons = tuple(
            {"code": str(r.get("code")), "message": str(r.get("message", ""))} for r in raw if isinstance(r, dict)
        )
        return cls(Outcome.REFUSED, status, decision_id, None, None, code, message, reasons)
