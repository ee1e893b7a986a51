"""MiniQMT restarting under the bridge (the fake's `restart`): one that forgets nothing, and one that loses the
session -- remarks gone, orders renumbered (an old MiniQMT id may now name another order), orders never reported
dropped. Every broker event must name the right platform order, and an order MiniQMT lost is reported as such."""

from __future__ import annotations

from types import SimpleNamespace

from bridge.qmt.journal import ACKNOWLEDGED, LOST, LOST_MESSAGE, UNCONFIRMED, UNIDENTIFIED_MESSAGE
from tests.unit.bridge.conftest import ACCOUNT, Harness, place_body

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


async def test_orders_known_only_by_their_terms_are_never_guessed_after_a_restart(
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
    await harness.barrier()
    # even A, the only order with its terms, is not taken for MiniQMT's 1003: a manual order could have them too.
    # All three stay unknown (255), settled by execution's grace; MiniQMT's orders are reported as no one's
    for oid in (A, B, C):
        entry = harness.journal.get(oid)
        assert entry is not None and (entry.state, entry.qmt_order_id) == (UNCONFIRMED, None)
    listed = harness.of("order", lambda b: b["qmt_order_id"] in (1001, 1002, 1003))
    assert sorted(o["qmt_order_id"] for o in listed) == [1001, 1002, 1003]
    assert all(o["order_id"] is None for o in listed)
    assert {o["order_id"]: o["status"] for o in harness.of("order", lambda b: b["order_id"] in (A, B, C))} == {
        A: 255,
        B: 255,
        C: 255,
    }


async def test_a_manual_order_with_the_same_terms_is_not_attached_after_a_restart(
    harness: Harness, xt: SimpleNamespace
) -> None:
    # A: acknowledged by MiniQMT as 1001, not yet reported to the exchange (49, no contract number)
    xt.broker.set_behaviour(unreported=True)
    harness.link.place(place_body(A))
    await harness.wait_for("order", lambda b: b["order_id"] == A and b["status"] == 49)
    xt.broker.set_behaviour(unreported=False)
    # M: typed into the QMT client by hand, the same terms as A (600000.SH buy 200 at 10.5, limit), no remark,
    # and filled: 1002, S1001
    xt.broker.place(harness.link._trader, ACCOUNT, "600000.SH", 23, 200, 11, 10.5, "", "", seq=None)
    xt.broker.fill(order_id=1002, qty=200, price=10.5)
    await harness.wait_for("order", lambda b: b["qmt_order_id"] == 1002 and b["status"] == 56)

    # a restart that loses the session drops A (49) and renumbers M to 1001: A's old id, A's terms
    xt.broker.restart(lose_session=True)
    await reconnected(harness)
    await harness.barrier()
    assert [(o["order_id"], o["order_sysid"], o["order_status"]) for o in xt.broker.orders.values()] == [
        (1001, "S1001", 56)
    ]
    entry = harness.journal.get(A)
    assert entry is not None
    assert (entry.state, entry.qmt_order_id, entry.status, entry.traded_qty) == (UNCONFIRMED, None, 255, 0)
    # A is unknown (not M's fill, not lost either: the bridge cannot tell); M stays no one's
    assert [(o["status"], o["qmt_order_id"]) for o in harness.of("order", lambda b: b["order_id"] == A)] == [
        (49, 1001),
        (255, None),
    ]
    assert harness.of("order", lambda b: b["order_id"] == A)[-1]["status_msg"] == UNIDENTIFIED_MESSAGE
    assert all(o["order_id"] is None for o in harness.of("order", lambda b: b["order_sysid"] == "S1001"))
    assert all(t["order_id"] is None for t in harness.of("trade"))
    queried = harness.link.query_order({"order_id": A})["body"]
    assert (queried["order"]["status"], queried["order"]["traded_qty"], queried["trades"]) == (255, 0, [])
    # and a cancel of A sends nothing at all (M's id 1001 was A's)
    refused = harness.link.cancel({"order_id": A})
    assert (refused["ok"], refused["error"]["code"]) == (False, "qmt_refused")
    assert xt.broker.cancel_calls == []


async def _renumbered_before_the_bridge_finds_its_orders_again(harness: Harness, xt: SimpleNamespace) -> None:
    """A restart that loses the session while MiniQMT's order list cannot be had (its query fails): C, placed
    after A, takes A's old id 1001 (A is 1002 now) and the bridge has matched neither again."""
    xt.broker.set_behaviour(orders_query_fails=True)
    xt.broker.restart(lose_session=True)
    await reconnected(harness)
    await harness.barrier()
    assert xt.broker.find(order_id=1001)["_placed_remark"] == remark(C)
    assert xt.broker.find(order_id=1002)["_placed_remark"] == remark(A)
    stale = harness.journal.get(A)
    assert stale is not None and stale.qmt_order_id == 1001  # A's id from before the restart: C's now


async def test_a_cancel_of_an_order_not_found_again_after_a_restart_goes_by_its_sysid_never_by_its_old_id(
    harness: Harness, xt: SimpleNamespace
) -> None:
    for oid in (A, C):
        harness.link.place(place_body(oid))
        await harness.wait_for("order", lambda b, oid=oid: b["order_id"] == oid and b["status"] == 50)
    await _renumbered_before_the_bridge_finds_its_orders_again(harness, xt)

    cancel = harness.link.cancel({"order_id": A})
    assert (cancel["ok"], cancel["body"]["state"]) == (True, "requested")
    # by A's contract number on SH (market 0), never by id: C, under A's old id 1001, is untouched
    assert xt.broker.cancel_calls == [{"market": 0, "order_sysid": "S1001"}]
    assert xt.broker.find(order_sysid="S1002")["order_status"] == 50
    done = await harness.wait_for("order", lambda b: b["order_id"] == A and b["status"] == 54)
    assert (done["qmt_order_id"], done["order_sysid"]) == (1002, "S1001")
    await harness.barrier()
    assert [o["status"] for o in harness.of("order", lambda b: b["order_id"] == C)] == [50]


async def test_a_cancel_of_an_order_not_found_again_with_no_sysid_is_refused_and_sends_nothing(
    harness: Harness, xt: SimpleNamespace
) -> None:
    # A: acknowledged as 1001 with no contract number seen; the exchange numbers it and fills half of it, and no
    # push of that reaches the bridge
    xt.broker.set_behaviour(unreported=True)
    harness.link.place(place_body(A))
    await harness.wait_for("order", lambda b: b["order_id"] == A and b["status"] == 49)
    xt.broker.set_behaviour(unreported=False)
    xt.broker.silent_orders.add(1001)
    xt.broker.fill(order_id=1001, qty=100, price=10.5)  # A gets S1001 at the broker
    harness.link.place(place_body(C))
    await harness.wait_for("order", lambda b: b["order_id"] == C and b["status"] == 50)  # 1002, S1002
    await _renumbered_before_the_bridge_finds_its_orders_again(harness, xt)

    refused = harness.link.cancel({"order_id": A})
    assert (refused["ok"], refused["error"]["code"]) == (False, "qmt_refused")
    assert "nothing was sent" in refused["error"]["message"]
    assert xt.broker.cancel_calls == []
    assert xt.broker.find(order_sysid="S1002")["order_status"] == 50

    # the list answers again: C is found by its sysid under 1001 and its cancel goes there; A (its order now
    # without remark, under a contract number the bridge never saw) is not guessed: unknown, still never cancelled
    xt.broker.set_behaviour(orders_query_fails=False)
    harness.link.reconcile()
    c_entry, a_entry = harness.journal.get(C), harness.journal.get(A)
    assert c_entry is not None and (c_entry.qmt_order_id, c_entry.order_sysid) == (1001, "S1002")
    assert a_entry is not None and (a_entry.state, a_entry.qmt_order_id, a_entry.status) == (UNCONFIRMED, None, 255)
    assert harness.link.cancel({"order_id": C})["body"]["state"] == "requested"
    assert harness.link.cancel({"order_id": A})["error"]["code"] == "qmt_refused"
    assert xt.broker.cancel_calls == [{"order_id": 1001}]
    await harness.wait_for("order", lambda b: b["order_id"] == C and b["status"] == 54)
    assert xt.broker.find(order_sysid="S1001")["order_status"] == 55  # A's half-filled order: untouched


async def test_the_same_sysid_on_sh_and_sz_maps_each_to_its_own_order(harness: Harness, xt: SimpleNamespace) -> None:
    xt.broker.set_behaviour(unreported=True)
    harness.link.place(place_body(A))  # 600000.SH, 1001
    harness.link.place(place_body(B, ts_code="000001.SZ"))  # 1002
    for oid in (A, B):
        await harness.wait_for("order", lambda b, oid=oid: b["order_id"] == oid and b["status"] == 49)
    # each exchange numbers its orders on its own: both get contract number "100"
    with xt.broker.lock:
        for order in xt.broker.orders.values():
            order.update(order_sysid="100", order_status=50)
    harness.link.reconcile()  # by remark: the journal learns both numbers
    sysids = {oid: e.order_sysid for oid in (A, B) if (e := harness.journal.get(oid))}
    assert sysids == {A: "100", B: "100"}

    xt.broker.restart(lose_session=True)  # B (newer) 1001, A 1002; no remarks
    await reconnected(harness)
    entries = {oid: harness.journal.get(oid) for oid in (A, B)}
    assert {oid: (e.state, e.qmt_order_id) for oid, e in entries.items() if e} == {
        A: (ACKNOWLEDGED, 1002),
        B: (ACKNOWLEDGED, 1001),
    }
    # fills reported with the number only (no remark): each on its own exchange's order
    xt.broker.fill(order_id=1002, qty=200, price=10.5)
    xt.broker.fill(order_id=1001, qty=200, price=9.8)
    sh = await harness.wait_for("trade", lambda b: b["ts_code"] == "600000.SH")
    sz = await harness.wait_for("trade", lambda b: b["ts_code"] == "000001.SZ")
    assert (sh["order_id"], sh["price"], sz["order_id"], sz["price"]) == (A, "10.500", B, "9.800")
    # a cancel error naming only the number and SZ's market (1) is B's
    harness.link._trader.post(
        "on_cancel_error",
        xt.xttype.XtCancelError(
            account_type=2, account_id=ACCOUNT, order_id=0, market=1, order_sysid="100", error_id=-1, error_msg="x"
        ),
    )
    error = await harness.wait_for("cancel_error")
    assert error["order_id"] == B


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
