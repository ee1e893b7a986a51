"""The bridge's MiniQMT link against the fake MiniQMT: placing, the journal, the library's quirks (a trade before
the async response, held order errors, duplicate callbacks, a cancel "success" for an order the broker never had),
reconnects and restarts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from bridge.qmt import protocol
from bridge.qmt.journal import ACKNOWLEDGED, REFUSED, SENDING, UNCONFIRMED, Journal
from tests.unit.bridge.conftest import Harness, place_body

OID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"  # a uuid4 hex: 32 characters, its remark the first 24
REMARK = OID[:24]


async def test_place_is_journalled_answered_and_its_state_pushed(harness: Harness, xt: SimpleNamespace) -> None:
    reply = harness.link.place(place_body(OID))
    assert reply == {"ok": True, "body": {"state": "placed", "order": None}}
    order = await harness.wait_for("order", lambda b: b["order_id"] == OID)
    broker_order = xt.broker.find(remark=REMARK)
    assert order == {
        "order_id": OID,
        "remark": REMARK,
        "qmt_order_id": broker_order["order_id"],
        "order_sysid": broker_order["order_sysid"],
        "ts_code": "600000.SH",
        "side": "buy",
        "qty": 200,
        "price_type": 11,
        "price": "10.500",
        "status": 50,
        "status_msg": "",
        "traded_qty": 0,
        "traded_price": None,
        "order_time": order["order_time"],
    }
    assert order["order_time"].endswith("+08:00")
    # what MiniQMT was asked: the remark is the order id cut to 24 characters, side 23, the limit price
    assert xt.broker.order_calls == [
        {"stock_code": "600000.SH", "order_remark": REMARK, "order_volume": 200, "price_type": 11}
    ]
    assert broker_order["order_type"] == 23 and broker_order["price"] == 10.5 and broker_order["price_type"] == 11
    entry = harness.journal.get(OID)
    assert entry is not None
    assert (entry.state, entry.qmt_order_id, entry.remark, entry.status) == (
        ACKNOWLEDGED,
        broker_order["order_id"],
        REMARK,
        50,
    )


async def test_the_journal_row_is_written_before_order_stock_async_is_called(
    harness: Harness, xt: SimpleNamespace
) -> None:
    trader = harness.link._trader
    seen = {}
    real = trader.order_stock_async

    def spy(account, code, order_type, volume, price_type, price, strategy_name="", order_remark=""):
        # a second connection to the file: what a crash right now would leave on disk
        on_disk = Journal(harness.journal.path)
        seen["entry"] = on_disk.by_remark(order_remark)
        on_disk.close()
        return real(account, code, order_type, volume, price_type, price, strategy_name, order_remark)

    trader.order_stock_async = spy
    harness.link.place(place_body(OID))
    assert seen["entry"] is not None
    assert (seen["entry"].order_id, seen["entry"].state) == (OID, SENDING)


async def test_a_second_place_of_the_same_order_is_known_and_never_sent_again(
    harness: Harness, xt: SimpleNamespace
) -> None:
    harness.link.place(place_body(OID))
    await harness.wait_for("order", lambda b: b["order_id"] == OID)
    again = harness.link.place(place_body(OID))
    assert again["ok"] is True
    assert again["body"]["state"] == "known"
    assert again["body"]["order"]["order_id"] == OID
    assert again["body"]["order"]["status"] == 50
    assert len(xt.broker.order_calls) == 1


async def test_a_trade_before_the_async_response_is_mapped_by_remark_and_kept(
    harness: Harness, xt: SimpleNamespace
) -> None:
    xt.broker.set_behaviour(trade_before_response=True)
    harness.link.place(place_body(OID, price="10.100"))
    trade = await harness.wait_for("trade")
    order = await harness.wait_for("order", lambda b: b["status"] == 56)
    # the trade came first, yet it names the platform's order
    first = next(t for t, _ in harness.pushes if t in ("trade", "order"))
    assert first == "trade"
    qmt_id = xt.broker.find(remark=REMARK)["order_id"]
    assert trade["order_id"] == OID and trade["qmt_order_id"] == qmt_id
    # 200 shares at 10.1: 2020.00; commission max(5, 2020 * 0.00025 = 0.505) = 5.00
    assert (trade["qty"], trade["price"], trade["amount"], trade["commission"]) == (200, "10.100", "2020.00", "5.00")
    assert trade["side"] == "buy" and trade["trade_id"] == "T1"
    assert (order["order_id"], order["traded_qty"], order["traded_price"]) == (OID, 200, "10.100")
    await harness.barrier()
    assert len(harness.of("trade")) == 1


async def test_a_rejected_order_gives_its_error_after_the_response(harness: Harness, xt: SimpleNamespace) -> None:
    xt.broker.set_behaviour(reject="资金不足")
    assert harness.link.place(place_body(OID))["body"]["state"] == "placed"
    error = await harness.wait_for("order_error")
    qmt_id = xt.broker.find(remark=REMARK)["order_id"]
    assert error == {"order_id": OID, "qmt_order_id": qmt_id, "error_id": -61, "error_msg": "资金不足"}
    order = await harness.wait_for("order", lambda b: b["status"] == 57)
    assert order["status_msg"] == "资金不足"
    again = harness.link.place(place_body(OID))
    assert again["body"]["state"] == "known" and again["body"]["order"]["status"] == 57
    assert len(xt.broker.order_calls) == 1


async def test_duplicate_callbacks_are_pushed_once(harness: Harness, xt: SimpleNamespace) -> None:
    xt.broker.set_behaviour(duplicate=True)
    harness.link.place(place_body(OID))
    await harness.wait_for("order", lambda b: b["order_id"] == OID)
    xt.broker.fill(remark=REMARK, qty=100, price=10.5)
    xt.broker.fill(remark=REMARK, qty=100, price=10.6)
    await harness.barrier()
    trades = harness.of("trade")
    assert [(t["trade_id"], t["qty"], t["price"]) for t in trades] == [("T1", 100, "10.500"), ("T2", 100, "10.600")]
    states = [(o["status"], o["traded_qty"], o["traded_price"]) for o in harness.of("order")]
    # reported, part filled, filled at the average (100 * 10.5 + 100 * 10.6) / 200 = 10.55: each once
    assert states == [(50, 0, None), (55, 100, "10.500"), (56, 200, "10.550")]


async def test_a_late_report_never_downgrades_a_final_state(harness: Harness, xt: SimpleNamespace) -> None:
    harness.link.place(place_body(OID))
    await harness.wait_for("order", lambda b: b["order_id"] == OID)
    xt.broker.fill(remark=REMARK, price=10.5)
    await harness.wait_for("order", lambda b: b["status"] == 56)
    stale = dict(xt.broker.find(remark=REMARK), order_status=50, traded_volume=0, traded_price=0.0)
    harness.link._trader.post("on_stock_order", xt.fake.xt_order(stale))
    await harness.barrier()
    assert [o["status"] for o in harness.of("order")] == [50, 56]


async def test_order_stock_async_refusing_is_a_qmt_refused_reply_journalled(
    harness: Harness, xt: SimpleNamespace
) -> None:
    xt.broker.set_behaviour(refuse=True)
    reply = harness.link.place(place_body(OID))
    assert reply["ok"] is False and reply["error"]["code"] == protocol.QMT_REFUSED
    entry = harness.journal.get(OID)
    assert entry is not None and entry.state == REFUSED
    xt.broker.set_behaviour(refuse=False)
    again = harness.link.place(place_body(OID))
    assert again["body"]["state"] == "known" and again["body"]["order"]["status"] == 57
    assert len(xt.broker.order_calls) == 1  # the refused call only: never sent again


async def test_an_invalid_market_type_for_the_exchange_is_refused_and_nothing_sent(
    harness: Harness, xt: SimpleNamespace
) -> None:
    # 46 (immediate or cancel) is Shenzhen's; 42 (best five then cancel) Shanghai's
    sh = harness.link.place(place_body("o-1", ts_code="600000.SH", price_type=46, price="0"))
    sz = harness.link.place(place_body("o-2", ts_code="000001.SZ", price_type=42, price="0"))
    for reply in (sh, sz):
        assert reply["ok"] is False and reply["error"]["code"] == protocol.BAD_REQUEST
        assert reply["error"]["message"].startswith("price_type:")
    assert "not valid on SH" in sh["error"]["message"] and "not valid on SZ" in sz["error"]["message"]
    assert xt.broker.order_calls == [] and harness.journal.get("o-1") is None
    # valid ones go: 44 on SZ, 42 on SH (the price is the protection price)
    assert harness.link.place(place_body("o-3", ts_code="000001.SZ", price_type=44, price="11.000"))["ok"]
    assert harness.link.place(place_body("o-4", ts_code="600000.SH", price_type=42, price="11.000"))["ok"]
    assert [c["order_remark"] for c in xt.broker.order_calls] == ["o-3", "o-4"]


async def test_each_market_type_reaches_miniqmt_with_its_code_of_qmt_md(harness: Harness, xt: SimpleNamespace) -> None:
    # the platform's table (what execution's QMT adapter sends) against qmt.md's codes: 42 best-5 then cancel (SH,
    # BJ), 43 best-5 then limit (SH, BJ), 44 counterparty best, 45 own best, 46 IOC (SZ), 47 best-5 then cancel (SZ),
    # 48 FOK (SZ)
    from shared.core.market.order_types import QMT_PRICE_TYPES

    qmt_md = {"SH": {42, 43, 44, 45}, "SZ": {44, 45, 46, 47, 48}, "BJ": {42, 43, 44, 45}}
    codes = {"SH": "600000.SH", "SZ": "000001.SZ", "BJ": "830799.BJ"}
    sent: list[tuple[str, int]] = []
    for exchange, types in sorted(QMT_PRICE_TYPES.items()):
        assert set(types.values()) == qmt_md[exchange]
        for market_type, price_type in sorted(types.items()):
            remark = f"{exchange}-{market_type}"[:24]
            reply = harness.link.place(place_body(remark, ts_code=codes[exchange], price_type=price_type, price="0"))
            assert reply["ok"], reply
            sent.append((codes[exchange], price_type))
    assert [(c["stock_code"], c["price_type"]) for c in xt.broker.order_calls] == sent


async def test_bad_place_fields_are_refused_naming_the_field(harness: Harness, xt: SimpleNamespace) -> None:
    cases = {
        "extra": place_body("o-1", venue="x"),
        "remark": place_body("o-1", remark="other"),
        "qty": place_body("o-1", qty=0),
        "side": place_body("o-1", side="short"),
        "price": place_body("o-1", price=10.5),
        "ts_code": place_body("o-1", ts_code="600000"),
    }
    for field, body in cases.items():
        reply = harness.link.place(body)
        assert reply["ok"] is False and reply["error"]["code"] == protocol.BAD_REQUEST, field
        assert reply["error"]["message"].startswith("venue" if field == "extra" else field), reply
    assert xt.broker.order_calls == []


async def test_cancel_reports_cancelled_only_from_the_order_state(harness: Harness, xt: SimpleNamespace) -> None:
    harness.link.place(place_body(OID))
    await harness.wait_for("order", lambda b: b["order_id"] == OID)
    reply = harness.link.cancel({"order_id": OID})
    assert reply["ok"] and reply["body"]["state"] == "requested"
    cancelled = await harness.wait_for("order", lambda b: b["status"] == 54)
    assert cancelled["order_id"] == OID
    final = harness.link.cancel({"order_id": OID})
    assert final["body"]["state"] == "final" and final["body"]["order"]["status"] == 54
    unknown = harness.link.cancel({"order_id": "nope"})
    assert unknown["error"]["code"] == protocol.UNKNOWN_ORDER


async def test_a_cancel_success_for_an_order_the_broker_never_had_is_not_a_cancel(
    harness: Harness, xt: SimpleNamespace
) -> None:
    harness.link.place(place_body(OID))
    await harness.wait_for("order", lambda b: b["order_id"] == OID)
    qmt_id = xt.broker.find(remark=REMARK)["order_id"]
    with xt.broker.lock:
        del xt.broker.orders[qmt_id]  # MiniQMT lost the session's orders: it no longer has this one
    reply = harness.link.cancel({"order_id": OID})
    assert reply["ok"] and reply["body"]["state"] == "requested"
    await harness.barrier()
    # the fake answered the cancel with success (cancel_result 0), as the real one can: nothing says cancelled
    assert [o["status"] for o in harness.of("order")] == [50]
    assert harness.of("cancel_error") == []
    entry = harness.journal.get(OID)
    assert entry is not None and entry.status == 50


async def test_a_miniqmt_disconnect_reconnects_with_a_new_trader_and_reconciles(
    harness: Harness, xt: SimpleNamespace
) -> None:
    harness.link.place(place_body(OID))
    await harness.wait_for("order", lambda b: b["order_id"] == OID)
    first = harness.link._trader
    xt.broker.disconnect(down=True)
    await harness.wait_for("connection", lambda b: b["qmt"] == "disconnected")
    down = harness.link.place(place_body("o-2"))
    assert down["error"]["code"] == protocol.QMT_DISCONNECTED and harness.journal.get("o-2") is None
    xt.broker.fill(remark=REMARK, qty=200, price=10.5)  # filled while the bridge could not hear it
    xt.broker.up()
    await harness.wait_for("connection", lambda b: b["qmt"] == "connected", count=2)
    assert harness.link._trader is not first and xt.broker.traders_created >= 2
    trade = await harness.wait_for("trade")
    assert (trade["order_id"], trade["qty"], trade["amount"]) == (OID, 200, "2100.00")
    order = await harness.wait_for("order", lambda b: b["status"] == 56)
    assert order["order_id"] == OID
    asset = await harness.wait_for("asset", lambda b: b["cash"] == "997900.00")  # 1,000,000 - 200 * 10.5
    assert asset["total_asset"] == "1000000.00"
    position = await harness.wait_for("position")
    assert (position["ts_code"], position["volume"], position["avg_price"]) == ("600000.SH", 200, "10.500")


async def test_a_restarted_bridge_knows_its_orders_by_the_journal(xt: SimpleNamespace, tmp_path: Path) -> None:
    first = Harness(xt, tmp_path / "j.sqlite3")
    await first.start()
    first.link.place(place_body(OID))
    await first.wait_for("order", lambda b: b["order_id"] == OID)
    await first.stop()

    second = Harness(xt, tmp_path / "j.sqlite3")
    await second.start()
    try:
        again = second.link.place(place_body(OID))
        assert again["body"]["state"] == "known" and again["body"]["order"]["status"] == 50
        assert again["body"]["order"]["qmt_order_id"] == xt.broker.find(remark=REMARK)["order_id"]
        assert len(xt.broker.order_calls) == 1
    finally:
        await second.stop()


async def test_journalled_but_unanswered_orders_are_found_by_remark_or_reported_unknown(
    xt: SimpleNamespace, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite3"
    first = Harness(xt, path)
    await first.start()
    xt.broker.set_behaviour(silent=True)  # MiniQMT takes the order but no callback comes (the bridge then crashes)
    first.link.place(place_body(OID))
    await first.stop()
    xt.broker.set_behaviour(silent=False)
    # an order journalled just before a crash, never sent
    crashed = Journal(path)
    crashed.begin(
        order_id="lost-1",
        remark="lost-1",
        ts_code="000001.SZ",
        side="sell",
        qty=100,
        price_type=11,
        price="9.000",
        strategy_name="",
    )
    crashed.close()

    second = Harness(xt, path)
    await second.start()
    try:
        found = await second.wait_for("order", lambda b: b["order_id"] == OID)
        assert found["qmt_order_id"] == xt.broker.find(remark=REMARK)["order_id"] and found["status"] == 50
        unknown = await second.wait_for("order", lambda b: b["order_id"] == "lost-1")
        assert (unknown["status"], unknown["qmt_order_id"], unknown["side"], unknown["qty"]) == (255, None, "sell", 100)
        assert second.journal.get(OID).state == ACKNOWLEDGED
        assert second.journal.get("lost-1").state == UNCONFIRMED
        again = second.link.place(place_body("lost-1", ts_code="000001.SZ", side="sell", qty=100, price="9.000"))
        assert again["body"]["state"] == "known" and again["body"]["order"]["status"] == 255
        listed = second.link.query_orders({})["body"]["orders"]
        assert {(o["order_id"], o["status"]) for o in listed} == {(OID, 50), ("lost-1", 255)}
        assert [c["order_remark"] for c in xt.broker.order_calls] == [REMARK]  # never placed again
    finally:
        await second.stop()


async def test_queries_answer_in_the_protocol_shapes(harness: Harness, xt: SimpleNamespace) -> None:
    harness.link.place(place_body(OID, qty=300, price="8.880"))
    await harness.wait_for("order", lambda b: b["order_id"] == OID)
    xt.broker.fill(remark=REMARK, qty=100, price=8.88)
    await harness.wait_for("trade")
    one = harness.link.query_order({"order_id": OID})["body"]
    assert one["known"] is True and one["order"]["status"] == 55 and one["order"]["traded_qty"] == 100
    # 100 * 8.88 = 888.00
    assert [(t["trade_id"], t["amount"], t["order_id"]) for t in one["trades"]] == [("T1", "888.00", OID)]
    assert harness.link.query_order({"order_id": "other"})["body"] == {"known": False, "order": None, "trades": []}
    assert harness.link.query_trades({})["body"]["trades"][0]["price"] == "8.880"
    positions = harness.link.query_positions({})["body"]["positions"]
    assert [(p["ts_code"], p["volume"], p["can_use_volume"], p["market_value"]) for p in positions] == [
        ("600000.SH", 100, 0, "888.00")
    ]
    assert harness.link.query_asset({})["body"]["asset"] == {
        "cash": "999112.00",  # 1,000,000 - 888
        "frozen_cash": "0.00",
        "market_value": "888.00",
        "total_asset": "1000000.00",
    }


async def test_a_trade_without_a_remark_before_the_response_is_held_until_the_response_names_its_order(
    harness: Harness, xt: SimpleNamespace
) -> None:
    xt.broker.set_behaviour(trade_before_response=True, strip_remark=True)
    harness.link.place(place_body(OID, price="10.100"))
    trade = await harness.wait_for("trade")
    # it could not be mapped when it came (no remark, MiniQMT's id not yet known): held, then pushed, not dropped --
    # with the journal's remark, as MiniQMT did not give it
    assert trade["order_id"] == OID and trade["remark"] == REMARK
    order = await harness.wait_for("order", lambda b: b["status"] == 56)
    assert order["order_id"] == OID
    pushed = [t for t, _ in harness.pushes if t in ("trade", "order")]
    assert pushed[0] == "trade"
    await harness.barrier()
    assert len(harness.of("trade")) == 1


async def test_an_order_error_without_a_remark_maps_by_miniqmt_id_after_the_response(
    harness: Harness, xt: SimpleNamespace
) -> None:
    xt.broker.set_behaviour(reject="超出涨跌停", strip_remark=True)
    harness.link.place(place_body(OID))
    error = await harness.wait_for("order_error")
    assert (error["order_id"], error["error_msg"]) == (OID, "超出涨跌停")
    entry = harness.journal.get(OID)
    assert entry is not None and entry.status == 57 and entry.status_msg == "超出涨跌停"


async def test_order_stock_async_raising_leaves_the_order_unknown_and_never_resent(
    harness: Harness, xt: SimpleNamespace
) -> None:
    def broken(*args: object) -> int:
        raise OSError("pipe to MiniQMT broke")

    harness.link._trader.order_stock_async = broken
    reply = harness.link.place(place_body(OID))
    assert reply["ok"] is True and reply["body"]["state"] == "known"
    assert (reply["body"]["order"]["status"], reply["body"]["order"]["qmt_order_id"]) == (255, None)
    harness.link.reconcile()  # MiniQMT has no order with its remark: unconfirmed, reported 255
    pushed = await harness.wait_for("order", lambda b: b["order_id"] == OID)
    assert pushed["status"] == 255 and harness.journal.get(OID).state == UNCONFIRMED
    again = harness.link.place(place_body(OID))
    assert again["body"]["state"] == "known" and again["body"]["order"]["status"] == 255
    assert xt.broker.order_calls == []


async def test_a_failing_reconciliation_does_not_end_the_link(harness: Harness, xt: SimpleNamespace) -> None:
    real = xt.broker.query_orders
    calls = {"n": 0}

    def flaky(account_id: str) -> list[object]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("MiniQMT answered garbage")
        return real(account_id)

    xt.broker.query_orders = flaky
    xt.broker.disconnect(down=False)  # MiniQMT restarts: the reconnect's reconciliation fails once
    await harness.wait_for("connection", lambda b: b["qmt"] == "connected", count=2)
    assert calls["n"] >= 1
    assert harness.link.place(place_body(OID))["body"]["state"] == "placed"
    order = await harness.wait_for("order", lambda b: b["order_id"] == OID)
    assert order["status"] == 50


async def test_an_order_miniqmt_refuses_before_giving_it_an_id_stays_rejected(
    harness: Harness, xt: SimpleNamespace
) -> None:
    xt.broker.set_behaviour(fail_async="账户状态异常")
    assert harness.link.place(place_body(OID))["body"]["state"] == "placed"
    await harness.wait_for("order_error", count=2)  # from the failed response, and the library's on_order_error
    errors = harness.of("order_error")
    assert {(e["order_id"], e["qmt_order_id"], e["error_msg"]) for e in errors} == {(OID, None, "账户状态异常")}
    entry = harness.journal.get(OID)
    assert entry is not None and entry.state == REFUSED
    # a reconnect's reconciliation does not turn it into an unknown (255): it was never placed
    xt.broker.disconnect(down=False)
    await harness.wait_for("connection", lambda b: b["qmt"] == "connected", count=2)
    await harness.barrier()
    assert harness.of("order", lambda b: b["order_id"] == OID) == []
    again = harness.link.place(place_body(OID))
    assert again["body"]["order"]["status"] == 57 and again["body"]["order"]["status_msg"] == "账户状态异常"
    assert xt.broker.orders == {}


async def test_account_status_changes_are_pushed_once_each(harness: Harness, xt: SimpleNamespace) -> None:
    await harness.wait_for("account_status", lambda b: b["status"] == 0)  # from the reconciliation at connect
    xt.broker.set_account_status(6)  # closed, after hours
    xt.broker.set_account_status(6)
    await harness.barrier()
    assert [b["status"] for b in harness.of("account_status")] == [0, 6]


async def test_query_order_finds_an_order_its_lost_journal_had_at_miniqmt_by_its_remark(
    xt: SimpleNamespace, tmp_path: Path
) -> None:
    # The bridge placed the order and it part filled; then the journal's file was lost and the bridge started on a
    # new one. query_order of that order finds it at MiniQMT by its remark (status, traded volume, its trade) and
    # never answers "not known" for an order MiniQMT has.
    first = Harness(xt, tmp_path / "old.sqlite3")
    await first.start()
    first.link.place(place_body(OID, qty=300, price="8.880"))
    await first.wait_for("order", lambda b: b["order_id"] == OID)
    xt.broker.fill(remark=REMARK, qty=100, price=8.88)
    await first.wait_for("trade")
    await first.stop()

    second = Harness(xt, tmp_path / "new.sqlite3")
    await second.start()
    try:
        assert second.journal.get(OID) is None
        found = second.link.query_order({"order_id": OID})["body"]
        assert found["known"] is True
        order = found["order"]
        assert (order["order_id"], order["remark"], order["status"], order["traded_qty"]) == (OID, REMARK, 55, 100)
        assert order["qmt_order_id"] == xt.broker.find(remark=REMARK)["order_id"]
        # 100 * 8.88 = 888.00
        assert [(t["trade_id"], t["qty"], t["amount"], t["order_id"]) for t in found["trades"]] == [
            ("T1", 100, "888.00", OID)
        ]
        assert second.link.query_order({"order_id": "f" * 32})["body"] == {"known": False, "order": None, "trades": []}
        assert [c["order_remark"] for c in xt.broker.order_calls] == [REMARK]  # nothing placed
    finally:
        await second.stop()
