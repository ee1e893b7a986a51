"""The execution service against the real MariaDB and RabbitMQ: only risk-approved orders get in, a crash or
a database error between the broker's fill and its recording neither loses nor doubles the fill, and the outbox
keeps events while the message broker is down."""

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

import services.execution.store.transitions as execution_store
from services.execution.brokers.paper_tables import paper_fills, paper_orders
from services.execution.desk import OrderDesk
from services.execution.store import orders, outbox, refused_submissions, trades
from shared.platform.approval import OrderTerms, sign_approval
from shared.platform.events import Envelope
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from shared.platform.settings import Settings
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    SwitchableBus,
    event_log,
    fleet,
    metric,
    trader,
    until,
)

pytestmark = pytest.mark.integration

RISK = Principal("svc:risk", "service")


def _terms(principal: Principal, **kw: Any) -> OrderTerms:
    values: dict[str, Any] = {
        "client_order_id": f"c-{new_id()[:10]}",
        "account_id": principal.account_id,
        "ts_code": "600000.SH",
        "side": "buy",
        "order_type": "market",
        "qty": 400,
        "price": None,
    }
    values.update(kw)
    return OrderTerms.model_validate(values)


def _signed(settings: Settings, terms: OrderTerms, decision_id: str | None = None, **kw: Any) -> dict[str, Any]:
    return sign_approval(settings.approval_secret, terms, decision_id or new_id(), **kw).model_dump(mode="json")


def _body(terms: OrderTerms, approval: dict[str, Any] | None) -> dict[str, Any]:
    body = terms.model_dump(mode="json")
    if approval is not None:
        body["approval"] = approval
    return body


def _desk(f: Fleet) -> OrderDesk:
    desk: OrderDesk = f.execution_app.state.desk
    return desk


async def _started(f: Fleet) -> None:
    """Wait for the start-up reconciliation, so that it cannot run in the middle of what a test measures."""
    await asyncio.wait_for(_desk(f).first_reconcile_done.wait(), timeout=30)


async def test_orders_without_a_valid_approval_are_refused_recorded_and_never_reach_a_broker(
    backing: Backing,
) -> None:
    settings = backing.settings()
    mallory = trader()
    async with fleet(settings) as f:
        await _started(f)
        paper_books_before = await f.store.count(paper_orders)
        honest = _terms(mallory, qty=100)
        tampered = honest.model_copy(update={"qty": 100000})
        stale_at = datetime.now(UTC) - timedelta(seconds=settings.approval_ttl_s + 60)
        cases = [
            (_body(honest, None), "no risk approval attached"),
            (
                _body(honest, sign_approval("not-the-approval-secret-123", honest, new_id()).model_dump(mode="json")),
                "approval signature does not match the order",
            ),
            (_body(tampered, _signed(settings, honest)), "approval signature does not match the order"),
            (_body(honest, _signed(settings, honest, issued_at=stale_at)), "old (allowed: 60s)"),
            (_body(honest, {"decision_id": new_id(), "signature": "ab" * 32}), "approval is malformed (issued_at"),
        ]
        for body, reason in cases:
            response = await f.execution.post("/v1/orders", json=body, headers=f.headers(mallory))
            assert response.status_code == 403, response.text
            assert response.json()["code"] == "approval_invalid"
            assert reason in response.json()["message"]

        # A valid approval for someone else's account, presented by a trader: refused too.
        victim = trader()
        theirs = _terms(victim)
        response = await f.execution.post(
            "/v1/orders", json=_body(theirs, _signed(settings, theirs)), headers=f.headers(mallory)
        )
        assert response.status_code == 403 and "may not place orders for account" in response.json()["message"]

        async with f.store.db.session() as s:
            refused = (
                await s.execute(
                    select(refused_submissions).where(refused_submissions.c.principal_subject == mallory.subject)
                )
            ).all()
        assert len(refused) == len(cases) + 1
        assert {r.principal_role for r in refused} == {"trader"}
        tampered_row = next(r for r in refused if json.loads(r.terms)["qty"] == 100000)
        assert tampered_row.reason == "approval signature does not match the order"
        assert tampered_row.client_order_id == honest.client_order_id

        for account in (mallory.account_id, victim.account_id):
            assert await f.store.count(orders, account_id=account) == 0
            assert await f.store.count(trades, account_id=account) == 0
        assert await f.store.count(paper_orders) == paper_books_before
        assert f.data.callers == []  # the paper broker never even looked up a price
        execution_metrics = (await f.execution.get("/metrics")).text
        assert metric(execution_metrics, "lh_execution_refused_total") == len(cases) + 1.0
        assert metric(execution_metrics, "lh_orders_total", 'status="accepted"') == 0.0


