"""The data service's tables (database `lh_data`) and the queries on them.

Units, chosen so that nothing stored is ever rounded again:
- `daily_bars.open/high/low/close/pre_close`: unadjusted prices in integer fen (0.01 CNY), BIGINT;
- `daily_bars.vol`: shares (not Tushare's lots of 100), BIGINT;
- `daily_bars.amount`: turnover in integer fen (not Tushare's thousand CNY), BIGINT;
- `daily_bars.adj_factor`: Tushare's backward adjustment factor, DECIMAL(20,6);
- `trade_calendar`: one row per calendar day and exchange (`SSE`), `is_open` as Tushare's trade_cal has it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Index,
    Numeric,
    String,
    Table,
    func,
    select,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert

from shared.db import Database, DbSession, new_metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BATCH_ROWS = 5_000  # rows per executemany: big enough to amortise round trips, small enough for max_allowed_packet
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
    Column("is_st", Boolean, nullable=False),
    Column("list_date", Date, nullable=False),
    Column("delist_date", Date, nullable=True),
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
        async with self.db.session() as session:
            token = self._ambient.set(session)
            try:
                yield self
            finally:
                self._ambient.reset(token)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[DbSession]:
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
        async with self.db.session() as session:
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

    # -- reads ----------------------------------------------------------------------------------------------------

    async def count_securities(self) -> int:
        async with self._session() as session:
            return int(await session.scalar(select(func.count()).select_from(securities)) or 0)

    async def list_securities(self, *, board: str | None = None, is_st: bool | None = None) -> list[SecurityRecord]:
        query = select(securities).order_by(securities.c.ts_code)
        if board is not None:
            query = query.where(securities.c.board == board)
        if is_st is not None:
            query = query.where(securities.c.is_st == is_st)
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
