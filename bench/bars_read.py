"""Requests per second one gateway process sustains for GET /api/v1/bars (one symbol, two years), fleet mode.
The load comes from a separate client process with 16 concurrent connections for 15 s.
Run: `make bench` or `python -m bench.bars_read`."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time

import httpx

from bench.common import bench_fleet, percentile, trader_session

CONCURRENCY = 16
DURATION_S = 15.0


async def _load(url: str, headers: dict[str, str], out: mp.Queue) -> None:  # type: ignore[type-arg]
    limits = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=4.0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + DURATION_S

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                resp = await client.get(url, headers=headers)
                latencies.append((time.perf_counter() - t0) * 1000)
                if resp.status_code != 200:
                    errors += 1

        t_start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        out.put((len(latencies), errors, time.perf_counter() - t_start, sorted(latencies)))


def _client_process(url: str, headers: dict[str, str], out: mp.Queue) -> None:  # type: ignore[type-arg]
    asyncio.run(_load(url, headers, out))


async def _prepare(fleet) -> tuple[str, dict[str, str], int]:  # type: ignore[no-untyped-def]
    base = fleet.url("gateway")
    async with httpx.AsyncClient(timeout=30) as client:
        headers = await trader_session(client, fleet)
        securities = (await client.get(f"{base}/api/v1/securities", headers=headers)).json()
        code = next(s["ts_code"] for s in securities if s["board"] == "main" and not s["is_st"])
        url = f"{base}/api/v1/bars?ts_code={code}&start=2023-01-01&end=2024-12-31"
        bars = len((await client.get(url, headers=headers)).json()["bars"])
    return url, headers, bars


def main() -> None:
    with bench_fleet() as fleet:
        url, headers, bars = asyncio.run(_prepare(fleet))
        out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        proc = mp.Process(target=_client_process, args=(url, headers, out))
        proc.start()
        count, errors, elapsed, latencies = out.get()
        proc.join()
    print(f"GET /api/v1/bars, one symbol, {bars} bars (two years), {CONCURRENCY} connections, {DURATION_S:.0f} s:")
    print(
        f"  {count / elapsed:.0f} requests/s, {errors} errors, "
        f"p50 {percentile(latencies, 0.5):.1f} ms p99 {percentile(latencies, 0.99):.1f} ms"
    )


if __name__ == "__main__":
    main()
