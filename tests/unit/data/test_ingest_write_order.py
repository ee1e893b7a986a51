"""How a backfill writes: each batch of days goes to the store in the tables' key order (ts_code, trade_date), so a
stock's rows of the batch land together on its last page instead of one scattered row per stock per day (what made
the full-market ingest fall below 100k rows/s, docs/data-ingest.md). What is stored does not depend on the batching."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from sqlalchemy import select

from services.data.ingest import IngestOptions, Ingestor, _codes_in
from services.data.providers import DemoProvider
from services.data.store import MIGRATIONS_DIR, DataStore, adj_factors, daily_bars, daily_basic, stk_limits
from shared.db import Database
from shared.settings import Settings

START, END = date(2024, 1, 2), date(2024, 1, 31)  # 22 SSE sessions: 23 weekdays less New Year's Day


class RecordingStore(DataStore):
    """The SQLite store, remembering the frames each per-day upsert was given."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.written: list[tuple[str, pd.DataFrame]] = []

    async def upsert_daily_bars(self, frame: pd.DataFrame) -> int:
        self.written.append(("daily_bars", frame.copy()))
        return await super().upsert_daily_bars(frame)

    async def upsert_adj_factors(self, frame: pd.DataFrame) -> int:
        self.written.append(("adj_factors", frame.copy()))
        return await super().upsert_adj_factors(frame)

    async def upsert_stk_limits(self, frame: pd.DataFrame) -> int:
        self.written.append(("stk_limits", frame.copy()))
        return await super().upsert_stk_limits(frame)

    async def upsert_daily_basic(self, frame: pd.DataFrame) -> int:
        self.written.append(("daily_basic", frame.copy()))
        return await super().upsert_daily_basic(frame)


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


async def test_each_batch_is_written_in_key_order_and_the_batching_changes_nothing_stored(tmp_path: Path) -> None:
    store, stored = await backfill(tmp_path, "b8", batch_days=8)
    bar_writes = [frame for table, frame in store.written if table == "daily_bars"]
    assert len(bar_writes) == 3  # 22 sessions in batches of 8: 8 + 8 + 6
    assert [frame["trade_date"].nunique() for frame in bar_writes] == [8, 8, 6]
    for table, frame in store.written:
        keys = list(zip(frame["ts_code"].astype(str), frame["trade_date"].astype(str), strict=True))
        assert keys == sorted(keys), f"{table} written out of key order"
        assert len(set(keys)) == len(keys)
    _, day_by_day = await backfill(tmp_path, "b1", batch_days=1)
    assert stored == day_by_day
    assert len(stored["daily_bars"]) > 200  # 12 stocks x 22 sessions, less the demo market's halts


def test_the_stock_filter_keeps_exactly_the_covered_codes() -> None:
    codes = pd.Series(["600000.SH", "510300.SH", "000001.SZ", "900901.SH", "000001.SZ"], dtype="string")
    covered = pa.array(["000001.SZ", "600000.SH"], pa.string())
    assert _codes_in(codes, covered).tolist() == [True, False, True, False, True]
    assert _codes_in(codes.astype(object), covered).tolist() == [True, False, True, False, True]
