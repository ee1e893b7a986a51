"""A buy never fills above the price its cash was reserved at. An order left ACCEPTED (the broker could not take
it) belongs to its trading session: reconciliation does not send it to fill on a later day at that day's price,
calendar or no calendar; the expiry pass cancels it once the calendar answers. And the paper broker refuses a
buy that would fill above its price cap."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

import services.execution.store.transitions as execution_store
from services.execution.brokers.base import BrokerReport, BrokerUnavailable
from services.execution.brokers.paper_tables import paper_orders
from services.execution.desk import OrderDesk
from services.execution.store import trades
from shared.core.domain import Order
from shared.platform.approval import OrderTerms, sign_approval
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import Fleet, fleet, quote, settle, trader

pytestmark = pytest.mark.integration

CALENDAR = ("GET", "/v1/calendar")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 2, 0, tzinfo=UTC)  # Thursday 2025-01-02, 10:00 in Shanghai: a trading day

    def __call__(self) -> datetime:
        return self.now


class DownBroker:
    name = "down"

    async def submit(
        self, order: Order, *, price_cap: Decimal | None = None, paper_fill: object = None
    ) -> BrokerReport:
        raise BrokerUnavailable("the broker is down (test)")

    async def cancel(self, order_id: str, *, paper_fill: object = None) -> BrokerReport:
        raise BrokerUnavailable("the broker is down (test)")


def _market_buy(p: Principal) -> OrderTerms:
    return OrderTerms.model_validate(
        {
            "client_order_id": f"c-{new_id()[:10]}",
            "account_id": p.account_id,
            "ts_code": "600000.SH",
            "side": "buy",
            "order_type": "market",
            "qty": 1000,
            "price": None,
        }
    )


async def _left_accepted(f: Fleet, p: Principal, terms: OrderTerms) -> str:
    """Admit the order while the broker cannot take it: it stays ACCEPTED, its cash reserved."""
    desk: OrderDesk = f.execution_app.state.desk
    broker, desk.broker = desk.broker, DownBroker()
    try:
        approval = sign_approval(f.settings.approval_secret, terms, new_id()).model_dump(mode="json")
        response = await f.execution.post(
            "/v1/orders", json={**terms.model_dump(mode="json"), "approval": approval}, headers=f.headers(p)
        )
    finally:
        desk.broker = broker
    assert response.status_code == 503 and response.json()["code"] == "broker_unavailable", response.text
    order_id: str = response.json()["details"]["order_id"]
    return order_id


async def _status(f: Fleet, p: Principal, order_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(p))).json()
    return body


async def _started(f: Fleet, clock: Clock) -> OrderDesk:
    desk: OrderDesk = f.execution_app.state.desk
    await desk.first_reconcile_done.wait()
    desk.clock = clock
    f.execution_app.state.broker.clock = clock
    f.data.clock = clock  # the latest quote's limits are for the session of an order placed at `clock`
    return desk


async def test_an_order_of_a_closed_session_is_not_resubmitted_without_the_calendar(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(execution_store, "utcnow", clock)
    settings = backing.settings()
    uma = trader()
    async with fleet(settings) as f:
        desk = await _started(f, clock)
        # Thursday 10:00: a market buy of 1,000 reserves at the limit-up, 11.00: 11,000.00 + 5.00 + 0.11.
        order_id = await _left_accepted(f, uma, _market_buy(uma))
        account = (await f.execution.get("/v1/account", headers=f.headers(uma))).json()
        assert account["reserved"] == "11005.11"

        # Friday 2025-01-03, 10:00: the stock closed at 11.50 on Thursday, above the 11.00 the cash was reserved
        # at. The calendar cannot be read, so the expiry pass cannot run.
        clock.now = datetime(2025, 1, 3, 2, 0, tzinfo=UTC)
        f.data.quotes["600000.SH"] = quote("600000.SH", "11.50", "12.65", "10.35", last_trade_date="2025-01-02")
        await f.data_changed()
        f.data_transport.down_for.add(CALENDAR)
        assert await desk.expire_day_orders() == 0
        assert await desk.reconcile() == 0  # Thursday's order is not sent to fill on Friday
        assert (await _status(f, uma, order_id))["status"] == "accepted"
        assert await f.store.count(paper_orders, order_id=order_id) == 0
        assert await f.store.count(trades, order_id=order_id) == 0

        # The calendar answers again: Thursday's session has closed, the order expires and frees its cash.
        f.data_transport.down_for.discard(CALENDAR)
        assert await desk.expire_day_orders() == 1
        order = await _status(f, uma, order_id)
        assert (order["status"], order["filled_qty"]) == ("cancelled", 0)
        assert order["reason"] == "expired: a day order still open at the close of 2025-01-02 (15:00 Asia/Shanghai)"
        account = (await f.execution.get("/v1/account", headers=f.headers(uma))).json()
        assert account["reserved"] == "0.00"
        assert await desk.reconcile() == 0
        await settle(f)


async def test_an_order_of_the_open_session_is_still_resubmitted_without_the_calendar(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(execution_store, "utcnow", clock)
    settings = backing.settings()
    vic = trader()
    async with fleet(settings) as f:
        desk = await _started(f, clock)
        order_id = await _left_accepted(f, vic, _market_buy(vic))  # Thursday 10:00
        clock.now = datetime(2025, 1, 2, 5, 0, tzinfo=UTC)  # 13:00 the same day
        f.data_transport.down_for.add(CALENDAR)
        assert await desk.reconcile() == 1
        order = await _status(f, vic, order_id)
        assert (order["status"], order["filled_qty"], order["avg_fill_price"]) == ("filled", 1000, "10.00")
        await settle(f)


async def test_the_paper_broker_refuses_a_buy_above_its_price_cap(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(execution_store, "utcnow", clock)
    settings = backing.settings()
    wu = trader()
    async with fleet(settings) as f:
        desk = await _started(f, clock)
        order_id = await _left_accepted(f, wu, _market_buy(wu))  # reserved at 11.00 a share
        # Within the session the paper broker's price moves above the cap (it cannot on an exchange: 11.00 is the
        # limit-up). Resubmitted, the order is rejected rather than filled at 11.50.
        f.data.quotes["600000.SH"] = quote("600000.SH", "11.50", "12.65", "10.35")
        await f.data_changed()
        assert await desk.reconcile() == 1
        order = await _status(f, wu, order_id)
        assert (order["status"], order["filled_qty"]) == ("rejected", 0)
        assert order["reason"] == "would fill at 11.50, above 11.00, the price cap its cash was reserved at"
        assert await f.store.count(trades, order_id=order_id) == 0
        account = (await f.execution.get("/v1/account", headers=f.headers(wu))).json()
        assert account["reserved"] == "0.00"
        await settle(f)
