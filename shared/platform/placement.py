"""Reading the answer to an order placed on someone's behalf by a service (risk's stops, execution's conditional
orders): was it placed, refused, or "not now" (try again later with the same client_order_id)."""

from __future__ import annotations

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
