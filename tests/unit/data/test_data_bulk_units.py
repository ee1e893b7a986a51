"""Tushare frames to storage columns in bulk (daily_basic, limits, suspensions, ST periods, index data), and the
full-market generator's exchange arithmetic."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from services.data.demo import generate_bulk_market, weekday_calendar
from services.data.units import (
    ConversionError,
    daily_bar_columns,
    daily_basic_columns,
    security_columns,
    st_period_columns,
    stk_limit_columns,
    suspension_columns,
)


def test_daily_basic_units_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "ts_code": ["600519.SH", "688981.SH"], "trade_date": ["20240102", "20240102"], "close": [1685.01, 52.3],
            "turnover_rate": [0.2563, 1.1], "turnover_rate_f": [0.6514, None], "volume_ratio": [1.1, np.nan],
            "pe": [32.1562, None], "pe_ttm": [30.5, None], "pb": [10.2, 3.3], "ps": [15.1, 8.0], "ps_ttm": [14.9, 7.7],
            "dv_ratio": [1.5542, None], "dv_ttm": [2.0, None],
            "total_share": [125619.78, 794612.9012], "float_share": [125619.78, 198412.3], "free_share": [None, 1.0],
            "total_mv": [211673892.4453, 41558254.7], "circ_mv": [211673892.4453, 10377.0001],
        }
    )  # fmt: skip
    out = daily_basic_columns(frame)
    # 万股 -> shares: 125,619.78 x 10,000 = 1,256,197,800; 794,612.9012 x 10,000 = 7,946,129,012
    assert out["total_share"].tolist() == [1_256_197_800, 7_946_129_012]
    assert out["free_share"].tolist() == [None, 10_000]
    # 万元 -> fen: 211,673,892.4453 x 1,000,000 = 211,673,892,445,300; 10,377.0001 x 10^6 = 10,377,000,100
    assert out["total_mv"].tolist() == [211_673_892_445_300, 41_558_254_700_000]
    assert out["circ_mv"].tolist()[1] == 10_377_000_100
    assert out["pe"].tolist() == [32.1562, None] and out["volume_ratio"].tolist() == [1.1, None]
    assert [d.isoformat() for d in out["trade_date"]] == ["2024-01-02"] * 2
    bad = frame.assign(pb=["x", 3.3])
    with pytest.raises(ConversionError, match=r"600519\.SH 20240102 pb"):
        daily_basic_columns(bad)


def test_limits_suspensions_and_st_periods() -> None:
    limits = stk_limit_columns(pd.DataFrame({"trade_date": ["20240102"], "ts_code": ["000001.SZ"], "up_limit": [10.12],
                                             "down_limit": [8.28]}))  # fmt: skip
    assert (limits["up_limit"].tolist(), limits["down_limit"].tolist()) == ([1012], [828])
    with pytest.raises(ConversionError, match="tick"):
        stk_limit_columns(pd.DataFrame({"trade_date": ["20240102"], "ts_code": ["000001.SZ"], "up_limit": [10.125],
                                        "down_limit": [8.28]}))  # fmt: skip
    halts = suspension_columns(pd.DataFrame({"ts_code": ["000001.SZ"], "trade_date": ["20240102"],
                                             "suspend_timing": [None], "suspend_type": ["S"]}))  # fmt: skip
    assert halts["suspend_type"].tolist() == ["S"] and halts["suspend_timing"].tolist() == [None]
    with pytest.raises(ConversionError, match="suspend_type"):
        suspension_columns(pd.DataFrame({"ts_code": ["000001.SZ"], "trade_date": ["20240102"], "suspend_type": ["X"]}))
    names = pd.DataFrame(
        {
            "ts_code": ["600001.SH"] * 3, "name": ["老名字", "*ST老名", "ST老名"],
            "start_date": ["20100101", "20200506", "20210601"], "end_date": ["20200505", "20210531", None],
            "ann_date": [None, None, None], "change_reason": ["", "*ST", "摘星"],
        }
    )  # fmt: skip
    st = st_period_columns(names)
    assert st["name"].tolist() == ["*ST老名", "ST老名"]  # only names under special treatment
    assert st["start_date"].tolist() == [date(2020, 5, 6), date(2021, 6, 1)]
    assert st["end_date"].tolist() == [date(2021, 5, 31), None]


def test_securities_from_stock_basic() -> None:
    out = security_columns(pd.DataFrame({"ts_code": ["688981.SH", "000004.SZ"], "name": ["中芯国际", "*ST国华"],
                                         "industry": ["半导体", "软件服务"], "list_date": ["20200716", "19910114"],
                                         "delist_date": [None, None], "list_status": ["L", "L"]}))  # fmt: skip
    assert out["board"].tolist() == ["star", "main"] and out["exchange"].tolist() == ["SH", "SZ"]
    assert out["is_st"].tolist() == [False, True] and out["symbol"].tolist() == ["688981", "000004"]
    with pytest.raises(ConversionError, match="row 0: list_date '1999-11-10'"):
        security_columns(pd.DataFrame({"ts_code": ["600000.SH"], "name": ["浦发银行"], "list_date": ["1999-11-10"]}))


def test_bad_codes_and_dates_are_named() -> None:
    frame = pd.DataFrame({"ts_code": ["600000.SH"], "trade_date": ["20240230"], "open": [1.0], "high": [1.0],
                          "low": [1.0], "close": [1.0], "pre_close": [1.0], "vol": [1.0], "amount": [1.0]})  # fmt: skip
    with pytest.raises(ConversionError, match="20240230"):
        daily_bar_columns(frame)
    with pytest.raises(ConversionError, match="600000"):
        daily_bar_columns(frame.assign(ts_code="600000", trade_date="20240229"))
    with pytest.raises(ConversionError, match="missing column"):
        daily_bar_columns(frame.drop(columns=["amount"]))


def test_the_full_market_generator_keeps_exchange_arithmetic() -> None:
    market = generate_bulk_market(60, 300, seed=7)
    daily = market.daily
    assert weekday_calendar(date(2015, 1, 2), 3) == [date(2015, 1, 2), date(2015, 1, 5), date(2015, 1, 6)]
    assert len(market.securities) == 60 and market.trade_days[0] == date(2015, 1, 5)
    assert len(daily) < 60 * 300  # some symbols are suspended for a while (no rows)
    keys = list(zip(daily["ts_code"].astype(str), daily["trade_date"].astype(str), strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    cols = daily_bar_columns(daily)  # the exact conversion accepts every price: all on the 0.01 tick
    assert (cols["low"] <= np.minimum(cols["open"], cols["close"])).all()
    assert (cols["high"] >= np.maximum(cols["open"], cols["close"])).all() and (cols["low"] > 0).all()
    # Every close within the day's limit around pre_close (20% is the widest but BSE's 30%).
    assert (np.abs(cols["close"] - cols["pre_close"]) <= (cols["pre_close"] * 30 + 50) // 100).all()
    # The backward factor never falls, and where it rises the pre_close is below the previous close.
    frame = pd.DataFrame({k: cols[k] for k in ("ts_code", "close", "pre_close", "adj_factor")})
    same = frame["ts_code"].eq(frame["ts_code"].shift())
    rose = same & (frame["adj_factor"] > frame["adj_factor"].shift())
    assert not (same & (frame["adj_factor"] < frame["adj_factor"].shift())).any()
    assert rose.any() and (frame["pre_close"][rose] < frame["close"].shift()[rose]).all()
    again = generate_bulk_market(60, 300, seed=7)
    pd.testing.assert_frame_equal(again.daily, daily)  # deterministic
