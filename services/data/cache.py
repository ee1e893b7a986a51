"""Hot reads cached in Redis (in memory in standalone mode): quotes, which every order asks for twice (risk's
checks and the paper broker's fill price), and bar ranges. Every load of new data drops them all: a write in this
process (or, through Redis, in any process) drops them at once; an in-process cache cannot hear another process's
write (a CLI import into the standalone SQLite file), so it checks the data version stored in the database first."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from shared.platform.cache import Cache, MemoryCache

log = logging.getLogger(__name__)

# A backstop, not the mechanism: loads invalidate at once. Should an invalidation fail, a stale answer lives at
# most this long (new data arrives once a day, after the close).
TTL_S = 60


class ReadCache:
    """Read-through cache of response bodies by kind ("quote", "bars") and key. A cache that does not answer is
    bypassed, never fatal: the store answers instead."""

    def __init__(
        self,
        cache: Cache,
        namespace: str,
        version: Callable[[], Awaitable[int]] | None = None,
        *,
        check_version: bool | None = None,
    ) -> None:
        self.cache = cache
        # Deployments (and test runs) sharing one Redis keep apart by namespace, as their queues do.
        self.prefix = f"{namespace}:data:"
        # The store's data version (bumped by every write, before the write drops the cache): see `put`.
        self.version = version
        # Whether a hit must first check the data version (default: for a cache of this process only, which writes
        # by other processes cannot drop). One small indexed read of the data_versions row per hit; a shared Redis
        # is dropped by every writer, so it needs none.
        self.check_version = isinstance(cache, MemoryCache) if check_version is None else check_version
        self._cached_version: int | None = None  # the version the cached answers were read at

    async def get(self, kind: str, key: str) -> bytes | None:
        if self.check_version and self.version is not None:
            try:
                current = await self.version()
            except Exception:
                log.warning("data version unavailable; reading the store", exc_info=True)
                return None
            if current != self._cached_version:
                # Written since (by another process, or before this one started): what is cached is older.
                await self.invalidate()
                self._cached_version = current
        try:
            return await self.cache.get(f"{self.prefix}{kind}:{key}")
        except Exception:
            log.warning("read cache unavailable; reading the store", exc_info=True)
            return None

    async def put(self, kind: str, key: str, body: str | bytes, *, seen: int | None = None) -> None:
        """Cache `body`, read while the data version was `seen`. Not cached if the version has moved since: a
        write landed while the body was being read, and its invalidation may already have passed, so the old
        answer would otherwise stay for TTL_S."""
        if seen is not None and self.version is not None:
            try:
                if await self.version() != seen:
                    return
            except Exception:
                log.warning("data version unavailable; not caching", exc_info=True)
                return
        try:
            await self.cache.set(f"{self.prefix}{kind}:{key}", body, ttl_s=TTL_S)
        except Exception:
            log.warning("read cache unavailable; not caching", exc_info=True)

    async def invalidate(self) -> None:
        try:
            dropped = await self.cache.delete_prefix(self.prefix)
        except Exception:
            log.exception("could not drop cached reads; they expire within %ss", TTL_S)
            return
        log.info("cached reads dropped after a load", extra={"dropped": dropped})
