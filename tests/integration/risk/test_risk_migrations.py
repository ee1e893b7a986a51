"""Risk's hand-written migration creates exactly the tables store.py declares, on MariaDB and SQLite; decisions
keep prices exactly as asked, off-tick ones included."""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from services.risk.store import MIGRATIONS, Decision, ExecutionOutcome, RiskStore, metadata
from shared.platform.db import Database
from shared.platform.observability import new_id
from tests.conftest import Backing

pytestmark = pytest.mark.integration


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _check(db: Database) -> None:
    await db.connect()
    try:
        await db.migrate(MIGRATIONS)
        await db.migrate(MIGRATIONS)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            assert {"risk_decisions", "outbox"} <= set(await conn.run_sync(lambda c: inspect(c).get_table_names()))

        store = RiskStore(db)
        account = f"acct-{new_id()[:8]}"
        decision = Decision(
            decision_id=new_id(),
            client_order_id="c-1",
            account_id=account,
            ts_code="600000.SH",
            side="buy",
            order_type="limit",
            qty=150,
            price=Decimal("10.005"),
            approved=False,
            reasons=[{"code": "lot_size", "message": "手数不对"}, {"code": "price_tick", "message": "10.005"}],
            created_at=datetime(2025, 1, 2, 1, 30, 0, 123456, tzinfo=UTC),
            correlation_id="corr-1",
        )
        await store.record(decision)
        assert await store.get(decision.decision_id) == decision
        assert await store.recent(account_id=account, limit=5) == [decision]

        # Execution's answer to an approved decision (0002): a refused one is never replayed.
        approved = Decision(**{**decision.__dict__, "decision_id": new_id(), "approved": True, "reasons": []})
        await store.record(approved)
        since = datetime(2025, 1, 2, 1, 0, tzinfo=UTC)
        assert await store.outcome(approved.decision_id) is None
        assert await store.replayable_for(account, "c-1", unknown_since=since) == approved
        await store.record_outcome(approved.decision_id, ExecutionOutcome.REFUSED)
        await store.record_outcome(approved.decision_id, ExecutionOutcome.PLACED)  # refused is final
        assert await store.outcome(approved.decision_id) is ExecutionOutcome.REFUSED
        assert await store.replayable_for(account, "c-1", unknown_since=since) is None
    finally:
        await db.dispose()


async def test_migration_matches_the_tables_on_mariadb(backing: Backing) -> None:
    await _check(Database(backing.settings().database_url_for("risk")))


async def test_migration_matches_the_tables_on_sqlite(tmp_path: Path) -> None:
    await _check(Database(f"sqlite+aiosqlite:///{tmp_path}/risk.db"))
