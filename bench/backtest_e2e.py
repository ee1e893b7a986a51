"""Time from POST to a finished report for one backtest through the gateway in fleet mode: dual MA (5, 20) over
N symbols x M days (default 500 x 2,500, a synthetic market loaded into the data service), the worker loading the
bars from the data service's bulk Arrow endpoint. Timed twice: the first run builds the data service's snapshot and
the worker's cache (cold), the second finds both (warm). Run: `python -m bench.backtest_e2e [--symbols --days]`."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import make_url

from bench.common import bench_fleet, trader_session
from bench.market_load import load_bulk_market

POLL_S = 0.2


async def one_run(client: httpx.AsyncClient, base: str, headers: dict[str, str], body: dict[str, object]) -> None:
    t0 = time.perf_counter()
    response = await client.post(f"{base}/api/v1/backtests", json=body, headers=headers)
    response.raise_for_status()
    backtest_id = response.json()["backtest_id"]
    while True:
        state = (await client.get(f"{base}/api/v1/backtests/{backtest_id}", headers=headers)).json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        await asyncio.sleep(POLL_S)
    finished = time.perf_counter() - t0
    if state["status"] != "succeeded":
        raise RuntimeError(f"backtest {backtest_id} {state['status']}: {state.get('error')}")
    page = await client.get(f"{base}/api/v1/backtests/{backtest_id}/report.html", headers=headers)
    page.raise_for_status()
    reported = time.perf_counter() - t0
    summary = state["summary"]
    print(
        f"  POST -> succeeded {finished:.2f} s, -> HTML report {reported:.2f} s ({len(page.content) / 1e6:.1f} MB); "
        f"{summary['trades']:,} trades, final equity {summary['final_equity']}"
    )


async def measure(fleet, symbols: int, days: int) -> None:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    codes, rate = await load_bulk_market(fleet, symbols, days)
    print(f"loaded {symbols} x {days} bars in {time.perf_counter() - t0:.0f} s ({rate:,.0f} rows/s)")
    body = {
        "strategy": "dual_ma",
        "params": {"fast": 5, "slow": 20},
        "universe": {"ts_codes": codes},
        "start": "2015-01-01",
        "end": "2030-12-31",
        "initial_cash": "10000000",
        "benchmark": None,
    }
    base = fleet.url("gateway")
    async with httpx.AsyncClient(timeout=600) as client:
        headers = await trader_session(client, fleet)
        for label in ("cold (data snapshot and worker cache built)", "warm"):
            print(label)
            await one_run(client, base, headers, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=2_500)
    args = parser.parse_args()
    with bench_fleet() as fleet:
        try:
            asyncio.run(measure(fleet, args.symbols, args.days))
        finally:
            name = make_url(fleet.env["LH_DATABASE_URL"].replace("{service}", "data")).database
            for directory in (Path(tempfile.gettempdir()) / "lianghua-data").glob(f"*-{name}-*"):
                shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
