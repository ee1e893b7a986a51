"""Client-side pacing for rate-limited providers: a fair per-endpoint calls-per-window limiter and a bounded
exponential backoff with jitter. Clock and sleep are injectable so tests run on simulated time."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """At most `calls` grants per endpoint in any `window_s` seconds (Tushare counts calls per minute per endpoint).

    Grants are handed out in the order `acquire` is called (FIFO, so a burst of callers cannot starve an earlier
    one): each caller is given its slot synchronously, then sleeps until it. A sliding log of the last `calls`
    grant times makes the limit exact over any window, and lets short bursts through without waiting.
    `None` as a limit means unlimited (e.g. a local server in benchmarks).
    """

    def __init__(
        self,
        calls_per_window: Mapping[str, int | None] | None = None,
        default: int | None = 200,
        *,
        window_s: float = 60.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        for key, limit in {**(calls_per_window or {}), "(default)": default}.items():
            if limit is not None and limit < 1:
                raise ValueError(f"rate limit for {key} must be at least 1 call per window, or None for unlimited")
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self._limits = dict(calls_per_window or {})
        self._default = default
        self._window = window_s
        self._clock = clock
        self._sleep = sleep
        self._grants: dict[str, deque[float]] = {}
        self._not_before: dict[str, float] = {}

    def limit_for(self, key: str) -> int | None:
        return self._limits.get(key, self._default)

    def _reserve(self, key: str) -> float:
        """The caller's slot: now, unless the window is full or the endpoint is paused. Runs without awaiting, so
        concurrent callers are served strictly in arrival order."""
        now = self._clock()
        slot = max(now, self._not_before.get(key, now))
        limit = self.limit_for(key)
        if limit is None:
            return slot
        grants = self._grants.setdefault(key, deque())
        if len(grants) >= limit:
            slot = max(slot, grants[-limit] + self._window)
        grants.append(slot)
        while len(grants) > limit:
            grants.popleft()
        return slot

    async def acquire(self, key: str) -> float:
        """Wait for a slot on `key`; returns the (clock) time the slot was granted for."""
        slot = self._reserve(key)
        delay = slot - self._clock()
        if delay > 0:
            await self._sleep(delay)
        return slot

    def pause(self, key: str, seconds: float) -> None:
        """Hold new grants on `key` for `seconds` (the server said we are too fast: everyone backs off, not just
        the caller that was refused)."""
        until = self._clock() + seconds
        self._not_before[key] = max(self._not_before.get(key, until), until)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    Transient failures (HTTP error status, timeout, connection error, an empty answer that must have rows) get
    `max_attempts` calls in all, waiting base * 2**(n-1) capped at `max_delay_s`, scaled by a random factor in
    [1 - jitter, 1] so that many clients do not retry in lockstep. Rate-limit replies are counted separately
    (`rate_limit_attempts`, waits from `rate_limit_delay_s`): they say "later", not "broken".
    """

    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    jitter: float = 0.5
    rate_limit_attempts: int = 10
    rate_limit_delay_s: float = 10.0
    rate_limit_max_delay_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.rate_limit_attempts < 1:
            raise ValueError("attempt counts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if min(self.base_delay_s, self.max_delay_s, self.rate_limit_delay_s, self.rate_limit_max_delay_s) < 0:
            raise ValueError("delays cannot be negative")

    def _jittered(self, base: float, cap: float, failures: int) -> float:
        delay = min(cap, base * 2 ** (failures - 1))
        return delay * (1 - self.jitter * self.rng.random())

    def transient_delay(self, failures: int) -> float:
        """Wait after the `failures`-th consecutive transient failure (1-based)."""
        return self._jittered(self.base_delay_s, self.max_delay_s, failures)

    def rate_limit_delay(self, refusals: int) -> float:
        """Wait after the `refusals`-th rate-limit reply (1-based)."""
        return self._jittered(self.rate_limit_delay_s, self.rate_limit_max_delay_s, refusals)
