"""Execution's `POST /v1/order-submissions` (risk's approved orders of one batch in one request, docs/order-path.md
"A batch's orders at execution") against the real MariaDB: each item submitted exactly as by `POST /v1/orders`, in
the order given, with its own answer; a repeat answered with the same orders; an item answered 5xx stops the batch
(the rest `not_sent`) and the batch sent again completes it; a malformed body stores nothing."""

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from services.execution.brokers.base import AlreadyBooked
from services.execution.desk import OrderDesk
from services.execution.store import orders, refused_submissions, trades
from shared.platform.approval import sign_approval
from shared.platform.errors import Unavailable
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    fleet,
    limit_buy,
    settle,
    signed_order,
    trader,
    trades_were_yesterday,
)

pytestmark = pytest.mark.integration


def _desk(f: Fleet) -> OrderDesk:
    desk: OrderDesk = f.execution_app.state.desk
    return desk


async def _submit(f: Fleet, principal: Principal, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST the bodies as one batch (as risk sends them: with the caller's token); the 200 answer's items."""
    response = await f.execution.post("/v1/order-submissions", json={"orders": bodies}, headers=f.headers(principal))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    assert [i["index"] for i in items] == list(range(len(bodies)))
    return items


async def _stored(f: Fleet, account_id: str | None) -> list[tuple[str, str]]:
    """The account's orders as (client_order_id, order_id), oldest first."""
    async with f.store.db.session() as s:
        rows = await s.execute(
            select(orders.c.client_order_id, orders.c.order_id)
            .where(orders.c.account_id == account_id)
            .order_by(orders.c.created_at)
        )
        return [(r.client_order_id, r.order_id) for r in rows.all()]


def _statuses(items: list[dict[str, Any]]) -> list[tuple[int, str | None]]:
    return [(i["status_code"], i["code"]) for i in items]


async def test_a_batch_of_approved_orders_is_placed_in_order_and_a_repeat_answers_the_same_orders(
    backing: Backing,
) -> None:
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        terms = [limit_buy(alice, qty=100), limit_buy(alice, qty=200, price="9.50"), limit_buy(alice, qty=300)]
        bodies = [signed_order(settings, t) for t in terms]
        items = await _submit(f, alice, bodies)
        assert _statuses(items) == [(201, None), (201, None), (201, None)]
        assert [(i["order"]["client_order_id"], i["order"]["qty"], i["order"]["price"]) for i in items] == [
            (terms[0].client_order_id, 100, "10.00"),
            (terms[1].client_order_id, 200, "9.50"),
            (terms[2].client_order_id, 300, "10.00"),
        ]
        assert all(i["message"] is None and i["details"] is None for i in items)
        order_ids = [i["order"]["order_id"] for i in items]
        # stored in the order given (created_at: each admission after the one before it)
        assert await _stored(f, alice.account_id) == [
            (t.client_order_id, o) for t, o in zip(terms, order_ids, strict=True)
        ]

        # The same batch again (the same approvals, as risk replays its decisions): each item is a repeat, 200 with
        # the order it made the first time; nothing new stored.
        again = await _submit(f, alice, bodies)
        assert _statuses(again) == [(200, None), (200, None), (200, None)]
        assert [i["order"]["order_id"] for i in again] == order_ids
        assert len(await _stored(f, alice.account_id)) == 3
        # each answer is the one `POST /v1/orders` gives for that submission
        single = await f.execution.post("/v1/orders", json=bodies[1], headers=f.headers(alice))
        assert single.status_code == 200 and single.json()["order_id"] == order_ids[1]
        await settle(f)


async def test_an_item_with_a_forged_approval_is_refused_alone(backing: Backing) -> None:
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        honest = [limit_buy(alice, qty=100), limit_buy(alice, qty=200), limit_buy(alice, qty=300)]
        forged = honest[1]
        bodies = [signed_order(settings, t) for t in honest]
        # the middle one signed with another secret than risk's
        approval = sign_approval("not-the-approval-secret-123", forged, new_id()).model_dump(mode="json")
        bodies[1] = {**forged.model_dump(mode="json"), "approval": approval}
        items = await _submit(f, alice, bodies)
        assert _statuses(items) == [(201, None), (403, "approval_invalid"), (201, None)]
        assert items[1]["order"] is None
        assert "approval signature does not match the order" in items[1]["message"]
        assert [c for c, _ in await _stored(f, alice.account_id)] == [
            honest[0].client_order_id,
            honest[2].client_order_id,
        ]
        # recorded as refused, as a single submission would be
        assert await f.store.count(refused_submissions, client_order_id=forged.client_order_id) == 1

        # Who may send it: the callers of POST /v1/orders, each item checked as a single order. A trader's item
        # for another account: 403 for that item; no internal token: 401 for the request.
        victim = trader()
        theirs, mine = limit_buy(victim, qty=100), limit_buy(alice, qty=100)
        items = await _submit(f, alice, [signed_order(settings, theirs), signed_order(settings, mine)])
        assert _statuses(items) == [(403, "approval_invalid"), (201, None)]
        assert f"may not place orders for account {victim.account_id}" in items[0]["message"]
        anonymous = await f.execution.post("/v1/order-submissions", json={"orders": [signed_order(settings, mine)]})
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
        assert await _stored(f, victim.account_id) == []
        assert len(await _stored(f, alice.account_id)) == 3
        await settle(f)


async def test_an_item_the_account_cannot_afford_is_refused_alone(backing: Backing) -> None:
    settings = backing.settings(paper_opening_cash=Decimal("25000"))
    alice = trader()
    async with fleet(settings) as f:
        # Limit buys of 600000.SH at 10.00; each reserves (or, filled at 10.00, pays) qty x 10.00 plus commission
        # 0.025% (at least 5.00) plus transfer fee 0.001%:
        #   1,000 -> 10,000.00 + 5.00 + 0.10 = 10,005.10; available 25,000.00 - 10,005.10 = 14,994.90
        #   1,500 -> 15,000.00 + 5.00 (3.75 < 5) + 0.15 = 15,005.15 > 14,994.90: 422 insufficient_cash
        #     900 ->  9,000.00 + 5.00 (2.25 < 5) + 0.09 =  9,005.09; available 14,994.90 - 9,005.09 = 5,989.81
        terms = [limit_buy(alice, qty=1000), limit_buy(alice, qty=1500), limit_buy(alice, qty=900)]
        items = await _submit(f, alice, [signed_order(settings, t) for t in terms])
        assert _statuses(items) == [(201, None), (422, "insufficient_cash"), (201, None)]
        assert items[1]["details"] == {"needed": "15005.15", "available": "14994.90"}
        assert items[1]["order"] is None
        assert [c for c, _ in await _stored(f, alice.account_id)] == [
            terms[0].client_order_id,
            terms[2].client_order_id,
        ]
        account = await f.execution.get("/v1/account", headers=f.headers(alice))
        assert account.status_code == 200, account.text
        assert account.json()["available"] == "5989.81"
        await settle(f)


async def test_the_database_failing_as_a_batch_is_admitted_stores_nothing_and_the_batch_sent_again_places_it(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's orders are admitted in one transaction: the database lost there stores none of them; the first
    item answers why, the others were not tried; the same batch sent again places all three, once each."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        store = _desk(f).store
        create_orders = store.create_orders
        tried: list[list[str]] = []

        async def down(new: Any, **kw: Any) -> Any:
            tried.append([n.terms.client_order_id for n in new])
            raise OperationalError("INSERT INTO orders ...", {}, ConnectionError("Lost connection (test)"))

        monkeypatch.setattr(store, "create_orders", down)
        terms = [limit_buy(alice, qty=100), limit_buy(alice, qty=200, price="9.50"), limit_buy(alice, qty=300)]
        bodies = [signed_order(settings, t) for t in terms]
        items = await _submit(f, alice, bodies)
        assert _statuses(items) == [(503, "database_unavailable"), (503, "not_sent"), (503, "not_sent")]
        assert "database is unavailable" in items[0]["message"]
        assert "not tried: submission 0" in items[1]["message"]
        assert tried == [[t.client_order_id for t in terms]]  # admitted together
        assert await _stored(f, alice.account_id) == []

        monkeypatch.setattr(store, "create_orders", create_orders)
        again = await _submit(f, alice, bodies)
        assert _statuses(again) == [(201, None), (201, None), (201, None)]
        assert [c for c, _ in await _stored(f, alice.account_id)] == [t.client_order_id for t in terms]
        await settle(f)


async def test_the_database_failing_as_a_batchs_reports_are_recorded_leaves_its_orders_accepted_for_reconciliation(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Admitted (stored `accepted`) but the broker's reports not recorded: each item answers 503 (its outcome unknown
    to risk); sent again, each is answered with its order (200, no second order); reconciliation sends them to the
    broker, which fills them once."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        desk = _desk(f)
        apply_booked = desk.store.apply_booked

        async def down(*args: Any, **kw: Any) -> Any:
            raise OperationalError("UPDATE orders ...", {}, ConnectionError("Lost connection (test)"))

        monkeypatch.setattr(desk.store, "apply_booked", down)
        terms = [limit_buy(alice, qty=100), limit_buy(alice, qty=200)]
        bodies = [signed_order(settings, t) for t in terms]
        items = await _submit(f, alice, bodies)
        assert _statuses(items) == [(503, "database_unavailable"), (503, "database_unavailable")]
        stored = await _stored(f, alice.account_id)
        assert [c for c, _ in stored] == [t.client_order_id for t in terms]

        monkeypatch.setattr(desk.store, "apply_booked", apply_booked)
        again = await _submit(f, alice, bodies)
        assert _statuses(again) == [(200, None), (200, None)]
        assert [(i["order"]["order_id"], i["order"]["status"]) for i in again] == [(o, "accepted") for _, o in stored]
        assert await desk.reconcile() == 2
        for _, order_id in stored:
            order = await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(alice))
            assert order.json()["status"] == "filled", order.text  # the harness's broker fills at once
        assert len(await _stored(f, alice.account_id)) == 2
        await settle(f)


async def test_a_dependency_failing_an_items_own_checks_mid_batch_stops_it_there(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account's broker (a QMT bridge) goes away as the second item is checked: the first is placed, the second
    answers 503 `broker_unavailable` with nothing stored, the third is not tried; sent again once the broker is back,
    the first is answered with its order and the other two are placed."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        desk = _desk(f)
        broker_ready = desk._broker_ready
        checked: list[str] = []

        async def gone_after_one(account_id: str) -> Any:
            checked.append(account_id)
            if len(checked) > 1:
                raise Unavailable("broker_unavailable", "the broker cannot take orders now (test); nothing was sent")
            return await broker_ready(account_id)

        monkeypatch.setattr(desk, "_broker_ready", gone_after_one)
        terms = [limit_buy(alice, qty=100), limit_buy(alice, qty=200, price="9.50"), limit_buy(alice, qty=300)]
        bodies = [signed_order(settings, t) for t in terms]
        items = await _submit(f, alice, bodies)
        assert _statuses(items) == [(201, None), (503, "broker_unavailable"), (503, "not_sent")]
        assert "not tried: submission 1" in items[2]["message"]
        [(first, order_id)] = await _stored(f, alice.account_id)
        assert first == terms[0].client_order_id

        monkeypatch.setattr(desk, "_broker_ready", broker_ready)
        again = await _submit(f, alice, bodies)
        assert _statuses(again) == [(200, None), (201, None), (201, None)]
        assert again[0]["order"]["order_id"] == order_id
        assert [c for c, _ in await _stored(f, alice.account_id)] == [t.client_order_id for t in terms]
        await settle(f)


async def test_an_error_that_is_no_dependencys_fails_the_whole_request(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (here an unexpected constraint violation as the batch is admitted, met again when the first item is
    then admitted alone) is not an item's answer: the request fails (risk then treats every item's outcome as
    unknown); nothing of the batch was stored."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        store = _desk(f).store

        async def broken(new: Any, **kw: Any) -> Any:
            raise IntegrityError("INSERT INTO orders ...", {}, Exception("CHECK constraint failed (test)"))

        monkeypatch.setattr(store, "create_orders", broken)
        terms = [limit_buy(alice, qty=100), limit_buy(alice, qty=200), limit_buy(alice, qty=300)]
        response = await f.execution.post(
            "/v1/order-submissions",
            json={"orders": [signed_order(settings, t) for t in terms]},
            headers=f.headers(alice),
        )
        assert response.status_code == 500, response.text
        assert response.json()["code"] == "database_error"
        assert await _stored(f, alice.account_id) == []
        await settle(f)


async def test_a_batchs_sells_share_the_shares_the_earlier_ones_took(backing: Backing) -> None:
    """Sells admitted together are checked one after the other: each against the shares the ones before it in the
    batch promised (held 1,000, bought the session before: 600 + 300 pass, the next 200 finds 100 left)."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        bought = await _submit(f, alice, [signed_order(settings, limit_buy(alice, qty=1000))])
        assert _statuses(bought) == [(201, None)]
        await trades_were_yesterday(f, alice.account_id or "")
        sells = [limit_buy(alice, side="sell", qty=q) for q in (600, 300, 200)]
        items = await _submit(f, alice, [signed_order(settings, t) for t in sells])
        assert _statuses(items) == [(201, None), (201, None), (422, "insufficient_position")]
        assert items[2]["details"] == {"held_qty": 1000, "sellable_qty": 100}
        assert [c for c, _ in await _stored(f, alice.account_id)][1:] == [s.client_order_id for s in sells[:2]]
        await settle(f)


async def test_an_item_repeated_in_its_own_batch_is_answered_with_the_first_ones_order(backing: Backing) -> None:
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        body = signed_order(settings, limit_buy(alice, qty=100))
        items = await _submit(f, alice, [body, body])
        assert _statuses(items) == [(201, None), (200, None)]
        assert items[1]["order"]["order_id"] == items[0]["order"]["order_id"]
        assert len(await _stored(f, alice.account_id)) == 1
        await settle(f)


async def test_a_book_that_holds_an_order_of_the_batch_already_has_each_sent_alone(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paper book's write of the batch's orders finds one there already (a cancel's tombstone written first):
    nothing of the joint write stays, and each order is sent alone as a single order is, filled once."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        broker = _desk(f).broker
        write_many = broker.write_many
        joint: list[int] = []

        def booked_already(bookings: Any) -> Any:
            joint.append(len(bookings))

            async def write(s: Any) -> None:
                await write_many(bookings)(s)
                raise AlreadyBooked("one of them (test)")

            return write

        monkeypatch.setattr(broker, "write_many", booked_already)
        terms = [limit_buy(alice, qty=100), limit_buy(alice, qty=200)]
        items = await _submit(f, alice, [signed_order(settings, t) for t in terms])
        assert joint == [2]
        assert _statuses(items) == [(201, None), (201, None)]
        assert [i["order"]["status"] for i in items] == ["filled", "filled"]
        async with f.store.db.session() as s:
            fills = (await s.execute(select(trades.c.order_id).where(trades.c.account_id == alice.account_id))).all()
        assert sorted(r.order_id for r in fills) == sorted(i["order"]["order_id"] for i in items)  # once each
        await settle(f)


async def test_a_dependency_failing_an_orders_match_holds_it_and_the_later_ones_accepted(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paper broker's match of the second order meets the database down: the first is placed and recorded as
    alone; the second and third stay `accepted` (503 naming the order), nothing goes ahead of the second, and
    reconciliation sends them once the database is back."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        desk = _desk(f)
        book = desk.broker.book
        matched: list[str] = []

        async def down_on_the_second(order: Any, **kw: Any) -> Any:
            matched.append(order.client_order_id)
            if len(matched) == 2:
                raise OperationalError("SELECT paper_accounts ...", {}, ConnectionError("Lost connection (test)"))
            return await book(order, **kw)

        monkeypatch.setattr(desk.broker, "book", down_on_the_second)
        terms = [limit_buy(alice, qty=100), limit_buy(alice, qty=200), limit_buy(alice, qty=300)]
        items = await _submit(f, alice, [signed_order(settings, t) for t in terms])
        assert _statuses(items) == [(201, None), (503, "database_unavailable"), (503, "broker_unavailable")]
        assert matched == [t.client_order_id for t in terms[:2]]  # the third was never matched
        stored = dict(await _stored(f, alice.account_id))
        assert items[1]["details"] == {"order_id": stored[terms[1].client_order_id]}
        assert items[2]["details"] == {"order_id": stored[terms[2].client_order_id]}
        assert items[0]["order"]["status"] == "filled"
        monkeypatch.setattr(desk.broker, "book", book)
        assert await desk.reconcile() == 2
        for cid in (terms[1].client_order_id, terms[2].client_order_id):
            order = await f.execution.get(f"/v1/orders/{stored[cid]}", headers=f.headers(alice))
            assert order.json()["status"] == "filled", order.text
        await settle(f)


async def test_a_malformed_batch_is_refused_whole_and_stores_nothing(backing: Backing) -> None:
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        good = signed_order(settings, limit_buy(alice, qty=100))
        odd = {**signed_order(settings, limit_buy(alice, qty=200)), "good_till": "2025-01-01"}
        cases = [
            ({"orders": [good, odd]}, "orders.1.good_till"),  # an unknown field in an item
            ({"orders": [good], "priority": "high"}, "priority"),  # an unknown field in the body
            ({"orders": []}, "orders"),  # no orders
            ({}, "orders"),
        ]
        for body, field in cases:
            response = await f.execution.post("/v1/order-submissions", json=body, headers=f.headers(alice))
            assert response.status_code == 422, response.text
            assert (response.json()["code"], response.json()["details"][0]["field"]) == ("invalid_request", field)
        assert await _stored(f, alice.account_id) == []
        await settle(f)
