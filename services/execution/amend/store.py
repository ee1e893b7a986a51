"""The amends' table (migration 0012) and its version-checked moves (docs/order-path.md "Amending an order"). One
amend per order (the original's id is unique): a request repeated with the same terms is answered with it; a
restart between the cancel's confirmation and the replacement finds it here and completes it once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Table, Text, and_, delete, select, update
from sqlalchemy.engine import Row

from services.execution.amend.rules import (
    ACTIVE,
    REPLACEMENT_PREFIX,
    Status,
    may_move,
    replacement_client_order_id,
)
from services.execution.store import metadata
from shared.core.domain import OrderSide
from shared.platform.clock import UtcDateTime
from shared.platform.columns import CnyFen
from shared.platform.db import Database, DbSession

order_amends = Table(
    "order_amends",
    metadata,
    Column("amend_id", String(32), primary_key=True),
    Column("order_id", String(32), nullable=False, unique=True),  # the original: one amend per order
    Column("account_id", String(64), nullable=False),
    Column("owner", String(128), nullable=False),  # who asked: the replacement is decided by risk as them
    Column("owner_role", String(16), nullable=False),
    Column("ts_code", String(16), nullable=False),
    Column("side", String(8), nullable=False),
    Column("old_qty", Integer, nullable=False),
    Column("old_price_fen", CnyFen, key="old_price", nullable=False),
    Column("new_qty", Integer, nullable=False),  # the new total quantity
    Column("new_price_fen", CnyFen, key="new_price", nullable=False),
    Column("status", String(24), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),  # the market clock's time of the request
    Column("updated_at", UtcDateTime, nullable=False),
    # the last time the original's cancel was sent (wall); once cancelled_by_user: the last time a replacement placed
    # before the stop had its cancel taken by the broker (None: not yet)
    Column("cancel_sent_at", UtcDateTime, nullable=True),
    # the last attempt at the replacement (wall time; a lease); once cancelled_by_user: set while the pass still owes
    # the stop a look for a replacement placed before it (to cancel), None once there is none open
    Column("claimed_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("filled_qty", Integer, nullable=True),  # what the original had filled when it ended
    Column("replacement_qty", Integer, nullable=True),
    Column("replacement_order_id", String(32), nullable=True),
    Column("decision_id", String(64), nullable=True),  # risk's decision on the replacement
    Column("reasons", Text, nullable=True),  # JSON [{code, message}]: risk's (or execution's) refusal
    Column("message", Text, nullable=True),  # what became of it, in words
    Index("ix_order_amends_status", "status"),
    Index("ix_order_amends_replacement", "replacement_order_id"),
)


@dataclass(frozen=True)
class Amend:
    amend_id: str
    order_id: str
    account_id: str
    owner: str
    owner_role: str
    ts_code: str
    side: OrderSide
    old_qty: int
    old_price: Decimal
    new_qty: int
    new_price: Decimal
    status: Status
    version: int
    created_at: datetime
    updated_at: datetime
    cancel_sent_at: datetime | None = None
    claimed_at: datetime | None = None
    attempts: int = 0
    filled_qty: int | None = None
    replacement_qty: int | None = None
    replacement_order_id: str | None = None
    decision_id: str | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None

    @property
    def client_order_id(self) -> str:
        """The replacement's client_order_id."""
        return replacement_client_order_id(self.order_id)

    def same_terms(self, price: Decimal, qty: int) -> bool:
        return self.new_price == price and self.new_qty == qty

    def row(self) -> dict[str, Any]:
        values = {k: getattr(self, k) for k in order_amends.c.keys()}  # noqa: SIM118 (keys of a ColumnCollection)
        values.update(
            side=self.side.value,
            status=self.status.value,
            reasons=json.dumps(self.reasons) if self.reasons else None,
        )
        return values

    def as_json(self) -> dict[str, Any]:
        def stamp(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "amend_id": self.amend_id,
            "order_id": self.order_id,
            "account_id": self.account_id,
            "ts_code": self.ts_code,
            "side": self.side.value,
            "old_qty": self.old_qty,
            "old_price": format(self.old_price, "f"),
            "new_qty": self.new_qty,
            "new_price": format(self.new_price, "f"),
            "status": self.status.value,
            "filled_qty": self.filled_qty,
            "replacement_qty": self.replacement_qty,
            "replacement_client_order_id": self.client_order_id,
            "replacement_order_id": self.replacement_order_id,
            "decision_id": self.decision_id,
            "reasons": self.reasons,
            "message": self.message,
            "attempts": self.attempts,
            "created_at": stamp(self.created_at),
            "updated_at": stamp(self.updated_at),
        }


def _of(row: Row[Any]) -> Amend:
    values = {column.key: row._mapping[column] for column in order_amends.c}
    return Amend(
        **{
            **values,
            "side": OrderSide(values["side"]),
            "status": Status(values["status"]),
            "reasons": json.loads(values["reasons"]) if values["reasons"] else [],
        }
    )


class StaleMove(Exception):
    """The amend is no longer as read (another process, or the request and the pass, moved it first): nothing
    changed."""


