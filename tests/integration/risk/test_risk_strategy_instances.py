"""Orders of a strategy instance through risk into execution (K2), against the real MariaDB and RabbitMQ: only the
strategy service names an instance, and each of its orders carries the instance's sleeve (only its orders may); risk
checks the order against that sleeve and the sleeve's account without asking the strategy service anything, and
forwards the instance inside the approval; execution stores it on the order and its trades, serves it and publishes
it, with the trade's fees."""

from typing import Any

import pytest

from services.execution.store import orders, refused_submissions, trades
from shared.platform.approval import OrderTerms
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    event_log,
    fleet,
    settle,
    signed_order,
    trader,
    trades_were_yesterday,
    until,
)

pytestmark = pytest.mark.integration

STRATEGY = Principal("svc:strategy", "service")


def _order(instance_id: str | None, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_order_id": f"{instance_id or 'c'}-20250102-{new_id()[:6]}",
        "ts_code": "600000.SH",
        "side": "buy",
        "order_type": "limit",
        "qty": 200,
        "price": "10.50",
    }
    if instance_id is not None:
        body["strategy_instance_id"] = instance_id
    body.update(kw)
    return body


def _instance_order(f: Fleet, instance_id: str, **kw: Any) -> dict[str, Any]:
    """An order of the instance with the sleeve it carries (as the strategy service's runner sends it)."""
    return f.strategy.order(_order(instance_id, **kw))


async def _open_account(f: Fleet, owner: Principal) -> None:
    """The owner's first look opens the account (with the paper opening cash): a service may name it after that."""
    assert (await f.execution.get("/v1/account", headers=f.headers(owner))).status_code == 200


async def _rows(f: Fleet, account_id: str) -> tuple[int, int]:
    return await f.store.count(orders, account_id=account_id), await f.store.count(trades, account_id=account_id)


async def test_an_instance_order_is_placed_and_its_order_trades_and_events_carry_the_instance(backing: Backing) -> None:
    settings = backing.settings()
    alice = trader()
    async with event_log(settings) as events, fleet(settings) as f:
        await _open_account(f, alice)
        # 200 x 10.50 (the limit price) = 2,100.00 + commission 5.00 (0.525 -> minimum) + transfer 0.02 (0.021):
        # exactly the sleeve's cash.
        instance = f.strategy.add(alice.account_id, cash="2105.02")
        response = await f.risk.post("/v1/orders", json=_instance_order(f, instance), headers=f.headers(STRATEGY))
        assert response.status_code == 201, response.text
        order = response.json()["order"]
        assert (order["account_id"], order["strategy_instance_id"]) == (alice.account_id, instance)
        # The paper broker fills a limit buy at the last close, 10.00: 200 x 10.00 = 2,000.00; commission 0.50 ->
        # the 5.00 minimum; transfer 0.02; no stamp duty on a buy.
        assert (order["status"], order["filled_qty"], order["avg_fill_price"]) == ("filled", 200, "10.00")
        assert f.strategy.callers == []  # the sleeve came with the order: risk asked the strategy service nothing

        listed = await f.execution.get(
            "/v1/trades", params={"strategy_instance_id": instance}, headers=f.headers(STRATEGY)
        )
        [trade] = listed.json()
        assert (trade["account_id"], trade["strategy_instance_id"], trade["order_id"]) == (
            alice.account_id,
            instance,
            order["order_id"],
        )
        assert (trade["amount"], trade["commission"], trade["stamp_duty"], trade["transfer_fee"]) == (
            "2000.00",
            "5.00",
            "0.00",
            "0.02",
        )
        # The owner sees the instance's order among their own, marked with it.
        own = (await f.execution.get("/v1/orders", headers=f.headers(alice))).json()
        assert [(o["order_id"], o["strategy_instance_id"]) for o in own] == [(order["order_id"], instance)]

        order_id = order["order_id"]
        await until(lambda: len(events.of_order(order_id)) >= 4, what="four events on RabbitMQ")
        assert events.types_of(order_id) == ["order.accepted", "order.submitted", "trade.executed", "order.filled"]
        assert {e.payload["strategy_instance_id"] for e in events.of_order(order_id)} == {instance}
        [executed] = [e for e in events.of_order(order_id) if e.type == "trade.executed"]
        assert executed.payload["trade_id"] == trade["trade_id"]
        fees = (executed.payload["commission"], executed.payload["stamp_duty"], executed.payload["transfer_fee"])
        assert fees == ("5.00", "0.00", "0.02")

        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(alice))).json()
        assert [(d["approved"], d["strategy_instance_id"]) for d in decisions] == [(True, instance)]
        # the sleeve it was checked against, in the decision's record
        assert decisions[0]["rule_check"]["sleeve"] == {
            "instance_id": instance, "account_id": alice.account_id, "state": "running", "cash_available": "2105.02",
            "position": None, "session": None,
        }  # fmt: skip
        await settle(f)


