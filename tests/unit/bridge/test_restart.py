"""MiniQMT restarting under the bridge (the fake's `restart`): one that forgets nothing, and one that loses the
session -- remarks gone, orders renumbered (an old MiniQMT id may now name another order), orders never reported
dropped. Every broker event must name the right platform order, and an order MiniQMT lost is reported as such."""

from __future__ import annotations

from types import SimpleNamespace

from bridge.qmt.journal import ACKNOWLEDGED, LOST, LOST_MESSAGE, UNCONFIRMED
from tests.unit.bridge.conftest import Harness, place_body

A, B, C, U, D = ("a" * 32, "b" * 32, "c" * 32, "e" * 32, "d" * 32)


def remark(order_id: str) -> str:
    return order_id[:24]


async def reconnected(harness: Harness, times: int = 2) -> None:
    """The link is connected again (its `times`-th "connected"): the reconciliation after it has run."""
    await harness.wait_for("connection", lambda b: b["qmt"] == "connected", count=times)


async def test_a_restart_that_loses_the_session_maps_every_event_to_the_right_order(
    harness: Harness, xt: SimpleNamespace
) -> None:
    for oid in (A, B, C):
        harness.link.place(place_body(oid))
        await harness.wait_for("order", lambda b, oid=oid: b["order_id"] == oid and b["status"] == 50)
    xt.broker.fill(remark=remark(A), qty=100, price=10.5)
    await harness.wait_for("trade", lambda b: b["order_id"] == A)
    # U is taken by MiniQMT but not yet reported to the exchange (49, no contract number)
    xt.broker.set_behaviour(unreported=True)
    harness.link.place(place_body(U))
    await harness.wait_for("order", lambda b: b["order_id"] == U and b["status"] == 49)
    xt.broker.set_behaviour(unreported=False)
    before = {oid: harness.journal.get(oid) for oid in (A, B, C, U)}
    assert {oid: (e.qmt_order_id, e.order_sysid) for oid, e in before.items() if e} == {
        A: (1001, "S1001"),
        B: (1002, "S1002"),
        C: (1003, "S1003"),
        U: (1004, None),
    }

    # renumbered newest first from 1001: C 1001 (A's old id), B 1002, A 1003 (C's old id); U (49) is gone
    xt.broker.restart(lose_session=True)
    await reconnected(harness)
    assert {o["order_sysid"]: o["order_id"] for o in xt.broker.orders.values()} == {
        "S1003": 1001,
        "S1002": 1002,
        "S1001": 1003,
    }
    after = {oid: harness.journal.get(oid) for oid in (A, B, C, U)}
    assert {oid: (e.state, e.qmt_order_id) for oid, e in after.items() if e} == {
        A: (ACKNOWLEDGED, 1003),
        B: (ACKNOWLEDGED, 1002),
        C: (ACKNOWLEDGED, 1001),
        U: (LOST, None),
    }
    lost = await harness.wait_for("order", lambda b: b["order_id"] == U and b["status"] == 57)
    assert (lost["status_msg"], lost["traded_qty"], lost["qmt_order_id"]) == (LOST_MESSAGE, 0, None)

    # the fills go on at the renumbered orders, reported without a remark
    xt.broker.fill(order_sysid="S1001", qty=100, price=10.6)  # A's second half
    xt.broker.fill(order_id=1001, qty=200, price=10.4)  # C, under A's old id
    a_trade = await harness.wait_for("trade", lambda b: b["trade_id"] == "T2")
    c_trade = await harness.wait_for("trade", lambda b: b["trade_id"] == "T3")
    assert (a_trade["order_id"], a_trade["qmt_order_id"], a_trade["remark"], a_trade["qty"]) == (
        A,
        1003,
        remark(A),
        100,
    )
    assert (c_trade["order_id"], c_trade["qmt_order_id"], c_trade["remark"], c_trade["qty"]) == (
        C,
        1001,
        remark(C),
        200,
    )
    a_done = await harness.wait_for("order", lambda b: b["order_id"] == A and b["status"] == 56)
    # (100 x 10.5 + 100 x 10.6) / 200 = 10.55
    assert (a_done["traded_qty"], a_done["traded_price"], a_done["qmt_order_id"]) == (200, "10.550", 1003)
    c_done = await harness.wait_for("order", lambda b: b["order_id"] == C and b["status"] == 56)
    assert (c_done["traded_qty"], c_done["traded_price"]) == (200, "10.400")
    # T1 was pushed once, before the restart; the reconciliation's query of it after the restart is not a new one
    assert sorted((t["trade_id"], t["order_id"]) for t in harness.of("trade")) == [("T1", A), ("T2", A), ("T3", C)]

    # a new order takes U's old id (1004): it is D's, by its remark; U stays lost
    harness.link.place(place_body(D))
    d_order = await harness.wait_for("order", lambda b: b["order_id"] == D)
    assert d_order["qmt_order_id"] == 1004
    u_entry = harness.journal.get(U)
    assert u_entry is not None and u_entry.state == LOST
    # 1004 named U before the restart (49), D after it: never U's state on D or D's on U
    assert [(o["order_id"], o["status"]) for o in harness.of("order", lambda b: b["qmt_order_id"] == 1004)] == [
        (U, 49),
        (D, 50),
    ]
    assert [o["status"] for o in harness.of("order", lambda b: b["order_id"] == U)] == [49, 57]

    # the requests follow the new ids: A's query has its own trades only; B's cancel goes to 1002
    a = harness.link.query_order({"order_id": A})["body"]
    assert (a["order"]["qmt_order_id"], a["order"]["status"]) == (1003, 56)
    assert sorted(t["trade_id"] for t in a["trades"]) == ["T1", "T2"]
    u = harness.link.query_order({"order_id": U})["body"]
    assert (u["order"]["status"], u["order"]["status_msg"], u["trades"]) == (57, LOST_MESSAGE, [])
    cancel = harness.link.cancel({"order_id": B})
    assert cancel["body"]["state"] == "requested" and cancel["body"]["order"]["qmt_order_id"] == 1002
    await harness.wait_for("order", lambda b: b["order_id"] == B and b["status"] == 54)
    listed = {o["order_id"]: o["status"] for o in harness.link.query_orders({})["body"]["orders"]}
    assert listed == {A: 56, B: 54, C: 56, D: 50, U: 57}
    assert len(xt.broker.order_calls) == 5  # A, B, C, U, D: none placed again


