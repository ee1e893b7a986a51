"""Batches of orders (`POST /v1/order-batches`, docs/order-management.md) through risk into execution, against the
real MariaDB, Redis and RabbitMQ: each item decided as a single order in turn (a buy's cash reserved before the next
is checked) and the approved ones admitted by execution in one request, the batch idempotent by its id, refused whole
when malformed, and completed when sent again after execution failed mid-way."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from services.execution import desk as desk_module
from services.execution.store import orders
from services.risk.batches import LEASE_S
from services.risk.events import trading_state_changed
from services.risk.store import Scope, order_batch_items, order_batches, risk_decisions
from shared.platform.errors import Unavailable
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import Fleet, fleet, settle, trader, until

pytestmark = pytest.mark.integration

STRATEGY = Principal("svc:strategy", "service")


def _buy(qty: int, price: str = "10.00", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_order_id": f"b-{new_id()[:12]}",
        "ts_code": "600000.SH",
        "side": "buy",
        "order_type": "limit",
        "qty": qty,
        "price": price,
    }
    body.update(kw)
    return body


def _batch(*items: dict[str, Any]) -> dict[str, Any]:
    return {"batch_id": f"batch-{new_id()[:12]}", "orders": list(items)}


async def _decisions(f: Fleet, account_id: str) -> int:
    async with f.risk_app.state.db.session() as s:
        rows = await s.execute(risk_decisions.select().where(risk_decisions.c.account_id == account_id))
        return len(rows.all())


async def _account(f: Fleet, principal: Principal) -> dict[str, Any]:
    response = await f.execution.get("/v1/account", headers=f.headers(principal))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_batch_places_its_orders_in_turn_and_refuses_the_one_the_cash_no_longer_covers(
    backing: Backing,
) -> None:
    settings = backing.settings(paper_opening_cash=Decimal("25000"))
    alice = trader()
    async with fleet(settings) as f:
        # The paper broker fills a limit buy at 10.00 (the last close) at once; each buy costs qty x 10.00 plus
        # commission 0.025% (at least 5.00) plus transfer fee 0.001%:
        #   1,000 -> 10,000.00 + 5.00 + 0.10 = 10,005.10; cash left 25,000.00 - 10,005.10 = 14,994.90
        #     900 ->  9,000.00 + 5.00 + 0.09 =  9,005.09; cash left 14,994.90 -  9,005.09 =  5,989.81
        #     600 ->  6,000.00 + 5.00 + 0.06 =  6,005.06 > 5,989.81: refused for cash (15.25 short)
        batch = _batch(_buy(1000), _buy(900), _buy(600))
        response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["batch_id"], answer["placed"], answer["refused"], answer["failed"], answer["complete"]) == (
            batch["batch_id"], 2, 1, 0, True,
        )  # fmt: skip
        items = answer["items"]
        assert [(i["index"], i["client_order_id"], i["status"]) for i in items] == [
            (0, batch["orders"][0]["client_order_id"], "placed"),
            (1, batch["orders"][1]["client_order_id"], "placed"),
            (2, batch["orders"][2]["client_order_id"], "refused"),
        ]
        assert [(i["order"]["qty"], i["order"]["status"], i["order"]["avg_fill_price"]) for i in items[:2]] == [
            (1000, "filled", "10.00"),
            (900, "filled", "10.00"),
        ]
        refused = items[2]
        assert (refused["code"], refused["http_status"], [r["code"] for r in refused["reasons"]]) == (
            "order_rejected", 422, ["insufficient_cash"],
        )  # fmt: skip
        assert refused["decision_id"] and refused["order"] is None
        cash = await _account(f, alice)
        assert (cash["balance"], cash["reserved"], cash["available"]) == ("5989.81", "0.00", "5989.81")
        assert await f.store.count(orders, account_id=alice.account_id) == 2
        decided = await _decisions(f, alice.account_id)
        assert decided == 3

        # The same batch again: the same answer, nothing decided or placed again.
        again = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        assert again.status_code == 200, again.text
        assert again.json() == answer
        assert await f.store.count(orders, account_id=alice.account_id) == 2
        assert await _decisions(f, alice.account_id) == decided

        # Other orders under the same batch_id: 409, nothing placed.
        other = {**batch, "orders": [_buy(100)]}
        reused = await f.risk.post("/v1/order-batches", json=other, headers=f.headers(alice))
        assert reused.status_code == 409, reused.text
        assert (reused.json()["code"], reused.json()["details"]["field"]) == ("batch_id_reused", "batch_id")
        # ... but the same id is another batch in another account.
        bob = trader()
        theirs = await f.risk.post("/v1/order-batches", json=other, headers=f.headers(bob))
        assert theirs.status_code == 200, theirs.text
        assert theirs.json()["placed"] == 1
        await settle(f)


async def test_a_malformed_batch_is_refused_whole_and_places_nothing(backing: Backing) -> None:
    settings = backing.settings(batch_max_orders=3)
    alice = trader()
    async with fleet(settings) as f:
        too_many = _batch(_buy(100), _buy(200), _buy(300), _buy(400))
        response = await f.risk.post("/v1/order-batches", json=too_many, headers=f.headers(alice))
        assert response.status_code == 422, response.text
        body = response.json()
        assert (body["code"], body["details"]["field"], body["details"]["max_orders"]) == (
            "batch_too_large", "orders", 3,
        )  # fmt: skip

        twice = _batch(_buy(100), _buy(200))
        twice["orders"][1]["client_order_id"] = twice["orders"][0]["client_order_id"]
        response = await f.risk.post("/v1/order-batches", json=twice, headers=f.headers(alice))
        assert response.status_code == 422, response.text
        assert (response.json()["code"], response.json()["details"]["field"]) == (
            "duplicate_client_order_id", "orders.1.client_order_id",
        )  # fmt: skip

        unknown = _batch(_buy(100), _buy(200, good_till="2025-01-01"))
        response = await f.risk.post("/v1/order-batches", json=unknown, headers=f.headers(alice))
        assert response.status_code == 422, response.text
        assert (response.json()["code"], response.json()["details"][0]["field"]) == (
            "invalid_request", "orders.1.good_till",
        )  # fmt: skip
        # an item the exchange would not take (a limit IOC; an SH fill-or-kill): refused by name, nothing placed
        for item, code, field in [
            (_buy(200, time_in_force="ioc"), "time_in_force_unsupported", "orders.1.time_in_force"),
            ({**_buy(200), "order_type": "market", "price": None, "market_type": "fok"}, "market_type_invalid",
             "orders.1.market_type"),
        ]:  # fmt: skip
            response = await f.risk.post("/v1/order-batches", json=_batch(_buy(100), item), headers=f.headers(alice))
            assert response.status_code == 422, response.text
            assert (response.json()["code"], response.json()["details"]["field"]) == (code, field)

        empty = await f.risk.post("/v1/order-batches", json=_batch(), headers=f.headers(alice))
        assert (empty.status_code, empty.json()["details"][0]["field"]) == (422, "orders")

        # A person naming a strategy instance in one item: 403 for the whole batch, as for that single order.
        named = _batch(_buy(100), _buy(100, strategy_instance_id="a" * 32))
        response = await f.risk.post("/v1/order-batches", json=named, headers=f.headers(alice))
        assert response.status_code == 403, response.text
        assert (response.json()["code"], response.json()["details"]["field"]) == ("forbidden", "orders.1")

        viewer = Principal("vera", "viewer", "acct-vera")
        response = await f.risk.post("/v1/order-batches", json=_batch(_buy(100)), headers=f.headers(viewer))
        assert response.status_code == 403, response.text

        assert await f.store.count(orders, account_id=alice.account_id) == 0
        assert await _decisions(f, alice.account_id) == 0
        async with f.risk_app.state.db.session() as s:
            stored = await s.execute(order_batches.select().where(order_batches.c.account_id == alice.account_id))
            assert stored.all() == []


async def test_a_batch_execution_fails_in_places_only_the_rest_when_sent_again(backing: Backing) -> None:
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        # The account's broker goes away as execution checks the second order of the batch (the first is stored).
        desk = f.execution_app.state.desk
        broker_ready = desk._broker_ready
        checked: list[str] = []

        async def gone_after_one(account_id: str) -> Any:
            checked.append(account_id)
            if len(checked) > 1:
                raise Unavailable("broker_unavailable", "the broker cannot take orders now (test); nothing was sent")
            return await broker_ready(account_id)

        desk._broker_ready = gone_after_one
        batch = _batch(_buy(100), _buy(200, price="9.50"), _buy(300, price="9.80"))
        response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        assert response.status_code == 200, response.text
        first = response.json()
        assert (first["placed"], first["refused"], first["failed"], first["complete"]) == (1, 0, 2, False)
        assert [(i["status"], i.get("code"), i.get("http_status")) for i in first["items"]] == [
            ("placed", None, None),
            ("failed", "broker_unavailable", 503),  # execution's code, as for a single order
            ("failed", "execution_unavailable", 503),  # its own answer: execution did not try it
        ]
        assert "not_sent" in first["items"][2]["message"]
        assert await f.store.count(orders, account_id=alice.account_id) == 1
        async with f.risk_app.state.db.session() as s:
            [row] = (await s.execute(order_batches.select().where(order_batches.c.batch_id == batch["batch_id"]))).all()
            assert (row.status, row.claim_token) == ("open", None)
            recorded = await s.execute(
                order_batch_items.select().where(order_batch_items.c.batch_id == batch["batch_id"])
            )
            assert [(r.item_index, r.status) for r in recorded.all()] == [(0, "placed")]

        # The broker is back: the batch sent again places the two that failed, and only those.
        desk._broker_ready = broker_ready
        response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        assert response.status_code == 200, response.text
        second = response.json()
        assert (second["placed"], second["refused"], second["failed"], second["complete"]) == (3, 0, 0, True)
        assert second["items"][0] == first["items"][0]  # the first item's answer as recorded
        placed = [i["order"] for i in second["items"]]
        assert [(o["client_order_id"], o["qty"], o["price"]) for o in placed] == [
            (batch["orders"][0]["client_order_id"], 100, "10.00"),
            (batch["orders"][1]["client_order_id"], 200, "9.50"),
            (batch["orders"][2]["client_order_id"], 300, "9.80"),
        ]
        assert await f.store.count(orders, account_id=alice.account_id) == 3
        third = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        assert third.json() == second
        assert await f.store.count(orders, account_id=alice.account_id) == 3
        await settle(f)


async def test_a_strategy_instances_batch_is_checked_against_its_sleeve_item_by_item(backing: Backing) -> None:
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        assert (await f.execution.get("/v1/account", headers=f.headers(alice))).status_code == 200
        # The sleeve's cash: 3,000.00. 200 x 10.00 = 2,000.00 + 5.00 + 0.02 = 2,005.02 passes; 400 x 10.00 =
        # 4,000.00 + 5.00 + 0.04 = 4,005.04 does not (each item carries the sleeve as the runner computed it).
        instance = f.strategy.add(alice.account_id, cash="3000.00")
        items = [
            f.strategy.order(_buy(200, strategy_instance_id=instance)),
            f.strategy.order(_buy(400, strategy_instance_id=instance)),
        ]
        response = await f.risk.post("/v1/order-batches", json=_batch(*items), headers=f.headers(STRATEGY))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert [i["status"] for i in answer["items"]] == ["placed", "refused"]
        assert answer["items"][0]["order"]["strategy_instance_id"] == instance
        assert [r["code"] for r in answer["items"][1]["reasons"]] == ["insufficient_strategy_cash"]

        # An instance's item without its sleeve: the whole batch is refused, naming the item's field.
        bare = _batch(_buy(100, strategy_instance_id=instance))
        response = await f.risk.post("/v1/order-batches", json=bare, headers=f.headers(STRATEGY))
        assert response.status_code == 422, response.text
        assert (response.json()["code"], response.json()["details"]["field"]) == (
            "sleeve_required", "orders.0.sleeve",
        )  # fmt: skip
        assert await f.store.count(orders, account_id=alice.account_id) == 1
        await settle(f)


async def test_a_batch_whose_request_died_after_placing_an_item_completes_it_once_when_sent_again(
    backing: Backing,
) -> None:
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        batches = f.risk_app.state.batches
        store = batches.store
        record_many, release = store.record_many, store.release

        # The items are placed at execution, then risk's database fails as their answers are recorded.
        async def failing(*args: Any, **kw: Any) -> None:
            raise OperationalError("INSERT", {}, Exception("MariaDB went away (test)"))

        store.record_many = failing
        batch = _batch(_buy(100), _buy(200, price="9.50"), _buy(300, price="9.80"))
        response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_unavailable"
        assert await f.store.count(orders, account_id=alice.account_id) == 3  # each reached execution
        store.record_many = record_many

        # Sent again: each item is found by its client_order_id (risk replays its decision, execution answers with
        # the order it holds); three orders in all, three decisions.
        response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["placed"], answer["complete"]) == (3, True)
        assert await f.store.count(orders, account_id=alice.account_id) == 3
        assert await _decisions(f, alice.account_id) == 3  # each decision replayed, not made again

        # A request that dies without giving its lease up holds a batch for LEASE_S: a copy meanwhile is told so,
        # and once the lease has run out the copy completes the batch.
        async def dies(*args: Any, **kw: Any) -> None:
            raise RuntimeError("the process died here (test)")

        place_many = batches.desk.place_many
        crashing = _batch(_buy(100), _buy(200, price="9.50"))

        async def dies_after_the_first(orders_: Any, principal: Principal, **kw: Any) -> Any:
            await place_many(orders_[:1], principal, **kw)
            raise RuntimeError("the process died here (test)")

        batches.desk.place_many, store.release = dies_after_the_first, dies
        with pytest.raises(RuntimeError):
            await f.risk.post("/v1/order-batches", json=crashing, headers=f.headers(alice))
        batches.desk.place_many, store.release = place_many, release
        busy = await f.risk.post("/v1/order-batches", json=crashing, headers=f.headers(alice))
        assert busy.status_code == 409, busy.text
        assert busy.json()["code"] == "batch_in_progress"

        clock = store.clock
        store.clock = lambda: clock() + timedelta(seconds=LEASE_S + 1)
        try:
            done = await f.risk.post("/v1/order-batches", json=crashing, headers=f.headers(alice))
        finally:
            store.clock = clock
        assert done.status_code == 200, done.text
        assert [i["status"] for i in done.json()["items"]] == ["placed", "placed"]
        assert await f.store.count(orders, account_id=alice.account_id) == 5
        await settle(f)


async def _claimed_until(f: Fleet, account_id: str, batch_id: str) -> Any:
    async with f.risk_app.state.db.session() as s:
        row = (
            await s.execute(
                order_batches.select().where(
                    order_batches.c.account_id == account_id, order_batches.c.batch_id == batch_id
                )
            )
        ).first()
    return None if row is None else row.claimed_until


async def test_an_item_placed_for_longer_than_the_lease_keeps_a_copy_of_the_batch_out(backing: Backing) -> None:
    """Items whose placing waits past LEASE_S (HTTP timeouts): the lease is renewed while they are in flight, so a
    copy of the batch sent meanwhile is 409 batch_in_progress instead of placing the same items alongside them."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        batches = f.risk_app.state.batches
        store = batches.store
        batches.renew_s = 0.05  # the heartbeat, made quick (its default is LEASE_S / 3)
        place_many, clock = batches.desk.place_many, store.clock
        slow = _batch(_buy(100), _buy(200, price="9.50"))
        copies: list[httpx.Response] = []

        async def slow_place(orders_: Any, principal: Principal, **kw: Any) -> Any:
            # The placing hangs for LEASE_S + 1 s on the store's clock: the lease the renewal before it gave (now +
            # 30 s) has run out, unless renewed meanwhile. Wait for the renewal against the moved clock (now + 31 + 30).
            store.clock = lambda: clock() + timedelta(seconds=LEASE_S + 1)

            async def renewed() -> bool:
                until_ = await _claimed_until(f, alice.account_id or "", slow["batch_id"])
                return until_ is not None and until_ > clock() + timedelta(seconds=LEASE_S + 1)

            await until(renewed, what="the lease renewed while the items are placed")
            copies.append(await f.risk.post("/v1/order-batches", json=slow, headers=f.headers(alice)))
            return await place_many(orders_, principal, **kw)

        batches.desk.place_many = slow_place
        try:
            response = await f.risk.post("/v1/order-batches", json=slow, headers=f.headers(alice))
        finally:
            batches.desk.place_many, store.clock = place_many, clock
        assert response.status_code == 200, response.text
        assert [i["status"] for i in response.json()["items"]] == ["placed", "placed"]
        [copy] = copies
        assert (copy.status_code, copy.json()["code"]) == (409, "batch_in_progress")
        assert await f.store.count(orders, account_id=alice.account_id) == 2  # each item once
        assert await _decisions(f, alice.account_id or "") == 2
        await settle(f)


