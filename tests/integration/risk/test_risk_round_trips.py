"""What a new order's first read costs risk's MariaDB (issue 13, "Straight order path and speed"): the replay lookup
and the kill switch's trading states in one transaction, with the same answers as the two reads on their own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.risk.events import trading_state_changed
from services.risk.store import MIGRATIONS, Decision, ExecutionOutcome, RiskStore, Scope
from shared.platform.db import Database
from shared.platform.observability import new_id
from tests.conftest import Backing

pytestmark = pytest.mark.integration

AT = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


@pytest.fixture
async def store(backing: Backing) -> AsyncIterator[RiskStore]:
    db = Database(backing.database_url().format(service=f"risktrips_{secrets.token_hex(4)}"))
    await db.connect()
    await db.migrate(MIGRATIONS)
    try:
        yield RiskStore(db)
    finally:
        async with db.session() as s:
            await s.exec_driver_sql(f"DROP DATABASE `{db.url.database}`")
        await db.dispose()


def _approved(account_id: str, client_order_id: str) -> Decision:
    return Decision(decision_id=new_id(), client_order_id=client_order_id, account_id=account_id, ts_code="600000.SH",
                    side="buy", order_type="limit", qty=100, price=Decimal("10.00"), approved=True, reasons=[],
                    created_at=AT, correlation_id=None)  # fmt: skip


async def test_the_replay_lookup_and_the_trading_states_are_one_transaction(store: RiskStore) -> None:
    halted, other = f"acct-{new_id()[:8]}", f"acct-{new_id()[:8]}"
    placed = _approved(halted, "c-1")
    await store.record(placed)
    await store.record_outcome(placed.decision_id, ExecutionOutcome.PLACED)
    await store.set_trading_state(Scope.ACCOUNT, halted, "halted", reason="drill", by="root", at=AT,
                                  make_event=trading_state_changed)  # fmt: skip
    since = AT - timedelta(hours=1)

    before = store.db.operation_counts()
    earlier, states = await store.replayable_and_states(halted, "c-1", unknown_since=since, state_account_id=halted)
    after = store.db.operation_counts()
    # the two SELECTs and one COMMIT, where the two reads on their own were two transactions
    assert {op: after[op] - before[op] for op in after if after[op] != before[op]} == {
        "statements": 2,
        "transactions": 1,
        "commits": 1,
    }
    assert earlier == placed
    assert [(s.scope, s.key, s.state) for s in states] == [("account", halted, "halted")]
    # the same answers as the reads on their own
    assert earlier == await store.replayable_for(halted, "c-1", unknown_since=since)
    assert states == await store.trading_states_of(halted, None)

    # another account's new order: nothing to replay, no state of its own
    assert await store.replayable_and_states(other, "c-1", unknown_since=since, state_account_id=other) == (None, [])
    # a strategy instance's order: its decisions are the instance's; the states global's, the account's, the instance's
    await store.set_trading_state(Scope.INSTANCE, "inst-1", "reducing", reason="drill", by="root", at=AT,
                                  make_event=trading_state_changed)  # fmt: skip
    earlier, states = await store.replayable_and_states(
        None, "c-1", unknown_since=since, strategy_instance_id="inst-1", state_account_id=halted
    )
    assert earlier is None
    assert sorted((s.scope, s.key, s.state) for s in states) == [
        ("account", halted, "halted"),
        ("instance", "inst-1", "reducing"),
    ]
