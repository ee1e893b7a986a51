"""Async database access for a service's own schema: MySQL (asyncmy) in fleet mode, SQLite (aiosqlite)
standalone. Alembic migrations per service run at start-up through the same engine.

Every unit of work runs through `Database.transaction()`, which re-runs it from its start after a transient error
(a deadlock, a lock wait timeout, a connection lost before the commit, SQLite's "database is locked"):

    async for attempt in db.transaction():
        async with attempt as s:
            ...  # the whole unit: reads, decisions and writes

The block may run more than once, so it must not do anything outside the database that a re-run would repeat
(call a broker, publish an event, change in-memory state): do that after the loop, from what the block returned.
And what the block counts or collects starts inside it (`stored = 0` as its first line, not before the loop): an
attempt that was rolled back must leave nothing behind that the next one adds to.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import DateTime, MetaData, event, make_url, text
from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool
from tenacity import AsyncRetrying, AttemptManager, RetryCallState, retry_if_exception, wait_random_exponential

log = logging.getLogger(__name__)
T = TypeVar("T")

_DB_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")

# What `Database.session()` yields: statements run through it (`execute`, `scalar`, `scalars`).
DbSession = AsyncConnection

# Microsecond timestamps on MySQL too (its DATETIME defaults to whole seconds, which breaks ordering).
PreciseDateTime = DateTime().with_variant(MYSQL_DATETIME(fsp=6), "mysql", "mariadb")


# Transient errors, by MySQL/MariaDB error number: the server rolled the transaction back (or the statement, which we
# then roll back), so running the unit again is safe.
MYSQL_TRANSIENT = {1213: "deadlock", 1205: "lock_wait_timeout", 2006: "server_gone_away", 2013: "lost_connection"}
# Of those, the ones that lose the connection: retried only when they happen before the COMMIT is sent. Lost during
# the COMMIT, the transaction may or may not have been committed; it is not run again (the caller gets a 503 and
# its own retry, idempotent by client_order_id, finds out).
MYSQL_CONNECTION_LOST = frozenset({2006, 2013})
SQLITE_LOCKED = "database is locked"
# Attempts in all (the first one and up to 7 retries) and the backoff between them: full jitter on an exponential
# base, 10, 20, 40, ... ms capped at 500 ms, so that the transactions that deadlocked each other do not meet again.
TRANSACTION_ATTEMPTS = 8
# Fewer for the errors that come only after a long wait: a lock wait timeout after the session's lock wait
# (LH_DB_LOCK_WAIT_S, set on every MariaDB connection), SQLite's "database is locked" after its busy timeout. Run once
# more (the other transaction may have finished by then), not 8 times: a request then fails within about two waits.
ATTEMPTS_BY_REASON = {"lock_wait_timeout": 2, "sqlite_locked": 2}
# How long a MariaDB statement waits for a row lock before 1205 (the server's default is 50 s).
DEFAULT_LOCK_WAIT_S = 10


def attempts_for(reason: str) -> int:
    """How many attempts in all a unit of work gets when it keeps failing for `reason`."""
    return ATTEMPTS_BY_REASON.get(reason, TRANSACTION_ATTEMPTS)


# The kinds of `Database.operations` (one Prometheus counter, `lh_db_operations_total{op=...}`).
OPERATIONS = ("statements", "transactions", "commits", "rollbacks", "pings", "resets", "connects")

# A pooled MariaDB connection that sat unused this long is pinged when it is checked out (and replaced if the server
# dropped it: wait_timeout, a restart, a proxy). One reused sooner is not: under load that is every checkout, and a
# ping per unit of work was a round trip per transaction (the pool's pre-ping). A connection dropped within this
# window (a server restart) fails its unit's first statement with 2006/2013 before the COMMIT, which
# `transaction()` runs again on a new connection; SQLAlchemy then invalidates the pool's older connections, so each
# process pays one failed attempt per restart. Reads outside `transaction()` (`session()`, one attempt) get the error.
IDLE_PING_S = 10.0
_CHECKED_IN = "lh_checked_in_at"


# Whether a pooled connection may be inside a transaction, in its record's info: True from the checkout (unknown: a
# raw driver connection, say) and from SQLAlchemy's BEGIN (or an error) until its COMMIT or ROLLBACK. The pool rolls
# back on return only a connection marked True (`Database._reset`): one whose unit committed costs no ROLLBACK round
# trip, where the pool's own reset (pool_reset_on_return="rollback") sent one for every unit of work. Caveat: raw
# driver statements after a SQLAlchemy COMMIT on the same checkout are not seen; no code does that (the raw paths,
# `run_raw` and the data store's bulk reads and loads, start on a fresh checkout and are rolled back on return).
IN_TRANSACTION = "lh_in_transaction"


def _checked_out(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """A connection handed to a unit of work may be inside a transaction until SQLAlchemy says otherwise."""
    record.info[IN_TRANSACTION] = True


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_CHECKED_IN] = time.monotonic()


def _mark(connection: Any, in_transaction: bool) -> None:
    """Note on the pooled connection under SQLAlchemy's `connection` whether it may be inside a transaction."""
    # The pooled connection as it is (not `connection.connection`, which would reconnect an invalidated one); None
    # once invalidated or closed: nothing to note, the pool discards it.
    fairy = getattr(connection, "_dbapi_connection", None)
    record = getattr(fairy, "_connection_record", None)
    if record is not None:
        record.info[IN_TRANSACTION] = in_transaction


