"""The queries the optimisation coordinator and the task handler run against an optimisation and its points. A point
is stored once: its row is written `pending` when its generation is planned and moved to `done`/`failed` only
from `pending`, so a redelivered batch changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from services.backtest.store.records import (
    ERROR_MAX_CHARS,
    OptimisationRecord,
    OptimisationStatus,
    PointRow,
    PointStatus,
    StoredPoint,
    first_row,
    point_hash,
)
from services.backtest.store.tables import optimisation_points, optimisations
from shared.platform.clock import utcnow
from shared.platform.db import Database


def first_populations(method: str, keys: Sequence[str]) -> list[list[str]]:
    """What a new optimisation records of its populations: a GA's first generation is the points it starts with (the
    coordinator breeds the next from it); the other methods have no generations, so nothing."""
    return [list(keys)] if method == "ga" else []


class OptimisationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        *,
        optimisation_id: str,
        owner: str,
        strategy: str,
        method: str,
        space: dict[str, Any],
        fixed: dict[str, Any],
        objective: dict[str, Any],
        constraints: Sequence[str],
        settings: dict[str, Any],
        ts_codes: Sequence[str],
        start: date,
        end: date,
        config: dict[str, Any],
        points: Sequence[tuple[str, dict[str, Any]]],
        skipped: int,
    ) -> None:
        """The job and its first points (grid: all of them; GA: generation 0), in one transaction."""
        now = utcnow()
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(
                    insert(optimisations).values(
                        optimisation_id=optimisation_id,
                        owner=owner,
                        strategy=strategy,
                        method=method,
                        space=space,
                        fixed=fixed,
                        objective=objective,
                        constraints=list(constraints),
                        settings=settings,
                        ts_codes=list(ts_codes),
                        start_date=start,
                        end_date=end,
                        config=config,
                        status=OptimisationStatus.QUEUED.value,
                        generation=0,
                        populations=first_populations(method, [k for k, _ in points]),
                        total_points=len(points),
                        done_points=0,
                        skipped_points=skipped,
                        created_at=now,
                    )
                )
                await self._insert_points(session, optimisation_id, points, 0, now)

    @staticmethod
    async def _insert_points(
        session: Any, optimisation_id: str, points: Sequence[tuple[str, dict[str, Any]]], generation: int, now: datetime
    ) -> None:
        if not points:
            return
        await session.execute(
            insert(optimisation_points),
            [
                {
                    "optimisation_id": optimisation_id,
                    "point_hash": point_hash(key),
                    "point_key": key,
                    "params": params,
                    "generation": generation,
                    "status": PointStatus.PENDING.value,
                    "updated_at": now,
                }
                for key, params in points
            ],
        )

    async def get(self, optimisation_id: str) -> OptimisationRecord | None:
        row = await first_row(self.db, select(optimisations).where(optimisations.c.optimisation_id == optimisation_id))
        return None if row is None else OptimisationRecord.of(row)

    async def recent(self, *, owner: str | None, limit: int, offset: int) -> list[OptimisationRecord]:
        """Newest first; `owner=None`: everyone's."""
        query = select(optimisations)
        if owner is not None:
            query = query.where(optimisations.c.owner == owner)
        query = query.order_by(optimisations.c.created_at.desc(), optimisations.c.optimisation_id.desc())
        async for attempt in self.db.transaction():
            async with attempt as session:
                rows = (await session.execute(query.limit(limit).offset(offset))).mappings().all()
        return [OptimisationRecord.of(r) for r in rows]

    async def mark_running(self, optimisation_id: str) -> None:
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(
                    update(optimisations)
                    .where(
                        optimisations.c.optimisation_id == optimisation_id,
                        optimisations.c.status == OptimisationStatus.QUEUED.value,
                    )
                    .values(status=OptimisationStatus.RUNNING.value, started_at=utcnow())
                )

    async def points(
        self, optimisation_id: str, *, hashes: Sequence[str] | None = None, status: PointStatus | None = None
    ) -> list[PointRow]:
        query = select(optimisation_points).where(optimisation_points.c.optimisation_id == optimisation_id)
        if hashes is not None:
            query = query.where(optimisation_points.c.point_hash.in_(list(hashes)))
        if status is not None:
            query = query.where(optimisation_points.c.status == status.value)
        async for attempt in self.db.transaction():
            async with attempt as session:
                rows = (await session.execute(query.order_by(optimisation_points.c.point_hash))).mappings().all()
        return [PointRow.of(r) for r in rows]

    async def store_results(self, optimisation_id: str, results: Sequence[StoredPoint]) -> int:
        """Store each point's outcome if it is still pending; returns how many were stored by this call. The
        progress counter moves by the same number in the same transaction, so a redelivered batch adds 0."""
        now = utcnow()
        async for attempt in self.db.transaction():
            async with attempt as session:
                stored = 0  # per attempt: a rolled-back attempt's rows were not stored
                for r in results:
                    outcome = await session.execute(
                        update(optimisation_points)
                        .where(
                            optimisation_points.c.optimisation_id == optimisation_id,
                            optimisation_points.c.point_hash == point_hash(r.key),
                            optimisation_points.c.status == PointStatus.PENDING.value,
                        )
                        .values(
                            status=(PointStatus.FAILED if r.error else PointStatus.DONE).value,
                            metrics=r.metrics,
                            objective=r.objective,
                            feasible=r.feasible,
                            violations=r.violations,
                            error=None if r.error is None else r.error[-ERROR_MAX_CHARS:],
                            updated_at=now,
                        )
                    )
                    stored += outcome.rowcount
                if stored:
                    await session.execute(
                        update(optimisations)
                        .where(optimisations.c.optimisation_id == optimisation_id)
                        .values(done_points=optimisations.c.done_points + stored)
                    )
        return stored

    async def pending_count(self, optimisation_id: str) -> int:
        async for attempt in self.db.transaction():
            async with attempt as session:
                value = await session.scalar(
                    select(func.count())
                    .select_from(optimisation_points)
                    .where(
                        optimisation_points.c.optimisation_id == optimisation_id,
                        optimisation_points.c.status == PointStatus.PENDING.value,
                    )
                )
        return int(value or 0)

    async def advance_generation(
        self,
        optimisation_id: str,
        *,
        from_generation: int,
        points: Sequence[tuple[str, dict[str, Any]]],
        population: Sequence[str],
        skipped: int,
    ) -> bool:
        """Move a GA to its next generation with its new points, once: only the caller that finds the job at
        `from_generation` does it (the others get False), and the points go in in the same transaction, so a crash
        leaves either the old generation (recomputed by the next coordinator) or the new one with its points."""
        record = await self.get(optimisation_id)
        if record is None or record.generation != from_generation:
            return False
        async for attempt in self.db.transaction():
            async with attempt as session:
                moved = await session.execute(
                    update(optimisations)
                    .where(
                        optimisations.c.optimisation_id == optimisation_id,
                        optimisations.c.generation == from_generation,
                        optimisations.c.status == OptimisationStatus.RUNNING.value,
                    )
                    .values(
                        generation=from_generation + 1,
                        populations=[*record.populations, list(population)],
                        total_points=optimisations.c.total_points + len(points),
                        skipped_points=optimisations.c.skipped_points + skipped,
                    )
                )
                if moved.rowcount != 1:
                    return False
                await self._insert_points(session, optimisation_id, points, from_generation + 1, utcnow())
        return True

    async def finish(
        self,
        optimisation_id: str,
        status: OptimisationStatus,
        *,
        best: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Final, once: only from queued/running."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                outcome = await session.execute(
                    update(optimisations)
                    .where(
                        optimisations.c.optimisation_id == optimisation_id,
                        optimisations.c.status.in_([OptimisationStatus.QUEUED.value, OptimisationStatus.RUNNING.value]),
                    )
                    .values(
                        status=status.value,
                        best=best,
                        result=result,
                        error=None if error is None else error[-ERROR_MAX_CHARS:],
                        finished_at=utcnow(),
                    )
                )
        return outcome.rowcount == 1

    async def stale_running(self, *, idle_for_s: float) -> list[str]:
        """Running optimisations whose pending points have not moved for `idle_for_s` (their batches were lost,
        or the coordinator died between storing the last batch and planning what follows)."""
        cutoff = utcnow() - timedelta(seconds=idle_for_s)
        last_move = (
            select(func.max(optimisation_points.c.updated_at))
            .where(optimisation_points.c.optimisation_id == optimisations.c.optimisation_id)
            .scalar_subquery()
        )
        query = select(optimisations.c.optimisation_id).where(
            optimisations.c.status.in_([OptimisationStatus.QUEUED.value, OptimisationStatus.RUNNING.value]),
            optimisations.c.created_at < cutoff,
            (last_move < cutoff) | last_move.is_(None),
        )
        async for attempt in self.db.transaction():
            async with attempt as session:
                stale = [r[0] for r in (await session.execute(query)).all()]
        return stale