async def test_a_person_s_orders_carry_no_instance_and_a_person_naming_one_is_refused(backing: Backing) -> None:
    settings = backing.settings()
    bob = trader()
    async with fleet(settings) as f:
        instance = f.strategy.add(bob.account_id)
        for principal in (bob, Principal("root", "admin", "acct-root"), Principal("svc:backtest", "service")):
            response = await f.risk.post("/v1/orders", json=_instance_order(f, instance), headers=f.headers(principal))
            assert response.status_code == 403, response.text
            assert response.json()["code"] == "forbidden"
        # The strategy service without an instance: refused too.
        response = await f.risk.post("/v1/orders", json=_order(None), headers=f.headers(STRATEGY))
        assert (response.status_code, response.json()["code"]) == (403, "forbidden")
        assert f.strategy.callers == [] and await _rows(f, bob.account_id) == (0, 0)

        # Nor may a person send a sleeve with an order of their own (a sleeve of theirs, or one of a rich instance)
        rich = f.strategy.add(bob.account_id, cash="99999999.00")
        for sleeve in (f.strategy.carried(instance), f.strategy.carried(rich)):
            for principal in (bob, Principal("root", "admin", "acct-root")):
                response = await f.risk.post(
                    "/v1/orders", json={**_order(None), "sleeve": sleeve}, headers=f.headers(principal)
                )
                assert (response.status_code, response.json()["code"]) == (403, "sleeve_not_allowed"), response.text
                assert response.json()["details"] == {"field": "sleeve"}
        assert await _rows(f, bob.account_id) == (0, 0)
        assert (await f.risk.get("/v1/decisions", headers=f.headers(bob))).json() == []  # nothing decided

        placed = await f.risk.post("/v1/orders", json=_order(None), headers=f.headers(bob))
        assert placed.status_code == 201, placed.text
        assert placed.json()["order"]["strategy_instance_id"] is None
        [trade] = (await f.execution.get("/v1/trades", headers=f.headers(bob))).json()
        assert trade["strategy_instance_id"] is None
        await settle(f)


async def test_execution_refuses_an_instance_order_handed_over_by_anyone_but_the_strategy_service(
    backing: Backing,
) -> None:
    settings = backing.settings()
    carol = trader()
    async with fleet(settings) as f:
        await _open_account(f, carol)
        instance = new_id()
        terms = OrderTerms(
            client_order_id=f"{instance}-20250102-0",
            account_id=carol.account_id,
            ts_code="600000.SH",
            side="buy",
            order_type="limit",
            qty=100,
            price="10.00",
            strategy_instance_id=instance,
        )
        body = signed_order(settings, terms)  # a valid approval of exactly these terms
        for principal in (carol, Principal("root", "admin", "acct-root"), Principal("svc:backtest", "service")):
            response = await f.execution.post("/v1/orders", json=body, headers=f.headers(principal))
            assert (response.status_code, response.json()["code"]) == (403, "approval_invalid"), response.text
            assert response.json()["message"] == (
                f"{principal.subject} may not place orders for strategy instance {instance}"
            )
        assert await f.store.count(refused_submissions, client_order_id=terms.client_order_id) == 3
        assert await _rows(f, carol.account_id) == (0, 0)

        response = await f.execution.post("/v1/orders", json=body, headers=f.headers(STRATEGY))
        assert response.status_code == 201, response.text
        assert response.json()["strategy_instance_id"] == instance
        await settle(f)


