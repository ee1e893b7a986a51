"""A full-market snapshot through the real-time provider (issue 14, "Benchmarks": 5,000 codes ingested and published
within 200 ms of arrival). Each round is 5,000 snapshots in the bridge's shape (services/data/realtime/snapshots.py),
every code's price, volume and book moved since the round before; timed from the frame's body in hand (as the
bridge endpoint has it after the signature check) to the `quotes.snapshot` event published and every quote stored,
with the minute bars closed at each minute's boundary. p50/p99/max per round, stored in memory (standalone) and in
Redis (fleet: the test server's, under a namespace of the run's own, deleted after). The protocol's signature check
of the frame is timed on its own. Run: `make bench` or `python -m bench.quotes_ingest [--codes 5000 --rounds 40]`."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from datetime import date, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from bench.common import percentile
from bridge.qmt import protocol
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes
from services.data.realtime.store import LiveStore, MemoryLiveStore, RedisLiveStore
from services.data.store import SecurityRecord
from shared.platform.bus import MemoryBus
from shared.platform.clock import EXCHANGE_TZ

AIM_MS = 200.0
DAY = date(2025, 1, 2)
START = datetime(2025, 1, 2, 9, 30, 0, tzinfo=EXCHANGE_TZ)


def codes(n: int) -> list[str]:
    """`n` main-board codes, Shanghai's and Shenzhen's in turn."""
    prefixes = ("600", "000", "601", "001", "603", "002", "605", "003")
    made = [f"{p}{i:03d}.{'SH' if p.startswith('6') else 'SZ'}" for i in range(1000) for p in prefixes]
    return made[:n]


class Securities:
    def __init__(self, ts_codes: list[str]) -> None:
        self.records = [SecurityRecord(c, c[:6], c, c[-2:], "main", False, date(2000, 1, 4), None) for c in ts_codes]

    async def list_securities(self) -> list[SecurityRecord]:
        return self.records


def market_round(ts_codes: list[str], k: int) -> list[dict[str, Any]]:
    at = (START + timedelta(seconds=3 * k)).isoformat()
    out = []
    for i, code in enumerate(ts_codes):
        last = 1000 + (i % 400) + (k % 7)
        out.append({
            "ts_code": code, "time": at, "last": f"{last / 100:.2f}", "open": "10.00",
            "high": f"{(last + 10) / 100:.2f}", "low": "9.50", "pre_close": "10.00",
            "amount": f"{(k + 1) * 1000 * last / 100:.2f}",
            "volume_lots": (k + 1) * 10,
            "bid": [[f"{(last - j) / 100:.2f}", 10 + j] for j in range(5)],
            "ask": [[f"{(last + 1 + j) / 100:.2f}", 10 + j] for j in range(5)],
        })  # fmt: skip
    return out


async def run(live: LiveStore, ts_codes: list[str], rounds: int) -> tuple[list[float], list[float]]:
    bus = MemoryBus()
    provider = RealtimeQuotes(Securities(ts_codes), live, bus, QuoteMetrics(CollectorRegistry(), lambda: START))  # type: ignore[arg-type]
    await provider.ingest(market_round(ts_codes, 0), "bridge")  # warm up: the securities are loaded
    timings, cpu = [], []
    for k in range(1, rounds + 1):
        body = market_round(ts_codes, k)  # as the endpoint has it: a frame's body just read
        started, cpu_started = time.perf_counter(), time.thread_time()
        result = await provider.ingest(body, "bridge")
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - cpu_started) * 1000)
        assert result.accepted == len(ts_codes), result.rejected
    return timings, cpu


def report(name: str, measured: tuple[list[float], list[float]]) -> None:
    """Wall time (what a consumer waits; on a busy machine it includes other processes' turns) and this thread's
    CPU time (the provider's own work)."""
    timings, cpu = sorted(measured[0]), sorted(measured[1])
    print(
        f"{name:>28}: p50 {statistics.median(timings):7.1f} ms  p99 {percentile(timings, 99):7.1f} ms  "
        f"max {max(timings):7.1f} ms  ({'within' if percentile(timings, 99) <= AIM_MS else 'OVER'} {AIM_MS:.0f} ms);"
        f"  CPU p50 {statistics.median(cpu):6.1f} ms  p99 {percentile(cpu, 99):6.1f} ms"
    )


def signature_check(ts_codes: list[str]) -> float:
    secret = secrets.token_hex(16)
    sender = protocol.Channel(secret=secret, session="s", outgoing=protocol.TO_PLATFORM)
    receiver = protocol.Channel(secret=secret, session="s", outgoing=protocol.TO_BRIDGE)
    frame = sender.seal(protocol.QUOTES, {"quotes": market_round(ts_codes, 0)})
    started = time.thread_time()
    receiver.open(frame)
    return (time.thread_time() - started) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codes", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--redis", default=None, help="a Redis URL (default: var/test.env's LH_TEST_REDIS_URL)")
    args = parser.parse_args()
    ts_codes = codes(args.codes)
    print(f"quotes: {args.codes} codes a round, {args.rounds} rounds (one every 3 market seconds)")
    print(
        f"{'frame signature check':>28}: {signature_check(ts_codes):7.1f} ms CPU (the bridge endpoint, before ingest)"
    )
    report("ingest + publish (memory)", await run(MemoryLiveStore(), ts_codes, args.rounds))
    url = args.redis
    if url is None:
        from bench.common import _test_env

        url = _test_env().get("LH_TEST_REDIS_URL")
    if url:
        client = aioredis.Redis.from_url(url)
        namespace = f"lhbench-{secrets.token_hex(4)}"
        try:
            report("ingest + publish (Redis)", await run(RedisLiveStore(client, namespace), ts_codes, args.rounds))
        finally:
            keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