class AmendExists(Exception):
    """The order has an amend already."""


class AmendStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, amend: Amend) -> None:
        """Raises AmendExists when the order has one (the unique order_id decides two requests at once)."""
        from sqlalchemy.exc import IntegrityError

        try:
            async for tx in self.db.transaction():
                async with tx as s:
                    await s.execute(order_amends.insert().values(**amend.row()))
        except IntegrityError as exc:
            raise AmendExists(amend.order_id) from exc

    async def forget(self, amend: Amend) -> None:
        """Remove an amend whose cancel the broker did not take (nothing changed: the order may be amended again)."""
        async for tx in self.db.transaction():
            async with tx as s:
                await s.execute(
                    delete(order_amends).where(
                        order_amends.c.amend_id == amend.amend_id, order_amends.c.version == amend.version
                    )
                )

    async def get(self, amend_id: str) -> Amend | None:
        rows = await self._select(order_amends.c.amend_id == amend_id)
        return rows[0] if rows else None

    async def of_order(self, order_id: str) -> Amend | None:
        rows = await self._select(order_amends.c.order_id == order_id)
        return rows[0] if rows else None

    async def links(self, order_ids: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """For orders being shown: ({original's id: its replacement's id}, {replacement's id: the original's id})."""
        if not order_ids:
            return {}, {}
        c = order_amends.c
        query = select(c.order_id, c.replacement_order_id).where(
            (c.order_id.in_(order_ids)) | (c.replacement_order_id.in_(order_ids))
        )
        replaced_by: dict[str, str] = {}
        replaces: dict[str, str] = {}
        async for tx in self.db.transaction():
            async with tx as s:
                rows = (await s.execute(query)).all()
        for original, replacement in rows:
            if replacement is not None:
                replaced_by[original] = replacement
                replaces[replacement] = original
        return replaced_by, replaces

    async def active_of_account(self, account_id: str, ts_code: str | None = None) -> list[Amend]:
        """The account's amends still cancelling or replacing (of `ts_code` when named): what a cancel-all stops."""
        c = order_amends.c
        where = and_(c.account_id == account_id, c.status.in_([s.value for s in ACTIVE]))
        if ts_code is not None:
            where = and_(where, c.ts_code == ts_code)
        return await self._select(where)

    async def stopped_unsettled(self) -> list[Amend]:
        """The amends a user's cancel stopped whose replacement the pass still has to look for (and cancel, should
        one placed before the stop be open)."""
        c = order_amends.c
        return await self._select(and_(c.status == Status.CANCELLED_BY_USER.value, c.claimed_at.is_not(None)))

    @staticmethod
    async def stopped_for(s: DbSession, account_id: str, client_order_id: str) -> Amend | None:
        """In the caller's transaction (an order's admission): the amend `client_order_id` is the replacement of, if
        that amend was stopped by the user's cancel. The row is read locked (FOR UPDATE), so a stop committing
        meanwhile waits for the admission: either the admission sees the stop, or the stop comes after the order
        is stored (and the pass cancels it)."""
        if not client_order_id.startswith(REPLACEMENT_PREFIX):
            return None
        c = order_amends.c
        query = (
            select(order_amends)
            .where(c.order_id == client_order_id[len(REPLACEMENT_PREFIX) :], c.account_id == account_id)
            .with_for_update()
        )
        row = (await s.execute(query)).first()
        if row is None:
            return None
        amend = _of(row)
        return amend if amend.status is Status.CANCELLED_BY_USER else None

    async def with_status(self, *statuses: Status) -> list[Amend]:
        return await self._select(order_amends.c.status.in_([s.value for s in statuses]))

    async def _select(self, where: Any) -> list[Amend]:
        rows: list[Amend] = []
        async for tx in self.db.transaction():
            async with tx as s:
                result = await s.execute(select(order_amends).where(where).order_by(order_amends.c.created_at))
                rows = [_of(r) for r in result.all()]
        return rows

    async def move(self, amend: Amend, to: Status, at: datetime, **values: Any) -> Amend:
        """Move `amend` (as read) to `to` with `values`. Raises StaleMove when it is no longer as read."""
        if not may_move(amend.status, to):
            raise ValueError(f"an amend may not move from {amend.status} to {to}")
        return await self.touch(replace(amend, status=to, updated_at=at, **values), amend)

    async def touch(self, moved: Amend, was: Amend | None = None) -> Amend:
        """Write `moved` (same status, new values: a lease taken, an attempt noted) over the row as `was` (default:
        `moved` before its version). Raises StaleMove."""
        was = was or moved
        moved = replace(moved, version=was.version + 1)
        row = moved.row()
        del row["amend_id"]
        async for tx in self.db.transaction():
            async with tx as s:
                result = await s.execute(
                    update(order_amends)
                    .where(
                        and_(
                            order_amends.c.amend_id == was.amend_id,
                            order_amends.c.status == was.status.value,
                            order_amends.c.version == was.version,
                        )
                    )
                    .values(**row)
                )
                if result.rowcount != 1:
                    raise StaleMove(was.amend_id)
        return moved
