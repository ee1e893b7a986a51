"""Daily bars and Tushare's adj factor feed: their writes, reads, and the numpy columns of the bulk answers and the
quality checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, Float, Numeric, Table, and_, func, select, update

from services.data import units
from services.data.store.bulk import BulkWriter
from services.data.store.columns import _EPOCH, _TO_DAYS_EPOCH, ColumnReader, _columns_from_rows, _storage_row
from services.data.store.tables import adj_factors, daily_bars, securities, stk_limits, trade_calendar

BAR_COLUMN_NAMES = ("ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount", "adj_factor")
# The columns the quality checks read, per table (see BarStore.quality_columns).
_QUALITY_COLUMNS = {
    "daily_bars": BAR_COLUMN_NAMES,
    "stk_limits": ("ts_code", "trade_date", "up_limit", "down_limit"),
    "suspensions": ("ts_code", "trade_date", "suspend_type"),
}


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


def _bar_columns_from_rows(rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Bar rows (ts_code, days since the epoch, the integer columns, adj_factor in millionths) as numpy columns."""
    return _columns_from_rows(BAR_COLUMN_NAMES, daily_bars, rows)


class BarStore(BulkWriter, ColumnReader):
    """Daily bars and the adj factor feed: bulk upserts of Tushare frames, reads, and numpy columns."""

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

    async def last_bar_before(self, ts_code: str, before: date) -> BarRecord | None:
        """The symbol's newest bar strictly before `before` (its last close as a session `before` opens)."""
        query = (
            select(daily_bars)
            .where(daily_bars.c.ts_code == ts_code, daily_bars.c.trade_date < before)
            .order_by(daily_bars.c.trade_date.desc())
            .limit(1)
        )
        async with self._session() as session:
            row = (await session.execute(query)).mappings().first()
        return None if row is None else BarRecord(**row)

    async def last_bars(self, before: date | None = None) -> dict[str, tuple[date, int]]:
        """Every symbol's newest bar (strictly before `before` if given) as (trade_date, close in fen), by code: the
        whole market's `last_bar` / `last_bar_before` in one query (the reference data's)."""
        newest = select(daily_bars.c.ts_code, func.max(daily_bars.c.trade_date).label("day"))
        if before is not None:
            newest = newest.where(daily_bars.c.trade_date < before)
        sub = newest.group_by(daily_bars.c.ts_code).subquery()
        query = select(daily_bars.c.ts_code, daily_bars.c.trade_date, daily_bars.c.close).join(
            sub, and_(sub.c.ts_code == daily_bars.c.ts_code, sub.c.day == daily_bars.c.trade_date)
        )
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return {code: (day, int(close)) for code, day, close in rows}

    async def session_pre_closes(self, day: date) -> dict[str, int]:
        """The pre_close (fen) of every symbol with a bar on `day`, by code: who trades that session, and the
        exchange's reference price its limits are around."""
        query = select(daily_bars.c.ts_code, daily_bars.c.pre_close).where(daily_bars.c.trade_date == day)
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return {code: int(pre_close) for code, pre_close in rows}

    async def session_limits(self, day: date, code: str | None = None) -> dict[str, tuple[int | None, int, int]]:
        """The exchange's limits of trading day `day` as stored from Tushare's stk_limit (before the open by the
        pre-open load, or with the day's bars after the close): (pre_close or None, limit_down, limit_up) in fen,
        by code (`code`: that security's only)."""
        query = select(stk_limits.c.ts_code, stk_limits.c.pre_close, stk_limits.c.down_limit, stk_limits.c.up_limit)
        query = query.where(stk_limits.c.trade_date == day)
        if code is not None:
            query = query.where(stk_limits.c.ts_code == code)
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return {
            code: (None if pre_close is None else int(pre_close), int(down), int(up))
            for code, pre_close, down, up in rows
        }

    async def volume_totals(self, start: date, end: date) -> dict[str, tuple[int, int]]:
        """Per symbol with bars in [start, end]: (total volume in shares, number of bars)."""
        query = (
            select(daily_bars.c.ts_code, func.sum(daily_bars.c.vol), func.count())
            .where(daily_bars.c.trade_date.between(start, end))
            .group_by(daily_bars.c.ts_code)
        )
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return {code: (int(total), int(count)) for code, total, count in rows}

    async def latest_session(self) -> date | None:
        """The newest trading day the store has bars for: the market 'as of' date of quotes."""
        async with self._session() as session:
            return await session.scalar(select(func.max(daily_bars.c.trade_date)))

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

    async def stored_adj_factors(
        self, ts_codes: Sequence[str], start: date, end: date
    ) -> dict[tuple[str, date], Decimal]:
        """The feed's factors of `ts_codes` over [start, end], by (ts_code, trade_date)."""
        codes = sorted(set(ts_codes))
        async for attempt in self.db.transaction():  # retried, as the ingestion read it
            async with attempt as session:
                out: dict[tuple[str, date], Decimal] = {}  # per attempt, like everything the block builds
                for i in range(0, len(codes), 500):
                    query = select(adj_factors.c.ts_code, adj_factors.c.trade_date, adj_factors.c.adj_factor).where(
                        adj_factors.c.ts_code.in_(codes[i : i + 500]), adj_factors.c.trade_date.between(start, end)
                    )
                    for code, day, factor in (await session.execute(query)).all():
                        out[(code, day)] = Decimal(factor)
        return out

    async def codes_with_bars(self, start: date, end: date) -> list[str]:
        """The symbols with a bar in [start, end], in code order."""
        # GROUP BY with MIN() lets MariaDB skip through the primary key (ts_code, trade_date) one symbol at a time
        # ("Using index for group-by": 0.3 s for 5,000 symbols x 2,500 days); DISTINCT reads every index entry of
        # the range and sorts them (4.5 s).
        query = (
            select(daily_bars.c.ts_code, func.min(daily_bars.c.trade_date))
            .where(daily_bars.c.trade_date.between(start, end))
            .group_by(daily_bars.c.ts_code)
            .order_by(daily_bars.c.ts_code)
        )
        async for attempt in self.db.transaction():  # retried, as the ingestion read it
            async with attempt as session:
                codes = [code for code, _ in (await session.execute(query)).all()]
        return codes

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