@pytest.mark.parametrize(
    ("sleeve", "order", "code"),
    [
        ({"state": "stopped"}, {}, "strategy_instance_not_running"),
        # 2,105.02 needed (see above), one fen less in the sleeve.
        ({"cash": "2105.01"}, {}, "insufficient_strategy_cash"),
        (
            {"positions": [{"ts_code": "600000.SH", "qty": 200, "sellable_qty": 100}]},
            {"side": "sell", "qty": 200},
            "insufficient_strategy_position",
        ),
    ],
)
async def test_an_instance_order_its_sleeve_cannot_take_is_rejected_with_the_reason(
    backing: Backing, sleeve: dict[str, Any], order: dict[str, Any], code: str
) -> None:
    settings = backing.settings()
    dora = trader()
    async with fleet(settings) as f:
        await _open_account(f, dora)
        instance = f.strategy.add(dora.account_id, **sleeve)
        if order.get("side") == "sell":
            # The account holds the shares (bought yesterday by another order): only the sleeve lacks them.
            own = await f.risk.post("/v1/orders", json=_order(None, qty=1000), headers=f.headers(dora))
            assert own.status_code == 201, own.text
            await trades_were_yesterday(f, dora.account_id)
        before = await _rows(f, dora.account_id)
        response = await f.risk.post(
            "/v1/orders", json=_instance_order(f, instance, **order), headers=f.headers(STRATEGY)
        )
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "order_rejected"
        assert [r["code"] for r in body["decision"]["reasons"]] == [code]
        assert await _rows(f, dora.account_id) == before  # nothing reached execution
        await settle(f)


async def test_an_instance_order_carries_its_sleeve_and_risk_never_asks_the_strategy_service(
    backing: Backing,
) -> None:
    settings = backing.settings()
    erin = trader()
    async with fleet(settings) as f:
        await _open_account(f, erin)
        instance, other = f.strategy.add(erin.account_id), f.strategy.add(erin.account_id)
        # Without its sleeve: 422 sleeve_required; with another instance's: 422 sleeve_mismatch. Nothing decided.
        response = await f.risk.post("/v1/orders", json=_order(instance), headers=f.headers(STRATEGY))
        assert (response.status_code, response.json()["code"]) == (422, "sleeve_required"), response.text
        assert response.json()["details"] == {"field": "sleeve"}
        wrong = {**_order(instance), "sleeve": f.strategy.carried(other)}
        response = await f.risk.post("/v1/orders", json=wrong, headers=f.headers(STRATEGY))
        assert (response.status_code, response.json()["code"]) == (422, "sleeve_mismatch"), response.text
        assert response.json()["details"] == {"field": "sleeve.instance_id"}
        # A sleeve that is not one (a field risk does not know, a cash that is not exact): 422 naming the field.
        for bad, field in (({"owner": "erin"}, "sleeve.owner"), ({"cash_available": "1e6"}, "sleeve.cash_available")):
            body = {**_order(instance), "sleeve": {**f.strategy.carried(instance), **bad}}
            response = await f.risk.post("/v1/orders", json=body, headers=f.headers(STRATEGY))
            assert (response.status_code, response.json()["code"]) == (422, "invalid_request"), response.text
            assert response.json()["message"].startswith(f"{field}: "), response.text
        assert await _rows(f, erin.account_id) == (0, 0)

        # The strategy service unreachable (and its sleeve endpoint gone): instance orders still decide, both ways.
        f.strategy_transport.down = True
        placed = await f.risk.post("/v1/orders", json=_instance_order(f, instance), headers=f.headers(STRATEGY))
        assert placed.status_code == 201, placed.text
        f.strategy.sleeves[instance]["cash_available"] = "2105.01"  # one fen short of 200 x 10.50 with fees
        refused = await f.risk.post("/v1/orders", json=_instance_order(f, instance), headers=f.headers(STRATEGY))
        assert refused.status_code == 422, refused.text
        assert [r["code"] for r in refused.json()["decision"]["reasons"]] == ["insufficient_strategy_cash"]
        assert f.strategy.callers == []  # no request reached it (none was even tried: the transport counts none)
        assert f.strategy_transport.attempts == 0
        assert await _rows(f, erin.account_id) == (1, 1)
        await settle(f)


