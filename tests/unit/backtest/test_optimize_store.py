"""The optimisation store's units of work run again after a transient error: what an attempt that was rolled back
counted must not be counted again by the attempt that commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from asyncmy.errors import OperationalError as MySQLOperationalError
from sqlalchemy import Update
from sqlalchemy.exc import OperationalError
from tenacity import wait_none

from services.backtest.store import OptimisationStore, PointStatus, StoredPoint, first_populations
from services.backtest.store import optimisation_metadata as metadata
from shared.platform import db as db_module
from shared.platform.db import Database


@pytest.fixture
async def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OptimisationStore]:
    monkeypatch.setattr(db_module, "retry_wait", wait_none())
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/opt.db")
    await database.connect()
    async with database.session() as s:
        await s.run_sync(metadata.create_all)
    yield OptimisationStore(database)
    await database.dispose()


class DeadlocksOnce:
    """A connection whose first UPDATE of the job row fails with a deadlock (after the point updates ran)."""

    def __init__(self, connection: Any, state: dict[str, bool]) -> None:
        self._connection = connection
        self._state = state

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(statement, Update) and statement.table.name == "optimisations" and not self._state["failed"]:
            self._state["failed"] = True
            raise OperationalError("UPDATE optimisations", {}, MySQLOperationalError(1213, "Deadlock found"))
        return await self._connection.execute(statement, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


async def test_a_batch_stored_after_a_deadlocked_attempt_counts_its_points_once(
    store: OptimisationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = ["fast=5", "fast=10", "fast=20"]
    await store.create(
        optimisation_id="opt-1",
        owner="alice",
        strategy="sma_cross",
        method="grid",
        space={"fast": [5, 10, 20]},
        fixed={},
        objective={"metric": "sharpe", "direction": "max"},
        constraints=[],
        settings={},
        ts_codes=["600000.SH"],
        start=date(2024, 1, 2),
        end=date(2024, 3, 29),
        config={},
        points=[(k, {"fast": int(k.split("=")[1])}) for k in keys],
        skipped=0,
    )
    state = {"failed": False}
    enter = db_module.Attempt.__aenter__

    async def failing_enter(self: db_module.Attempt) -> Any:
        return DeadlocksOnce(await enter(self), state)

    monkeypatch.setattr(db_module.Attempt, "__aenter__", failing_enter)
    results = [
        StoredPoint(key=k, metrics={"sharpe": 1.0}, objective=1.0, feasible=True, violations=[], error=None)
        for k in keys[:2]
    ]

    stored = await store.store_results("opt-1", results)

    assert state["failed"]  # the first attempt did deadlock, after updating the two points
    assert stored == 2
    record = await store.get("opt-1")
    assert record is not None and record.done_points == 2 and record.total_points == 3
    assert [p.status for p in await store.points("opt-1")].count(PointStatus.DONE) == 2
    # Redelivered: nothing is pending any more, nothing is counted.
    assert await store.store_results("opt-1", results) == 0
    record = await store.get("opt-1")
    assert record is not None and record.done_points == 2


@pytest.mark.parametrize(
    ("method", "populations"),
    [("ga", [["fast=5", "fast=10"]]), ("grid", []), ("walkforward", [])],
)
def test_only_a_ga_starts_with_a_population_its_first_points(method: str, populations: list[list[str]]) -> None:
    assert first_populations(method, ("fast=5", "fast=10")) == populations
