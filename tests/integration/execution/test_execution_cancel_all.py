"""Cancel-all (`POST /v1/orders/cancel-all`, docs/order-management.md) against the real MariaDB and RabbitMQ with
risk and execution in process: by code, by strategy instance, then everything (conditional orders included), each
order through the single cancel's path, the account's reserved cash going back to 0.00; a cancel the broker cannot
take is reported and the others cancelled all the same, and cancel-all again finishes the job; only the account's
trader (or an admin) may do it."""

from typing import Any

import pytest

from services.execution.brokers.base import BrokerUnavailable
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import Fleet, fleet, settle, trader

pytestmark = pytest.mark.integration

STRATEGY = Principal("svc:strategy", "service")
ADMIN = Principal("root", "admin", "acct-root")


def _buy(ts_code: str, qty: int, price: str, **kw: Any) -> dict[str, Any]:
    return {"client_order_id": f"ca-{new_id()[:12]}", "ts_code": ts_code, "side": "buy", "order_type": "limit",
            "qty": qty, "price": price, **kw}  # fmt: skip


async def _place(f: Fleet, who: Principal, body: dict[str, Any]) -> str:
    response = await f.risk.post("/v1/orders", json=body, headers=f.headers(who))
    assert response.status_code == 201, response.text
    order = response.json()["order"]
    assert order["status"] == "submitted", order  # below the last close (10.00): it rests
    return str(order["order_id"])


async def _reserved(f: Fleet, who: Principal) -> str:
    response = await f.execution.get("/v1/account", headers=f.headers(who))
    assert response.status_code == 200, response.text
    return str(response.json()["reserved"])


async def _cancel_all(f: Fleet, who: Principal, expected: int = 200, **body: Any) -> dict[str, Any]:
    response = await f.execution.post("/v1/orders/cancel-all", json=body, headers=f.headers(who))
    assert response.status_code == expected, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _status(f: Fleet, who: Principal, order_id: str) -> str:
    response = await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(who))
    return str(response.json()["status"])


async def test_cancel_all_by_code_by_instance_and_everything_returns_the_reserved_cash(backing: Backing) -> None:
    settings = backing.settings()
    alice = trader()
    async with fleet(settings) as f:
        assert (await f.execution.get("/v1/account", headers=f.headers(alice))).status_code == 200
        instance = f.strategy.add(alice.account_id, cash="100000.00")
        # Three limit buys below the last close rest, each reserving qty x limit + commission (0.025%, at least
        # 5.00) + transfer fee (0.001%, half-up to the fen):
        #   A 1,000 600000.SH @ 9.50: 9,500.00 + 5.00 + 0.10 (0.095) = 9,505.10
        #   B   500 600001.SH @ 9.60: 4,800.00 + 5.00 + 0.05 (0.048) = 4,805.05
        #   C   200 600000.SH @ 9.20 (the instance's): 1,840.00 + 5.00 + 0.02 (0.0184) = 1,845.02
        a = await _place(f, alice, _buy("600000.SH", 1000, "9.50"))
        b = await _place(f, alice, _buy("600001.SH", 500, "9.60"))
        c = await _place(f, STRATEGY, f.strategy.order(_buy("600000.SH", 200, "9.20", strategy_instance_id=instance)))
        # and a buy stop armed on 600000.SH (a conditional order: it holds no cash)
        stop = await f.execution.post(
            "/v1/conditional-orders", headers=f.headers(alice),
            json={"ts_code": "600000.SH", "side": "buy", "qty": 100, "kind": "stop", "stop_price": "10.50"},
        )  # fmt: skip
        assert stop.status_code == 201, stop.text
        stop_id = stop.json()["conditional_id"]
        # 9,505.10 + 4,805.05 + 1,845.02 = 16,155.17
        assert await _reserved(f, alice) == "16155.17"

        by_code = await _cancel_all(f, alice, ts_code="600001.sh")
        assert (by_code["requested"], by_code["cancelled"], by_code["conditional_cancelled"], by_code["failed"]) == (
            1, [b], [], [],
        )  # fmt: skip
        assert await _reserved(f, alice) == "11350.12"  # 16,155.17 - 4,805.05

        # An admin names the account; by instance: only C (conditional orders belong to no instance)
        by_instance = await _cancel_all(f, ADMIN, account_id=alice.account_id, strategy_instance_id=instance)
        assert (by_instance["account_id"], by_instance["requested"], by_instance["cancelled"]) == (
            alice.account_id, 1, [c],
        )  # fmt: skip
        assert by_instance["conditional_cancelled"] == []
        assert await _reserved(f, alice) == "9505.10"  # 11,350.12 - 1,845.02

        # Everything: A and the stop.
        everything = await _cancel_all(f, alice)
        assert (everything["requested"], everything["cancelled"], everything["cancel_requested"]) == (2, [a], [])
        assert (everything["conditional_cancelled"], everything["failed"]) == ([stop_id], [])
        assert await _reserved(f, alice) == "0.00"
        assert [await _status(f, alice, o) for o in (a, b, c)] == ["cancelled"] * 3
        got = await f.execution.get(f"/v1/conditional-orders/{stop_id}", headers=f.headers(alice))
        assert got.json()["status"] == "cancelled"

        nothing = await _cancel_all(f, alice)
        assert (nothing["requested"], nothing["cancelled"], nothing["failed"]) == (0, [], [])
        await settle(f)


