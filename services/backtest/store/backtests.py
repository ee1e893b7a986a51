"""The backtest store: the schema's migrations, creating a backtest, and (from the modules beside it) the job's
life, its results and search."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, text

from services.backtest.store.jobs import BacktestJobs
from services.backtest.store.records import BacktestKind, BacktestRecord, BacktestStatus
from services.backtest.store.results import BacktestResults
from services.backtest.store.search import BacktestSearch
from services.backtest.store.tables import MIGRATIONS_DIR, backtest_strategies, backtests
from shared.platform.clock import utcnow


class BacktestStore(BacktestJobs, BacktestResults, BacktestSearch):
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
