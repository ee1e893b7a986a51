"""Real deadlocks on MariaDB, retried by `Database.transaction()`: two units that lock the same rows in opposite
order, and many concurrent transfers between the same few rows. No caller sees an error; every effect lands once."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, String, Table, func, select, update

from shared.platform.db import Database, new_metadata
from tests.conftest import Backing

pytestmark = pytest.mark.integration

metadata = new_metadata()
balances = Table(
    "balances", metadata, Column("id", Integer, primary_key=True, autoincrement=False), Column("amount", Integer)
)
transfers = Table("transfers", metadata, Column("transfer_id", String(32), primary_key=True), Column("amount", Integer))
IDS = tuple(range(1, 11))
OPENING = 1_000_000


@pytest.fixture
async def db(backing: Backing) -> AsyncIterator[Database]:
    database = Database(backing.database_url().format(service=f"retries_{secrets.token_hex(4)}"))
    await database.connect()
    async with database.session() as s:
        await s.run_sync(metadata.create_all)
        await s.execute(balances.insert(), [{"id": i, "amount": OPENING} for i in IDS])
    try:
        yield database
    finally:
        async with database.session() as s:
            await s.exec_driver_sql(f"DROP DATABASE `{database.url.database}`")
        await database.dispose()


async def transfer(db: Database, transfer_id: str, first: int, second: int, amount: int) -> int:
    """Move `amount` from row `first` to row `second`, locking `first` first; returns the attempts it took."""
    attempts = 0
    async for attempt in db.transaction():
        async with attempt as s:
            attempts += 1
            await s.execute(update(balances).where(balances.c.id == first).values(amount=balances.c.amount - amount))
            await s.execute(update(balances).where(balances.c.id == second).values(amount=balances.c.amount + amount))
            await s.execute(transfers.insert().values(transfer_id=transfer_id, amount=amount))
    return attempts


async def test_two_units_that_lock_rows_in_opposite_order_both_commit_once(db: Database) -> None:
    a_holds_1, b_holds_2 = asyncio.Event(), asyncio.Event()
    runs = {"a": 0, "b": 0}

    async def unit(name: str, mine: int, theirs: int, i_hold: asyncio.Event, they_hold: asyncio.Event) -> None:
        async for attempt in db.transaction():
            async with attempt as s:
                runs[name] += 1
                await s.execute(update(balances).where(balances.c.id == mine).values(amount=balances.c.amount - 10))
                i_hold.set()
                await they_hold.wait()  # both hold one row and ask for the other's: InnoDB kills one (1213)
                await s.execute(update(balances).where(balances.c.id == theirs).values(amount=balances.c.amount + 10))
                await s.execute(transfers.insert().values(transfer_id=name, amount=10))

    await asyncio.gather(unit("a", 1, 2, a_holds_1, b_holds_2), unit("b", 2, 1, b_holds_2, a_holds_1))

    assert sorted(runs.values()) == [1, 2]  # the victim ran again, once; the other ran once
    assert db.retries.labels("deadlock")._value.get() == 1
    async with db.session() as s:
        assert sorted((await s.execute(select(transfers.c.transfer_id))).scalars()) == ["a", "b"]
        amounts = dict((await s.execute(select(balances.c.id, balances.c.amount))).all())
    assert amounts == dict.fromkeys(IDS, OPENING)  # -10 +10 on each: both landed, once


async def test_concurrent_transfers_in_random_lock_order_all_land_exactly_once(db: Database) -> None:
    rng = random.Random(20261206)
    planned = []
    for n in range(60):
        first, second = rng.sample(IDS, 2)
        planned.append((f"t{n:03d}", first, second, rng.randint(1, 500)))

    attempts = await asyncio.gather(*(transfer(db, *p) for p in planned))  # any error would fail the test here

    expected = dict.fromkeys(IDS, OPENING)
    for _, first, second, amount in planned:
        expected[first] -= amount
        expected[second] += amount
    async with db.session() as s:
        recorded = (await s.execute(select(transfers.c.transfer_id, transfers.c.amount))).all()
        amounts = dict((await s.execute(select(balances.c.id, balances.c.amount))).all())
        total = (await s.execute(select(func.sum(balances.c.amount)))).scalar_one()
    assert sorted(recorded) == sorted((t, amount) for t, _, _, amount in planned)
    assert amounts == expected
    assert total == len(IDS) * OPENING
    retried = sum(a - 1 for a in attempts)
    assert retried > 0  # the transfers did deadlock (about 15 retries a run): the retries were put to work
    assert db.retries.labels("deadlock")._value.get() + db.retries.labels("lock_wait_timeout")._value.get() == retried


async def test_a_unit_stuck_behind_a_row_lock_fails_after_two_short_lock_waits(db: Database) -> None:
    """LH_DB_LOCK_WAIT_S is each connection's innodb_lock_wait_timeout, and a 1205 is run once more, not 8 times:
    a request behind a lock held for good fails within about two waits (not 8 x the server's 50 s)."""
    from sqlalchemy.exc import OperationalError

    quick = Database(db.url.render_as_string(hide_password=False), lock_wait_s=1)
    await quick.connect()
    try:
        async with quick.session() as s:
            assert (await s.exec_driver_sql("SELECT @@SESSION.innodb_lock_wait_timeout")).scalar_one() == 1
        runs = 0
        async with db.session() as holder:
            await holder.execute(update(balances).where(balances.c.id == 1).values(amount=0))  # held to the end
            with pytest.raises(OperationalError) as raised:
                async for attempt in quick.transaction():
                    async with attempt as s:
                        runs += 1
                        await s.execute(update(balances).where(balances.c.id == 1).values(amount=1))
            await holder.rollback()
        assert raised.value.orig is not None and raised.value.orig.args[0] == 1205
        assert runs == 2
        assert quick.retries.labels("lock_wait_timeout")._value.get() == 1
    finally:
        await quick.dispose()
    async with db.session() as s:
        assert (await s.execute(select(balances.c.amount).where(balances.c.id == 1))).scalar_one() == OPENING
