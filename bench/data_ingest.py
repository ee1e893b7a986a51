"""Ingest rows/s into MariaDB: the full-market benchmark (5,000 symbols x 2,500 days = 12.5M daily bars).

Three passes into a fresh database: (1) from a Parquet file in Tushare's daily layout (read + convert + upsert, into
an empty table), (2) the same frame again from memory (every row already there: the idempotent re-load), and
(3) the floor: SQLAlchemy Core executemany of the same converted rows (first 500k) into an empty table.
`--order date` writes the Parquet file sorted by trade_date (as a download by date gives it) instead of by stock.
Run: `python -m bench.data_ingest [--symbols 5000 --days 2500] [--order stock|date]`."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select, text

from bench.common import _test_env
from services.data.demo import generate_bulk_market
from services.data.loader import daily_bar_rows
from services.data.store import MIGRATIONS_DIR, DataStore, daily_bars, upsert_statement
from shared.platform.db import Database

FLOOR_ROWS = 500_000


async def _count(store: DataStore) -> int:
    async with store.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(daily_bars)) or 0)


async def run(symbols: int, days: int, order: str) -> None:
    mysql = _test_env()["LH_TEST_MYSQL_URL"].rstrip("/")
    name = f"lhbench_{secrets.token_hex(3)}_data"
    db = Database(f"{mysql}/{name}")
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        store = DataStore(db)
        t0 = time.perf_counter()
        market = generate_bulk_market(symbols, days)
        generated = time.perf_counter() - t0
        n = len(market.daily)
        print(f"generated {n:,} bars ({symbols} symbols x {days} days) in {generated:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "daily.parquet"
            frame = market.daily.astype({"ts_code": str, "trade_date": str})
            if order == "date":
                frame = frame.sort_values(["trade_date", "ts_code"], ignore_index=True)
            frame.to_parquet(path, index=False)
            del frame
            t0 = time.perf_counter()
            from_file = pd.read_parquet(path)
            read_s = time.perf_counter() - t0
            written = await store.upsert_daily_bars(from_file)
            first_s = time.perf_counter() - t0
        assert written == n == await _count(store)
        print(
            f"  from Parquet (rows by {order}) into an empty table: {n / first_s:,.0f} rows/s "
            f"({first_s:.1f} s, of which read {read_s:.1f} s)"
        )

        t0 = time.perf_counter()
        await store.upsert_daily_bars(market.daily)
        again_s = time.perf_counter() - t0
        assert await _count(store) == n
        print(
            f"  from memory, every row already stored (idempotent re-load): {n / again_s:,.0f} rows/s ({again_s:.1f} s)"
        )

        floor_rows = daily_bar_rows(market.daily.iloc[:FLOOR_ROWS])
        async with db.session() as session:
            await session.execute(text("DELETE FROM daily_bars"))
        t0 = time.perf_counter()
        async with db.session() as session:
            statement = upsert_statement("mysql", daily_bars)
            for start in range(0, len(floor_rows), 5_000):
                await session.execute(statement, floor_rows[start : start + 5_000])
        floor_s = time.perf_counter() - t0
        print(
            f"  floor, SQLAlchemy Core executemany of {len(floor_rows):,} converted rows: "
            f"{len(floor_rows) / floor_s:,.0f} rows/s"
        )
        print(f"  ratio (Parquet pass / floor): {(n / first_s) / (len(floor_rows) / floor_s):.2f}x")
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"DROP DATABASE `{name}`"))  # name made above from hex digits only
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=2_500)
    parser.add_argument("--order", choices=("stock", "date"), default="stock")
    args = parser.parse_args()
    asyncio.run(run(args.symbols, args.days, args.order))


if __name__ == "__main__":
    main()
