"""Tushare units to storage units, exactly: CNY -> fen, lots -> shares, thousand CNY -> fen."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from services.data.demo import generate_demo_market
from services.data.loader import (
    ConversionError,
    adj_factor_decimal,
    calendar_rows,
    daily_bar_rows,
    exact_scaled,
    lots_to_shares,
    price_to_fen,
    thousand_cny_to_fen,
    tushare_date,
)
from services.data.units import stk_limit_columns
from shared.platform.settings import Settings


def test_prices_to_fen_without_float_surprises() -> None:
    assert int(19.99 * 100) == 1998  # the trap
    assert price_to_fen(19.99) == 1999
    assert price_to_fen(0.07) == 7  # 0.07 * 100 = 7.000000000000001
    assert price_to_fen(np.float64(1234.56)) == 123456
    assert price_to_fen("8.1") == 810
    assert price_to_fen(Decimal("3.00")) == 300
    with pytest.raises(ConversionError, match="tick"):
        price_to_fen(10.005)
    with pytest.raises(ConversionError):
        price_to_fen(float("nan"))
    with pytest.raises(ConversionError):
        price_to_fen(None)


def test_lots_to_shares() -> None:
    assert lots_to_shares(1234.0) == 123_400
    assert lots_to_shares(1234.56) == 123_456  # STAR/BSE odd shares: 2 decimals of a lot
    assert lots_to_shares(0.29) == 29  # 0.29 * 100 = 28.999999999999996
    with pytest.raises(ConversionError):
        lots_to_shares(1.234)  # 123.4 shares
    with pytest.raises(ConversionError):
        lots_to_shares(-1.0)


def test_thousand_cny_to_fen_rounds_half_up() -> None:
    # 12,345.678 thousand CNY = 12,345,678 CNY = 1,234,567,800 fen
    assert thousand_cny_to_fen(12345.678) == 1_234_567_800
    assert thousand_cny_to_fen(0.001) == 100  # 1 CNY
    assert thousand_cny_to_fen(1.1) == 110_000  # 1.1 * 100000 = 110000.00000000001
    # More digits than Tushare's usual 3: 1.0000045 thousand CNY = 100000.45 fen -> 100000; .5 -> up
    assert thousand_cny_to_fen("1.0000045") == 100_000
    assert thousand_cny_to_fen("1.000005") == 100_001
    assert thousand_cny_to_fen(Decimal("0.000015")) == 2
    with pytest.raises(ConversionError):
        thousand_cny_to_fen(-5.0)


def test_adj_factor_and_dates() -> None:
    assert adj_factor_decimal(1.311553) == Decimal("1.311553")
    assert adj_factor_decimal("2.1234565") == Decimal("2.123457")  # half-up at 6 decimals
    with pytest.raises(ConversionError):
        adj_factor_decimal(0)
    assert tushare_date("20240229") == date(2024, 2, 29)
    for bad in ("2024-02-29", "20230229", "2024022"):
        with pytest.raises(ConversionError):
            tushare_date(bad)


def test_a_tushare_frame_converts_to_storage_units_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "ts_code": ["600519.SH", "688981.SH"],
            "trade_date": ["20240102", "20240103"],
            "open": [1715.0, 52.4],
            "high": [1718.19, 53.01],
            "low": [1678.1, 51.66],
            "close": [1685.01, 52.29],
            "pre_close": [1726.0, 52.4],
            "change": [-40.99, -0.11],
            "pct_chg": [-2.3749, -0.2099],
            "vol": [32155.96, 423562.17],
            "amount": [5452672.753, 2214735.661],
            "adj_factor": [8.4158, 1.0],
        }
    )
    rows = daily_bar_rows(frame)
    assert rows == [
        {
            "ts_code": "600519.SH",
            "trade_date": date(2024, 1, 2),
            "open": 171_500,
            "high": 171_819,
            "low": 167_810,
            "close": 168_501,
            "pre_close": 172_600,
            "vol": 3_215_596,  # 32,155.96 lots of 100
            "amount": 545_267_275_300,  # 5,452,672.753 thousand CNY = 5,452,672,753 CNY
            "adj_factor": Decimal("8.415800"),
        },
        {
            "ts_code": "688981.SH",
            "trade_date": date(2024, 1, 3),
            "open": 5240,
            "high": 5301,
            "low": 5166,
            "close": 5229,
            "pre_close": 5240,
            "vol": 42_356_217,
            "amount": 221_473_566_100,
            "adj_factor": Decimal("1.000000"),
        },
    ]


def test_bad_rows_are_refused_with_their_key() -> None:
    frame = pd.DataFrame(
        {
            "ts_code": ["000001.SZ"],
            "trade_date": ["20240102"],
            "open": [9.39],
            "high": [9.42],
            "low": [9.21],
            "close": [9.215],  # off the tick
            "pre_close": [9.39],
            "vol": [1158366.45],
            "amount": [1075742.252],
        }
    )
    with pytest.raises(ConversionError, match=r"000001\.SZ 20240102 close"):
        daily_bar_rows(frame)
    assert daily_bar_rows(frame.assign(close=[9.21]))[0]["adj_factor"] == Decimal("1.000000")  # no adj_factor: 1
    # Absurd sizes are out of range (not "off the tick" or "not a whole number"), and never overflow int64.
    with pytest.raises(ConversionError, match=r"000001\.SZ 20240102 close: 1000000000000000\.0 is out of range"):
        daily_bar_rows(frame.assign(close=[1e15]))
    with pytest.raises(ConversionError, match=r"000001\.SZ 20240102 vol: 1e\+30 is out of range"):
        daily_bar_rows(frame.assign(close=[9.21], vol=[1e30]))
    with pytest.raises(ConversionError, match="out of range"):
        thousand_cny_to_fen(1e12)


def test_vectorised_path_equals_the_decimal_path() -> None:
    rng = np.random.default_rng(7)
    prices = np.round(rng.uniform(0.01, 3000, 20_000), 2)
    fast, ok = exact_scaled(prices, 100)
    assert all(ok)
    assert fast == [price_to_fen(float(p)) for p in prices]
    amounts = np.round(rng.uniform(0, 5e7, 20_000), 3)
    fast, ok = exact_scaled(amounts, 100_000)
    assert all(ok)
    assert fast == [thousand_cny_to_fen(float(a)) for a in amounts]
    # Values that are not exactly on the grid are left for the Decimal path, never guessed.
    _, ok = exact_scaled(np.array([10.005, np.nan, 0.1 + 0.2, 1e300]), 100)
    assert ok == [False, False, False, False]
    _, ok = exact_scaled(np.array(["1.00"], dtype=object), 100)
    assert ok == [False]


def test_the_whole_demo_frame_converts_like_the_scalar_functions() -> None:
    market = generate_demo_market(Settings(demo_symbols=12))
    rows = daily_bar_rows(market.daily)
    for row, src in zip(rows, market.daily.itertuples(index=False), strict=True):
        assert row["close"] == price_to_fen(src.close)
        assert row["pre_close"] == price_to_fen(src.pre_close)
        assert row["vol"] == lots_to_shares(src.vol)
        assert row["amount"] == thousand_cny_to_fen(src.amount)
        assert row["adj_factor"] == adj_factor_decimal(src.adj_factor)


def test_calendar_rows_mark_every_day() -> None:
    rows = calendar_rows(date(2024, 2, 8), date(2024, 2, 19))
    assert [r["cal_date"] for r in rows if r["is_open"]] == [date(2024, 2, 8), date(2024, 2, 19)]  # Spring Festival
    assert len(rows) == 12 and {r["exchange"] for r in rows} == {"SSE"}


def test_stk_limit_keeps_the_days_reference_price_in_fen_where_given() -> None:
    frame = pd.DataFrame(
        {
            "trade_date": ["20250304"] * 3, "ts_code": ["600000.SH", "000001.SZ", "300001.SZ"],
            "up_limit": [10.45, 12.1, 24.0], "down_limit": [8.55, 9.9, 16.0], "pre_close": [9.5, 11.0, None],
        }
    )  # fmt: skip
    columns = stk_limit_columns(frame)
    # 9.50 CNY = 950 fen, 11.00 = 1100; an empty one stays empty (None), never 0
    assert columns["pre_close"].tolist() == [950, 1100, None]
    assert columns["up_limit"].tolist() == [1045, 1210, 2400]
    # a frame without the column leaves the stored pre_close as it is: no column to write
    assert "pre_close" not in stk_limit_columns(frame.drop(columns=["pre_close"]))


@pytest.mark.parametrize(("pre_close", "why"), [(9.505, "tick"), (0.0, "positive"), (-1.0, "positive")])
def test_stk_limit_refuses_a_reference_price_off_the_tick_or_not_positive(pre_close: float, why: str) -> None:
    frame = pd.DataFrame(
        {"trade_date": ["20250304"], "ts_code": ["600000.SH"], "up_limit": [10.45], "down_limit": [8.55],
         "pre_close": [pre_close]}
    )  # fmt: skip
    with pytest.raises(ConversionError, match=why):
        stk_limit_columns(frame)
