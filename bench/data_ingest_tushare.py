"""Ingest rows/s from the fake Tushare server (its own process, the real tushare client) into MariaDB: a backfill of
N symbols x M days by trade_date through the whole pipeline (daily, adj_factor, stk_limit, suspend_d, daily_basic
per day, converted and upserted), then the quality checks of the range.
Run: `python -m bench.data_ingest_tushare [--symbols 300 --days 60]`; the full market: `--symbols 5000 --days 2500`."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import text

from bench.common import _test_env
from services.data.demo import generate_bulk_market
from services.data.ingest import IngestOptions, Ingestor
from services.data.providers import API_SCHEMAS, RetryPolicy, TushareConfig, TushareProvider
from services.data.providers.ratelimit import RateLimiter
from services.data.store import MIGRATIONS_DIR, DataStore
from shared.platform.db import Database
from tests.support.fake_tushare import FakeTushare


def _empty(api: str) -> pd.DataFrame:
    return pd.DataFrame({f: pd.Series(dtype=object) for f in API_SCHEMAS[api].fields})


def tushare_frames(symbols: int, days: int) -> tuple[dict[str, pd.DataFrame], date, date]:
    market = generate_bulk_market(symbols, days)
    daily = market.daily.astype({"ts_code": str, "trade_date": str})
    first, last = market.trade_days[0], market.trade_days[-1]
    opened = {d.strftime("%Y%m%d") for d in market.trade_days}
    cal_days = pd.date_range(first, date(last.year, 12, 31)).strftime("%Y%m%d")
    cal = pd.DataFrame({"exchange": "SSE", "cal_date": cal_days, "is_open": [int(d in opened) for d in cal_days],
                        "pretrade_date": None})  # fmt: skip
    pre = daily["pre_close"].to_numpy()
    limits = pd.DataFrame({"trade_date": daily["trade_date"], "ts_code": daily["ts_code"],
                           "up_limit": np.round(pre * 1.1, 2), "down_limit": np.round(pre * 0.9, 2)})  # fmt: skip
    basic = pd.DataFrame({f: np.nan for f in API_SCHEMAS["daily_basic"].fields}, index=daily.index)
    basic["ts_code"], basic["trade_date"], basic["close"] = daily["ts_code"], daily["trade_date"], daily["close"]
    basic["turnover_rate"] = 1.25
    frames = {
        "trade_cal": cal,
        "stock_basic": market.securities,
        "namechange": _empty("namechange"),
        "daily": daily.loc[:, list(API_SCHEMAS["daily"].fields)],
        "adj_factor": daily.loc[:, ["ts_code", "trade_date", "adj_factor"]],
        "stk_limit": limits,
        "suspend_d": _empty("suspend_d"),
        "daily_basic": basic,
        "index_daily": _empty("index_daily"),
        "index_weight": _empty("index_weight"),
    }
    return frames, first, last


async def run(symbols: int, days: int, batch_days: int) -> None:
    t0 = time.perf_counter()
    frames, first, last = tushare_frames(symbols, days)
    bars = len(frames["daily"])
    print(f"generated {bars:,} bars ({symbols} symbols x {days} days) in {time.perf_counter() - t0:.1f} s")
    mysql = _test_env()["LH_TEST_MYSQL_URL"].rstrip("/")
    name = f"lhbench_{secrets.token_hex(3)}_data"
    db = Database(f"{mysql}/{name}")
    server = FakeTushare(frames, token="bench").start(process=True)  # noqa: S106 (the fake server's)
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        store = DataStore(db)
        config = TushareConfig(token="bench", url=server.url, timeout_s=60)  # noqa: S106
        provider = TushareProvider(config, limiter=RateLimiter(default=None), retry=RetryPolicy(base_delay_s=0.1))
        ingestor = Ingestor(store, provider, options=IngestOptions(batch_days=batch_days))
        t0 = time.perf_counter()
        result = await ingestor.backfill(first, last)
        total_s = time.perf_counter() - t0
        assert result.status == "succeeded", result.error
        assert result.bar_rows == bars, (result.bar_rows, bars)
        run_row = await store.get_ingest_run(result.run_id)
        assert run_row is not None
        detail = run_row.detail
        ingest_s = total_s - float(detail.get("quality_s", 0.0))
        print(f"  backfill {first}..{last}: {result.rows:,} rows in all tables ({bars:,} bars)")
        print(f"  ingest: {ingest_s:.1f} s = {result.rows / ingest_s:,.0f} rows/s all tables, "
              f"{bars / ingest_s:,.0f} bars/s")  # fmt: skip
        print(f"  quality checks of the range: {detail.get('quality_s')} s; whole run {total_s:.1f} s")
        print(f"  per table: {detail.get('tables')}")
    finally:
        server.stop()
        async with db.engine.begin() as conn:
            await conn.execute(text(f"DROP DATABASE `{name}`"))  # name made above from hex digits only
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--batch-days", type=int, default=IngestOptions.batch_days)
    args = parser.parse_args()
    asyncio.run(run(args.symbols, args.days, args.batch_days))


if __name__ == "__main__":
    main()