RETRY_BASE_S = 0.01
RETRY_CAP_S = 0.5


def transient_reason(exc: BaseException) -> str | None:
    """Why `exc` is worth running the unit of work again ("deadlock", "lock_wait_timeout", "lost_connection",
    "server_gone_away", "sqlite_locked"), or None when it is not. `exc` is SQLAlchemy's error, or asyncmy's own
    where a raw driver connection is used (`Database.run_raw`)."""
    if isinstance(exc, DBAPIError):
        orig: BaseException | None = exc.orig
    elif type(exc).__module__.startswith("asyncmy"):
        orig = exc
    else:
        return None
    code = orig.args[0] if orig is not None and orig.args and isinstance(orig.args[0], int) else None
    if code in MYSQL_TRANSIENT:
        return MYSQL_TRANSIENT[code]
    if orig is not None and SQLITE_LOCKED in str(orig) and type(orig).__module__.startswith(("sqlite3", "aiosqlite")):
        return "sqlite_locked"
    return None


# The wait before retry number n (1-based): uniformly up to base * 2^(n-1), capped (tenacity's full jitter).
retry_wait: Any = wait_random_exponential(multiplier=RETRY_BASE_S, max=RETRY_CAP_S)
# What `run_raw` retries: its raw connection is gone with a lost connection, so not those.
RAW_RETRIED = frozenset({"deadlock", "lock_wait_timeout"})


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


