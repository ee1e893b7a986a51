"""qfq/hfq arithmetic on integer fen, and the bulk answer built from a snapshot, checked against hand-worked values."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from services.data.adjust import Adjust, adjusted, adjusted_text
from services.data.bulk import BulkQuery, _read_snapshot, _write_snapshot, answer_table


def test_hfq_is_price_times_factor_rounded_half_up_to_4_decimals() -> None:
    # 10.00 x 1.5 = 15.0000; 7.01 x 1.333333 = 9.34666433 -> 9.3467; 0.01 x 1.23455 = 0.0123455 -> 0.0123
    units = adjusted(np.array([1000, 701, 1]), np.array([1_500_000, 1_333_333, 1_234_550]), None)
    assert [adjusted_text(int(u)) for u in units] == ["15.0000", "9.3467", "0.0123"]
    # An exact half: 0.05 x 1.00001 = 0.0500005 -> 0.0500 (below half); 0.15 x 1.00005 = 0.1500075 -> 0.1500;
    # 1.25 x 1.00004 = 1.25005 exactly -> half-up -> 1.2501
    units = adjusted(np.array([5, 15, 125]), np.array([1_000_010, 1_000_050, 1_000_040]), None)
    assert [adjusted_text(int(u)) for u in units] == ["0.0500", "0.1500", "1.2501"]


def test_qfq_divides_by_the_anchor_factor() -> None:
    # 10.00 x 1 / 1.5 = 6.6666.. -> 6.6667; 10.50 x 1 / 1.5 = 7.0000; 7.01 x 1.5 / 1.5 = 7.0100
    units = adjusted(np.array([1000, 1050, 701]), np.array([10**6, 10**6, 1_500_000]), np.full(3, 1_500_000))
    assert [adjusted_text(int(u)) for u in units] == ["6.6667", "7.0000", "7.0100"]
    with pytest.raises(ValueError):
        adjusted(np.array([1000]), np.array([10**6]), np.array([0]))


def test_huge_values_take_the_exact_python_path() -> None:
    units = adjusted(np.array([10**9]), np.array([10**12]), None)  # 10,000,000 CNY x 1,000,000
    assert adjusted_text(int(units[0])) == "10000000000000.0000"


def _snapshot(tmp_path: Path) -> Path:
    # Two symbols, sorted by code then date; 000002.SZ goes ex on day 3 (factor 1 -> 2).
    days = [(date(2025, 3, d) - date(1970, 1, 1)).days for d in (3, 4, 5)]
    columns = {
        "ts_code": np.array(["000002.SZ"] * 3 + ["600000.SH"] * 2, dtype=object),
        "trade_date": np.array(days + days[:2], dtype=np.int32),
        "open": np.array([1000, 1100, 560, 800, 810]),
        "high": np.array([1010, 1110, 570, 805, 815]),
        "low": np.array([990, 1090, 550, 795, 800]),
        "close": np.array([1000, 1100, 560, 801, 811]),
        "pre_close": np.array([990, 1000, 550, 800, 801]),
        "vol": np.array([100, 200, 300, 400, 500]),
        "amount": np.array([10_000, 20_000, 30_000, 40_000, 50_000]),
        "adj_factor": np.array([10**6, 10**6, 2 * 10**6, 10**6, 10**6]),
    }
    path = tmp_path / "market.arrow"
    _write_snapshot(columns, path)
    return path


def test_bulk_answer_selects_and_adjusts(tmp_path: Path) -> None:
    snapshot = _read_snapshot(_snapshot(tmp_path))
    plain = answer_table(snapshot, BulkQuery("arrow", None, None, None, Adjust.NONE, None), {}, 7)
    assert plain.column("ts_code").to_pylist() == ["000002.SZ"] * 3 + ["600000.SH"] * 2
    assert plain.column("close").to_pylist() == [1000, 1100, 560, 801, 811]
    assert plain.schema.metadata[b"data_version"] == b"7"

    one = BulkQuery("arrow", date(2025, 3, 4), date(2025, 3, 5), ("000002.SZ",), Adjust.QFQ, None)
    qfq = answer_table(snapshot, one, {}, 7)
    # Anchored at the range's end (factor 2): 11.00 x 1 / 2 = 5.50, 5.60 x 2 / 2 = 5.60
    assert qfq.column("close").to_pylist() == [5.5, 5.6]
    assert qfq.column("trade_date").to_pylist() == [date(2025, 3, 4), date(2025, 3, 5)]

    # Anchored before the ex-date (factor 1): the old prices stand, the new ones double.
    early = answer_table(snapshot, BulkQuery("arrow", None, None, None, Adjust.QFQ, date(2025, 3, 3)), {}, 7)
    assert early.column("close").to_pylist() == [10.0, 11.0, 11.2, 8.01, 8.11]
    # A factor from Tushare's feed overrides the bars' (a suspended anchor day): 4 for 000002.SZ.
    fed = answer_table(snapshot, BulkQuery("arrow", None, None, None, Adjust.QFQ, None), {"000002.SZ": 4 * 10**6}, 7)
    assert fed.column("close").to_pylist()[:3] == [2.5, 2.75, 2.8]
    hfq = answer_table(snapshot, BulkQuery("arrow", None, None, ("600000.SH",), Adjust.HFQ, None), {}, 7)
    assert hfq.column("close").to_pylist() == [8.01, 8.11]
