"""In-process bus for standalone mode: same contract as the AMQP adapter, without durability across restarts."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.platform.bus.port import EventHandler, JobHandler, topic_matches
from shared.platform.events.envelope import Envelope, InvalidEvent
from shared.platform.observability import correlation_id_var

log = logging.getLogger(__name__)

# Event types published many times a second (real-time quotes, docs/quotes.md) are delivered but not kept in
# `published`, which would otherwise grow by megabytes an hour in a standalone process.
UNKEPT_TYPES = frozenset({"quotes.snapshot", "bars.1m"})


@dataclass
class _Subscription:
    consumer: str
    patterns: list[str]
    handler: EventHandler
    queue: asyncio.Queue[Envelope] = field(default_factory=asyncio.Queue)


class MemoryBus:
    def __init__(self) -> None:
        self._subscriptions: list[_Subscription] = []
        self._job_queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.dead_letters: list[Any] = []
        self.published: list[Envelope] = []
        self.rejected_events: Counter[str] = Counter()  # by consumer: events whose payload did not parse

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def ping(self) -> bool:
        return True

    async def publish(self, event: Envelope) -> None:
        if event.type not in UNKEPT_TYPES:
            self.published.append(event)
        for sub in self._subscriptions:
            if any(topic_matches(p, event.type) for p in sub.patterns):
                sub.queue.put_nowait(event)

    async def subscribe(
        self,
        consumer: str,
        patterns: list[str],
        handler: EventHandler,
        *,
        durable: bool = True,
        max_bytes: int | None = None,
    ) -> None:
        sub = _Subscription(consumer, patterns, handler)
        self._subscriptions.append(sub)
        self._tasks.append(asyncio.create_task(self._deliver_events(sub), name=f"bus:{consumer}"))

    async def _deliver_events(self, sub: _Subscription) -> None:
        while True:
            event = await sub.queue.get()
            correlation_id_var.set(event.correlation_id)
            try:
                event.parsed()  # its payload as its schema, before any handler sees it
            except InvalidEvent:
                self.rejected_events[sub.consumer] += 1
                log.exception("malformed event dead-lettered", extra={"consumer": sub.consumer})
                self.dead_letters.append(event)
                continue
            for attempt in (1, 2):  # redelivered once, then dead-lettered: as the AMQP adapter does
                try:
                    await sub.handler(event)
                    break
                except Exception:
                    log.exception("event handler failed", extra={"consumer": sub.consumer, "attempt": attempt})
            else:
                self.dead_letters.append(event)

    async def enqueue(self, queue: str, body: dict[str, Any], *, message_id: str) -> None:
        self._job_queues.setdefault(queue, asyncio.Queue()).put_nowait(body)

    async def consume_jobs(self, queue: str, handler: JobHandler, *, prefetch: int = 1) -> None:
        jobs = self._job_queues.setdefault(queue, asyncio.Queue())
        self._tasks.append(asyncio.create_task(self._run_jobs(queue, jobs, handler), name=f"jobs:{queue}"))

    async def waiting_jobs(self, queue: str) -> int:
        jobs = self._job_queues.get(queue)
        return 0 if jobs is None else jobs.qsize()

    async def _run_jobs(self, queue: str, jobs: asyncio.Queue[dict[str, Any]], handler: JobHandler) -> None:
        while True:
            body = await jobs.get()
            try:
                await handler(body)
            except Exception:
                log.exception("job failed; dead-lettered", extra={"queue": queue})
                self.dead_letters.append(body)