async def test_an_id_only_event_naming_an_old_id_is_not_taken_for_the_old_order(
    harness: Harness, xt: SimpleNamespace
) -> None:
    for oid in (A, C):
        harness.link.place(place_body(oid))
        await harness.wait_for("order", lambda b, oid=oid: b["order_id"] == oid and b["status"] == 50)
    xt.broker.restart(lose_session=True)
    await reconnected(harness)
    # C is now 1001 (A's old id), A 1002. An order event that carries only an id and another sysid than A's: C's
    stale = dict(xt.broker.find(order_sysid="S1002"), order_status=55, traded_volume=100, traded_price=10.5)
    assert stale["order_id"] == 1001
    harness.link._trader.post("on_stock_order", xt.fake.xt_order(stale))
    pushed = await harness.wait_for("order", lambda b: b["status"] == 55)
    assert (pushed["order_id"], pushed["qmt_order_id"], pushed["order_sysid"]) == (C, 1001, "S1002")
    # an event with an id and neither remark nor sysid, for an id no order was confirmed under on this connection
    harness.link._trader.post(
        "on_stock_order",
        xt.fake.xt_order(dict(stale, order_id=1777, order_sysid="", order_status=54, traded_volume=0)),
    )
    unmatched = await harness.wait_for("order", lambda b: b["qmt_order_id"] == 1777)
    assert unmatched["order_id"] is None


async def test_a_restart_that_forgets_nothing_drops_queued_callbacks_and_the_queries_bring_them_back(
    harness: Harness, xt: SimpleNamespace
) -> None:
    harness.link.place(place_body(A))
    await harness.wait_for("order", lambda b: b["order_id"] == A and b["status"] == 50)
    # B's async response and order push, and A's trade, are queued when MiniQMT restarts (or already delivered:
    # either way each comes once)
    harness.link.place(place_body(B))
    xt.broker.fill(remark=remark(A), qty=200, price=10.5)
    xt.broker.restart(lose_session=False)
    await reconnected(harness)
    assert {o["order_remark"]: o["order_id"] for o in xt.broker.orders.values()} == {remark(A): 1001, remark(B): 1002}
    await harness.wait_for("order", lambda b: b["order_id"] == A and b["status"] == 56)
    await harness.wait_for("order", lambda b: b["order_id"] == B and b["status"] == 50)
    await harness.barrier()
    assert [(t["order_id"], t["trade_id"], t["qty"]) for t in harness.of("trade")] == [(A, "T1", 200)]
    entries = {oid: harness.journal.get(oid) for oid in (A, B)}
    assert {oid: (e.state, e.qmt_order_id) for oid, e in entries.items() if e} == {
        A: (ACKNOWLEDGED, 1001),
        B: (ACKNOWLEDGED, 1002),
    }
    assert len(xt.broker.order_calls) == 2


async def test_an_order_known_only_by_its_terms_is_found_after_a_restart_and_twins_are_not_guessed(
    harness: Harness, xt: SimpleNamespace
) -> None:
    # no callback at all for these orders: the bridge never learns their MiniQMT id or sysid
    xt.broker.set_behaviour(silent=True)
    harness.link.place(place_body(A, qty=300))
    harness.link.place(place_body(B, qty=100))
    harness.link.place(place_body(C, qty=100))  # B and C: the same terms
    xt.broker.set_behaviour(silent=False)
    xt.broker.restart(lose_session=True)  # remarks gone: A 1003, B 1002, C 1001
    await reconnected(harness)
    found = await harness.wait_for("order", lambda b: b["order_id"] == A)
    assert (found["qmt_order_id"], found["order_sysid"], found["qty"]) == (1001 + 2, "S1001", 300)
    # B and C cannot be told apart: neither is given the other's order; both stay unknown (255)
    for oid in (B, C):
        entry = harness.journal.get(oid)
        assert entry is not None and (entry.state, entry.qmt_order_id) == (UNCONFIRMED, None)
    twins = harness.of("order", lambda b: b["qmt_order_id"] in (1001, 1002))
    assert twins and all(o["order_id"] is None for o in twins)
    assert {o["order_id"]: o["status"] for o in harness.of("order", lambda b: b["order_id"] in (B, C))} == {
        B: 255,
        C: 255,
    }


async def test_an_order_with_a_contract_number_missing_after_a_restart_is_not_made_lost(
    harness: Harness, xt: SimpleNamespace
) -> None:
    harness.link.place(place_body(A))
    await harness.wait_for("order", lambda b: b["order_id"] == A and b["status"] == 50)
    with xt.broker.lock:
        del xt.broker.orders[1001]  # MiniQMT's list no longer has it, though it reached the exchange (sysid S1001)
    xt.broker.restart(lose_session=False)
    await reconnected(harness)
    await harness.barrier()
    entry = harness.journal.get(A)
    assert entry is not None and (entry.state, entry.order_sysid, entry.status) == (ACKNOWLEDGED, "S1001", 50)
    assert [o["status"] for o in harness.of("order", lambda b: b["order_id"] == A)] == [50]
