"""A round of snapshots read column by column (services/data/realtime/columns.py), worked by hand: the fields in
exact units, each code's book as its JSON with its lowest and highest price, the same result whether the round is
read by columns or (a snapshot that does not read so) one by one, and the checks against the day's stored band made
over the round at once."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import numpy as np

from services.data.realtime import columns
from services.data.realtime.bars import MinuteBars
from services.data.realtime.columns import NO_LEVEL, band_refusals, from_ticks, read_round
from services.data.realtime.snapshots import read_snapshot
from shared.platform.clock import EXCHANGE_TZ

TIME = "2024-12-31T09:30:03+08:00"


def raw(code: str = "600000.SH", **kw: Any) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "ts_code": code,
        "time": TIME,
        "last": "10.050",
        "open": "10.020",
        "high": "10.050",
        "low": "9.980",
        "pre_close": "10.000",
        "amount": "150450.00",
        "volume_lots": 150,
        "bid": [["10.040", 12], ["10.030", 5], ["0", 0], ["0", 0], ["0", 0]],
        "ask": [["10.050", 7], ["10.060", 30], ["10.070", 1], ["0", 0], ["0", 0]],
    }
    snapshot.update(kw)
    return snapshot


def warm(*snapshots: dict[str, Any]) -> None:
    """The codes and price texts read once (a round after the first reads them by one lookup each)."""
    for snapshot in snapshots:
        read_snapshot(snapshot)


def test_a_common_round_is_read_into_columns_in_exact_units() -> None:
    first = raw()
    second = raw(
        "000001.SZ", last="12.000", open=None, high="0", low=None, pre_close="11.900", amount="0", volume_lots=0,
        bid=[[None, 0], ["11.990", 3]], ask=[],
    )  # fmt: skip
    warm(first, second)
    read, refused = read_round([first, second])
    assert refused == []
    assert read.codes == ["600000.SH", "000001.SZ"]
    assert read.times == [datetime(2024, 12, 31, 9, 30, 3, tzinfo=EXCHANGE_TZ)] * 2
    assert read.time_texts == [TIME, TIME]
    assert read.last == [1005, 1200]
    assert (read.open, read.high, read.low) == ([1002, 0], [1005, 0], [998, 0])  # none: 0
    assert read.pre_close == [1000, 1190]
    assert read.volume == [15_000, 0]  # lots of 100 shares
    assert read.amount == [15_045_000, 0]
    # empty levels (["0", 0], a null price) left out; volumes in shares
    assert json.loads(f"[{read.bid_json[0]}]") == [
        {"price": "10.04", "volume": 1200},
        {"price": "10.03", "volume": 500},
    ]
    assert json.loads(f"[{read.ask_json[0]}]") == [
        {"price": "10.05", "volume": 700},
        {"price": "10.06", "volume": 3000},
        {"price": "10.07", "volume": 100},
    ]
    assert (read.bid_json[1], read.ask_json[1]) == ('{"price":"11.99","volume":300}', "")
    assert read.book_low.tolist() == [1003, 1199]  # lowest level price, bid and ask
    assert read.book_high.tolist() == [1007, 1199]


def test_a_round_that_does_not_read_by_columns_is_read_one_by_one_with_the_same_results() -> None:
    good = raw()
    new_code = raw("600004.SH")  # a code not read before: the round is read snapshot by snapshot
    malformed = raw("600005.SH", last=10.05)  # a float: refused as malformed, by read_snapshot's reason
    zero = raw("600006.SH", last="0")
    warm(good)
    read, refused = read_round([good, new_code, malformed, zero])
    assert read.codes == ["600000.SH", "600004.SH"]
    assert [(snapshot["ts_code"], exc.reason) for snapshot, exc in refused] == [
        ("600005.SH", "malformed"),
        ("600006.SH", "negative_price"),
    ]
    # the columns of the one-by-one reading are those of the columns' reading
    again, none = read_round([good, new_code])  # both known now: read by columns
    assert none == []
    assert again.codes == read.codes
    for field in ("times", "last", "open", "high", "low", "pre_close", "volume", "amount", "bid_json", "ask_json"):
        assert getattr(again, field) == getattr(read, field), field
    assert again.book_low.tolist() == read.book_low.tolist() == [1003, 1003]
    assert again.book_high.tolist() == read.book_high.tolist() == [1007, 1007]


def test_a_snapshot_refused_in_a_round_of_known_codes_is_refused_with_its_reason() -> None:
    good, other = raw(), raw("000001.SZ")
    warm(good, other)
    inconsistent = raw("000001.SZ", last="10.060")  # above its high 10.05
    read, refused = read_round([good, inconsistent])
    assert read.codes == ["600000.SH"]
    assert [(s["ts_code"], exc.reason) for s, exc in refused] == [("000001.SZ", "inconsistent")]
    _, refused = read_round([good, raw("000001.SZ", volume_lots=-1)])
    assert [exc.reason for _, exc in refused] == ["negative_price"]
    _, refused = read_round([good, raw("000001.SZ", bid=[["10.040", True]])])
    assert [exc.reason for _, exc in refused] == ["malformed"]
    _, refused = read_round([good, raw("000001.SZ", time="2024-12-31T09:30:03")])  # no offset
    assert [exc.reason for _, exc in refused] == ["malformed"]


def test_no_levels_leave_the_book_bounds_outside_every_band() -> None:
    snapshot = raw(bid=[["0", 0]], ask=[])
    warm(snapshot)
    read, _ = read_round([snapshot])
    assert (read.bid_json, read.ask_json) == ([""], [""])
    assert (read.book_low.tolist(), read.book_high.tolist()) == ([NO_LEVEL], [0])
    assert from_ticks([read_snapshot(snapshot)]).book_low.tolist() == [NO_LEVEL]


def test_band_refusals_worked_by_hand() -> None:
    # Each code's band: reference 10.00, limits 9.00 .. 11.00 (fen), unless said otherwise.
    band = (1000, 900, 1100)
    cases = [
        (raw(), band, None),  # every price within
        (raw(pre_close="9.990"), band, "pre_close_mismatch"),  # pre_close is not the stored reference
        (raw(pre_close="9.990", last="11.010", high="11.010"), band, "pre_close_mismatch"),  # the mismatch first
        (raw(last="11.010", high="11.010"), band, "outside_limits"),  # last above 11.00
        (raw(last="11.000", high="11.000"), band, None),  # at the limit: within
        (raw(open="8.990", low="8.990"), band, "outside_limits"),  # open and low below 9.00
        (raw(open=None, low=None, high=None), band, None),  # no trade yet: no open/high/low to check
        (raw(bid=[["8.990", 1]]), band, "outside_limits"),  # a bid level below 9.00
        (raw(ask=[["11.010", 1]]), band, "outside_limits"),  # an ask level above 11.00
        (raw(ask=[["11.010", 0]]), band, None),  # nobody at that level: left out, not checked
        (raw(last="11.010", high="11.010"), None, None),  # no band: nothing to check here
        (raw(last="11.010", high="11.010"), (None, None, None), None),  # no stored close
        (raw(last="11.010", high="11.010"), (1000, None, None), None),  # a day without limits
        (raw(pre_close="9.990"), (1000, None, None), "pre_close_mismatch"),  # ... its reference still checked
    ]
    snapshots = [
        raw(f"600{i:03d}.SH", **{k: v for k, v in s.items() if k != "ts_code"}) for i, (s, _, _) in enumerate(cases)
    ]
    warm(*snapshots)
    read, refused = read_round(snapshots)
    assert refused == [] and len(read.codes) == len(cases)
    assert band_refusals(read, [b for _, b, _ in cases]) == [why for _, _, why in cases]


def test_band_refusals_of_prices_beyond_64_bits_are_exact() -> None:
    huge = "100000000000000000000.000"  # 10^22 fen: no market's, but the reading takes it: compared exactly
    snapshot = raw("600100.SH", last=huge, high=huge, ask=[[huge, 1]])
    read, refused = read_round([snapshot])
    assert refused == [] and read.last == [10**22]
    assert band_refusals(read, [(1000, 900, 1100)]) == ["outside_limits"]
    assert band_refusals(read, [(1000, None, None)]) == [None]


def test_the_json_helpers_write_prices_and_levels() -> None:
    assert columns.json_price(1005) == '"10.05"'
    assert columns.json_price(None) == "null"
    assert columns.json_price(50) == '"0.50"'
    assert columns.levels_json([(1004, 1200), (99, 300)]) == (
        '{"price":"10.04","volume":1200},{"price":"0.99","volume":300}'
    )
    assert columns.levels_json([]) == ""


def test_a_minute_bar_from_values_is_the_one_from_ticks() -> None:
    by_tick, by_value = MinuteBars(), MinuteBars()
    day = date(2024, 12, 31)
    for hms, last, lots in (("09:30:03", "10.050", 150), ("09:30:40", "10.100", 160), ("09:31:01", "10.000", 170)):
        snapshot = raw(time=f"{day.isoformat()}T{hms}+08:00", last=last, high="10.100", volume_lots=lots)
        tick = read_snapshot(snapshot)
        closed = by_tick.add(tick)
        assert by_value.add_quote(tick.ts_code, tick.time, tick.last, tick.volume, tick.amount) == closed
    assert closed is not None
    # 09:30's bar: open 10.05, high 10.10, low 10.05, close 10.10, 16,000 shares from the day's start
    assert (closed.open, closed.high, closed.low, closed.close, closed.volume) == (1005, 1010, 1005, 1010, 16_000)


def test_from_ticks_of_nothing_is_an_empty_round() -> None:
    read, refused = read_round([])
    assert read.codes == [] and refused == [] and band_refusals(read, []) == []
    assert isinstance(read.book_low, np.ndarray)


def test_a_volume_whose_shares_overflow_64_bits_is_read_exactly_one_by_one() -> None:
    huge = 2**63 // 100 + 1  # lots: x 100 shares is past int64's largest (numpy would wrap it to a negative)
    first, second = raw(), raw("000001.SZ", volume_lots=huge, bid=[["11.990", huge]])
    warm(first, raw("000001.SZ"))
    read, refused = read_round([first, second])
    assert refused == []
    assert read.volume == [15_000, huge * 100]  # Python's exact integer, as read_snapshot gives it
    assert json.loads(f"[{read.bid_json[1]}]") == [{"price": "11.99", "volume": huge * 100}]
