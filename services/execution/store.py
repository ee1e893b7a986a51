"""Execution's own tables (orders, their transitions, trades, refused submissions, the paper broker's book, the
outbox) and the transactions that change them. Money is stored in integer fen: exact on MySQL and SQLite alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
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
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from services.execution import cash as cashbook
from services.execution import events
from services.execution.brokers.base import BrokerReport
from services.execution.cash import Cash, OpenBuy, account_cash, buy_reservation_fen
from services.execution.lifecycle import OrderProgress, ReportPlan, average_price, plan_report
from services.execution.positions import OpenSell, TradeLot, holdings, oversell_message, sellable
from shared.core.domain import Order, OrderSide, OrderStatus, OrderType, from_fen, to_fen
from shared.core.domain.money import FEN
from shared.core.market.rules import trade_fees
from shared.platform.approval import OrderTerms
from shared.platform.clock import UtcDateTime, utcnow
from shared.platform.db import Database, DbSession, new_metadata
from shared.platform.events import Envelope
from shared.platform.internal_auth import Principal
from shared.platform.observability import current_correlation_id, new_id
from shared.platform.outbox import add_to_outbox, outbox_table

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Autoincrement needs INTEGER PRIMARY KEY on SQLite; BIGINT elsewhere.
_AutoId = BigInteger().with_variant(Integer(), "sqlite")

metadata = new_metadata()

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
    Column("price_fen", BigInteger, nullable=True),  # limit price; NULL for market orders
    # Buys: the most a share may cost, which cash is reserved at (the limit price, or for a market buy the
    # limit-up price of the day it was admitted). NULL for sells.
    Column("price_cap_fen", BigInteger, nullable=True),
    Column("status", String(20), nullable=False),
    Column("filled_qty", BigInteger, nullable=False),
    Column("filled_amount_fen", BigInteger, nullable=False),  # sum of qty * price over the fills, exact
    Column("reason", String(255), nullable=True),
    Column("version", Integer, nullable=False),  # optimistic concurrency: every update bumps it
    Column("correlation_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "client_order_id", name="uq_orders_account_client_order"),
    UniqueConstraint("decision_id", name="uq_orders_decision_id"),
    Index("ix_orders_status_updated", "status", "updated_at"),
    Index("ix_orders_account_created", "account_id", "created_at"),
)

order_transitions = Table(
    "order_transitions",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("order_id", String(32), ForeignKey("orders.order_id"), nullable=False),
    Column("from_status", String(20), nullable=True),  # NULL: the order was created
    Column("to_status", String(20), nullable=False),
    Column("reason", String(255), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_order_transitions_order", "order_id", "id"),
)

trades = Table(
    "trades",
    metadata,
    Column("trade_id", String(64), primary_key=True),  # the broker's fill id: a fill is recorded once
    Column("order_id", String(32), ForeignKey("orders.order_id"), nullable=False),
    Column("client_order_id", String(64), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("ts_code", String(16), nullable=False),
    Column("side", String(8), nullable=False),
    Column("qty", BigInteger, nullable=False),
    Column("price_fen", BigInteger, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("commission_fen", BigInteger, nullable=False),
    Column("stamp_duty_fen", BigInteger, nullable=False),
    Column("transfer_fee_fen", BigInteger, nullable=False),
    Column("traded_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_trades_order", "order_id"),
    Index("ix_trades_account_traded", "account_id", "traded_at"),
)

refused_submissions = Table(
    "refused_submissions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("reason", String(255), nullable=False),
    Column("decision_id", String(64), nullable=True),
    Column("client_order_id", String(64), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("terms", Text, nullable=False),  # the order terms as submitted, JSON
    Column("principal_subject", String(128), nullable=False),
    Column("principal_role", String(32), nullable=False),
    Column("principal_account_id", String(64), nullable=True),
    Column("correlation_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_refused_submissions_created", "created_at"),
)

# The paper broker's own book. It stands for an outside system: no foreign keys into execution's orders.
# A row without ts_code/side/order_type/qty is a tombstone: the order was cancelled before it reached the broker.
paper_orders = Table(
    "paper_orders",
    metadata,
    Column("order_id", String(32), primary_key=True),
    Column("ts_code", String(16), nullable=True),
    Column("side", String(8), nullable=True),
    Column("order_type", String(8), nullable=True),
    Column("qty", BigInteger, nullable=True),
    Column("price_fen", BigInteger, nullable=True),
    Column("status", String(20), nullable=False),
    Column("reason", String(255), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

paper_fills = Table(
    "paper_fills",
    metadata,
    Column("fill_id", String(64), primary_key=True),
    Column("order_id", String(32), ForeignKey("paper_orders.order_id"), nullable=False),
    Column("qty", BigInteger, nullable=False),
    Column("price_fen", BigInteger, nullable=False),
    Column("traded_at", UtcDateTime, nullable=False),
    Index("ix_paper_fills_order", "order_id"),
)

# One row per account: admission locks it (an UPDATE, in the transaction that checks and inserts an order), so
# that two orders of one account are admitted one after the other and cannot both spend the same shares or cash.
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("admissions", BigInteger, nullable=False),  # bumped by every admission attempt: the lock
    Column("created_at", UtcDateTime, nullable=False),
)

# The account's cash, append-only: balance = sum(amount_fen). One entry per idempotency key and account: the
# opening cash ("opening"), each fill ("trade:<trade_id>"), each deposit or withdrawal (the caller's key).
cash_ledger = Table(
    "cash_ledger",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("account_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # opening | deposit | withdrawal | buy_fill | sell_fill
    Column("amount_fen", BigInteger, nullable=False),  # signed: + money in, - money out
    Column("idempotency_key", String(80), nullable=False),
    Column("trade_id", String(64), nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("correlation_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "idempotency_key", name="uq_cash_ledger_account_key"),
)

outbox = outbox_table(metadata)


def _fen_or_none(value: Decimal | None) -> int | None:
    return None if value is None else to_fen(value)


def _price_or_none(fen: int | None) -> Decimal | None:
    return None if fen is None else from_fen(fen)


@dataclass(frozen=True)
class StoredOrder:
    """An order as execution records it: the domain view plus what the store needs to update it safely."""

    order: Order
    decision_id: str
    filled_amount: Decimal
    version: int
    price_cap: Decimal | None = None  # buys: the most a share may cost, which its cash is reserved at

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
        )


def _stored_order(row: Row[Any]) -> StoredOrder:
    filled_amount = from_fen(row.filled_amount_fen)
    order = Order(
        order_id=row.order_id,
        client_order_id=row.client_order_id,
        account_id=row.account_id,
        ts_code=row.ts_code,
        side=OrderSide(row.side),
        order_type=OrderType(row.order_type),
        qty=row.qty,
        price=_price_or_none(row.price_fen),
        status=OrderStatus(row.status),
        filled_qty=row.filled_qty,
        avg_fill_price=average_price(filled_amount, row.filled_qty),
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
    return StoredOrder(
        order=order,
        decision_id=row.decision_id,
        filled_amount=filled_amount,
        version=row.version,
        price_cap=_price_or_none(row.price_cap_fen),
    )


@dataclass(frozen=True)
class TradeRecord:
    trade_id: str
    order_id: str
    client_order_id: str
    account_id: str
    ts_code: str
    side: str
    qty: int
    price: Decimal
    amount: Decimal
    commission: Decimal
    stamp_duty: Decimal
    transfer_fee: Decimal
    traded_at: datetime

    @property
    def fees(self) -> Decimal:
        return self.commission + self.stamp_duty + self.transfer_fee


def _trade(row: Row[Any]) -> TradeRecord:
    return TradeRecord(
        trade_id=row.trade_id,
        order_id=row.order_id,
        client_order_id=row.client_order_id,
        account_id=row.account_id,
        ts_code=row.ts_code,
        side=row.side,
        qty=row.qty,
        price=from_fen(row.price_fen),
        amount=from_fen(row.amount_fen),
        commission=from_fen(row.commission_fen),
        stamp_duty=from_fen(row.stamp_duty_fen),
        transfer_fee=from_fen(row.transfer_fee_fen),
        traded_at=row.traded_at,
    )


@dataclass(frozen=True)
class AppliedReport:
    """The order after a broker report was applied, and what changed (for metrics)."""

    stored: StoredOrder
    statuses: tuple[OrderStatus, ...]  # every status the order entered, in order
    new_trades: int


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


class EntryExists(Exception):
    """A cash movement's idempotency key was used already on the account: nothing was stored."""

    def __init__(self, entry: LedgerEntry) -> None:
        super().__init__("idempotency key used")
        self.entry = entry


