"""The per-user rate limit: fixed one-minute windows counted in the cache."""

from __future__ import annotations

import pytest

from gateway.auth import HeaderError, enforce_rate_limit
from shared.cache import MemoryCache

MINUTE_START = 1_700_000_040.0  # a multiple of 60


async def test_limit_allows_exactly_n_requests_per_window_then_429() -> None:
    cache = MemoryCache()
    for i in range(5):
        await enforce_rate_limit(cache, "alice", 5, now=MINUTE_START + i)
    with pytest.raises(HeaderError) as refused:
        await enforce_rate_limit(cache, "alice", 5, now=MINUTE_START + 15.2)
    assert refused.value.status_code == 429 and refused.value.code == "rate_limited"
    # 15.2 s into the minute: 44.8 s left, rounded up.
    assert refused.value.headers == {"Retry-After": "45"}


async def test_users_are_counted_separately() -> None:
    cache = MemoryCache()
    for _ in range(3):
        await enforce_rate_limit(cache, "alice", 3, now=MINUTE_START)
    await enforce_rate_limit(cache, "bob", 3, now=MINUTE_START)  # bob is not limited by alice's use


async def test_next_window_starts_afresh() -> None:
    cache = MemoryCache()
    for _ in range(2):
        await enforce_rate_limit(cache, "alice", 2, now=MINUTE_START + 30)
    with pytest.raises(HeaderError):
        await enforce_rate_limit(cache, "alice", 2, now=MINUTE_START + 59.5)
    await enforce_rate_limit(cache, "alice", 2, now=MINUTE_START + 60)


class BrokenCache(MemoryCache):
    async def incr_window(self, key: str, window_s: int) -> int:
        raise ConnectionError("redis is down")


async def test_cache_outage_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    await enforce_rate_limit(BrokenCache(), "alice", 1)
    assert "rate limiter unavailable" in caplog.text
