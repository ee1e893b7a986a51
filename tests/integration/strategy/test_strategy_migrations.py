"""The strategy service's hand-written migration creates exactly the tables store.py declares, on MariaDB and
SQLite, and JSON columns give back what was stored (Chinese text, exact decimal strings)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from services.strategy.book import DayClose
from services.strategy.events import instance_event
from services.strategy.lifecycle import State
from services.strategy.store import MIGRATIONS, Audit, InstanceRecord, InstanceStore, metadata
from shared.platform.db import Database
from shared.platform.observability import new_id
from tests.conftest import Backing

pytestmark = pytest.mark.integration

TABLES = {
    "strategy_instances",
    "strategy_instance_versions",
    "strategy_instance_audit",
    "strategy_instance_books",
    "strategy_instance_days",
    "outbox",
}


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _check(db: Database) -> None:
    await db.connect()
    try:
        await db.migrate(MIGRATIONS)
        await db.migrate(MIGRATIONS)  # a second start changes nothing
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            assert set(await conn.run_sync(lambda c: inspect(c).get_table_names())) >= TABLES

        store = InstanceStore(db)
        at = datetime(2025, 1, 2, 1, 30, 0, 123456, tzinfo=UTC)
        record = InstanceRecord(
            instance_id=new_id(),
            strategy="dual_ma",
            owner="alice",
            account_id="alice",
            params={"fast": 5, "slow": 20, "cash_reserve": "0.1000000000000000055511151231257827"},
            params_version=1,
            universe={"filter": {"industry": "银行", "exclude_st": True}},
            capital_fen=12_345_678_901,
            mode="paper",
            bar_freq="1d",
            order_timing="open",
            costs={},
            reload="auto",
            cancel_open_orders_on_stop=False,
            state=State.CREATED,
            error=None,
            created_at=at,
            updated_at=at,
        )
        await store.create(
            record, Audit("alice", "created", None, record.snapshot()), instance_event("created", record)
        )
        assert await store.get(record.instance_id) == record
        assert await store.committed_capital_fen("alice") == 12_345_678_901
        [entry] = await store.audit(record.instance_id)
        assert (entry.before, entry.after) == (None, record.snapshot())

        # a day's record: written with the book; written again (the bar run again), replaced; positions as stored
        held = [{"ts_code": "600000.SH", "qty": 100, "sellable_qty": 0, "cost_fen": 1_000_510, "close_fen": 10_020,
                 "market_value_fen": 1_002_000}]  # fmt: skip
        day = DayClose(date(2025, 1, 2), 12_344_678_391, 1_002_000, 0, 0, 1_490, 510, 510, 1_000_000, held)
        await store.save_book(record.instance_id, day.trade_date, {"t": 0}, day)
        await store.save_book(record.instance_id, day.trade_date, {"t": 0}, replace(day, cash_fen=1))
        [stored] = await store.days(record.instance_id)
        assert stored.close == replace(day, cash_fen=1)
        assert (await store.day(record.instance_id, day.trade_date)) == stored
        assert await store.day(record.instance_id, date(2025, 1, 3)) is None
    finally:
        await db.dispose()


async def test_migration_matches_the_tables_on_mariadb(backing: Backing) -> None:
    await _check(Database(backing.settings(scope="mig").database_url_for("strategy")))


async def test_migration_matches_the_tables_on_sqlite(tmp_path: Path) -> None:
    await _check(Database(f"sqlite+aiosqlite:///{tmp_path}/strategy.db"))
