"""`GET /v1/data/status` (docs/data-ingest.md, "How far the store is"): the newest trading day stored in full, the
stored calendar's newest trading day whose data is out (its update time, 17:30 Shanghai, passed), the trading days
between, and the real-time feed as the data process sees it. On SQLite (standalone's store) with the calendar of
test_ingest_tushare: open 2024-01-02, 03, 04, 05, 08, 09, 10, 11, 12, 15, then every weekday to 2024-12-31."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI

from services.data.ingest import Ingestor
from services.data.ingest_api import ingest_router
from services.data.store import MIGRATIONS_DIR, DataStore
from shared.platform.db import Database
from tests.integration.data.test_ingest_tushare import market

pytestmark = pytest.mark.integration
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[DataStore]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/data.db")
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        store = DataStore(db)
        await store.upsert_trade_calendar(market()["trade_cal"])
        yield store
    finally:
        await db.dispose()


class Status:
    def __init__(self, store: DataStore, feed: str = "replay") -> None:
        self.now = datetime(2024, 1, 15, 10, 0, tzinfo=SHANGHAI)
        self.app = FastAPI()
        self.app.include_router(ingest_router)
        self.metrics = SimpleNamespace(latest=None, bridges=Counter())
        self.app.state.store = store
        self.app.state.ingestor = Ingestor(store, lambda: None)  # type: ignore[arg-type,return-value]
        self.app.state.settings = SimpleNamespace(data_update_at="17:30", quotes_feed_mode=lambda: feed)
        self.app.state.infra = SimpleNamespace(clock=SimpleNamespace(now=lambda: self.now))
        self.app.state.quote_metrics = self.metrics

    async def read(self, at: datetime | None = None) -> dict:
        if at is not None:
            self.now = at
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://data") as c:
            answer = await c.get("/v1/data/status")
        assert answer.status_code == 200, answer.text
        return answer.json()


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SHANGHAI)


async def test_lag_counts_the_trading_days_out_but_not_stored(store: DataStore) -> None:
    status = Status(store)
    # nothing stored in full yet: no lag to tell, but the calendar's day is known
    first = await status.read(at(date(2024, 1, 15), 10))
    assert (first["complete_through"], first["latest_trading_day"], first["lag_days"]) == (None, "2024-01-12", None)
    await store.mark_complete_through(date(2024, 1, 10))
    # Monday 15th 10:00, before the update time: the 12th is the newest day out; the 11th and 12th are missing
    before = await status.read()
    assert (before["complete_through"], before["latest_trading_day"], before["lag_days"]) == (
        "2024-01-10", "2024-01-12", 2,
    )  # fmt: skip
    assert before["update_at"] == "17:30"
    # the same day at 17:30 the 15th is out: 11th, 12th and 15th (the weekend is not counted)
    assert (await status.read(at(date(2024, 1, 15), 17, 30)))["lag_days"] == 3
    # Saturday the 13th: Friday the 12th is the newest day out
    saturday = await status.read(at(date(2024, 1, 13), 9))
    assert (saturday["latest_trading_day"], saturday["lag_days"]) == ("2024-01-12", 2)
    # stored through the newest day out: no lag
    await store.mark_complete_through(date(2024, 1, 12))
    assert (await status.read(at(date(2024, 1, 14), 20)))["lag_days"] == 0
    # after the stored calendar ends its last open day is the newest known
    late = await status.read(at(date(2025, 3, 3), 20))
    assert late["latest_trading_day"] == "2024-12-31"


async def test_the_feed_is_described_as_this_process_sees_it(store: DataStore) -> None:
    status = Status(store, feed="bridge")
    quiet = (await status.read())["feed"]
    assert quiet == {"mode": "bridge", "latest_snapshot_at": None, "age_s": None, "bridges": []}
    status.metrics.latest = status.now - timedelta(seconds=4.5)
    status.metrics.bridges.update({"qmt-b": 1, "qmt-a": 2, "gone": 0})
    feed = (await status.read())["feed"]
    assert feed["mode"] == "bridge" and feed["age_s"] == 4.5 and feed["bridges"] == ["qmt-a", "qmt-b"]
    assert datetime.fromisoformat(feed["latest_snapshot_at"]) == datetime(
        2024, 1, 15, 9, 59, 55, 500000, tzinfo=SHANGHAI
    )
