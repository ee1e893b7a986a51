"""Where the hot book comes from (ports.py): execution's snapshot of an account (`GET /v1/risk-snapshot`, asked as
risk itself) to seed it, and execution's events, converted here to the port's `BookEvent`s, to keep it.

The conversions are execution's own arithmetic (risk cannot import execution; the rules live in shared/):
- `order.<status>` -> OrderEvent: a buy's cap is the event's `price_cap`, else (events made before it was added) a
  limit buy's limit price, else unknown (None: the book keeps the cap it has);
- `trade.executed` -> TradeEvent: its cash is what execution's ledger entry holds
  (`shared.core.market.orders.fill_cash_fen`: a buy -(amount + fees), a sell amount - fees, each to the fen; the
  fees the event carries, or for an event made before they were added the same `trade_fees` of its amount and
  exchange date); its session, the one it
  counts in for T+1 (`shared.platform.clock.fill_session`, as execution's positions split sessions);
- `position.adjusted` -> AdjustmentEvent, every holder's part of the account (its own and each strategy instance's,
  each with its own key): execution's positions of the account, and its cash, add them all
  (`services/execution/store/trades.py`, position_inputs), so the book does too;
- `cash.moved` -> CashEvent by its ledger entry id.
Anything else is no book's business (None)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from services.risk.state.keeper import SnapshotUnavailable
from services.risk.state.ports import (
    AdjustmentEvent,
    BookEvent,
    BookSnapshot,
    BookUnavailable,
    CashEvent,
    OrderEvent,
    SnapshotLots,
    SnapshotOrder,
    TradeEvent,
)
from shared.core.domain import OrderSide, to_fen
from shared.core.market.orders import fill_cash_fen
from shared.core.market.rules import trade_fees
from shared.platform.calendar import CalendarUnavailable, OrderSessions
from shared.platform.clock import EXCHANGE_TZ, fill_session, no_session
from shared.platform.errors import ServiceError
from shared.platform.events import CashMoved, Envelope, OrderUpdated, PositionAdjusted, TradeExecuted
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers

__all__ = ["BookEvents", "ExecutionSnapshots", "SnapshotUnavailable", "book_event", "parse_snapshot"]

ACCOUNT_NOT_FOUND = "account_not_found"
BOOK_EVENT_TYPES = frozenset({"trade.executed", "position.adjusted", "cash.moved"})  # and `order.<status>`


# -- the snapshot ------------------------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _OrderIn(_Body):
    client_order_id: str
    ts_code: str
    side: OrderSide
    qty: int
    cap_fen: int
    status: str
    filled_qty: int
    traded_qty: int


class _LotsIn(_Body):
    ts_code: str
    base: int
    bought_by_session: dict[date, int]


class _SnapshotIn(_Body):
    """Execution's RiskSnapshotOut as risk reads it (the fields the book needs)."""

    account_id: str
    as_of: datetime
    balance_fen: int
    orders: list[_OrderIn]
    lots: list[_LotsIn]
    trade_ids: list[str]
    entry_keys: list[str]


def parse_snapshot(body: Any, account_id: str) -> BookSnapshot:
    """Execution's snapshot body as the port's BookSnapshot. Raises SnapshotUnavailable when it is malformed or of
    another account."""
    try:
        parsed = _SnapshotIn.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = f"execution's snapshot of {account_id} is malformed: {where}: {first['msg']}"
        raise SnapshotUnavailable(message) from exc
    if parsed.account_id != account_id:
        raise SnapshotUnavailable(f"execution answered the snapshot of {parsed.account_id} for {account_id}")
    return BookSnapshot(
        account_id=parsed.account_id,
        as_of=parsed.as_of,
        balance_fen=parsed.balance_fen,
        orders=tuple(
            SnapshotOrder(o.client_order_id, o.ts_code, o.side, o.qty, o.cap_fen, o.status, o.filled_qty, o.traded_qty)
            for o in parsed.orders
        ),
        lots=tuple(SnapshotLots(lot.ts_code, lot.base, dict(lot.bought_by_session)) for lot in parsed.lots),
        trade_ids=frozenset(parsed.trade_ids),
        entry_keys=frozenset(parsed.entry_keys),
    )


