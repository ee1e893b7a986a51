"""The quotes store on the real Redis (services/data/realtime/store.py): a day's minute bars appended per code and
kept three days, each list given its expiry once (a minute's end appends to 5,000 lists: one EXPIRE each, not one an
append), and again by a process that did not set it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.data.realtime.store import BARS_KEPT_S, RedisLiveStore

DAY, NEXT = date(2025, 1, 2), date(2025, 1, 3)


@pytest.fixture
async def client(backing: Any) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(backing.redis_url)
    yield redis
    await redis.aclose()


async def test_bars_are_appended_and_kept_three_days(client: aioredis.Redis) -> None:
    namespace = f"rtstore-{secrets.token_hex(4)}"
    store = RedisLiveStore(client, namespace)
    key = f"{namespace}:quotes:bars:2025-01-02:600000.SH"
    try:
        await store.add_bars(DAY, [("600000.SH", '{"n":1}'), ("000001.SZ", '{"n":1}')])
        assert 0 < await client.ttl(key) <= BARS_KEPT_S
        await client.persist(key)  # to see whether the next append sets it again
        await store.add_bars(DAY, [("600000.SH", '{"n":2}')])
        assert await client.ttl(key) == -1  # this process gave it its expiry already
        assert await store.bars(DAY, "600000.SH") == [b'{"n":1}', b'{"n":2}']
        # another process (or this one after a restart) sets it on its first append
        await RedisLiveStore(client, namespace).add_bars(DAY, [("600000.SH", '{"n":3}')])
        assert 0 < await client.ttl(key) <= BARS_KEPT_S
        # a new day's lists get theirs
        await store.add_bars(NEXT, [("600000.SH", '{"n":1}')])
        assert 0 < await client.ttl(f"{namespace}:quotes:bars:2025-01-03:600000.SH") <= BARS_KEPT_S
        assert 0 < await client.ttl(f"{namespace}:quotes:bars:2025-01-02:000001.SZ") <= BARS_KEPT_S
        assert await store.bars(DAY, "600000.SH") == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
        # the same call again (sent again after a connection lost before its reply): nothing appended twice
        await store.add_bars(DAY, [("600000.SH", '{"n":3}'), ("000001.SZ", '{"n":2}')])
        await store.add_bars(DAY, [("600000.SH", '{"n":3}'), ("000001.SZ", '{"n":2}')])
        assert await store.bars(DAY, "600000.SH") == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
        assert await store.bars(DAY, "000001.SZ") == [b'{"n":1}', b'{"n":2}']
    finally:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)


async def test_a_failed_append_sets_the_expiry_on_the_next(client: aioredis.Redis, backing: Any) -> None:
    namespace = f"rtstore-{secrets.token_hex(4)}"
    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    store = RedisLiveStore(down, namespace)
    with pytest.raises(aioredis.ConnectionError):
        await store.add_bars(DAY, [("600000.SH", '{"n":1}')])
    await down.aclose()
    store.client = client  # Redis answers again
    key = f"{namespace}:quotes:bars:2025-01-02:600000.SH"
    try:
        await store.add_bars(DAY, [("600000.SH", '{"n":2}')])
        assert 0 < await client.ttl(key) <= BARS_KEPT_S
    finally:
        await client.delete(key)


async def test_the_latest_quotes_and_the_feed_are_written_together(client: aioredis.Redis) -> None:
    """put_quotes sends its HSET and SET packed by hiredis on a pooled connection: what it writes is read back as
    written, a command the server refuses raises, and the client's connections stay usable after it (no reply left
    unread on a connection put back)."""
    namespace = f"rtstore-{secrets.token_hex(4)}"
    store = RedisLiveStore(client, namespace)
    quotes = [(f"{600000 + i}.SH", f'{{"ts_code":"{600000 + i}.SH","last":"10.05","src":"数据"}}') for i in range(5000)]
    try:
        await store.put_quotes(quotes, '{"source":"bridge"}')
        assert await store.quotes(["600000.SH", "604999.SH", "000001.SZ"]) == [
            quotes[0][1].encode(), quotes[-1][1].encode(), None
        ]  # fmt: skip
        assert await client.hlen(f"{namespace}:quotes:latest") == 5000
        assert await store.feed() == b'{"source":"bridge"}'
        await store.put_quotes([], '{"source":"replay"}')  # a round with no quote: the feed's state only
        assert await store.feed() == b'{"source":"replay"}' and await client.hlen(f"{namespace}:quotes:latest") == 5000
        # the hash's key holding another type: the server refuses the HSET; the error raises, nothing is desynced
        await client.delete(f"{namespace}:quotes:latest")
        await client.set(f"{namespace}:quotes:latest", "not a hash")
        with pytest.raises(aioredis.ResponseError, match="WRONGTYPE"):
            await store.put_quotes(quotes[:2], '{"source":"x"}')
        for _ in range(3):  # every connection of the pool answers its own commands
            assert await client.get(f"{namespace}:quotes:latest") == b"not a hash"
            assert await store.feed() == b'{"source":"x"}'  # the SET sent after the refused HSET is applied
    finally:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)


async def test_bars_are_appended_when_the_script_is_not_cached(client: aioredis.Redis) -> None:
    """EVALSHA answered NOSCRIPT (Redis restarted or its scripts flushed): the bars are sent again by EVAL."""
    namespace = f"rtstore-{secrets.token_hex(4)}"
    store = RedisLiveStore(client, namespace)
    store._add_bars_sha = "0" * 40  # a script Redis does not hold (not flushing the shared server's scripts)
    key = f"{namespace}:quotes:bars:2025-01-02:600000.SH"
    try:
        await store.add_bars(DAY, [("600000.SH", '{"n":1}')])
        assert await store.bars(DAY, "600000.SH") == [b'{"n":1}']
        assert 0 < await client.ttl(key) <= BARS_KEPT_S
        assert await client.ping()
    finally:
        await client.delete(key)


async def test_a_store_without_redis_raises_a_connection_error(backing: Any) -> None:
    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(aioredis.ConnectionError):
            await RedisLiveStore(down, "x").put_quotes([("600000.SH", "{}")], "{}")
    finally:
        await down.aclose()