async def test_a_cancel_the_broker_cannot_take_is_reported_and_cancel_all_again_finishes(backing: Backing) -> None:
    settings = backing.settings()
    bob = trader()
    async with fleet(settings) as f:
        first = await _place(f, bob, _buy("600000.SH", 100, "9.50"))
        second = await _place(f, bob, _buy("600000.SH", 200, "9.40"))
        broker = f.execution_app.state.broker
        cancel = broker.cancel

        async def refusing_first(order_id: str, **kw: Any) -> Any:
            if order_id == first:
                raise BrokerUnavailable("the broker is not answering (test)")
            return await cancel(order_id, **kw)

        broker.cancel = refusing_first
        try:
            answer = await _cancel_all(f, bob, include_conditional=False)
        finally:
            broker.cancel = cancel
        assert (answer["requested"], answer["cancelled"]) == (2, [second])
        assert [(x["order_id"], x["code"]) for x in answer["failed"]] == [(first, "broker_unavailable")]
        # 100 x 9.50 = 950.00 + 5.00 + 0.01 (0.0095) = 955.01 still reserved by the order not cancelled
        assert await _reserved(f, bob) == "955.01"
        assert await _status(f, bob, first) == "submitted"

        again = await _cancel_all(f, bob)
        assert (again["requested"], again["cancelled"], again["failed"]) == (1, [first], [])
        assert await _reserved(f, bob) == "0.00"
        await settle(f)


async def test_only_the_accounts_trader_or_an_admin_cancels_all_and_bad_bodies_are_refused(backing: Backing) -> None:
    settings = backing.settings()
    alice, mallory = trader(), trader()
    async with fleet(settings) as f:
        order = await _place(f, alice, _buy("600000.SH", 100, "9.50"))
        refused = await _cancel_all(f, mallory, 403, account_id=alice.account_id)
        assert (refused["code"], refused["details"]["field"]) == ("forbidden", "account_id")
        viewer = Principal(alice.subject + "-v", "viewer", alice.account_id)
        assert (await _cancel_all(f, viewer, 403))["code"] == "forbidden"
        unknown = await _cancel_all(f, alice, 422, side="buy")
        assert (unknown["code"], unknown["details"][0]["field"]) == ("invalid_request", "side")
        bad_code = await _cancel_all(f, alice, 422, ts_code="600000")
        assert bad_code["details"][0]["field"] == "ts_code"
        as_string = await _cancel_all(f, alice, 422, include_conditional="false")
        assert as_string["details"][0]["field"] == "include_conditional"
        service = await _cancel_all(f, STRATEGY, 422)
        assert service["details"]["field"] == "account_id"
        assert await _status(f, alice, order) == "submitted"  # nothing of the above cancelled anything
        await settle(f)