async def test_an_approval_makes_one_order_only(backing: Backing) -> None:
    settings = backing.settings()
    gina = trader()
    async with fleet(settings) as f:
        first = _terms(gina)
        decision_id = new_id()
        approval = _signed(settings, first, decision_id)
        created = await f.execution.post("/v1/orders", json=_body(first, approval), headers=f.headers(RISK))
        assert created.status_code == 201 and created.json()["status"] == "filled"
        repeated = await f.execution.post("/v1/orders", json=_body(first, approval), headers=f.headers(RISK))
        assert repeated.status_code == 200 and repeated.json() == created.json()

        # The same decision id signed (validly) over another client_order_id: a second order from one decision.
        second = _terms(gina)
        reused = await f.execution.post(
            "/v1/orders", json=_body(second, _signed(settings, second, decision_id)), headers=f.headers(RISK)
        )
        assert reused.status_code == 403 and reused.json()["code"] == "approval_invalid"
        assert "already used" in reused.json()["message"]
        assert await f.store.count(refused_submissions, decision_id=decision_id) == 1
        assert await f.store.count(orders, account_id=gina.account_id) == 1
        assert await f.store.count(trades, account_id=gina.account_id) == 1


async def test_a_database_error_between_fill_and_recording_neither_loses_nor_doubles_the_fill(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = backing.settings()
    hank = trader()
    real_add_many_to_outbox = execution_store.add_many_to_outbox
    broken = {"on": True}

    async def failing_add_many_to_outbox(session: Any, table: Any, events: list[Envelope]) -> None:
        # the report's events are written together (submitted, the trade, filled): the write fails
        if broken["on"] and any(event.type == "order.filled" for event in events):
            raise OperationalError("INSERT INTO outbox ...", {}, ConnectionError("Lost connection to server"))
        await real_add_many_to_outbox(session, table, events)

    monkeypatch.setattr(execution_store, "add_many_to_outbox", failing_add_many_to_outbox)
    terms = _terms(hank, qty=700)
    async with event_log(settings) as events:
        async with fleet(settings) as f:
            await _started(f)
            response = await f.execution.post(
                "/v1/orders", json=_body(terms, _signed(settings, terms)), headers=f.headers(hank)
            )
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "database_unavailable"

            # The paper broker's book is written in the transaction that records its report: nothing of the failed
            # transaction remains, in the book or the order: still ACCEPTED, no fill, no trade, no half the events.
            stored = await f.store.find_order(hank.account_id, terms.client_order_id)
            assert stored is not None
            order_id = stored.order.order_id
            async with f.store.db.session() as s:
                assert (await s.execute(select(paper_fills).where(paper_fills.c.order_id == order_id))).all() == []
                assert (await s.execute(select(paper_orders).where(paper_orders.c.order_id == order_id))).all() == []
            assert stored.order.status.value == "accepted" and stored.order.filled_qty == 0
            assert await f.store.transitions(order_id) == [(None, "accepted")]
            assert await f.store.count(trades, order_id=order_id) == 0
            assert await _outbox_types(f, order_id) == ["order.accepted"]
            # The client's retry is a repeat: the existing order, nothing else (reconciliation finishes it).
            repeat = await f.execution.post(
                "/v1/orders", json=_body(terms, _signed(settings, terms)), headers=f.headers(hank)
            )
            assert repeat.status_code == 200 and repeat.json()["status"] == "accepted"

        # "Crash" and restart with the database healthy: start-up reconciliation resubmits the order, the broker
        # matches it (at the same latest close), and its fill is recorded once, in the book and as the trade.
        broken["on"] = False
        async with fleet(settings) as f:
            await _started(f)
            after = await f.store.get_order(order_id)
            assert after is not None and after.order.status.value == "filled"
            async with f.store.db.session() as s:
                [fill] = (await s.execute(select(paper_fills).where(paper_fills.c.order_id == order_id))).all()
            assert (fill.fill_id, fill.qty, fill.price) == (f"paper-{order_id}-1", 700, Decimal("10.00"))
            [trade] = await f.store.list_trades(account_id=hank.account_id, order_id=None, limit=10)
            assert trade.trade_id == fill.fill_id and trade.qty == 700
            assert trade.traded_at == fill.traded_at.replace(tzinfo=UTC)  # the book's fill, recorded once
            assert await f.store.transitions(order_id) == [
                (None, "accepted"),
                ("accepted", "submitted"),
                ("submitted", "filled"),
            ]
            assert await _desk(f).reconcile() == 0  # nothing left to do
            again = await f.execution.post(
                "/v1/orders", json=_body(terms, _signed(settings, terms)), headers=f.headers(hank)
            )
            assert again.status_code == 200 and again.json()["status"] == "filled"
            assert await f.store.count(trades, order_id=order_id) == 1
            assert await f.store.count(paper_fills, order_id=order_id) == 1

            expected = ["order.accepted", "order.submitted", "trade.executed", "order.filled"]
            await until(lambda: len(events.of_order(order_id)) >= 4, what="the order's events")
            await asyncio.sleep(1.0)  # a duplicate would arrive by now
            assert events.types_of(order_id) == expected


async def test_with_the_broker_unavailable_the_order_stays_accepted_until_reconciled(backing: Backing) -> None:
    settings = backing.settings()
    ivy = trader()
    async with fleet(settings) as f:
        await _started(f)
        f.data_transport.down = True  # the paper broker cannot price the order
        terms = _terms(ivy, order_type="limit", qty=300, price="10.05")
        response = await f.execution.post(
            "/v1/orders", json=_body(terms, _signed(settings, terms)), headers=f.headers(ivy)
        )
        assert response.status_code == 503
        assert response.json()["code"] == "broker_unavailable"
        order_id = response.json()["details"]["order_id"]
        assert (await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(ivy))).json()["status"] == "accepted"
        assert await f.store.count(paper_orders, order_id=order_id) == 0
        assert await _desk(f).reconcile() == 0  # still down: nothing resolved, nothing broken

        f.data_transport.down = False
        assert await _desk(f).reconcile() == 1
        order = (await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(ivy))).json()
        assert (order["status"], order["filled_qty"], order["avg_fill_price"]) == ("filled", 300, "10.00")
        assert await f.store.count(trades, order_id=order_id) == 1


