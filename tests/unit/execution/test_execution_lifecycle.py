"""The order state machine applied to broker reports."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.execution.brokers.base import BrokerReport, Fill
from services.execution.lifecycle import InconsistentReport, OrderProgress, average_price, plan_report
from shared.core.domain import IllegalTransition, OrderStatus

T = datetime(2025, 1, 2, 1, 30, tzinfo=UTC)
A, S, PF, F, C, R = (
    OrderStatus.ACCEPTED,
    OrderStatus.SUBMITTED,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.FILLED,
    OrderStatus.CANCELLED,
    OrderStatus.REJECTED,
)


def _fill(n: int, qty: int, price: str) -> Fill:
    return Fill(f"f{n}", qty, Decimal(price), T)


def _progress(status: OrderStatus = A, filled: int = 0, amount: str = "0", qty: int = 300) -> OrderProgress:
    return OrderProgress(status, qty, filled, Decimal(amount))


def test_an_immediate_fill_passes_through_submitted() -> None:
    plan = plan_report(_progress(), BrokerReport(F, (_fill(1, 300, "10.00"),)), set())
    assert plan.steps == (S, F)
    assert plan.filled_qty == 300 and plan.filled_amount == Decimal("3000.00")
    assert [f.fill_id for f in plan.new_fills] == ["f1"]


def test_the_same_report_twice_changes_nothing() -> None:
    report = BrokerReport(F, (_fill(1, 300, "10.00"),))
    plan = plan_report(_progress(F, 300, "3000.00"), report, {"f1"})
    assert not plan.changed and plan.final_status is F


def test_resting_then_partial_then_full() -> None:
    rest = plan_report(_progress(), BrokerReport(S), set())
    assert rest.steps == (S,) and rest.new_fills == ()
    part = plan_report(_progress(S), BrokerReport(PF, (_fill(1, 100, "10.00"),)), set())
    assert part.steps == (PF,) and part.filled_qty == 100
    # a second partial fill is a PF -> PF transition of its own
    more = plan_report(
        _progress(PF, 100, "1000.00"), BrokerReport(PF, (_fill(1, 100, "10.00"), _fill(2, 100, "10.01"))), {"f1"}
    )
    assert more.steps == (PF,) and [f.fill_id for f in more.new_fills] == ["f2"] and more.filled_qty == 200
    done = plan_report(
        _progress(PF, 200, "2001.00"),
        BrokerReport(F, (_fill(1, 100, "10.00"), _fill(2, 100, "10.01"), _fill(3, 100, "10.02"))),
        {"f1", "f2"},
    )
    assert done.steps == (F,) and done.filled_qty == 300
    assert done.filled_amount == Decimal("3003.00")  # 1000.00 + 1001.00 + 1002.00


def test_a_broker_status_behind_its_fills_is_corrected_by_the_fills() -> None:
    plan = plan_report(_progress(), BrokerReport(S, (_fill(1, 300, "9.98"),)), set())
    assert plan.steps == (S, F)


def test_rejections_and_cancels() -> None:
    rejected = plan_report(_progress(), BrokerReport(R, reason="suspended"), set())
    assert rejected.steps == (R,) and rejected.reason == "suspended"
    never_sent = plan_report(_progress(), BrokerReport(C, reason="cancelled before it reached the broker"), set())
    assert never_sent.steps == (C,)
    resting = plan_report(_progress(S), BrokerReport(C), set())
    assert resting.steps == (C,)
    partly = plan_report(_progress(S), BrokerReport(C, (_fill(1, 100, "10.00"),)), set())
    assert partly.steps == (PF, C) and partly.filled_qty == 100


def test_a_late_open_report_leaves_a_final_order_as_it_is() -> None:
    # QMT's answer to the send ("placed": submitted) recorded after the broker's push of the reject won the race
    late = plan_report(_progress(R), BrokerReport(S), set())
    assert (late.steps, late.new_fills, late.final_status) == ((), (), R)
    # ... or after the push of its fills: the fills it carries are known already
    done = _progress(F, 300, "3000.00")
    late = plan_report(done, BrokerReport(S, (_fill(1, 300, "10.00"),)), {"f1"})
    assert (late.steps, late.new_fills, late.final_status) == ((), (), F)
    with pytest.raises(InconsistentReport):  # a new fill for an order rejected here is no late report
        plan_report(_progress(R), BrokerReport(S, (_fill(1, 100, "10.00"),)), set())


def test_contradictions_are_refused() -> None:
    with pytest.raises(InconsistentReport):  # more than ordered
        plan_report(_progress(), BrokerReport(F, (_fill(1, 400, "10.00"),)), set())
    with pytest.raises(InconsistentReport):  # "filled" with 100 of 300
        plan_report(_progress(), BrokerReport(F, (_fill(1, 100, "10.00"),)), set())
    with pytest.raises(InconsistentReport):  # cancelled here, filled there
        plan_report(_progress(C), BrokerReport(F, (_fill(1, 300, "10.00"),)), set())
    with pytest.raises(IllegalTransition):  # a partly filled order cannot be rejected
        plan_report(_progress(PF, 100, "1000.00"), BrokerReport(R), {"f0"})


@pytest.mark.parametrize(
    ("amount", "qty", "expected"),
    [
        ("3000.00", 300, "10.00"),
        ("2001.00", 200, "10.0050"),  # (1000.00 + 1001.00) / 200, off the tick: 4 places
        ("3001.00", 300, "10.0033"),  # 10.00333... half-up to 4 places
        ("3002.00", 300, "10.0067"),  # 10.00666...
    ],
)
def test_average_fill_price(amount: str, qty: int, expected: str) -> None:
    assert str(average_price(Decimal(amount), qty)) == expected


def test_no_fills_no_average() -> None:
    assert average_price(Decimal(0), 0) is None
