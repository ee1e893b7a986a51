"""The data store's bulk loads (raw asyncmy connections, one commit per span of rows) retry a span that deadlocks,
like every other transaction (issue 10 #9): a real deadlock with another transaction on MariaDB."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, and_, select, text

from services.data.store import DataStore, daily_bars

pytestmark = pytest.mark.integration

CODE = "600100.SH"
DAYS = [d.strftime("%Y%m%d") for d in pd.bdate_range("2025-03-03", periods=40)]
ballast = Table("test_ballast", MetaData(), Column("id", Integer, primary_key=True, autoincrement=True))


def _daily(close: float) -> pd.DataFrame:
    n = len(DAYS)
    return pd.DataFrame(
        {
            "ts_code": [CODE] * n, "trade_date": DAYS, "open": [close] * n, "high": [close] * n, "low": [close] * n,
            "close": [close] * n, "pre_close": [close] * n, "change": [0.0] * n, "pct_chg": [0.0] * n,
            "vol": [1000.0] * n, "amount": [close * 100] * n, "adj_factor": [1.0] * n,
        }
    )  # fmt: skip


def _bar(day: str) -> object:
    return and_(daily_bars.c.ts_code == CODE, daily_bars.c.trade_date == pd.Timestamp(day).date())


async def _writer_waits_for_a_lock(store: DataStore) -> None:
    """Until the writer's INSERT has been running for two polls in a row: 40 rows take well under a poll, so it is
    waiting for the row lock (seeing InnoDB's lock waits needs the PROCESS privilege, which tests do not have)."""
    query = text(
        "SELECT COUNT(*) FROM information_schema.processlist "
        "WHERE db = :db AND command = 'Query' AND info LIKE 'INSERT INTO daily_bars%'"
    )
    seen = 0
    for _ in range(500):
        async with store.db.engine.connect() as conn:
            running = (await conn.execute(query, {"db": store.db.url.database})).scalar_one()
        seen = seen + 1 if running else 0
        if seen == 2:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the bulk writer never waited for the row lock")


async def test_a_bulk_span_that_deadlocks_is_written_again_and_lands_once(store: DataStore) -> None:
    assert await store.upsert_daily_bars(_daily(10.0)) == len(DAYS)
    async with store.db.session() as s:
        await s.run_sync(ballast.metadata.create_all)

    async with store.db.engine.connect() as conn, conn.begin():
        # A larger transaction (300 rows) holding the span's last bar: the writer locks the bars in key order and
        # waits for it; then this one asks for the first bar, which the writer holds. InnoDB rolls back the smaller,
        # the writer's span (1213), which is written again once this one commits.
        await conn.execute(ballast.insert(), [{} for _ in range(300)])
        await conn.execute(select(daily_bars.c.close).where(_bar(DAYS[-1])).with_for_update())
        load = asyncio.create_task(store.upsert_daily_bars(_daily(11.0)))
        await _writer_waits_for_a_lock(store)
        await conn.execute(select(daily_bars.c.close).where(_bar(DAYS[0])).with_for_update())

    assert await load == len(DAYS)
    assert store.db.retries.labels("deadlock")._value.get() == 1
    async with store.db.session() as s:
        closes = (await s.execute(select(daily_bars.c.close).where(daily_bars.c.ts_code == CODE))).scalars().all()
    assert len(closes) == len(DAYS) and {str(c) for c in closes} == {"1100"}  # fen: every bar written once, at 11.00
