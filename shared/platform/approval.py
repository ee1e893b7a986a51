"""Risk approvals that execution can verify: an HMAC-SHA256, with the secret risk and execution share, over
the decision id, its time and every order field that matters. No approval, no order (design invariant 2)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel


class OrderTerms(BaseModel):
    """The fields an approval covers: change any of them and the signature no longer matches."""

    client_order_id: str
    account_id: str
    ts_code: str
    side: str
    order_type: str
    qty: int
    price: Decimal | None = None
    # The strategy instance the order is for (None: a person's order). Covered like the rest: an approval for a
    # person's order cannot be replayed as an instance's, nor one instance's as another's.
    strategy_instance_id: str | None = None


class Approval(BaseModel):
    decision_id: str
    issued_at: datetime
    signature: str


def _message(terms: OrderTerms, decision_id: str, issued_at: datetime) -> bytes:
    price = "" if terms.price is None else format(terms.price.normalize(), "f")
    # v2 added strategy_instance_id (v1 approvals, signed without it, no longer verify: they live seconds).
    parts = [
        "v2",
        decision_id,
        issued_at.astimezone(UTC).isoformat(timespec="microseconds"),
        terms.client_order_id,
        terms.account_id,
        terms.ts_code,
        terms.side,
        terms.order_type,
        str(terms.qty),
        price,
        terms.strategy_instance_id or "",
    ]
    if any("\x1f" in part for part in parts):
        # The request models' patterns keep control characters out of every field; this is the last word.
        raise ValueError("an order term contains the unit separator")
    return "\x1f".join(parts).encode()  # unit separator: no field can forge a boundary


def sign_approval(secret: str, terms: OrderTerms, decision_id: str, issued_at: datetime | None = None) -> Approval:
    issued = issued_at or datetime.now(UTC)
    digest = hmac.new(secret.encode(), _message(terms, decision_id, issued), hashlib.sha256).hexdigest()
    return Approval(decision_id=decision_id, issued_at=issued, signature=digest)


def approval_error(
    secret: str, terms: OrderTerms, approval: Approval | None, *, max_age_s: int, now: datetime | None = None
) -> str | None:
    """Why an approval does not authorise these terms, or None when it does."""
    if approval is None:
        return "no risk approval attached"
    try:
        message = _message(terms, approval.decision_id, approval.issued_at)
    except ValueError as exc:
        return f"the order cannot be approved: {exc}"
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, approval.signature):
        return "approval signature does not match the order"
    age = ((now or datetime.now(UTC)) - approval.issued_at.astimezone(UTC)).total_seconds()
    if age > max_age_s or age < -5:
        return f"approval is {age:.0f}s old (allowed: {max_age_s}s)"
    return None
