"""Idempotent consumers: the same event delivered twice is handled once, keyed by the event id."""

from __future__ import annotations

from shared.platform.bus.port import EventHandler
from shared.platform.cache import Cache
from shared.platform.events.envelope import Envelope

SEEN_TTL_S = 7 * 24 * 3600  # longer than any redelivery window the broker can produce


class IdempotentHandler:
    def __init__(self, cache: Cache, consumer: str, handler: EventHandler, ttl_s: int = SEEN_TTL_S) -> None:
        self.cache = cache
        self.consumer = consumer
        self.handler = handler
        self.ttl_s = ttl_s

    async def __call__(self, event: Envelope) -> None:
        key = f"seen:{self.consumer}:{event.id}"
        if not await self.cache.set(key, "1", ttl_s=self.ttl_s, nx=True):
            return  # handled before (or being handled by a sibling consumer)
        try:
            await self.handler(event)
        except BaseException:
            # Not handled: forget the mark so the redelivery can run it.
            await self.cache.delete(key)
            raise
