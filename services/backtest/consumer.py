"""What the backtest worker (worker.py) and the optimisation task handler (optimize.py) share as consumers of a work
queue: the service's database (their own unless handed one), one job at a time (`_busy`), the periodic sweep that
recovers jobs which lost their message or their worker, and a stop that lets the job in progress finish."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from services.backtest.store import BacktestStore
from shared.platform.app import Infra
from shared.platform.db import Database
from shared.platform.periodic import PeriodicTask
from shared.platform.settings import Settings
from shared.research.strategy import Strategy, discover_strategies

SERVICE = "backtest"
SWEEP_STOP_GRACE_S = 10.0  # a sweep in progress at stop may finish its statement for this long, then is cancelled


async def wait_for_shutdown() -> None:
    """Neither acknowledge nor reject a job that arrives while stopping: the channel closes under it and the broker
    requeues it for another worker."""
    await asyncio.Event().wait()


class JobConsumer:
    queue: ClassVar[str]  # the work queue consumed
    sweeper_name: ClassVar[str]  # the PeriodicTask's name (logs, metrics)

    def __init__(
        self,
        settings: Settings,
        infra: Infra,
        db: Database | None,
        strategies: Mapping[str, type[Strategy]] | None,
    ) -> None:
        """`db`: the caller's (it closes it), or None for one of its own; `strategies`: None for the installed ones."""
        self.settings = settings
        self.infra = infra
        self.strategies = dict(strategies) if strategies is not None else discover_strategies()
        self._owns_db = db is None
        self.db = db or Database(settings.database_url_for(SERVICE), lock_wait_s=settings.db_lock_wait_s)
        self._busy = asyncio.Lock()
        self._stopping = False
        self._sweeper: PeriodicTask | None = None

    async def handle(self, body: dict[str, Any]) -> None:
        raise NotImplementedError

    async def sweep(self) -> int:
        raise NotImplementedError

    async def _open(self) -> None:
        """Connect and bring the service's schema (the backtest's and the optimiser's tables) up to date."""
        await self.db.connect()
        await BacktestStore(self.db).migrate()

    async def _consume(self, sweep_interval_s: float) -> None:
        """Take jobs from the queue one at a time, and sweep every `sweep_interval_s`."""
        await self.infra.bus.consume_jobs(self.queue, self.handle, prefetch=1)
        self._sweeper = PeriodicTask(self.sweeper_name, sweep_interval_s, self.sweep, stop_grace_s=SWEEP_STOP_GRACE_S)
        self._sweeper.start()

    async def _drain(self, timeout_s: float) -> bool:
        """Stop: jobs arriving from now on wait for the shutdown (`handle` checks `_stopping`); a sweep in progress
        finishes its current statement (it checks `_stopping` between jobs: a task cancelled inside an asyncmy
        transaction can wait forever on its rollback) and is cancelled only if it overruns; the job in progress gets
        `timeout_s` to finish. False when it was still running then."""
        self._stopping = True
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            await sweeper.stop()
        try:
            async with asyncio.timeout(timeout_s):
                async with self._busy:
                    pass
        except TimeoutError:
            return False
        return True

    async def _close(self) -> None:
        if self._owns_db:
            await self.db.dispose()