class ExecutionSnapshots:
    """Execution's `GET /v1/risk-snapshot?account_id=`, asked as risk itself (service token)."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def snapshot(self, account_id: str) -> BookSnapshot | None:
        """The account's snapshot; None when execution has never seen the account (404 account_not_found). Raises
        SnapshotUnavailable for any other failure."""
        client = self.services.client("execution")
        try:
            body = await client.get_json(
                "/v1/risk-snapshot",
                params={"account_id": account_id},
                headers=service_headers(self.internal_secret, "risk"),
            )
        except ServiceError as exc:
            if exc.status_code == 404 and exc.code == ACCOUNT_NOT_FOUND:
                return None  # any other 404 (no such route: an older execution) is not an answer
            raise SnapshotUnavailable(
                f"execution's snapshot of {account_id} could not be read: {exc.code}: {exc.message}"
            ) from exc
        except ValueError as exc:
            raise SnapshotUnavailable(f"execution answered the snapshot of {account_id} without JSON") from exc
        return parse_snapshot(body, account_id)


# -- the events --------------------------------------------------------------------------------------------------------


def book_event(envelope: Envelope, trading_days: Iterable[date] | None = None) -> BookEvent | None:
    """The book's event of one of execution's events (None: not a book's). `trading_days`: the calendar's trading days
    around the fills' times, as execution's T+1 reads them on the real clock; None on a replay clock or without a
    calendar (execution then splits sessions by calendar date). Raises InvalidEvent for a payload that does not fit
    its type (the bus dead-letters those before any handler)."""
    if not (envelope.type.startswith("order.") or envelope.type in BOOK_EVENT_TYPES):
        return None
    payload = envelope.parsed()
    if isinstance(payload, OrderUpdated):
        return order_event(payload)
    if isinstance(payload, TradeExecuted):
        return trade_event(payload, trading_days)
    if isinstance(payload, PositionAdjusted):
        return AdjustmentEvent(
            account_id=payload.account_id,
            key=payload.key,
            ts_code=payload.ts_code,
            qty_delta=payload.qty_after - payload.qty_before,
            cash_fen=to_fen(payload.cash_in_lieu),
        )
    if isinstance(payload, CashMoved):
        return CashEvent(account_id=payload.account_id, entry_id=payload.entry_id, amount_fen=to_fen(payload.amount))
    return None  # (every type let through above has one of these payloads)


class BookEvents:
    """`book_event` as the keeper's `to_event` (services/risk/state/keeper.py): a trade's session from the calendar's
    trading days kept in memory (`sessions`, as risk's desk keeps them; read when a fill's day is beyond them), or by
    calendar date on a replay clock (`replayed` gives its session) or without a calendar (`sessions` None), as
    execution splits sessions. A calendar that cannot be read raises BookUnavailable (the bus delivers the event
    again)."""

    def __init__(self, sessions: OrderSessions | None, replayed: Callable[[], date | None] = no_session) -> None:
        self.sessions = sessions
        self.replayed = replayed

    async def __call__(self, envelope: Envelope) -> BookEvent | None:
        days: list[date] | None = None
        if envelope.type == "trade.executed" and self.sessions is not None and self.replayed() is None:
            payload = envelope.parsed()
            assert isinstance(payload, TradeExecuted)
            try:
                days = await self.sessions.days_around(payload.traded_at)
            except CalendarUnavailable as exc:
                raise BookUnavailable(f"cannot tell the session of trade {payload.trade_id}: {exc}") from exc
        return book_event(envelope, days)


def order_event(p: OrderUpdated) -> OrderEvent:
    side = OrderSide(p.side)
    cap = p.price_cap
    if cap is None and side is OrderSide.BUY and p.order_type == "limit":
        cap = p.price  # a limit buy's cap is its limit price
    return OrderEvent(
        account_id=p.account_id,
        client_order_id=p.client_order_id,
        ts_code=p.ts_code,
        side=side,
        qty=p.qty,
        status=p.status,
        filled_qty=p.filled_qty,
        cap_fen=to_fen(cap) if cap is not None and side is OrderSide.BUY else None,
        session=p.session,
    )


def trade_event(p: TradeExecuted, trading_days: Iterable[date] | None = None) -> TradeEvent:
    side = OrderSide(p.side)
    amount_fen = to_fen(p.amount)
    if p.commission is not None and p.stamp_duty is not None and p.transfer_fee is not None:
        fees_fen = to_fen(p.commission + p.stamp_duty + p.transfer_fee)
    else:  # an event made before the fees were added: the same fees as execution booked
        traded_on = p.traded_at.astimezone(EXCHANGE_TZ).date()
        fees_fen = to_fen(trade_fees(p.amount, is_sell=side is OrderSide.SELL, trade_date=traded_on).total)
    cash_fen = fill_cash_fen(side, amount_fen, fees_fen)
    return TradeEvent(
        account_id=p.account_id,
        trade_id=p.trade_id,
        client_order_id=p.client_order_id,
        ts_code=p.ts_code,
        side=side,
        qty=p.qty,
        cash_fen=cash_fen,
        session=fill_session(p.traded_at, trading_days),
    )