class _PoolCollector(Collector):
    """The pool's state, read at each scrape (nothing kept between): lh_db_pool_connections by state and
    lh_db_pool_size. No samples for SQLite or before the database is connected."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.db.pool_status()
        connections = GaugeMetricFamily(
            "lh_db_pool_connections",
            "Database connections of the pool by state: checked_out (in use), idle (in the pool), overflow (opened "
            "beyond the pool's size, at most max_overflow)",
            labels=["state"],
        )
        size = GaugeMetricFamily("lh_db_pool_size", "Connections the pool keeps (pool_size)")
        if status is not None:
            for state in ("checked_out", "idle", "overflow"):
                connections.add_metric([state], status[state])
            size.add_metric([], status["size"])
        yield connections
        yield size


class Database:
    def __init__(self, url: str, *, echo: bool = False, lock_wait_s: int = DEFAULT_LOCK_WAIT_S) -> None:
        if lock_wait_s < 1:
            raise ValueError("lock_wait_s must be at least 1 (second)")
        self.url: URL = make_url(url)
        self.echo = echo
        self.lock_wait_s = int(lock_wait_s)
        self._engine: AsyncEngine | None = None
        # Not registered anywhere by itself: a service registers it in its app's registry (`register_metrics`).
        self.retries = Counter(
            "lh_db_transaction_retries",
            "Units of work run again after a transient database error, by reason",
            ["reason"],
            registry=None,
        )
        # What a service asks of its database, by kind (OPERATIONS): `bench/sql_count.py` divides them by the orders
        # placed to give the statements, transactions and pings an order costs each service.
        self.operations = Counter(
            "lh_db_operations",
            "Database round trips by kind: statements, transactions begun, commits, rollbacks, pings (idle "
            "connections checked at checkout), resets (a rollback when a connection returns to the pool) and "
            "connections opened",
            ["op"],
            registry=None,
        )
        self._counted = {op: self.operations.labels(op) for op in OPERATIONS}

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(self.retries)
        registry.register(self.operations)
        registry.register(_PoolCollector(self))

    def pool_status(self) -> dict[str, int] | None:
        """The connection pool now: its size, connections lent out, idle in the pool, and opened beyond the size
        (overflow). None before connect() and for SQLite (no queue pool)."""
        pool = None if self._engine is None else self._engine.sync_engine.pool
        if not isinstance(pool, QueuePool):
            return None
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout(),
            "idle": pool.checkedin(),
            "overflow": max(pool.overflow(), 0),  # negative while the pool has not opened `size` connections yet
        }

    def operation_counts(self) -> dict[str, int]:
        """The operations counted since this Database was made, by kind (tests and benchmarks)."""
        return {op: int(child._value.get()) for op, child in self._counted.items()}

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
            # As for MariaDB below: no ROLLBACK when a connection comes back after its unit committed (`_reset`);
            # with aiosqlite each is a hand-off to the connection's thread and back, several per order.
            kwargs.update(pool_reset_on_return=None)
        else:
            await self._create_mysql_database()
            # No pool_pre_ping (a ping round trip at every checkout, i.e. every unit of work): a connection idle for
            # IDLE_PING_S or longer is pinged at checkout instead (`_checkout`), and one the server dropped sooner
            # fails its unit's first statement, which `transaction()` runs again (see IDLE_PING_S).
            # Nor the pool's rollback when a connection comes back (pool_reset_on_return): `_reset` rolls back only a
            # connection that may still be inside a transaction (see IN_TRANSACTION).
            kwargs.update(pool_recycle=1800, pool_size=10, max_overflow=10, pool_reset_on_return=None)
        self._engine = create_async_engine(self.url, **kwargs)
        sync_engine = self._engine.sync_engine
        if self.is_sqlite:
            event.listen(sync_engine, "connect", _sqlite_pragmas)
            event.listen(sync_engine, "checkout", _checked_out)
        else:
            event.listen(sync_engine, "connect", self._mysql_session)
            event.listen(sync_engine, "checkin", _checked_in)
            event.listen(sync_engine, "checkout", self._checkout)
        event.listen(sync_engine, "begin", lambda c: _mark(c, True))
        event.listen(sync_engine, "commit", lambda c: _mark(c, False))
        event.listen(sync_engine, "rollback", lambda c: _mark(c, False))
        event.listen(sync_engine, "handle_error", lambda ctx: _mark(ctx.connection, True))
        event.listen(sync_engine, "reset", self._reset)
        counted = self._counted
        event.listen(sync_engine, "before_cursor_execute", lambda *_: counted["statements"].inc())
        event.listen(sync_engine, "begin", lambda *_: counted["transactions"].inc())
        event.listen(sync_engine, "commit", lambda *_: counted["commits"].inc())
        event.listen(sync_engine, "rollback", lambda *_: counted["rollbacks"].inc())
        event.listen(sync_engine, "connect", lambda *_: counted["connects"].inc())

    def _checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        """Ping a connection that sat in the pool IDLE_PING_S or longer; one the server dropped is replaced (the
        pool connects anew on DisconnectionError) before the unit of work gets it."""
        _checked_out(dbapi_connection, record, _proxy)
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None or time.monotonic() - checked_in < IDLE_PING_S:
            return
        self._counted["pings"].inc()
        try:
            self.engine.sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            log.info("an idle database connection was dropped by the server; connecting again",
                     extra={"error": type(exc).__name__})  # fmt: skip
            raise DisconnectionError(str(exc)) from exc

    def _reset(self, dbapi_connection: Any, record: Any, state: Any) -> None:
        """A connection given back to the pool: rolled back unless its last word was a COMMIT or ROLLBACK through
        SQLAlchemy (see IN_TRANSACTION). A unit of work of `transaction()` or `session()` always ends so; a raw driver
        connection, a read on `engine.connect()` without a commit, or an error leaves it marked and it is rolled
        back, so the next unit never inherits an open transaction (its snapshot, its locks)."""
        if state.terminate_only or not state.asyncio_safe or state.transaction_was_reset:
            return
        if record is not None and record.info.get(IN_TRANSACTION) is False:
            return
        self._counted["resets"].inc()
        self.engine.sync_engine.dialect.do_rollback(dbapi_connection)

    def _mysql_session(self, dbapi_connection: Any, _record: Any) -> None:
        """Every new MariaDB connection waits at most `lock_wait_s` for a row lock (then 1205)."""
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", (self.lock_wait_s,))
        cursor.close()

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

    def transaction(self) -> Transaction:
        """The attempts at one unit of work (see the module's docstring): each attempt is a connection in one
        transaction, committed when its block ends and rolled back if it raises. After a transient error (see
        `transient_reason`) the block runs again from its start, up to `attempts_for(reason)` times in all, with a
        jittered backoff, each retry counted in `retries`; any other error, the last attempt's, and an error during
        the COMMIT itself propagate.

        Core, not the ORM: the services write tables with Core statements, and the ORM Session's unit-of-work
        bookkeeping was a large share of the order path's CPU time for no use."""
        return Transaction(self)

    async def run_raw(self, unit: Callable[[], Awaitable[T]], rollback: Callable[[], Awaitable[object]]) -> T:
        """The same retries for a unit on a raw driver connection (the data store's bulk loads): `unit` runs its
        statements and commits; after a deadlock or a lock wait timeout, `rollback` is awaited and `unit` runs again.
        A lost connection is not retried here: the raw connection is gone with it (the caller's load fails).
        A rollback that fails is logged, and the unit's own error decides (and is the one raised)."""
        async for attempt in self.retrying(RAW_RETRIED):
            with attempt:
                try:
                    return await unit()
                except Exception:
                    await _rollback_quietly(rollback)
                    raise
        raise AssertionError("unreachable: the loop returns or raises")

    def retrying(self, reasons: frozenset[str] | None = None) -> AsyncRetrying:
        """The retry policy of a unit of work: an error whose `transient_reason` is in `reasons` (any reason when
        None) runs it again, up to `attempts_for(reason)` attempts in all, after `retry_wait`, each retry counted
        and logged; anything else, and the last attempt's error, is raised as it is."""

        def retried(exc: BaseException) -> bool:
            reason = transient_reason(exc)
            return reason is not None and (reasons is None or reason in reasons)

        def out_of_attempts(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome is not None else None
            reason = transient_reason(exc) if exc is not None else None
            return reason is None or state.attempt_number >= attempts_for(reason)

        def count_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if exc is not None:
                self._count_retry(transient_reason(exc) or "unknown", state.attempt_number, exc)

        return AsyncRetrying(
            retry=retry_if_exception(retried),
            stop=out_of_attempts,
            wait=retry_wait,
            before_sleep=count_retry,
            reraise=True,
        )

    def _count_retry(self, reason: str, attempt: int, exc: BaseException) -> None:
        self.retries.labels(reason).inc()
        log.warning(
            "transient database error; running the transaction again",
            extra={"reason": reason, "attempt": attempt, "error": type(exc).__name__},
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DbSession]:
        """One attempt, not retried: for tests and one-off scripts. Services use `transaction()`."""
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


class Transaction:
    """`async for attempt in db.transaction(): async with attempt as s: ...`: the attempts at one unit of work,
    driven by the database's tenacity policy (`Database.retrying`). The loop ends after the first attempt that
    commits; an attempt that failed transiently is swallowed and the next one starts after a backoff."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._attempts = db.retrying().__aiter__()

    def __aiter__(self) -> Transaction:
        return self

    async def __anext__(self) -> Attempt:
        return Attempt(self.db, await self._attempts.__anext__())


class Attempt:
    def __init__(self, db: Database, attempt: AttemptManager) -> None:
        self.db = db
        self.attempt = attempt
        self._begin: Any = None

    async def __aenter__(self) -> DbSession:
        self._begin = self.db.engine.begin()
        connection: DbSession = await self._begin.__aenter__()
        return connection

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            # COMMIT. An error here propagates and is not handed to the retry policy: the transaction may have been
            # committed (a lost connection) and a `return` in the block has already been decided.
            await self._begin.__aexit__(None, None, None)
            self.attempt.__exit__(None, None, None)
            return False
        # ROLLBACK (on a lost connection: the connection is dropped). One that fails (the connection died) is logged;
        # the block's own error goes to the retry policy, which runs the unit again or raises that error.
        await _rollback_quietly(lambda: self._begin.__aexit__(exc_type, exc, tb))
        if not isinstance(exc, Exception):
            return False  # a cancellation or an exit: not the policy's to swallow
        return bool(self.attempt.__exit__(exc_type, exc, tb))


async def _rollback_quietly(rollback: Callable[[], Awaitable[object]]) -> None:
    try:
        await rollback()
    except Exception as exc:
        log.warning("rollback failed after a failed unit of work", extra={"error": type(exc).__name__}, exc_info=True)


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
