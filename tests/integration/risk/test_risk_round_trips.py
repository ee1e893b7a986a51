"""What a new order's first read costs risk's MariaDB (issue 13, "Straight order path and speed"): the replay lookup
and the kill switch's trading states in one transaction, with the same answers as the two reads on their own."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import pytest
from sqlalchemy.exc import OperationalError

from services.risk.events import trading_state_changed
from services.risk.store import MIGRATIONS, Decision, ExecutionOutcome, Recorded, RiskStore, Scope, StatesMoved
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


async def test_a_batchs_replay_lookups_are_one_read_with_each_ones_answer_as_alone(store: RiskStore) -> None:
    """`replayable_many_and_states`: the decision each client_order_id of a batch is answered with, the same as its
    own lookup (a placed one before an unknown one made later; never a refused one, nor an unknown one older than
    `unknown_since`), with the trading states, in one transaction of two statements."""
    account = f"acct-{new_id()[:8]}"
    since = AT - timedelta(hours=1)
    unknown, placed = _approved(account, "c-1"), _approved(account, "c-1")
    unknown = replace(unknown, created_at=AT - timedelta(minutes=1))
    await store.record(unknown)  # no outcome yet (unknown), made first
    await store.record(placed)
    await store.record_outcome(placed.decision_id, ExecutionOutcome.PLACED)
    refused = _approved(account, "c-2")
    await store.record(refused)
    await store.record_outcome(refused.decision_id, ExecutionOutcome.REFUSED)
    stale = replace(_approved(account, "c-3"), created_at=since - timedelta(seconds=1))
    await store.record(stale)
    fresh = _approved(account, "c-4")
    await store.record(fresh)
    await store.set_trading_state(Scope.ACCOUNT, account, "reducing", reason="drill", by="root", at=AT,
                                  make_event=trading_state_changed)  # fmt: skip
    asked = ["c-1", "c-2", "c-3", "c-4", "c-5"]

    before = store.db.operation_counts()
    found, states = await store.replayable_many_and_states(account, asked, unknown_since=since,
                                                           state_account_id=account)  # fmt: skip
    after = store.db.operation_counts()
    assert {op: after[op] - before[op] for op in after if after[op] != before[op]} == {
        "statements": 2,
        "transactions": 1,
        "commits": 1,
    }
    assert found == {"c-1": placed, "c-4": fresh}
    for cid in asked:  # each as its own lookup answers
        alone = await store.replayable_for(account, cid, unknown_since=since)
        assert found.get(cid) == alone, cid
    assert states == await store.trading_states_of(account, None)
    assert [(s.scope, s.state) for s in states] == [("account", "reducing")]
    # an instance's: its own decisions only
    assert await store.replayable_many_and_states(None, asked, unknown_since=since, strategy_instance_id="inst-9",
                                                  state_account_id=account) == ({}, states)  # fmt: skip


async def test_a_batchs_decisions_are_recorded_together_unless_the_trading_states_moved(store: RiskStore) -> None:
    account = f"acct-{new_id()[:8]}"
    states = await store.trading_states_of(account, None)
    first = [Recorded(_approved(account, f"r-{k}")) for k in range(3)]
    before = store.db.operation_counts()
    await store.record_many(first, expected_states=(account, None, states))
    after = store.db.operation_counts()
    # the states read again, the three decisions in one INSERT (an executemany), one commit
    assert after["transactions"] - before["transactions"] == 1
    assert after["statements"] - before["statements"] == 2
    since = AT - timedelta(hours=1)
    for r in first:
        assert await store.replayable_for(account, r.decision.client_order_id, unknown_since=since) == r.decision

    # An admin halts the account after the batch read its states: nothing of the next batch is recorded.
    await store.set_trading_state(Scope.ACCOUNT, account, "halted", reason="drill", by="root", at=AT,
                                  make_event=trading_state_changed)  # fmt: skip
    later = [Recorded(_approved(account, "r-9"))]
    with pytest.raises(StatesMoved) as moved:
        await store.record_many(later, expected_states=(account, None, states))
    assert [(s.scope, s.state) for s in moved.value.states] == [("account", "halted")]
    assert await store.replayable_for(account, "r-9", unknown_since=since) is None


async def test_execution_answers_are_written_behind_in_order_and_kept_while_the_database_is_down(
    store: RiskStore,
) -> None:
    """PLACED / UNKNOWN are written after the order's answer, by one writer: the ones noted while a write is under
    way go in one transaction together, in the order noted (an UNKNOWN then a PLACED of one decision ends PLACED);
    a write that fails is tried again with nothing lost; the writer's stop writes what it holds."""
    account = f"acct-{new_id()[:8]}"
    decisions = [_approved(account, f"w-{k}") for k in range(4)]
    for d in decisions:
        await store.record(d)
    store.start_outcome_writer()
    try:
        # noted one after another without yielding: one write (one transaction) for the five, in order
        written: list[list[tuple[str, ExecutionOutcome]]] = []
        real = store.record_outcomes

        async def spied(outcomes: Any) -> None:
            written.append(list(outcomes))
            await real(outcomes)

        store.record_outcomes = spied  # type: ignore[method-assign]
        await store.note_outcome(decisions[0].decision_id, ExecutionOutcome.UNKNOWN)
        for d in decisions:
            await store.note_outcome(d.decision_id, ExecutionOutcome.PLACED)
        await until(lambda: _outcome_of(store, decisions[-1]), ExecutionOutcome.PLACED)
        store.record_outcomes = real  # type: ignore[method-assign]
        first = (decisions[0].decision_id, ExecutionOutcome.UNKNOWN)
        assert written == [[first] + [(d.decision_id, ExecutionOutcome.PLACED) for d in decisions]]
        for d in decisions:
            assert await store.outcome(d.decision_id) is ExecutionOutcome.PLACED

        # the database refuses writes for a while: the answer is kept and written once it is back
        late = _approved(account, "w-late")
        await store.record(late)
        failures = 0

        async def down_twice(outcomes: Any) -> None:
            nonlocal failures
            if failures < 2:
                failures += 1
                raise OperationalError("UPDATE", {}, Exception("MariaDB went away (test)"))
            await real(outcomes)

        store.record_outcomes = down_twice  # type: ignore[method-assign]
        with patch("services.risk.store.OUTCOME_RETRY_S", 0.01):
            await store.note_outcome(late.decision_id, ExecutionOutcome.PLACED)
            await until(lambda: _outcome_of(store, late), ExecutionOutcome.PLACED)
        assert failures == 2
        store.record_outcomes = real  # type: ignore[method-assign]

        # what the writer holds when it stops is written by the stop
        last = _approved(account, "w-last")
        await store.record(last)
        store._outcomes.append((last.decision_id, ExecutionOutcome.UNKNOWN))  # held, not yet taken by the writer
    finally:
        await store.stop_outcome_writer()
    assert await store.outcome(last.decision_id) is ExecutionOutcome.UNKNOWN


