"""A full-market snapshot through the bridge endpoint and the real-time provider (issue 14, "Benchmarks": 5,000 codes
ingested and published within 200 ms of arrival). Each round is one `quotes` frame of 5,000 snapshots as the bridge
program writes them (xtdata's whole-quote entries through `bridge/qmt/normalize.py`, sealed by `protocol.Channel`),
every code's price, volume and book moved since the round before. A round is timed from the frame's text in hand
(as the WebSocket delivers it) to the `quotes.snapshot` event published and every quote stored, with the minute bars
closed at each minute's boundary: `services/data/realtime/bridge.py`'s `take_frame`, which checks the frame (size,
signature, sequence, JSON) and hands its round to the provider. Printed: that total (p50/p99/max wall, and CPU),
and its split: the frame check, and the provider's ingest and publication.

Two runs: stored in memory with the in-process bus (standalone), and stored in Redis with the event published to
RabbitMQ with confirms (fleet: the test servers of var/test.env, under a namespace of the run's own, deleted after;
a queue of its own bound to the events, kept to its last two messages, so the broker routes and holds each event).
The process first imports the data service's application, so the heap a garbage collection walks is a data
service's; the number of full (gen-2) collections that started inside a timed round is printed.
Run: `make bench` or `python -m bench.quotes_ingest [--codes 5000 --rounds 40]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import aio_pika
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

import services.data.app  # noqa: F401  (the heap of a data service process: what a full collection walks)
from bench.common import percentile
from bridge.qmt import normalize, protocol
from services.data.realtime.bridge import platform_channel, take_frame
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes
from services.data.realtime.store import LiveStore, MemoryLiveStore, RedisLiveStore
from services.data.store import SecurityRecord
from shared.platform.bus import EventBus, MemoryBus
from shared.platform.bus.amqp import AmqpBus
from shared.platform.clock import EXCHANGE_TZ

AIM_MS = 200.0
DAY = date(2025, 1, 2)
START = datetime(2025, 1, 2, 9, 30, 0, tzinfo=EXCHANGE_TZ)


def codes(n: int) -> list[str]:
    """`n` main-board codes, Shanghai's and Shenzhen's in turn."""
    prefixes = ("600", "000", "601", "001", "603", "002", "605", "003")
    made = [f"{p}{i:03d}.{'SH' if p.startswith('6') else 'SZ'}" for i in range(1000) for p in prefixes]
    return made[:n]


def base_fen(i: int) -> int:
    """Code number `i`'s close of the session before (fen): the band its quotes are checked against (+-10%)."""
    return 1000 + (i % 400)


class Securities:
    """The stored facts the provider reads: the securities, and each one's close of the session before DAY."""

    def __init__(self, ts_codes: list[str]) -> None:
        self.records = [SecurityRecord(c, c[:6], c, c[-2:], "main", False, date(2000, 1, 4), None) for c in ts_codes]

    async def list_securities(self) -> list[SecurityRecord]:
        return self.records

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Securities]:
        yield self

    async def last_bars(self, before: date | None = None) -> dict[str, tuple[date, int]]:
        return {r.ts_code: (DAY - timedelta(days=1), base_fen(i)) for i, r in enumerate(self.records)}

    async def session_pre_closes(self, day: date) -> dict[str, int]:
        return {}

    async def session_limits(self, day: date) -> dict[str, tuple[int | None, int, int]]:
        return {}  # no exchange limits loaded: the bands are computed from the stored closes

    async def limits_loaded(self, kind: str, day: date) -> datetime | None:
        return None


def xt_entry(i: int, k: int) -> dict[str, Any]:
    """Code number `i`'s entry of xtdata's whole-market quote at round `k` (floats, volumes in lots, epoch ms): every
    price within the day's band around its close before (`base_fen`)."""
    base = base_fen(i)
    last = base + (k % 7)
    return {
        "time": int(round_time(k).timestamp() * 1000),
        "lastPrice": last / 100, "open": base / 100, "high": (last + 10) / 100, "low": (base - 50) / 100,
        "lastClose": base / 100,
        "amount": (k + 1) * 1000 * last / 100, "volume": (k + 1) * 10,
        "bidPrice": [(last - j) / 100 for j in range(5)], "bidVol": [10 + j for j in range(5)],
        "askPrice": [(last + 1 + j) / 100 for j in range(5)], "askVol": [10 + j for j in range(5)],
    }  # fmt: skip


def round_time(k: int) -> datetime:
    return START + timedelta(seconds=3 * k)


def market_round(ts_codes: list[str], k: int) -> list[dict[str, Any]]:
    """Round `k` as the bridge program sends it: every code's snapshot through its normalisation."""
    return [normalize.snapshot(code, xt_entry(i, k)) for i, code in enumerate(ts_codes)]


class FullCollections:
    """Counts the full (gen-2) collections that start while `inside` is set (gc.callbacks)."""

    def __init__(self) -> None:
        self.inside = False
        self.count = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info.get("generation") == 2 and self.inside:
            self.count += 1


@dataclass
class Timings:
    total: list[float] = field(default_factory=list)  # ms wall, from the frame in hand to published
    cpu: list[float] = field(default_factory=list)  # ms of this thread's CPU over the same
    check: list[float] = field(default_factory=list)  # ms wall of the frame check (total less the ingest)
    ingest: list[float] = field(default_factory=list)  # ms wall of the provider's ingest and publication
    check_cpu: list[float] = field(default_factory=list)
    ingest_cpu: list[float] = field(default_factory=list)
    full_collections: int = 0


