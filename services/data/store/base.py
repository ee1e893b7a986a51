"""What every part of the data store shares: the database, the read session (`snapshot`), the upsert statement,
and the data version every write of market data bumps (cached reads and bulk snapshots are keyed by it)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import date
from typing import Any, Self

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert

from services.data.store.tables import COMPLETE_THROUGH, MARKET_VERSION, data_versions
from shared.platform.clock import utcnow
from shared.platform.db import Database, DbSession

BATCH_ROWS = 5_000  # rows per executemany: big enough to amortise round trips, small enough for max_allowed_packet


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


def first_version() -> int:
    """The data version of a database's first write: random, not 1, so that two databases (two platforms on one
    machine, or a database deleted and made again at the same path) never share a version, and what caches keyed
    by the version alone (bulk snapshots, the strategy service's and the backtest workers' bar caches) cannot serve
    one database's data for another's. Below 2**50, so a JavaScript number holds it exactly."""
    return (secrets.randbits(40) << 10) + 1


class StoreBase:
    """The database, the shared read session, and the data version every write of market data bumps."""

    def __init__(self, db: Database, *, on_change: Callable[[], Awaitable[None]] | None = None) -> None:
        self.db = db
        self.on_change = on_change  # called after every committed load (drops cached reads)
        # Reads inside `snapshot()` share one session: a quote asks five small questions, and a session per
        # question cost a pool checkout, a ping and a commit each (most of a quote's latency on MariaDB).
        self._ambient: ContextVar[DbSession | None] = ContextVar(f"data-store-{id(self)}", default=None)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Self]:
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

    async def _upsert(self, session: DbSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        statement = upsert_statement(self.db.engine.dialect.name, table)
        for start in range(0, len(rows), BATCH_ROWS):
            # A list of parameter dicts makes this an executemany: one statement, many rows.
            await session.execute(statement, list(rows[start : start + BATCH_ROWS]))
        if rows:
            await self._bump_version(session)

    # -- the data version and the newest complete day ----------------------------------------------------------------

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
                [{"name": MARKET_VERSION, "version": first_version(), "updated_at": now}],
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
