"""A backtest as a job: reading it, claiming it for a worker, its heartbeat, cancelling it, and finding the ones
that lost their worker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.sql.elements import ColumnElement

from services.backtest.store.records import BacktestRecord, BacktestStatus, first_row
from services.backtest.store.tables import backtests, outbox
from shared.platform.clock import utcnow
from shared.platform.db import Database
from shared.platform.events.envelope import Envelope
from shared.platform.outbox import add_to_outbox


def _last_sign_of_life() -> ColumnElement[Any]:
    return func.coalesce(backtests.c.heartbeat_at, backtests.c.started_at)


class BacktestJobs:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, backtest_id: str) -> BacktestRecord | None:
        row = await first_row(self.db, select(backtests).where(backtests.c.backtest_id == backtest_id))
        return None if row is None else BacktestRecord.from_row(row)

    async def set_universe(self, backtest_id: str, ts_codes: Sequence[str]) -> None:
        """The symbols an index or a filter resolved to, recorded by the worker that runs the backtest."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(
                    update(backtests)
                    .where(backtests.c.backtest_id == backtest_id, backtests.c.status == BacktestStatus.RUNNING.value)
                    .values(ts_codes=list(ts_codes))
                )

    async def cancel_queued(self, backtest_id: str, event: Envelope) -> bool:
        """queued -> cancelled with its `backtest.finished` event, in one transaction; False if it was not queued."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                result = await session.execute(
                    update(backtests)
                    .where(backtests.c.backtest_id == backtest_id, backtests.c.status == BacktestStatus.QUEUED.value)
                    .values(status=BacktestStatus.CANCELLED.value, cancel_requested=True, finished_at=utcnow())
                )
                if result.rowcount != 1:
                    return False
                await add_to_outbox(session, outbox, event)
        return True

    async def request_cancel(self, backtest_id: str) -> bool:
        """Raise the cancel flag of a running backtest (its worker stops at the next progress report); False if
        it is not running."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                result = await session.execute(
                    update(backtests)
                    .where(backtests.c.backtest_id == backtest_id, backtests.c.status == BacktestStatus.RUNNING.value)
                    .values(cancel_requested=True)
                )
        return bool(result.rowcount == 1)

    async def is_cancel_requested(self, backtest_id: str) -> bool:
        async for attempt in self.db.transaction():
            async with attempt as session:
                value = (
                    await session.execute(
                        select(backtests.c.cancel_requested).where(backtests.c.backtest_id == backtest_id)
                    )
                ).scalar()
        return bool(value)

    async def claim(self, backtest_id: str) -> BacktestRecord | None:
        """Mark a queued (or a crashed worker's running) backtest running and return it. A finished backtest is
        returned unchanged; the caller leaves it alone. None when there is no such backtest."""
        record, _ = await self.try_claim(backtest_id)
        return record

    async def try_claim(
        self, backtest_id: str, *, max_attempts: int | None = None
    ) -> tuple[BacktestRecord | None, bool]:
        """As `claim`, also saying whether this call claimed the backtest. With `max_attempts`, a backtest already
        started that many times is not claimed again: it is returned unchanged (still queued or running) with
        False, for the caller to fail it."""
        conditions = [
            backtests.c.backtest_id == backtest_id,
            backtests.c.status.in_([BacktestStatus.QUEUED.value, BacktestStatus.RUNNING.value]),
        ]
        if max_attempts is not None:
            conditions.append(backtests.c.attempts < max_attempts)
        async for attempt in self.db.transaction():
            async with attempt as session:
                result = await session.execute(
                    update(backtests)
                    .where(*conditions)
                    .values(
                        status=BacktestStatus.RUNNING.value,
                        started_at=utcnow(),
                        heartbeat_at=utcnow(),
                        attempts=backtests.c.attempts + 1,
                    )
                )
                claimed = result.rowcount == 1
        return await self.get(backtest_id), claimed

    async def stale(self, *, queued_for_s: float, running_for_s: float, limit: int = 500) -> list[str]:
        """Backtests that may have lost their job: queued for longer than `queued_for_s` (the job was never
        queued, or a restart lost it), or running without a heartbeat (or, before the first one, a start) for longer
        than `running_for_s` (the worker is gone and nothing redelivered the job). Oldest first."""
        now = utcnow()
        query = (
            select(backtests.c.backtest_id)
            .where(
                (
                    (backtests.c.status == BacktestStatus.QUEUED.value)
                    & (backtests.c.created_at < now - timedelta(seconds=queued_for_s))
                )
                | (
                    (backtests.c.status == BacktestStatus.RUNNING.value)
                    & (_last_sign_of_life() < now - timedelta(seconds=running_for_s))
                )
            )
            .order_by(backtests.c.created_at, backtests.c.backtest_id)
            .limit(limit)
        )
        async for attempt in self.db.transaction():
            async with attempt as session:
                stale = [r.backtest_id for r in (await session.execute(query)).all()]
        return stale

    async def heartbeat(self, backtest_id: str) -> bool:
        """The running worker's lease: renewed while the engine runs, so a long backtest is never taken for a lost
        one. False when the backtest is no longer running (finished or cancelled meanwhile)."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                result = await session.execute(
                    update(backtests)
                    .where(backtests.c.backtest_id == backtest_id, backtests.c.status == BacktestStatus.RUNNING.value)
                    .values(heartbeat_at=utcnow())
                )
        return bool(result.rowcount == 1)

    async def mark_running_resent(self, backtest_id: str, *, running_for_s: float) -> bool:
        """Before a sweep re-queues a stale running backtest: restart its staleness clock, so that of several
        workers sweeping at once only one re-queues it. False when it is no longer stale (someone else did)."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                result = await session.execute(
                    update(backtests)
                    .where(
                        backtests.c.backtest_id == backtest_id,
                        backtests.c.status == BacktestStatus.RUNNING.value,
                        _last_sign_of_life() < utcnow() - timedelta(seconds=running_for_s),
                    )
                    .values(heartbeat_at=utcnow())
                )
        return bool(result.rowcount == 1)