async def test_an_order_cancelled_in_the_book_before_it_is_booked_is_answered_with_the_books_cancel(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = backing.settings()
    lee = trader()
    async with fleet(settings) as f:
        await _started(f)
        broker = _desk(f).broker
        real_book = broker.book  # type: ignore[attr-defined]

        async def book_after_a_cancel(order: Any, **kw: Any) -> Any:
            booking = await real_book(order, **kw)
            await broker.cancel(order.order_id)  # its tombstone is written between the match and the book's write
            return booking

        monkeypatch.setattr(broker, "book", book_after_a_cancel)
        terms = _terms(lee, qty=500)
        response = await f.execution.post(
            "/v1/orders", json=_body(terms, _signed(settings, terms)), headers=f.headers(lee)
        )
        assert response.status_code == 201, response.text
        order = response.json()
        assert (order["status"], order["filled_qty"]) == ("cancelled", 0)
        assert await f.store.transitions(order["order_id"]) == [(None, "accepted"), ("accepted", "cancelled")]
        assert await f.store.count(trades, order_id=order["order_id"]) == 0
        assert await f.store.count(paper_fills, order_id=order["order_id"]) == 0


async def test_cancels_and_who_sees_what(backing: Backing) -> None:
    settings = backing.settings()
    judy, kim = trader(), trader()
    async with event_log(settings) as events, fleet(settings) as f:
        await _started(f)
        resting_terms = _terms(judy, order_type="limit", qty=100, price="9.99")  # below the close of 10.00
        resting = await f.execution.post(
            "/v1/orders", json=_body(resting_terms, _signed(settings, resting_terms)), headers=f.headers(judy)
        )
        assert resting.status_code == 201 and resting.json()["status"] == "submitted"
        order_id = resting.json()["order_id"]

        # Another trader can neither see nor cancel it; a service sees every account.
        assert (await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(kim))).status_code == 404
        denied = await f.execution.post(f"/v1/orders/{order_id}/cancel", headers=f.headers(kim))
        assert denied.status_code == 404 and denied.json()["code"] == "order_not_found"
        assert (await f.execution.get("/v1/orders", headers=f.headers(kim))).json() == []
        everyone = (await f.execution.get("/v1/orders?limit=1000", headers=f.headers(RISK))).json()
        assert order_id in {o["order_id"] for o in everyone}

        cancelled = await f.execution.post(f"/v1/orders/{order_id}/cancel", headers=f.headers(judy))
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = await f.execution.post(f"/v1/orders/{order_id}/cancel", headers=f.headers(judy))
        assert again.status_code == 409 and again.json()["code"] == "order_not_cancellable"
        listed = (await f.execution.get("/v1/orders?status=cancelled", headers=f.headers(judy))).json()
        assert [o["order_id"] for o in listed] == [order_id]
        bad_filter = await f.execution.get("/v1/orders?status=lost", headers=f.headers(judy))
        assert bad_filter.status_code == 422 and bad_filter.json()["code"] == "invalid_request"
        await until(lambda: "order.cancelled" in events.types_of(order_id), what="order.cancelled")
        assert events.types_of(order_id) == ["order.accepted", "order.submitted", "order.cancelled"]

        # A filled order cannot be cancelled.
        filled_terms = _terms(judy)
        filled = await f.execution.post(
            "/v1/orders", json=_body(filled_terms, _signed(settings, filled_terms)), headers=f.headers(judy)
        )
        late = await f.execution.post(f"/v1/orders/{filled.json()['order_id']}/cancel", headers=f.headers(judy))
        assert late.status_code == 409 and late.json()["code"] == "order_not_cancellable"

        # An order cancelled before it reached the broker can never be filled by a later resubmission. (The data
        # service is down, and new data was announced: the paper broker cannot confirm what it holds, so cannot price.)
        f.data_transport.down = True
        await f.data_changed()
        stuck_terms = _terms(judy, order_type="limit", price="10.05")  # a market buy would need a quote to admit
        stuck = await f.execution.post(
            "/v1/orders", json=_body(stuck_terms, _signed(settings, stuck_terms)), headers=f.headers(judy)
        )
        stuck_id = stuck.json()["details"]["order_id"]
        withdrawn = await f.execution.post(f"/v1/orders/{stuck_id}/cancel", headers=f.headers(judy))
        assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "cancelled"
        f.data_transport.down = False
        await _desk(f).reconcile()
        stored = await f.store.get_order(stuck_id)
        assert stored is not None
        report = await f.execution_app.state.broker.submit(stored.order)
        assert report.status.value == "cancelled" and report.fills == ()
        assert await f.store.count(trades, order_id=stuck_id) == 0

        assert (await f.execution.get(f"/v1/orders/{new_id()}", headers=f.headers(judy))).json()["code"] == (
            "order_not_found"
        )


