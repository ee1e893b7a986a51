"""The hot book's Redis tests: a client on this run's Redis database, and a key prefix of each test's own, whose keys
are deleted after it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import Backing


@pytest.fixture
async def redis_client(backing: Backing) -> AsyncIterator[Redis]:
    client = Redis.from_url(backing.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def book_prefix(redis_client: Redis) -> AsyncIterator[str]:
    prefix = "lhtest-hotbook-" + secrets.token_hex(6)
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=f"*{prefix}*", count=1000)]
    if keys:
        await redis_client.delete(*keys)
    assert not [key async for key in redis_client.scan_iter(match=f"*{prefix}*", count=1000)]
