"""`Database.transaction()`: a unit of work that meets a transient error (MariaDB deadlock 1213, lock wait timeout
1205, a connection lost before the commit, SQLite's "database is locked") is rolled back and run again from its
start; anything else propagates at once. And every service routes its transactions through it."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncmy.errors import IntegrityError as MySQLIntegrityError
from asyncmy.errors import OperationalError as MySQLOperationalError
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.engine import Transaction
from sqlalchemy.exc import IntegrityError, OperationalError
from tenacity import wait_none

from shared.platform import db as db_module
from shared.platform.db import TRANSACTION_ATTEMPTS, Database

ROOT = Path(__file__).resolve().parents[3]
metadata = MetaData()
fills = Table("fills", metadata, Column("fill_id", String(32), primary_key=True), Column("qty", Integer))


@pytest.fixture
async def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Database]:
    monkeypatch.setattr(db_module, "retry_wait", wait_none())
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/unit.db")
    await database.connect()
    async with database.session() as s:
        await s.run_sync(metadata.create_all)
    yield database
    await database.dispose()


def deadlock() -> OperationalError:
    return OperationalError(
        "INSERT INTO outbox ...", {}, MySQLOperationalError(1213, "Deadlock found when trying to get lock")
    )


async def count(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(fills))).scalar_one())


def retries(db: Database, reason: str) -> float:
    return float(db.retries.labels(reason)._value.get())


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (deadlock(), "deadlock"),
        (
            OperationalError("UPDATE", {}, MySQLOperationalError(1205, "Lock wait timeout exceeded")),
            "lock_wait_timeout",
        ),
        (OperationalError("INSERT", {}, MySQLOperationalError(2013, "Lost connection to server")), "lost_connection"),
        (OperationalError("INSERT", {}, MySQLOperationalError(2006, "MySQL server has gone away")), "server_gone_away"),
        (OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")), "sqlite_locked"),
    ],
)
async def test_a_unit_that_fails_transiently_once_is_run_again_from_its_start_and_commits_once(
    db: Database, error: OperationalError, reason: str
) -> None:
    runs = 0
    async for attempt in db.transaction():
        async with attempt as s:
            runs += 1
            await s.execute(fills.insert().values(fill_id="f-1", qty=100))
            if runs == 1:
                raise error  # after the insert: the first attempt's row must be rolled back
            await s.execute(fills.insert().values(fill_id="f-2", qty=200))

    assert runs == 2
    assert await count(db) == 2  # f-1 once (not twice: the insert would have failed), f-2 once
    assert retries(db, reason) == 1


async def test_the_value_a_retried_unit_returns_is_the_committed_attempts(db: Database) -> None:
    async def record(fill_id: str) -> int:
        runs = 0
        async for attempt in db.transaction():
            async with attempt as s:
                runs += 1
                await s.execute(fills.insert().values(fill_id=fill_id, qty=runs))
                if runs < 3:
                    raise deadlock()
                return runs
        raise AssertionError("the loop ends only by returning or raising")

    assert await record("f-9") == 3
    async with db.session() as s:
        assert (await s.execute(select(fills.c.qty))).scalars().all() == [3]
    assert retries(db, "deadlock") == 2


async def test_a_unit_that_keeps_deadlocking_gives_up_after_the_last_attempt(db: Database) -> None:
    runs = 0
    with pytest.raises(OperationalError) as raised:
        async for attempt in db.transaction():
            async with attempt as s:
                runs += 1
                await s.execute(fills.insert().values(fill_id=f"f-{runs}", qty=1))
                raise deadlock()
    assert raised.value.orig is not None and raised.value.orig.args[0] == 1213
    assert runs == TRANSACTION_ATTEMPTS == 8
    assert await count(db) == 0
    assert retries(db, "deadlock") == TRANSACTION_ATTEMPTS - 1


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT", {}, MySQLIntegrityError(1062, "Duplicate entry 'f-1' for key 'PRIMARY'")),
        OperationalError("SELECT", {}, MySQLOperationalError(2003, "Can't connect to MySQL server")),
        ValueError("a bug in the unit"),
    ],
)
async def test_other_errors_are_not_retried(db: Database, error: Exception) -> None:
    runs = 0
    with pytest.raises(type(error)):
        async for attempt in db.transaction():
            async with attempt as s:
                runs += 1
                await s.execute(fills.insert().values(fill_id="f-1", qty=1))
                raise error
    assert runs == 1
    assert await count(db) == 0


# Where a transaction may still be opened without the retries (how many times), and why.
SINGLE_ATTEMPT = {
    "shared/platform/db.py": 4,  # the helper itself, session() for tests, CREATE DATABASE and migrations at start-up
    "services/data/store/base.py": 2,  # snapshot() and _session(): read-only context managers (reads take no locks)
}
OPENS_A_TRANSACTION = re.compile(r"\.session\(\)|\.begin\(\)")


def test_every_transaction_of_the_services_and_the_gateway_goes_through_the_retrying_helper() -> None:
    found: dict[str, list[str]] = {}
    for path in sorted([*ROOT.glob("services/**/*.py"), *ROOT.glob("gateway/**/*.py"), *ROOT.glob("shared/**/*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if "/migrations/" in rel:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if OPENS_A_TRANSACTION.search(line) and not line.lstrip().startswith("#"):
                found.setdefault(rel, []).append(f"{number}: {line.strip()}")
    unexpected = {rel: lines for rel, lines in found.items() if len(lines) != SINGLE_ATTEMPT.get(rel, 0)}
    assert unexpected == {}


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (deadlock(), 8),  # found at once by the server: worth many quick retries
        (OperationalError("INSERT", {}, MySQLOperationalError(2013, "Lost connection to server")), 8),
        # Each of these comes after a whole lock wait / busy timeout: run once more, not 8 times.
        (OperationalError("UPDATE", {}, MySQLOperationalError(1205, "Lock wait timeout exceeded")), 2),
        (OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")), 2),
    ],
)
async def test_a_unit_that_keeps_failing_gets_the_attempts_of_its_reason(
    db: Database, error: OperationalError, attempts: int
) -> None:
    runs = 0
    with pytest.raises(OperationalError) as raised:
        async for attempt in db.transaction():
            async with attempt as s:
                runs += 1
                await s.execute(fills.insert().values(fill_id=f"f-{runs}", qty=1))
                raise error
    assert raised.value is error
    assert runs == attempts
    assert await count(db) == 0


class RollbackFails:
    """Patches the transaction's ROLLBACK to fail (a connection that died) `times` times, after rolling back."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, times: int) -> None:
        self.left = times
        real = Transaction.rollback

        def rollback(transaction: Transaction) -> None:
            real(transaction)
            if self.left:
                self.left -= 1
                raise OperationalError("ROLLBACK", {}, MySQLOperationalError(2013, "Lost connection to server"))

        monkeypatch.setattr(Transaction, "rollback", rollback)


