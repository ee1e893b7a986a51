"""The QMT adapter's pure parts, worked by hand: MiniQMT's status codes as execution reads them, cumulative reports
(a final status held back until its fills are in), the `place` request, and the differences a reconciliation
reports; and the order state machine with `unknown`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.execution.brokers.base import BrokerReport, Fill
from services.execution.brokers.qmt import STATUS_MAP, build_report, differences, fill_id, fill_of, merged, place_body
from services.execution.lifecycle import OrderProgress, plan_report
from shared.core.domain import IllegalTransition, Order, OrderSide, OrderStatus, OrderType, check_transition

AT = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
S, P, F, C, R, U = (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED,
                    OrderStatus.REJECTED, OrderStatus.UNKNOWN)  # fmt: skip


def fill(fid: str, qty: int, price: str = "10.00") -> Fill:
    return Fill(fid, qty, Decimal(price), AT)


def test_every_miniqmt_status_code_maps_as_the_page_says() -> None:
    # docs/qmt-bridge.md: 48-51 submitted; 52, 55 partially filled; 53, 54 cancelled; 56 filled; 57 rejected; 255 unknown
    assert STATUS_MAP == {48: S, 49: S, 50: S, 51: S, 52: P, 55: P, 53: C, 54: C, 56: F, 57: R, 255: U}


@pytest.mark.parametrize(
    ("status", "traded", "fills", "expected"),
    [
        (50, 0, (), S),  # reported, nothing traded
        (55, 300, (fill("a", 300),), P),  # partly filled, its trade in
        (55, 300, (), S),  # partly filled at MiniQMT, the trade not in yet: still submitted here
        (56, 1000, (fill("a", 400), fill("b", 600)), F),  # filled, every trade in
        (56, 1000, (fill("a", 400),), P),  # filled at MiniQMT, 600 shares' trades missing: held back
        (54, 0, (), C),  # cancelled, nothing traded
        (53, 300, (fill("a", 300),), C),  # partly cancelled with its 300 filled
        (53, 300, (), S),  # partly cancelled, the 300's trade missing: held back (a final order takes no fills)
        (57, 0, (), R),  # junk
        (255, 0, (), U),
        (None, None, (fill("a", 1000),), F),  # only a trade known so far: the fills say filled
    ],
)
def test_a_cumulative_report_holds_a_final_status_until_its_fills_are_in(
    status: int | None, traded: int | None, fills: tuple[Fill, ...], expected: OrderStatus
) -> None:
    report = build_report(1000, status, traded, fills, "msg")
    got = report.status
    if status is None:  # the desk's plan then reads the fills: 1000 of 1000 filled
        plan = plan_report(OrderProgress(S, 1000, 0, Decimal(0)), report, [])
        got = plan.final_status
    assert got is expected
    assert report.fills == fills


def test_a_rejection_carries_the_brokers_message() -> None:
    assert build_report(1000, 57, 0, (), "价格超出涨跌停") == BrokerReport(R, (), "价格超出涨跌停")
    assert build_report(1000, 57, 0, (), None).reason == "rejected by the broker"


def test_fill_ids_are_qualified_by_the_orders_remark_and_fills_are_merged_once() -> None:
    remark = "0123456789abcdef01234567"
    assert fill_id(remark, "T88") == "q0123456789abcdef01234567-T88"
    trade = {"trade_id": "T88", "qty": 200, "price": "10.01", "traded_at": "2026-12-07T10:00:01+08:00"}
    got = fill_of(remark, trade)
    assert (got.fill_id, got.qty, got.price, got.traded_at) == ("q0123456789abcdef01234567-T88", 200,
                                                                Decimal("10.01"), AT.replace(second=1))  # fmt: skip
    with pytest.raises(ValueError):
        fill_of(remark, {**trade, "traded_at": "2026-12-07T10:00:01"})  # no timezone
    a, b = fill("a", 100), fill("b", 200)
    assert merged([a], [a, b]) == (a, b)


def _order(order_type: OrderType, side: OrderSide, price: str | None) -> Order:
    return Order(order_id="0123456789abcdef0123456789abcdef", client_order_id="c1", account_id="acct",
                 ts_code="000001.SZ", side=side, order_type=order_type, qty=500,
                 price=None if price is None else Decimal(price), status=OrderStatus.ACCEPTED, created_at=AT,
                 updated_at=AT)  # fmt: skip


def test_the_place_request_of_a_limit_and_a_market_order() -> None:
    limit = place_body(_order(OrderType.LIMIT, OrderSide.SELL, "12.34"), "0123456789abcdef01234567", None)
    assert limit == {"order_id": "0123456789abcdef0123456789abcdef", "remark": "0123456789abcdef01234567",
                     "ts_code": "000001.SZ", "side": "sell", "qty": 500, "price_type": 11, "price": "12.34",
                     "strategy_name": ""}  # fmt: skip
    market = place_body(_order(OrderType.MARKET, OrderSide.BUY, None), "0123456789abcdef01234567", Decimal("13.57"))
    assert (market["price_type"], market["price"], market["side"]) == (44, "13.57", "buy")


def test_differences_list_positions_by_code_then_cash() -> None:
    found = differences({"600000.SH": 1000, "000001.SZ": 200}, {"600000.SH": 900, "300750.SZ": 100},
                        1_000_000_00, 999_990_50)  # fmt: skip
    assert [d.as_dict() for d in found] == [
        {"kind": "position", "ts_code": "000001.SZ", "platform": "200", "broker": "0"},
        {"kind": "position", "ts_code": "300750.SZ", "platform": "0", "broker": "100"},
        {"kind": "position", "ts_code": "600000.SH", "platform": "1000", "broker": "900"},
        {"kind": "cash", "ts_code": None, "platform": "1000000.00", "broker": "999990.50"},
    ]
    assert differences({"600000.SH": 1000}, {"600000.SH": 1000}, 500, 500) == []
    assert differences({}, {}, 500, None) == []  # no asset from the broker: cash not compared


def test_unknown_goes_only_forward_and_is_never_a_downgrade() -> None:
    check_transition(OrderStatus.ACCEPTED, U)
    for after in (S, P, F, C, R):
        check_transition(U, after)
    for before in (S, P, F, C, R):
        with pytest.raises(IllegalTransition):
            check_transition(before, U)
    assert not U.is_final
    # accepted -> unknown; an unknown report of an order the broker acknowledged changes nothing
    assert plan_report(OrderProgress(OrderStatus.ACCEPTED, 1000, 0, Decimal(0)), BrokerReport(U), []).steps == (U,)
    assert not plan_report(OrderProgress(S, 1000, 0, Decimal(0)), BrokerReport(U), []).changed
    assert not plan_report(OrderProgress(F, 1000, 1000, Decimal(10000)), BrokerReport(U), []).changed
    # unknown, then found filled: submitted then filled (the events a known order has)
    plan = plan_report(OrderProgress(U, 1000, 0, Decimal(0)), BrokerReport(S, (fill("a", 1000),)), [])
    assert (plan.steps, plan.filled_qty, plan.filled_amount) == ((S, F), 1000, Decimal("10000.00"))
    # unknown, then never reached the broker
    plan = plan_report(OrderProgress(U, 1000, 0, Decimal(0)), BrokerReport(R, reason="never reached the broker"), [])
    assert (plan.steps, plan.reason) == ((R,), "never reached the broker")


def test_an_order_the_broker_does_not_know_is_resolved_by_its_age_and_state() -> None:
    from datetime import timedelta
    from types import SimpleNamespace
    from typing import Any, cast

    from prometheus_client import CollectorRegistry

    from services.execution.bridges import BridgeMetrics
    from services.execution.brokers.qmt import NEVER_REACHED, NO_LONGER_LISTED, QmtBroker
    from services.execution.store.brokers import BrokerOrder

    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    metrics = CollectorRegistry()
    registry = SimpleNamespace(metrics=BridgeMetrics(metrics))
    broker = QmtBroker(cast(Any, None), cast(Any, registry), clock=lambda: now, grace_s=60)

    def not_listed() -> float | None:
        return metrics.get_sample_value("lh_broker_orders_not_listed_total", {"bridge_id": "b1"})

    def mapping(sent_ago_s: float) -> BrokerOrder:
        return BrokerOrder("o1", "b1", "o1", None, None, now - timedelta(seconds=sent_ago_s), None, None, None)

    def order(status: OrderStatus, created: datetime) -> Order:
        return _order(OrderType.LIMIT, OrderSide.BUY, "10.00").model_copy(update={"status": status,
                                                                                   "created_at": created})  # fmt: skip

    # sent 30 s ago: still on its way (unknown); 61 s: it never reached the broker
    assert broker._not_known(order(U, now), mapping(30)) == BrokerReport(U)
    assert broker._not_known(order(U, now), mapping(61)) == BrokerReport(R, reason=NEVER_REACHED)
    # acknowledged yesterday (created 2026-12-06 14:00 Shanghai) and no longer listed: expired with its session
    yesterday = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
    assert broker._not_known(order(S, yesterday), mapping(3600)) == BrokerReport(C, reason=NO_LONGER_LISTED)
    assert not_listed() is None  # none of those is counted (no sample for b1 yet)
    # acknowledged today and not known: a contradiction, left as it is (an unknown report changes nothing), alerted
    assert broker._not_known(order(P, now - timedelta(hours=1)), mapping(3600)) == BrokerReport(U)
    assert not_listed() == 1
