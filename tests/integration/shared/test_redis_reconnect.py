"""A Redis that restarts costs no caller a failed request once it is back (shared/platform/cache.py): every pooled
connection to the old server is stale, and each would fail its next command without the client's retry. Runs on a
redis-server of the test's own (the fault suite's helper), never the machine's."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.platform.cache import RedisCache
from tests.chaos.servers import Redis

pytestmark = pytest.mark.integration


async def test_every_stale_pooled_connection_reconnects_instead_of_failing_its_caller(tmp_path: Path) -> None:
    assert shutil.which("redis-server"), "redis-server is not installed (scripts/backing-services.sh installs it)"
    server = Redis(tmp_path)
    server.start()
    cache = RedisCache(server.url)
    try:
        # Eight commands at once open eight pooled connections (each BLPOP holds its connection for 0.2 s).
        await asyncio.gather(*(cache.client.blpop([f"nothing-{i}"], timeout=0.2) for i in range(8)))
        assert len(cache.client.connection_pool._available_connections) == 8

        server.stop()
        with pytest.raises(RedisConnectionError):  # down is down: the caller is told (after the few retries)
            await cache.ping()
        server.start()  # back, empty (no persistence)

        # Every connection the pool still holds was opened to the old server; each is used once, at the same time.
        results = await asyncio.gather(*(cache.set(f"k{i}", str(i)) for i in range(8)), return_exceptions=True)
        assert results == [True] * 8
        assert [await cache.get(f"k{i}") for i in range(8)] == [str(i).encode() for i in range(8)]
    finally:
        await cache.close()
        server.stop()
