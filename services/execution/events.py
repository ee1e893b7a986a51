"""What execution publishes (through its outbox): `order.<status>` for every status an order enters,
`trade.executed` for every fill, `position.adjusted` for every corporate action applied to a holder's position
(store/adjustments.py) and `cash.moved` for every deposit and withdrawal (store/accounts.py); straight on the bus,
`broker.bridge.connected` / `broker.bridge.disconnected` when a QMT bridge's link opens or closes. It consumes
nothing."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from services.execution.brokers.base import Fill
from shared.core.domain import Order, from_fen
from shared.core.market.rules import Fees
from shared.platform.events import BrokerBridgeLink, CashMoved, Envelope, OrderUpdated, TradeExecuted, make_event

EXCHANGE_TZ = ZoneInfo("Asia/Shanghai")
PUBLISHED = (
    "order.accepted",
    "order.submitted",
    "order.partially_filled",
    "order.filled",
    "order.rejected",
    "order.cancelled",
    "order.unknown",
    "broker.reconciliation.difference",
    "broker.bridge.connected",
    "broker.bridge.disconnected",
    "trade.executed",
    "position.adjusted",
    "cash.moved",
)


def exchange_date(at: datetime) -> date:
    """The exchange's calendar date of a moment (fees such as stamp duty depend on it)."""
    return at.astimezone(EXCHANGE_TZ).date()


def order_event(
    order: Order, *, source: str, price_cap: Decimal | None = None, session: date | None = None
) -> Envelope:
    """`price_cap`: a buy's cap (None for a sell); `session`: the session the order is for, where it is known (its
    admission: `order.accepted`)."""
    payload = OrderUpdated(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        account_id=order.account_id,
        ts_code=order.ts_code,
        side=order.side.value,
        order_type=order.order_type.value,
        qty=order.qty,
        price=order.price,
        status=order.status.value,
        filled_qty=order.filled_qty,
        avg_fill_price=order.avg_fill_price,
        reason=order.reason,
        updated_at=order.updated_at,
        strategy_instance_id=order.strategy_instance_id,
        price_cap=price_cap,
        session=session,
    )
    return make_event(f"order.{order.status.value}", payload, source=source)


def trade_event(order: Order, fill: Fill, fees: Fees, *, source: str) -> Envelope:
    payload = TradeExecuted(
        trade_id=fill.fill_id,
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        account_id=order.account_id,
        ts_code=order.ts_code,
        side=order.side.value,
        qty=fill.qty,
        price=fill.price,
        amount=fill.price * fill.qty,
        traded_at=fill.traded_at,
        commission=fees.commission,
        stamp_duty=fees.stamp_duty,
        transfer_fee=fees.transfer_fee,
        strategy_instance_id=order.strategy_instance_id,
    )
    return make_event("trade.executed", payload, source=source)


def cash_event(entry_id: int, account_id: str, kind: str, amount_fen: int, at: datetime, *, source: str) -> Envelope:
    """`cash.moved`: a deposit or withdrawal's ledger entry (`amount_fen` signed)."""
    payload = CashMoved(entry_id=str(entry_id), account_id=account_id, amount=from_fen(amount_fen), kind=kind,
                        moved_at=at)  # fmt: skip
    return make_event("cash.moved", payload, source=source)


def bridge_link_event(bridge_id: str, account_id: str, *, connected: bool, why: str | None, at: datetime,
                      source: str) -> Envelope:  # fmt: skip
    payload = BrokerBridgeLink(bridge_id=bridge_id, account_id=account_id, why=why, at=at)
    kind = "connected" if connected else "disconnected"
    return make_event(f"broker.bridge.{kind}", payload, source=source)
