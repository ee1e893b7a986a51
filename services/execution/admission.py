"""Whether execution may accept a submission: a valid risk approval for exactly these terms, presented by the
account's owner (or a service/admin acting for it); an order for a strategy instance only from the strategy service
(or risk), and the strategy service only with one. Pure: the desk records refusals and answers 403.

`Refusal` is what the pure admission checks (cash.buy_refusal, cash.withdrawal_refusal, positions.sell_refusal)
answer; the store runs them inside its transaction, under the account's lock, and raises it (422, nothing stored)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.platform.approval import Approval, OrderTerms, approval_error
from shared.platform.internal_auth import RISK_SUBJECT, STRATEGY_SUBJECT, Principal

# Who may hand execution an order for a strategy instance: the strategy service (through risk, which forwards as the
# caller) and risk itself. Any other principal, a person or an admin included, places only orders of its own.
INSTANCE_ORDER_SUBJECTS = frozenset({STRATEGY_SUBJECT, RISK_SUBJECT})


@dataclass(frozen=True)
class Refusal:
    """Why an order (or a withdrawal) cannot be admitted: a machine-readable code, a message, and the figures."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def principal_account(principal: Principal) -> str:
    return principal.account_id or principal.subject


def parse_approval(raw: dict[str, Any] | None) -> tuple[Approval | None, str | None]:
    """The approval, or why it cannot be read. Missing is not malformed: approval_error names it."""
    if raw is None:
        return None, None
    try:
        return Approval.model_validate(raw), None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "approval"
        return None, f"approval is malformed ({field}: {first['msg']})"


def refusal_reason(
    secret: str,
    terms: OrderTerms,
    raw_approval: dict[str, Any] | None,
    principal: Principal,
    *,
    max_age_s: int,
    now: datetime | None = None,
) -> str | None:
    """Why this submission must be refused, or None when it may become an order."""
    approval, malformed = parse_approval(raw_approval)
    if malformed:
        return malformed
    error = approval_error(secret, terms, approval, max_age_s=max_age_s, now=now)
    if error:
        return error
    if not principal.acts_for_everyone and terms.account_id != principal_account(principal):
        return f"{principal.subject} may not place orders for account {terms.account_id}"
    instance_service = principal.is_service and principal.subject in INSTANCE_ORDER_SUBJECTS
    if terms.strategy_instance_id is not None and not instance_service:
        return f"{principal.subject} may not place orders for strategy instance {terms.strategy_instance_id}"
    if terms.strategy_instance_id is None and principal.is_service and principal.subject == STRATEGY_SUBJECT:
        return f"{principal.subject} places orders only for a strategy instance"
    if terms.paper_fill is not None and terms.strategy_instance_id is None:
        # risk never signs this: own fill rules are a strategy instance's (the platform's rules are everyone else's)
        return "only an order of a strategy instance carries its own fill rules (paper_fill)"
    return None
