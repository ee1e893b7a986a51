"""One channel per robot: notifications that arrive within the merge window become one message; at most
`rate_limit` messages go to a robot in any `rate_window_s` (DingTalk throttles a robot for minutes past 20 a minute),
and what the limit holds back is merged into the next message, never dropped; a failed send is retried with backoff
and keeps everything that arrived meanwhile.

The limit is a sliding window, not a refilling token bucket: a bucket of 20 refilled at 20 a minute lets a 21st
message through 3 s after a burst of 20, which a robot counting "20 per minute" refuses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from services.notify.metrics import NotifyMetrics
from services.notify.robots import SendResult
from services.notify.schemas import WebhookNotification

log = logging.getLogger(__name__)

Sender = Callable[[list[WebhookNotification], int], Awaitable[SendResult]]  # (batch, deferred) -> result


class SlidingWindowLimit:
    """At most `limit` events in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._times: deque[float] = deque()

    def wait_s(self) -> float:
        """Seconds until one more event is allowed (0: now)."""
        now = self.clock()
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window_s - now

    def record(self) -> None:
        self._times.append(self.clock())


class RobotChannel:
    def __init__(self, name: str, sender: Sender, limit: SlidingWindowLimit, metrics: NotifyMetrics, *,
                 merge_window_s: float, retry_base_s: float, retry_max_s: float) -> None:  # fmt: skip
        self.name = name
        self.sender = sender
        self.limit = limit
        self.metrics = metrics
        self.merge_window_s = merge_window_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.pending: list[WebhookNotification] = []
        self._deferred = 0  # of `pending`: notifications the rate limit held back
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def offer(self, notification: WebhookNotification) -> int:
        """Queue a notification for the next message; how many are now pending."""
        self.pending.append(notification)
        self.metrics.pending.labels(robot=self.name).set(len(self.pending))
        self._arrived.set()
        return len(self.pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"notify-robot-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.pending:
            # Alertmanager notifies again after its repeat_interval; say what this process could not deliver.
            log.error(
                "notify stopped with undelivered notifications",
                extra={"robot": self.name, "pending": len(self.pending)},
            )

    async def _run(self) -> None:
        backoff = self.retry_base_s
        while True:
            await self._arrived.wait()
            await asyncio.sleep(self.merge_window_s)  # what arrives meanwhile joins this message
            wait = self.limit.wait_s()
            if wait > 0:
                held = len(self.pending) - self._deferred
                self._deferred += held
                self.metrics.deferred.labels(robot=self.name).inc(held)
                log.warning("robot rate limit: notifications held for the next message",
                            extra={"robot": self.name, "held": held, "wait_s": round(wait, 3)})  # fmt: skip
                await asyncio.sleep(wait)
                continue  # arrivals while waiting are merged; the limit is checked again
            batch, deferred = self.pending, self._deferred
            self.pending, self._deferred = [], 0
            self._arrived.clear()
            result = await self.sender(batch, deferred)
            # Counted when the answer is back: the robot counted it at some moment before, so the window measured
            # from here never ends before the robot's does.
            self.limit.record()
            if result.ok:
                self.metrics.messages.labels(robot=self.name, outcome="sent").inc()
                self.metrics.pending.labels(robot=self.name).set(len(self.pending))
                backoff = self.retry_base_s
                if self.pending:
                    self._arrived.set()
                continue
            # Not delivered: back in front of what arrived meanwhile, sent again (merged) after the backoff.
            self.metrics.messages.labels(robot=self.name, outcome="failed").inc()
            self.metrics.send_failures.labels(robot=self.name, reason=result.reason).inc()
            self.pending = batch + self.pending
            self._deferred += deferred
            self._arrived.set()
            delay = backoff if result.retryable else self.retry_max_s
            log.warning("robot message not delivered; retrying",
                        extra={"robot": self.name, "reason": result.reason, "retry_in_s": delay,
                               "pending": len(self.pending)})  # fmt: skip
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.retry_max_s)
