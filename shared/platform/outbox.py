"""Transactional outbox: an event is written in the same transaction as the state change it reports, and a
relay publishes it (with confirms) afterwards, so no committed change loses its event and no event reports an
uncommitted change. Delivery is at-least-once; consumers are idempotent by event id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import Column, Index, MetaData, String, Table, Text, bindparam, select, update

from shared.platform.bus.port import EventBus
from shared.platform.clock import UtcDateTime, utcnow
from shared.platform.db import Database, DbSession
from shared.platform.events.envelope import Envelope
from shared.platform.periodic import PeriodicTask

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", String(32), primary_key=True),  # the event id
        Column("type", String(64), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("published_at", UtcDateTime, nullable=True),
        Index("ix_outbox_pending", "published_at", "created_at"),
    )


async def add_to_outbox(session: DbSession, table: Table, event: Envelope) -> None:
    # (the statement's parameters apart from it: a constant statement is compiled once and its cache key is free;
    # `.values(...)` built and keyed a new statement for every event)
    await session.execute(
        table.insert(), {"id": event.id, "type": event.type, "body": event.model_dump_json(), "created_at": utcnow()}
    )


async def add_many_to_outbox(session: DbSession, table: Table, events: Sequence[Envelope]) -> None:
    """Several events of one transaction, in their order, in one statement (an executemany: one multi-row INSERT on
    MariaDB). The relay publishes in created_at order (then by id, which is random): the events are a microsecond
    apart, in their order, as one `add_to_outbox` after another would stamp them."""
    if not events:
        return
    now = utcnow()
    await session.execute(
        table.insert(),
        [
            {"id": e.id, "type": e.type, "body": e.model_dump_json(), "created_at": now + timedelta(microseconds=i)}
            for i, e in enumerate(events)
        ],
    )


class OutboxRelay:
    """Publishes pending outbox rows. `notify()` after a commit publishes at once; a poll catches the rest
    (e.g. rows left by a crash between commit and publish, or while the broker was down)."""

    def __init__(self, db: Database, table: Table, bus: EventBus, *, poll_s: float = 1.0, batch: int = 200) -> None:
        self.db = db
        self.table = table
        self.bus = bus
        self.poll_s = poll_s
        self.batch = batch
        self._lock = asyncio.Lock()
        # The relay's two statements, built once (constant statements: not built and cache-keyed again per flush).
        self._pending = (
            select(table.c.id, table.c.body)
            .where(table.c.published_at.is_(None))
            .order_by(table.c.created_at, table.c.id)
            .limit(batch)
        )
        self._mark = (
            update(table)
            .where(table.c.id.in_(bindparam("p_ids", expanding=True)))
            .values(published_at=bindparam("p_at"))
        )
        # Flushes at start, then after each notify() or every poll_s.
        self._loop = PeriodicTask("outbox-relay", poll_s, self.flush, stop_grace_s=10.0)

    def start(self) -> None:
        self._loop.start()

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Stop between flushes, never inside one: a task cancelled in the middle of an asyncmy query cannot roll
        its transaction back (the rollback then waits for a reply forever), so a flush in progress gets up to
        `grace_s` to finish before it is cancelled. Never waits longer than that for the task."""
        await self._loop.stop(grace_s)

    def notify(self) -> None:
        self._loop.wake()

    async def flush(self) -> int:
        """Publish every pending event in creation order; return how many were published. A batch shorter than
        `batch` was all there was: no further read for nothing (a row committed since then came with its own
        `notify()`, which runs the flush again; one left without, e.g. by a crash, waits for the poll)."""
        published = 0
        async with self._lock:
            while True:
                async for attempt in self.db.transaction():
                    async with attempt as session:
                        rows = (await session.execute(self._pending)).all()
                if not rows:
                    return published
                sent: list[str] = []
                try:
                    for row in rows:
                        await self.bus.publish(Envelope.model_validate_json(row.body))
                        sent.append(row.id)
                finally:
                    # One UPDATE for the batch (not one transaction per event): what was confirmed is marked even
                    # when a later publish fails; a crash before this line republishes, which consumers absorb.
                    if sent:
                        async for attempt in self.db.transaction():
                            async with attempt as session:
                                await session.execute(self._mark, {"p_ids": sent, "p_at": utcnow()})
                published += len(sent)
                if len(rows) < self.batch:
                    return published
