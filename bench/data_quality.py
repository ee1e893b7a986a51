"""Quality checks over a synthetic clean market in storage units: rows/s of `run_quality_checks`.

python -m bench.data_quality [--symbols 500] [--days 2500]

`--from-store`: the checks as an ingest runs them, reading their inputs back from MariaDB. N symbols x M days of
the bulk synthetic market (bars with their factors, limits, a suspension on every halted day, securities and the
calendar) are loaded into a fresh database with the bulk upserts, then `Ingestor.quality` is timed over the whole
range, with the time spent reading the inputs and in the checks themselves (they overlap):

python -m bench.data_quality --from-store --symbols 5000 --days 250 [--database lhbench_x_data --keep]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from services.data.quality import run_quality_checks


def weekdays(first: date, n: int) -> list[date]:
    days: list[date] = []
    day = first
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def in_memory(n_sym: int, n_day: int) -> None:
    days = weekdays(date(2010, 1, 4), n_day)
    rng = np.random.default_rng(1)
    codes = [f"{600000 + i:06d}.SH" for i in range(n_sym)]
    close = np.maximum(2000 + np.cumsum(rng.integers(-50, 51, size=(n_sym, n_day)), axis=1), 100)
    pre = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    bars = pd.DataFrame(
        {
            "ts_code": np.repeat(codes, n_day),
            "trade_date": pd.to_datetime(np.tile(np.array(days, dtype="datetime64[D]"), n_sym)),
            "open": pre.ravel(),
            "high": (np.maximum(close, pre) + 5).ravel(),
            "low": (np.minimum(close, pre) - 5).ravel(),
            "close": close.ravel(),
            "pre_close": pre.ravel(),
            "vol": np.full(n_sym * n_day, 10_000),
            "amount": np.full(n_sym * n_day, 20_000_000),
            "adj_factor": 1.0,
        }
    ).sample(frac=1.0, random_state=2)  # any row order
    securities = pd.DataFrame({"ts_code": codes, "list_date": days[0], "delist_date": None})
    suspensions = pd.DataFrame({"ts_code": codes[:100], "trade_date": days[10]})
    started = time.perf_counter()
    report = run_quality_checks(bars, calendar=days, securities=securities, suspensions=suspensions)
    elapsed = time.perf_counter() - started
    rate = len(bars) / elapsed
    print(f"quality checks: {len(bars):,} rows in {elapsed:.2f} s ({rate:,.0f} rows/s); findings {report.total}")


async def _load(store: Any, symbols: int, days: int) -> tuple[date, date]:
    from bench.data_ingest_tushare import tushare_frames

    t0 = time.perf_counter()
    frames, first, last = tushare_frames(symbols, days)
    daily = frames["daily"].merge(frames["adj_factor"], on=["ts_code", "trade_date"], how="left")
    # The bulk market's halts are days without a bar: record them as suspensions, as Tushare's suspend_d would.
    opened = frames["trade_cal"].loc[frames["trade_cal"]["is_open"] == 1, "cal_date"]
    opened = opened[opened <= last.strftime("%Y%m%d")].to_numpy()
    codes = frames["stock_basic"]["ts_code"].to_numpy()
    every = pd.MultiIndex.from_product([codes, opened], names=["ts_code", "trade_date"])
    halted = every.difference(pd.MultiIndex.from_frame(daily[["ts_code", "trade_date"]])).to_frame(index=False)
    halted["suspend_timing"], halted["suspend_type"] = None, "S"
    print(f"generated {len(daily):,} bars ({symbols} x {days}), {len(halted):,} halted days "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    t0 = time.perf_counter()
    await store.upsert_trade_calendar(frames["trade_cal"])
    await store.upsert_securities(frames["stock_basic"])
    rows = await store.upsert_daily_bars(daily)
    rows += await store.upsert_stk_limits(frames["stk_limit"])
    rows += await store.upsert_suspensions(halted)
    print(f"loaded {rows:,} rows (bars, limits, suspensions) in {time.perf_counter() - t0:.1f} s")
    return first, last


async def from_store(symbols: int, days: int, database: str | None, keep: bool) -> None:
    from sqlalchemy import func, select, text

    import services.data.ingest as ingest
    from bench.common import _test_env
    from services.data.store import MIGRATIONS_DIR, DataStore, daily_bars
    from shared.platform.db import Database

    mysql = _test_env()["LH_TEST_MYSQL_URL"].rstrip("/")
    name = database or f"lhbench_{secrets.token_hex(3)}_data"
    db = Database(f"{mysql}/{name}")
    await db.connect()
    await db.migrate(MIGRATIONS_DIR)
    store = DataStore(db)
    spent = {"read": 0.0, "check": 0.0}
    real_inputs, real_check = ingest._quality_inputs, ingest._check

    async def timed_inputs(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await real_inputs(*args, **kwargs)
        finally:
            spent["read"] += time.perf_counter() - t0

    def timed_check(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_check(*args, **kwargs)
        finally:
            spent["check"] += time.perf_counter() - t0

    try:
        async with db.session() as session:
            span = (await session.execute(select(func.min(daily_bars.c.trade_date), func.max(daily_bars.c.trade_date),
                                                 func.count()))).one()  # fmt: skip
        if span[2]:
            first, last = span[0], span[1]
            print(f"database {name}: {span[2]:,} bars {first}..{last} already loaded")
        else:
            first, last = await _load(store, symbols, days)
        ingest._quality_inputs, ingest._check = timed_inputs, timed_check  # type: ignore[assignment]
        t0 = time.perf_counter()
        _, report = await ingest.Ingestor(store, lambda: None).quality(first, last)  # type: ignore[arg-type,return-value]
        total = time.perf_counter() - t0
        # The next group's inputs are read while a group is checked: the two overlap, so they need not add up.
        print(f"Ingestor.quality {first}..{last}: {report.rows_checked:,} rows in {total:.1f} s "
              f"({report.rows_checked / total:,.0f} rows/s); of which reading the inputs {spent['read']:.1f} s, "
              f"the checks {spent['check']:.1f} s")  # fmt: skip
        print(f"  findings: { {r: n for r, n in report.counts.items() if n} }")
    finally:
        ingest._quality_inputs, ingest._check = real_inputs, real_check  # type: ignore[assignment]
        if keep:
            print(f"kept database {name} (--database {name} reuses it)")
        else:
            async with db.engine.begin() as conn:
                await conn.execute(text(f"DROP DATABASE `{name}`"))  # a name made from hex digits, or the user's
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--from-store", action="store_true", help="load into MariaDB and time Ingestor.quality")
    parser.add_argument("--database", help="--from-store: use (and load if empty) this database")
    parser.add_argument("--keep", action="store_true", help="--from-store: keep the database afterwards")
    args = parser.parse_args()
    if args.from_store:
        asyncio.run(from_store(args.symbols, args.days, args.database, args.keep))
    else:
        in_memory(args.symbols, args.days)


if __name__ == "__main__":
    main()
