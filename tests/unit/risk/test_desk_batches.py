"""`RiskDesk.place_many`: a batch's orders decided one by one exactly as `place` decides them (each seeing the
reservations of those before it), the approved ones sent to execution in one request, each answer the one `place`
would give; a 503 stops the batch; the order-rate rule counts the batch's earlier approvals."""

from datetime import UTC, datetime
from typing import Any

import pytest

from services.risk.desk import Placement
from services.risk.state.ports import Reservation
from services.risk.store import ExecutionOutcome
from shared.platform.approval import Approval, OrderTerms, approval_error
from tests.unit.risk.test_desk_rules import FakeRules
from tests.unit.risk.test_desk_rules import _desk as _ruled_desk
from tests.unit.risk.test_risk_desk import (
    ALICE,
    SECRET,
    FakeBooks,
    FakeExecution,
    FakeLog,
    FakeQuotes,
    _desk,
    _order,
)


def _statuses(answers: list[Placement | Exception | None]) -> list[int | None]:
    return [a.status_code if isinstance(a, Placement) else None for a in answers]


async def test_a_batch_is_decided_order_by_order_and_its_approvals_sent_in_one_request() -> None:
    quotes, execution, log = FakeQuotes(), FakeExecution(), FakeLog()
    desk, _ = _desk(quotes, execution, log)
    orders = [_order(client_order_id="c-1"), _order(client_order_id="c-2", qty=150), _order(client_order_id="c-3")]
    answers = await desk.place_many(orders, ALICE)

    assert _statuses(answers) == [201, 422, 201]
    refused = answers[1]
    assert isinstance(refused, Placement)
    assert [r["code"] for r in refused.body["decision"]["reasons"]] == ["lot_size"]
    assert execution.batches == [["c-1", "c-3"]]  # one request, the approved ones, in order
    assert [(d.client_order_id, d.approved) for d in log.decisions] == [("c-1", True), ("c-2", False), ("c-3", True)]
    for (body, principal), decision in zip(execution.calls, [log.decisions[0], log.decisions[2]], strict=True):
        assert principal == ALICE
        terms = OrderTerms.model_validate({k: v for k, v in body.items() if k != "approval"})
        approval = Approval.model_validate(body["approval"])
        assert approval.decision_id == decision.decision_id
        assert approval_error(SECRET, terms, approval, max_age_s=60) is None
    assert log.outcomes == {log.decisions[0].decision_id: ExecutionOutcome.PLACED,
                            log.decisions[2].decision_id: ExecutionOutcome.PLACED}  # fmt: skip


async def test_each_order_sees_the_cash_the_orders_before_it_reserved() -> None:
    # 300 x 10.50 = 3,150.00 + commission 5.00 (the minimum) + transfer fee 0.03 = 3,155.03 reserved for each buy.
    # 5,000.00 available: the first is reserved, the second finds 1,844.97 left (refused), the third (100 x 10.50 =
    # 1,050.00 + 5.00 + 0.01 = 1,055.01) fits in it.
    books = FakeBooks(available="5000.00")
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log, cash=books)
    orders = [_order(client_order_id="b-1"), _order(client_order_id="b-2"), _order(client_order_id="b-3", qty=100)]
    answers = await desk.place_many(orders, ALICE)

    assert _statuses(answers) == [201, 422, 201]
    second = answers[1]
    assert isinstance(second, Placement)
    assert [r["code"] for r in second.body["decision"]["reasons"]] == ["insufficient_cash"]
    assert books.reserved == {"b-1": ("buy", 300, 315503), "b-3": ("buy", 100, 105501)}
    assert execution.batches == [["b-1", "b-3"]]


async def test_the_order_rate_counts_the_batchs_earlier_approvals(monkeypatch: Any) -> None:
    # At most 2 a second: the batch's third order is the third in this second, though none was sent yet.
    import services.risk.desk as desk_module

    monkeypatch.setattr(desk_module, "utcnow", lambda: datetime(2026, 12, 7, 1, 0, 0, 100_000, tzinfo=UTC))
    desk, execution, _log, _ = _ruled_desk(FakeRules({"order_activity": {"max_per_second": 2, "warn_at_pct": None}}))
    orders = [_order(client_order_id=f"r-{i}", qty=qty) for i, qty in enumerate((100, 200, 300))]
    answers = await desk.place_many(orders, ALICE)

    assert _statuses(answers) == [201, 201, 422]
    third = answers[2]
    assert isinstance(third, Placement)
    assert [r["code"] for r in third.body["decision"]["reasons"]] == ["order_rate_second"]
    assert execution.batches == [["r-0", "r-1"]]


class BookDownAfterOne(FakeBooks):
    """The account's book: the store stops answering once one order is reserved."""

    async def reserve(self, account_id: str, client_order_id: str, **kw: Any) -> Reservation:
        reserved = await super().reserve(account_id, client_order_id, **kw)
        self.down = True
        return reserved


async def test_an_order_risk_cannot_check_stops_the_batch_and_those_before_it_are_still_sent() -> None:
    books = BookDownAfterOne()
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log, cash=books)
    orders = [_order(client_order_id="s-1"), _order(client_order_id="s-2"), _order(client_order_id="s-3")]
    answers = await desk.place_many(orders, ALICE)

    assert _statuses(answers) == [201, 503, None]  # the third is not decided: nothing goes ahead of the second
    second = answers[1]
    assert isinstance(second, Placement) and second.body["code"] == "risk_unavailable"
    assert execution.batches == [["s-1"]]
    assert [d.client_order_id for d in log.decisions] == ["s-1", "s-2"]


