"""Key-value cache: Redis in fleet mode, an in-process dict in standalone mode, behind one small interface."""

from __future__ import annotations

import time
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

# A pooled connection to a Redis that restarted fails once when next used ("connection closed by server"); redis-py's
# connections built by from_url retry nothing, so without this every such connection in the pool cost a caller one
# failed request (an order refused 503 right after Redis came back). Only connection errors are retried (a retried
# timeout could hold an order for 4 x socket_timeout); every write through this client is idempotent or conservative
# when repeated (risk's reserve script by order id, its book events by event id, counters only ever over-count).
REDIS_RETRY_ATTEMPTS = 3


def redis_retry() -> Retry:
    return Retry(
        ExponentialWithJitterBackoff(base=0.02, cap=0.25),
        REDIS_RETRY_ATTEMPTS,
        supported_errors=(RedisConnectionError,),
    )


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: str | bytes, *, ttl_s: int | None = None, nx: bool = False) -> bool:
        """Store a value; with nx=True only if absent. Returns whether it was stored."""

    async def delete(self, *keys: str) -> int: ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def incr_window(self, key: str, window_s: int) -> int:
        """Increment a counter that expires `window_s` after its first increment; return the new value."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class RedisCache:
    # INCR and set the expiry on the first hit, atomically, so a crash can never leave a counter without TTL.
    _INCR_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, retry=redis_retry())
        self._incr_window = self.client.register_script(self._INCR_WINDOW)

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(key)
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: str | bytes, *, ttl_s: int | None = None, nx: bool = False) -> bool:
        return bool(await self.client.set(key, value, ex=ttl_s, nx=nx))

    async def delete(self, *keys: str) -> int:
        return int(await self.client.delete(*keys)) if keys else 0

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        async for key in self.client.scan_iter(match=f"{prefix}*", count=500):
            deleted += int(await self.client.delete(key))
        return deleted

    async def incr_window(self, key: str, window_s: int) -> int:
        return int(await self._incr_window(keys=[key], args=[window_s]))

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()


class MemoryCache:
    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float | None]] = {}

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: str | bytes, *, ttl_s: int | None = None, nx: bool = False) -> bool:
        if nx and self._live(key) is not None:
            return False
        raw = value.encode() if isinstance(value, str) else value
        self._data[key] = (raw, time.monotonic() + ttl_s if ttl_s else None)
        return True

    async def delete(self, *keys: str) -> int:
        return sum(1 for k in keys if self._live(k) is not None and self._data.pop(k, None) is not None)

    async def delete_prefix(self, prefix: str) -> int:
        return await self.delete(*[k for k in list(self._data) if k.startswith(prefix)])

    async def incr_window(self, key: str, window_s: int) -> int:
        current = self._live(key)
        if current is None:
            self._data[key] = (b"1", time.monotonic() + window_s)
            return 1
        n = int(current) + 1
        self._data[key] = (str(n).encode(), self._data[key][1])
        return n

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


def create_cache(url: str) -> Cache:
    if url.startswith("memory://"):
        return MemoryCache()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(url)
    raise ValueError(f"unsupported cache URL scheme: {url.split(':', 1)[0]!r} (use redis:// or memory://)")