class AdmissionRefused(Exception):
    """The order would spend shares or cash the account does not have: nothing was stored."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: int
    account_id: str
    kind: str
    amount_fen: int
    idempotency_key: str
    trade_id: str | None
    created_by: str
    created_at: datetime


def _entry(row: Row[Any]) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row.id,
        account_id=row.account_id,
        kind=row.kind,
        amount_fen=row.amount_fen,
        idempotency_key=row.idempotency_key,
        trade_id=row.trade_id,
        created_by=row.created_by,
        created_at=row.created_at,
    )


class ExecutionStore:
    def __init__(self, db: Database, *, source: str = "execution", opening_cash_fen: int = 0) -> None:
        self.db = db
        self.source = source
        self.opening_cash_fen = opening_cash_fen  # the first ledger entry of every account

    # --- reads -------------------------------------------------------------------------------------------

    async def get_order(self, order_id: str) -> StoredOrder | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(orders).where(orders.c.order_id == order_id))).first()
        return None if row is None else _stored_order(row)

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
        return None if row is None else _stored_order(row)

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
        query = select(orders).where(
            or_(
                and_(orders.c.account_id == account_id, orders.c.client_order_id == client_order_id),
                orders.c.decision_id == decision_id,
            )
        )
        found = [_stored_order(r) for r in (await s.execute(query)).all()]
        same_key = next(
            (o for o in found if (o.order.account_id, o.order.client_order_id) == (account_id, client_order_id)), None
        )
        by_decision = next((o for o in found if o.decision_id == decision_id), None)
        return same_key, by_decision

    async def list_orders(self, *, account_id: str | None, status: OrderStatus | None, limit: int) -> list[StoredOrder]:
        query = select(orders).order_by(orders.c.created_at.desc(), orders.c.order_id).limit(limit)
        if account_id is not None:
            query = query.where(orders.c.account_id == account_id)
        if status is not None:
            query = query.where(orders.c.status == status.value)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_stored_order(r) for r in rows]

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
        return [_stored_order(r) for r in rows]

    async def open_orders_created_before(self, cutoff: datetime, *, limit: int = 500) -> list[StoredOrder]:
        """Orders not final that were created before `cutoff`: the day orders whose session has closed."""
        query = (
            select(orders)
            .where(
                orders.c.status.in_([status.value for status in OrderStatus if not status.is_final]),
                orders.c.created_at < cutoff,
            )
            .order_by(orders.c.created_at, orders.c.order_id)
            .limit(limit)
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_stored_order(r) for r in rows]

    async def list_trades(self, *, account_id: str | None, order_id: str | None, limit: int) -> list[TradeRecord]:
        query = select(trades).order_by(trades.c.traded_at.desc(), trades.c.trade_id).limit(limit)
        if account_id is not None:
            query = query.where(trades.c.account_id == account_id)
        if order_id is not None:
            query = query.where(trades.c.order_id == order_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_trade(r) for r in rows]

    async def position_inputs(self, account_id: str) -> tuple[list[TradeLot], list[OpenSell]]:
        """Everything an account's positions are computed from: its trades, and the unfilled remainder of its
        sell orders that are not final. One transaction, so the two agree with each other."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                inputs = await self._position_inputs(s, account_id)
        return inputs

    async def _position_inputs(self, s: DbSession, account_id: str) -> tuple[list[TradeLot], list[OpenSell]]:
        open_statuses = [status.value for status in OrderStatus if not status.is_final]
        trade_rows = (
            await s.execute(
                select(trades.c.ts_code, trades.c.side, trades.c.qty, trades.c.traded_at).where(
                    trades.c.account_id == account_id
                )
            )
        ).all()
        sell_rows = (
            await s.execute(
                select(orders.c.ts_code, orders.c.qty, orders.c.filled_qty).where(
                    orders.c.account_id == account_id,
                    orders.c.side == OrderSide.SELL.value,
                    orders.c.status.in_(open_statuses),
                )
            )
        ).all()
        lots = [TradeLot(r.ts_code, OrderSide(r.side), r.qty, r.traded_at) for r in trade_rows]
        sells = [OpenSell(r.ts_code, r.qty - r.filled_qty) for r in sell_rows]
        return lots, sells

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

    # --- writes ------------------------------------------------------------------------------------------

    async def record_refusal(
        self, *, reason: str, terms: OrderTerms, decision_id: str | None, principal: Principal
    ) -> str:
        refusal_id = new_id()
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(
                    refused_submissions.insert().values(
                        id=refusal_id,
                        reason=reason[:255],
                        decision_id=decision_id[:64] if decision_id else None,
                        client_order_id=terms.client_order_id,
                        account_id=terms.account_id,
                        terms=json.dumps(terms.model_dump(mode="json"), sort_keys=True),
                        principal_subject=principal.subject[:128],
                        principal_role=principal.role[:32],
                        principal_account_id=principal.account_id,
                        correlation_id=current_correlation_id(),
                        created_at=utcnow(),
                    )
                )
        return refusal_id

    async def create_order(
        self, terms: OrderTerms, decision_id: str, *, today: date, price_cap: Decimal | None = None
    ) -> StoredOrder:
        """Admit a new order: in one transaction, lock the account, check that a sell has the sellable shares
        (trades, T+1 as of `today`, open sells' reservations) and a buy the available cash (at `price_cap` a
        share: the limit price, or the limit-up price of a market buy), then record it ACCEPTED with its
        `order.accepted` event. Under the lock and before any check, an order with the same (account_id,
        client_order_id) or decision_id raises AlreadyPlaced (nothing stored). Raises AdmissionRefused (nothing
        stored) when the account cannot afford it, and IntegrityError when a concurrent insert of the same keys
        was not serialised by the lock (cannot happen once the account row exists; kept as the last word)."""
        side = OrderSide(terms.side)
        cap_fen: int | None = None
        if side is OrderSide.BUY:
            cap = price_cap if price_cap is not None else terms.price
            if cap is None:
                raise ValueError("a buy needs a price cap to reserve cash at")
            cap_fen = to_fen(cap)
        now = utcnow()
        order = Order(
            order_id=new_id(),
            client_order_id=terms.client_order_id,
            account_id=terms.account_id,
            ts_code=terms.ts_code,
            side=side,
            order_type=OrderType(terms.order_type),
            qty=terms.qty,
            price=terms.price,
            status=OrderStatus.ACCEPTED,
            created_at=now,
            updated_at=now,
        )
        stored = StoredOrder(
            order=order,
            decision_id=decision_id,
            filled_amount=Decimal("0.00"),
            version=1,
            price_cap=_price_or_none(cap_fen),
        )
        for _ in range(2):
            async for attempt in self.db.transaction():
                async with attempt as s:
                    if not await self._lock_account(s, order.account_id):
                        locked = False
                    else:
                        locked = True
                        same_key, by_decision = await self._find_by_key_or_decision(
                            s, order.account_id, order.client_order_id, decision_id
                        )
                        if same_key is not None or by_decision is not None:
                            raise AlreadyPlaced(same_key, by_decision)
                        if side is OrderSide.SELL:
                            await self._check_sellable(s, order, today)
                        else:
                            assert cap_fen is not None
                            await self._check_cash(s, order, cap_fen, today)
                        await s.execute(
                            orders.insert().values(
                                order_id=order.order_id,
                                client_order_id=order.client_order_id,
                                account_id=order.account_id,
                                decision_id=decision_id,
                                ts_code=order.ts_code,
                                side=order.side.value,
                                order_type=order.order_type.value,
                                qty=order.qty,
                                price_fen=_fen_or_none(order.price),
                                price_cap_fen=cap_fen,
                                status=order.status.value,
                                filled_qty=0,
                                filled_amount_fen=0,
                                reason=None,
                                version=1,
                                correlation_id=current_correlation_id(),
                                created_at=now,
                                updated_at=now,
                            )
                        )
                        await self._transition(s, order.order_id, None, OrderStatus.ACCEPTED, None, now)
                        await add_to_outbox(s, outbox, events.order_event(order, source=self.source))
            if locked:
                return stored
            await self.ensure_account(order.account_id)
        raise AssertionError(f"account {order.account_id} could not be created")

    async def _lock_account(self, s: DbSession, account_id: str) -> bool:
        """Take the account's admission lock for the rest of the transaction; False when it has no row yet.
        An UPDATE rather than SELECT ... FOR UPDATE: on MariaDB it locks the row, on SQLite it takes the write
        lock before anything is read (one writer), so the checks that follow see every earlier admission."""
        result = await s.execute(
            update(accounts).where(accounts.c.account_id == account_id).values(admissions=accounts.c.admissions + 1)
        )
        return bool(result.rowcount == 1)

    async def _check_sellable(self, s: DbSession, order: Order, today: date) -> None:
        lots, sells = await self._position_inputs(s, order.account_id)
        held, can_sell = sellable(holdings(lots, sells, today=today), order.ts_code)
        message = oversell_message(order.ts_code, order.qty, held, can_sell)
        if message is not None:
            raise AdmissionRefused("insufficient_position", message, held_qty=held, sellable_qty=can_sell)

    async def _check_cash(self, s: DbSession, order: Order, cap_fen: int, today: date) -> None:
        cash = await self._cash(s, order.account_id, today)
        needed = buy_reservation_fen(order.qty, cap_fen, today)
        if needed > cash.available_fen:
            raise AdmissionRefused(
                "insufficient_cash",
                f"cannot buy {order.qty} shares of {order.ts_code} at up to {cashbook.cny(cap_fen)}: it needs "
                f"{cashbook.cny(needed)} CNY with fees, {cashbook.cny(cash.available_fen)} available (balance "
                f"{cashbook.cny(cash.balance_fen)}, reserved by open buys {cashbook.cny(cash.reserved_fen)})",
                needed=cashbook.cny(needed),
                available=cashbook.cny(cash.available_fen),
            )

    # --- cash ------------------------------------------------------------------------------------------

    async def ensure_account(self, account_id: str) -> None:
        """Create the account's row and its opening cash entry the first time the account is seen."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                exists = (
                    await s.execute(select(accounts.c.account_id).where(accounts.c.account_id == account_id))
                ).first()
        if exists is not None:
            return
        now = utcnow()
        try:
            async for attempt in self.db.transaction():
                async with attempt as s:
                    await s.execute(accounts.insert().values(account_id=account_id, admissions=0, created_at=now))
                    await s.execute(
                        cash_ledger.insert().values(
                            account_id=account_id,
                            kind=cashbook.OPENING,
                            amount_fen=self.opening_cash_fen,
                            idempotency_key=cashbook.OPENING,
                            trade_id=None,
                            created_by=self.source,
                            correlation_id=current_correlation_id(),
                            created_at=now,
                        )
                    )
        except IntegrityError:
            pass  # created at the same moment by another request

    async def _cash(self, s: DbSession, account_id: str, today: date) -> Cash:
        ledger_sum = (
            await s.execute(
                select(func.coalesce(func.sum(cash_ledger.c.amount_fen), 0)).where(
                    cash_ledger.c.account_id == account_id
                )
            )
        ).scalar_one()
        open_statuses = [status.value for status in OrderStatus if not status.is_final]
        buy_rows = (
            await s.execute(
                select(orders.c.qty, orders.c.filled_qty, orders.c.price_cap_fen).where(
                    orders.c.account_id == account_id,
                    orders.c.side == OrderSide.BUY.value,
                    orders.c.status.in_(open_statuses),
                )
            )
        ).all()
        # A buy without a cap (an open market buy admitted before caps were recorded, migration 0002) reserves
        # nothing: there is no price to reserve at.
        open_buys = [OpenBuy(r.qty - r.filled_qty, r.price_cap_fen) for r in buy_rows if r.price_cap_fen]
        return account_cash(int(ledger_sum), open_buys, today=today)

    async def known_account(self, account_id: str) -> bool:
        """Whether the account has been seen: it has its row (an order, a cash movement, its owner looked at it)
        or orders (placed before the accounts table existed)."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(select(accounts.c.account_id).where(accounts.c.account_id == account_id))
                ).first()
                if row is None:
                    row = (
                        await s.execute(select(orders.c.order_id).where(orders.c.account_id == account_id).limit(1))
                    ).first()
        return row is not None

    async def cash(self, account_id: str, today: date) -> Cash:
        await self.ensure_account(account_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                cash = await self._cash(s, account_id, today)
        return cash

    async def find_entry(self, account_id: str, idempotency_key: str) -> LedgerEntry | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(
                        select(cash_ledger).where(
                            cash_ledger.c.account_id == account_id, cash_ledger.c.idempotency_key == idempotency_key
                        )
                    )
                ).first()
        return None if row is None else _entry(row)

    async def move_cash(
        self, account_id: str, kind: str, amount_fen: int, idempotency_key: str, *, created_by: str, today: date
    ) -> tuple[LedgerEntry, bool]:
        """Record a deposit (amount > 0) or a withdrawal (amount < 0) once per idempotency key: (the entry,
        whether it is new). Under the account's lock and before anything else, a used key raises EntryExists
        with the entry it made (a duplicate waiting behind the first copy is answered with it, not checked against
        the cash the copy took). A withdrawal may not take more than the available cash (AdmissionRefused), checked
        under the lock like an order's admission."""
        await self.ensure_account(account_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                if not await self._lock_account(s, account_id):
                    raise AssertionError(f"account {account_id} vanished")
                used = (
                    await s.execute(
                        select(cash_ledger).where(
                            cash_ledger.c.account_id == account_id, cash_ledger.c.idempotency_key == idempotency_key
                        )
                    )
                ).first()
                if used is not None:
                    raise EntryExists(_entry(used))
                if amount_fen < 0:
                    cash = await self._cash(s, account_id, today)
                    if -amount_fen > cash.available_fen:
                        raise AdmissionRefused(
                            "insufficient_cash",
                            f"cannot withdraw {cashbook.cny(-amount_fen)} CNY: {cashbook.cny(cash.available_fen)} "
                            f"available (balance {cashbook.cny(cash.balance_fen)}, reserved by open buys "
                            f"{cashbook.cny(cash.reserved_fen)})",
                            available=cashbook.cny(cash.available_fen),
                        )
                await s.execute(
                    cash_ledger.insert().values(
                        account_id=account_id,
                        kind=kind,
                        amount_fen=amount_fen,
                        idempotency_key=idempotency_key,
                        trade_id=None,
                        created_by=created_by[:128],
                        correlation_id=current_correlation_id(),
                        created_at=utcnow(),
                    )
                )
        entry = await self.find_entry(account_id, idempotency_key)
        assert entry is not None
        return entry, True

    async def ledger(self, account_id: str, limit: int = 100) -> list[LedgerEntry]:
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (
                    await s.execute(
                        select(cash_ledger)
                        .where(cash_ledger.c.account_id == account_id)
                        .order_by(cash_ledger.c.id.desc())
                        .limit(limit)
                    )
                ).all()
        return [_entry(r) for r in rows]

    async def apply_report(self, order_id: str, report: BrokerReport, *, attempts: int = 3) -> AppliedReport:
        """Record what the broker reported: status changes, new trades and their events, in one transaction.

        Safe to call again with the same report (fills already recorded are skipped) and from two places at
        once (the version check makes the loser re-read and find nothing left to do)."""
        for attempt in range(attempts):
            try:
                return await self._apply_once(order_id, report)
            except (ConcurrentUpdate, IntegrityError):
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def _apply_once(self, order_id: str, report: BrokerReport) -> AppliedReport:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(orders).where(orders.c.order_id == order_id))).first()
                if row is None:
                    raise LookupError(f"order {order_id} does not exist")
                current = _stored_order(row)
                recorded = set(
                    (await s.execute(select(trades.c.trade_id).where(trades.c.order_id == order_id))).scalars()
                )
                plan = plan_report(current.progress, report, recorded)
                if not plan.changed:
                    return AppliedReport(current, (), 0)
                now = utcnow()
                after = _advance(current, plan, now)
                # The version-checked update comes first: it takes the row lock, so a concurrent applier waits here
                # and then finds the version moved on, before it could insert a trade.
                result = await s.execute(
                    update(orders)
                    .where(orders.c.order_id == order_id, orders.c.version == current.version)
                    .values(
                        status=after.order.status.value,
                        filled_qty=after.order.filled_qty,
                        filled_amount_fen=to_fen(after.filled_amount),
                        reason=None if after.order.reason is None else after.order.reason[:255],
                        version=after.version,
                        updated_at=now,
                    )
                )
                if result.rowcount != 1:
                    raise ConcurrentUpdate(order_id)
                previous = current.order.status
                for status in plan.steps:
                    await self._transition(s, order_id, previous, status, plan.reason if status.is_final else None, now)
                    previous = status
                for envelope in self._events(current, after, plan, now):
                    await add_to_outbox(s, outbox, envelope)
                for fill in plan.new_fills:
                    amount = fill.price * fill.qty
                    fees = trade_fees(
                        amount,
                        is_sell=current.order.side is OrderSide.SELL,
                        trade_date=events.exchange_date(fill.traded_at),
                    )
                    await s.execute(
                        trades.insert().values(
                            trade_id=fill.fill_id,
                            order_id=order_id,
                            client_order_id=current.order.client_order_id,
                            account_id=current.order.account_id,
                            ts_code=current.order.ts_code,
                            side=current.order.side.value,
                            qty=fill.qty,
                            price_fen=to_fen(fill.price),
                            amount_fen=to_fen(amount),
                            commission_fen=to_fen(fees.commission),
                            stamp_duty_fen=to_fen(fees.stamp_duty),
                            transfer_fee_fen=to_fen(fees.transfer_fee),
                            traded_at=fill.traded_at,
                            created_at=now,
                        )
                    )
                    side = current.order.side
                    await s.execute(
                        cash_ledger.insert().values(
                            account_id=current.order.account_id,
                            kind=cashbook.BUY_FILL if side is OrderSide.BUY else cashbook.SELL_FILL,
                            amount_fen=cashbook.fill_cash_fen(side, to_fen(amount), to_fen(fees.total)),
                            idempotency_key=cashbook.trade_key(fill.fill_id),
                            trade_id=fill.fill_id,
                            created_by=self.source,
                            correlation_id=current_correlation_id(),
                            created_at=now,
                        )
                    )
        return AppliedReport(after, plan.steps, len(plan.new_fills))

    def _events(self, before: StoredOrder, after: StoredOrder, plan: ReportPlan, now: datetime) -> list[Envelope]:
        """The events of one report, in the order they happened: submitted, then the trades, then the status
        the fills (or the cancel / rejection) led to."""
        out: list[Envelope] = []
        steps = list(plan.steps)
        if steps and steps[0] is OrderStatus.SUBMITTED:
            submitted = before.order.model_copy(update={"status": OrderStatus.SUBMITTED, "updated_at": now})
            out.append(events.order_event(submitted, source=self.source))
            steps = steps[1:]
        for fill in plan.new_fills:
            out.append(events.trade_event(after.order, fill, source=self.source))
        for status in steps:
            out.append(events.order_event(after.order.model_copy(update={"status": status}), source=self.source))
        return out

    async def _transition(
        self,
        s: DbSession,
        order_id: str,
        from_status: OrderStatus | None,
        to_status: OrderStatus,
        reason: str | None,
        at: datetime,
    ) -> None:
        await s.execute(
            order_transitions.insert().values(
                order_id=order_id,
                from_status=None if from_status is None else from_status.value,
                to_status=to_status.value,
                reason=None if reason is None else reason[:255],
                at=at,
            )
        )

    # --- for tests and operators ------------------------------------------------------------------------

    async def count(self, table: Table, **where: Any) -> int:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        async for attempt in self.db.transaction():
            async with attempt as s:
                count = int((await s.execute(query)).scalar_one())
        return count


def _advance(current: StoredOrder, plan: ReportPlan, now: datetime) -> StoredOrder:
    order = current.order.model_copy(
        update={
            "status": plan.final_status,
            "filled_qty": plan.filled_qty,
            "avg_fill_price": average_price(plan.filled_amount, plan.filled_qty),
            "reason": plan.reason,
            "updated_at": now,
        }
    )
    return StoredOrder(
        order=order,
        decision_id=current.decision_id,
        filled_amount=plan.filled_amount.quantize(FEN),
        version=current.version + 1,
        price_cap=current.price_cap,
    )
