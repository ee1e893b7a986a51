"""Backtest engine speed: the dual moving-average strategy over synthetic random-walk bars in Tushare's layout,
A-share rules on (limits, lots, T+1, fees), fills at the next open. Prints wall time per phase, bars/s and the peak
RSS. The whole-process figure includes the interpreter start and imports (measured from process start).

    python -m bench.engine [--symbols 500 --days 2500 --seed 7]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd


def process_age() -> float:
    """Seconds since this process started (so the interpreter start and imports count)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / 100.0


def synthetic_bars(symbols: int, days: int, seed: int) -> pd.DataFrame:
    """Random-walk daily bars for `symbols` main-board codes over `days` weekdays from 2014-01-02, in Tushare's
    layout (vol in lots, amount in thousand CNY). Daily moves are clipped inside the 10% limits, so some days close
    at a limit; opens gap a little from the previous close."""
    rng = np.random.default_rng(seed)
    day_list: list[date] = []
    d = date(2014, 1, 2)
    while len(day_list) < days:
        if d.weekday() < 5:
            day_list.append(d)
        d += timedelta(days=1)
    prefixes = ("600", "601", "603", "605", "000", "002", "001", "003")  # main board, 1,000 codes each
    if symbols > 1000 * len(prefixes):
        raise SystemExit(f"at most {1000 * len(prefixes)} symbols")
    codes = [f"{prefixes[i // 1000]}{i % 1000:03d}.{'SH' if i < 4000 else 'SZ'}" for i in range(symbols)]
    start = rng.uniform(5.0, 50.0, symbols)
    ret = np.clip(rng.normal(0.0003, 0.02, (days, symbols)), -0.095, 0.095)
    close = np.round(start * np.exp(np.cumsum(np.log1p(ret), axis=0)), 2)
    close = np.maximum(close, 0.5)
    pre_close = np.vstack([np.round(start, 2)[None, :], close[:-1]])
    gap = np.clip(rng.normal(0.0, 0.005, (days, symbols)), -0.05, 0.05)
    open_ = np.maximum(np.round(pre_close * (1 + gap), 2), 0.01)
    high = np.maximum(open_, close) + np.round(np.abs(rng.normal(0, 0.005, (days, symbols))) * close, 2)
    low = np.maximum(
        np.minimum(open_, close) - np.round(np.abs(rng.normal(0, 0.005, (days, symbols))) * close, 2), 0.01
    )
    vol = np.round(rng.uniform(1e4, 1e5, (days, symbols)))
    amount = np.round(vol * 100 * (open_ + close) / 2 / 1000, 3)
    trade_date = np.array([d.strftime("%Y%m%d") for d in day_list], dtype=object)
    # symbol-major rows (as Tushare returns one symbol's history after another); temporaries freed as we go
    columns: dict[str, np.ndarray] = {
        "ts_code": np.repeat(np.array(codes, dtype=object), days),
        "trade_date": np.tile(trade_date, symbols),
    }
    for name, values in (("open", open_), ("high", high), ("low", low), ("close", close), ("pre_close", pre_close)):
        columns[name] = values.T.ravel()
    del open_, high, low, pre_close, ret, gap
    columns["vol"] = vol.T.ravel()
    columns["amount"] = amount.T.ravel()
    del vol, amount, close
    return pd.DataFrame(columns, copy=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    imported_at = process_age()
    from shared.research.engine import BacktestConfig, run_backtest
    from strategies.dual_ma import DualMA

    t_import = time.perf_counter()
    bars = synthetic_bars(args.symbols, args.days, args.seed)
    t_build = time.perf_counter()
    result = run_backtest(DualMA({"fast": 5, "slow": 20}), bars, BacktestConfig(initial_cash=Decimal("10000000")))
    t_run = time.perf_counter()
    n_bars = len(bars)
    del bars
    peak_run_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = result.to_json()
    t_json = time.perf_counter()
    whole = process_age()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"engine benchmark: dual_ma(5, 20), {args.symbols} symbols x {args.days} days = {n_bars:,} bars")
    print(f"  interpreter start + stdlib/numpy/pandas: {imported_at:6.2f} s")
    print(f"  import engine + strategy                : {t_import - t0:6.2f} s")
    print(f"  build synthetic bars (DataFrame)        : {t_build - t_import:6.2f} s")
    rate = n_bars / (t_run - t_build)
    print(f"  run_backtest (load, run, metrics)       : {t_run - t_build:6.2f} s  ({rate:,.0f} bars/s)")
    print(f"  result to JSON ({len(text) / 1e6:.1f} MB)              : {t_json - t_run:6.2f} s")
    print(f"  whole process up to the metrics         : {whole - (t_json - t_run):6.2f} s")
    print(f"  whole process (with the JSON)           : {whole:6.2f} s")
    print(f"  peak RSS up to the metrics              : {peak_run_mb:,.0f} MB")
    print(f"  peak RSS (with the JSON)                : {peak_mb:,.0f} MB")
    print(f"  trades {len(result.trades['qty']):,}, final equity {result.final_equity} CNY")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
