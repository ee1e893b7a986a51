"""What every service may do with the bus: publish events (confirmed), subscribe, and use work queues."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from shared.platform.events.envelope import Envelope

EventHandler = Callable[[Envelope], Awaitable[None]]
JobHandler = Callable[[dict[str, Any]], Awaitable[None]]


class EventBus(Protocol):
    # Events a consumer could not read (unknown type, or a payload that does not fit its schema), by consumer: the
    # bus parses every payload into its schema on receipt and dead-letters such an event before any handler runs.
    rejected_events: Counter[str]

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def publish(self, event: Envelope) -> None:
        """Return only once the broker has the event (publisher confirm); raise otherwise."""

    async def subscribe(
        self,
        consumer: str,
        patterns: list[str],
        handler: EventHandler,
        *,
        durable: bool = True,
        max_bytes: int | None = None,
    ) -> None:
        """Deliver events whose type matches a topic pattern to `handler`, through the queue of `consumer`.

        The handler receives an event whose payload parsed into its schema (`event.parsed()`); one that does
        not parse is counted in `rejected_events` and dead-lettered without reaching the handler.
        A durable consumer gets a durable queue that keeps events while it is down; a non-durable one
        (e.g. a gateway's WebSocket fan-out) gets a private queue that goes away with it. A handler that
        raises has its event redelivered once, then dead-lettered.
        `max_bytes`: a durable queue of superseded events (quotes) keeps at most this many bytes while its consumer
        is down; the oldest are dropped (not dead-lettered), and so is an event whose handler fails twice.
        """

    async def enqueue(self, queue: str, body: dict[str, Any], *, message_id: str) -> None:
        """Put a job on a durable work queue (persistent, confirmed)."""

    async def consume_jobs(self, queue: str, handler: JobHandler, *, prefetch: int = 1) -> None:
        """Run `handler` for each job; acknowledge only after it returns. A raising job is dead-lettered."""

    async def waiting_jobs(self, queue: str) -> int:
        """How many jobs wait in the work queue, not yet delivered to a worker."""


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` is zero or more words."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])
