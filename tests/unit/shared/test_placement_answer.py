"""Reading risk's answer to a placement made on someone's behalf (stops, conditional orders, amends): one reader for
the three, each case an answer risk or execution really gives (docs/order-path.md, "Answers")."""

from __future__ import annotations

from shared.platform.placement import Outcome, PlacementAnswer


def test_a_placed_order_gives_its_id_status_and_decision() -> None:
    body = {"decision": {"decision_id": "d-1", "approved": True}, "order": {"order_id": "o-9", "status": "submitted"}}
    answer = PlacementAnswer.read(201, body)
    assert (answer.outcome, answer.order_id, answer.order_status, answer.decision_id, answer.code) == (
        Outcome.PLACED, "o-9", "submitted", "d-1", None,
    )  # fmt: skip


def test_an_order_execution_holds_behind_a_5xx_is_accepted_not_retried() -> None:
    body = {"code": "broker_unknown", "message": "sent, outcome unknown", "details": {"order_id": "o-3"}}
    answer = PlacementAnswer.read(503, body)
    assert (answer.outcome, answer.order_id, answer.code) == (Outcome.ACCEPTED, "o-3", "broker_unknown")


def test_a_bad_gateway_without_an_order_is_a_refusal_other_5xx_a_retry() -> None:
    assert PlacementAnswer.read(503, {"code": "risk_unavailable", "message": "x"}).outcome is Outcome.RETRY
    assert PlacementAnswer.read(500, {}).outcome is Outcome.RETRY
    refused = PlacementAnswer.read(502, {"code": "execution_failed", "message": "bad answer"})
    assert refused.outcome is Outcome.REFUSED
    assert refused.reasons == ({"code": "execution_failed", "message": "bad answer"},)


def test_not_now_refusals_are_retried_and_a_mix_with_a_real_no_is_refused() -> None:
    limits = {"code": "order_rejected", "message": "m",
              "decision": {"decision_id": "d", "reasons": [{"code": "limits_unknown", "message": "not yet"}]}}  # fmt: skip
    assert PlacementAnswer.read(422, limits).outcome is Outcome.RETRY
    assert PlacementAnswer.read(422, {"code": "no_session", "message": "m"}).outcome is Outcome.RETRY
    mixed = {"code": "order_rejected", "message": "m", "decision": {"decision_id": "d", "reasons": [
        {"code": "limits_unknown", "message": "not yet"}, {"code": "insufficient_cash", "message": "short 10.00"}]}}  # fmt: skip
    answer = PlacementAnswer.read(422, mixed)
    assert answer.outcome is Outcome.REFUSED
    assert answer.decision_id == "d"
    assert [r["code"] for r in answer.reasons] == ["limits_unknown", "insufficient_cash"]


def test_a_refusal_without_reasons_carries_the_error_as_its_reason_and_a_body_that_is_no_object_is_read() -> None:
    answer = PlacementAnswer.read(409, {"code": "duplicate_client_order_id", "message": "another order"})
    assert answer.reasons == ({"code": "duplicate_client_order_id", "message": "another order"},)
    nothing = PlacementAnswer.read(400, ["not", "an", "object"])
    assert (nothing.outcome, nothing.code, nothing.reasons) == (
        Outcome.REFUSED, "http_400", ({"code": "http_400", "message": ""},),
    )  # fmt: skip
