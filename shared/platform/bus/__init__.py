"""The EventBus port and its adapters, chosen by URL: `amqp://` (aio-pika) or `memory://` (standalone)."""

from shared.platform.bus.idempotent import IdempotentHandler
from shared.platform.bus.memory import MemoryBus
from shared.platform.bus.port import EventBus, EventHandler, JobHandler, topic_matches


def create_bus(url: str, *, namespace: str = "lh", source: str = "lianghua") -> EventBus:
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith(("amqp://", "amqps://")):
        from shared.platform.bus.amqp import AmqpBus

        return AmqpBus(url, namespace=namespace, source=source)
    raise ValueError(f"unsupported bus URL scheme: {url.split(':', 1)[0]!r} (use amqp:// or memory://)")


__all__ = [
    "EventBus",
    "EventHandler",
    "IdempotentHandler",
    "JobHandler",
    "MemoryBus",
    "create_bus",
    "topic_matches",
]
