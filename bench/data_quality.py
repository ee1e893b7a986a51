"""Quality checks over a synthetic clean market in storage units: rows/s of `run_quality_checks`.

python -m bench.data_quality [--symbols 500] [--days 2500]
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=2500)
    args = parser.parse_args()
    n_sym, n_day = args.symbols, args.days
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


if __name__ == "__main__":
    main()
