"""The ingestion log: one row per run (backfill, update, import), its progress while it runs, and its outcome."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update

from services.data.store.base import StoreBase
from services.data.store.tables import ingest_runs
from shared.platform.clock import utcnow
from shared.platform.db import DbSession

# A run's status: running until it finishes as one of the other three (interrupted: its process stopped first).
RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"
LIMITS_RUN = "limits"  # the kind of a run loading one day's exchange limits (stk_limit) before the open


@dataclass(frozen=True)
class IngestRun:
    run_id: str
    kind: str
    start_date: date | None
    end_date: date | None
    status: str
    rows: int
    progress: float
    detail: dict[str, Any]
    error: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None


def _ingest_run(row: Any) -> IngestRun:
    return IngestRun(
        run_id=row["run_id"], kind=row["kind"], start_date=row["start_date"], end_date=row["end_date"],
        status=row["status"], rows=int(row["rows"]), progress=float(row["progress"]),
        detail=json.loads(row["detail"] or "{}"), error=row["error"], started_at=row["started_at"],
        updated_at=row["updated_at"], finished_at=row["finished_at"],
    )  # fmt: skip


class IngestRunStore(StoreBase):
    """The `ingest_runs` log."""

    async def start_ingest_run(
        self, kind: str, start: date | None = None, end: date | None = None, detail: dict[str, Any] | None = None
    ) -> str:
        run_id = str(uuid.uuid4())
        now = utcnow()
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(
                    ingest_runs.insert().values(
                        run_id=run_id, kind=kind, start_date=start, end_date=end, status=RUNNING, rows=0,
                        progress=0.0, detail=json.dumps(detail or {}), error=None, started_at=now, updated_at=now,
                        finished_at=None,
                    )
                )  # fmt: skip
        return run_id

    async def update_ingest_progress(
        self, run_id: str, *, progress: float, rows: int, detail: dict[str, Any] | None = None
    ) -> None:
        values: dict[str, Any] = {"progress": min(1.0, max(0.0, progress)), "rows": rows, "updated_at": utcnow()}
        if detail is not None:
            values["detail"] = json.dumps(detail)
        # Only while running: a heartbeat landing after the run's finish must not overwrite its final detail.
        query = update(ingest_runs).where(ingest_runs.c.run_id == run_id, ingest_runs.c.status == RUNNING)
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(query.values(**values))

    async def finish_ingest_run(
        self, run_id: str, *, status: str, rows: int, error: str | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        if status not in (SUCCEEDED, FAILED):
            raise ValueError(f"status {status!r}: a run finishes as succeeded or failed")
        now = utcnow()
        values: dict[str, Any] = {"status": status, "rows": rows, "error": error, "updated_at": now,
                                  "finished_at": now}  # fmt: skip
        if status == SUCCEEDED:
            values["progress"] = 1.0
        if detail is not None:
            values["detail"] = json.dumps(detail)
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(update(ingest_runs).where(ingest_runs.c.run_id == run_id).values(**values))

    async def get_ingest_run(self, run_id: str) -> IngestRun | None:
        async with self._session() as session:
            row = (await session.execute(select(ingest_runs).where(ingest_runs.c.run_id == run_id))).mappings().first()
        return None if row is None else _ingest_run(row)

    async def list_ingest_runs(self, limit: int = 50) -> list[IngestRun]:
        query = select(ingest_runs).order_by(ingest_runs.c.started_at.desc()).limit(limit)
        async with self._session() as session:
            return [_ingest_run(row) for row in (await session.execute(query)).mappings().all()]

    async def record_run_range(self, run_id: str, start: date | None, end: date | None) -> None:
        """The days a run found to do (an update learns them only once it started)."""
        query = update(ingest_runs).where(ingest_runs.c.run_id == run_id).values(start_date=start, end_date=end)
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(query)

    async def close_run(
        self,
        run_id: str,
        values: dict[str, Any],
        *,
        with_it: Callable[[DbSession], Awaitable[None]] | None = None,
    ) -> None:
        """Write a run's final `values` (status, rows, detail as a dict, ...) and, in the same transaction,
        `with_it(session)` (the run's event into the outbox): both land, or neither."""
        if "detail" in values:
            values = {**values, "detail": json.dumps(values["detail"])}
        query = update(ingest_runs).where(ingest_runs.c.run_id == run_id).values(**values)
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(query)
                if with_it is not None:
                    await with_it(session)

    async def interrupt_stale_runs(self, cutoff: datetime, error: str, *, except_run_id: str | None = None) -> int:
        """Mark "running" runs whose last heartbeat is before `cutoff` as interrupted; returns how many."""
        now = utcnow()
        query = (
            update(ingest_runs)
            .where(ingest_runs.c.status == RUNNING, ingest_runs.c.updated_at < cutoff)
            .values(status=INTERRUPTED, error=error, finished_at=now, updated_at=now)
        )
        if except_run_id is not None:
            query = query.where(ingest_runs.c.run_id != except_run_id)
        async for attempt in self.db.transaction():
            async with attempt as session:
                result = await session.execute(query)
        return int(result.rowcount or 0)

    async def running_run_id(self) -> str | None:
        """A run recorded as running, if any."""
        async for attempt in self.db.transaction():  # retried, as the ingestion read it
            async with attempt as session:
                found: str | None = await session.scalar(
                    select(ingest_runs.c.run_id).where(ingest_runs.c.status == RUNNING).limit(1)
                )
        return found

    async def limits_loaded(self, kind: str, day: date) -> datetime | None:
        """When the newest succeeded run of `kind` (the pre-open limits load) for trading day `day` finished, or
        None: whether (and since when) that day's exchange limits are stored. A small table: a cheap read."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                found: datetime | None = await session.scalar(
                    select(func.max(ingest_runs.c.finished_at)).where(
                        ingest_runs.c.kind == kind,
                        ingest_runs.c.status == SUCCEEDED,
                        ingest_runs.c.start_date == day,
                    )
                )
        return found

    async def last_limits_day(self, kind: str) -> date | None:
        """The newest trading day a succeeded run of `kind` (the pre-open limits load) stored."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                found: date | None = await session.scalar(
                    select(func.max(ingest_runs.c.start_date)).where(
                        ingest_runs.c.kind == kind, ingest_runs.c.status == SUCCEEDED
                    )
                )
        return found
