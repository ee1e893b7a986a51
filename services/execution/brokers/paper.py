"""The paper broker: fills against the latest close from the data service, keeping its own book (paper_orders,
paper_fills in execution's schema) so that it is idempotent by order_id across restarts.

Matching: a market order fills in full at the latest close; a limit buy fills (at the latest close) when its
limit is at or above it, a limit sell when its limit is at or below it; any other limit order rests until execution
expires it at the close of its trading day (`expire`, docs/order-path.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from services.execution.brokers.base import BrokerReport, BrokerUnavailable, Fill
from services.execution.brokers.paper_tables import paper_fills, paper_orders
from shared.core.domain import Order, OrderSide, OrderStatus, OrderType, price
from shared.platform.clock import utcnow
from shared.platform.db import Database
from shared.platform.http import ServiceDirectory
from shared.platform.quotes import DataServiceQuotes, QuoteSource, QuoteUnavailable

NEVER_REACHED_BROKER = "cancelled before it reached the broker"
CLIENT_CANCEL = "cancelled by the client"


@dataclass(frozen=True)
class PaperQuote:
    last_close: Decimal | None  # None only for a security that never traded (then it is suspended)
    suspended: bool
    limit_up: Decimal | None = None  # the next session's limit-up price; None on sessions without limits


class PaperQuoteSource(Protocol):
    """What the paper broker fills at: not the data service's whole quote (`shared.platform.quotes.QuoteSource`)
    but its latest close and limit-up checked onto the tick, and failures as the broker's own (BrokerUnavailable)."""

    async def latest(self, ts_code: str) -> PaperQuote | None:
        """The latest close, or None for a security the data service does not know. Raises BrokerUnavailable."""


