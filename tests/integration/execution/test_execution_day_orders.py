"""A-share orders are day orders: what rests of a paper limit order when its trading day closes (15:00
Asia/Shanghai, trading days from the trade calendar) is cancelled with an `order.cancelled` event, and the shares
or cash it reserved are free again. Against the real MariaDB and RabbitMQ; amounts worked out by hand."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

import services.execution.store.transitions as execution_store
from services.execution.brokers.base import BrokerReport
from services.execution.brokers.paper_tables import paper_fills, paper_orders
from services.execution.desk import OrderDesk
from shared.core.domain import OrderStatus
from shared.platform.approval import OrderTerms
from shared.platform.internal_auth import Principal
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    event_log,
    fleet,
    limit_buy,
    settle,
    signed_order,
    trader,
    until,
)
from tests.support.positions import held

pytestmark = pytest.mark.integration

REASON = "expired: a day order still open at the close of 2025-01-02 (15:00 Asia/Shanghai)"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 12, 31, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def _submit(f: Fleet, principal: Principal, terms: OrderTerms) -> dict[str, Any]:
    response = await f.execution.post("/v1/orders", json=signed_order(f.settings, terms), headers=f.headers(principal))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _order(f: Fleet, principal: Principal, order_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(principal))).json()
    return body


async def test_resting_orders_expire_at_the_close_of_their_trading_day(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "100000")
    clock = Clock()
    monkeypatch.setattr(execution_store, "utcnow", clock)  # when orders are created and updated
    settings = backing.settings()
    xena = trader()
    async with event_log(settings) as events, fleet(settings) as f:
        desk: OrderDesk = f.execution_app.state.desk
        await desk.first_reconcile_done.wait()
        desk.clock = clock
        f.execution_app.state.broker.clock = clock

        # Tuesday 2024-12-31: buy 1,000 at 10.00 (fills): 10,000.00 + 5.00 + 0.10 = 10,005.10 paid.
        assert (await _submit(f, xena, limit_buy(xena)))["status"] == "filled"

        # Wednesday 2025-01-01, a holiday, 10:00 in Shanghai: a limit buy at 9.50 rests for the next session
        # (2025-01-02), reserving 1,000 x 9.50 + 5.00 + 0.10 = 9,505.10. At 16:00 that day nothing expires: the
        # last close was 2024-12-31's, before the order was placed.
        clock.now = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)
        buy = await _submit(f, xena, limit_buy(xena, price="9.50"))
        assert buy["status"] == "submitted"
        clock.now = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
        await desk.expire_day_orders()
        assert (await _order(f, xena, buy["order_id"]))["status"] == "submitted"

        # Thursday 2025-01-02, 10:00: a limit sell of 700 at 10.50 rests; the broker then fills 300 of it at 10.50:
        # 3,150.00 - commission 5.00 - stamp duty 0.05% 1.58 (1.575) - transfer fee 0.03 (0.0315) = +3,143.39.
        clock.now = datetime(2025, 1, 2, 2, 0, tzinfo=UTC)
        sell = await _submit(f, xena, limit_buy(xena, side="sell", qty=700, price="10.50"))
        assert sell["status"] == "submitted"
        async with f.store.db.session() as s:
            await s.execute(
                paper_fills.insert().values(
                    fill_id=f"paper-{sell['order_id']}-1",
                    order_id=sell["order_id"],
                    qty=300,
                    price=Decimal("10.50"),
                    traded_at=datetime(2025, 1, 2, 3, 0, tzinfo=UTC),
                )
            )
            await s.execute(
                update(paper_orders)
                .where(paper_orders.c.order_id == sell["order_id"])
                .values(status=OrderStatus.PARTIALLY_FILLED.value)
            )
        report = await f.execution_app.state.broker.report(sell["order_id"])
        await f.store.apply_report(sell["order_id"], report)
        assert (await _order(f, xena, sell["order_id"]))["status"] == "partially_filled"

        # 14:59 in Shanghai: still open; the resting orders hold 400 shares and 9,505.10 CNY.
        clock.now = datetime(2025, 1, 2, 6, 59, tzinfo=UTC)
        await desk.expire_day_orders()
        positions = held((await f.execution.get("/v1/positions", headers=f.headers(xena))).json())
        assert positions == [{"ts_code": "600000.SH", "qty": 700, "sellable_qty": 300}]
        account = (await f.execution.get("/v1/account", headers=f.headers(xena))).json()
        # 100,000.00 - 10,005.10 + 3,143.39 = 93,138.29.
        assert (account["balance"], account["reserved"], account["available"]) == ("93138.29", "9505.10", "83633.19")

        # 15:00: the session has closed. Both expire; the partial fill stays.
        clock.now = datetime(2025, 1, 2, 7, 0, tzinfo=UTC)
        await desk.expire_day_orders()
        expired_buy, expired_sell = await _order(f, xena, buy["order_id"]), await _order(f, xena, sell["order_id"])
        assert (expired_buy["status"], expired_buy["filled_qty"], expired_buy["reason"]) == ("cancelled", 0, REASON)
        assert (expired_sell["status"], expired_sell["filled_qty"], expired_sell["reason"]) == (
            "cancelled",
            300,
            REASON,
        )
        assert await f.store.transitions(sell["order_id"]) == [
            (None, "accepted"),
            ("accepted", "submitted"),
            ("submitted", "partially_filled"),
            ("partially_filled", "cancelled"),
        ]
        # What they reserved is free again.
        positions = held((await f.execution.get("/v1/positions", headers=f.headers(xena))).json())
        assert positions == [{"ts_code": "600000.SH", "qty": 700, "sellable_qty": 700}]
        account = (await f.execution.get("/v1/account", headers=f.headers(xena))).json()
        assert (account["balance"], account["reserved"], account["available"]) == ("93138.29", "0.00", "93138.29")

        # The broker's book has them cancelled: a late resubmission cannot fill them on another day.
        again: BrokerReport = await f.execution_app.state.broker.submit(
            (await f.store.get_order(buy["order_id"])).order  # type: ignore[union-attr]
        )
        assert (again.status, again.fills, again.reason) == (OrderStatus.CANCELLED, (), REASON)

        # Subscribers hear it as for any cancel.
        def cancelled() -> list[Any]:
            return [
                e for e in events.events if e.type == "order.cancelled" and e.payload["account_id"] == xena.account_id
            ]

        await until(lambda: len(cancelled()) >= 2, what="two order.cancelled events")
        assert sorted((e.payload["order_id"], e.payload["reason"]) for e in cancelled()) == sorted(
            [(buy["order_id"], REASON), (sell["order_id"], REASON)]
        )
        await settle(f)


async def test_without_the_trade_calendar_nothing_expires_until_it_answers(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    clock.now = datetime(2025, 1, 2, 2, 0, tzinfo=UTC)
    monkeypatch.setattr(execution_store, "utcnow", clock)
    settings = backing.settings()
    yuri = trader()
    async with fleet(settings) as f:
        desk: OrderDesk = f.execution_app.state.desk
        await desk.first_reconcile_done.wait()
        desk.clock = clock
        f.execution_app.state.broker.clock = clock
        resting = await _submit(f, yuri, limit_buy(yuri, price="9.50"))
        assert resting["status"] == "submitted"

        clock.now = datetime(2025, 1, 2, 8, 0, tzinfo=UTC)  # 16:00: the session has closed
        f.data.fail_with = 500  # but the data service cannot say which days are trading days
        assert await desk.expire_day_orders() == 0
        assert (await _order(f, yuri, resting["order_id"]))["status"] == "submitted"

        f.data.fail_with = None
        await desk.expire_day_orders()
        assert (await _order(f, yuri, resting["order_id"]))["status"] == "cancelled"
        await settle(f)
