"""Execution's hand-written migration creates exactly the tables store.py declares, on MariaDB and SQLite."""

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

import services.execution.amend.store  # (the amends' table, migration 0012: in the metadata)
import services.execution.brokers.paper_tables  # noqa: F401  (the paper broker's book is in the same schema)
from services.execution.store import MIGRATIONS, metadata
from shared.platform.db import Database
from tests.conftest import Backing

pytestmark = pytest.mark.integration

TABLES = {
    "orders",
    "order_transitions",
    "trades",
    "refused_submissions",
    "paper_orders",
    "paper_fills",
    "outbox",
    "accounts",
    "cash_ledger",
    "position_adjustments",
    "order_amends",
}


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _unique_constraints(connection: Connection) -> set[tuple[str, tuple[str, ...]]]:
    inspector = inspect(connection)
    return {(u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints("orders")}


async def _check(db: Database) -> None:
    await db.connect()
    try:
        await db.migrate(MIGRATIONS)
        await db.migrate(MIGRATIONS)  # idempotent: a restart migrates nothing
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert names >= TABLES
            assert await conn.run_sync(_unique_constraints) >= {
                ("uq_orders_account_client_order", ("account_id", "client_order_id")),
                ("uq_orders_decision_id", ("decision_id",)),
            }
    finally:
        await db.dispose()


async def test_migration_matches_the_tables_on_mariadb(backing: Backing) -> None:
    await _check(Database(backing.settings().database_url_for("execution")))


async def test_migration_matches_the_tables_on_sqlite(tmp_path: Path) -> None:
    await _check(Database(f"sqlite+aiosqlite:///{tmp_path}/execution.db"))
