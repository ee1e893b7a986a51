"""Conditional orders' table and its moves (docs/conditional-orders.md). Every change of state is one version-checked
UPDATE (`WHERE conditional_id = ? AND status = ? AND version = ?`, the version bumped), with its `conditional.<status>`
event written to execution's outbox in the same transaction: of two processes (or a trigger delivered twice) making
the same move, exactly one changes the row and writes the event; the other changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    select,
    update,
)
from sqlalchemy.engine import Row

from services.execution.conditional.rules import (
    ConditionType,
    Kind,
    OnMissed,
    Status,
    Trigger,
    child_client_order_id,
    child_type,
    may_move,
    trigger_of,
)
from services.execution.store.base import metadata, outbox
from shared.core.domain import OrderSide, OrderType
from shared.platform.clock import UtcDateTime
from shared.platform.columns import CnyFen
from shared.platform.db import Database, DbSession
from shared.platform.events import ConditionalOrderChanged, Envelope, make_event
from shared.platform.events.schemas import ConditionalReason
from shared.platform.outbox import add_to_outbox

conditional_orders = Table(
    "conditional_orders",
    metadata,
    Column("conditional_id", String(32), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("owner", String(128), nullable=False),  # who created it: its child is decided by risk as them
    Column("owner_role", String(16), nullable=False),
    Column("ts_code", String(16), nullable=False),
    Column("side", String(8), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # stop | stop_limit | market | limit
    Column("price_fen", CnyFen, key="price", nullable=True),  # the child's limit price (stop_limit, limit)
    Column("stop_price_fen", CnyFen, key="stop_price", nullable=True),  # stop, stop_limit
    Column("condition", String(16), nullable=True),  # market, limit: price_above | price_below | at_time
    Column("level_fen", CnyFen, key="level", nullable=True),  # price_above / price_below
    Column("at", UtcDateTime, nullable=True),  # at_time
    Column("market_type", String(24), nullable=True),  # a market child's exchange type
    Column("on_missed", String(8), nullable=False),  # fire | expire
    Column("after_order_id", String(32), nullable=True),  # waits for this order to fill (a bracket's legs)
    Column("oco_group", String(32), nullable=True),  # legs of one group: the first to trigger cancels the others
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("ref_price_fen", CnyFen, key="ref_price", nullable=True),  # the last price when it was armed
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("triggered_at", UtcDateTime, nullable=True),  # the market time it triggered
    Column("trigger_seen_fen", CnyFen, key="trigger_seen", nullable=True),  # the price that triggered it
    Column("trigger_time", UtcDateTime, nullable=True),  # the quote's time (or the at_time) that triggered it
    Column("missed", Boolean, nullable=True),  # it triggered on what happened while execution was down
    Column("claimed_at", UtcDateTime, nullable=True),  # the last attempt at its child (wall time; a lease)
    Column("attempts", Integer, nullable=False),
    Column("child_client_order_id", String(64), nullable=True),
    Column("child_order_id", String(32), nullable=True),
    Column("decision_id", String(64), nullable=True),  # risk's decision on the child
    Column("reasons", Text, nullable=True),  # JSON [{code, message}]: risk's (or execution's) refusal of the child
    Column("message", Text, nullable=True),  # what became of it, in words
    Index("ix_conditional_orders_status", "status"),
    Index("ix_conditional_orders_account_created", "account_id", "created_at"),
    Index("ix_conditional_orders_oco", "oco_group"),
)


@dataclass(frozen=True)
class Conditional:
    conditional_id: str
    account_id: str
    owner: str
    owner_role: str
    ts_code: str
    side: OrderSide
    qty: int
    kind: Kind
    price: Decimal | None
    stop_price: Decimal | None
    condition: ConditionType | None
    level: Decimal | None
    at: datetime | None
    market_type: str | None
    on_missed: OnMissed
    after_order_id: str | None
    oco_group: str | None
    status: Status
    version: int
    ref_price: Decimal | None
    created_at: datetime
    updated_at: datetime
    triggered_at: datetime | None = None
    trigger_seen: Decimal | None = None
    trigger_time: datetime | None = None
    missed: bool | None = None
    claimed_at: datetime | None = None
    attempts: int = 0
    child_client_order_id: str | None = None
    child_order_id: str | None = None
    decision_id: str | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None

    @property
    def trigger(self) -> Trigger:
        return trigger_of(self.kind, self.side, self.stop_price, self.condition, self.level, self.at)

    @property
    def order_type(self) -> OrderType:
        return child_type(self.kind)

    @property
    def client_order_id(self) -> str:
        return child_client_order_id(self.conditional_id)

    def row(self) -> dict[str, Any]:
        values = {k: getattr(self, k) for k in conditional_orders.c.keys()}  # noqa: SIM118 (keys of a ColumnCollection)
        values.update(
            side=self.side.value,
            kind=self.kind.value,
            condition=None if self.condition is None else self.condition.value,
            on_missed=self.on_missed.value,
            status=self.status.value,
            reasons=json.dumps(self.reasons) if self.reasons else None,
        )
        return values

    def as_json(self) -> dict[str, Any]:
        def text(d: Decimal | None) -> str | None:
            return None if d is None else format(d, "f")

        def stamp(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "conditional_id": self.conditional_id,
            "account_id": self.account_id,
            "owner": self.owner,
            "ts_code": self.ts_code,
            "side": self.side.value,
            "qty": self.qty,
            "kind": self.kind.value,
            "order_type": self.order_type.value,
            "price": text(self.price),
            "stop_price": text(self.stop_price),
            "condition": None if self.condition is None else self.condition.value,
            "level": text(self.level),
            "at": stamp(self.at),
            "market_type": self.market_type,
            "on_missed": self.on_missed.value,
            "after_order_id": self.after_order_id,
            "oco_group": self.oco_group,
            "status": self.status.value,
            "version": self.version,
            "ref_price": text(self.ref_price),
            "created_at": stamp(self.created_at),
            "updated_at": stamp(self.updated_at),
            "triggered_at": stamp(self.triggered_at),
            "trigger_seen": text(self.trigger_seen),
            "trigger_time": stamp(self.trigger_time),
            "missed": self.missed,
            "attempts": self.attempts,
            "child_client_order_id": self.child_client_order_id,
            "child_order_id": self.child_order_id,
            "decision_id": self.decision_id,
            "reasons": self.reasons,
            "message": self.message,
        }


def _of(row: Row[Any]) -> Conditional:
    mapping = row._mapping
    values = {column.key: mapping[column] for column in conditional_orders.c}
    m = values
    return Conditional(
        **{
            **values,
            "side": OrderSide(m["side"]),
            "kind": Kind(m["kind"]),
            "condition": None if m["condition"] is None else ConditionType(m["condition"]),
            "on_missed": OnMissed(m["on_missed"]),
            "status": Status(m["status"]),
            "reasons": json.loads(m["reasons"]) if m["reasons"] else [],
        }
    )


def changed_event(c: Conditional, at: datetime, *, source: str) -> Envelope:
    payload = ConditionalOrderChanged(
        conditional_id=c.conditional_id,
        account_id=c.account_id,
        owner=c.owner,
        ts_code=c.ts_code,
        side=c.side.value,
        qty=c.qty,
        kind=c.kind.value,
        status=c.status.value,
        oco_group=c.oco_group,
        after_order_id=c.after_order_id,
        trigger_seen=c.trigger_seen,
        trigger_time=c.trigger_time,
        missed=c.missed,
        client_order_id=c.child_client_order_id,
        order_id=c.child_order_id,
        decision_id=c.decision_id,
        reasons=tuple(ConditionalReason(code=str(r.get("code")), message=str(r.get("message", ""))) for r in c.reasons),
        message=c.message,
        at=at,
    )
    return make_event(f"conditional.{c.status.value}", payload, source=source)


class StaleMove(Exception):
    """The row is not in the state (or version) the move was made from: another process, or an earlier delivery of
    the same trigger, moved it first. Nothing was changed."""


class ConditionalStore:
    def __init__(self, db: Database, *, source: str = "execution", on_event: Callable[[], None] | None = None) -> None:
        self.db = db
        self.source = source
        self.on_event = on_event  # wakes the outbox relay after a commit

    async def create(self, items: Sequence[Conditional], at: datetime) -> None:
        """Store new conditional orders (one, or an OCO group's legs) with their `conditional.<status>` events."""
        async for tx in self.db.transaction():
            async with tx as s:
                for c in items:
                    await s.execute(conditional_orders.insert().values(**c.row()))
                    await add_to_outbox(s, outbox, changed_event(c, at, source=self.source))
        self._woken()

    async def get(self, conditional_id: str) -> Conditional | None:
        rows = await self._select(conditional_orders.c.conditional_id == conditional_id)
        return rows[0] if rows else None

    async def with_status(self, *statuses: Status) -> list[Conditional]:
        return await self._select(conditional_orders.c.status.in_([s.value for s in statuses]))

    async def group(self, oco_group: str) -> list[Conditional]:
        return await self._select(conditional_orders.c.oco_group == oco_group)

    async def open_of(self, account_id: str, ts_code: str | None = None) -> list[Conditional]:
        """The account's conditional orders still waiting or armed (of `ts_code`, when named), oldest first."""
        where = and_(
            conditional_orders.c.account_id == account_id,
            conditional_orders.c.status.in_([Status.WAITING.value, Status.ARMED.value]),
        )
        if ts_code is not None:
            where = and_(where, conditional_orders.c.ts_code == ts_code)
        return await self._select(where)

    async def listed(self, account_id: str | None, status: Status | None, limit: int) -> list[Conditional]:
        query = select(conditional_orders)
        if account_id is not None:
            query = query.where(conditional_orders.c.account_id == account_id)
        if status is not None:
            query = query.where(conditional_orders.c.status == status.value)
        query = query.order_by(conditional_orders.c.created_at.desc(), conditional_orders.c.conditional_id).limit(limit)
        rows: list[Conditional] = []
        async for tx in self.db.transaction():
            async with tx as s:
                rows = [_of(r) for r in (await s.execute(query)).all()]
        return rows

    async def _select(self, where: Any) -> list[Conditional]:
        rows: list[Conditional] = []
        async for tx in self.db.transaction():
            async with tx as s:
                result = await s.execute(
                    select(conditional_orders).where(where).order_by(conditional_orders.c.created_at)
                )
                rows = [_of(r) for r in result.all()]
        return rows

    async def move(
        self, c: Conditional, to: Status, at: datetime, *, cancel_partners: bool = False, **values: Any
    ) -> Conditional:
        """Move `c` (as read: its status and version) to `to` with `values`, and write its event, in one transaction.
        `cancel_partners`: its OCO group's other legs still waiting or armed are cancelled in the same transaction
        (the first leg to trigger cancels the others). Raises StaleMove when `c` is no longer as read."""
        if not may_move(c.status, to):
            raise ValueError(f"a conditional order may not move from {c.status} to {to}")
        moved = _moved(c, to, at, values)
        async for tx in self.db.transaction():
            async with tx as s:
                if cancel_partners and c.oco_group is not None:
                    # The group's rows locked in one order (primary key) before any is changed: two legs triggered
                    # at once by two processes queue up here instead of deadlocking; the second finds its own leg
                    # cancelled by the first.
                    await s.execute(
                        select(conditional_orders.c.conditional_id)
                        .where(conditional_orders.c.oco_group == c.oco_group)
                        .order_by(conditional_orders.c.conditional_id)
                        .with_for_update()
                    )
                await self._update(s, c, moved)
                if cancel_partners and c.oco_group is not None:
                    await self._cancel_partners(s, c, at)
        self._woken()
        return moved

    async def retry_later(self, c: Conditional, at: datetime, message: str) -> Conditional:
        """A triggered order's attempt at its child was answered "not now" (or not at all): recorded, its lease
        running from now; still triggered. No event (nothing changed for its owner)."""
        moved = _moved(c, c.status, c.updated_at, {"message": message, "claimed_at": at})
        async for tx in self.db.transaction():
            async with tx as s:
                await self._update(s, c, moved)
        return moved

    async def reclaim(self, c: Conditional, at: datetime) -> Conditional:
        """A triggered order whose attempt stalled (its lease ran out) is attempted again by the caller whose
        version-checked UPDATE wins."""
        moved = _moved(c, c.status, c.updated_at, {"claimed_at": at, "attempts": c.attempts + 1})
        async for tx in self.db.transaction():
            async with tx as s:
                await self._update(s, c, moved)
        return moved

    async def _update(self, s: DbSession, c: Conditional, moved: Conditional) -> None:
        row = moved.row()
        del row["conditional_id"]
        result = await s.execute(
            update(conditional_orders)
            .where(
                and_(
                    conditional_orders.c.conditional_id == c.conditional_id,
                    conditional_orders.c.status == c.status.value,
                    conditional_orders.c.version == c.version,
                )
            )
            .values(**row)
        )
        if result.rowcount != 1:
            raise StaleMove(c.conditional_id)
        if moved.status is not c.status:
            await add_to_outbox(s, outbox, changed_event(moved, moved.updated_at, source=self.source))

    async def _cancel_partners(self, s: DbSession, c: Conditional, at: datetime) -> None:
        result = await s.execute(
            select(conditional_orders).where(
                conditional_orders.c.oco_group == c.oco_group,
                conditional_orders.c.conditional_id != c.conditional_id,
                conditional_orders.c.status.in_([Status.WAITING.value, Status.ARMED.value]),
            )
        )
        for partner in [_of(r) for r in result.all()]:
            cancelled = _moved(partner, Status.CANCELLED, at,
                               {"message": f"cancelled: its OCO partner {c.conditional_id} triggered"})  # fmt: skip
            await self._update(s, partner, cancelled)

    def _woken(self) -> None:
        if self.on_event is not None:
            self.on_event()


def _moved(c: Conditional, to: Status, at: datetime, values: dict[str, Any]) -> Conditional:
    from dataclasses import replace

    return replace(c, status=to, version=c.version + 1, updated_at=at, **values)
