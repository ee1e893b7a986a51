"""Orders and their transitions: the tables, the stored order, and the reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    or_,
    select,
)
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from services.execution.lifecycle import OrderProgress, average_price
from services.execution.store.base import AutoId, StoreBase, listed_after, metadata
from shared.core.domain import Order, OrderSide, OrderStatus, OrderType
from shared.platform.approval import OrderTerms, PaperFill
from shared.platform.clock import UtcDateTime
from shared.platform.columns import CnyFen
from shared.platform.db import DbSession

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(32), primary_key=True),
    Column("client_order_id", String(64), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("decision_id", String(64), nullable=False),  # risk's decision: one approval, one order
    Column("ts_code", String(16), nullable=False),
    Column("side", String(8), nullable=False),
    Column("order_type", String(8), nullable=False),
    Column("qty", BigInteger, nullable=False),
    Column("price_fen", CnyFen, key="price", nullable=True),  # limit price; NULL for market orders
    # Buys: the most a share may cost, which cash is reserved at (the limit price, or for a market buy the
    # limit-up price of the day it was admitted). NULL for sells.
    Column("price_cap_fen", CnyFen, key="price_cap", nullable=True),
    Column("status", String(20), nullable=False),
    Column("filled_qty", BigInteger, nullable=False),
    Column(
        "filled_amount_fen", CnyFen, key="filled_amount", nullable=False
    ),  # sum of qty * price over the fills, exact
    Column("reason", String(255), nullable=True),
    Column("version", Integer, nullable=False),  # optimistic concurrency: every update bumps it
    Column("correlation_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The strategy instance that placed it (risk verified it and signed it into the approval); NULL: a person's.
    Column("strategy_instance_id", String(32), nullable=True),
    # A strategy instance's own fill rules for the paper broker (shared.platform.approval.PaperFill as JSON, signed
    # into the approval); NULL: the platform's (LH_PAPER_*), as for every person's order.
    Column("paper_fill", Text, nullable=True),
    # The arrival price for cost analysis (docs/tca.md): the latest quote execution held when the order was created
    # (`arrival_source` live) or else the last close (last_close), and that price's time. NULL: none could be had
    # (or the order predates revision 0010).
    Column("arrival_price_fen", CnyFen, key="arrival_price", nullable=True),
    Column("arrival_source", String(16), nullable=True),
    Column("arrival_at", UtcDateTime, nullable=True),
    # A market order's type (shared.core.market.order_types; risk checked it against the exchange and signed it into
    # the approval); NULL: a limit order. Market orders from before revision 0011 were placed as counterparty_best,
    # which 0011 writes into them. Time in force: "day", the only one the exchanges take.
    Column("market_type", String(24), nullable=True),
    Column("time_in_force", String(8), nullable=False, server_default="day"),
    UniqueConstraint("account_id", "client_order_id", name="uq_orders_account_client_order"),
    UniqueConstraint("decision_id", name="uq_orders_decision_id"),
    Index("ix_orders_status_updated", "status", "updated_at"),
    Index("ix_orders_account_created", "account_id", "created_at"),
    Index("ix_orders_account_status", "account_id", "status"),
    Index("ix_orders_strategy_instance_created", "strategy_instance_id", "created_at"),
)

order_transitions = Table(
    "order_transitions",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("order_id", String(32), ForeignKey("orders.order_id"), nullable=False),
    Column("from_status", String(20), nullable=True),  # NULL: the order was created
    Column("to_status", String(20), nullable=False),
    Column("reason", String(255), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_order_transitions_order", "order_id", "id"),
)


@dataclass(frozen=True)
class StoredOrder:
    """An order as execution records it: the domain view plus what the store needs to update it safely."""

    order: Order
    decision_id: str
    filled_amount: Decimal
    version: int
    price_cap: Decimal | None = None  # buys: the most a share may cost, which its cash is reserved at
    paper_fill: PaperFill | None = None  # a strategy instance's own fill rules (None: the platform's)

    @property
    def progress(self) -> OrderProgress:
        o = self.order
        return OrderProgress(o.status, o.qty, o.filled_qty, self.filled_amount, o.reason)

    def terms(self) -> OrderTerms:
        o = self.order
        return OrderTerms(
            client_order_id=o.client_order_id,
            account_id=o.account_id,
            ts_code=o.ts_code,
            side=o.side.value,
            order_type=o.order_type.value,
            qty=o.qty,
            price=o.price,
            strategy_instance_id=o.strategy_instance_id,
            paper_fill=self.paper_fill,
            market_type=o.market_type,
            time_in_force=o.time_in_force,
        )


def paper_fill_json(paper_fill: PaperFill | None) -> str | None:
    """The orders.paper_fill column's text (decimals as strings)."""
    return None if paper_fill is None else paper_fill.model_dump_json()