async def test_a_request_whose_lease_was_taken_over_sends_nothing(backing: Backing) -> None:
    """A copy took the batch over before this request placed its items (this request stalled past its lease): the
    renewal before the items are decided finds another token, so this request stops (409 batch_in_progress) without
    deciding or sending any."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        batches = f.risk_app.state.batches
        store = batches.store
        place_many, renew = batches.desk.place_many, store.renew
        batch = _batch(_buy(100), _buy(200, price="9.50"))
        sent: list[str] = []

        async def taken_over_first(account_id: str, batch_id: str, token: str) -> None:
            async with f.risk_app.state.db.session() as s:  # a copy's claim: its own token
                await s.execute(
                    order_batches.update()
                    .where(order_batches.c.account_id == account_id, order_batches.c.batch_id == batch_id)
                    .values(claim_token="copy-token")
                )
            await renew(account_id, batch_id, token)

        async def counting(orders_: Any, principal: Principal, **kw: Any) -> Any:
            sent.extend(o.client_order_id for o in orders_)
            return await place_many(orders_, principal, **kw)

        batches.desk.place_many, store.renew = counting, taken_over_first
        try:
            response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        finally:
            batches.desk.place_many, store.renew = place_many, renew
        assert (response.status_code, response.json()["code"]) == (409, "batch_in_progress")
        assert sent == []  # no item reached the desk
        assert await f.store.count(orders, account_id=alice.account_id) == 0
        assert await _decisions(f, alice.account_id or "") == 0
        await settle(f)


async def test_an_item_execution_refuses_does_not_hide_the_orders_it_placed_after_it(backing: Backing) -> None:
    """Execution refuses the second item's approval (403: risk and execution disagree) and goes on with the third:
    the batch answers the third as placed (its order), not "not sent", and records it, so nobody places it again."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        batch = _batch(_buy(100), _buy(200, price="9.50"), _buy(300, price="9.80"))
        refused_cid = batch["orders"][1]["client_order_id"]
        checked = desk_module.refusal_reason

        def refuses_the_second(secret: str, terms: Any, *args: Any, **kw: Any) -> str | None:
            if terms.client_order_id == refused_cid:
                return "approval signature does not match the order (test)"
            return checked(secret, terms, *args, **kw)

        desk_module.refusal_reason = refuses_the_second
        try:
            response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        finally:
            desk_module.refusal_reason = checked
        assert response.status_code == 200, response.text
        answer = response.json()
        assert [(i["status"], i.get("code")) for i in answer["items"]] == [
            ("placed", None), ("failed", "execution_refused"), ("placed", None),
        ]  # fmt: skip
        assert answer["items"][2]["order"]["client_order_id"] == batch["orders"][2]["client_order_id"]
        assert await f.store.count(orders, account_id=alice.account_id) == 2
        async with f.risk_app.state.db.session() as s:
            recorded = await s.execute(
                order_batch_items.select().where(order_batch_items.c.batch_id == batch["batch_id"])
            )
            assert sorted((r.item_index, r.status) for r in recorded.all()) == [(0, "placed"), (2, "placed")]
        await settle(f)


