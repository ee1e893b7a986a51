"""Async database access for a service's own schema: MySQL (asyncmy) in fleet mode, SQLite (aiosqlite)
standalone. Alembic migrations per service run at start-up through the same engine."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, event, make_url, text
from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase

_DB_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")

# What `Database.session()` yields: statements run through it (`execute`, `scalar`, `scalars`).
DbSession = AsyncConnection

# Microsecond timestamps on MySQL too (its DATETIME defaults to whole seconds, which breaks ordering).
PreciseDateTime = DateTime().with_variant(MYSQL_DATETIME(fsp=6), "mysql", "mariadb")


def new_metadata() -> MetaData:
    """Metadata with a naming convention, so Alembic migrations name constraints the same on every backend."""
    return MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def declarative_base() -> type[DeclarativeBase]:
    class Base(DeclarativeBase):
        metadata = new_metadata()

    return Base


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url: URL = make_url(url)
        self.echo = echo
        self._engine: AsyncEngine | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database.connect() has not been called")
        return self._engine

    async def connect(self) -> None:
        if self._engine is not None:
            return
        kwargs: dict[str, Any] = {"echo": self.echo}
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            await self._create_mysql_database()
            kwargs.update(pool_pre_ping=True, pool_recycle=1800, pool_size=10, max_overflow=10)
        self._engine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)

    async def _create_mysql_database(self) -> None:
        name = self.url.database
        if not name:
            raise ValueError("a MySQL URL must name the database")
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        u = self.url
        # URL.set(database=None) keeps the old name in SQLAlchemy 2.1: build the server URL explicitly.
        server_url = URL.create(u.drivername, u.username, u.password, u.host, u.port, None, u.query)
        server = create_async_engine(server_url)
        try:
            async with server.begin() as conn:
                # Identifiers cannot be bound parameters; the name was validated against a strict pattern above.
                await conn.execute(
                    text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                )
        finally:
            await server.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DbSession]:
        """A connection in one transaction: committed when the block ends, rolled back if it raises.

        Core, not the ORM: the services write tables with Core statements, and the ORM Session's unit-of-work
        bookkeeping was a large share of the order path's CPU time for no use."""
        async with self.engine.begin() as connection:
            yield connection

    async def ping(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def migrate(self, migrations_dir: Path) -> None:
        """Bring the schema to the newest Alembic revision in `migrations_dir`."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_alembic_upgrade, migrations_dir)

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None


# How long an SQLite write waits for another connection's (or process's) write transaction before "database is
# locked": bulk writes commit per batch (a fraction of a second each), so this is ample.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer nor wait for it (the service reads while a CLI import writes).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _alembic_upgrade(connection: Connection, migrations_dir: Path) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def run_migrations_env(metadata: MetaData) -> None:
    """The body of every service's Alembic env.py: migrate through the connection the service handed over."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through Database.migrate() (the service does it at start-up)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
