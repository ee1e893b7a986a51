"""Quote sanity at ingest through the real path: the real-time provider reading the day's bands from the data store
on MariaDB (the stored closes, the session bar's pre_close where the session is stored), keeping quotes in memory
(standalone) and in the real Redis (fleet). A bad tick is neither stored nor published, and the previous good quote
stays the live one; a good tick after it is stored and published."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from services.data.quotes import session_bands, session_quote
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes
from services.data.realtime.store import LiveStore, MemoryLiveStore, RedisLiveStore
from services.data.store import DataStore
from shared.platform.bus import MemoryBus
from shared.platform.clock import EXCHANGE_TZ
from shared.platform.events.envelope import Envelope
from shared.platform.events.schemas import LiveQuote, QuotesSnapshot

pytestmark = pytest.mark.integration

D1, D2 = date(2025, 3, 3), date(2025, 3, 4)  # D2: the day quoted
PLAIN = "600100.SH"  # closed at 10.00 on D1; no bar of D2 stored (as during the session): its band is 9.00 .. 11.00
EX = "600101.SH"  # closed at 20.00 on D1; D2 stored with pre_close 10.00 (10送10 going ex): the band is 9.00 .. 11.00


def at(hms: str) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(D2.year, D2.month, D2.day, h, m, s, tzinfo=EXCHANGE_TZ)


def snapshot(code: str, t: str, last: str, lots: int, **kw: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "ts_code": code, "time": at(t).isoformat(), "last": last, "open": "10.00", "high": last, "low": "9.95",
        "pre_close": "10.00", "amount": f"{lots * 1000}.00", "volume_lots": lots,
        "bid": [["9.95", 10]], "ask": [[last, 3]],
    }  # fmt: skip
    raw.update(kw)
    return raw


async def stored_market(store: DataStore) -> None:
    await store.upsert_securities(
        pd.DataFrame(
            {
                "ts_code": [PLAIN, EX], "symbol": ["600100", "600101"], "name": ["手算股份", "除权股份"],
                "area": ["北京"] * 2, "industry": ["手工"] * 2, "market": ["主板"] * 2, "list_status": ["L"] * 2,
                "list_date": ["20000104"] * 2, "delist_date": [None] * 2,
            }
        )
    )  # fmt: skip
    await store.upsert_daily_bars(
        pd.DataFrame(
            {
                "ts_code": [PLAIN, EX, EX], "trade_date": ["20250303", "20250303", "20250304"],
                "open": [9.95, 19.90, 10.10], "high": [10.10, 20.10, 10.40], "low": [9.90, 19.80, 10.00],
                "close": [10.00, 20.00, 10.30], "pre_close": [9.90, 19.90, 10.00], "change": [0.10, 0.10, 0.30],
                "pct_chg": [1.0101, 0.5025, 3.0], "vol": [1000.0, 1000.0, 2000.0],
                "amount": [1000.0, 2000.0, 2060.0], "adj_factor": [1.0, 1.0, 2.0],
            }
        )
    )  # fmt: skip


@pytest.fixture(params=["memory", "redis"])
async def live(request: pytest.FixtureRequest, backing: Any) -> AsyncIterator[LiveStore]:
    if request.param == "memory":
        yield MemoryLiveStore()
        return
    client = aioredis.Redis.from_url(backing.redis_url)
    namespace = f"rtsanity-{secrets.token_hex(4)}"
    try:
        yield RedisLiveStore(client, namespace)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_the_days_bands_are_the_stored_session_limits(store: DataStore) -> None:
    await stored_market(store)
    async with store.snapshot():
        bands = await session_bands(store, D2)
    # PLAIN: around its D1 close, 10.00 x 1.1 = 11.00, x 0.9 = 9.00. EX: around D2's stored pre_close 10.00 (not the
    # D1 close of 20.00, which would give 18.00 .. 22.00).
    assert (bands[PLAIN].reference, bands[PLAIN].limit_down, bands[PLAIN].limit_up) == (1000, 900, 1100)
    assert (bands[EX].reference, bands[EX].limit_down, bands[EX].limit_up) == (1000, 900, 1100)
    for code in (PLAIN, EX):  # the same limits GET /v1/quotes/{code}?session= answers
        security = await store.get_security(code)
        assert security is not None
        quote = await session_quote(store, security, D2)
        assert (quote.limit_down, quote.limit_up) == (
            Decimal(bands[code].limit_down) / 100,
            Decimal(bands[code].limit_up) / 100,
        )


async def test_a_bad_tick_is_neither_stored_nor_published_and_a_good_one_after_it_is(
    store: DataStore, live: LiveStore
) -> None:
    await stored_market(store)
    bus = MemoryBus()
    heard: list[Envelope] = []

    async def hear(event: Envelope) -> None:
        heard.append(event)

    await bus.subscribe("t", ["quotes.snapshot"], hear)
    metrics = QuoteMetrics(CollectorRegistry(), lambda: at("09:30:10"))
    provider = RealtimeQuotes(store, live, bus, metrics)

    first = await provider.ingest(
        [snapshot(PLAIN, "09:30:03", "10.05", 10), snapshot(EX, "09:30:03", "10.20", 10)], "bridge"
    )
    bad = await provider.ingest(
        [
            snapshot(PLAIN, "09:30:06", "11.01", 11),  # one fen above the limit-up 11.00
            snapshot(EX, "09:30:06", "10.30", 11, pre_close="20.00"),  # the last close: not the day's reference
        ],
        "bridge",
    )
    assert (first.accepted, bad.accepted) == (2, 0)
    assert dict(bad.rejected) == {"outside_limits": 1, "pre_close_mismatch": 1}
    for code, last in ((PLAIN, "10.05"), (EX, "10.20")):  # the good quotes before stay the live ones
        quote = LiveQuote.model_validate_json(await live.quote(code) or b"")
        assert (quote.last, quote.time) == (Decimal(last), at("09:30:03"))

    after = await provider.ingest(
        [snapshot(PLAIN, "09:30:09", "11.00", 12), snapshot(EX, "09:30:09", "9.00", 12, low="9.00", bid=[])], "bridge"
    )  # at the limits exactly: within the band
    assert (after.accepted, dict(after.rejected)) == (2, {})
    plain = LiveQuote.model_validate_json(await live.quote(PLAIN) or b"")
    ex = LiveQuote.model_validate_json(await live.quote(EX) or b"")
    assert (plain.last, plain.volume, ex.last) == (Decimal("11.00"), 1_200, Decimal("9.00"))
    assert (plain.limit_up, plain.limit_down, ex.limit_up, ex.limit_down) == (
        Decimal("11.00"), Decimal("9.00"), Decimal("11.00"), Decimal("9.00"),
    )  # fmt: skip

    async with asyncio.timeout(5):
        while len(heard) < 2:  # noqa: ASYNC110 - the memory bus delivers on its own task
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # (a third event, were one published, would be in by now)
    published = [e.parsed() for e in heard]
    assert all(isinstance(p, QuotesSnapshot) for p in published)
    # two events: the round of bad ticks published nothing
    assert [sorted((q.ts_code, str(q.last)) for q in p.quotes) for p in published] == [  # type: ignore[union-attr]
        [(PLAIN, "10.05"), (EX, "10.20")],
        [(PLAIN, "11.00"), (EX, "9.00")],
    ]
    assert metrics.rejected.labels(reason="outside_limits")._value.get() == 1
    assert metrics.rejected.labels(reason="pre_close_mismatch")._value.get() == 1
