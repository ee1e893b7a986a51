"""What execution admits: only the exact terms risk signed, fresh, for the caller's own account."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.execution.admission import refusal_reason
from services.execution.schemas import OrderSubmission
from shared.platform.approval import OrderTerms, PaperFill, sign_approval
from shared.platform.internal_auth import Principal

SECRET = "unit-approval-secret-0123456789"
NOW = datetime(2025, 1, 2, 1, 30, tzinfo=UTC)
ALICE = Principal("alice", "trader", "acct-alice")
TERMS = OrderTerms(
    client_order_id="c-1",
    account_id="acct-alice",
    ts_code="600000.SH",
    side="buy",
    order_type="limit",
    qty=300,
    price=Decimal("10.50"),
)

OWN_RULES: dict[str, Any] = {
    "fill_price": "close",
    "slippage": "bps",
    "slippage_amount": "5",
    "volume_cap": "0.1",
    "suspended_orders": "wait",
}
OWN_RULES_TERMS = TERMS.model_copy(
    update={
        "strategy_instance_id": "0123456789abcdef0123456789abcdef",
        "paper_fill": PaperFill.model_validate(OWN_RULES),
    }
)
STRATEGY = Principal("svc:strategy", "service")


def _approval(terms: OrderTerms = TERMS, secret: str = SECRET, issued: datetime = NOW) -> dict[str, Any]:
    return sign_approval(secret, terms, "d-1", issued_at=issued).model_dump(mode="json")


def _reason(terms: OrderTerms, approval: dict[str, Any] | None, principal: Principal = ALICE) -> str | None:
    return refusal_reason(SECRET, terms, approval, principal, max_age_s=60, now=NOW + timedelta(seconds=1))


def test_the_signed_terms_are_admitted() -> None:
    assert _reason(TERMS, _approval()) is None


@pytest.mark.parametrize(
    "tampered",
    [
        {"qty": 3000},
        {"price": Decimal("10.51")},
        {"side": "sell"},
        {"ts_code": "600036.SH"},
        {"account_id": "acct-bob"},
        {"client_order_id": "c-2"},
        {"order_type": "market", "price": None},
        {"strategy_instance_id": "0123456789abcdef0123456789abcdef"},
        {"paper_fill": PaperFill.model_validate(OWN_RULES)},
    ],
)
def test_any_change_to_the_terms_breaks_the_signature(tampered: dict[str, Any]) -> None:
    changed = TERMS.model_copy(update=tampered)
    assert _reason(changed, _approval(), Principal("svc:risk", "service")) == (
        "approval signature does not match the order"
    )


def test_forged_missing_malformed_and_stale_approvals() -> None:
    assert _reason(TERMS, _approval(secret="another-secret-entirely-123")) == (
        "approval signature does not match the order"
    )
    assert _reason(TERMS, None) == "no risk approval attached"
    reason = _reason(TERMS, {"decision_id": "d-1", "signature": "00"})
    assert reason is not None and reason.startswith("approval is malformed (issued_at")
    stale = _reason(TERMS, _approval(issued=NOW - timedelta(seconds=60)))  # 61 s old at NOW + 1 s; TTL 60 s
    assert stale == "approval is 61s old (allowed: 60s)"
    signature_swapped = {**_approval(), "decision_id": "d-2"}  # a valid signature moved to another decision
    assert _reason(TERMS, signature_swapped) == "approval signature does not match the order"


def test_a_trader_cannot_submit_for_another_account() -> None:
    bob = Principal("bob", "trader", "acct-bob")
    assert _reason(TERMS, _approval(), bob) == "bob may not place orders for account acct-alice"
    assert _reason(TERMS, _approval(), Principal("svc:risk", "service")) is None
    assert _reason(TERMS, _approval(), Principal("root", "admin")) is None


def _submission(**kw: object) -> OrderSubmission:
    values: dict[str, object] = {**TERMS.model_dump(mode="json"), "approval": None}
    values.update(kw)
    return OrderSubmission.model_validate(values)


def test_submission_shape() -> None:
    assert _submission().terms() == TERMS
    with pytest.raises(ValueError, match="tick"):
        _submission(price="10.505")
    with pytest.raises(ValueError, match="needs a price"):
        _submission(price=None)
    with pytest.raises(ValueError, match="takes no price"):
        _submission(order_type="market")
    with pytest.raises(ValueError, match=r"write the code as 600000\.SH"):
        _submission(ts_code="600000.sh")
    with pytest.raises(ValueError, match="not an A-share stock"):
        _submission(ts_code="510300.SH")
    with pytest.raises(ValueError, match="client_order_id"):
        _submission(client_order_id="c\x1f1")


INSTANCE = "0123456789abcdef0123456789abcdef"
INSTANCE_TERMS = TERMS.model_copy(update={"strategy_instance_id": INSTANCE})


def test_an_instance_s_approval_does_not_cover_the_order_without_its_instance_or_for_another() -> None:
    approval = _approval(INSTANCE_TERMS)
    strategy = Principal("svc:strategy", "service")
    assert _reason(INSTANCE_TERMS, approval, strategy) is None
    for other in (None, "f" * 32):
        changed = INSTANCE_TERMS.model_copy(update={"strategy_instance_id": other})
        assert _reason(changed, approval, strategy) == "approval signature does not match the order"


@pytest.mark.parametrize("subject", ["svc:strategy", "svc:risk"])
def test_the_strategy_service_and_risk_hand_over_an_instance_s_order(subject: str) -> None:
    assert _reason(INSTANCE_TERMS, _approval(INSTANCE_TERMS), Principal(subject, "service")) is None


@pytest.mark.parametrize(
    "principal",
    [
        ALICE,
        Principal("root", "admin", "acct-root"),
        Principal("svc:backtest", "service"),
        Principal("svc:strategy", "admin"),
    ],
)
def test_nobody_else_places_an_order_for_a_strategy_instance(principal: Principal) -> None:
    # Even with a valid approval of exactly these terms.
    assert _reason(INSTANCE_TERMS, _approval(INSTANCE_TERMS), principal) == (
        f"{principal.subject} may not place orders for strategy instance {INSTANCE}"
    )


def test_the_strategy_service_places_no_order_without_an_instance() -> None:
    assert _reason(TERMS, _approval(), Principal("svc:strategy", "service")) == (
        "svc:strategy places orders only for a strategy instance"
    )


def test_a_submission_names_an_instance_by_its_id_only() -> None:
    body = {**INSTANCE_TERMS.model_dump(mode="json"), "approval": None}
    assert OrderSubmission.model_validate(body).terms() == INSTANCE_TERMS
    assert OrderSubmission.model_validate({**body, "strategy_instance_id": None}).terms().strategy_instance_id is None
    for bad in (
        "0123456789ABCDEF0123456789ABCDEF",
        INSTANCE[:-1],
        INSTANCE + "0",
        "0123456789abcdef\x1f123456789abcdef",
    ):
        with pytest.raises(ValueError, match="strategy_instance_id"):
            OrderSubmission.model_validate({**body, "strategy_instance_id": bad})


def test_no_term_can_forge_a_field_boundary_of_the_signed_message() -> None:
    # The signed message joins the fields with the unit separator: an instance id "x<US>y" would otherwise sign the
    # same bytes as other terms. The request models' patterns keep it out; the approval refuses it as the last word.
    forged = TERMS.model_copy(update={"strategy_instance_id": "a\x1fb"})
    with pytest.raises(ValueError, match="unit separator"):
        sign_approval(SECRET, forged, "d-1", issued_at=NOW)
    assert _reason(forged, _approval(), Principal("svc:strategy", "service")) == (
        "the order cannot be approved: an order term contains the unit separator"
    )


@pytest.mark.parametrize(
    "tampered",
    [
        {"fill_price": "open"},
        {"slippage": "ticks", "slippage_amount": "5"},
        {"slippage_amount": "6"},
        {"volume_cap": "0.2"},
        {"volume_cap": None},
        {"suspended_orders": "cancel"},
    ],
)
def test_an_instances_approval_cannot_be_replayed_with_other_fill_rules(tampered: dict[str, Any]) -> None:
    approval = _approval(OWN_RULES_TERMS)
    assert _reason(OWN_RULES_TERMS, approval, STRATEGY) is None
    other = OWN_RULES_TERMS.model_copy(update={"paper_fill": PaperFill.model_validate({**OWN_RULES, **tampered})})
    assert _reason(other, approval, STRATEGY) == "approval signature does not match the order"
    # nor without them (the platform's rules), nor a person's approval with them
    assert _reason(OWN_RULES_TERMS.model_copy(update={"paper_fill": None}), approval, STRATEGY) == (
        "approval signature does not match the order"
    )


def test_the_same_fill_rules_written_otherwise_sign_the_same() -> None:
    # 5 bps and "5.00" bps, 0.1 and "0.10" of the volume: the same rules, one canonical text
    same = PaperFill.model_validate({**OWN_RULES, "slippage_amount": "5.00", "volume_cap": 0.10})
    terms = OWN_RULES_TERMS.model_copy(update={"paper_fill": same})
    assert _reason(terms, _approval(OWN_RULES_TERMS), STRATEGY) is None


def test_fill_rules_on_a_persons_order_are_refused_even_with_a_valid_approval() -> None:
    terms = TERMS.model_copy(update={"paper_fill": PaperFill.model_validate(OWN_RULES)})
    assert _reason(terms, _approval(terms)) == (
        "only an order of a strategy instance carries its own fill rules (paper_fill)"
    )
