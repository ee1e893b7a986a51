"""Trades: the table, the trade record, and the reads positions are computed from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    case,
    func,
    literal,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.engine import Row

from services.execution.corporate import HolderPosition
from services.execution.positions import OpenSell, ShareAdjustment, TradeLot, session_start
from services.execution.store.adjustments import position_adjustments
from services.execution.store.base import StoreBase, listed_after, metadata
from services.execution.store.orders import orders
from services.execution.valuation import CostedAdjustment, CostedTrade
from shared.core.domain import OrderSide, OrderStatus, from_fen, to_fen
from shared.platform.clock import EXCHANGE_TZ, UtcDateTime
from shared.platform.columns import CnyFen
from shared.platform.db import DbSession

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
    Column("price_fen", CnyFen, key="price", nullable=False),
    Column("amount_fen", CnyFen, key="amount", nullable=False),
    Column("commission_fen", CnyFen, key="commission", nullable=False),
    Column("stamp_duty_fen", CnyFen, key="stamp_duty", nullable=False),
    Column("transfer_fee_fen", CnyFen, key="transfer_fee", nullable=False),
    Column("traded_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("strategy_instance_id", String(32), nullable=True),  # its order's; NULL: a person's trade
    Index("ix_trades_order", "order_id"),
    Index("ix_trades_account_traded", "account_id", "traded_at"),
    Index("ix_trades_account_code", "account_id", "ts_code"),
    Index("ix_trades_strategy_instance_created", "strategy_instance_id", "created_at"),
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
    strategy_instance_id: str | None = None

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
        price=row.price,
        amount=row.amount,
        commission=row.commission,
        stamp_duty=row.stamp_duty,
        transfer_fee=row.transfer_fee,
        traded_at=row.traded_at,
        strategy_instance_id=row.strategy_instance_id,
    )


ADJUSTED = "adjusted"  # the side of the corporate actions' row in the positions read (not an order side)


class TradeReads(StoreBase):
    async def list_trades(
        self,
        *,
        account_id: str | None,
        order_id: str | None,
        limit: int,
        strategy_instance_id: str | None = None,
        oldest_first: bool = False,
        after: str | None = None,
        ts_code: str | None = None,
    ) -> list[TradeRecord]:
        """Trades newest first (by trade time), or in the order they were recorded (`oldest_first`, or `after` a
        trade: those recorded after it). Raises LookupError when `after` names no trade of the listing."""
        query = select(trades).limit(limit)
        if account_id is not None:
            query = query.where(trades.c.account_id == account_id)
        if order_id is not None:
            query = query.where(trades.c.order_id == order_id)
        if strategy_instance_id is not None:
            query = query.where(trades.c.strategy_instance_id == strategy_instance_id)
        if ts_code is not None:
            query = query.where(trades.c.ts_code == ts_code)
        if after is None and not oldest_first:
            query = query.order_by(trades.c.traded_at.desc(), trades.c.trade_id)
        else:
            query = query.order_by(trades.c.created_at, trades.c.trade_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                if after is not None:
                    query = await listed_after(s, query, trades, trades.c.trade_id, after, account_id)
                rows = (await s.execute(query)).all()
        return [_trade(r) for r in rows]

    async def position_inputs(
        self, account_id: str, today: date, opens_after: datetime | None = None
    ) -> tuple[list[TradeLot | ShareAdjustment], list[OpenSell]]:
        """Everything an account's positions in session `today` (T+1: `positions.session_start`) are computed from:
        its trades, its corporate actions, and the unfilled remainder of its sell orders that are not final. One
        transaction, so they agree with each other."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                inputs = await self._position_inputs(s, account_id, today, opens_after)
        return inputs

    async def _position_inputs(
        self,
        s: DbSession,
        account_id: str,
        today: date,
        opens_after: datetime | None = None,
        *,
        ts_codes: list[str] | None = None,
    ) -> tuple[list[TradeLot | ShareAdjustment], list[OpenSell]]:
        """The trades come summed by the database, one lot per (ts_code, side, bought before session `today` or in
        it), each stamped with the latest trade time of its group (so it falls on the same side of the session's start):
        `holdings` gives what it gives for the single trades, and the rows read stay as many as the codes traded,
        not the trades (an account that trades every day would otherwise read its whole history on every sell and
        every positions listing). The corporate actions recorded (`position_adjustments`) come in the same
        statement, one row per code, as `ShareAdjustment`s. `ts_codes`: those codes' only (sells' admission: a
        code's position is the same from its own trades as from the account's; the reads use the (account, code)
        and (account, status) indexes, so an admission does not grow with the account's history)."""
        open_statuses = [status.value for status in OrderStatus if not status.is_final]
        on_today = case((trades.c.traded_at > session_start(today, opens_after), 1), else_=0)
        traded_where = [trades.c.account_id == account_id]
        adjusted_where = [position_adjustments.c.account_id == account_id]
        sells_where = [
            orders.c.account_id == account_id,
            orders.c.status.in_(open_statuses),
            orders.c.side == OrderSide.SELL.value,
        ]
        if ts_codes is not None:
            traded_where.append(trades.c.ts_code.in_(ts_codes))
            adjusted_where.append(position_adjustments.c.ts_code.in_(ts_codes))
            sells_where.append(orders.c.ts_code.in_(ts_codes))
        traded = (
            select(
                trades.c.ts_code,
                trades.c.side,
                func.sum(trades.c.qty).label("qty"),
                func.max(trades.c.traded_at).label("traded_at"),
            )
            .where(*traded_where)
            .group_by(trades.c.ts_code, trades.c.side, on_today)
        )
        adjusted = (
            select(
                position_adjustments.c.ts_code,
                literal(ADJUSTED).label("side"),
                func.sum(position_adjustments.c.qty_after - position_adjustments.c.qty_before).label("qty"),
                null().label("traded_at"),
            )
            .where(*adjusted_where)
            .group_by(position_adjustments.c.ts_code)
        )
        trade_rows = (await s.execute(union_all(traded, adjusted))).all()
        sell_rows = (
            await s.execute(select(orders.c.ts_code, orders.c.qty, orders.c.filled_qty).where(*sells_where))
        ).all()
        lots: list[TradeLot | ShareAdjustment] = [
            ShareAdjustment(r.ts_code, int(r.qty))
            if r.side == ADJUSTED
            else TradeLot(r.ts_code, OrderSide(r.side), int(r.qty), r.traded_at)
            for r in trade_rows
        ]
        sells = [OpenSell(r.ts_code, r.qty - r.filled_qty) for r in sell_rows]
        return lots, sells

    async def holders_before(self, day: date, opens_after: datetime | None = None) -> list[HolderPosition]:
        """Every holder's shares at the start of session `day`, across accounts: the trades before the session (up to
        and including `opens_after`, the previous trading day's close, as positions and admission split sessions:
        `positions.session_start`; else before the session's midnight) and the corporate actions of earlier
        ex-dates, by (account, strategy instance or the account's own part, code); only positions that are not zero.
        What a session's corporate actions apply to, whenever they are applied (the session's own fills are not
        counted, as in the engine, where they come after)."""
        before_session = (
            trades.c.traded_at <= opens_after
            if opens_after is not None
            else trades.c.traded_at < datetime.combine(day, time.min, EXCHANGE_TZ)
        )
        signed = case((trades.c.side == OrderSide.SELL.value, -trades.c.qty), else_=trades.c.qty)
        traded = (
            select(trades.c.account_id, trades.c.strategy_instance_id, trades.c.ts_code,
                   func.sum(signed).label("qty"))
            .where(before_session)
            .group_by(trades.c.account_id, trades.c.strategy_instance_id, trades.c.ts_code)
        )  # fmt: skip
        pa = position_adjustments.c
        added = func.sum(pa.qty_after - pa.qty_before).label("qty")
        adjusted = (
            select(pa.account_id, pa.strategy_instance_id, pa.ts_code, added)
            .where(pa.ex_date < day)
            .group_by(pa.account_id, pa.strategy_instance_id, pa.ts_code)
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(union_all(traded, adjusted))).all()
        held: dict[tuple[str, str | None, str], int] = {}
        for r in rows:
            key = (r.account_id, r.strategy_instance_id, r.ts_code)
            held[key] = held.get(key, 0) + int(r.qty)
        ordered = sorted(held.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2]))
        return [HolderPosition(a, i, c, q) for (a, i, c), q in ordered if q]