async def test_a_request_that_loses_its_lease_while_deciding_answers_409_and_decides_no_further_item(
    backing: Backing,
) -> None:
    """A copy takes the batch over while this request decides its items (its heartbeat finds another token): no
    further item is decided, and the request answers 409 batch_in_progress (not 200 with its items failed), even
    with nothing of its own to record."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        batches = f.risk_app.state.batches
        batches.renew_s = 0.05  # the heartbeat, made quick
        place_many = batches.desk.place_many
        batch = _batch(_buy(100), _buy(200, price="9.50"))
        decided_after: list[int] = []

        async def taken_over_while_deciding(orders_: Any, principal: Principal, **kw: Any) -> Any:
            stop = kw["stop"]
            async with f.risk_app.state.db.session() as s:  # a copy's claim: its own token
                await s.execute(
                    order_batches.update()
                    .where(order_batches.c.batch_id == batch["batch_id"])
                    .values(claim_token="copy-token")
                )
            await until(stop, what="the heartbeat finds the lease taken")
            answers = await place_many(orders_, principal, **kw)  # decides nothing now
            decided_after.extend(k for k, a in enumerate(answers) if a is not None)
            return answers

        batches.desk.place_many = taken_over_while_deciding
        try:
            response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        finally:
            batches.desk.place_many = place_many
        assert (response.status_code, response.json()["code"]) == (409, "batch_in_progress")
        assert decided_after == []
        assert await f.store.count(orders, account_id=alice.account_id) == 0
        assert await _decisions(f, alice.account_id or "") == 0
        await settle(f)


async def test_a_batch_whose_decisions_cannot_be_recorded_sends_nothing_and_gives_its_cash_back(
    backing: Backing,
) -> None:
    """A batch's decisions are recorded together before any is sent: the database failing there sends nothing
    (each decided item answers the failure) and keeps no reservation, so the same batch sent again places both
    orders on the same cash."""
    settings = backing.settings(paper_opening_cash=Decimal("25000"))
    alice = trader()
    async with fleet(settings) as f:
        desk = f.risk_app.state.batches.desk
        log = desk.batch_log
        record_many = log.record_many

        async def failing(*args: Any, **kw: Any) -> None:
            raise OperationalError("INSERT INTO risk_decisions", {}, Exception("MariaDB went away (test)"))

        # 1,000 x 10.00 + 5.00 + 0.10 = 10,005.10 and 900 x 10.00 + 5.00 + 0.09 = 9,005.09: 19,010.19 of 25,000.00,
        # so both can be placed once, and not twice (a reservation kept would refuse the second for cash)
        batch = _batch(_buy(1000), _buy(900))
        log.record_many = failing
        try:
            response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        finally:
            log.record_many = record_many
        assert response.status_code == 200, response.text
        first = response.json()
        assert (first["placed"], first["failed"], first["complete"]) == (0, 2, False)
        assert [(i["status"], i.get("code")) for i in first["items"]] == [("failed", "database_unavailable")] * 2
        assert await f.store.count(orders, account_id=alice.account_id) == 0
        assert await _decisions(f, alice.account_id or "") == 0

        response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        assert response.status_code == 200, response.text
        assert (response.json()["placed"], response.json()["complete"]) == (2, True)
        assert await f.store.count(orders, account_id=alice.account_id) == 2
        assert (await _account(f, alice))["available"] == "5989.81"  # 25,000.00 - 19,010.19
        await settle(f)


async def test_a_halt_while_a_batch_is_decided_holds_for_every_order_of_it(backing: Backing) -> None:
    """The batch reads the trading states once, before its first item; an admin's halt committed while its items
    are decided is seen when their decisions are recorded: nothing is recorded under the old state and the batch is
    decided again item by item, each under the halt (refused, nothing sent)."""
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        desk = f.risk_app.state.batches.desk
        store = f.risk_app.state.store
        decide = desk._decide
        decided: list[str] = []

        async def halting_after_the_first(request: Any, principal: Principal, **kw: Any) -> Any:
            answer = await decide(request, principal, **kw)
            decided.append(request.client_order_id)
            if len(decided) == 1:
                await store.set_trading_state(Scope.ACCOUNT, alice.account_id, "halted", reason="drill (test)",
                                              by="root", at=datetime.now(UTC), make_event=trading_state_changed)  # fmt: skip
            return answer

        batch = _batch(_buy(100), _buy(200))
        desk._decide = halting_after_the_first
        try:
            response = await f.risk.post("/v1/order-batches", json=batch, headers=f.headers(alice))
        finally:
            desk._decide = decide
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["placed"], answer["refused"]) == (0, 2), answer
        cids = [o["client_order_id"] for o in batch["orders"]]
        assert decided == cids + cids  # decided with the batch, then again each on its own
        for item in answer["items"]:
            assert "halted" in item["message"], item
        assert await f.store.count(orders, account_id=alice.account_id) == 0
        async with f.risk_app.state.db.session() as s:
            rows = await s.execute(risk_decisions.select().where(risk_decisions.c.account_id == alice.account_id))
            assert sorted((r.client_order_id, r.approved) for r in rows.all()) == sorted((c, False) for c in cids)
        await settle(f)
