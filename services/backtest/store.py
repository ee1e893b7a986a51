"""The backtest service's tables (backtests, the strategies of their sleeves, their equity curves, their result
artifacts, the outbox) and the queries the API and the worker run against them. A backtest moves queued -> running
-> succeeded | failed | cancelled (or queued -> cancelled); a finished row never changes again, which is what makes a
redelivered job harmless."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import RowMapping
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import JSON

from shared.platform.clock import UtcDateTime, utcnow
from shared.platform.columns import CnyFen
from shared.platform.db import Database, new_metadata
from shared.platform.events.envelope import Envelope
from shared.platform.outbox import add_to_outbox, outbox_table

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
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


# Result frames are stored as Parquet (zstd) split into chunks of this size: a row stays far below MariaDB's
# max_allowed_packet (16 MiB by default, 64 MiB on MariaDB 10.6+ / what `SELECT @@max_allowed_packet` says) whatever
# the size of the run, and SQLite takes the same rows.
ARTIFACT_CHUNK_BYTES = 1 << 20
ARTIFACT_NAMES = ("daily", "trades", "unfilled")


metadata = new_metadata()

backtests = Table(
    "backtests",
    metadata,
    Column("backtest_id", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),  # the principal's subject: a username or svc:<service>
    Column("strategy", String(64), nullable=False),  # "portfolio" for a run of kind portfolio (what it shows)
    Column("params", JSON, nullable=False),  # a portfolio's: {"sleeves": [{label, strategy, params, weight}, ...]}
    Column("kind", String(16), nullable=False, server_default=text("'single'")),  # BacktestKind
    Column("ts_codes", JSON, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("initial_cash_fen", CnyFen, key="initial_cash", nullable=False),  # 0007: fen (was DECIMAL(20,2))
    Column("status", String(16), nullable=False),
    Column("summary", JSON(none_as_null=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),  # times a worker picked the job up
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    # 0002: a label for search, the universe as asked, the cost model and benchmark, and the cancel flag
    Column("name", String(128), nullable=True),
    Column("universe", JSON(none_as_null=True), nullable=True),
    Column("config", JSON(none_as_null=True), nullable=True),
    Column("benchmark", String(16), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("0")),
    # 0004: renewed by the worker running the backtest; a running row whose heartbeat stops has lost its worker
    Column("heartbeat_at", UtcDateTime, nullable=True),
    Index("ix_backtests_owner_created", "owner", "created_at"),
    Index("ix_backtests_created", "created_at"),
    CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"),
)

backtest_equity = Table(
    "backtest_equity",
    metadata,
    Column(
        "backtest_id",
        String(32),
        ForeignKey("backtests.backtest_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("trade_date", Date, primary_key=True),
    Column("equity_fen", CnyFen, key="equity", nullable=False),  # 0007: fen (was DECIMAL(20,2))
)

backtest_artifacts = Table(
    "backtest_artifacts",
    metadata,
    Column(
        "backtest_id",
        String(32),
        ForeignKey("backtests.backtest_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(32), primary_key=True),  # daily | trades | unfilled
    Column("chunk", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False),
)

# 0005: the strategies of a run with several (its sleeves'), one row each, so that listing by strategy and `q` find
# such a run by the strategies in it (its own `strategy` column says "portfolio") with an index instead of reading
# every row's params. A single-strategy run has no rows here: its `strategy` column says it.
backtest_strategies = Table(
    "backtest_strategies",
    metadata,
    Column(
        "backtest_id",
        String(32),
        ForeignKey("backtests.backtest_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("strategy", String(64), primary_key=True),
    Index("ix_backtest_strategies_strategy", "strategy"),
)

outbox = outbox_table(metadata)


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


def _runs_with_sleeve(*, strategy: str | None = None, containing: str | None = None) -> Select[tuple[str]]:
    """The ids of the runs with a sleeve of this strategy (the exact name), or of a strategy whose name contains
    `containing` (case-insensitively). An uncorrelated `IN`: the database answers it from the side table's indexes
    (MariaDB materialises it through the strategy index, or looks each candidate run up by the primary key), never
    from the stored params; the outer query keeps its order, paging and owner filter, and a run with two matching
    sleeves still comes back once."""
    query = select(backtest_strategies.c.backtest_id)
    if strategy is not None:
        query = query.where(backtest_strategies.c.strategy == strategy)
    if containing is not None:
        query = query.where(backtest_strategies.c.strategy.icontains(containing, autoescape=True))
    return query


async def first_row(db: Database, query: Select[Any]) -> RowMapping | None:
    """The first row `query` selects (a job by its id: a backtest, an optimisation), or None, in a transaction of
    its own (retried like every unit of work)."""
    async for attempt in db.transaction():
        async with attempt as session:
            row = (await session.execute(query)).mappings().first()
    return row


def _last_sign_of_life() -> ColumnElement[Any]:
    return func.coalesce(backtests.c.heartbeat_at, backtests.c.started_at)


class BacktestStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def migrate(self) -> None:
        """Bring the schema up to date. The API and the worker both call this at start-up; on MySQL a named
        lock makes concurrent starts take turns, as Alembic DDL is not transactional there."""
        if self.db.is_sqlite:
            await self.db.migrate(MIGRATIONS_DIR)
            return
        async with self.db.engine.connect() as lock_conn:
            got = (await lock_conn.execute(text("SELECT GET_LOCK('lh_backtest_migrate', 60)"))).scalar()
            if got != 1:
                raise RuntimeError("could not take the lh_backtest_migrate lock within 60 s")
            try:
                await self.db.migrate(MIGRATIONS_DIR)
            finally:
                await lock_conn.execute(text("SELECT RELEASE_LOCK('lh_backtest_migrate')"))

    async def create(
        self,
        *,
        backtest_id: str,
        owner: str,
        strategy: str,
        params: dict[str, Any],
        ts_codes: Sequence[str],
        start: date,
        end: date,
        initial_cash: Decimal,
        name: str | None = None,
        universe: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        benchmark: str | None = None,
        sleeve_strategies: Sequence[str] = (),
        kind: BacktestKind = BacktestKind.SINGLE,
    ) -> BacktestRecord:
        """`ts_codes` is the universe when given as a list; for an index or a filter it stays empty until the
        worker resolves it (`set_universe`). `sleeve_strategies`: for a run with several strategies, the strategy
        of each sleeve (repeats allowed), recorded in the same transaction so that search finds the run by them."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(
                    insert(backtests).values(
                        backtest_id=backtest_id,
                        owner=owner,
                        strategy=strategy,
                        params=params,
                        ts_codes=list(ts_codes),
                        start_date=start,
                        end_date=end,
                        initial_cash=initial_cash,
                        status=BacktestStatus.QUEUED.value,
                        attempts=0,
                        created_at=utcnow(),
                        name=name,
                        universe=universe,
                        config=config,
                        benchmark=benchmark,
                        cancel_requested=False,
                        kind=kind.value,
                    )
                )
                names = list(dict.fromkeys(sleeve_strategies))  # distinct, in the sleeves' order
                if names:
                    await session.execute(
                        insert(backtest_strategies), [{"backtest_id": backtest_id, "strategy": n} for n in names]
                    )
        record = await self.get(backtest_id)
        assert record is not None
        return record

    async def get(self, backtest_id: str) -> BacktestRecord | None:
        row = await first_row(self.db, select(backtests).where(backtests.c.backtest_id == backtest_id))
        return None if row is None else BacktestRecord.from_row(row)

    async def search(
        self,
        *,
        owner: str | None,
        strategy: str | None = None,
        status: BacktestStatus | None = None,
        q: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[BacktestRecord]:
        """Newest first. `strategy` is a run's strategy or one of its sleeves' (a run with several strategies is
        found by each of them, and by "portfolio"). `q` matches (case-insensitively, as a substring) the id, the name,
        the strategy, a sleeve's strategy, the benchmark and the universe; `created_from` inclusive, `created_to`
        exclusive (a naive bound is taken as UTC). `owner=None` searches everyone's."""
        query = select(backtests)
        if owner is not None:
            query = query.where(backtests.c.owner == owner)
        if strategy is not None:
            query = query.where(
                (backtests.c.strategy == strategy) | backtests.c.backtest_id.in_(_runs_with_sleeve(strategy=strategy))
            )
        if status is not None:
            query = query.where(backtests.c.status == status.value)
        if created_from is not None:
            query = query.where(backtests.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(backtests.c.created_at < created_to)
        if q:
            # autoescape: a % or _ typed by the user is a literal character, not a wildcard
            query = query.where(
                backtests.c.backtest_id.icontains(q, autoescape=True)
                | backtests.c.name.icontains(q, autoescape=True)
                | backtests.c.strategy.icontains(q, autoescape=True)
                | backtests.c.backtest_id.in_(_runs_with_sleeve(containing=q))
                | backtests.c.benchmark.icontains(q, autoescape=True)
                | func.lower(backtests.c.ts_codes.cast(Text)).contains(q.lower(), autoescape=True)
                | func.lower(backtests.c.universe.cast(Text)).contains(q.lower(), autoescape=True)
            )
        query = (
            query.order_by(backtests.c.created_at.desc(), backtests.c.backtest_id.desc()).limit(limit).offset(offset)
        )
        async for attempt in self.db.transaction():
            async with attempt as session:
                rows = (await session.execute(query)).mappings().all()
        return [BacktestRecord.from_row(r) for r in rows]

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

    # --- result artifacts ---------------------------------------------------------------------------------------
    async def artifact(self, backtest_id: str, name: str) -> pd.DataFrame | None:
        """A stored result frame (`daily`, `trades`, `unfilled`); None when the backtest has none (not finished,
        failed, or finished before artifacts were stored)."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                rows = (
                    await session.execute(
                        select(backtest_artifacts.c.data)
                        .where(backtest_artifacts.c.backtest_id == backtest_id, backtest_artifacts.c.name == name)
                        .order_by(backtest_artifacts.c.chunk)
                    )
                ).all()
        if not rows:
            return None
        return frame_from_parquet(b"".join(bytes(r.data) for r in rows))

    async def daily_frame(self, backtest_id: str) -> pd.DataFrame | None:
        """trade_date, cash, market_value, equity (int64 fen), benchmark (index close or NaN), exposure
        (market_value / equity), holdings (symbols held at the close)."""
        return await self.artifact(backtest_id, "daily")

    async def trades_frame(self, backtest_id: str) -> pd.DataFrame | None:
        """The engine's trades frame (money as exact CNY strings), in execution order."""
        return await self.artifact(backtest_id, "trades")

    async def unfilled_frame(self, backtest_id: str) -> pd.DataFrame | None:
        """The orders that did not fill completely (cancelled, rejected, partially filled), with the reason."""
        return await self.artifact(backtest_id, "unfilled")

    async def equity_curve(self, backtest_id: str) -> list[StoredEquity]:
        async for attempt in self.db.transaction():
            async with attempt as session:
                rows = (
                    await session.execute(
                        select(backtest_equity.c.trade_date, backtest_equity.c.equity)
                        .where(backtest_equity.c.backtest_id == backtest_id)
                        .order_by(backtest_equity.c.trade_date)
                    )
                ).all()
        return [StoredEquity(r.trade_date, r.equity) for r in rows]

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

    async def finish(
        self,
        backtest_id: str,
        *,
        status: BacktestStatus,
        event: Envelope,
        from_status: BacktestStatus = BacktestStatus.RUNNING,
        summary: dict[str, Any] | None = None,
        equity_curve: Sequence[tuple[date, Decimal]] = (),
        error: str | None = None,
        artifacts: Mapping[str, bytes] | None = None,
    ) -> bool:
        """Record the outcome, the equity curve, the result artifacts (Parquet bytes by name) and the
        `backtest.finished` event in one transaction. Only a backtest still in `from_status` is finished; returns
        False (writing nothing) when another delivery of the same job got there first."""
        assert status.is_final
        async for attempt in self.db.transaction():
            async with attempt as session:
                result = await session.execute(
                    update(backtests)
                    .where(backtests.c.backtest_id == backtest_id, backtests.c.status == from_status.value)
                    .values(
                        status=status.value,
                        summary=summary,
                        error=None if error is None else truncate_error(error),
                        finished_at=utcnow(),
                    )
                )
                if result.rowcount != 1:
                    return False
                await session.execute(delete(backtest_equity).where(backtest_equity.c.backtest_id == backtest_id))
                if equity_curve:
                    await session.execute(
                        insert(backtest_equity),
                        [{"backtest_id": backtest_id, "trade_date": d, "equity": e} for d, e in equity_curve],
                    )
                await session.execute(delete(backtest_artifacts).where(backtest_artifacts.c.backtest_id == backtest_id))
                for name, blob in (artifacts or {}).items():
                    chunks = [blob[i : i + ARTIFACT_CHUNK_BYTES] for i in range(0, len(blob), ARTIFACT_CHUNK_BYTES)]
                    for number, chunk in enumerate(chunks or [b""]):
                        # One statement per chunk: a multi-row insert would add the chunks up into one packet.
                        await session.execute(
                            insert(backtest_artifacts).values(
                                backtest_id=backtest_id, name=name, chunk=number, data=chunk
                            )
                        )
                await add_to_outbox(session, outbox, event)
        return True


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    """A frame as Parquet bytes (zstd), without the index."""
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="zstd")
    return sink.getvalue()


def frame_from_parquet(blob: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(blob)).to_pandas()
