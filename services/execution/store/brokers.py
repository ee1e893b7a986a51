"""Which broker each account trades through, and what execution keeps of its QMT bridges: the (order <-> QMT order)
mapping written before an order is sent, the reconciliations with the broker, and each bridge's trading switches
with their audit trail (docs/qmt-bridge.md, "Execution")."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from services.execution.brokers.base import Fill
from services.execution.store.accounts import AccountStore
from services.execution.store.base import AutoId, metadata, outbox
from services.execution.store.orders import StoredOrder, orders, stored_order
from services.execution.store.trades import trades
from shared.core.domain import OrderStatus
from shared.platform.clock import UtcDateTime, utcnow
from shared.platform.events import Envelope
from shared.platform.outbox import add_to_outbox

PAPER: Final = "paper"
QMT: Final = "qmt"
BROKERS = (PAPER, QMT)

account_brokers = Table(
    "account_brokers",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("broker", String(16), nullable=False),  # paper | qmt (an account without a row: paper)
    Column("bridge_id", String(64), nullable=True),  # qmt: the bridge it trades through (one account a bridge)
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("bridge_id", name="uq_account_brokers_bridge"),
)

# An order cancelled before it was ever sent has a mapping whose `status_msg` starts with this: never sent after.
WITHDRAWN: Final = "cancelled before it was sent to the broker"

broker_orders = Table(
    "broker_orders",
    metadata,
    Column("order_id", String(32), primary_key=True),
    Column("bridge_id", String(64), nullable=False),
    Column("remark", String(24), nullable=False),  # the order_remark it was placed with (protocol.remark_for)
    Column("qmt_order_id", String(32), nullable=True),
    Column("order_sysid", String(64), nullable=True),
    # When `place` was sent (NULL: never, or the bridge answered that nothing was placed): an order sent once is
    # never sent again, only looked up.
    Column("sent_at", UtcDateTime, nullable=True),
    Column("qmt_status", Integer, nullable=True),  # MiniQMT's last status code for it, and its traded volume
    Column("traded_qty", Integer, nullable=True),
    Column("status_msg", String(255), nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("remark", name="uq_broker_orders_remark"),
    Index("ix_broker_orders_bridge", "bridge_id"),
)

broker_reconciliations = Table(
    "broker_reconciliations",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("bridge_id", String(64), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("orders_checked", Integer, nullable=False),
    Column("orders_updated", Integer, nullable=False),
    Column("differences", Text, nullable=False),  # JSON list of {kind, ts_code, platform, broker}
    Index("ix_broker_reconciliations_bridge_at", "bridge_id", "at"),
)

bridge_trading = Table(
    "bridge_trading",
    metadata,
    Column("bridge_id", String(64), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

bridge_trading_audit = Table(
    "bridge_trading_audit",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("bridge_id", String(64), nullable=False),
    Column("old_enabled", Boolean, nullable=False),
    Column("old_read_only", Boolean, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("reason", String(255), nullable=False),
    Column("by", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_bridge_trading_audit_bridge", "bridge_id", "id"),
)


@dataclass(frozen=True)
class AccountBroker:
    account_id: str
    broker: str  # paper | qmt
    bridge_id: str | None
    updated_by: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class BrokerOrder:
    order_id: str
    bridge_id: str
    remark: str
    qmt_order_id: str | None
    order_sysid: str | None
    sent_at: datetime | None
    qmt_status: int | None
    traded_qty: int | None
    status_msg: str | None


@dataclass(frozen=True)
class TradingSwitch:
    bridge_id: str
    enabled: bool
    read_only: bool
    updated_by: str | None
    updated_at: datetime | None

    def wire(self) -> dict[str, bool]:
        return {"enabled": self.enabled, "read_only": self.read_only}


@dataclass(frozen=True)
class Reconciliation:
    reconciliation_id: int
    bridge_id: str
    account_id: str
    at: datetime
    orders_checked: int
    orders_updated: int
    differences: list[dict[str, str | None]]


def _broker_order(row: Row[Any]) -> BrokerOrder:
    return BrokerOrder(
        row.order_id,
        row.bridge_id,
        row.remark,
        row.qmt_order_id,
        row.order_sysid,
        row.sent_at,
        row.qmt_status,
        row.traded_qty,
        row.status_msg,
    )


def _reconciliation(row: Row[Any]) -> Reconciliation:
    return Reconciliation(
        row.id,
        row.bridge_id,
        row.account_id,
        row.at,
        row.orders_checked,
        row.orders_updated,
        json.loads(row.differences),
    )


class BrokerStore(AccountStore):
    # --- which broker an account trades through ----------------------------------------------------------------

    async def account_broker(self, account_id: str) -> AccountBroker:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(select(account_brokers).where(account_brokers.c.account_id == account_id))
                ).first()
        if row is None:
            return AccountBroker(account_id, PAPER, None, None, None)
        return AccountBroker(row.account_id, row.broker, row.bridge_id, row.updated_by, row.updated_at)

    async def account_of_bridge(self, bridge_id: str) -> str | None:
        """The account an admin bound the bridge to (None: none)."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(
                        select(account_brokers.c.account_id).where(
                            account_brokers.c.bridge_id == bridge_id, account_brokers.c.broker == QMT
                        )
                    )
                ).first()
        return None if row is None else str(row.account_id)

    async def bound_bridges(self) -> dict[str, str]:
        """{bridge_id: account_id} of every account trading through QMT."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (
                    await s.execute(
                        select(account_brokers.c.bridge_id, account_brokers.c.account_id).where(
                            account_brokers.c.broker == QMT
                        )
                    )
                ).all()
        return {r.bridge_id: r.account_id for r in rows if r.bridge_id is not None}

    async def set_account_broker(
        self, account_id: str, broker: str, bridge_id: str | None, *, by: str, now: datetime | None = None
    ) -> AccountBroker | None:
        """Bind the account to its broker, unless it has open orders (then None: nothing changed). Raises
        IntegrityError when the bridge is bound to another account already."""
        now = now or utcnow()
        open_statuses = [s.value for s in OrderStatus if not s.is_final]
        async for attempt in self.db.transaction():
            async with attempt as s:
                # the account's lock (as an order's admission takes it): no order is admitted while this looks
                await self._lock_account(s, account_id)
                busy = (
                    await s.execute(
                        select(orders.c.order_id)
                        .where(orders.c.account_id == account_id, orders.c.status.in_(open_statuses))
                        .limit(1)
                    )
                ).first()
                if busy is not None:
                    return None
                exists = (
                    await s.execute(
                        select(account_brokers.c.account_id).where(account_brokers.c.account_id == account_id)
                    )
                ).first()
                values = {"broker": broker, "bridge_id": bridge_id, "updated_by": by[:64], "updated_at": now}
                if exists is None:
                    await s.execute(account_brokers.insert().values(account_id=account_id, **values))
                else:
                    await s.execute(
                        update(account_brokers).where(account_brokers.c.account_id == account_id).values(**values)
                    )
        return AccountBroker(account_id, broker, bridge_id, by, now)

    # --- the order mapping -------------------------------------------------------------------------------------

    async def broker_order(self, order_id: str) -> BrokerOrder | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(broker_orders).where(broker_orders.c.order_id == order_id))).first()
        return None if row is None else _broker_order(row)

    async def broker_order_by_remark(self, remark: str) -> BrokerOrder | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(broker_orders).where(broker_orders.c.remark == remark))).first()
        return None if row is None else _broker_order(row)

    async def record_sending(self, order_id: str, bridge_id: str, remark: str, now: datetime) -> bool:
        """Persist the mapping and the moment `place` is sent, before it is sent: a compare-and-set, won only when no
        send is recorded yet and the order was not withdrawn. Whether it was won: when not, nothing may be sent."""
        won = False
        async for attempt in self.db.transaction():
            async with attempt as s:
                exists = (
                    await s.execute(select(broker_orders.c.order_id).where(broker_orders.c.order_id == order_id))
                ).first()
                if exists is None:
                    try:
                        await s.execute(
                            broker_orders.insert().values(
                                order_id=order_id, bridge_id=bridge_id, remark=remark, sent_at=now, updated_at=now
                            )
                        )
                    except IntegrityError:
                        won = False  # another writer's row came first: it is theirs
                    else:
                        won = True
                else:
                    result = await s.execute(
                        update(broker_orders)
                        .where(
                            broker_orders.c.order_id == order_id,
                            broker_orders.c.sent_at.is_(None),
                            or_(
                                broker_orders.c.status_msg.is_(None),
                                ~broker_orders.c.status_msg.startswith(WITHDRAWN, autoescape=True),
                            ),
                        )
                        .values(bridge_id=bridge_id, sent_at=now, updated_at=now)
                    )
                    won = result.rowcount == 1
        return won

    async def record_withdrawn(self, order_id: str, bridge_id: str, remark: str, why: str, now: datetime) -> None:
        """An order cancelled before it was ever sent: marked (`status_msg` = why, `sent_at` NULL) so that no later
        pass sends it."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                exists = (
                    await s.execute(select(broker_orders.c.order_id).where(broker_orders.c.order_id == order_id))
                ).first()
                if exists is None:
                    await s.execute(
                        broker_orders.insert().values(
                            order_id=order_id,
                            bridge_id=bridge_id,
                            remark=remark,
                            sent_at=None,
                            status_msg=why,
                            updated_at=now,
                        )
                    )
                else:
                    await s.execute(
                        update(broker_orders)
                        .where(broker_orders.c.order_id == order_id, broker_orders.c.sent_at.is_(None))
                        .values(status_msg=why, updated_at=now)
                    )

    async def record_not_sent(self, order_id: str, now: datetime) -> None:
        """The bridge answered that nothing was placed: the order may be sent again."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(
                    update(broker_orders)
                    .where(broker_orders.c.order_id == order_id)
                    .values(sent_at=None, updated_at=now)
                )

    async def record_broker_state(
        self,
        order_id: str,
        *,
        qmt_order_id: str | None = None,
        order_sysid: str | None = None,
        qmt_status: int | None = None,
        traded_qty: int | None = None,
        status_msg: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """What MiniQMT last said of the order (only the fields given)."""
        values: dict[str, Any] = {"updated_at": now or utcnow()}
        for name, value in (
            ("qmt_order_id", qmt_order_id),
            ("order_sysid", order_sysid),
            ("qmt_status", qmt_status),
            ("traded_qty", traded_qty),
        ):
            if value is not None:
                values[name] = value
        if status_msg is not None:
            values["status_msg"] = status_msg[:255]
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(update(broker_orders).where(broker_orders.c.order_id == order_id).values(**values))

    async def recorded_fills(self, order_id: str) -> list[Fill]:
        """The order's trades as fills (every fill so far: a cumulative report starts from them)."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (
                    await s.execute(
                        select(trades.c.trade_id, trades.c.qty, trades.c.price, trades.c.traded_at)
                        .where(trades.c.order_id == order_id)
                        .order_by(trades.c.traded_at, trades.c.trade_id)
                    )
                ).all()
        return [Fill(r.trade_id, int(r.qty), Decimal(r.price), r.traded_at) for r in rows]

    async def open_orders_of(self, account_id: str) -> list[StoredOrder]:
        """The account's orders not final (the QMT reconciliation looks each up at the broker)."""
        open_statuses = [s.value for s in OrderStatus if not s.is_final]
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (
                    await s.execute(
                        select(orders)
                        .where(orders.c.account_id == account_id, orders.c.status.in_(open_statuses))
                        .order_by(orders.c.created_at, orders.c.order_id)
                    )
                ).all()
        return [stored_order(r) for r in rows]

    async def count_unknown(self) -> int:
        return await self.count(orders, status=OrderStatus.UNKNOWN.value)

    # --- reconciliations ---------------------------------------------------------------------------------------

    async def record_reconciliation(
        self,
        bridge_id: str,
        account_id: str,
        at: datetime,
        orders_checked: int,
        orders_updated: int,
        differences: list[dict[str, str | None]],
        event_of: Callable[[int], Envelope] | None,
    ) -> int:
        """Store a reconciliation (and its event, `event_of(its id)`, in the same transaction); its id."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                result = await s.execute(
                    broker_reconciliations.insert().values(
                        bridge_id=bridge_id,
                        account_id=account_id,
                        at=at,
                        orders_checked=orders_checked,
                        orders_updated=orders_updated,
                        differences=json.dumps(differences, sort_keys=True),
                    )
                )
                key = result.inserted_primary_key
                assert key is not None
                new_id = int(key[0])
                if event_of is not None:
                    await add_to_outbox(s, outbox, event_of(new_id))
        return new_id

    async def reconciliations(self, bridge_id: str, limit: int) -> list[Reconciliation]:
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (
                    await s.execute(
                        select(broker_reconciliations)
                        .where(broker_reconciliations.c.bridge_id == bridge_id)
                        .order_by(broker_reconciliations.c.id.desc())
                        .limit(limit)
                    )
                ).all()
        return [_reconciliation(r) for r in rows]

    # --- trading switches --------------------------------------------------------------------------------------

    async def trading_switch(self, bridge_id: str) -> TradingSwitch:
        """The bridge's switches (default: trading disabled)."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(bridge_trading).where(bridge_trading.c.bridge_id == bridge_id))).first()
        if row is None:
            return TradingSwitch(bridge_id, False, False, None, None)
        return TradingSwitch(bridge_id, bool(row.enabled), bool(row.read_only), row.updated_by, row.updated_at)

    async def set_trading_switch(
        self, bridge_id: str, enabled: bool, read_only: bool, *, reason: str, by: str, now: datetime | None = None
    ) -> tuple[TradingSwitch, TradingSwitch]:
        """Set the switches, with an audit row (who, when, old -> new); (old, new)."""
        now = now or utcnow()
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(
                        select(bridge_trading).where(bridge_trading.c.bridge_id == bridge_id).with_for_update()
                    )
                ).first()
                old = (
                    TradingSwitch(bridge_id, False, False, None, None)
                    if row is None
                    else TradingSwitch(
                        bridge_id, bool(row.enabled), bool(row.read_only), row.updated_by, row.updated_at
                    )
                )
                values = {"enabled": enabled, "read_only": read_only, "updated_by": by[:64], "updated_at": now}
                if row is None:
                    await s.execute(bridge_trading.insert().values(bridge_id=bridge_id, **values))
                else:
                    await s.execute(
                        update(bridge_trading).where(bridge_trading.c.bridge_id == bridge_id).values(**values)
                    )
                await s.execute(
                    bridge_trading_audit.insert().values(
                        bridge_id=bridge_id,
                        old_enabled=old.enabled,
                        old_read_only=old.read_only,
                        enabled=enabled,
                        read_only=read_only,
                        reason=reason[:255],
                        by=by[:64],
                        at=now,
                    )
                )
        return old, TradingSwitch(bridge_id, enabled, read_only, by, now)

    async def trading_audit(self, bridge_id: str) -> list[dict[str, Any]]:
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (
                    await s.execute(
                        select(bridge_trading_audit)
                        .where(bridge_trading_audit.c.bridge_id == bridge_id)
                        .order_by(bridge_trading_audit.c.id)
                    )
                ).all()
        return [
            {
                "old": {"enabled": r.old_enabled, "read_only": r.old_read_only},
                "new": {"enabled": r.enabled, "read_only": r.read_only},
                "reason": r.reason,
                "by": r.by,
                "at": r.at,
            }
            for r in rows
        ]