async def test_a_failing_rollback_neither_hides_the_units_error_nor_stops_its_retry(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    patched = RollbackFails(monkeypatch, times=1)
    runs = 0
    async for attempt in db.transaction():
        async with attempt as s:
            runs += 1
            await s.execute(fills.insert().values(fill_id=f"f-{runs}", qty=runs))
            if runs == 1:
                raise deadlock()
    assert patched.left == 0  # the first attempt's rollback did fail
    assert runs == 2
    async with db.session() as s:
        assert (await s.execute(select(fills.c.fill_id))).scalars().all() == ["f-2"]
    assert retries(db, "deadlock") == 1


async def test_a_failing_rollback_after_a_non_transient_error_raises_that_error(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    RollbackFails(monkeypatch, times=1)
    with pytest.raises(ValueError, match="a bug in the unit"):
        async for attempt in db.transaction():
            async with attempt as s:
                await s.execute(fills.insert().values(fill_id="f-1", qty=1))
                raise ValueError("a bug in the unit")


async def test_run_raw_retries_a_deadlocked_unit_even_when_its_rollback_fails(db: Database) -> None:
    calls: list[str] = []

    async def unit() -> str:
        calls.append("unit")
        if len(calls) == 1:
            raise MySQLOperationalError(1213, "Deadlock found when trying to get lock")
        return "loaded"

    async def rollback() -> None:
        calls.append("rollback")
        raise MySQLOperationalError(2013, "Lost connection to server during rollback")

    assert await db.run_raw(unit, rollback) == "loaded"
    assert calls == ["unit", "rollback", "unit"]
    assert retries(db, "deadlock") == 1


async def test_run_raw_raises_the_units_error_when_the_rollback_fails_too(db: Database) -> None:
    async def unit() -> None:
        raise MySQLIntegrityError(1062, "Duplicate entry")

    async def rollback() -> None:
        raise MySQLOperationalError(2013, "Lost connection to server during rollback")

    with pytest.raises(MySQLIntegrityError):
        await db.run_raw(unit, rollback)


async def test_run_raw_retries_a_lock_wait_timeout_once(db: Database) -> None:
    runs = 0

    async def unit() -> None:
        nonlocal runs
        runs += 1
        raise MySQLOperationalError(1205, "Lock wait timeout exceeded")

    async def rollback() -> None:
        return None

    with pytest.raises(MySQLOperationalError):
        await db.run_raw(unit, rollback)
    assert runs == 2
