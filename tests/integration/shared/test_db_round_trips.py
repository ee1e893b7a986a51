"""What a unit of work costs MariaDB in round trips, and the guarantees the pool's pre-ping and rollback-on-return
used to give, kept without them (shared/platform/db.py): a unit through `transaction()` is its statements and one
COMMIT (no ping, no ROLLBACK when the connection goes back); a connection given back inside a transaction is rolled
back, so the next unit never reads through its old snapshot; a connection the server dropped is replaced at checkout
when it sat idle, or its unit is run again when it was dropped in between."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Column, Integer, String, Table, select, text

from shared.platform import db as db_module
from shared.platform.db import Database, new_metadata
from tests.conftest import Backing

pytestmark = pytest.mark.integration

metadata = new_metadata()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("body", String(32)))


@pytest.fixture
async def db(backing: Backing) -> AsyncIterator[Database]:
    database = Database(backing.database_url().format(service=f"trips_{secrets.token_hex(4)}"))
    await database.connect()
    async with database.session() as s:
        await s.run_sync(metadata.create_all)
    try:
        yield database
    finally:
        async with database.session() as s:
            await s.exec_driver_sql(f"DROP DATABASE `{database.url.database}`")
        await database.dispose()


@pytest.fixture
async def other(db: Database) -> AsyncIterator[Database]:
    """A second process's view of the same database (its own pool)."""
    database = Database(db.url.render_as_string(hide_password=False))
    await database.connect()
    try:
        yield database
    finally:
        await database.dispose()


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {op: after[op] - before[op] for op in after if after[op] != before[op]}


async def connection_id(db: Database) -> int:
    async for attempt in db.transaction():
        async with attempt as s:
            found = int((await s.execute(text("SELECT CONNECTION_ID()"))).scalar_one())
    return found


async def test_a_unit_of_work_is_its_statements_and_one_commit(db: Database) -> None:
    await connection_id(db)  # the pool's connection made
    before = db.operation_counts()
    async for attempt in db.transaction():
        async with attempt as s:
            await s.execute(notes.insert().values(id=1, body="a"))
            await s.execute(select(notes.c.body).where(notes.c.id == 1))
    # two statements, one transaction, one COMMIT: no pre-ping, no ROLLBACK on return, no new connection
    assert delta(db.operation_counts(), before) == {"statements": 2, "transactions": 1, "commits": 1}


async def test_a_connection_given_back_inside_a_transaction_is_rolled_back(db: Database, other: Database) -> None:
    """A read on the raw driver connection (as the data store's bulk reads do) leaves InnoDB's snapshot open on the
    connection, unseen by SQLAlchemy; given back without a ROLLBACK, the next unit on it would read through that
    snapshot and miss what others committed."""
    first = await connection_id(db)
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        await cursor.execute("SELECT COUNT(*) FROM notes")
        assert (await cursor.fetchone())[0] == 0  # the snapshot is taken
        await cursor.close()
    assert db.operation_counts()["resets"] == 1
    async for attempt in other.transaction():
        async with attempt as s:
            await s.execute(notes.insert().values(id=7, body="committed elsewhere"))
    async for attempt in db.transaction():
        async with attempt as s:
            same = int((await s.execute(text("SELECT CONNECTION_ID()"))).scalar_one())
            seen = (await s.execute(select(notes.c.body))).scalars().all()
    assert same == first  # the very connection that had the snapshot
    assert seen == ["committed elsewhere"]
    assert db.operation_counts()["resets"] == 1  # that unit committed: no ROLLBACK after it


async def test_a_connection_the_server_dropped_while_idle_is_replaced_at_checkout(
    db: Database, other: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "IDLE_PING_S", 0.0)  # every connection counts as idle
    first = await connection_id(db)
    async with other.session() as s:
        await s.execute(text(f"KILL CONNECTION {first}"))
    runs = 0
    async for attempt in db.transaction():
        async with attempt as s:
            runs += 1
            await s.execute(notes.insert().values(id=2, body="after the kill"))
            now_on = int((await s.execute(text("SELECT CONNECTION_ID()"))).scalar_one())
    assert runs == 1  # the ping found it dead before the unit had it: nothing to run again
    assert now_on != first
    assert db.operation_counts()["pings"] >= 1
    assert sum(db.retries.labels(r)._value.get() for r in ("lost_connection", "server_gone_away")) == 0
    async with other.session() as s:
        assert (await s.execute(select(notes.c.body))).scalars().all() == ["after the kill"]