@dataclass(frozen=True)
class TcaRow:
    """An order and its fills' sums, as cost analysis reads them."""

    order_id: str
    client_order_id: str
    account_id: str
    strategy_instance_id: str | None
    ts_code: str
    side: OrderSide
    order_type: str
    qty: int
    status: str
    created_at: datetime
    updated_at: datetime
    arrival_price: Decimal | None
    arrival_source: str | None
    arrival_at: datetime | None
    filled_qty: int
    filled_amount: Decimal
    fees: Decimal
    first_fill_at: datetime | None
    last_fill_at: datetime | None


class ValuationReads(TradeReads):
    async def valuation_inputs(
        self, account_id: str, today: date, opens_after: datetime | None = None
    ) -> tuple[list[TradeLot | ShareAdjustment], list[OpenSell], list[CostedTrade], list[CostedAdjustment]]:
        """What an account's positions are valued from, in one transaction: `position_inputs`'s lots and open sells
        (qty, T+1, sellable), and every trade and corporate action with its money, for the average cost
        (services/execution/valuation.py). The whole trade history is read: one narrow row a trade."""
        t = trades.c
        pa = position_adjustments.c
        async for attempt in self.db.transaction():
            async with attempt as s:
                lots, sells = await self._position_inputs(s, account_id, today, opens_after)
                trade_rows = (
                    await s.execute(
                        select(t.ts_code, t.side, t.qty, t.amount, t.commission, t.stamp_duty, t.transfer_fee,
                               t.traded_at)
                        .where(t.account_id == account_id)
                        .order_by(t.traded_at, t.trade_id)
                    )
                ).all()  # fmt: skip
                adjustment_rows = (
                    await s.execute(
                        select(pa.ts_code, pa.ex_date, pa.qty_before, pa.qty_after, pa.cash_in_lieu).where(
                            pa.account_id == account_id
                        )
                    )
                ).all()
        costed = [
            CostedTrade(r.ts_code, OrderSide(r.side), int(r.qty), to_fen(r.amount),
                        to_fen(r.commission + r.stamp_duty + r.transfer_fee), r.traded_at)
            for r in trade_rows
        ]  # fmt: skip
        adjusted = [
            CostedAdjustment(r.ts_code, r.ex_date, int(r.qty_after - r.qty_before), to_fen(r.cash_in_lieu))
            for r in adjustment_rows
        ]
        return lots, sells, costed, adjusted

    async def tca_rows(
        self,
        *,
        account_id: str | None,
        strategy_instance_id: str | None,
        created_from: datetime | None,
        created_before: datetime | None,
        order_id: str | None = None,
        filled_only: bool = False,
        limit: int,
    ) -> list[TcaRow]:
        """Orders (oldest first by creation) with their trades summed: qty, amount, fees, first and last fill time."""
        t = trades.c
        fills = (
            select(
                t.order_id,
                type_coerce(func.sum(t.qty), BigInteger).label("qty"),
                type_coerce(func.sum(_fen(t.amount)), BigInteger).label("amount"),
                type_coerce(func.sum(_fen(t.commission) + _fen(t.stamp_duty) + _fen(t.transfer_fee)), BigInteger).label(
                    "fees"
                ),
                type_coerce(func.min(t.traded_at), UtcDateTime).label("first_at"),
                type_coerce(func.max(t.traded_at), UtcDateTime).label("last_at"),
            )
            .group_by(t.order_id)
            .subquery()
        )
        o = orders.c
        query = (
            select(o.order_id, o.client_order_id, o.account_id, o.strategy_instance_id, o.ts_code, o.side,
                   o.order_type, o.qty, o.status, o.created_at, o.updated_at, o.arrival_price, o.arrival_source,
                   o.arrival_at, fills.c.qty.label("filled"), fills.c.amount.label("amount"),
                   fills.c.fees.label("fees"), fills.c.first_at, fills.c.last_at)
            .select_from(orders.outerjoin(fills, fills.c.order_id == o.order_id))
            .order_by(o.created_at, o.order_id)
            .limit(limit)
        )  # fmt: skip
        if account_id is not None:
            query = query.where(o.account_id == account_id)
        if strategy_instance_id is not None:
            query = query.where(o.strategy_instance_id == strategy_instance_id)
        if created_from is not None:
            query = query.where(o.created_at >= created_from)
        if created_before is not None:
            query = query.where(o.created_at < created_before)
        if order_id is not None:
            query = query.where(o.order_id == order_id)
        if filled_only:
            query = query.where(fills.c.qty > 0)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [
            TcaRow(
                order_id=r.order_id, client_order_id=r.client_order_id, account_id=r.account_id,
                strategy_instance_id=r.strategy_instance_id, ts_code=r.ts_code, side=OrderSide(r.side),
                order_type=r.order_type, qty=int(r.qty), status=r.status, created_at=r.created_at,
                updated_at=r.updated_at, arrival_price=r.arrival_price, arrival_source=r.arrival_source,
                arrival_at=r.arrival_at, filled_qty=int(r.filled or 0),
                filled_amount=from_fen(int(r.amount or 0)), fees=from_fen(int(r.fees or 0)),
                first_fill_at=r.first_at, last_fill_at=r.last_at,
            )
            for r in rows
        ]  # fmt: skip


def _fen(column: Any) -> Any:
    """A money column as its stored integer fen (summed without the column type's conversion)."""
    return type_coerce(column, BigInteger)
