"""Hot reads cached in Redis (in memory in standalone mode): quotes, which every order asks for twice (risk's
checks and the paper broker's fill price). Every load of new data drops them."""

from __future__ import annotations

import logging

from shared.cache import Cache

log = logging.getLogger(__name__)

QUOTE_PREFIX = "data:quote:"
# A backstop, not the mechanism: loads invalidate at once. Should an invalidation fail, a stale quote lives at most
# this long (new data arrives once a day, after the close).
QUOTE_TTL_S = 60


class QuoteCache:
    """Read-through cache of `/v1/quotes` bodies. A cache that does not answer is bypassed, never fatal."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def get(self, ts_code: str) -> bytes | None:
        try:
            return await self.cache.get(QUOTE_PREFIX + ts_code)
        except Exception:
            log.warning("quote cache unavailable; reading the store", exc_info=True)
            return None

    async def put(self, ts_code: str, body: str) -> None:
        try:
            await self.cache.set(QUOTE_PREFIX + ts_code, body, ttl_s=QUOTE_TTL_S)
        except Exception:
            log.warning("quote cache unavailable; not caching", exc_info=True)

    async def invalidate(self) -> None:
        try:
            dropped = await self.cache.delete_prefix(QUOTE_PREFIX)
        except Exception:
            log.exception("could not drop cached quotes; they expire within %ss", QUOTE_TTL_S)
            return
        log.info("cached quotes dropped after a load", extra={"dropped": dropped})