def stored_order(row: Row[Any]) -> StoredOrder:
    filled_amount: Decimal = row.filled_amount
    order = Order(
        order_id=row.order_id,
        client_order_id=row.client_order_id,
        account_id=row.account_id,
        ts_code=row.ts_code,
        side=OrderSide(row.side),
        order_type=OrderType(row.order_type),
        qty=row.qty,
        price=row.price,
        status=OrderStatus(row.status),
        filled_qty=row.filled_qty,
        avg_fill_price=average_price(filled_amount, row.filled_qty),
        reason=row.reason,
        strategy_instance_id=row.strategy_instance_id,
        market_type=row.market_type,
        time_in_force=row.time_in_force,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
    return StoredOrder(
        order=order,
        decision_id=row.decision_id,
        filled_amount=filled_amount,
        version=row.version,
        price_cap=row.price_cap,
        paper_fill=None if row.paper_fill is None else PaperFill.model_validate_json(row.paper_fill),
    )


class ConcurrentUpdate(Exception):
    """Someone else changed the order between our read and our write."""


class AlreadyPlaced(Exception):
    """The submission's (account_id, client_order_id) or its decision was placed already: nothing was stored.
    Found under the account's lock, before any admission check, so that a duplicate waiting behind the first copy
    is answered with that copy instead of being checked against the shares or cash the copy reserved."""

    def __init__(self, same_key: StoredOrder | None, by_decision: StoredOrder | None) -> None:
        super().__init__("already placed")
        self.same_key = same_key
        self.by_decision = by_decision


# The admission's look for the order under its key or its decision (`OrderReads._find_by_key_or_decision`), built
# once (a constant statement: SQLAlchemy neither builds nor cache-keys it again per order).
_BY_KEY_OR_DECISION = select(orders).where(
    or_(
        and_(orders.c.account_id == bindparam("p_account"), orders.c.client_order_id == bindparam("p_client_order_id")),
        orders.c.decision_id == bindparam("p_decision_id"),
    )
)


class OrderReads(StoreBase):
    # --- reads -------------------------------------------------------------------------------------------

    async def get_order(self, order_id: str) -> StoredOrder | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(orders).where(orders.c.order_id == order_id))).first()
        return None if row is None else stored_order(row)

    async def find_order(self, account_id: str, client_order_id: str) -> StoredOrder | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(
                        select(orders).where(
                            orders.c.account_id == account_id, orders.c.client_order_id == client_order_id
                        )
                    )
                ).first()
        return None if row is None else stored_order(row)

    async def find_by_key_or_decision(
        self, account_id: str, client_order_id: str, decision_id: str
    ) -> tuple[StoredOrder | None, StoredOrder | None]:
        """(the order with this client_order_id, an order already placed under this decision): one round trip for
        the two questions every submission asks."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                found = await self._find_by_key_or_decision(s, account_id, client_order_id, decision_id)
        return found

    async def _find_by_key_or_decision(
        self, s: DbSession, account_id: str, client_order_id: str, decision_id: str
    ) -> tuple[StoredOrder | None, StoredOrder | None]:
        params = {"p_account": account_id, "p_client_order_id": client_order_id, "p_decision_id": decision_id}
        found = [stored_order(r) for r in (await s.execute(_BY_KEY_OR_DECISION, params)).all()]
        same_key = next(
            (o for o in found if (o.order.account_id, o.order.client_order_id) == (account_id, client_order_id)), None
        )
        by_decision = next((o for o in found if o.decision_id == decision_id), None)
        return same_key, by_decision

    async def _find_by_keys_or_decisions(
        self, s: DbSession, keys: list[tuple[str, str, str]]
    ) -> tuple[dict[tuple[str, str], StoredOrder], dict[str, StoredOrder]]:
        """`_find_by_key_or_decision` of several (account_id, client_order_id, decision_id): the orders found by
        (account_id, client_order_id), and by decision_id (one statement per account and one by decision)."""
        if not keys:
            return {}, {}
        if len(keys) == 1:  # a single order's: the constant statement
            ((account_id, client_order_id, decision_id),) = keys
            same_key, used = await self._find_by_key_or_decision(s, account_id, client_order_id, decision_id)
            return ({} if same_key is None else {(account_id, client_order_id): same_key}), (
                {} if used is None else {decision_id: used}
            )
        cids: dict[str, set[str]] = {}
        for account_id, client_order_id, _ in keys:
            cids.setdefault(account_id, set()).add(client_order_id)
        wanted = sorted({decision_id for _, _, decision_id in keys})
        # two statements, each on its unique index ((account_id, client_order_id); decision_id), not an OR of both
        by_key: dict[tuple[str, str], StoredOrder] = {}
        for account_id, ids in sorted(cids.items()):
            query = select(orders).where(orders.c.account_id == account_id, orders.c.client_order_id.in_(sorted(ids)))
            for row in (await s.execute(query)).all():
                order = stored_order(row)
                by_key[(order.order.account_id, order.order.client_order_id)] = order
        spent = (await s.execute(select(orders).where(orders.c.decision_id.in_(wanted)))).all()
        by_decision = {o.decision_id: o for o in map(stored_order, spent)}
        return by_key, by_decision

    async def list_orders(
        self,
        *,
        account_id: str | None,
        status: OrderStatus | None,
        limit: int,
        strategy_instance_id: str | None = None,
        oldest_first: bool = False,
        after: str | None = None,
    ) -> list[StoredOrder]:
        """Orders newest first, or in creation order (`oldest_first`, or `after` an order: those created after it).
        Raises LookupError when `after` names no order of the listing (another account's is none either)."""
        query = select(orders).limit(limit)
        if account_id is not None:
            query = query.where(orders.c.account_id == account_id)
        if status is not None:
            query = query.where(orders.c.status == status.value)
        if strategy_instance_id is not None:
            query = query.where(orders.c.strategy_instance_id == strategy_instance_id)
        if after is None and not oldest_first:
            query = query.order_by(orders.c.created_at.desc(), orders.c.order_id)
        else:
            query = query.order_by(orders.c.created_at, orders.c.order_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                if after is not None:
                    query = await listed_after(s, query, orders, orders.c.order_id, after, account_id)
                rows = (await s.execute(query)).all()
        return [stored_order(r) for r in rows]

    async def accepted_orders(
        self, *, updated_before: datetime | None, created_since: datetime | None = None, limit: int = 100
    ) -> list[StoredOrder]:
        """Orders recorded but not (known to be) at the broker: what reconciliation resubmits. `created_since`
        leaves out the day orders of a session that has closed (they are expired, never resubmitted)."""
        query = (
            select(orders)
            .where(orders.c.status == OrderStatus.ACCEPTED.value)
            .order_by(orders.c.updated_at, orders.c.order_id)
            .limit(limit)
        )
        if updated_before is not None:
            query = query.where(orders.c.updated_at < updated_before)
        if created_since is not None:
            query = query.where(orders.c.created_at >= created_since)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [stored_order(r) for r in rows]

    async def open_order_codes(self, limit: int = 1000) -> set[str]:
        """The codes with an order not final (any account): what execution asks the data service ticks of."""
        query = (
            select(orders.c.ts_code)
            .where(orders.c.status.in_([status.value for status in OrderStatus if not status.is_final]))
            .distinct()
            .limit(limit)
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return {str(r.ts_code) for r in rows}

    async def open_orders_created_before(
        self,
        cutoff: datetime | None,
        *,
        limit: int = 500,
        after: tuple[datetime, str] | None = None,
        account_id: str | None = None,
        strategy_instance_id: str | None = None,
        ts_code: str | None = None,
    ) -> list[StoredOrder]:
        """Orders not final that were created before `cutoff` (None: any time): the day orders whose session has
        closed; with `account_id`, `strategy_instance_id`, `ts_code` only those (cancel-all). Oldest first, `limit`
        at a time; `after` = (created_at, order_id) of the last one of the page before."""
        conditions: list[ColumnElement[bool]] = [
            orders.c.status.in_([status.value for status in OrderStatus if not status.is_final])
        ]
        if cutoff is not None:
            conditions.append(orders.c.created_at < cutoff)
        if account_id is not None:
            conditions.append(orders.c.account_id == account_id)
        if strategy_instance_id is not None:
            conditions.append(orders.c.strategy_instance_id == strategy_instance_id)
        if ts_code is not None:
            conditions.append(orders.c.ts_code == ts_code)
        if after is not None:
            at, order_id = after
            conditions.append(
                or_(orders.c.created_at > at, and_(orders.c.created_at == at, orders.c.order_id > order_id))
            )
        query = select(orders).where(*conditions).order_by(orders.c.created_at, orders.c.order_id).limit(limit)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [stored_order(r) for r in rows]

    async def transitions(self, order_id: str) -> list[tuple[str | None, str]]:
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (
                    await s.execute(
                        select(order_transitions.c.from_status, order_transitions.c.to_status)
                        .where(order_transitions.c.order_id == order_id)
                        .order_by(order_transitions.c.id)
                    )
                ).all()
        return [(r.from_status, r.to_status) for r in rows]
