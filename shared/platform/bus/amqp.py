"""RabbitMQ adapter (aio-pika): a durable topic exchange, a durable queue per consuming service,
persistent messages with publisher confirms, and a dead-letter exchange + queue for what cannot be handled."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from shared.platform.bus.port import EventHandler, JobHandler
from shared.platform.events.envelope import Envelope
from shared.platform.observability import CORRELATION_HEADER, correlation_id_var, current_correlation_id, new_id

log = logging.getLogger(__name__)


class AmqpBus:
    def __init__(self, url: str, *, namespace: str = "lh", source: str = "lianghua") -> None:
        self.url = url
        self.ns = namespace
        self.source = source
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._events: AbstractExchange | None = None
        self._jobs: AbstractExchange | None = None
        self._consumer_channels: list[AbstractChannel] = []
        self._lock = asyncio.Lock()
        self.rejected_events: Counter[str] = Counter()  # by consumer: events whose payload did not parse

    @property
    def events_exchange(self) -> str:
        return f"{self.ns}.events"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.ns}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.ns}.dead-letters"

    def queue_name(self, consumer: str) -> str:
        return f"{self.ns}.{consumer}"

    def job_queue_name(self, queue: str) -> str:
        return f"{self.ns}.jobs.{queue}"

    async def start(self) -> None:
        async with self._lock:
            if self._connection is not None:
                return
            self._connection = await aio_pika.connect_robust(self.url, client_properties={"source": self.source})
            channel = await self._connection.channel(publisher_confirms=True)
            self._publish_channel = channel
            self._events = await channel.declare_exchange(
                self.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            # Jobs go through the default exchange straight to their queue; declared here for clarity.
            self._jobs = channel.default_exchange
            dlx = await channel.declare_exchange(self.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
            dead = await channel.declare_queue(self.dead_letter_queue, durable=True)
            await dead.bind(dlx)

    async def close(self) -> None:
        for ch in self._consumer_channels:
            if not ch.is_closed:
                await ch.close()
        self._consumer_channels.clear()
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._events = None

    async def ping(self) -> bool:
        # A robust connection is "not closed" while it tries to reconnect to a broker that is down: ask whether it
        # is connected now.
        return self._connection is not None and self._connection.connected.is_set()

    def _message(self, body: bytes, *, message_id: str, msg_type: str | None = None) -> aio_pika.Message:
        cid = current_correlation_id()
        return aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            type=msg_type,
            correlation_id=cid,
            app_id=self.source,
            headers={CORRELATION_HEADER: cid} if cid else {},
        )

    async def publish(self, event: Envelope) -> None:
        if self._events is None:
            await self.start()
        assert self._events is not None
        body = event.model_dump_json().encode()
        message = self._message(body, message_id=event.id, msg_type=event.type)
        if event.correlation_id:
            message.correlation_id = event.correlation_id
            message.headers[CORRELATION_HEADER] = event.correlation_id
        # With publisher confirms on the channel, publish() returns once the broker has confirmed;
        # mandatory=False: an event nobody subscribes to yet is a fact, not an error.
        await self._events.publish(message, routing_key=event.type, timeout=10)

    async def _declare_consumer_queue(
        self, channel: AbstractChannel, name: str, *, durable: bool, max_bytes: int | None = None
    ) -> aio_pika.abc.AbstractQueue:
        # A bounded queue drops its oldest events when full; with a dead-letter exchange they would pile up there.
        arguments: dict[str, Any] = (
            {"x-dead-letter-exchange": self.dead_letter_exchange}
            if max_bytes is None
            else {"x-max-length-bytes": max_bytes, "x-overflow": "drop-head"}
        )
        return await channel.declare_queue(
            name,
            durable=durable,
            exclusive=not durable,
            auto_delete=not durable,
            arguments=arguments,
        )

    async def subscribe(
        self,
        consumer: str,
        patterns: list[str],
        handler: EventHandler,
        *,
        durable: bool = True,
        max_bytes: int | None = None,
    ) -> None:
        if self._connection is None:
            await self.start()
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=32)
        self._consumer_channels.append(channel)
        events = await channel.declare_exchange(self.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        name = self.queue_name(consumer) if durable else f"{self.queue_name(consumer)}.{new_id()[:12]}"
        queue = await self._declare_consumer_queue(channel, name, durable=durable, max_bytes=max_bytes)
        for pattern in patterns:
            await queue.bind(events, routing_key=pattern)

        async def on_message(message: AbstractIncomingMessage) -> None:
            correlation_id_var.set(_correlation_of(message))
            try:
                event = Envelope.model_validate_json(message.body)
                event.parsed()  # its payload as its schema, before any handler sees it
            except ValueError:
                # Not half-applied: a handler never sees an event it cannot read. Counted, logged, dead-lettered.
                self.rejected_events[consumer] += 1
                log.exception("malformed event dead-lettered", extra={"queue": name})
                await message.reject(requeue=False)
                return
            try:
                await handler(event)
            except Exception:
                # Once more on redelivery (a transient failure), then to the dead-letter queue.
                log.exception(
                    "event handler failed",
                    extra={"queue": name, "event_id": event.id, "redelivered": message.redelivered},
                )
                await message.nack(requeue=not message.redelivered)
                return
            await message.ack()

        await queue.consume(on_message)

    async def enqueue(self, queue: str, body: dict[str, Any], *, message_id: str) -> None:
        if self._publish_channel is None:
            await self.start()
        assert self._publish_channel is not None
        name = self.job_queue_name(queue)
        await self._declare_job_queue(self._publish_channel, name)
        message = self._message(json.dumps(body).encode(), message_id=message_id, msg_type="job")
        await self._publish_channel.default_exchange.publish(message, routing_key=name, timeout=10)

    async def _declare_job_queue(self, channel: AbstractChannel, name: str) -> aio_pika.abc.AbstractQueue:
        return await channel.declare_queue(
            name, durable=True, arguments={"x-dead-letter-exchange": self.dead_letter_exchange}
        )

    async def waiting_jobs(self, queue: str) -> int:
        if self._publish_channel is None:
            await self.start()
        assert self._publish_channel is not None
        declared = await self._declare_job_queue(self._publish_channel, self.job_queue_name(queue))
        count = declared.declaration_result.message_count
        return int(count or 0)

    async def consume_jobs(self, queue: str, handler: JobHandler, *, prefetch: int = 1) -> None:
        if self._connection is None:
            await self.start()
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        self._consumer_channels.append(channel)
        name = self.job_queue_name(queue)
        job_queue = await self._declare_job_queue(channel, name)

        async def on_message(message: AbstractIncomingMessage) -> None:
            correlation_id_var.set(_correlation_of(message))
            try:
                body = json.loads(message.body)
                await handler(body)
            except Exception:
                # A job that raises is poison: dead-letter it so it cannot stop the queue.
                log.exception("job failed; dead-lettered", extra={"queue": name, "message_id": message.message_id})
                await message.reject(requeue=False)
                return
            # Ack only after the handler stored its result: a crash before this line redelivers the job.
            await message.ack()

        await job_queue.consume(on_message)


def _correlation_of(message: AbstractIncomingMessage) -> str | None:
    header = (message.headers or {}).get(CORRELATION_HEADER)
    if isinstance(header, bytes):
        header = header.decode()
    return str(header) if header else message.correlation_id