async def test_execution_not_answering_leaves_each_approval_to_be_replayed() -> None:
    quotes, execution, log = FakeQuotes(), FakeExecution(down=True), FakeLog()
    desk, _ = _desk(quotes, execution, log)
    answers = await desk.place_many([_order(client_order_id="u-1"), _order(client_order_id="u-2")], ALICE)

    assert _statuses(answers) == [503, 503]
    assert all(isinstance(a, Placement) and a.body["code"] == "execution_unavailable" for a in answers)
    assert set(log.outcomes.values()) == {ExecutionOutcome.UNKNOWN}
    # Sent again (alone or in a batch), each approval is replayed, not decided again.
    execution.down = False
    quotes.down = True  # a fresh check would fail closed
    again = await desk.place_many([_order(client_order_id="u-1"), _order(client_order_id="u-2")], ALICE)
    assert _statuses(again) == [201, 201]
    assert len(log.decisions) == 2
    assert [b["approval"]["decision_id"] for b, _ in execution.calls[-2:]] == [d.decision_id for d in log.decisions]


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        ((200, {"order_id": "o9"}), 200, None),
        ((422, {"code": "insufficient_cash", "message": "0.00 available"}), 422, "insufficient_cash"),
        ((503, {"code": "not_sent", "message": "not tried"}), 503, "execution_unavailable"),
        ((403, {"code": "approval_invalid", "message": "signature"}), 502, "execution_refused"),
    ],
)
async def test_each_items_answer_from_execution_is_mapped_as_a_single_orders(
    answer: tuple[int, dict[str, Any]], status: int, code: str | None
) -> None:
    books = FakeBooks()
    execution, log = FakeExecution(), FakeLog()
    execution.answers = {"m-2": answer}
    desk, _ = _desk(FakeQuotes(), execution, log, cash=books)
    answers = await desk.place_many([_order(client_order_id="m-1"), _order(client_order_id="m-2")], ALICE)

    assert _statuses(answers) == [201, status]
    second = answers[1]
    assert isinstance(second, Placement)
    assert second.body.get("code") == code
    # a refusal by execution gives its reservation back; the placed one keeps it
    assert ("m-2" in books.released) == (status in (422, 502))
    assert "m-1" in books.reserved


async def test_a_replayed_approval_does_not_count_again_in_the_order_rate(monkeypatch: Any) -> None:
    # At most 2 a second. The first batch's two approvals never reached execution (not counted: nothing was sent).
    # Sent again in the same second with a third order: the two are replayed, the third is the first new one.
    import services.risk.desk as desk_module

    monkeypatch.setattr(desk_module, "utcnow", lambda: datetime(2026, 12, 7, 1, 0, 0, 100_000, tzinfo=UTC))
    desk, execution, _log, _ = _ruled_desk(FakeRules({"order_activity": {"max_per_second": 2, "warn_at_pct": None}}))
    execution.down = True
    first = await desk.place_many([_order(client_order_id="p-0", qty=100), _order(client_order_id="p-1", qty=200)],
                                  ALICE)  # fmt: skip
    assert _statuses(first) == [503, 503]
    execution.down = False
    again = [_order(client_order_id="p-0", qty=100), _order(client_order_id="p-1", qty=200),
             _order(client_order_id="p-2", qty=300)]  # fmt: skip
    assert _statuses(await desk.place_many(again, ALICE)) == [201, 201, 201]


class RefusalNotRecorded(FakeLog):
    """Risk's database fails as execution's refusal of one decision is recorded."""

    def __init__(self, failing_client_order_id: str) -> None:
        super().__init__()
        self.failing = failing_client_order_id

    async def record_outcome(self, decision_id: str, outcome: ExecutionOutcome) -> None:
        decision = next(d for d in self.decisions if d.decision_id == decision_id)
        if decision.client_order_id == self.failing and outcome is ExecutionOutcome.REFUSED:
            raise ConnectionError("the database is gone")
        await super().record_outcome(decision_id, outcome)


async def test_an_answer_that_cannot_be_recorded_is_that_items_error_and_the_others_are_taken() -> None:
    books, execution, log = FakeBooks(), FakeExecution(), RefusalNotRecorded("e-1")
    execution.answers = {"e-1": (422, {"code": "insufficient_cash", "message": "0.00 available"})}
    desk, _ = _desk(FakeQuotes(), execution, log, cash=books)
    answers = await desk.place_many([_order(client_order_id="e-1"), _order(client_order_id="e-2")], ALICE)

    assert isinstance(answers[0], ConnectionError)  # the caller sends it again: execution refuses it again
    assert _statuses(answers) == [None, 201]
    assert log.outcomes[log.decisions[1].decision_id] is ExecutionOutcome.PLACED
    assert "e-2" in books.reserved


async def test_a_batch_whose_caller_lost_its_claim_decides_no_further_order() -> None:
    execution, log = FakeExecution(), FakeLog()
    desk, _ = _desk(FakeQuotes(), execution, log)
    decided: list[str] = []
    real = desk._decide

    async def counting(request: Any, principal: Any, **kw: Any) -> Any:
        decided.append(request.client_order_id)
        return await real(request, principal, **kw)

    desk._decide = counting  # type: ignore[method-assign]
    orders = [_order(client_order_id=f"l-{k}") for k in range(3)]
    answers = await desk.place_many(orders, ALICE, stop=lambda: len(decided) >= 1)
    assert decided == ["l-0"]
    assert _statuses(answers) == [201, None, None]
    assert execution.batches == [["l-0"]]
