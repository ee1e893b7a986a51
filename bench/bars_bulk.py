"""Time to load the whole market (5,000 symbols x 2,500 days, 12.5M bars) as Arrow, fleet mode: the first request
after a load (cold: the data service reads MariaDB into a snapshot and writes the answer), then warm requests
(served from the file), straight from the data service (as the backtest service reads it) and through the gateway.
Timed from the request to a pyarrow Table in the client. Run: `python -m bench.bars_bulk [--symbols --days]`."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.ipc as ipc
from sqlalchemy import make_url

from bench.common import bench_fleet, trader_session
from bench.market_load import load_bulk_market
from shared.platform.internal_auth import service_headers

WARM_RUNS = 3


async def _fetch(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    chunks = []
    async with client.stream("GET", url, headers=headers) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status_code} {(await resp.aread())[:200]!r}")
        async for chunk in resp.aiter_raw(1 << 20):
            chunks.append(chunk)
    body = b"".join(chunks)
    table = ipc.open_stream(pa.BufferReader(body)).read_all()
    return time.perf_counter() - t0, table.num_rows, len(body)


async def _measure(fleet, symbols: int, days: int) -> None:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    _, rate = await load_bulk_market(fleet, symbols, days)
    print(f"loaded {symbols} x {days} in {time.perf_counter() - t0:.0f} s (upsert {rate:,.0f} rows/s)")
    async with httpx.AsyncClient(timeout=600) as client:
        direct = f"{fleet.url('data')}/v1/bars/bulk?format=arrow"
        internal = service_headers(fleet.env["LH_INTERNAL_SECRET"], "bench")
        cold, rows, size = await _fetch(client, direct, internal)
        print(f"cold (snapshot from MariaDB + answer file): {cold:.1f} s, {rows:,} rows, {size / 1e6:.0f} MB")
        for label, url, headers in (
            ("warm, data service direct", direct, internal),
            ("warm, through the gateway", f"{fleet.url('gateway')}/api/v1/bars/bulk?format=arrow",
             await trader_session(client, fleet)),
        ):  # fmt: skip
            times = [(await _fetch(client, url, headers))[0] for _ in range(WARM_RUNS)]
            print(f"{label}: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s")
        qfq = f"{direct}&adjust=qfq"
        first = (await _fetch(client, qfq, internal))[0]
        again = (await _fetch(client, qfq, internal))[0]
        print(f"qfq whole market: first {first:.1f} s (adjusting from the snapshot), then {again:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=2_500)
    args = parser.parse_args()
    with bench_fleet() as fleet:
        try:
            asyncio.run(_measure(fleet, args.symbols, args.days))
        finally:
            # The data service's snapshot directory of this throwaway database (about 1 GB per version).
            name = make_url(fleet.env["LH_DATABASE_URL"].replace("{service}", "data")).database
            for directory in (Path(tempfile.gettempdir()) / "lianghua-data").glob(f"*-{name}-*"):
                shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
