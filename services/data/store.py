"""The data service's tables (database `lh_data`) and the queries on them.

Units, chosen so that nothing stored is ever rounded again (docs/data.md has the full table):
- `daily_bars.open/high/low/close/pre_close`: unadjusted prices in integer fen (0.01 CNY), BIGINT;
- `daily_bars.vol`: shares (not Tushare's lots of 100), BIGINT; `amount`: turnover in fen (not thousand CNY);
- `daily_bars.adj_factor` and `adj_factors.adj_factor`: Tushare's backward adjustment factor, DECIMAL(20,6);
- `daily_basic`: ratios as DOUBLE exactly as Tushare gives them (turnover_rate, turnover_rate_f, dv_ratio, dv_ttm in
  percent; volume_ratio, pe, pe_ttm, pb, ps, ps_ttm plain ratios), share counts in shares (Tushare 万股 x 10,000),
  market values in fen (Tushare 万元 x 1,000,000);
- `stk_limits.up_limit/down_limit`: fen; `index_bars`: points as DOUBLE, vol shares, amount fen;
- `index_weights.weight`: percent as Tushare gives it (DOUBLE);
- `trade_calendar`: one row per calendar day and exchange (`SSE`), `is_open` as Tushare's trade_cal has it.

Bulk writes (`upsert_*` taking frames in Tushare's layout) are idempotent upserts passed as executemany batches;
on MariaDB they go straight to the asyncmy driver over a few connections at once (see `_bulk_upsert`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Double,
    Float,
    Index,
    Integer,
    Numeric,
    Select,
    String,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert

from services.data import units
from shared.platform.clock import UtcDateTime, utcnow
from shared.platform.db import Database, DbSession, new_metadata

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BATCH_ROWS = 5_000  # rows per executemany: big enough to amortise round trips, small enough for max_allowed_packet
# The bulk path: rows per batch, and statement bytes per round trip (asyncmy folds a batch into multi-row INSERTs
# of at most this size; 4 MB stays well inside MariaDB's default 16 MB max_allowed_packet).
BULK_BATCH_ROWS = 20_000
BULK_STATEMENT_BYTES = 4_000_000
# Connections writing at once: while the server inserts one batch, Python encodes the next (measured on 2 cores:
# 1 connection ~140k rows/s, 2 ~220k, 3 no better).
BULK_CONNECTIONS = 2
CALENDAR_EXCHANGE = "SSE"  # SSE and SZSE share their closures; Tushare's trade_cal defaults to SSE too

metadata = new_metadata()

securities = Table(
    "securities",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("symbol", String(8), nullable=False),
    Column("name", String(32), nullable=False),
    Column("exchange", String(4), nullable=False),
    Column("board", String(16), nullable=False),
    Column("is_st", Boolean, nullable=False),  # the current name's flag; history is in st_periods
    Column("list_date", Date, nullable=False),
    Column("delist_date", Date, nullable=True),
    Column("industry", String(32), nullable=True),  # Tushare stock_basic's industry (申万-like names), as given
    Column("area", String(16), nullable=True),
    Column("market", String(16), nullable=True),  # Tushare's 主板/创业板/科创板/北交所 label, as given
    Column("list_status", String(1), nullable=False, server_default="L"),  # L listed, D delisted, P suspended
)

trade_calendar = Table(
    "trade_calendar",
    metadata,
    Column("exchange", String(8), primary_key=True),
    Column("cal_date", Date, primary_key=True),
    Column("is_open", Boolean, nullable=False),
)

daily_bars = Table(
    "daily_bars",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("open", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    Column("low", BigInteger, nullable=False),
    Column("close", BigInteger, nullable=False),
    Column("pre_close", BigInteger, nullable=False),
    Column("vol", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("adj_factor", Numeric(20, 6), nullable=False),
    # "What is the newest session in the store" is asked on every quote; the primary key leads with ts_code.
    Index("ix_daily_bars_trade_date", "trade_date"),
)

# Tushare's adj_factor feed as delivered: it has a factor for every listed day, suspended days included, which
# daily_bars (one row per traded day) cannot hold. qfq anchors on it, so a stock suspended on the anchor date
# still gets the factor of that date.
adj_factors = Table(
    "adj_factors",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("adj_factor", Numeric(20, 6), nullable=False),
)

daily_basic = Table(
    "daily_basic",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    *(Column(name, Double, nullable=True) for name in units.DAILY_BASIC_RATIOS),
    *(Column(name, BigInteger, nullable=True) for name in (*units.DAILY_BASIC_SHARES, *units.DAILY_BASIC_VALUES)),
)

stk_limits = Table(
    "stk_limits",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("up_limit", BigInteger, nullable=False),
    Column("down_limit", BigInteger, nullable=False),
)

suspensions = Table(
    "suspensions",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("suspend_type", String(1), primary_key=True),  # S suspended, R resumed (Tushare suspend_d)
    Column("suspend_timing", String(32), nullable=True),
    Index("ix_suspensions_trade_date", "trade_date"),
)

st_periods = Table(
    "st_periods",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("start_date", Date, primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("end_date", Date, nullable=True),  # None: still under that name
    Column("change_reason", String(64), nullable=True),
)

index_bars = Table(
    "index_bars",
    metadata,
    Column("ts_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("open", Double, nullable=True),
    Column("high", Double, nullable=True),
    Column("low", Double, nullable=True),
    Column("close", Double, nullable=True),
    Column("pre_close", Double, nullable=True),
    Column("vol", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
)

index_weights = Table(
    "index_weights",
    metadata,
    Column("index_code", String(12), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("con_code", String(12), primary_key=True),
    Column("weight", Double, nullable=False),
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),  # e.g. backfill, update, import
    Column("start_date", Date, nullable=True),
    Column("end_date", Date, nullable=True),
    Column("status", String(16), nullable=False),  # running, succeeded, failed
    Column("rows", BigInteger, nullable=False),
    Column("progress", Double, nullable=False),  # 0..1
    Column("detail", Text, nullable=True),  # JSON: what the run was asked, per-table counts, rows/s...
    Column("error", Text, nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Index("ix_ingest_runs_started_at", "started_at"),
)

quality_reports = Table(
    "quality_reports",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("ingest_run_id", String(36), nullable=True),
    Column("start_date", Date, nullable=True),
    Column("end_date", Date, nullable=True),
    Column("rules", Text, nullable=False),  # JSON list of the rule names run
    Column("findings", Integer, nullable=False),  # findings stored as examples (capped per rule)
    # The true totals (migration 0004; NULL in reports stored before it): all findings, per rule, the examples
    # kept per rule, the cap, and the rules that could not run.
    Column("total", BigInteger, nullable=True),
    Column("counts", Text, nullable=True),  # JSON: rule -> findings found
    Column("kept", Text, nullable=True),  # JSON: rule -> findings stored
    Column("max_findings_per_rule", Integer, nullable=True),
    Column("rules_skipped", Text, nullable=True),  # JSON: rule -> reason
    Index("ix_quality_reports_created_at", "created_at"),
)

quality_findings = Table(
    "quality_findings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("ts_code", String(12), nullable=True),
    Column("trade_date", Date, nullable=True),
    Column("rule", String(48), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_quality_findings_run_id", "run_id"),
)

# One row per kind of data; `market` bumps on every write of market data. Cached snapshots are keyed by it.
data_versions = Table(
    "data_versions",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
MARKET_VERSION = "market"
# Another row of data_versions: `version` holds, as YYYYMMDD, the newest trading day the Tushare pipeline has written
# in full (every table of the day, bars last) with every earlier day of its run. `update` starts after it, not
# after the newest bar: bulk writes commit batch by batch, so a day can be partly stored while a later one is whole,
# and an imported file can hold bars of days the rest of the market lacks.
COMPLETE_THROUGH = "complete_thru"


@dataclass(frozen=True)
class SecurityRecord:
    ts_code: str
    symbol: str
    name: str
    exchange: str
    board: str
    is_st: bool
    list_date: date
    delist_date: date | None
    industry: str | None = None
    area: str | None = None
    market: str | None = None
    list_status: str = "L"


@dataclass(frozen=True)
class BarRecord:
    """One stored bar: prices and amount in fen, vol in shares."""

    ts_code: str
    trade_date: date
    open: int
    high: int
    low: int
    close: int
    pre_close: int
    vol: int
    amount: int
    adj_factor: Decimal


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


@dataclass(frozen=True)
class QualityFinding:
    """One defect a quality rule found: which stock, which day, which rule, and what exactly."""

    rule: str
    detail: str
    ts_code: str | None = None
    trade_date: date | None = None


@dataclass(frozen=True)
class QualityReport:
    run_id: str
    created_at: datetime
    ingest_run_id: str | None
    start_date: date | None
    end_date: date | None
    rules: list[str]
    findings: int  # findings stored (examples, capped per rule)
    # None for reports stored before the totals were kept (migration 0004).
    total: int | None = None  # findings found
    counts: dict[str, int] | None = None  # rule -> findings found
    kept: dict[str, int] | None = None  # rule -> findings stored
    max_findings_per_rule: int | None = None
    rules_skipped: dict[str, str] | None = None


@dataclass(frozen=True)
class LoadCounts:
    securities: int
    calendar_days: int
    bars: int


def upsert_statement(dialect_name: str, table: Table) -> Insert:
    """INSERT that updates the non-key columns of an existing row: loading the same data twice changes nothing."""
    keys = {c.name for c in table.primary_key.columns}
    others = [c.name for c in table.columns if c.name not in keys]
    if dialect_name in ("mysql", "mariadb"):
        my = mysql_insert(table)
        return my.on_duplicate_key_update({name: my.inserted[name] for name in others})
    if dialect_name == "sqlite":
        lite = sqlite_insert(table)
        return lite.on_conflict_do_update(
            index_elements=sorted(keys), set_={name: lite.excluded[name] for name in others}
        )
    raise NotImplementedError(f"no upsert for the {dialect_name} dialect")


_MULTI_ROW_INSERT = re.compile(r"^\s*INSERT\b.+\bVALUES\s*\((?:%s, )*%s\)\s*ON DUPLICATE KEY UPDATE [^;]+$", re.S)


def key_order(columns: dict[str, np.ndarray], keys: Sequence[str]) -> np.ndarray | None:
    """The row permutation that puts `columns` in the order of `keys` (a table's primary key), or None when the rows
    are in that order already.

    Bulk writes go to MariaDB in key order: the per-stock tables are clustered by (ts_code, trade_date), and rows in
    another order (a day of the whole market, a file sorted by date) land one per page all over the table; once it
    outgrows the buffer pool every such row waits for a page read. In key order a stock's rows fill its pages
    together (docs/data-ingest.md, "Write order": 57,803 -> 108,789 rows/s). Codes compare as the ASCII text they
    are, which is how MariaDB orders them too; a key column holding None makes no order (None is returned)."""
    if not keys or any(k not in columns for k in keys):
        return None
    n = len(columns[keys[0]])
    if n < 2:
        return None
    ranks: list[np.ndarray] = []
    for name in keys:
        try:
            codes, _ = pd.factorize(columns[name], sort=True, use_na_sentinel=True)
        except TypeError:  # values that do not compare (e.g. dates mixed with timestamps): write in the given order
            return None
        if (codes < 0).any():
            return None
        ranks.append(codes)
    # In order when every row is after its predecessor on the first key that differs (or equal on all of them).
    after = np.zeros(n - 1, dtype=bool)
    tied = np.ones(n - 1, dtype=bool)
    for rank in ranks:
        after |= tied & (rank[1:] > rank[:-1])
        tied &= rank[1:] == rank[:-1]
    if bool((after | tied).all()):
        return None
    return np.lexsort(ranks[::-1])  # stable: rows with equal keys keep their order


def driver_rows(params: Sequence[np.ndarray], order: np.ndarray | None, start: int, stop: int) -> list[tuple[Any, ...]]:
    """Rows start..stop of the write (in `order` when given: see `key_order`) as the driver's parameter tuples."""
    picked: slice | np.ndarray = slice(start, stop) if order is None else order[start:stop]
    return list(zip(*(p[picked].tolist() for p in params), strict=True))


def _driver_column(values: np.ndarray, column: Column[Any]) -> np.ndarray:
    """A storage column as the values asyncmy escapes fastest: ints, str, None. Dates go as ISO text (each distinct
    date formatted once) and adj factors, held as int millionths, as exact 6-decimal text."""
    if isinstance(column.type, Date):
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        table = np.asarray([d.isoformat() for d in uniques.tolist()] + [None], dtype=object)
        return table[codes]
    if isinstance(column.type, Numeric) and not isinstance(column.type, Float) and values.dtype.kind == "i":
        codes, uniques = pd.factorize(values)
        table = np.asarray([_micro_text(int(m)) for m in uniques.tolist()], dtype=object)
        return table[codes]
    return values


def _sqlite_column(values: np.ndarray, column: Column[Any]) -> np.ndarray:
    if isinstance(column.type, Numeric) and not isinstance(column.type, Float) and values.dtype.kind == "i":
        return np.asarray([Decimal(int(m)).scaleb(-6) for m in values.tolist()], dtype=object)
    return values


def _micro_text(micro: int) -> str:
    whole, frac = divmod(micro, units.MICRO)
    return f"{whole}.{frac:06d}"


def _ingest_run(row: Any) -> IngestRun:
    return IngestRun(
        run_id=row["run_id"], kind=row["kind"], start_date=row["start_date"], end_date=row["end_date"],
        status=row["status"], rows=int(row["rows"]), progress=float(row["progress"]),
        detail=json.loads(row["detail"] or "{}"), error=row["error"], started_at=row["started_at"],
        updated_at=row["updated_at"], finished_at=row["finished_at"],
    )  # fmt: skip


def _quality_report(row: Any) -> QualityReport:
    return QualityReport(
        run_id=row["run_id"], created_at=row["created_at"], ingest_run_id=row["ingest_run_id"],
        start_date=row["start_date"], end_date=row["end_date"], rules=json.loads(row["rules"]),
        findings=int(row["findings"]), total=None if row["total"] is None else int(row["total"]),
        counts=_json_or_none(row["counts"]), kept=_json_or_none(row["kept"]),
        max_findings_per_rule=row["max_findings_per_rule"], rules_skipped=_json_or_none(row["rules_skipped"]),
    )  # fmt: skip


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class DataStore:
    def __init__(self, db: Database, *, on_change: Callable[[], Awaitable[None]] | None = None) -> None:
        self.db = db
        self.on_change = on_change  # called after every committed load (drops cached reads)
        # Reads inside `snapshot()` share one session: a quote asks five small questions, and a session per
        # question cost a pool checkout, a ping and a commit each (most of a quote's latency on MariaDB).
        self._ambient: ContextVar[DbSession | None] = ContextVar(f"data-store-{id(self)}", default=None)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[DataStore]:
        """Run several reads in one session (one consistent view, one round of connection overhead)."""
        # One attempt (`session()`, not `transaction()`): a context manager cannot run its caller's block again,
        # and reads take no locks, so they meet no deadlock or lock wait to retry.
        async with self.db.session() as session:
            token = self._ambient.set(session)
            try:
                yield self
            finally:
                self._ambient.reset(token)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[DbSession]:
        """For reads only (one attempt, as `snapshot`): writes run in `self.db.transaction()`."""
        ambient = self._ambient.get()
        if ambient is not None:
            yield ambient
            return
        async with self.db.session() as session:
            yield session

    # -- writes ---------------------------------------------------------------------------------------------------

    async def load(
        self,
        security_rows: Sequence[dict[str, Any]],
        calendar_rows: Sequence[dict[str, Any]],
        bar_rows: Sequence[dict[str, Any]],
    ) -> LoadCounts:
        """Upsert securities, calendar days and bars in one transaction: all of it lands, or none of it."""
        async for attempt in self.db.transaction():
            async with attempt as session:
                await self._upsert(session, securities, security_rows)
                await self._upsert(session, trade_calendar, calendar_rows)
                await self._upsert(session, daily_bars, bar_rows)
        if self.on_change is not None:
            await self.on_change()
        return LoadCounts(len(security_rows), len(calendar_rows), len(bar_rows))

    async def _upsert(self, session: DbSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        statement = upsert_statement(self.db.engine.dialect.name, table)
        for start in range(0, len(rows), BATCH_ROWS):
            # A list of parameter dicts makes this an executemany: one statement, many rows.
            await session.execute(statement, list(rows[start : start + BATCH_ROWS]))
        if rows:
            await self._bump_version(session)

    async def _bump_version(self, session: DbSession) -> None:
        now = utcnow()
        changed = await session.execute(
            update(data_versions)
            .where(data_versions.c.name == MARKET_VERSION)
            .values(version=data_versions.c.version + 1, updated_at=now)
        )
        if changed.rowcount == 0:
            await session.execute(
                upsert_statement(self.db.engine.dialect.name, data_versions),
                [{"name": MARKET_VERSION, "version": 1, "updated_at": now}],
            )

    async def mark_complete_through(self, day: date) -> None:
        """Record that every table of `day` (and of the run's days before it) is stored in full; only moves forward
        (a backfill of older years leaves the newest complete day where it is)."""
        value = int(day.strftime("%Y%m%d"))
        async for attempt in self.db.transaction():
            async with attempt as session:
                current = await session.scalar(
                    select(data_versions.c.version).where(data_versions.c.name == COMPLETE_THROUGH)
                )
                if current is None:
                    await session.execute(
                        data_versions.insert().values(name=COMPLETE_THROUGH, version=value, updated_at=utcnow())
                    )
                elif int(current) < value:
                    await session.execute(
                        update(data_versions)
                        .where(data_versions.c.name == COMPLETE_THROUGH, data_versions.c.version < value)
                        .values(version=value, updated_at=utcnow())
                    )

    async def complete_through(self) -> date | None:
        """The newest trading day the Tushare pipeline stored in full (None: never recorded)."""
        async with self._session() as session:
            value = await session.scalar(
                select(data_versions.c.version).where(data_versions.c.name == COMPLETE_THROUGH)
            )
        if value is None:
            return None
        text = str(int(value))
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))

    async def data_version(self) -> int:
        """Bumped by every write of market data: what cached snapshots and bulk files are keyed by."""
        async with self._session() as session:
            value = await session.scalar(select(data_versions.c.version).where(data_versions.c.name == MARKET_VERSION))
        return int(value or 0)

    async def _bulk_upsert(
        self, table: Table, columns: dict[str, np.ndarray], on_rows: Callable[[int], None] | None = None
    ) -> int:
        """Upsert whole columns (one array per column of `table`, already in storage units) as executemany batches.

        On MariaDB the batches go to the asyncmy driver directly over BULK_CONNECTIONS connections, each batch its
        own transaction: SQLAlchemy's per-row parameter processing cost more than the server's insert, and with two
        connections Python encodes one batch while the server writes the other. A failure part-way leaves whole
        batches behind, never half a row; the same load run again completes it (every write is an upsert).
        Callers convert and validate the whole frame before calling, so bad input writes nothing.
        `on_rows(k)` is told of every batch of k rows committed (a run's progress while a big write goes on).
        """
        names = [c.name for c in table.columns if c.name in columns]
        n = len(columns[names[0]]) if names else 0
        if n == 0:
            return 0
        committed = [0]  # batches committed so far, counted by the writers
        try:
            if self.db.engine.dialect.name in ("mysql", "mariadb"):
                await self._bulk_upsert_mysql(table, names, columns, n, committed, on_rows)
            else:
                await self._bulk_upsert_sqlite(table, names, columns, n, committed, on_rows)
        except BaseException:
            # A later batch failed, but the committed ones changed the market: cached reads and bulk
            # snapshots of the old data must go all the same.
            if committed[0]:
                await asyncio.shield(self._changed_after_partial_write(table))
            raise
        async for attempt in self.db.transaction():
            async with attempt as session:
                await self._bump_version(session)
        if self.on_change is not None:
            await self.on_change()
        return n

    async def _bulk_upsert_sqlite(
        self,
        table: Table,
        names: list[str],
        columns: dict[str, np.ndarray],
        n: int,
        committed: list[int],
        on_rows: Callable[[int], None] | None,
    ) -> None:
        """SQLite (standalone): SQLAlchemy's executemany, one transaction per batch as on MariaDB. SQLite has one
        writer at a time: a whole import in one transaction (tens of seconds) would lock out every other write
        meanwhile, the run's own progress heartbeat and another process's included, beyond any busy timeout."""
        statement = upsert_statement(self.db.engine.dialect.name, table)
        for start in range(0, n, BULK_BATCH_ROWS):
            stop = min(n, start + BULK_BATCH_ROWS)
            values = [_sqlite_column(columns[name][start:stop], table.c[name]).tolist() for name in names]
            async for attempt in self.db.transaction():
                async with attempt as session:
                    await session.execute(
                        statement, [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
                    )
            committed[0] += 1
            if on_rows is not None:
                on_rows(stop - start)

    async def _changed_after_partial_write(self, table: Table) -> None:
        """Bump the data version and drop cached reads after a bulk write that failed part-way."""
        try:
            async for attempt in self.db.transaction():
                async with attempt as session:
                    await self._bump_version(session)
            if self.on_change is not None:
                await self.on_change()
        except Exception:
            log.warning("could not record the partial write of %s as a data change", table.name, exc_info=True)

    async def _bulk_upsert_mysql(
        self,
        table: Table,
        names: list[str],
        columns: dict[str, np.ndarray],
        n: int,
        committed: list[int],
        on_rows: Callable[[int], None] | None,
    ) -> None:
        compiled = upsert_statement("mysql", table).compile(dialect=self.db.engine.dialect, column_keys=names)
        sql = str(compiled)
        order = list(compiled.positiontup or [])
        if sorted(order) != sorted(names) or not _MULTI_ROW_INSERT.match(sql):
            # asyncmy folds rows into multi-row INSERTs only for statements its pattern recognises; anything else
            # would silently run one statement per row.
            raise RuntimeError(f"bulk upsert of {table.name}: unexpected statement {sql[:80]}...")
        params = [_driver_column(columns[name], table.c[name]) for name in order]
        rows_in_key_order = key_order(columns, [c.name for c in table.primary_key.columns])
        queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue(maxsize=BULK_CONNECTIONS)

        async def writer() -> None:
            async with self.db.engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                cursor = driver.cursor()
                cursor.max_stmt_length = BULK_STATEMENT_BYTES
                try:
                    while (span := await queue.get()) is not None:
                        rows = driver_rows(params, rows_in_key_order, *span)

                        async def write_span(rows: Any = rows) -> None:
                            await cursor.executemany(sql, rows)  # an upsert: running it again changes nothing
                            await driver.commit()

                        await self.db.run_raw(write_span, driver.rollback)
                        committed[0] += 1
                        if on_rows is not None:
                            on_rows(span[1] - span[0])
                except BaseException:
                    await driver.rollback()
                    raise
                finally:
                    await cursor.close()

        async def feeder() -> None:
            for start in range(0, n, BULK_BATCH_ROWS):
                await queue.put((start, min(n, start + BULK_BATCH_ROWS)))
            for _ in range(BULK_CONNECTIONS):
                await queue.put(None)

        workers = [asyncio.create_task(writer()) for _ in range(min(BULK_CONNECTIONS, -(-n // BULK_BATCH_ROWS)))]
        feeding = asyncio.create_task(feeder())
        try:
            await asyncio.gather(*workers)
        finally:
            feeding.cancel()
            for task in workers:
                task.cancel()

    # Frames in Tushare's layout and units (see services/data/units.py). Each returns the rows written.

    async def upsert_daily_bars(self, frame: pd.DataFrame, *, on_rows: Callable[[int], None] | None = None) -> int:
        """Tushare `daily` (+ `adj_factor`, merged by the caller; 1 where the frame has none) -> daily_bars.
        `on_rows(k)`: told of every batch of k rows committed."""
        return await self._bulk_upsert(daily_bars, units.daily_bar_columns(frame), on_rows)

    async def upsert_adj_factors(self, frame: pd.DataFrame) -> int:
        return await self._bulk_upsert(adj_factors, units.adj_factor_columns(frame))

    async def refactor_bars(self, frame: pd.DataFrame) -> int:
        """Stored bars of the (ts_code, trade_date) keys of `frame` take the factor feed's value where it differs
        (factors imported after their bars: `import-adj-factors`); the number of bars changed. Call it after
        `upsert_adj_factors(frame)`."""
        codes = sorted(set(frame["ts_code"].astype(str)))
        days = units.date_column(frame, "trade_date")
        if not codes:
            return 0
        first, last = min(days), max(days)
        feed = (
            select(adj_factors.c.adj_factor)
            .where(adj_factors.c.ts_code == daily_bars.c.ts_code, adj_factors.c.trade_date == daily_bars.c.trade_date)
            .scalar_subquery()
        )
        async for attempt in self.db.transaction():
            async with attempt as session:
                changed = 0  # counted afresh by each attempt: a rolled-back one changed nothing
                for i in range(0, len(codes), 500):
                    statement = (
                        update(daily_bars)
                        .where(
                            daily_bars.c.ts_code.in_(codes[i : i + 500]),
                            daily_bars.c.trade_date.between(first, last),
                            daily_bars.c.adj_factor != feed,
                        )
                        .values(adj_factor=feed)
                    )
                    changed += (await session.execute(statement)).rowcount or 0
                if changed:
                    await self._bump_version(session)
        if changed and self.on_change is not None:
            await self.on_change()
        return changed

    async def upsert_daily_basic(self, frame: pd.DataFrame) -> int:
        return await self._bulk_upsert(daily_basic, units.daily_basic_columns(frame))

    async def upsert_stk_limits(self, frame: pd.DataFrame) -> int:
        return await self._bulk_upsert(stk_limits, units.stk_limit_columns(frame))

    async def upsert_suspensions(self, frame: pd.DataFrame) -> int:
        return await self._bulk_upsert(suspensions, units.suspension_columns(frame))

    async def upsert_st_periods(self, frame: pd.DataFrame) -> int:
        """The ST rows of a Tushare `namechange` frame (other name changes are not kept)."""
        return await self._bulk_upsert(st_periods, units.st_period_columns(frame))

    async def upsert_index_bars(self, frame: pd.DataFrame) -> int:
        return await self._bulk_upsert(index_bars, units.index_bar_columns(frame))

    async def upsert_index_weights(self, frame: pd.DataFrame) -> int:
        return await self._bulk_upsert(index_weights, units.index_weight_columns(frame))

    async def upsert_securities(self, frame: pd.DataFrame) -> int:
        """Tushare `stock_basic` -> securities (board and exchange from the code, is_st from the name)."""
        return await self._bulk_upsert(securities, units.security_columns(frame))

    async def upsert_trade_calendar(self, frame: pd.DataFrame) -> int:
        return await self._bulk_upsert(trade_calendar, units.trade_calendar_columns(frame))

    # -- the ingestion log and quality reports (written by the ingestion and quality code) ---------------------------

    async def start_ingest_run(
        self, kind: str, start: date | None = None, end: date | None = None, detail: dict[str, Any] | None = None
    ) -> str:
        run_id = str(uuid.uuid4())
        now = utcnow()
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(
                    ingest_runs.insert().values(
                        run_id=run_id, kind=kind, start_date=start, end_date=end, status="running", rows=0,
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
        query = update(ingest_runs).where(ingest_runs.c.run_id == run_id, ingest_runs.c.status == "running")
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(query.values(**values))

    async def finish_ingest_run(
        self, run_id: str, *, status: str, rows: int, error: str | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        if status not in ("succeeded", "failed"):
            raise ValueError(f"status {status!r}: a run finishes as succeeded or failed")
        now = utcnow()
        values: dict[str, Any] = {"status": status, "rows": rows, "error": error, "updated_at": now,
                                  "finished_at": now}  # fmt: skip
        if status == "succeeded":
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

    async def save_quality_report(
        self,
        rules: Sequence[str],
        findings: Sequence[QualityFinding],
        *,
        ingest_run_id: str | None = None,
        start: date | None = None,
        end: date | None = None,
        counts: Mapping[str, int] | None = None,
        max_findings_per_rule: int | None = None,
        rules_skipped: Mapping[str, str] | None = None,
    ) -> str:
        """Store one quality run and its findings in one transaction; returns the report's run id.

        `findings` are the examples kept; `counts` (rule -> findings found) the true totals when the findings were
        capped per rule (default: the findings given are all there were). A rule's count is never below the number
        of its findings kept."""
        kept: dict[str, int] = dict.fromkeys(rules, 0)
        for f in findings:
            kept[f.rule] = kept.get(f.rule, 0) + 1
        found = dict(kept) if counts is None else {rule: int(counts.get(rule, 0)) for rule in {**kept, **counts}}
        short = {rule: (found[rule], n) for rule, n in kept.items() if found[rule] < n}
        if short:
            raise ValueError(f"counts below the findings kept (rule: (count, kept)): {short}")
        run_id = str(uuid.uuid4())
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(
                    quality_reports.insert().values(
                        run_id=run_id, created_at=utcnow(), ingest_run_id=ingest_run_id, start_date=start,
                        end_date=end, rules=json.dumps(list(rules)), findings=len(findings), total=sum(found.values()),
                        counts=json.dumps(found), kept=json.dumps(kept), max_findings_per_rule=max_findings_per_rule,
                        rules_skipped=json.dumps(dict(rules_skipped or {})),
                    )
                )  # fmt: skip
                rows = [
                    {
                        "run_id": run_id,
                        "ts_code": f.ts_code,
                        "trade_date": f.trade_date,
                        "rule": f.rule,
                        "detail": f.detail,
                    }
                    for f in findings
                ]
                for start_at in range(0, len(rows), BATCH_ROWS):
                    await session.execute(quality_findings.insert(), rows[start_at : start_at + BATCH_ROWS])
        return run_id

    async def get_quality_report(self, run_id: str) -> QualityReport | None:
        query = select(quality_reports).where(quality_reports.c.run_id == run_id)
        async with self._session() as session:
            row = (await session.execute(query)).mappings().first()
        return None if row is None else _quality_report(row)

    async def list_quality_reports(self, limit: int = 50) -> list[QualityReport]:
        query = select(quality_reports).order_by(quality_reports.c.created_at.desc()).limit(limit)
        async with self._session() as session:
            return [_quality_report(row) for row in (await session.execute(query)).mappings().all()]

    async def quality_findings(
        self, run_id: str, *, rule: str | None = None, limit: int = 1000, offset: int = 0
    ) -> list[QualityFinding]:
        query = select(quality_findings).where(quality_findings.c.run_id == run_id)
        if rule is not None:
            query = query.where(quality_findings.c.rule == rule)
        query = query.order_by(quality_findings.c.id).limit(limit).offset(offset)
        async with self._session() as session:
            rows = (await session.execute(query)).mappings().all()
        return [QualityFinding(r["rule"], r["detail"], r["ts_code"], r["trade_date"]) for r in rows]

    # -- reads ----------------------------------------------------------------------------------------------------

    async def count_securities(self) -> int:
        async with self._session() as session:
            return int(await session.scalar(select(func.count()).select_from(securities)) or 0)

    async def list_securities(
        self,
        *,
        board: str | None = None,
        is_st: bool | None = None,
        industry: str | None = None,
        listed_on: date | None = None,
        st_on: bool | None = None,
        on: date | None = None,
        list_status: str | None = None,
    ) -> list[SecurityRecord]:
        """Securities by board, industry, current ST flag, list status; `listed_on`: listed on or before that day
        and not delisted by it; `st_on` with `on`: under an ST name on that day (st_periods) or not."""
        query = select(securities).order_by(securities.c.ts_code)
        if board is not None:
            query = query.where(securities.c.board == board)
        if is_st is not None:
            query = query.where(securities.c.is_st == is_st)
        if industry is not None:
            query = query.where(securities.c.industry == industry)
        if list_status is not None:
            query = query.where(securities.c.list_status == list_status)
        if listed_on is not None:
            query = query.where(
                securities.c.list_date <= listed_on,
                or_(securities.c.delist_date.is_(None), securities.c.delist_date > listed_on),
            )
        if st_on is not None and on is not None:
            covering = (
                select(st_periods.c.ts_code)
                .where(
                    st_periods.c.ts_code == securities.c.ts_code,
                    st_periods.c.start_date <= on,
                    or_(st_periods.c.end_date.is_(None), st_periods.c.end_date >= on),
                )
                .exists()
            )
            query = query.where(covering if st_on else ~covering)
        async with self._session() as session:
            rows = (await session.execute(query)).mappings().all()
        return [SecurityRecord(**row) for row in rows]

    async def get_security(self, ts_code: str) -> SecurityRecord | None:
        async with self._session() as session:
            row = (await session.execute(select(securities).where(securities.c.ts_code == ts_code))).mappings().first()
        return None if row is None else SecurityRecord(**row)

    async def bars(self, ts_code: str, start: date, end: date) -> list[BarRecord]:
        query = (
            select(daily_bars)
            .where(daily_bars.c.ts_code == ts_code, daily_bars.c.trade_date.between(start, end))
            .order_by(daily_bars.c.trade_date)
        )
        async with self._session() as session:
            rows = (await session.execute(query)).mappings().all()
        return [BarRecord(**row) for row in rows]

    async def last_bar(self, ts_code: str) -> BarRecord | None:
        query = (
            select(daily_bars).where(daily_bars.c.ts_code == ts_code).order_by(daily_bars.c.trade_date.desc()).limit(1)
        )
        async with self._session() as session:
            row = (await session.execute(query)).mappings().first()
        return None if row is None else BarRecord(**row)

    async def latest_session(self) -> date | None:
        """The newest trading day the store has bars for: the market 'as of' date of quotes."""
        async with self._session() as session:
            return await session.scalar(select(func.max(daily_bars.c.trade_date)))

    async def open_days(self, start: date, end: date, exchange: str = CALENDAR_EXCHANGE) -> list[date]:
        query = (
            select(trade_calendar.c.cal_date)
            .where(
                trade_calendar.c.exchange == exchange,
                trade_calendar.c.is_open.is_(True),
                trade_calendar.c.cal_date.between(start, end),
            )
            .order_by(trade_calendar.c.cal_date)
        )
        async with self._session() as session:
            return list((await session.scalars(query)).all())

    async def count_open_days(self, start: date, end: date, exchange: str = CALENDAR_EXCHANGE) -> int:
        query = select(func.count()).where(
            trade_calendar.c.exchange == exchange,
            trade_calendar.c.is_open.is_(True),
            trade_calendar.c.cal_date.between(start, end),
        )
        async with self._session() as session:
            return int(await session.scalar(query) or 0)

    async def next_open_day(self, after: date, exchange: str = CALENDAR_EXCHANGE) -> date | None:
        query = select(func.min(trade_calendar.c.cal_date)).where(
            trade_calendar.c.exchange == exchange,
            trade_calendar.c.is_open.is_(True),
            trade_calendar.c.cal_date > after,
        )
        async with self._session() as session:
            return await session.scalar(query)

    async def calendar_span(self, exchange: str = CALENDAR_EXCHANGE) -> tuple[date, date] | None:
        """First and last calendar day the stored calendar covers (open or not)."""
        query = select(func.min(trade_calendar.c.cal_date), func.max(trade_calendar.c.cal_date)).where(
            trade_calendar.c.exchange == exchange
        )
        async with self._session() as session:
            first, last = (await session.execute(query)).one()
        return None if first is None else (first, last)

    async def bars_of(self, ts_codes: Sequence[str], start: date, end: date) -> dict[str, list[BarRecord]]:
        """Bars of several symbols over [start, end], by code (codes without bars map to [])."""
        out: dict[str, list[BarRecord]] = {code: [] for code in ts_codes}
        query = (
            select(daily_bars)
            .where(daily_bars.c.ts_code.in_(list(ts_codes)), daily_bars.c.trade_date.between(start, end))
            .order_by(daily_bars.c.ts_code, daily_bars.c.trade_date)
        )
        async with self._session() as session:
            for row in (await session.execute(query)).mappings().all():
                out[row["ts_code"]].append(BarRecord(**row))
        return out

    async def cross_section(self, trade_date: date) -> list[tuple[BarRecord, int | None, int | None]]:
        """Every bar of one trading day with that day's limit prices (fen) where stk_limit has them."""
        query = (
            select(daily_bars, stk_limits.c.up_limit, stk_limits.c.down_limit)
            .select_from(
                daily_bars.outerjoin(
                    stk_limits,
                    and_(
                        stk_limits.c.ts_code == daily_bars.c.ts_code, stk_limits.c.trade_date == daily_bars.c.trade_date
                    ),
                )
            )
            .where(daily_bars.c.trade_date == trade_date)
            .order_by(daily_bars.c.ts_code)
        )
        async with self._session() as session:
            rows = (await session.execute(query)).mappings().all()
        bar_keys = [c.name for c in daily_bars.columns]
        return [(BarRecord(**{k: row[k] for k in bar_keys}), row["up_limit"], row["down_limit"]) for row in rows]

    async def anchor_factors(self, ts_codes: Sequence[str] | None, anchor: date) -> dict[str, Decimal]:
        """Each symbol's adj factor on `anchor`: the newest factor on or before it, from Tushare's feed (which has
        suspended days) or else from the bars."""
        found: dict[str, tuple[date, Decimal]] = {}
        async with self._session() as session:
            for table in (daily_bars, adj_factors):
                newest = select(table.c.ts_code, func.max(table.c.trade_date).label("day")).where(
                    table.c.trade_date <= anchor
                )
                if ts_codes is not None:
                    newest = newest.where(table.c.ts_code.in_(list(ts_codes)))
                sub = newest.group_by(table.c.ts_code).subquery()
                query = select(table.c.ts_code, table.c.trade_date, table.c.adj_factor).join(
                    sub, and_(sub.c.ts_code == table.c.ts_code, sub.c.day == table.c.trade_date)
                )
                for code, day, factor in (await session.execute(query)).all():
                    if code not in found or day >= found[code][0]:
                        found[code] = (day, Decimal(factor))
        return {code: factor for code, (_, factor) in found.items()}

    async def first_bar_factors(self, ts_codes: Sequence[str]) -> dict[str, Decimal]:
        """Each symbol's factor on its first stored bar: the qfq anchor of a symbol with no factor by the anchor date
        (JSON and bulk reads alike, so the answer does not depend on the range asked)."""
        if not ts_codes:
            return {}
        first = (
            select(daily_bars.c.ts_code, func.min(daily_bars.c.trade_date).label("day"))
            .where(daily_bars.c.ts_code.in_(list(ts_codes)))
            .group_by(daily_bars.c.ts_code)
            .subquery()
        )
        query = select(daily_bars.c.ts_code, daily_bars.c.adj_factor).join(
            first, and_(first.c.ts_code == daily_bars.c.ts_code, first.c.day == daily_bars.c.trade_date)
        )
        async with self._session() as session:
            return {code: Decimal(factor) for code, factor in (await session.execute(query)).all()}

    async def codes_listed_between(self, start: date, end: date) -> list[str]:
        """Securities listed at some point of [start, end] (listed by `end`, not delisted by `start`)."""
        query = (
            select(securities.c.ts_code)
            .where(
                securities.c.list_date <= end,
                or_(securities.c.delist_date.is_(None), securities.c.delist_date > start),
            )
            .order_by(securities.c.ts_code)
        )
        async with self._session() as session:
            return list((await session.scalars(query)).all())

    async def security_codes(self) -> set[str]:
        async with self._session() as session:
            return set((await session.scalars(select(securities.c.ts_code))).all())

    async def previous_open_day(self, before: date, exchange: str = CALENDAR_EXCHANGE) -> date | None:
        query = select(func.max(trade_calendar.c.cal_date)).where(
            trade_calendar.c.exchange == exchange,
            trade_calendar.c.is_open.is_(True),
            trade_calendar.c.cal_date < before,
        )
        async with self._session() as session:
            return await session.scalar(query)

    async def has_adj_factor_feed(self) -> bool:
        async with self._session() as session:
            return await session.scalar(select(adj_factors.c.ts_code).limit(1)) is not None

    async def market_columns(self) -> dict[str, np.ndarray]:
        """All of daily_bars as numpy columns, sorted by ts_code then trade_date: ts_code (str), trade_date (int32
        days since 1970-01-01), prices/amount int64 fen, vol int64 shares, adj_factor int64 millionths.
        The source of the bulk snapshot (services/data/bulk.py)."""
        if self.db.engine.dialect.name in ("mysql", "mariadb"):
            return await self._market_columns_mysql()
        query = select(daily_bars).order_by(daily_bars.c.ts_code, daily_bars.c.trade_date)
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return _bar_columns_from_rows(
            [(r.ts_code, (r.trade_date - _EPOCH).days, r.open, r.high, r.low, r.close, r.pre_close, r.vol, r.amount,
              int(Decimal(r.adj_factor).scaleb(6))) for r in rows]
        )  # fmt: skip

    async def _market_columns_mysql(self) -> dict[str, np.ndarray]:
        # Integers only from the server (days since the epoch, factors in millionths): asyncmy turns DATE and
        # DECIMAL into date and Decimal objects, which cost more than the rest of the row together.
        query = select(
            daily_bars.c.ts_code,
            (func.to_days(daily_bars.c.trade_date) - _TO_DAYS_EPOCH).label("day"),
            daily_bars.c.open, daily_bars.c.high, daily_bars.c.low, daily_bars.c.close, daily_bars.c.pre_close,
            daily_bars.c.vol, daily_bars.c.amount,
            func.cast(daily_bars.c.adj_factor * units.MICRO, BigInteger).label("adj_micro"),
        ).order_by(daily_bars.c.ts_code, daily_bars.c.trade_date)  # fmt: skip
        return await self._columns_mysql(query, _bar_columns_from_rows)

    async def daily_basic_columns(self, fields: Sequence[str]) -> dict[str, np.ndarray]:
        """All of daily_basic's `fields` (names of `DAILY_BASIC_FIELDS`) as numpy columns, sorted by ts_code then
        trade_date: ts_code (str), trade_date (int32 days since 1970-01-01), each field float64 in storage units, NaN
        where NULL (share counts and market values are whole numbers of shares and fen below 2**53, so exact).
        A source of the bulk answers' daily_basic columns (services/data/bulk.py)."""
        unknown = sorted(set(fields) - set(DAILY_BASIC_FIELDS))
        if unknown:
            raise ValueError(f"not daily_basic fields: {', '.join(unknown)}")
        names = ("ts_code", "trade_date", *fields)
        to_columns = partial(_basic_columns_from_rows, names)
        keys = (daily_basic.c.ts_code, daily_basic.c.trade_date)
        if self.db.engine.dialect.name in ("mysql", "mariadb"):
            day = (func.to_days(daily_basic.c.trade_date) - _TO_DAYS_EPOCH).label("trade_date")
            query = select(daily_basic.c.ts_code, day, *(daily_basic.c[name] for name in fields)).order_by(*keys)
            return await self._columns_mysql(query, to_columns)
        async with self._session() as session:
            rows = (await session.execute(select(*(daily_basic.c[name] for name in names)).order_by(*keys))).all()
        return to_columns([(row[0], (row[1] - _EPOCH).days, *row[2:]) for row in rows])

    async def _columns_mysql(
        self, query: Select[Any], to_columns: Callable[[Sequence[Sequence[Any]]], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """Run `query` on a raw asyncmy server-side cursor, `to_columns` on each chunk of rows, the chunks joined.
        SQLAlchemy's result rows cost ~4 us a row on top of the driver; this is the driver alone."""
        compiled = query.compile(dialect=self.db.engine.dialect, compile_kwargs={"render_postcompile": True})
        params = tuple(compiled.params[name] for name in (compiled.positiontup or []))
        chunks: list[dict[str, np.ndarray]] = []
        async with self.db.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            from asyncmy.cursors import SSCursor

            cursor = driver.cursor(SSCursor)
            try:
                await cursor.execute(str(compiled), params)
                while rows := await cursor.fetchmany(200_000):
                    chunks.append(to_columns(rows))
            finally:
                await cursor.close()
        if not chunks:
            return to_columns([])
        if len(chunks) == 1:
            return chunks[0]
        return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}

    async def quality_columns(
        self, table: Table, ts_codes: Sequence[str], start: date, end: date
    ) -> dict[str, np.ndarray]:
        """The rows of `ts_codes` in [start, end] of daily_bars, stk_limits or suspensions as numpy columns in
        storage units, in key order: ts_code (str), trade_date (int32 days since 1970-01-01), the integer columns
        int64, daily_bars.adj_factor int64 millionths, suspensions.suspend_type str. The quality checks' inputs
        (services/data/ingest.py): on MariaDB read as integers through the driver (`_columns_mysql`), elsewhere
        (SQLite) through SQLAlchemy and converted to the same columns."""
        names = _QUALITY_COLUMNS[table.name]
        where = and_(table.c.ts_code.in_(list(ts_codes)), table.c.trade_date.between(start, end))
        keys = list(table.primary_key.columns)
        to_columns = partial(_columns_from_rows, names, table)
        if not ts_codes:
            return to_columns([])
        if self.db.engine.dialect.name in ("mysql", "mariadb"):
            selected: list[Any] = []
            for name in names:
                column = table.c[name]
                if name == "trade_date":
                    selected.append((func.to_days(column) - _TO_DAYS_EPOCH).label(name))
                elif isinstance(column.type, Numeric) and not isinstance(column.type, Float):
                    selected.append(func.cast(column * units.MICRO, BigInteger).label(name))
                else:
                    selected.append(column)
            return await self._columns_mysql(select(*selected).where(where).order_by(*keys), to_columns)
        query = select(*(table.c[name] for name in names)).where(where).order_by(*keys)
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return to_columns([_storage_row(names, table, row) for row in rows])

    async def index_constituents(self, index_code: str, on: date) -> tuple[date | None, list[tuple[str, float]]]:
        """The newest published weights of `index_code` on or before `on`: (their date, [(con_code, weight %)])."""
        newest = select(func.max(index_weights.c.trade_date)).where(
            index_weights.c.index_code == index_code, index_weights.c.trade_date <= on
        )
        async with self._session() as session:
            day = await session.scalar(newest)
            if day is None:
                return None, []
            query = (
                select(index_weights.c.con_code, index_weights.c.weight)
                .where(index_weights.c.index_code == index_code, index_weights.c.trade_date == day)
                .order_by(index_weights.c.weight.desc(), index_weights.c.con_code)
            )
            rows = (await session.execute(query)).all()
        return day, [(code, float(weight)) for code, weight in rows]

    async def index_bar_rows(self, ts_code: str, start: date, end: date) -> list[dict[str, Any]]:
        query = (
            select(index_bars)
            .where(index_bars.c.ts_code == ts_code, index_bars.c.trade_date.between(start, end))
            .order_by(index_bars.c.trade_date)
        )
        async with self._session() as session:
            return [dict(row) for row in (await session.execute(query)).mappings().all()]

    async def known_index(self, ts_code: str) -> bool:
        async with self._session() as session:
            in_bars = await session.scalar(select(index_bars.c.ts_code).where(index_bars.c.ts_code == ts_code).limit(1))
            if in_bars is not None:
                return True
            in_weights = await session.scalar(
                select(index_weights.c.index_code).where(index_weights.c.index_code == ts_code).limit(1)
            )
        return in_weights is not None


_EPOCH = date(1970, 1, 1)
_TO_DAYS_EPOCH = 719_528  # MySQL TO_DAYS('1970-01-01')
BAR_COLUMN_NAMES = ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount", "adj_factor")


# The columns the quality checks read, per table (see DataStore.quality_columns).
_QUALITY_COLUMNS = {
    "daily_bars": BAR_COLUMN_NAMES,
    "stk_limits": ("ts_code", "trade_date", "up_limit", "down_limit"),
    "suspensions": ("ts_code", "trade_date", "suspend_type"),
}


def _storage_row(names: Sequence[str], table: Table, row: Sequence[Any]) -> tuple[Any, ...]:
    """A SQLAlchemy row as the integers `_columns_mysql` reads from MariaDB: days since the epoch, DECIMAL in
    millionths."""
    out: list[Any] = []
    for name, value in zip(names, row, strict=True):
        kind = table.c[name].type
        if name == "trade_date":
            out.append((value - _EPOCH).days)
        elif isinstance(kind, Numeric) and not isinstance(kind, Float):
            out.append(int(Decimal(value).scaleb(6)))
        else:
            out.append(value)
    return tuple(out)


def _columns_from_rows(names: Sequence[str], table: Table, rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Rows of (str | int) values -> numpy columns: str -> object, trade_date -> int32, every other column int64.
    One object array filled from the flattened rows, then a cast per column: a third of the time of transposing the
    rows with zip() and converting each tuple of ints."""
    flat = np.fromiter(chain.from_iterable(rows), dtype=object, count=len(rows) * len(names))
    table_of = flat.reshape(len(rows), len(names))
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        if name == "trade_date":
            out[name] = table_of[:, j].astype(np.int32)
        elif isinstance(table.c[name].type, String):
            out[name] = table_of[:, j].copy()
        else:
            out[name] = table_of[:, j].astype(np.int64)
    return out


def _bar_columns_from_rows(rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Bar rows (ts_code, days since the epoch, the integer columns, adj_factor in millionths) as numpy columns."""
    return _columns_from_rows(BAR_COLUMN_NAMES, daily_bars, rows)


# daily_basic's value columns, in the table's order: what the bulk reads can add to the bars (`fields=`).
DAILY_BASIC_FIELDS = (*units.DAILY_BASIC_RATIOS, *units.DAILY_BASIC_SHARES, *units.DAILY_BASIC_VALUES)


def _basic_columns_from_rows(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """daily_basic rows (ts_code, days since the epoch, the fields) as numpy columns; a NULL field becomes NaN."""
    flat = np.fromiter(chain.from_iterable(rows), dtype=object, count=len(rows) * len(names))
    table_of = flat.reshape(len(rows), len(names))
    out: dict[str, np.ndarray] = {"ts_code": table_of[:, 0].copy(), "trade_date": table_of[:, 1].astype(np.int32)}
    for j, name in enumerate(names[2:], start=2):
        out[name] = table_of[:, j].astype(np.float64)  # None -> NaN
    return out
