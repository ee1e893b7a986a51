"""The strategy service's tables: its strategy instances, every version of their parameters, the audit trail of every
change, the runner's persisted book per instance, each instance's record of every day it closed, and the outbox of its
events. Each change of an instance is one
transaction with its audit row and its event."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Row

from services.strategy.book import DayClose
from services.strategy.lifecycle import State
from shared.platform.clock import UtcDateTime, utcnow
from shared.platform.columns import JsonDocument
from shared.platform.db import Database, DbSession, new_metadata
from shared.platform.events.envelope import Envelope
from shared.platform.observability import new_id
from shared.platform.outbox import add_to_outbox, outbox_table

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = new_metadata()

strategy_instances = Table(
    "strategy_instances",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4().hex, the strategy_instance_id of its orders
    Column("strategy", String(64), nullable=False),
    Column("owner", String(64), nullable=False),  # the username that created it
    Column("account_id", String(64), nullable=False),
    Column("params", JSON, nullable=False),  # as the strategy's Params model dumps them (defaults filled in)
    Column("params_version", Integer, nullable=False),
    Column("universe", JSON, nullable=False),  # shared.platform.universe.Universe, as JSON
    Column("capital_fen", BigInteger, nullable=False),  # the budget, whole fen
    Column("mode", String(8), nullable=False),  # paper | live
    Column("bar_freq", String(4), nullable=False),  # 1d
    Column("order_timing", String(16), nullable=False),  # open_auction | open
    Column("costs", JSON, nullable=False),  # shared.platform.universe.CostModel's given fields
    Column("reload", String(8), nullable=False),  # auto | manual
    Column("cancel_open_orders_on_stop", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("error", Text, nullable=True),  # a failed instance's traceback
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_strategy_instances_owner", "owner"),
    Index("ix_strategy_instances_account_state", "account_id", "state"),
    Index("ix_strategy_instances_state", "state"),
)

# Kept after the instance is deleted, as the audit is: what ran with which parameters stays answerable.
strategy_instance_versions = Table(
    "strategy_instance_versions",
    metadata,
    Column("instance_id", String(32), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("params", JSON, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

strategy_instance_audit = Table(
    "strategy_instance_audit",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("instance_id", String(32), nullable=False),
    Column("actor", String(64), nullable=False),  # a username, or svc:strategy for the runner
    Column("action", String(32), nullable=False),  # created, started, paused, ..., params_updated, deleted
    Column("before", JSON(none_as_null=True), nullable=True),
    Column("after", JSON(none_as_null=True), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_strategy_instance_audit_instance_at", "instance_id", "at"),
)

# The runner's state of an instance as of its last processed bar (positions, cash, open orders, the strategy's
# stored variables: the runner decides the shape), so a restart resumes from it.
strategy_instance_books = Table(
    "strategy_instance_books",
    metadata,
    Column("instance_id", String(32), primary_key=True),
    Column("bar_date", Date, nullable=True),
    Column("book", JsonDocument, nullable=False),  # written often and large (1.5 MB at 14,000 fills): by orjson
    Column("updated_at", UtcDateTime, nullable=False),
)

# An instance's sleeve at each day's close (the runner writes it with the book when it marks the day, in one
# transaction; a day marked again after a crash replaces its row). Deleted with the instance, as its book is.
strategy_instance_days = Table(
    "strategy_instance_days",
    metadata,
    Column("instance_id", String(32), primary_key=True),
    Column("trade_date", Date, primary_key=True),
    Column("cash_fen", BigInteger, nullable=False),
    Column("market_value_fen", BigInteger, nullable=False),
    Column("equity_fen", BigInteger, nullable=False),
    Column("realised_pnl_fen", BigInteger, nullable=False),  # since the instance began
    Column("day_realised_pnl_fen", BigInteger, nullable=False),
    Column("unrealised_pnl_fen", BigInteger, nullable=False),
    Column("fees_fen", BigInteger, nullable=False),  # that day's
    Column("total_fees_fen", BigInteger, nullable=False),
    Column("turnover_fen", BigInteger, nullable=False),  # that day's
    Column("positions", JSON, nullable=False),  # [{ts_code, qty, sellable_qty, cost_fen, close_fen, market_value_fen}]
    Column("updated_at", UtcDateTime, nullable=False),
)

outbox = outbox_table(metadata)


@dataclass(frozen=True)
class InstanceRecord:
    """One strategy instance as stored."""

    instance_id: str
    strategy: str
    owner: str
    account_id: str
    params: dict[str, Any]
    params_version: int
    universe: dict[str, Any]
    capital_fen: int
    mode: str
    bar_freq: str
    order_timing: str
    costs: dict[str, Any]
    reload: str
    cancel_open_orders_on_stop: bool
    state: State
    error: str | None
    created_at: datetime
    updated_at: datetime

    def snapshot(self) -> dict[str, Any]:
        """The instance as JSON, as the audit keeps it when it is created or deleted."""
        return {
            "strategy": self.strategy,
            "owner": self.owner,
            "account_id": self.account_id,
            "params": self.params,
            "params_version": self.params_version,
            "universe": self.universe,
            "capital_fen": self.capital_fen,
            "mode": self.mode,
            "bar_freq": self.bar_freq,
            "order_timing": self.order_timing,
            "costs": self.costs,
            "reload": self.reload,
            "cancel_open_orders_on_stop": self.cancel_open_orders_on_stop,
            "state": self.state.value,
        }


@dataclass(frozen=True)
class ParamsVersion:
    instance_id: str
    version: int
    params: dict[str, Any]
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    audit_id: str
    instance_id: str
    actor: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime


@dataclass(frozen=True)
class InstanceBook:
    instance_id: str
    bar_date: date | None
    book: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class InstanceDay:
    """One stored day of an instance: its close and when it was written."""

    instance_id: str
    close: DayClose
    updated_at: datetime


@dataclass(frozen=True)
class Audit:
    """One change as the audit records it (who and what; the time is the commit's)."""

    actor: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _json_value(value: Any) -> Any:
    # MariaDB's JSON is LONGTEXT underneath; some driver paths hand back the text.
    return json.loads(value) if isinstance(value, str | bytes) else value


def _record(row: Row[Any]) -> InstanceRecord:
    return InstanceRecord(
        instance_id=row.id,
        strategy=row.strategy,
        owner=row.owner,
        account_id=row.account_id,
        params=_json_value(row.params),
        params_version=int(row.params_version),
        universe=_json_value(row.universe),
        capital_fen=int(row.capital_fen),
        mode=row.mode,
        bar_freq=row.bar_freq,
        order_timing=row.order_timing,
        costs=_json_value(row.costs),
        reload=row.reload,
        cancel_open_orders_on_stop=bool(row.cancel_open_orders_on_stop),
        state=State(row.state),
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _audit(session: DbSession, instance_id: str, audit: Audit, at: datetime) -> None:
    await session.execute(
        strategy_instance_audit.insert().values(
            id=new_id(),
            instance_id=instance_id,
            actor=audit.actor,
            action=audit.action,
            before=audit.before,
            after=audit.after,
            at=at,
        )
    )


class InstanceStore:
    def __init__(
        self, db: Database, *, on_event: Callable[[], None] | None = None, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.on_event = on_event  # told after a commit that wrote an outbox event (the relay publishes it at once)
        self.clock = clock

    def _published(self) -> None:
        if self.on_event is not None:
            self.on_event()

    async def create(self, record: InstanceRecord, audit: Audit, event: Envelope) -> None:
        """The instance, its first parameter version, the audit row and the `created` event: one transaction."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(
                    strategy_instances.insert().values(
                        id=record.instance_id,
                        strategy=record.strategy,
                        owner=record.owner,
                        account_id=record.account_id,
                        params=record.params,
                        params_version=record.params_version,
                        universe=record.universe,
                        capital_fen=record.capital_fen,
                        mode=record.mode,
                        bar_freq=record.bar_freq,
                        order_timing=record.order_timing,
                        costs=record.costs,
                        reload=record.reload,
                        cancel_open_orders_on_stop=record.cancel_open_orders_on_stop,
                        state=record.state.value,
                        error=record.error,
                        created_at=record.created_at,
                        updated_at=record.updated_at,
                    )
                )
                await s.execute(
                    strategy_instance_versions.insert().values(
                        instance_id=record.instance_id,
                        version=record.params_version,
                        params=record.params,
                        created_by=audit.actor,
                        created_at=record.created_at,
                    )
                )
                await _audit(s, record.instance_id, audit, record.created_at)
                await add_to_outbox(s, outbox, event)
        self._published()

    async def get(self, instance_id: str) -> InstanceRecord | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(select(strategy_instances).where(strategy_instances.c.id == instance_id))
                ).first()
        return None if row is None else _record(row)

    async def find(
        self,
        *,
        owner_or_account: tuple[str, str] | None = None,
        state: State | None = None,
        strategy: str | None = None,
        states: Sequence[State] | None = None,
        account_id: str | None = None,
    ) -> list[InstanceRecord]:
        """Newest first. `owner_or_account`: only instances owned by that user or on that account; `account_id`: only
        those trading that account."""
        query = select(strategy_instances).order_by(strategy_instances.c.created_at.desc(), strategy_instances.c.id)
        if owner_or_account is not None:
            owner, account = owner_or_account
            query = query.where((strategy_instances.c.owner == owner) | (strategy_instances.c.account_id == account))
        if account_id is not None:
            query = query.where(strategy_instances.c.account_id == account_id)
        if state is not None:
            query = query.where(strategy_instances.c.state == state.value)
        if states is not None:
            query = query.where(strategy_instances.c.state.in_([s.value for s in states]))
        if strategy is not None:
            query = query.where(strategy_instances.c.strategy == strategy)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_record(r) for r in rows]

    async def committed_capital_fen(self, account_id: str) -> int:
        """The budgets of the account's instances that are not stopped, in fen: cash the account has promised."""
        query = select(func.coalesce(func.sum(strategy_instances.c.capital_fen), 0)).where(
            strategy_instances.c.account_id == account_id, strategy_instances.c.state != State.STOPPED.value
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                total = (await s.execute(query)).scalar_one()
        return int(total)

    async def states(self) -> dict[str, State]:
        """Every instance's state, by instance id."""
        query = select(strategy_instances.c.id, strategy_instances.c.state)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return {str(instance_id): State(state) for instance_id, state in rows}

    async def transition(
        self,
        instance_id: str,
        *,
        from_state: State,
        to_state: State,
        audit: Audit,
        event: Envelope,
        error: str | None = None,
    ) -> InstanceRecord | None:
        """Move the instance from `from_state` to `to_state` with its audit row and event; None (nothing written)
        when it is not in `from_state` any more (someone else moved it first). A move to failed stores `error`;
        any other move clears it."""
        now = self.clock()
        async for attempt in self.db.transaction():
            async with attempt as s:
                result = await s.execute(
                    update(strategy_instances)
                    .where(strategy_instances.c.id == instance_id, strategy_instances.c.state == from_state.value)
                    .values(state=to_state.value, error=error, updated_at=now)
                )
                if result.rowcount != 1:
                    return None
                await _audit(s, instance_id, audit, now)
                await add_to_outbox(s, outbox, event)
                row = (await s.execute(select(strategy_instances).where(strategy_instances.c.id == instance_id))).one()
        self._published()
        return _record(row)

    async def record_event(self, instance_id: str, audit: Audit, event: Envelope) -> None:
        """An audit row and an event about the instance that change no column of it (e.g. its code reloaded)."""
        now = self.clock()
        async for attempt in self.db.transaction():
            async with attempt as s:
                await _audit(s, instance_id, audit, now)
                await add_to_outbox(s, outbox, event)
        self._published()

    async def emit(self, event: Envelope) -> None:
        """An event of the runner's that changes no row (strategy.instance.bar), through the outbox."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                await add_to_outbox(s, outbox, event)
        self._published()

    async def update_params(
        self,
        instance_id: str,
        *,
        states: frozenset[State],
        from_version: int,
        params: dict[str, Any],
        audit: Audit,
    ) -> InstanceRecord | None:
        """New parameters as version `from_version + 1`, kept with the older ones; None when the instance is not
        in one of `states` or was changed meanwhile (another version written first)."""
        now = self.clock()
        version = from_version + 1
        async for attempt in self.db.transaction():
            async with attempt as s:
                result = await s.execute(
                    update(strategy_instances)
                    .where(
                        strategy_instances.c.id == instance_id,
                        strategy_instances.c.state.in_([st.value for st in states]),
                        strategy_instances.c.params_version == from_version,
                    )
                    .values(params=params, params_version=version, updated_at=now)
                )
                if result.rowcount != 1:
                    return None
                await s.execute(
                    strategy_instance_versions.insert().values(
                        instance_id=instance_id, version=version, params=params, created_by=audit.actor, created_at=now
                    )
                )
                await _audit(s, instance_id, audit, now)
                row = (await s.execute(select(strategy_instances).where(strategy_instances.c.id == instance_id))).one()
        return _record(row)

    async def delete(self, instance_id: str, *, from_state: State, audit: Audit, event: Envelope) -> bool:
        """Delete the instance, its book and its days (its versions and audit stay); False when it is not in
        `from_state`."""
        now = self.clock()
        async for attempt in self.db.transaction():
            async with attempt as s:
                result = await s.execute(
                    delete(strategy_instances).where(
                        strategy_instances.c.id == instance_id, strategy_instances.c.state == from_state.value
                    )
                )
                if result.rowcount != 1:
                    return False
                for table in (strategy_instance_books, strategy_instance_days):
                    await s.execute(delete(table).where(table.c.instance_id == instance_id))
                await _audit(s, instance_id, audit, now)
                await add_to_outbox(s, outbox, event)
        self._published()
        return True

    async def versions(self, instance_id: str) -> list[ParamsVersion]:
        query = (
            select(strategy_instance_versions)
            .where(strategy_instance_versions.c.instance_id == instance_id)
            .order_by(strategy_instance_versions.c.version)
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [
            ParamsVersion(r.instance_id, int(r.version), _json_value(r.params), r.created_by, r.created_at)
            for r in rows
        ]

    async def audit(self, instance_id: str) -> list[AuditEntry]:
        """Oldest first."""
        query = (
            select(strategy_instance_audit)
            .where(strategy_instance_audit.c.instance_id == instance_id)
            .order_by(strategy_instance_audit.c.at, strategy_instance_audit.c.id)
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [
            AuditEntry(
                r.id,
                r.instance_id,
                r.actor,
                r.action,
                None if r.before is None else _json_value(r.before),
                None if r.after is None else _json_value(r.after),
                r.at,
            )
            for r in rows
        ]

    # --- the runner's book ------------------------------------------------------------------------------------------
    async def load_book(self, instance_id: str) -> InstanceBook | None:
        query = select(strategy_instance_books).where(strategy_instance_books.c.instance_id == instance_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(query)).first()
        if row is None:
            return None
        return InstanceBook(row.instance_id, row.bar_date, _json_value(row.book), row.updated_at)

    async def save_book(
        self, instance_id: str, bar_date: date | None, book: dict[str, Any], day: DayClose | None = None
    ) -> None:
        """Replace the instance's book (the first save inserts it); with `day`, that day's record as well, in the same
        transaction (a day written again, e.g. its bar run again after a crash, replaces its row)."""
        now = self.clock()
        values = {"bar_date": bar_date, "book": book, "updated_at": now}
        table = strategy_instance_books
        async for attempt in self.db.transaction():
            async with attempt as s:
                result = await s.execute(update(table).where(table.c.instance_id == instance_id).values(**values))
                if result.rowcount != 1:
                    # The runner is the one writer of an instance's book: no other insert can come in between.
                    await s.execute(table.insert().values(instance_id=instance_id, **values))
                if day is not None:
                    await _write_day(s, instance_id, day, now)

    async def days(self, instance_id: str, start: date | None = None, end: date | None = None) -> list[InstanceDay]:
        """The instance's stored days from `start` to `end` (both included; None: unbounded), oldest first."""
        days = strategy_instance_days
        query = select(days).where(days.c.instance_id == instance_id).order_by(days.c.trade_date)
        if start is not None:
            query = query.where(days.c.trade_date >= start)
        if end is not None:
            query = query.where(days.c.trade_date <= end)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_day(r) for r in rows]

    async def day(self, instance_id: str, trade_date: date) -> InstanceDay | None:
        days = strategy_instance_days
        query = select(days).where(days.c.instance_id == instance_id, days.c.trade_date == trade_date)
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(query)).first()
        return None if row is None else _day(row)


async def _write_day(session: DbSession, instance_id: str, day: DayClose, now: datetime) -> None:
    days = strategy_instance_days
    # delete + insert: an upsert on any dialect; the runner is the one writer of an instance's days
    await session.execute(delete(days).where(days.c.instance_id == instance_id, days.c.trade_date == day.trade_date))
    await session.execute(
        days.insert().values(
            instance_id=instance_id,
            trade_date=day.trade_date,
            cash_fen=day.cash_fen,
            market_value_fen=day.market_value_fen,
            equity_fen=day.equity_fen,
            realised_pnl_fen=day.realised_pnl_fen,
            day_realised_pnl_fen=day.day_realised_pnl_fen,
            unrealised_pnl_fen=day.unrealised_pnl_fen,
            fees_fen=day.fees_fen,
            total_fees_fen=day.total_fees_fen,
            turnover_fen=day.turnover_fen,
            positions=day.positions,
            updated_at=now,
        )
    )


def _day(row: Row[Any]) -> InstanceDay:
    close = DayClose(
        trade_date=row.trade_date,
        cash_fen=int(row.cash_fen),
        market_value_fen=int(row.market_value_fen),
        realised_pnl_fen=int(row.realised_pnl_fen),
        day_realised_pnl_fen=int(row.day_realised_pnl_fen),
        unrealised_pnl_fen=int(row.unrealised_pnl_fen),
        fees_fen=int(row.fees_fen),
        total_fees_fen=int(row.total_fees_fen),
        turnover_fen=int(row.turnover_fen),
        positions=list(_json_value(row.positions)),
    )
    return InstanceDay(row.instance_id, close, row.updated_at)