async def run(live: LiveStore, bus: EventBus, ts_codes: list[str], rounds: int) -> Timings:
    now = [round_time(0)]  # the market clock: at each round's time (a snapshot ahead of it is refused)
    provider = RealtimeQuotes(Securities(ts_codes), live, bus, QuoteMetrics(CollectorRegistry(), lambda: now[0]))  # type: ignore[arg-type]
    secret, session = secrets.token_hex(16), secrets.token_hex(16)
    bridge = protocol.Channel(secret=secret, session=session, outgoing=protocol.TO_PLATFORM)
    platform = platform_channel(secret, session)  # the endpoint's: its bodies parsed as the endpoint parses them
    # warm up: the securities loaded, the limits and the prices' texts known
    await take_frame(platform, provider, bridge.seal(protocol.QUOTES, {"quotes": market_round(ts_codes, 0)}))
    out = Timings()
    full = FullCollections()
    gc.callbacks.append(full)
    try:
        for k in range(1, rounds + 1):
            text = bridge.seal(protocol.QUOTES, {"quotes": market_round(ts_codes, k)})  # the bridge's work: untimed
            now[0] = round_time(k)
            full.inside = True
            started, cpu_started = time.perf_counter(), time.thread_time()
            frame = await take_frame(platform, provider, text)
            total = (time.perf_counter() - started) * 1000
            cpu = (time.thread_time() - cpu_started) * 1000
            full.inside = False
            assert frame.round is not None and frame.round.accepted == len(ts_codes), frame.round
            out.total.append(total)
            out.ingest.append(frame.round.seconds * 1000)
            out.check.append(total - frame.round.seconds * 1000)
            out.cpu.append(cpu)
            out.ingest_cpu.append(frame.round.cpu_seconds * 1000)
            out.check_cpu.append(cpu - frame.round.cpu_seconds * 1000)
    finally:
        gc.callbacks.remove(full)
    out.full_collections = full.count
    return out


def report(name: str, measured: Timings) -> None:
    """Wall time (what a consumer waits; on a busy machine it includes other processes' turns), this thread's CPU
    time (the work itself), and the split of the wall time."""
    total, cpu = sorted(measured.total), sorted(measured.cpu)
    p99 = percentile(total, 99)
    print(
        f"{name:>32}: p50 {statistics.median(total):6.1f} ms  p99 {p99:6.1f} ms  max {max(total):6.1f} ms "
        f"({'within' if p99 <= AIM_MS else 'OVER'} {AIM_MS:.0f} ms);  CPU p50 {statistics.median(cpu):6.1f} ms  "
        f"p99 {percentile(cpu, 99):6.1f} ms"
    )
    for part, wall, used in (
        ("frame check", measured.check, measured.check_cpu),
        ("ingest + publish", measured.ingest, measured.ingest_cpu),
    ):
        wall, used = sorted(wall), sorted(used)
        print(
            f"{'of which ' + part:>32}: p50 {statistics.median(wall):6.1f} ms  p99 {percentile(wall, 99):6.1f} ms"
            f"{'':>36}CPU p50 {statistics.median(used):6.1f} ms  p99 {percentile(used, 99):6.1f} ms"
        )
    print(f"{'full collections inside rounds':>32}: {measured.full_collections}")


async def fleet_run(ts_codes: list[str], rounds: int, redis_url: str, amqp_url: str) -> Timings:
    namespace = f"lhbench-{secrets.token_hex(4)}"
    client = aioredis.Redis.from_url(redis_url)
    bus = AmqpBus(amqp_url, namespace=namespace, source="bench")
    await bus.start()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        # a consumer's queue (as a gateway's), kept to the last two events: the broker routes and holds each one
        queue = await channel.declare_queue(
            f"{namespace}.listener", exclusive=True, auto_delete=True, arguments={"x-max-length": 2}
        )
        await queue.bind(bus.events_exchange, routing_key="quotes.#")
        return await run(RedisLiveStore(client, namespace), bus, ts_codes, rounds)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        channel = await connection.channel()
        await channel.queue_delete(f"{namespace}.listener")
        await channel.queue_delete(bus.dead_letter_queue)
        await channel.exchange_delete(bus.events_exchange)
        await channel.exchange_delete(bus.dead_letter_exchange)
        await connection.close()
        await bus.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codes", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--redis", default=None, help="a Redis URL (default: var/test.env's LH_TEST_REDIS_URL)")
    parser.add_argument("--amqp", default=None, help="a RabbitMQ URL (default: var/test.env's LH_TEST_AMQP_URL)")
    args = parser.parse_args()
    ts_codes = codes(args.codes)
    frame = protocol.Channel(secret=secrets.token_hex(16), session="s", outgoing=protocol.TO_PLATFORM).seal(
        protocol.QUOTES, {"quotes": market_round(ts_codes, 0)}
    )
    print(
        f"quotes: {args.codes} codes a round ({len(frame.encode()) / 1e6:.1f} MB a frame), {args.rounds} rounds; "
        f"{len(gc.get_objects()):,} objects tracked by the collector (a data service's modules imported)"
    )
    report("arrival -> published (memory)", await run(MemoryLiveStore(), MemoryBus(), ts_codes, args.rounds))
    from bench.common import _test_env

    env = _test_env()
    redis_url, amqp_url = args.redis or env.get("LH_TEST_REDIS_URL"), args.amqp or env.get("LH_TEST_AMQP_URL")
    if redis_url and amqp_url:
        report("arrival -> published (Redis+AMQP)", await fleet_run(ts_codes, args.rounds, redis_url, amqp_url))


if __name__ == "__main__":
    asyncio.run(main())
