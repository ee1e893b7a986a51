"""The securities search's pinyin initials (services/data/pinyin.py), on names worked out by hand from a dictionary:
平安银行 píng ān yín háng, 重庆啤酒 chóng qìng pí jiǔ, 长江电力 cháng jiāng diàn lì, 万科A wàn kē A, 朝阳 zhāo/cháo yáng."""

from __future__ import annotations

import pytest

from services.data.pinyin import Candidate, initials, rank, search


@pytest.mark.parametrize(
    ("name", "usual"),
    [
        ("平安银行", "payh"),  # 行 read háng in 银行, not xíng
        ("招商银行", "zsyh"),
        ("重庆啤酒", "cqpj"),  # 重 chóng in 重庆, not zhòng
        ("长江电力", "cjdl"),  # 长 cháng in 长江, not zhǎng
        ("贵州茅台", "gzmt"),
        ("万科A", "wka"),  # Latin letters kept, lower case
        ("*ST华仪", "sthy"),  # the * dropped, ST kept
        ("TCL科技", "tclkj"),
    ],
)
def test_usual_initials(name: str, usual: str) -> None:
    assert initials(name)[0] == usual


def test_other_readings_are_kept_after_the_usual_one() -> None:
    # 朝阳: zhāo yáng (morning sun) and Cháoyáng (the district): both initials find it
    readings = initials("朝阳科技")
    assert readings[0] in ("zykj", "cykj")
    assert {"zykj", "cykj"} <= set(readings)
    assert len(readings) == len(set(readings))


STOCKS = [
    Candidate("000001.SZ", "000001", "平安银行"),
    Candidate("601318.SH", "601318", "中国平安"),
    Candidate("600036.SH", "600036", "招商银行"),
    Candidate("000002.SZ", "000002", "万科A"),
    Candidate("600132.SH", "600132", "重庆啤酒"),
    Candidate("600000.SH", "600000", "浦发银行"),
]


def test_search_by_initials_code_and_name() -> None:
    assert [c.ts_code for c, _ in search("payh", STOCKS, 10)] == ["000001.SZ"]
    assert search("PAYH", STOCKS, 10)[0][1] == "payh"  # case does not matter; the usual initials come along
    # "yh" is inside the initials of every bank: 浦发 (pfyh), 平安 (payh), 招商 (zsyh); ties by code
    assert [c.ts_code for c, _ in search("yh", STOCKS, 10)] == ["000001.SZ", "600000.SH", "600036.SH"]
    # a code: itself first, then the codes it starts
    assert [c.ts_code for c, _ in search("600000", STOCKS, 10)] == ["600000.SH"]
    assert [c.ts_code for c, _ in search("00000", STOCKS, 10)] == ["000001.SZ", "000002.SZ", "600000.SH"]
    # a name: its prefix ranks above a name containing it
    assert [c.ts_code for c, _ in search("平安", STOCKS, 10)] == ["000001.SZ", "601318.SH"]
    assert [c.ts_code for c, _ in search("yh", STOCKS, 2)] == ["000001.SZ", "600000.SH"]
    assert search("xyz", STOCKS, 10) == []
    assert search("   ", STOCKS, 10) == []


def test_rank_orders_code_prefix_initials_and_contains() -> None:
    bank = Candidate("000001.SZ", "000001", "平安银行")
    assert rank("000001", bank) == 0
    assert rank("000001.sz", bank) == 0
    assert rank("0000", bank) == 1
    assert rank("pa", bank) == 2
    assert rank("ba", bank) == 3  # 平 has the rare reading bìng: its initials still find it, ranked lower
    assert rank("ay", bank) == 4
    assert rank("q", bank) is None
