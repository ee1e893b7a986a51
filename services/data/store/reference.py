"""Reference data: securities, the trade calendar, daily_basic, limit prices, suspensions, ST periods, indices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, or_, select

from services.data import units
from services.data.store.bulk import BulkWriter
from services.data.store.columns import _EPOCH, _TO_DAYS_EPOCH, ColumnReader
from services.data.store.tables import (
    CALENDAR_EXCHANGE,
    daily_basic,
    index_bars,
    index_weights,
    securities,
    st_periods,
    stk_limits,
    suspensions,
    trade_calendar,
)

# daily_basic's value columns, in the table's order: what the bulk reads can add to the bars (`fields=`).
DAILY_BASIC_FIELDS = (*units.DAILY_BASIC_RATIOS, *units.DAILY_BASIC_SHARES, *units.DAILY_BASIC_VALUES)


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


class ReferenceStore(BulkWriter, ColumnReader):
    """Securities, the trade calendar, daily_basic, limits, suspensions, ST periods and indices."""

    # Frames in Tushare's layout and units (see services/data/units.py). Each returns the rows written.

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

    async def open_days_before(self, before: date, count: int, exchange: str = CALENDAR_EXCHANGE) -> list[date]:
        """The last `count` open days strictly before `before`, oldest first (fewer where the calendar ends)."""
        query = (
            select(trade_calendar.c.cal_date)
            .where(
                trade_calendar.c.exchange == exchange,
                trade_calendar.c.is_open.is_(True),
                trade_calendar.c.cal_date < before,
            )
            .order_by(trade_calendar.c.cal_date.desc())
            .limit(count)
        )
        async with self._session() as session:
            return sorted((await session.scalars(query)).all())

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

    async def all_open_days(self, exchange: str = CALENDAR_EXCHANGE) -> set[date]:
        """Every open day of the stored calendar."""
        query = select(trade_calendar.c.cal_date).where(
            trade_calendar.c.exchange == exchange, trade_calendar.c.is_open.is_(True)
        )
        async for attempt in self.db.transaction():  # retried, as the ingestion read it
            async with attempt as session:
                days = set((await session.scalars(query)).all())
        return days

    async def listing_spans(self, ts_codes: Sequence[str]) -> list[tuple[str, date, date | None]]:
        """(ts_code, list_date, delist_date) of the stored securities among `ts_codes`."""
        query = select(securities.c.ts_code, securities.c.list_date, securities.c.delist_date).where(
            securities.c.ts_code.in_(list(ts_codes))
        )
        async for attempt in self.db.transaction():  # retried, as the ingestion read it
            async with attempt as session:
                rows = [(code, listed, delisted) for code, listed, delisted in (await session.execute(query)).all()]
        return rows

    async def previous_open_day(self, before: date, exchange: str = CALENDAR_EXCHANGE) -> date | None:
        query = select(func.max(trade_calendar.c.cal_date)).where(
            trade_calendar.c.exchange == exchange,
            trade_calendar.c.is_open.is_(True),
            trade_calendar.c.cal_date < before,
        )
        async with self._session() as session:
            return await session.scalar(query)

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


def _basic_columns_from_rows(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """daily_basic rows (ts_code, days since the epoch, the fields) as numpy columns; a NULL field becomes NaN."""
    flat = np.fromiter(chain.from_iterable(rows), dtype=object, count=len(rows) * len(names))
    table_of = flat.reshape(len(rows), len(names))
    out: dict[str, np.ndarray] = {"ts_code": table_of[:, 0].copy(), "trade_date": table_of[:, 1].astype(np.int32)}
    for j, name in enumerate(names[2:], start=2):
        out[name] = table_of[:, j].astype(np.float64)  # None -> NaN
    return out
