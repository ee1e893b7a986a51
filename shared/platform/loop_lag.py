"""Event-loop lag: how late the loop wakes a task that asked to sleep. A service whose loop is blocked (CPU-bound
work, a synchronous call) answers everything late; this shows it per process (lh_event_loop_lag_seconds, on the
Platform dashboard), whatever the requests are."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Histogram

INTERVAL_S = 0.5  # one probe every half second: a sleep, then how much later than asked it woke
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLag:
    def __init__(self, registry: CollectorRegistry, *, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.lag = Histogram(
            "lh_event_loop_lag_seconds",
            f"How late the event loop woke a task sleeping {interval_s} s (one probe per interval)",
            buckets=LAG_BUCKETS_S,
            registry=registry,
        )

    async def probe(self) -> float:
        """One probe: sleep the interval, observe how much later than asked the loop woke the task."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(self.interval_s)
        late = max(0.0, loop.time() - start - self.interval_s)
        self.lag.observe(late)
        return late

    async def run(self) -> None:
        while True:
            await self.probe()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(), name="event-loop-lag")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
