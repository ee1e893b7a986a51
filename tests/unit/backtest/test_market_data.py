"""The worker's reads from the data service: bulk Arrow bars into the engine's layout, the on-disk cache per data
version with its size cap, retries, and universe resolution; and the progress event's arithmetic."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx
import pytest

from services.backtest.events import backtest_progress
from shared.platform.http import ServiceClient
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.platform.market_data import BarsUnavailable, MarketData, engine_frame
from tests.integration.backtest.fakes import D1, D4, FakeData

SECRET = "unit-test-secret-unit-test-secret"


def _files(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


def _market(fake: FakeData, cache: Path, **kwargs: object) -> MarketData:
    client = ServiceClient("data", "http://data", transport=httpx.ASGITransport(app=fake.app()))

    def headers() -> dict[str, str]:
        return {INTERNAL_HEADER: mint_internal_token(SECRET, Principal("svc:backtest", "service"))}

    return MarketData(client, headers, cache, backoff_s=0.0, **kwargs)  # type: ignore[arg-type]


async def test_bulk_bars_become_the_engines_tushare_layout(tmp_path: Path) -> None:
    market = _market(FakeData(SECRET), tmp_path)
    frame = engine_frame(await market.bars(["300750.SZ", "000001.SZ"], D1, D4))
    # 000001.SZ on D1: open 10.50 CNY, vol 1,234,500 shares = 12,345 lots, amount 12,345,678.90 CNY = 12,345.6789
    # thousand CNY; 300750.SZ has no bar on D3 (suspended): 4 + 3 rows.
    first = frame[(frame["ts_code"] == "000001.SZ")].iloc[0]
    assert (first["open"], first["close"], first["pre_close"]) == (10.50, 10.60, 10.45)
    assert first["vol"] == 12_345.0 and first["amount"] == pytest.approx(12_345.6789, abs=1e-9)
    assert first["trade_date"].date() == D1 and first["adj_factor"] == 1.0
    assert sorted(frame.groupby("ts_code").size().items()) == [("000001.SZ", 4), ("300750.SZ", 3)]


async def test_the_cache_keeps_one_file_per_version_and_query_within_its_cap(tmp_path: Path) -> None:
    fake = FakeData(SECRET)
    market = _market(fake, tmp_path)
    await market.bars(["000001.SZ"], D1, D4)
    await market.bars(["000001.SZ"], D1, D4)
    assert market.downloads == 1 and len(_files(tmp_path, "bars-v1-*.arrow")) == 1
    fake.version = 2
    await market.bars(["000001.SZ"], D1, D4)
    assert market.downloads == 2 and len(_files(tmp_path, "bars-v2-*.arrow")) == 1

    one_file = _files(tmp_path, "bars-v2-*.arrow")[0].stat().st_size
    capped = _market(fake, tmp_path, cache_max_bytes=one_file)  # room for the newest answer only
    await capped.bars(["600519.SH"], D1, D4)
    assert [p.name.startswith("bars-v2-") for p in _files(tmp_path, "bars-v*.arrow")] == [True]
    assert not _files(tmp_path, "*.part")


async def test_an_outage_is_retried_then_reported(tmp_path: Path) -> None:
    fake = FakeData(SECRET)
    fake.fail_next = 3
    market = _market(fake, tmp_path, attempts=4)
    assert len(await market.bars(["000001.SZ"], D1, D4)) == 4
    fake.fail_next = 2
    with pytest.raises(BarsUnavailable, match=r"^data_unavailable: .* after 2 attempts"):
        await _market(fake, tmp_path / "other", attempts=2).bars(["000001.SZ"], D1, D4)


async def test_universes_resolve_through_the_data_service(tmp_path: Path) -> None:
    market = _market(FakeData(SECRET), tmp_path)
    assert await market.index_constituents("000300.SH", D1) == ["000001.SZ", "600519.SH"]
    everything = await market.filtered_securities(
        on=D1, board=None, industry=None, exclude_st=False, listed_before=date(2010, 1, 1)
    )
    assert everything == ["000001.SZ", "600036.SH", "600519.SH"]  # 300750.SZ listed in 2018
    assert await market.index_bars("000905.SH", D1, D4) is None
    bench = await market.index_bars("000300.SH", D1, D4)
    assert bench is not None and bench["close"].tolist() == [3500.0, 3535.0, 3510.0, 3600.0]


def test_progress_reports_percent_and_eta_from_the_pace_so_far() -> None:
    # 60 of 240 days in 3 s: 25%, and 180 days left at 20 days a second: 9 s.
    event = backtest_progress("bt", owner="alice", days_done=60, days=240, elapsed_s=3.0)
    assert event.type == "backtest.progress"
    assert event.payload == {
        "backtest_id": "bt", "owner": "alice", "percent": 25.0, "eta_s": 9.0, "days_done": 60, "days": 240,
    }  # fmt: skip


async def test_two_downloads_of_one_answer_at_once_both_get_it_and_old_partials_are_removed(tmp_path: Path) -> None:
    import asyncio
    import os
    import time

    left_by_a_killed_worker = tmp_path / "bars-v1-0123.arrow.999-dead.part"
    left_by_a_killed_worker.write_bytes(b"half an answer")
    two_hours_ago = time.time() - 7200
    os.utime(left_by_a_killed_worker, (two_hours_ago, two_hours_ago))
    market = _market(FakeData(SECRET), tmp_path)
    # One process, two consumers (a backtest and an optimisation task) asking for the same answer at the same time.
    first, second = await asyncio.gather(market.bars(["000001.SZ"], D1, D4), market.bars(["000001.SZ"], D1, D4))
    assert first.num_rows == second.num_rows == 4
    assert not _files(tmp_path, "*.part")


def test_a_missing_adj_factor_keeps_the_symbols_last_one() -> None:
    import pyarrow as pa

    table = pa.table(
        {
            "ts_code": ["600000.SH", "600000.SH", "600000.SH", "000001.SZ"],
            "trade_date": pa.array([date(2024, 1, 2), date(2024, 1, 4), date(2024, 1, 3), date(2024, 1, 2)]),
            "open": [1000, 1000, 1000, 900], "high": [1000, 1000, 1000, 900], "low": [1000, 1000, 1000, 900],
            "close": [1000, 1000, 1000, 900], "pre_close": [1000, 1000, 1000, 900],
            "vol": [100, 100, 100, 100], "amount": [100000, 100000, 100000, 90000],
            "adj_factor": [5.2, None, 5.3, None],
        }
    )  # fmt: skip
    frame = engine_frame(table)
    # 600000.SH on 01-04 (third by date) keeps 01-03's 5.3, not 1; 000001.SZ never had one: 1.
    assert frame["adj_factor"].tolist() == [5.2, 5.3, 5.3, 1.0]


def test_daily_basic_columns_go_to_the_engine_in_tushares_units() -> None:
    import math

    import pyarrow as pa

    table = pa.table(
        {
            "ts_code": ["600000.SH", "600000.SH"], "trade_date": pa.array([date(2024, 1, 2), date(2024, 1, 3)]),
            "open": [1000, 1010], "high": [1000, 1010], "low": [1000, 1010], "close": [1000, 1010],
            "pre_close": [990, 1000], "vol": [100, 100], "amount": [100000, 101000], "adj_factor": [1.0, 1.0],
            "pe_ttm": pa.array([12.3456, None], pa.float64()), "pb": [0.8123, 0.8204],
            "free_share": pa.array([123_456_789, None], pa.int64()),  # shares
            "total_mv": pa.array([7_654_321_000, 7_730_864_210], pa.int64()),  # fen
        }
    )  # fmt: skip
    frame = engine_frame(table)
    # Tushare: ratios as given; free_share in 万股 (shares / 10,000); total_mv in 万元 (fen / 1,000,000); none: NaN.
    assert frame["pe_ttm"].iloc[0] == 12.3456 and math.isnan(frame["pe_ttm"].iloc[1])
    assert frame["pb"].tolist() == [0.8123, 0.8204]
    assert frame["free_share"].iloc[0] == pytest.approx(12_345.6789, abs=1e-9) and math.isnan(
        frame["free_share"].iloc[1]
    )
    assert frame["total_mv"].tolist() == pytest.approx([7_654.321, 7_730.86421], abs=1e-9)
