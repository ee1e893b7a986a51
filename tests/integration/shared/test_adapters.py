"""The shared adapters against the real RabbitMQ, Redis and MariaDB."""

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aio_pika
import pytest
from sqlalchemy import Column, Integer, String, Table, func, select

from shared.platform.bus import IdempotentHandler
from shared.platform.bus.amqp import AmqpBus
from shared.platform.cache import RedisCache
from shared.platform.db import Database, new_metadata
from shared.platform.events import Envelope, OrderUpdated, TradeExecuted, make_event
from shared.platform.observability import correlation_id_var
from shared.platform.outbox import OutboxRelay, add_to_outbox, outbox_table
from tests.conftest import Backing

pytestmark = pytest.mark.integration


def _event(order_id: str = "o1") -> Envelope:
    payload = OrderUpdated(
        order_id=order_id, client_order_id="c", account_id="a", ts_code="600000.SH", side="buy",
        order_type="market", qty=100, price=None, status="filled", filled_qty=100,
        avg_fill_price=Decimal("10.00"), updated_at=datetime.now(UTC),
    )  # fmt: skip
    return make_event("order.filled", payload, source="test")


def _trade(account_id: str = "a") -> Envelope:
    payload = TradeExecuted(
        trade_id="t1", order_id="o1", client_order_id="c", account_id=account_id, ts_code="600000.SH", side="buy",
        qty=100, price=Decimal("10.00"), amount=Decimal("1000.00"), traded_at=datetime.now(UTC),
    )  # fmt: skip
    return make_event("trade.executed", payload, source="test")


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def _dead_letters(backing: Backing, bus: AmqpBus) -> list[dict]:
    connection = await aio_pika.connect(backing.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(bus.dead_letter_queue, durable=True)
        out = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            out.append(json.loads(message.body))
        return out
    finally:
        await connection.close()


async def test_amqp_events_are_routed_carry_correlation_and_dead_letter(backing: Backing) -> None:
    ns = f"{backing.namespace}.bus1"
    bus = AmqpBus(backing.amqp_url, namespace=ns, source="test")
    await bus.start()
    received: list[tuple[str, str | None]] = []
    attempts: list[str] = []

    async def on_order(event: Envelope) -> None:
        received.append((event.type, correlation_id_var.get()))

    async def always_fails(event: Envelope) -> None:
        attempts.append(event.id)
        raise RuntimeError("boom")

    try:
        await bus.subscribe("orders", ["order.*"], on_order)
        await bus.subscribe("broken", ["trade.#"], always_fails)
        token = correlation_id_var.set("corr-42")
        try:
            await bus.publish(_event())
        finally:
            correlation_id_var.reset(token)
        await bus.publish(_trade())
        await _until(lambda: received and len(attempts) >= 2)
        assert received == [("order.filled", "corr-42")]
        await asyncio.sleep(0.3)
        assert len(attempts) == 2  # delivered, redelivered once, then dead-lettered
        dead = await _dead_letters(backing, bus)
        assert [d["type"] for d in dead] == ["trade.executed"]
    finally:
        await bus.close()


async def test_amqp_hands_handlers_typed_payloads_and_dead_letters_what_does_not_parse(backing: Backing) -> None:
    ns = f"{backing.namespace}.bus-typed"
    bus = AmqpBus(backing.amqp_url, namespace=ns, source="test")
    await bus.start()
    handled: list[object] = []

    async def on_trade(event: Envelope) -> None:
        handled.append(event.parsed())

    try:
        await bus.subscribe("trades", ["trade.*"], on_trade)
        # A trade whose payload lacks the account and has a price that is no number: not half-applied.
        broken = Envelope(type="trade.executed", source="test", payload={"trade_id": "t0", "price": "ten"})
        await bus.publish(broken)
        good = _trade("acct-7")
        await bus.publish(good)
        await _until(lambda: handled)
        await asyncio.sleep(0.3)
        assert len(handled) == 1
        trade = handled[0]
        assert isinstance(trade, TradeExecuted)
        assert (trade.account_id, trade.qty, trade.amount) == ("acct-7", 100, Decimal("1000.00"))
        dead = await _dead_letters(backing, bus)
        assert [(d["id"], d["payload"]) for d in dead] == [(broken.id, {"trade_id": "t0", "price": "ten"})]
        assert bus.rejected_events == {"trades": 1}
    finally:
        await bus.close()


async def test_durable_queue_keeps_events_while_the_consumer_is_down(backing: Backing) -> None:
    ns = f"{backing.namespace}.bus2"
    consumer = AmqpBus(backing.amqp_url, namespace=ns)
    got: list[str] = []

    async def handler(event: Envelope) -> None:
        got.append(event.id)

    await consumer.subscribe("svc", ["order.*"], handler)
    await consumer.close()  # the consuming service goes down; its durable queue stays
    publisher = AmqpBus(backing.amqp_url, namespace=ns)
    events = [_event(f"o{i}") for i in range(3)]
    for e in events:
        await publisher.publish(e)
    await publisher.close()
    consumer = AmqpBus(backing.amqp_url, namespace=ns)
    await consumer.subscribe("svc", ["order.*"], handler)
    try:
        await _until(lambda: len(got) == 3)
        assert got == [e.id for e in events]
    finally:
        await consumer.close()


async def test_job_queue_redelivers_unacked_work_and_dead_letters_poison(backing: Backing) -> None:
    ns = f"{backing.namespace}.jobs"
    crashed = AmqpBus(backing.amqp_url, namespace=ns)
    started = asyncio.Event()

    async def crash_midway(body: dict) -> None:
        started.set()
        await asyncio.sleep(3600)  # the "worker" dies before it acks

    await crashed.enqueue("work", {"job": 1}, message_id="j1")
    await crashed.consume_jobs("work", crash_midway)
    await asyncio.wait_for(started.wait(), 10)
    await crashed.close()  # connection closes with the job unacked -> RabbitMQ requeues it

    done: list[dict] = []
    worker = AmqpBus(backing.amqp_url, namespace=ns)

    async def handle(body: dict) -> None:
        if body.get("poison"):
            raise ValueError("strategy raised")
        done.append(body)

    await worker.enqueue("work", {"poison": True}, message_id="j2")
    await worker.enqueue("work", {"job": 3}, message_id="j3")
    await worker.consume_jobs("work", handle)
    try:
        await _until(lambda: len(done) == 2)
        assert done == [{"job": 1}, {"job": 3}]
        assert await _dead_letters(backing, worker) == [{"poison": True}]
    finally:
        await worker.close()


async def test_redis_cache_and_idempotent_handler(backing: Backing, flushed_redis: str) -> None:
    cache = RedisCache(flushed_redis)
    try:
        assert [await cache.incr_window("rl:test", 60) for _ in range(3)] == [1, 2, 3]
        assert 0 < await cache.client.ttl("rl:test") <= 60
        calls: list[str] = []

        async def handler(event: Envelope) -> None:
            calls.append(event.id)
            if len(calls) == 1:
                raise RuntimeError("transient")

        idem = IdempotentHandler(cache, "svc", handler)
        event = _event()
        with pytest.raises(RuntimeError):
            await idem(event)  # failed: the mark is removed so a redelivery runs it
        await idem(event)
        await idem(event)  # a duplicate: ignored
        assert calls == [event.id, event.id]
        await cache.set("bars:1", "x")
        await cache.set("bars:2", "y")
        assert await cache.delete_prefix("bars:") == 2
    finally:
        await cache.close()


async def test_database_migrations_and_outbox_relay_on_mysql(backing: Backing, tmp_path: Path) -> None:
    metadata = new_metadata()
    orders = Table("orders", metadata, Column("id", Integer, primary_key=True), Column("status", String(16)))
    outbox = outbox_table(metadata)
    migrations = tmp_path / "migrations"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(
        "from tests.integration.shared.test_adapters import _metadata_for_env\n"
        "from shared.platform.db import run_migrations_env\n"
        "run_migrations_env(_metadata_for_env())\n"
    )
    (migrations / "script.py.mako").write_text("")
    (migrations / "versions" / "0001_initial.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n"
        "from shared.platform.db import PreciseDateTime\n"
        "revision = '0001'\ndown_revision = None\n"
        "def upgrade():\n"
        "    op.create_table('orders', sa.Column('id', sa.Integer, primary_key=True), sa.Column('status', sa.String(16)))\n"
        "    op.create_table('outbox', sa.Column('id', sa.String(32), primary_key=True),"
        " sa.Column('type', sa.String(64), nullable=False), sa.Column('body', sa.Text, nullable=False),"
        " sa.Column('created_at', PreciseDateTime, nullable=False), sa.Column('published_at', PreciseDateTime))\n"
        "def downgrade():\n    pass\n"
    )
    db = Database(f"{backing.mysql_url}/lhtest_{backing.run_id}_kernel")
    await db.connect()
    await db.migrate(migrations)
    await db.migrate(migrations)  # idempotent: already at head
    bus = AmqpBus(backing.amqp_url, namespace=f"{backing.namespace}.outbox")
    got: list[str] = []

    async def handler(event: Envelope) -> None:
        got.append(event.id)

    try:
        # A failed transaction leaves neither the change nor its event behind.
        with pytest.raises(RuntimeError):
            async with db.session() as session:
                await session.execute(orders.insert().values(id=1, status="filled"))
                await add_to_outbox(session, outbox, _event("lost"))
                raise RuntimeError("crash before commit")
        async with db.session() as session:
            assert (await session.execute(select(func.count()).select_from(outbox))).scalar() == 0

        # Committed while the broker is unreachable: the event waits in the outbox ...
        events = [_event(f"o{i}") for i in range(3)]
        async with db.session() as session:
            await session.execute(orders.insert().values(id=2, status="filled"))
            for e in events:
                await add_to_outbox(session, outbox, e)
        await bus.subscribe("audit", ["order.*"], handler)
        relay = OutboxRelay(db, outbox, bus)
        assert await relay.flush() == 3  # ... and is published, in order, once the relay runs
        assert await relay.flush() == 0  # and only once
        await _until(lambda: len(got) == 3)
        assert got == [e.id for e in events]
        assert await db.ping()
    finally:
        await bus.close()
        await db.dispose()


def _metadata_for_env():  # type: ignore[no-untyped-def]
    return new_metadata()