async def test_the_outbox_keeps_events_while_the_message_broker_is_down(backing: Backing) -> None:
    settings = backing.settings()
    lee = trader()
    async with event_log(settings) as events, fleet(settings, stoppable_bus=True) as f:
        await _started(f)
        bus = f.execution_bus
        assert isinstance(bus, SwitchableBus)
        await bus.stop()
        assert (await f.execution.get("/readyz")).status_code == 503

        response = await f.risk.post(
            "/v1/orders",
            json={"client_order_id": "outbox-1", "ts_code": "600000.SH", "side": "buy", "order_type": "market",
                  "qty": 100},
            headers=f.headers(lee),
        )  # fmt: skip
        assert response.status_code == 201 and response.json()["order"]["status"] == "filled"
        order_id = response.json()["order"]["order_id"]

        expected = ["order.accepted", "order.submitted", "trade.executed", "order.filled"]
        await until(lambda: bus.publish_failures >= 2, what="the relay trying (and failing) to publish")
        assert sorted(await _outbox_types(f, order_id, pending=True)) == sorted(expected)
        assert events.of_order(order_id) == []

        await bus.restart()
        await until(lambda: len(events.of_order(order_id)) >= 4, what="the events after the restart")
        await asyncio.sleep(1.5)  # more than a relay poll: a second publication would show up
        assert events.types_of(order_id) == expected
        assert len({e.id for e in events.of_order(order_id)}) == 4
        assert await _outbox_types(f, order_id, pending=True) == []