async def test_a_connection_dropped_between_units_fails_its_first_statement_and_the_unit_runs_again(
    db: Database, other: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "retry_wait", db_module.wait_random_exponential(multiplier=0.001, max=0.01))
    first = await connection_id(db)  # reused at once below: not idle, so not pinged
    async with other.session() as s:
        await s.execute(text(f"KILL CONNECTION {first}"))
    runs = 0
    async for attempt in db.transaction():
        async with attempt as s:
            runs += 1
            await s.execute(notes.insert().values(id=3, body="once"))
    assert runs == 2  # the first attempt met the dead connection before its COMMIT; the second committed
    assert db.operation_counts()["pings"] == 0
    assert sum(db.retries.labels(r)._value.get() for r in ("lost_connection", "server_gone_away")) == 1
    async with other.session() as s:
        assert (await s.execute(select(notes.c.id, notes.c.body))).all() == [(3, "once")]


async def test_the_pool_metrics_show_connections_in_use_idle_and_the_size(db: Database) -> None:
    registry = CollectorRegistry()
    db.register_metrics(registry)

    def pool(state: str) -> float | None:
        return registry.get_sample_value("lh_db_pool_connections", {"state": state})

    assert registry.get_sample_value("lh_db_pool_size") == 10  # pool_size in Database.connect
    # the fixture's unit of work gave its connection back: one idle, none in use
    assert (pool("checked_out"), pool("idle"), pool("overflow")) == (0, 1, 0)
    async with db.session() as first, db.session() as second:
        await first.execute(text("SELECT 1"))
        await second.execute(text("SELECT 1"))
        # two units at once: both connections lent out (the idle one and a new one), none left in the pool
        assert (pool("checked_out"), pool("idle"), pool("overflow")) == (2, 0, 0)
    assert (pool("checked_out"), pool("idle")) == (0, 2)


async def test_the_pool_metrics_have_no_samples_before_connect_or_for_sqlite() -> None:
    unconnected = Database("mysql+asyncmy://u:p@127.0.0.1:1/none")  # never connected: no engine, no pool
    sqlite = Database("sqlite+aiosqlite:///:memory:")
    await sqlite.connect()  # SQLite has no queue pool
    for database in (unconnected, sqlite):
        registry = CollectorRegistry()
        database.register_metrics(registry)
        assert registry.get_sample_value("lh_db_pool_size") is None
        assert registry.get_sample_value("lh_db_pool_connections", {"state": "idle"}) is None
    await sqlite.dispose()


async def test_sqlite_units_that_commit_send_no_rollback_and_an_open_one_is_rolled_back(tmp_path: Path) -> None:
    """The standalone platform's SQLite pool resets as MariaDB's does: a unit that committed comes back without a
    ROLLBACK (with aiosqlite, each is a hand-off to the connection's thread), and a connection given back inside a
    transaction SQLAlchemy did not see (a raw driver write) is rolled back: its row is not kept, and its write lock
    does not stop another process's writer."""
    url = f"sqlite+aiosqlite:///{tmp_path}/trips.db"
    db, other = Database(url), Database(url)
    await db.connect()
    await other.connect()
    try:
        async with db.session() as s:
            await s.run_sync(metadata.create_all)
        async for attempt in db.transaction():
            async with attempt as s:
                await s.execute(notes.insert().values(id=1, body="a"))
        before = db.operation_counts()
        async for attempt in db.transaction():
            async with attempt as s:
                await s.execute(notes.insert().values(id=2, body="b"))
                await s.execute(select(notes.c.body).where(notes.c.id == 2))
        assert delta(db.operation_counts(), before) == {"statements": 2, "transactions": 1, "commits": 1}

        before = db.operation_counts()
        async with db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute("INSERT INTO notes (id, body) VALUES (3, 'never committed')")
        assert delta(db.operation_counts(), before).get("resets") == 1
        async for attempt in other.transaction():  # the lock was released: this writer is not kept waiting
            async with attempt as s:
                await s.execute(notes.insert().values(id=4, body="d"))
                seen = (await s.execute(select(notes.c.id).order_by(notes.c.id))).scalars().all()
        assert seen == [1, 2, 4]
    finally:
        await other.dispose()
        await db.dispose()
