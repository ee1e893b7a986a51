"""Loading a synthetic market (services.data.demo.generate_bulk_market) into a benchmark fleet's data database."""

from __future__ import annotations

import time

from lianghua.fleet import Fleet
from services.data.demo import generate_bulk_market
from services.data.store import DataStore
from shared.platform.db import Database


async def load_bulk_market(fleet: Fleet, symbols: int, days: int) -> tuple[list[str], float]:
    """Upsert `symbols` x `days` of synthetic bars (from 2015-01-05, weekday calendar) into the fleet's data
    database; returns the codes and the ingest rows/s. The data service's caches key on the data version
    (bulk) or are new keys (JSON), so nothing stale is served."""
    market = generate_bulk_market(symbols, days)
    db = Database(fleet.env["LH_DATABASE_URL"].replace("{service}", "data"))
    await db.connect()
    try:
        store = DataStore(db)
        await store.upsert_securities(market.securities)
        t0 = time.perf_counter()
        rows = await store.upsert_daily_bars(market.daily)
        rate = rows / (time.perf_counter() - t0)
    finally:
        await db.dispose()
    return list(market.securities["ts_code"]), rate
