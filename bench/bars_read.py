"""Latency of ten years of one symbol (about 2,500 bars, ~400 KB of JSON) through the gateway, fleet mode: cold
(each request a different symbol/range, so the data service reads MariaDB) and cached (the same URL again: the
data service answers from Redis), one request at a time; then the throughput of the cached URL with 16 concurrent
connections from a separate process for 15 s. The floor is the gateway's /healthz in the same run.
Run: `make bench` or `python -m bench.bars_read`."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time

import httpx

from bench.common import bench_fleet, percentile, trader_session
from bench.market_load import load_bulk_market

CONCURRENCY = 16
DURATION_S = 15.0
SYMBOLS = 40
COLD_REQUESTS = 120
CACHED_REQUESTS = 400


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


async def _sequential(client: httpx.AsyncClient, urls: list[str], headers: dict[str, str]) -> list[float]:
    latencies = []
    for url in urls:
        t0 = time.perf_counter()
        resp = await client.get(url, headers=headers)
        latencies.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status_code} {resp.text[:200]}")
    return sorted(latencies)


async def _measure(fleet) -> tuple[str, dict[str, str], dict[str, object]]:  # type: ignore[no-untyped-def]
    codes, ingest_rate = await load_bulk_market(fleet, SYMBOLS, 2_500)
    base = fleet.url("gateway")
    out: dict[str, object] = {"ingest_rate": ingest_rate}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(keepalive_expiry=4.0)) as client:
        headers = await trader_session(client, fleet)
        floor = await _sequential(client, [f"{base}/healthz"] * 200, {})
        first = f"{base}/api/v1/bars?ts_code={codes[0]}&start=2015-01-01&end=2024-12-31"
        out["bars"] = len((await client.get(first, headers=headers)).json()["bars"])
        out["bytes"] = len((await client.get(first, headers=headers)).content)
        # Cold: a different (symbol, first day) each time: every one is a cache miss.
        cold_urls = [
            f"{base}/api/v1/bars?ts_code={codes[i % len(codes)]}&start=2015-01-{1 + i // len(codes):02d}&end=2024-12-31"
            for i in range(COLD_REQUESTS)
        ]
        out["cold"] = await _sequential(client, cold_urls, headers)
        out["cached"] = await _sequential(client, [first] * CACHED_REQUESTS, headers)
        out["floor"] = floor
    return first, headers, out


def main() -> None:
    with bench_fleet() as fleet:
        url, headers, figures = asyncio.run(_measure(fleet))
        queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        proc = mp.Process(target=_client_process, args=(url, headers, queue))
        proc.start()
        count, errors, elapsed, latencies = queue.get()
        proc.join()
    cold, cached, floor = figures["cold"], figures["cached"], figures["floor"]
    print(f"GET /api/v1/bars, ten years of one symbol ({figures['bars']} bars, {figures['bytes']:,} bytes), serially:")
    for name, values in (("cold", cold), ("cached", cached), ("floor /healthz", floor)):
        print(f"  {name}: p50 {percentile(values, 0.5):.1f} ms p99 {percentile(values, 0.99):.1f} ms")  # type: ignore[arg-type]
    print(f"  ratio cached p50 / floor p50: {percentile(cached, 0.5) / percentile(floor, 0.5):.1f}x")  # type: ignore[arg-type]
    print(
        f"cached URL, {CONCURRENCY} connections, {DURATION_S:.0f} s: {count / elapsed:.0f} requests/s, "
        f"{errors} errors, "
        f"p50 {percentile(latencies, 0.5):.1f} ms p99 {percentile(latencies, 0.99):.1f} ms"
    )


if __name__ == "__main__":
    main()