async def _outbox_types(f: Fleet, order_id: str, *, pending: bool = False) -> list[str]:
    query = select(outbox.c.type, outbox.c.body).order_by(outbox.c.created_at, outbox.c.id)
    if pending:
        query = query.where(outbox.c.published_at.is_(None))
    async with f.store.db.session() as s:
        rows = (await s.execute(query)).all()
    return [r.type for r in rows if json.loads(r.body)["payload"].get("order_id") == order_id]


async def test_shutdown_lets_the_relay_finish_its_transaction_instead_of_hanging(backing: Backing) -> None:
    """Cancelling a task inside an asyncmy query leaves its rollback waiting forever; shutdown must not do that.
    Row locks held by another connection keep the relay inside `UPDATE outbox ...` while the app stops."""
    settings = backing.settings()
    mia = trader()
    locker = create_async_engine(settings.database_url_for("execution"))
    try:
        async with event_log(settings) as events:
            stopped = asyncio.Event()
            async with contextlib.AsyncExitStack() as stack:
                f = await stack.enter_async_context(fleet(settings, stoppable_bus=True))
                await _started(f)
                bus = f.execution_bus
                assert isinstance(bus, SwitchableBus)
                await bus.stop()
                response = await f.risk.post(
                    "/v1/orders",
                    json={"client_order_id": "shutdown-1", "ts_code": "600000.SH", "side": "buy",
                          "order_type": "market", "qty": 100},
                    headers=f.headers(mia),
                )  # fmt: skip
                order_id = response.json()["order"]["order_id"]
                lock = await locker.connect()
                tx = await lock.begin()
                await lock.execute(
                    select(outbox.c.id).where(outbox.c.published_at.is_(None)).with_for_update()
                )  # the relay will publish the first event, then wait on this lock to mark it published
                await bus.restart()
                await until(lambda: len(events.of_order(order_id)) >= 1, what="the first event")
                await asyncio.sleep(0.3)  # the relay is now blocked inside its UPDATE

                async def shut_down() -> None:
                    await stack.aclose()
                    stopped.set()

                closing = asyncio.create_task(shut_down())
                await asyncio.sleep(1.0)
                assert not stopped.is_set()  # waiting for the relay's transaction, not cancelling it
                await tx.rollback()
                await lock.close()
                await asyncio.wait_for(closing, timeout=40)  # the old stop() hung here forever
            await until(lambda: len(events.of_order(order_id)) >= 4, what="all four events")
            await asyncio.sleep(1.0)
            assert events.types_of(order_id) == ["order.accepted", "order.submitted", "trade.executed", "order.filled"]
        async with fleet(settings) as f:
            assert await _outbox_types(f, order_id, pending=True) == []
    finally:
        await locker.dispose()