class PaperQuotes:
    """The latest closes the paper broker fills at, from the data service's quotes (`shared.platform.quotes`)."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.quotes: QuoteSource = DataServiceQuotes(services, internal_secret, "execution")

    async def latest(self, ts_code: str) -> PaperQuote | None:
        try:
            quote = await self.quotes.quote(ts_code)
        except QuoteUnavailable as exc:
            raise BrokerUnavailable(f"no market data for {ts_code}: {exc}") from exc
        if quote is None:
            return None
        try:
            last_close = None if quote.last_close is None else price(quote.last_close)
            limit_up = None if quote.limit_up is None else price(quote.limit_up)
        except ValueError as exc:  # a price off the tick
            raise BrokerUnavailable(f"malformed market data for {ts_code}: {exc}") from exc
        if last_close is None and not quote.suspended:
            raise BrokerUnavailable(f"market data for {ts_code} has no usable last close")
        return PaperQuote(last_close=last_close, suspended=quote.suspended, limit_up=limit_up)


def paper_fill_price(
    order_type: OrderType, side: OrderSide, limit_price: Decimal | None, last_close: Decimal
) -> Decimal | None:
    """The price a paper order fills at now, or None when it rests."""
    if order_type is OrderType.MARKET:
        return last_close
    if limit_price is None:
        raise ValueError("a limit order needs a limit price")
    if side is OrderSide.BUY:
        return last_close if limit_price >= last_close else None
    return last_close if limit_price <= last_close else None


def cap_refusal(order: Order, fill_price: Decimal | None, price_cap: Decimal | None) -> str | None:
    """Why a buy may not fill at `fill_price`: above the price cap its cash was reserved at, or a market buy with
    no cap at all (nothing bounds what it would pay). None when it may (or when it rests)."""
    if order.side is not OrderSide.BUY:
        return None
    if price_cap is None:
        if order.order_type is OrderType.MARKET:
            return "a market buy without a price cap: no cash was reserved to bound what it pays"
        return None  # a limit buy never fills above its limit
    if fill_price is not None and fill_price > price_cap:
        return f"would fill at {fill_price}, above {price_cap}, the price cap its cash was reserved at"
    return None


class PaperBroker:
    name = "paper"

    def __init__(self, db: Database, quotes: PaperQuoteSource, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.quotes = quotes
        self.clock = clock

    async def submit(self, order: Order, *, price_cap: Decimal | None = None) -> BrokerReport:
        known = await self.report(order.order_id)
        if known is not None:
            return known  # idempotent: what we did with this order the first time
        quote = await self.quotes.latest(order.ts_code)
        now = self.clock()
        fills: tuple[Fill, ...] = ()
        reason: str | None = None
        if quote is None:
            status, reason = OrderStatus.REJECTED, f"unknown security {order.ts_code}"
        elif quote.suspended or quote.last_close is None:
            status, reason = OrderStatus.REJECTED, f"{order.ts_code} is suspended"
        else:
            fill_price = paper_fill_price(order.order_type, order.side, order.price, quote.last_close)
            over_cap = cap_refusal(order, fill_price, price_cap)
            if over_cap is not None:
                status, reason = OrderStatus.REJECTED, over_cap
            elif fill_price is None:
                status = OrderStatus.SUBMITTED  # rests
            else:
                status = OrderStatus.FILLED
                fills = (Fill(f"paper-{order.order_id}-1", order.qty, fill_price, now),)
        try:
            async for attempt in self.db.transaction():
                async with attempt as s:
                    await s.execute(
                        paper_orders.insert().values(
                            order_id=order.order_id,
                            ts_code=order.ts_code,
                            side=order.side.value,
                            order_type=order.order_type.value,
                            qty=order.qty,
                            price=order.price,
                            status=status.value,
                            reason=reason,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    for fill in fills:
                        await s.execute(
                            paper_fills.insert().values(
                                fill_id=fill.fill_id,
                                order_id=order.order_id,
                                qty=fill.qty,
                                price=fill.price,
                                traded_at=fill.traded_at,
                            )
                        )
        except IntegrityError:
            # Submitted concurrently (or cancelled first): the book already has the answer.
            known = await self.report(order.order_id)
            if known is None:
                raise
            return known
        return BrokerReport(status=status, fills=fills, reason=reason)

    async def cancel(self, order_id: str) -> BrokerReport:
        return await self._withdraw(order_id, CLIENT_CANCEL, tombstone_reason=NEVER_REACHED_BROKER)

    async def expire(self, order_id: str, reason: str) -> BrokerReport:
        """End a day order at the close of its trading day: what rests of it is cancelled with `reason` (fills so far
        stay), like an exchange does with unfilled day orders. An order the book never had gets a tombstone, so a
        late resubmission cannot fill it on another day."""
        return await self._withdraw(order_id, reason, tombstone_reason=reason)

    async def _withdraw(self, order_id: str, reason: str, *, tombstone_reason: str) -> BrokerReport:
        now = self.clock()
        try:
            async for attempt in self.db.transaction():
                async with attempt as s:
                    row = (await s.execute(select(paper_orders).where(paper_orders.c.order_id == order_id))).first()
                    if row is None:
                        # A tombstone, so that a submission still in flight can no longer fill it.
                        await s.execute(
                            paper_orders.insert().values(
                                order_id=order_id,
                                status=OrderStatus.CANCELLED.value,
                                reason=tombstone_reason[:255],
                                created_at=now,
                                updated_at=now,
                            )
                        )
                    elif row.status in (OrderStatus.SUBMITTED.value, OrderStatus.PARTIALLY_FILLED.value):
                        await s.execute(
                            update(paper_orders)
                            .where(paper_orders.c.order_id == order_id, paper_orders.c.status == row.status)
                            .values(status=OrderStatus.CANCELLED.value, reason=reason[:255], updated_at=now)
                        )
        except IntegrityError:
            pass  # submitted at the same moment: the book below says which came first
        report = await self.report(order_id)
        if report is None:
            raise BrokerUnavailable(f"paper order {order_id} vanished while cancelling")
        return report

    async def report(self, order_id: str) -> BrokerReport | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(paper_orders).where(paper_orders.c.order_id == order_id))).first()
                if row is None:
                    return None
                fill_rows = (
                    await s.execute(
                        select(paper_fills).where(paper_fills.c.order_id == order_id).order_by(paper_fills.c.fill_id)
                    )
                ).all()
                report = _report(row, fill_rows)
        return report


def _report(row: Row[Any], fill_rows: Sequence[Row[Any]]) -> BrokerReport:
    fills = tuple(Fill(fill_id=f.fill_id, qty=f.qty, price=f.price, traded_at=f.traded_at) for f in fill_rows)
    return BrokerReport(status=OrderStatus(row.status), fills=fills, reason=row.reason)