async def _outcome_of(store: RiskStore, decision: Decision) -> ExecutionOutcome | None:
    return await store.outcome(decision.decision_id)


async def until(read: Any, wanted: Any, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (got := await read()) != wanted:
        assert asyncio.get_running_loop().time() < deadline, f"still {got}, not {wanted}"
        await asyncio.sleep(0.01)


class WriterBug(BaseException):
    """Something the writer does not expect (not an Exception: not retried)."""


async def test_a_writer_that_died_leaves_outcomes_written_with_each_order_and_the_stop_writes_what_it_held(
    store: RiskStore,
) -> None:
    account = f"acct-{new_id()[:8]}"
    held, later = _approved(account, "d-held"), _approved(account, "d-later")
    await store.record(held)
    await store.record(later)
    real = store.record_outcomes

    async def dies(outcomes: Any) -> None:
        raise WriterBug("a bug")

    store.record_outcomes = dies  # type: ignore[method-assign]
    store.start_outcome_writer()
    try:
        await store.note_outcome(held.decision_id, ExecutionOutcome.PLACED)
        writer = store._outcome_writer
        assert writer is not None
        await asyncio.wait([writer], timeout=5)
        assert writer.done()  # it died with the outcome in hand: put back
        store.record_outcomes = real  # type: ignore[method-assign]
        # from now on an outcome is written with the order (not held for a writer that is gone)
        await store.note_outcome(later.decision_id, ExecutionOutcome.PLACED)
        assert await store.outcome(later.decision_id) is ExecutionOutcome.PLACED
    finally:
        await store.stop_outcome_writer()  # does not raise the writer's error; writes what it held
    assert await store.outcome(held.decision_id) is ExecutionOutcome.PLACED
