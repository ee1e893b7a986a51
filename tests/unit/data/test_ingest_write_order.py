"""How bulk writes are ordered: every table's rows go to MariaDB in its key order, whatever order they came in (a
day of the whole market, a file sorted by date), so a stock's rows land together on its pages instead of one row
per page (what kept the full-market ingest below 100k rows/s, docs/data-ingest.md). And a backfill's batching
changes nothing that is stored."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import select

from services.data.ingest import IngestOptions, Ingestor, _codes_in
from services.data.providers import DemoProvider
from services.data.store import (
    MIGRATIONS_DIR,
    DataStore,
    adj_factors,
    daily_bars,
    daily_basic,
    driver_rows,
    key_order,
    stk_limits,
)
from shared.platform.db import Database
from shared.platform.settings import Settings

START, END = date(2024, 1, 2), date(2024, 1, 31)  # 22 SSE sessions: 23 weekdays less New Year's Day
D1, D2, D3 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)


def test_rows_of_whole_market_days_are_put_in_stock_then_date_order() -> None:
    # Two days of three stocks as a day's endpoint delivers them: date first, stocks in any order.
    codes = np.array(["600000.SH", "000001.SZ", "300750.SZ", "000001.SZ", "600000.SH", "300750.SZ"], dtype=object)
    days = np.array([D2, D2, D2, D1, D1, D1], dtype=object)
    close = np.array([1020, 1110, 20010, 1100, 1000, 20000], dtype=np.int64)
    columns = {"ts_code": codes, "trade_date": days, "close": close}
    order = key_order(columns, ["ts_code", "trade_date"])
    assert order is not None
    assert [(codes[i], days[i]) for i in order] == [
        ("000001.SZ", D1), ("000001.SZ", D2), ("300750.SZ", D1), ("300750.SZ", D2), ("600000.SH", D1),
        ("600000.SH", D2),
    ]  # fmt: skip
    # The driver gets the rows in that order, batch by batch, every column moved together.
    params = [codes, days, close]
    first, second = driver_rows(params, order, 0, 4), driver_rows(params, order, 4, 6)
    assert first == [("000001.SZ", D1, 1100), ("000001.SZ", D2, 1110), ("300750.SZ", D1, 20000),
                     ("300750.SZ", D2, 20010)]  # fmt: skip
    assert second == [("600000.SH", D1, 1000), ("600000.SH", D2, 1020)]


def test_rows_already_in_key_order_are_left_as_they_are() -> None:
    codes = np.array(["000001.SZ", "000001.SZ", "600000.SH"], dtype=object)
    days = np.array([D1, D3, D1], dtype=object)
    assert key_order({"ts_code": codes, "trade_date": days}, ["ts_code", "trade_date"]) is None
    params = [codes, days]
    assert driver_rows(params, None, 1, 3) == [("000001.SZ", D3), ("600000.SH", D1)]
    # A third key column (suspensions: ts_code, trade_date, suspend_type) orders within the first two.
    kinds = np.array(["S", "R", "S"], dtype=object)
    order = key_order(
        {"ts_code": codes[[0, 0, 2]], "trade_date": days[[0, 0, 2]], "suspend_type": kinds},
        ["ts_code", "trade_date", "suspend_type"],
    )
    assert order is not None and order.tolist() == [1, 0, 2]  # R before S on the same stock and day


class RecordingStore(DataStore):
    """The SQLite store, remembering the bar frames the backfill hands it."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.bar_frames: list[pd.DataFrame] = []

    async def upsert_daily_bars(self, frame: pd.DataFrame) -> int:
        self.bar_frames.append(frame.copy())
        return await super().upsert_daily_bars(frame)


async def backfill(tmp_path: Path, name: str, batch_days: int) -> tuple[RecordingStore, dict[str, list[Any]]]:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{name}.db", demo_symbols=12)
    db = Database(settings.database_url)
    await db.connect()
    await db.migrate(MIGRATIONS_DIR)
    store = RecordingStore(db)
    ingestor = Ingestor(store, DemoProvider(settings), options=IngestOptions(batch_days=batch_days))
    result = await ingestor.backfill(START, END)
    assert result.status == "succeeded", result.error
    stored: dict[str, list[Any]] = {}
    async with db.session() as session:
        for table in (daily_bars, adj_factors, stk_limits, daily_basic):
            rows = await session.execute(select(table).order_by(table.c.ts_code, table.c.trade_date))
            stored[table.name] = [tuple(r) for r in rows.all()]
    await db.dispose()
    return store, stored


async def test_a_backfill_writes_batches_of_days_and_the_batching_changes_nothing_stored(tmp_path: Path) -> None:
    store, stored = await backfill(tmp_path, "b8", batch_days=8)
    assert [frame["trade_date"].nunique() for frame in store.bar_frames] == [8, 8, 6]  # 22 sessions
    _, day_by_day = await backfill(tmp_path, "b1", batch_days=1)
    assert stored == day_by_day
    assert len(stored["daily_bars"]) > 200  # 12 stocks x 22 sessions, less the demo market's halts


def test_the_stock_filter_keeps_exactly_the_covered_codes() -> None:
    codes = pd.Series(["600000.SH", "510300.SH", "000001.SZ", "900901.SH", "000001.SZ"], dtype="string")
    covered = pa.array(["000001.SZ", "600000.SH"], pa.string())
    assert _codes_in(codes, covered).tolist() == [True, False, True, False, True]
    assert _codes_in(codes.astype(object), covered).tolist() == [True, False, True, False, True]


def test_key_values_that_do_not_compare_leave_the_order_as_given() -> None:
    mixed = np.array([pd.Timestamp("2024-01-03"), D1], dtype=object)
    assert key_order(
        {"ts_code": np.array(["A", "A"], dtype=object), "trade_date": mixed}, ["ts_code", "trade_date"]
    ) in (None,)
