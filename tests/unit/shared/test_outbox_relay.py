"""OutboxRelay.stop ends the relay's loop, also when the stop's cancel arrives together with a wake-up: on Python
3.11 `asyncio.wait_for` then returns the wake-up and drops the cancel, and the loop went on to flush after the
service had disposed of its database (and stop waited out its whole grace period)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import MetaData

from shared.platform.bus import MemoryBus
from shared.platform.outbox import OutboxRelay, outbox_table


class NoRows:
    def all(self) -> list[Any]:
        return []


class FakeSession:
    async def execute(self, *_: Any) -> NoRows:
        return NoRows()


class FakeDatabase:
    """Counts the sessions opened; after `dispose` a session is an error, as with the real Database."""

    def __init__(self) -> None:
        self.disposed = False
        self.sessions = 0
        self.sessions_after_dispose = 0

    @asynccontextmanager
    async def session(self) -> AsyncIterator[FakeSession]:
        self.sessions += 1
        if self.disposed:
            self.sessions_after_dispose += 1
            raise RuntimeError("Database.connect() has not been called")
        yield FakeSession()

    async def transaction(self) -> AsyncIterator[Any]:
        """One attempt, as the real Database's when nothing fails transiently."""
        yield self.session()


async def test_a_stop_whose_cancel_is_dropped_still_ends_the_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    real_wait_for = asyncio.wait_for

    async def dropping_cancel(awaitable: Any, timeout: float | None) -> Any:
        # What Python 3.11's wait_for does when the awaited completes just as a cancel arrives: the result wins and
        # the cancel is lost. Here every cancel is lost, the worst case.
        try:
            return await real_wait_for(awaitable, timeout)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return None

    monkeypatch.setattr(asyncio, "wait_for", dropping_cancel)
    db = FakeDatabase()
    relay = OutboxRelay(db, outbox_table(MetaData()), MemoryBus(), poll_s=30.0)  # type: ignore[arg-type]
    relay.start()
    task = relay._loop.task
    assert task is not None
    await asyncio.sleep(0.01)  # the relay flushed once at start and now waits for a wake-up
    try:
        await relay.stop(grace_s=1.0)
        assert task.done()
        db.disposed = True  # what the service does right after stopping the relay
        await asyncio.sleep(0.05)
        assert db.sessions_after_dispose == 0
    finally:
        monkeypatch.setattr(asyncio, "wait_for", real_wait_for)
        if not task.done():  # the relay outlived its stop: end it, so a failure here does not hang the run
            relay._loop.stopping.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_relay_stopped_and_started_again_publishes_again() -> None:
    db = FakeDatabase()
    relay = OutboxRelay(db, outbox_table(MetaData()), MemoryBus(), poll_s=30.0)  # type: ignore[arg-type]
    relay.start()
    await relay.stop(grace_s=1.0)
    relay.start()
    opened = db.sessions
    relay.notify()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if db.sessions > opened:
            break
    assert db.sessions > opened  # the woken relay looked for pending rows
    await relay.stop(grace_s=1.0)
