"""Paper replay speed through the whole platform in one process (standalone, replay market clock): a dual MA (5, 20)
instance over N symbols of the generated market (`generate_bulk_market` on the SSE calendar, loaded into the data
service), replayed day by day runner -> risk -> execution -> paper broker -> events -> runner. Reports days/s and
orders/s, and the ratio of the replay's wall time to `run_backtest` of the same strategy on the same bars, measured
in the same run (the floor).

    python -m bench.paper_replay [--symbols 500] [--start 2023-01-03] [--end 2024-12-31] [--db sqlite|mariadb]
        [--capital 10000000]

`--db mariadb`: the services' databases on the test MariaDB (the fleet's storage) instead of SQLite files; the bus
and cache stay in memory (a replay clock needs every service in one process)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.live_platform import (
    count_rows,
    create_instance,
    engine_bars,
    load_into_data_service,
    platform,
    sse_market,
    trader,
    wait_state,
)

PARAMS = {"fast": 5, "slow": 20}
CAPITAL = Decimal("10000000.00")  # a paper account's opening cash: 20,000 CNY a symbol for 500


def backtest_floor(market, days: list[date], capital: Decimal):  # type: ignore[no-untyped-def]
    from shared.research.engine import BacktestConfig, run_backtest
    from strategies.dual_ma import DualMA

    bars = engine_bars(market)
    config = BacktestConfig(initial_cash=capital, calendar=tuple(days))
    t0 = time.perf_counter()
    result = run_backtest(DualMA(PARAMS), bars, config)
    return time.perf_counter() - t0, result


def write_profile(profiler: Any, path: str) -> None:
    Path(path).write_text(profiler.output_text() if path.endswith(".txt") else profiler.output_html(), encoding="utf-8")


async def measure(
    symbols: int, start: date, end: date, db: str, profile: str | None, capital: Decimal = CAPITAL
) -> None:
    market = sse_market(symbols, start, end)
    days = market.trade_days
    n_bars = len(market.daily)
    print(f"paper replay benchmark: dual_ma(5, 20), {symbols} symbols x {len(days)} SSE days ({start} to {end}), "
          f"{n_bars:,} bars; services' databases: {db}")  # fmt: skip
    floor_s, expected = backtest_floor(market, days, capital)
    bt_trades = len(expected.trades["qty"])
    print(f"  floor: run_backtest (load, run, metrics)   {floor_s:8.2f} s  ({bt_trades:,} fills, "
          f"final equity {expected.final_equity})")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lh-bench-replay-") as work:
        async with platform(Path(work), db, "replay") as p:
            t0 = time.perf_counter()
            await load_into_data_service(p.data_url(), market)
            print(f"  market loaded into the data service        {time.perf_counter() - t0:8.2f} s")
            headers = await trader(p)
            codes = sorted(market.securities["ts_code"])
            iid = await create_instance(
                p, headers,
                {"strategy": "dual_ma", "params": PARAMS, "universe": {"ts_codes": codes}, "capital": str(capital)},
            )  # fmt: skip
            profiler = None
            if profile:
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="disabled")
                profiler.start()
            t0 = time.perf_counter()
            started = await p.client.post(
                f"/api/v1/strategy-instances/{iid}/start",
                json={"replay": {"start": start.isoformat(), "end": end.isoformat()}},
                headers=headers,
            )
            if started.status_code != 200:
                raise RuntimeError(f"start: {started.status_code} {started.text}")
            t_loaded = time.perf_counter()
            state = await wait_state(p, headers, iid, poll_s=0.2, progress_every_s=60.0)
            t_done = time.perf_counter()
            if profiler is not None:
                profiler.stop()
                write_profile(profiler, str(profile))
                print(f"  profile written to {profile}")
            if state["state"] != "stopped":
                raise RuntimeError(f"the replay ended {state['state']}: {state.get('failure') or state}")
            orders = await count_rows(p, headers, "/api/v1/orders", "order_id", iid)
            fills = await count_rows(p, headers, "/api/v1/trades", "trade_id", iid)
            perf = (await p.client.get(f"/api/v1/strategy-instances/{iid}/performance", headers=headers)).json()
    play_s = t_done - t_loaded
    whole_s = t_done - t0
    print(f"  start -> market loaded (the start answers)   {t_loaded - t0:8.2f} s")
    print(f"  replay (first session to stopped)          {play_s:8.2f} s")
    print(f"  days/s {len(days) / play_s:,.1f}; orders/s {len(orders) / play_s:,.1f} ({len(orders):,} orders, "
          f"{len(fills):,} fills; the backtest made {bt_trades:,} fills); final equity "
          f"{perf['equity_curve'][-1]['equity']} (backtest {expected.final_equity})")  # fmt: skip
    year = 242  # SSE trading days in a year
    print(f"  a year of replay: {play_s * year / len(days):.1f} s (aim: 60 s)")
    print(f"  ratio replay / run_backtest: {play_s / floor_s:,.0f}x (start to stopped: {whole_s / floor_s:,.0f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2023, 1, 3))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2024, 12, 31))
    parser.add_argument("--db", choices=("sqlite", "mariadb"), default="sqlite")
    parser.add_argument("--profile", help="a pyinstrument profile of the replay (.txt: text, else HTML)")
    parser.add_argument(
        "--capital", type=Decimal, default=CAPITAL,
        help="the instance's capital in CNY (e.g. 1000: no lot is affordable, no order is sent: the sessions alone)",
    )  # fmt: skip
    args = parser.parse_args()
    asyncio.run(measure(args.symbols, args.start, args.end, args.db, args.profile, args.capital))


if __name__ == "__main__":
    main()
