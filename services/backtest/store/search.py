"""Listing and searching backtests: by owner, strategy (a run's or one of its sleeves'), status, creation time and
free text."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text, func, select
from sqlalchemy.sql import Select

from services.backtest.store.records import BacktestRecord, BacktestStatus
from services.backtest.store.tables import backtest_strategies, backtests
from shared.platform.db import Database


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


class BacktestSearch:
    db: Database

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