async def test_a_retry_of_an_instance_order_is_the_same_order(backing: Backing) -> None:
    settings = backing.settings()
    fay = trader()
    async with fleet(settings) as f:
        await _open_account(f, fay)
        instance = f.strategy.add(fay.account_id)
        body = _instance_order(f, instance)
        first = await f.risk.post("/v1/orders", json=body, headers=f.headers(STRATEGY))
        f.strategy.sleeves[instance]["state"] = "stopped"  # stopped since: the order placed stays the answer
        again = await f.risk.post("/v1/orders", json=f.strategy.order(body), headers=f.headers(STRATEGY))
        assert (first.status_code, again.status_code) == (201, 200), again.text
        assert first.json()["order"]["order_id"] == again.json()["order"]["order_id"]
        assert first.json()["decision"] == again.json()["decision"]
        assert f.strategy.callers == []
        assert await _rows(f, fay.account_id) == (1, 1)
        await settle(f)


async def test_a_runner_reads_back_all_of_its_orders_and_trades_page_by_page(backing: Backing) -> None:
    settings = backing.settings()
    gus, hal = trader(), trader()
    async with fleet(settings) as f:
        for owner in (gus, hal):
            await _open_account(f, owner)
        mine, other = f.strategy.add(gus.account_id), f.strategy.add(hal.account_id)
        placed: list[str] = []
        for i in range(5):
            response = await f.risk.post(
                "/v1/orders", json=_instance_order(f, mine, qty=100 * (i + 1)), headers=f.headers(STRATEGY)
            )
            assert response.status_code == 201, response.text
            placed.append(response.json()["order"]["order_id"])
        assert (
            await f.risk.post("/v1/orders", json=_instance_order(f, other), headers=f.headers(STRATEGY))
        ).status_code == 201
        assert (await f.risk.post("/v1/orders", json=_order(None), headers=f.headers(gus))).status_code == 201

        async def pages(path: str, cursor: str) -> list[list[str]]:
            """The order_ids of each page, paging with the last row's `cursor` field."""
            out: list[list[str]] = []
            params: dict[str, Any] = {"strategy_instance_id": mine, "limit": 2, "oldest_first": "true"}
            while True:
                response = await f.execution.get(path, params=params, headers=f.headers(STRATEGY))
                assert response.status_code == 200, response.text
                rows = response.json()
                if not rows:
                    return out
                out.append([row["order_id"] for row in rows])
                params = {"strategy_instance_id": mine, "limit": 2, "after": rows[-1][cursor]}

        assert await pages("/v1/orders", "order_id") == [placed[0:2], placed[2:4], placed[4:5]]
        # One fill per order, recorded in the order they were placed.
        assert await pages("/v1/trades", "trade_id") == [placed[0:2], placed[2:4], placed[4:5]]

        # account_id: services and admins name any account; a person only their own.
        by_account = await f.execution.get(
            "/v1/orders", params={"account_id": hal.account_id}, headers=f.headers(STRATEGY)
        )
        assert [o["strategy_instance_id"] for o in by_account.json()] == [other]
        denied = await f.execution.get("/v1/trades", params={"account_id": hal.account_id}, headers=f.headers(gus))
        assert (denied.status_code, denied.json()["code"]) == (403, "forbidden")
        # A person filtering by an instance sees only what is in their own account.
        assert (
            await f.execution.get("/v1/orders", params={"strategy_instance_id": other}, headers=f.headers(gus))
        ).json() == []
        missing = await f.execution.get("/v1/orders", params={"after": new_id()}, headers=f.headers(STRATEGY))
        assert (missing.status_code, missing.json()["code"]) == (404, "order_not_found")
        await settle(f)
