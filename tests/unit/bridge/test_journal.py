"""The order journal: written before sending, idempotent by order id, kept across restarts."""

from __future__ import annotations

from pathlib import Path

from bridge.qmt.journal import ACKNOWLEDGED, LOST, LOST_MESSAGE, REFUSED, SENDING, SENT, Journal

ORDER = {
    "order_id": "o-1",
    "remark": "o-1",
    "ts_code": "600000.SH",
    "side": "buy",
    "qty": 200,
    "price_type": 11,
    "price": "10.500",
    "strategy_name": "s",
}


def test_an_order_begun_is_on_disk_at_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    created, entry = journal.begin(**ORDER)
    assert created and entry.state == SENDING and entry.qmt_order_id is None
    # another connection (what a crash would leave) sees it without any close or flush
    other = Journal(tmp_path / "j.db")
    seen = other.get("o-1")
    assert seen is not None and (seen.state, seen.qty, seen.price) == (SENDING, 200, "10.500")
    other.close()
    journal.close()


def test_a_second_begin_of_the_same_order_is_not_new(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.begin(**ORDER)
    journal.sent("o-1", 5)
    created, entry = journal.begin(**ORDER)
    assert created is False and (entry.order_id, entry.state, entry.seq) == ("o-1", SENT, 5)
    # another id with the same remark is the same order too (the remark is what MiniQMT keeps)
    created, entry = journal.begin(**{**ORDER, "order_id": "o-1-other"})
    assert created is False and entry.order_id == "o-1"
    journal.close()


def test_the_mapping_survives_a_reopen(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.begin(**ORDER)
    journal.sent("o-1", 3)
    journal.acknowledged("o-1", 1001, "S1001")
    journal.observed(
        "o-1",
        status=55,
        status_msg="",
        traded_qty=100,
        traded_price="10.500",
        order_sysid=None,
        order_time="2026-12-07T09:31:00+08:00",
    )
    journal.begin(**{**ORDER, "order_id": "o-2", "remark": "o-2"})
    journal.refused("o-2", "refused")
    journal.close()

    reopened = Journal(tmp_path / "j.db")
    entry = reopened.by_qmt_order_id(1001)
    assert entry is not None
    assert (entry.order_id, entry.state, entry.order_sysid, entry.status, entry.traded_qty) == (
        "o-1",
        ACKNOWLEDGED,
        "S1001",
        55,
        100,
    )
    assert reopened.by_remark("o-1") == entry
    assert [e.order_id for e in reopened.in_state(REFUSED)] == ["o-2"]
    assert reopened.in_state(SENDING, SENT) == []
    reopened.close()


def test_a_renumbered_id_moves_to_its_order_and_leaves_the_old_holder_without_one(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    for n in (1, 2):
        journal.begin(**{**ORDER, "order_id": f"o-{n}", "remark": f"o-{n}"})
    assert journal.acknowledged("o-1", 1001, "S1001") is None
    assert journal.acknowledged("o-2", 1002, "S1002") is None
    # MiniQMT restarted and renumbered: o-2 is now 1001 (qmt_order_id is UNIQUE: o-1 gives it up)
    assert journal.acknowledged("o-2", 1001, "S1002") == "o-1"
    moved, displaced = journal.get("o-2"), journal.get("o-1")
    assert moved is not None and displaced is not None
    assert (moved.qmt_order_id, moved.order_sysid, moved.state) == (1001, "S1002", ACKNOWLEDGED)
    assert (displaced.qmt_order_id, displaced.order_sysid, displaced.state) == (None, "S1001", ACKNOWLEDGED)
    assert journal.by_qmt_order_id(1001) == moved and journal.by_qmt_order_id(1002) is None
    assert journal.by_sysid("S1001", "600000.SH") == displaced and journal.by_sysid("S9", "600000.SH") is None
    journal.close()


def test_the_same_contract_number_on_sh_and_sz_names_each_exchange_s_own_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.begin(**ORDER)  # 600000.SH
    journal.begin(**{**ORDER, "order_id": "o-2", "remark": "o-2", "ts_code": "000001.SZ"})
    journal.acknowledged("o-1", 1001, "100")
    journal.acknowledged("o-2", 1002, "100")  # the SZ counter numbers its orders apart from SH's
    sh, sz = journal.by_sysid("100", "600000.SH"), journal.by_sysid("100", "000001.SZ")
    assert (sh.order_id if sh else None, sz.order_id if sz else None) == ("o-1", "o-2")
    assert journal.by_sysid("100", "600001.SH") is None
    assert sorted(e.order_id for e in journal.all_by_sysid("100")) == ["o-1", "o-2"]
    journal.close()


def test_a_lost_order_is_final_junk_with_nothing_filled_and_no_miniqmt_id(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.begin(**ORDER)
    journal.acknowledged("o-1", 1004)
    journal.lost("o-1")
    entry = journal.get("o-1")
    assert entry is not None
    assert (entry.state, entry.status, entry.status_msg, entry.traded_qty, entry.qmt_order_id) == (
        LOST,
        57,
        LOST_MESSAGE,
        0,
        None,
    )
    assert LOST_MESSAGE == "MiniQMT lost the order in a restart"
    journal.close()
