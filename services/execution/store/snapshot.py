"""The account snapshot risk seeds its hot book from (`GET /v1/risk-snapshot`, services/execution/snapshot.py):
every row it is built from, read in one read-only REPEATABLE READ transaction, so that the balance, the orders, the
lots and the ids of what they count agree with each other (one consistent view of the account: InnoDB answers every
plain read of the transaction from the snapshot taken at its first)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, literal, or_, select, text, union_all

from services.execution import cash as cashbook
from services.execution.store.accounts import accounts, cash_ledger
from services.execution.store.adjustments import position_adjustments
from services.execution.store.base import StoreBase
from services.execution.store.orders import orders
from services.execution.store.trades import ADJUSTED, trades
from shared.core.domain import OrderSide, OrderStatus, to_fen


@dataclass(frozen=True)
class SnapshotOrderRow:
    client_order_id: str
    ts_code: str
    side: OrderSide
    qty: int
    cap_fen: int  # 0: a sell, or a buy without a recorded cap
    status: str
    filled_qty: int
    traded_qty: int  # the sum of its trades' qty


@dataclass(frozen=True)
class RecentTrade:
    trade_id: str
    ts_code: str
    side: OrderSide
    qty: int
    traded_at: datetime


@dataclass(frozen=True)
class SnapshotRows:
    """An account's rows as of one moment. `older`: by ts_code, the shares of the trades before the window (buys +,
    sells -) and every corporate adjustment; `recent`: the trades in the window, one by one; `entry_keys`: the keys of
    the adjustments and the ids of the deposits and withdrawals recorded in the window."""

    balance_fen: int
    orders: tuple[SnapshotOrderRow, ...]
    older: dict[str, int]
    recent: tuple[RecentTrade, ...]
    entry_keys: frozenset[str]


def _order(r: Any) -> SnapshotOrderRow:
    return SnapshotOrderRow(
        client_order_id=r.client_order_id, ts_code=r.ts_code, side=OrderSide(r.side), qty=int(r.qty),
        cap_fen=to_fen(r.price_cap) if r.price_cap is not None else 0, status=r.status,
        filled_qty=int(r.filled_qty), traded_qty=int(r.traded_qty),
    )  # fmt: skip


class SnapshotReads(StoreBase):
    async def snapshot_rows(self, account_id: str, since: datetime) -> SnapshotRows | None:
        """The account's rows for risk's snapshot (None: it has no accounts row), five reads in one read-only
        REPEATABLE READ transaction. The window is what was recorded (or traded) at or after `since`: orders open or
        updated since, trades created or traded since, adjustments and cash movements recorded since."""
        open_statuses = [status.value for status in OrderStatus if not status.is_final]
        traded_qty = (
            select(func.coalesce(func.sum(trades.c.qty), 0))
            .where(trades.c.order_id == orders.c.order_id)
            .scalar_subquery()
        )
        order_query = select(
            orders.c.client_order_id, orders.c.ts_code, orders.c.side, orders.c.qty, orders.c.price_cap,
            orders.c.status, orders.c.filled_qty, traded_qty.label("traded_qty"),
        ).where(
            orders.c.account_id == account_id,
            or_(orders.c.status.in_(open_statuses), orders.c.updated_at >= since),
        ).order_by(orders.c.created_at, orders.c.order_id)  # fmt: skip
        in_window = or_(trades.c.created_at >= since, trades.c.traded_at >= since)
        signed = func.sum(trades.c.qty).label("qty")
        older_trades = (
            select(trades.c.ts_code, trades.c.side, signed)
            .where(trades.c.account_id == account_id, ~in_window)
            .group_by(trades.c.ts_code, trades.c.side)
        )
        pa = position_adjustments.c
        adjusted = (
            select(pa.ts_code, literal(ADJUSTED).label("side"), func.sum(pa.qty_after - pa.qty_before).label("qty"))
            .where(pa.account_id == account_id)
            .group_by(pa.ts_code)
        )
        recent_query = (
            select(trades.c.trade_id, trades.c.ts_code, trades.c.side, trades.c.qty, trades.c.traded_at)
            .where(trades.c.account_id == account_id, in_window)
            .order_by(trades.c.traded_at, trades.c.trade_id)
        )
        keys_query = union_all(
            select(pa.adjustment_key.label("key")).where(pa.account_id == account_id, pa.created_at >= since),
            select(cast(cash_ledger.c.id, String(20)).label("key")).where(
                cash_ledger.c.account_id == account_id,
                cash_ledger.c.kind.in_([cashbook.DEPOSIT, cashbook.WITHDRAWAL]),
                cash_ledger.c.created_at >= since,
            ),
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                if not self.db.is_sqlite:
                    # the first statement, before the transaction begins on the server: it applies to this one
                    await s.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
                balance = await s.scalar(select(accounts.c.balance).where(accounts.c.account_id == account_id))
                if balance is None:
                    return None
                order_rows = (await s.execute(order_query)).all()
                older_rows = (await s.execute(union_all(older_trades, adjusted))).all()
                recent_rows = (await s.execute(recent_query)).all()
                key_rows = (await s.execute(keys_query)).scalars().all()
        assert balance is not None
        older: dict[str, int] = {}
        for r in older_rows:
            qty = -int(r.qty) if r.side == OrderSide.SELL.value else int(r.qty)
            older[r.ts_code] = older.get(r.ts_code, 0) + qty
        return SnapshotRows(
            balance_fen=to_fen(balance),
            orders=tuple(_order(r) for r in order_rows),
            older=older,
            recent=tuple(
                RecentTrade(r.trade_id, r.ts_code, OrderSide(r.side), int(r.qty), r.traded_at) for r in recent_rows
            ),
            entry_keys=frozenset(str(k) for k in key_rows),
        )
