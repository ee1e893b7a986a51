"""What the stores hand back: the job status both kinds of job share, a backtest's and an optimisation's row as a
record, and the read of one job row. A backtest moves queued -> running -> succeeded | failed | cancelled (or
queued -> cancelled); a finished row never changes again, which is what makes a redelivered job harmless."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.sql import Select

from services.backtest.store.tables import backtests
from shared.platform.db import Database

ERROR_MAX_CHARS = 20_000  # TEXT holds 64 KiB; a traceback's last lines are the ones that matter (optimisations too)


class BacktestStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (BacktestStatus.SUCCEEDED, BacktestStatus.FAILED, BacktestStatus.CANCELLED)


def truncate_error(error: str) -> str:
    if len(error) <= ERROR_MAX_CHARS:
        return error
    return "[... truncated ...]\n" + error[-(ERROR_MAX_CHARS - 20) :]


class BacktestKind(StrEnum):
    SINGLE = "single"  # one strategy with its params
    PORTFOLIO = "portfolio"  # several strategies side by side (sleeves); its `strategy` shows "portfolio"


@dataclass(frozen=True)
class BacktestRecord:
    backtest_id: str
    owner: str
    strategy: str
    params: dict[str, Any]
    ts_codes: list[str]
    start: date
    end: date
    initial_cash: Decimal
    status: BacktestStatus
    summary: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    name: str | None = None
    universe: dict[str, Any] | None = None  # {"ts_codes": [...]} | {"index": code} | {"filter": {...}}
    config: dict[str, Any] | None = None  # the cost model, as BacktestConfig fields
    benchmark: str | None = None
    cancel_requested: bool = False
    kind: BacktestKind = BacktestKind.SINGLE

    @classmethod
    def from_row(cls, row: RowMapping) -> BacktestRecord:
        return cls(
            backtest_id=row["backtest_id"],
            owner=row["owner"],
            strategy=row["strategy"],
            params=_json_value(row["params"]),
            ts_codes=_json_value(row["ts_codes"]),
            start=row["start_date"],
            end=row["end_date"],
            initial_cash=row[backtests.c.initial_cash],  # the column is initial_cash_fen
            status=BacktestStatus(row["status"]),
            summary=_json_value(row["summary"]),
            error=row["error"],
            attempts=row["attempts"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            name=row["name"],
            universe=_json_value(row["universe"]),
            config=_json_value(row["config"]),
            benchmark=row["benchmark"],
            cancel_requested=bool(row["cancel_requested"]),
            kind=BacktestKind(row["kind"]),
        )


def _json_value(value: Any) -> Any:
    # MariaDB's JSON is LONGTEXT underneath; some driver paths hand back the text.
    return json.loads(value) if isinstance(value, str | bytes) else value


@dataclass(frozen=True)
class StoredEquity:
    trade_date: date
    equity: Decimal


async def first_row(db: Database, query: Select[Any]) -> RowMapping | None:
    """The first row `query` selects (a job by its id: a backtest, an optimisation), or None, in a transaction of
    its own (retried like every unit of work)."""
    async for attempt in db.transaction():
        async with attempt as session:
            row = (await session.execute(query)).mappings().first()
    return row


# An optimisation goes through the states of a backtest (queued -> running -> succeeded | failed | cancelled, final
# once there): the same type, so `is_final` and the values are written once.
OptimisationStatus = BacktestStatus


class PointStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


def point_hash(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()  # noqa: S324 - an identifier, not a security boundary


@dataclass(frozen=True)
class OptimisationRecord:
    optimisation_id: str
    owner: str
    strategy: str
    method: str
    space: dict[str, Any]
    fixed: dict[str, Any]
    objective: dict[str, Any]
    constraints: list[str]
    settings: dict[str, Any]
    ts_codes: list[str]
    start: date
    end: date
    config: dict[str, Any]
    status: OptimisationStatus
    generation: int
    populations: list[list[str]]
    total_points: int
    done_points: int
    skipped_points: int
    best: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None

    @classmethod
    def of(cls, row: RowMapping) -> OptimisationRecord:
        return cls(
            optimisation_id=row["optimisation_id"],
            owner=row["owner"],
            strategy=row["strategy"],
            method=row["method"],
            space=row["space"],
            fixed=row["fixed"],
            objective=row["objective"],
            constraints=list(row["constraints"]),
            settings=row["settings"],
            ts_codes=list(row["ts_codes"]),
            start=row["start_date"],
            end=row["end_date"],
            config=row["config"],
            status=OptimisationStatus(row["status"]),
            generation=row["generation"],
            populations=[list(p) for p in row["populations"]],
            total_points=row["total_points"],
            done_points=row["done_points"],
            skipped_points=row["skipped_points"],
            best=row["best"],
            result=row["result"],
            error=row["error"],
        )


@dataclass(frozen=True)
class PointRow:
    point_hash: str
    key: str
    params: dict[str, Any]
    generation: int
    status: PointStatus
    metrics: dict[str, Any] | None
    objective: float | None
    feasible: bool | None
    violations: list[str] | None
    error: str | None

    @classmethod
    def of(cls, row: RowMapping) -> PointRow:
        return cls(
            point_hash=row["point_hash"],
            key=row["point_key"],
            params=row["params"],
            generation=row["generation"],
            status=PointStatus(row["status"]),
            metrics=row["metrics"],
            objective=row["objective"],
            feasible=None if row["feasible"] is None else bool(row["feasible"]),
            violations=row["violations"],
            error=row["error"],
        )


@dataclass(frozen=True)
class StoredPoint:
    """What a task stores for one point."""

    key: str
    metrics: dict[str, Any] | None
    objective: float | None
    feasible: bool
    violations: list[str]
    error: str | None
