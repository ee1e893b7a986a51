"""Risk's own tables: every decision it made (approved or not), the trading states of the kill switch with the audit
of their changes, the versions of the risk rule sets, and the outbox of its events (`risk.order.denied`,
`risk.trading_state.changed`, `risk.rules.changed`)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeDecorator

from shared.platform.approval import PaperFill
from shared.platform.clock import UtcDateTime
from shared.platform.db import Database, new_metadata
from shared.platform.events.envelope import Envelope
from shared.platform.observability import new_id
from shared.platform.outbox import add_many_to_outbox, add_to_outbox, outbox_table

log = logging.getLogger(__name__)
OUTCOMES_HELD = 10_000  # outcomes waiting to be written, at most (the oldest are dropped beyond: see note_outcome)
OUTCOME_RETRY_S = 1.0
OUTCOME_STOP_WAIT_S = 5.0  # a stop waits this long for the writer to write what it holds

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DecimalText(TypeDecorator[Decimal]):
    """A Decimal kept as its exact text. Risk records prices as they were asked for, including ones off the
    0.01 tick (which a DECIMAL(18,2) column would silently round, and SQLite's REAL would blur). Not a money column:
    amounts are `shared.platform.columns.CnyFen` (whole fen), which could not hold an off-tick price."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


metadata = new_metadata()

risk_decisions = Table(
    "risk_decisions",
    metadata,
    Column("decision_id", String(32), primary_key=True),
    Column("client_order_id", String(64), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("ts_code", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("order_type", String(8), nullable=False),
    Column("qty", BigInteger, nullable=False),
    Column("price", DecimalText, nullable=True),
    Column("approved", Boolean, nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list of {code, message}
    Column("correlation_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    # Approved decisions: what execution answered when risk forwarded the order (see ExecutionOutcome); NULL
    # before the first answer, and for rejected decisions.
    Column("execution_outcome", String(16), nullable=True),
    # The strategy instance the order was for (its sleeve was checked); NULL: a person's order.
    Column("strategy_instance_id", String(32), nullable=True),
    # The instance's own fill rules the order carried (shared.platform.approval.PaperFill as JSON), signed into the
    # approval with the rest; NULL: none (the platform's rules).
    Column("paper_fill", Text, nullable=True),
    # What the rules read: {"rule_versions": {...}, "findings": [...]} (JSON), and an instance's order's carried
    # {"sleeve": {...}}; NULL: the rules did not run on a person's order.
    Column("rule_check", Text, nullable=True),
    # The order's market type (shared.core.market.order_types; NULL: a limit order, or a market order decided before
    # revision 0010, placed as counterparty_best) and time in force, signed into the approval with the rest.
    Column("market_type", String(24), nullable=True),
    Column("time_in_force", String(8), nullable=False, server_default="day"),
    Index("ix_risk_decisions_created", "created_at"),
    Index("ix_risk_decisions_account_created", "account_id", "created_at"),
    Index("ix_risk_decisions_client_order", "account_id", "client_order_id"),
    Index("ix_risk_decisions_instance_client_order", "strategy_instance_id", "client_order_id"),
)

# The kill switch (docs/risk-rules.md "Trading states and the kill switch"): a scope's current trading state; no row
# is active. Scope global (key ''), account (key: account_id) or instance (key: strategy instance id). Every order
# decision reads its (at most three) rows by primary key: one indexed query, on the database every risk process shares.
trading_states = Table(
    "trading_states",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("set_by", String(128), nullable=False),
    Column("set_at", UtcDateTime, nullable=False),
    # What its changes are reported for (migration 0011): the account's key; an instance's account as its decisions
    # name it, decided as it leaves active and kept until active again (a halt's alert and its clearing: one account).
    Column("account_id", String(64), nullable=True),
)

# Every change of a trading state: from, to, who, why, when (written with the state and its event).
trading_state_changes = Table(
    "trading_state_changes",
    metadata,
    Column("change_id", String(32), primary_key=True),
    Column("scope", String(16), nullable=False),
    Column("key", String(64), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("set_by", String(128), nullable=False),
    Column("set_at", UtcDateTime, nullable=False),
    Index("ix_trading_state_changes_scope_key_at", "scope", "key", "set_at"),
)

# Every version of every level's risk rule set (docs/risk-rules.md "Managing rule sets"; read and written by
# services/risk/rule_sets.py): scope global (key ''), account or instance; version 1, 2, ... per scope and key (the
# primary key: no two changes of a level share one); `body` the RuleSet as JSON, NULL when the level was cleared. A
# level's current rule set is its latest version; rows are never changed or removed.
risk_rule_sets = Table(
    "risk_rule_sets",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("body", Text, nullable=True),
    Column("reason", Text, nullable=False),
    Column("set_by", String(128), nullable=False),
    Column("set_at", UtcDateTime, nullable=False),
)

outbox = outbox_table(metadata)

# Stops (docs/risk-stops.md, services/risk/stops.py): a stop-loss, take-profit or trailing stop on a position of an
# account, armed until the watcher sees its price cross (then triggered, its exit a market sell placed through the
# desk as the owner with client_order_id `stop-<stop_id>`), cancelled by its owner, or failed (the exit was refused).
# Prices as exact text (DecimalText): a SQL comparison of them would compare text, so the watcher compares in Python.
stops = Table(
    "stops",
    metadata,
    Column("stop_id", String(32), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("owner", String(128), nullable=False),  # who set it: the exit is placed as them
    Column("owner_role", String(16), nullable=False),
    Column("strategy_instance_id", String(32), nullable=True),  # reserved: stops of an instance (not yet offered)
    Column("ts_code", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # stop_loss | take_profit | trailing
    Column("trigger_price", DecimalText, nullable=True),  # stop_loss, take_profit
    Column("trail_pct", DecimalText, nullable=True),  # trailing: percent below the high-water mark
    Column("high_water", DecimalText, nullable=True),  # trailing: the highest price seen since it was armed
    Column("qty", BigInteger, nullable=True),  # shares to sell; NULL: the whole position at the trigger
    Column("status", String(16), nullable=False),  # armed | triggered | cancelled | failed
    Column("created_at", UtcDateTime, nullable=False),
    Column("triggered_at", UtcDateTime, nullable=True),
    Column("trigger_seen", DecimalText, nullable=True),  # the price that triggered it
    Column("exit_qty", BigInteger, nullable=True),  # the shares its exit sells, fixed when it triggered
    Column("claimed_at", UtcDateTime, nullable=True),  # the last attempt at its exit (a lease: see stops.py)
    Column("client_order_id", String(64), nullable=True),  # of the exit
    Column("order_id", String(64), nullable=True),  # execution's order of the exit, once placed
    Column("outcome", Text, nullable=True),  # NULL while triggered and the exit not yet answered; then what became
    Column("cancelled_at", UtcDateTime, nullable=True),
    Index("ix_stops_status", "status"),
    Index("ix_stops_account_created", "account_id", "created_at"),
)

# Every trigger of a stop and every attempt at its exit: the price seen, when, and what the desk answered.
stop_triggers = Table(
    "stop_triggers",
    metadata,
    Column("trigger_id", String(32), primary_key=True),
    Column("stop_id", String(32), nullable=False),
    Column("price", DecimalText, nullable=False),
    Column("stop_level", DecimalText, nullable=False),
    Column("high_water", DecimalText, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("qty", BigInteger, nullable=False),
    Column("client_order_id", String(64), nullable=False),
    Column("result", String(16), nullable=False),  # placed | failed | retry
    Column("http_status", BigInteger, nullable=True),
    Column("code", String(64), nullable=True),
    Column("message", Text, nullable=False),
    Column("order_id", String(64), nullable=True),
    Column("decision_id", String(32), nullable=True),
    Index("ix_stop_triggers_stop_at", "stop_id", "at"),
)

# Batches of orders (`POST /v1/order-batches`, services/risk/batches.py): one row per (account, batch_id), with a
# digest of what was asked (a different body under the same id is refused), open until every item has a final answer.
# `claim_token` / `claimed_until`: the lease of the request placing its items (one at a time per batch; a crash's
# lease runs out and the batch sent again completes it).
order_batches = Table(
    "order_batches",
    metadata,
    Column("account_id", String(64), primary_key=True),  # the placer's account (the strategy service: its subject)
    Column("batch_id", String(64), primary_key=True),
    Column("body_digest", String(64), nullable=False),  # sha256 of the items' canonical terms (services/risk/batches)
    Column("size", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # open | complete
    Column("created_by", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("claim_token", String(32), nullable=True),
    Column("claimed_until", UtcDateTime, nullable=True),
)

# A batch's items with a final answer (placed or refused: the answer as JSON), written as each is decided; an item
# that failed (a dependency down) has no row and is placed again when the batch is sent again.
order_batch_items = Table(
    "order_batch_items",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("batch_id", String(64), primary_key=True),
    Column("item_index", Integer, primary_key=True, autoincrement=False),
    Column("client_order_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # placed | refused
    Column("answer", Text, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
)


class Scope(StrEnum):
    GLOBAL = "global"
    ACCOUNT = "account"
    INSTANCE = "instance"


@dataclass(frozen=True)
class ScopedState:
    """A scope's trading state as stored (or as a change recorded it: `from_state` set)."""

    scope: str
    key: str
    state: str
    reason: str
    set_by: str
    set_at: datetime
    from_state: str | None = None
    account_id: str | None = None  # (a change's) the account: its key, or an instance's as its orders were decided

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "scope": self.scope,
            "key": self.key,
            "state": self.state,
            "reason": self.reason,
            "set_by": self.set_by,
            "set_at": self.set_at.isoformat(),
        }
        if self.from_state is not None:
            body["from_state"] = self.from_state
        return body


class ExecutionOutcome(StrEnum):
    """What became of an approved decision at execution. PLACED and REFUSED are final (a later answer does not
    change them); UNKNOWN (a timeout, a 5xx) may still become either."""

    PLACED = "placed"  # execution holds the order (201 created, or 200 it existed already)
    REFUSED = "refused"  # execution answered 4xx (the account could not afford it, a conflict, ...): no order
    UNKNOWN = "unknown"  # no answer, or a 5xx: the order may or may not have been created


@dataclass(frozen=True)
class Decision:
    decision_id: str
    client_order_id: str
    account_id: str
    ts_code: str
    side: str
    order_type: str
    qty: int
    price: Decimal | None
    approved: bool
    reasons: list[dict[str, str]]
    created_at: datetime
    correlation_id: str | None
    strategy_instance_id: str | None = None
    paper_fill: PaperFill | None = None
    # The rule-set versions that decided it and every finding with the values it read (None: the rules did not run)
    rule_check: dict[str, Any] | None = None
    market_type: str | None = None  # a market order's type; None: a limit order
    time_in_force: str = "day"

    def summary(self) -> dict[str, Any]:
        """The decision as the order endpoint returns it."""
        return {"decision_id": self.decision_id, "approved": self.approved, "reasons": self.reasons}

    def as_json(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "client_order_id": self.client_order_id,
            "account_id": self.account_id,
            "ts_code": self.ts_code,
            "side": self.side,
            "order_type": self.order_type,
            "qty": self.qty,
            "price": None if self.price is None else str(self.price),
            "approved": self.approved,
            "reasons": self.reasons,
            "created_at": self.created_at.isoformat(),
            "correlation_id": self.correlation_id,
            "strategy_instance_id": self.strategy_instance_id,
            "paper_fill": None if self.paper_fill is None else self.paper_fill.model_dump(mode="json"),
            "rule_check": self.rule_check,
            "market_type": self.market_type,
            "time_in_force": self.time_in_force,
        }


@dataclass(frozen=True)
class Recorded:
    """A decision to record with the events that report it (a denial's `risk.order.denied`, the rules' alerts)."""

    decision: Decision
    denial: Envelope | None = None
    alerts: tuple[Envelope, ...] = ()


class StatesMoved(Exception):
    """`record_many`: the trading states are no longer those its decisions were made under (nothing was written)."""

    def __init__(self, states: list[ScopedState]) -> None:
        super().__init__("the trading states moved")
        self.states = states


def _state_keys(states: Sequence[ScopedState]) -> list[tuple[str, str, str, datetime]]:
    return sorted((s.scope, s.key, s.state, s.set_at) for s in states)


def _decision_row(decision: Decision) -> dict[str, Any]:
    return dict(
        decision_id=decision.decision_id,
        client_order_id=decision.client_order_id,
        account_id=decision.account_id,
        ts_code=decision.ts_code,
        side=decision.side,
        order_type=decision.order_type,
        qty=decision.qty,
        price=decision.price,
        approved=decision.approved,
        reasons=json.dumps(decision.reasons, ensure_ascii=False),
        correlation_id=decision.correlation_id,
        created_at=decision.created_at,
        strategy_instance_id=decision.strategy_instance_id,
        paper_fill=None if decision.paper_fill is None else decision.paper_fill.model_dump_json(),
        rule_check=None if decision.rule_check is None else json.dumps(decision.rule_check, ensure_ascii=False),
        market_type=decision.market_type,
        time_in_force=decision.time_in_force,
    )


def _decision(row: Row[Any]) -> Decision:
    return Decision(
        decision_id=row.decision_id,
        client_order_id=row.client_order_id,
        account_id=row.account_id,
        ts_code=row.ts_code,
        side=row.side,
        order_type=row.order_type,
        qty=row.qty,
        price=row.price,
        approved=bool(row.approved),
        reasons=json.loads(row.reasons),
        created_at=row.created_at,
        correlation_id=row.correlation_id,
        strategy_instance_id=row.strategy_instance_id,
        paper_fill=None if row.paper_fill is None else PaperFill.model_validate_json(row.paper_fill),
        rule_check=None if row.rule_check is None else json.loads(row.rule_check),
        market_type=row.market_type,
        time_in_force=row.time_in_force,
    )


def _scoped(row: Row[Any]) -> ScopedState:
    return ScopedState(row.scope, row.key, row.state, row.reason, row.set_by, row.set_at)


class RiskStore:
    def __init__(self, db: Database, *, on_event: Callable[[], None] | None = None) -> None:
        self.db = db
        self.on_event = on_event  # told after a commit that wrote an outbox event (the relay publishes it at once)
        # execution's answers (placed / unknown) waiting to be written behind the order's answer (note_outcome)
        self._outcomes: list[tuple[str, ExecutionOutcome]] = []
        self._outcomes_waiting = asyncio.Event()
        self._outcome_writer: asyncio.Task[None] | None = None
        self._stopping = False

    # --- execution's answers, written behind ------------------------------------------------------------------------

    def start_outcome_writer(self) -> None:
        if self._outcome_writer is None:
            self._stopping = False
            self._outcome_writer = asyncio.create_task(self._write_outcomes(), name="risk-outcomes")
            self._outcome_writer.add_done_callback(self._writer_ended)

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """The writer ended by anything but a stop (a bug): say so; the outcomes noted from now on are written at
        once (`note_outcome`), and what it held is written by the stop."""
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        log.error("the outcome writer stopped: outcomes are written with each order from now on",
                  exc_info=error, extra={"held": len(self._outcomes)})  # fmt: skip

    async def stop_outcome_writer(self, *, wait_s: float = OUTCOME_STOP_WAIT_S) -> None:
        """Stop the writer once it has written what it holds (waiting up to `wait_s`: a write under way is not cut
        off), then write what is still held (once: a database down now loses them, see note_outcome)."""
        writer, self._outcome_writer = self._outcome_writer, None
        self._stopping = True
        if writer is not None:
            self._outcomes_waiting.set()
            await asyncio.wait({writer}, timeout=wait_s)  # (a writer that failed was reported when it ended)
            if not writer.done():
                writer.cancel()  # it puts back what it was writing
                await asyncio.wait({writer})
        if self._outcomes:
            held, self._outcomes = self._outcomes, []
            try:
                await self.record_outcomes(held)
            except Exception:
                log.exception("execution's answers to decisions not written at stop", extra={"count": len(held)})

    async def note_outcome(self, decision_id: str, outcome: ExecutionOutcome) -> None:
        """Execution's answer PLACED or UNKNOWN, written behind the order's answer by the writer task (in one
        transaction with the others waiting: under load, one for many orders), in the order noted. Until it is
        written a retry of the client_order_id finds the decision without an outcome, which is replayed within the
        approval TTL as an unknown one is, and checked afresh after it — what a lost PLACED/UNKNOWN always meant; one
        may never be written if the process dies holding it (milliseconds' worth normally; more while the database
        is down), or when more than OUTCOMES_HELD wait. REFUSED is never noted here: `record_outcome` writes it
        before the answer. Without the writer running (a store used outside the app, or a writer that failed),
        written at once."""
        writer = self._outcome_writer
        if writer is None or writer.done():
            await self.record_outcome(decision_id, outcome)
            return
        self._outcomes.append((decision_id, outcome))
        self._cap_held()
        self._outcomes_waiting.set()

    def _cap_held(self) -> None:
        if len(self._outcomes) > OUTCOMES_HELD:
            dropped = len(self._outcomes) - OUTCOMES_HELD
            del self._outcomes[:dropped]
            log.error("execution's answers to decisions dropped unwritten", extra={"count": dropped})

    async def _write_outcomes(self) -> None:
        while True:
            await self._outcomes_waiting.wait()
            self._outcomes_waiting.clear()
            held, self._outcomes = self._outcomes, []
            if not held:
                if self._stopping:
                    return
                continue
            try:
                await self.record_outcomes(held)
            except Exception:
                log.exception("execution's answers to decisions not written; trying again", extra={"count": len(held)})
                self._outcomes[:0] = held
                self._cap_held()
                if self._stopping:
                    return  # (the stop tries once more)
                await asyncio.sleep(OUTCOME_RETRY_S)
            except BaseException:  # cancelled (a stop that waited long enough), or a bug: nothing taken is lost
                self._outcomes[:0] = held
                raise
            self._outcomes_waiting.set()  # what was noted meanwhile, or (stopping) the end

    async def record_outcomes(self, outcomes: Sequence[tuple[str, ExecutionOutcome]]) -> None:
        """Several decisions' outcomes in one transaction, in the order given (an UNKNOWN then a PLACED of the same
        decision end PLACED: `record_outcome`'s rule)."""
        if not outcomes:
            return
        params = [{"p_decision_id": decision_id, "p_outcome": outcome.value} for decision_id, outcome in outcomes]
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(_RECORD_OUTCOME, params)  # one executemany: the rows updated in the order given

    async def record(self, decision: Decision, event: Envelope | None = None, *, alerts: Sequence[Envelope] = ()) -> (
        None
    ):  # fmt: skip
        """The decision, and the events reporting it (a denial's `risk.order.denied`, the rules' `risk.alert`s) in
        the same transaction."""
        await self.record_many([Recorded(decision, event, tuple(alerts))])

    async def record_many(
        self, records: Sequence[Recorded], *, expected_states: tuple[str, str | None, list[ScopedState]] | None = None
    ) -> None:
        """Several decisions with their events (as `record`), in one transaction. `expected_states`: (account,
        instance, the trading states the decisions were made under): read again first in the same transaction and,
        when they moved since (the kill switch, a loss limit), StatesMoved is raised with nothing written."""
        events = [each for r in records for each in ((r.denial,) if r.denial is not None else ()) + tuple(r.alerts)]
        async for attempt in self.db.transaction():
            async with attempt as s:
                if expected_states is not None:
                    account_id, instance_id, expected = expected_states
                    now = [_scoped(r) for r in (await s.execute(*_states_query(account_id, instance_id))).all()]
                    if _state_keys(now) != _state_keys(expected):
                        raise StatesMoved(now)
                if events:
                    await add_many_to_outbox(s, outbox, events)
                if records:
                    await s.execute(risk_decisions.insert(), [_decision_row(r.decision) for r in records])
        if events and self.on_event is not None:
            self.on_event()

    async def recent(self, *, account_id: str | None, limit: int) -> list[Decision]:
        query = (
            select(risk_decisions)
            .order_by(risk_decisions.c.created_at.desc(), risk_decisions.c.decision_id)
            .limit(limit)
        )
        if account_id is not None:
            query = query.where(risk_decisions.c.account_id == account_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_decision(r) for r in rows]

    async def get(self, decision_id: str) -> Decision | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(select(risk_decisions).where(risk_decisions.c.decision_id == decision_id))
                ).first()
        return None if row is None else _decision(row)

    async def replayable_for(
        self,
        account_id: str | None,
        client_order_id: str,
        *,
        unknown_since: datetime,
        strategy_instance_id: str | None = None,
    ) -> Decision | None:
        """The approved decision a repeated client_order_id is answered with, if any: one execution placed (whatever
        its age), or else one whose outcome is unknown and that was made at or after `unknown_since` (the approval
        TTL ago). A decision execution refused is never replayed. A strategy instance's client_order_id is its own
        (`strategy_instance_id`, ix_risk_decisions_instance_client_order); a person's is their account's, among the
        account's people's orders (ix_risk_decisions_client_order)."""
        query, params = _replayable(account_id, client_order_id, unknown_since, strategy_instance_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(query, params)).first()
        return None if row is None else _decision(row)

    async def replayable_and_states(
        self,
        account_id: str | None,
        client_order_id: str,
        *,
        unknown_since: datetime,
        strategy_instance_id: str | None = None,
        state_account_id: str,
    ) -> tuple[Decision | None, list[ScopedState]]:
        """What a new order reads first, in one transaction: `replayable_for` and `trading_states_of(state_account_id,
        strategy_instance_id)` (the kill switch's states, read per order so that a change holds at once)."""
        query, params = _replayable(account_id, client_order_id, unknown_since, strategy_instance_id)
        states_query, states_params = _states_query(state_account_id, strategy_instance_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(query, params)).first()
                states = (await s.execute(states_query, states_params)).all()
        return (None if row is None else _decision(row)), [_scoped(r) for r in states]

    async def replayable_many_and_states(
        self,
        account_id: str | None,
        client_order_ids: Sequence[str],
        *,
        unknown_since: datetime,
        strategy_instance_id: str | None = None,
        state_account_id: str,
    ) -> tuple[dict[str, Decision], list[ScopedState]]:
        """`replayable_and_states` of several client_order_ids (a batch's) in one transaction: the decision each
        retry is answered with (those that have one), and the trading states."""
        query, params = _replayable_many(account_id, client_order_ids, unknown_since, strategy_instance_id)
        states_query, states_params = _states_query(state_account_id, strategy_instance_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query, params)).all()
                states = (await s.execute(states_query, states_params)).all()
        found: dict[str, Decision] = {}
        for row in rows:  # in `_replayable`'s order: each client_order_id's first is its answer
            found.setdefault(row.client_order_id, _decision(row))
        return found, [_scoped(r) for r in states]

    async def record_outcome(self, decision_id: str, outcome: ExecutionOutcome) -> None:
        """Record what execution answered for a forwarded decision. PLACED and REFUSED are final: only a decision
        without an outcome, or an UNKNOWN one, takes a new one."""
        await self.record_outcomes([(decision_id, outcome)])

    # --- trading states (the kill switch) ---------------------------------------------------------------------------

    async def trading_states_of(self, account_id: str, instance_id: str | None) -> list[ScopedState]:
        """The stored states that apply to an order of `account_id` (and of `instance_id`): global, the account's,
        the instance's. One query by primary key; a scope without a row is active."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(*_states_query(account_id, instance_id))).all()
        return [_scoped(r) for r in rows]

    async def set_trading_state(
        self,
        scope: Scope,
        key: str,
        state: str,
        *,
        reason: str,
        by: str,
        at: datetime,
        make_event: Callable[[ScopedState], Envelope],
    ) -> tuple[str, bool]:
        """Set a scope's state; (the state before, whether it changed). A change writes the state, its audit row and
        its event (`make_event` of the change) in one transaction; setting the state a scope has already changes
        nothing (no audit row, no event: a repeated kill switch is idempotent)."""
        t = trading_states.c
        where = and_(t.scope == scope.value, t.key == key)
        changed = False
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(trading_states).where(where).with_for_update())).first()
                before = "active" if row is None else row.state
                changed = before != state
                if changed:
                    account = key if scope is Scope.ACCOUNT else None
                    if scope is Scope.INSTANCE and before != "active" and row is not None:
                        account = row.account_id  # the account its alert was raised for: cleared for the same
                    elif scope is Scope.INSTANCE:  # an instance trades on one account: any of its decisions names it
                        account = await s.scalar(
                            select(risk_decisions.c.account_id)
                            .where(risk_decisions.c.strategy_instance_id == key)
                            .limit(1)
                        )
                    values = {"state": state, "reason": reason, "set_by": by, "set_at": at, "account_id": account}
                    if row is None:
                        await s.execute(trading_states.insert().values(scope=scope.value, key=key, **values))
                    else:
                        await s.execute(update(trading_states).where(where).values(**values))
                    change = ScopedState(scope.value, key, state, reason, by, at, from_state=before, account_id=account)
                    await s.execute(
                        trading_state_changes.insert().values(
                            change_id=new_id(),
                            scope=scope.value,
                            key=key,
                            from_state=before,
                            to_state=state,
                            reason=reason,
                            set_by=by,
                            set_at=at,
                        )
                    )
                    await add_to_outbox(s, outbox, make_event(change))
        if changed and self.on_event is not None:
            self.on_event()
        return before, changed

    async def trading_states(self, *, visible_accounts: set[str] | None) -> list[ScopedState]:
        """Every stored state (`visible_accounts` None), or only global's and those accounts'."""
        query = select(trading_states).order_by(trading_states.c.scope, trading_states.c.key)
        if visible_accounts is not None:
            t = trading_states.c
            query = query.where(
                or_(t.scope == Scope.GLOBAL.value, and_(t.scope == Scope.ACCOUNT.value, t.key.in_(visible_accounts)))
            )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_scoped(r) for r in rows]

    async def trading_state_history(self, scope: Scope, key: str, *, limit: int) -> list[ScopedState]:
        """A scope's changes, newest first."""
        c = trading_state_changes.c
        query = (
            select(trading_state_changes)
            .where(c.scope == scope.value, c.key == key)
            .order_by(c.set_at.desc(), c.change_id)
            .limit(limit)
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [
            ScopedState(r.scope, r.key, r.to_state, r.reason, r.set_by, r.set_at, from_state=r.from_state) for r in rows
        ]

    async def outcome(self, decision_id: str) -> ExecutionOutcome | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                value = (
                    await s.execute(
                        select(risk_decisions.c.execution_outcome).where(risk_decisions.c.decision_id == decision_id)
                    )
                ).scalar_one_or_none()
        return None if value is None else ExecutionOutcome(value)


def _replayable_query(by_instance: bool, many: bool = False) -> Select[Any]:
    """The query of `RiskStore.replayable_for`, built once (a constant statement: SQLAlchemy neither builds nor
    cache-keys it again per order); its parameters: `_replayable`. `many`: of the client_order_ids in
    `p_client_order_ids`, every candidate, each client_order_id's in the order whose first is its answer."""
    c = risk_decisions.c
    if by_instance:
        whose = c.strategy_instance_id == bindparam("p_instance")
    else:
        whose = and_(c.account_id == bindparam("p_account"), c.strategy_instance_id.is_(None))
    which = (
        c.client_order_id.in_(bindparam("p_client_order_ids", expanding=True))
        if many
        else c.client_order_id == bindparam("p_client_order_id")
    )
    query = select(risk_decisions).where(
        whose,
        which,
        c.approved.is_(True),
        or_(
            c.execution_outcome == ExecutionOutcome.PLACED.value,
            and_(
                or_(c.execution_outcome.is_(None), c.execution_outcome == ExecutionOutcome.UNKNOWN.value),
                c.created_at >= bindparam("p_unknown_since"),
            ),
        ),
    )
    # A placed decision first: it is the one execution answers with.
    order = ((c.execution_outcome == ExecutionOutcome.PLACED.value).desc(), c.created_at, c.decision_id)
    if many:
        return query.order_by(c.client_order_id, *order)
    return query.order_by(*order).limit(1)


_REPLAYABLE_BY_INSTANCE = _replayable_query(True)
# `RiskStore.record_outcome`'s UPDATE (PLACED and REFUSED final: only a decision without an outcome, or an UNKNOWN
# one, takes a new one), a constant statement.
_RECORD_OUTCOME = (
    update(risk_decisions)
    .where(
        risk_decisions.c.decision_id == bindparam("p_decision_id"),
        or_(
            risk_decisions.c.execution_outcome.is_(None),
            risk_decisions.c.execution_outcome == ExecutionOutcome.UNKNOWN.value,
        ),
    )
    .values(execution_outcome=bindparam("p_outcome"))
)
_REPLAYABLE_BY_ACCOUNT = _replayable_query(False)
_REPLAYABLE_MANY_BY_INSTANCE = _replayable_query(True, many=True)
_REPLAYABLE_MANY_BY_ACCOUNT = _replayable_query(False, many=True)


def _replayable_many(
    account_id: str | None, client_order_ids: Sequence[str], unknown_since: datetime, strategy_instance_id: str | None
) -> tuple[Select[Any], dict[str, Any]]:
    """The query of `RiskStore.replayable_many_and_states` and its parameters."""
    params: dict[str, Any] = {"p_client_order_ids": sorted(set(client_order_ids)), "p_unknown_since": unknown_since}
    if strategy_instance_id is not None:
        return _REPLAYABLE_MANY_BY_INSTANCE, {**params, "p_instance": strategy_instance_id}
    return _REPLAYABLE_MANY_BY_ACCOUNT, {**params, "p_account": account_id}


def _replayable(
    account_id: str | None, client_order_id: str, unknown_since: datetime, strategy_instance_id: str | None
) -> tuple[Select[Any], dict[str, Any]]:
    """The query of `RiskStore.replayable_for` and its parameters."""
    params: dict[str, Any] = {"p_client_order_id": client_order_id, "p_unknown_since": unknown_since}
    if strategy_instance_id is not None:
        return _REPLAYABLE_BY_INSTANCE, {**params, "p_instance": strategy_instance_id}
    return _REPLAYABLE_BY_ACCOUNT, {**params, "p_account": account_id}


def _states_select(with_instance: bool) -> Select[Any]:
    t = trading_states.c
    wanted = [
        and_(t.scope == Scope.GLOBAL.value, t.key == ""),
        and_(t.scope == Scope.ACCOUNT.value, t.key == bindparam("p_account")),
    ]
    if with_instance:
        wanted.append(and_(t.scope == Scope.INSTANCE.value, t.key == bindparam("p_instance")))
    return select(trading_states).where(or_(*wanted))


_STATES = _states_select(False)
_STATES_WITH_INSTANCE = _states_select(True)


def _states_query(account_id: str, instance_id: str | None) -> tuple[Select[Any], dict[str, Any]]:
    """The query of `RiskStore.trading_states_of` (global's, the account's and the instance's rows, by primary key),
    a constant statement, and its parameters."""
    if instance_id is not None:
        return _STATES_WITH_INSTANCE, {"p_account": account_id, "p_instance": instance_id}
    return _STATES, {"p_account": account_id}
