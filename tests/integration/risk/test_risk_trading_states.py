"""The kill switch against the real MariaDB (and RabbitMQ for the fleet's buses): an admin sets a trading state
(`POST /v1/risk/halt`); every order decision applies the strictest of global, the account and the instance; cancels
always pass; every change is audited and is a `risk.trading_state.changed` event in risk's outbox; the state one risk
process writes is seen at once by another on the same database."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.risk.app import create_app as create_risk_app
from services.risk.store import outbox, trading_state_changes
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    fleet,
    risk_caught_up,
    settle,
    trader,
    trades_were_yesterday,
)

pytestmark = pytest.mark.integration

ROOT = Principal("root", "admin", "acct-root")


def _order(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"client_order_id": f"c-{new_id()[:10]}", "ts_code": "600000.SH", "side": "buy",
                            "order_type": "market", "qty": 100}  # fmt: skip
    body.update(kw)
    return body


def _resting_buy() -> dict[str, Any]:
    # A limit buy below the last close (10.00) rests at the paper broker: an open order.
    return _order(order_type="limit", qty=100, price="9.99")


async def _place(f: Fleet, who: Principal, **kw: Any) -> tuple[int, list[str]]:
    """(status, the reasons' codes) of an order placed through risk."""
    response = await f.risk.post("/v1/orders", json=_order(**kw), headers=f.headers(who))
    body = response.json()
    return response.status_code, [r["code"] for r in body.get("decision", {}).get("reasons", [])]


async def _halt(f: Fleet, expected: int = 200, who: Principal = ROOT, **body: Any) -> dict[str, Any]:
    response = await f.risk.post("/v1/risk/halt", json=body, headers=f.headers(who))
    assert response.status_code == expected, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _events(f: Fleet, key: str) -> list[dict[str, Any]]:
    """The payloads of risk's `risk.trading_state.changed` outbox rows for `key`, oldest first."""
    async with f.risk_app.state.db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(outbox.c.body).where(outbox.c.type == "risk.trading_state.changed").order_by(outbox.c.created_at)
            )
        ).all()
    payloads = [json.loads(r.body)["payload"] for r in rows]
    return [p for p in payloads if p["key"] == key]


async def _audit(f: Fleet, scope: str, key: str) -> list[tuple[str, str, str, str]]:
    async with f.risk_app.state.db.engine.connect() as conn:
        c = trading_state_changes.c
        rows = (
            await conn.execute(
                select(c.from_state, c.to_state, c.set_by, c.reason)
                .where(c.scope == scope, c.key == key)
                .order_by(c.set_at)
            )
        ).all()
    return [tuple(r) for r in rows]


async def test_a_halted_account_places_nothing_but_cancels_and_is_audited(backing: Backing) -> None:
    settings = backing.settings()
    alice, bob = trader(), trader()
    async with fleet(settings) as f:
        assert (await _place(f, alice, qty=1000)) == (201, [])
        await trades_were_yesterday(f, alice.account_id)
        resting = await f.risk.post("/v1/orders", json=_resting_buy(), headers=f.headers(alice))
        assert resting.status_code == 201 and resting.json()["order"]["status"] == "submitted"

        answer = await _halt(f, scope="account", account_id=alice.account_id, state="halted", reason="runaway algo")
        assert answer == {"scope": "account", "key": alice.account_id, "from_state": "active", "state": "halted",
                          "changed": True, "cancels": None}  # fmt: skip

        assert await _place(f, alice) == (422, ["trading_halted"])
        assert await _place(f, alice, side="sell", qty=100) == (422, ["trading_halted"])  # 1,000 sellable: only that
        refused = await f.risk.post("/v1/orders", json=_order(), headers=f.headers(alice))
        assert "trading is halted for account " + alice.account_id in refused.json()["message"]
        assert "runaway algo" in refused.json()["message"]
        assert await _place(f, bob) == (201, [])  # another account: unaffected

        # The cancel of her open order still passes (cancels go to execution; no trading state blocks them).
        order_id = resting.json()["order"]["order_id"]
        cancel = await f.execution.post(f"/v1/orders/{order_id}/cancel", headers=f.headers(alice))
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"

        # Halting again changes nothing: no second audit row or event.
        again = await _halt(f, scope="account", account_id=alice.account_id, state="halted", reason="still")
        assert (again["from_state"], again["changed"]) == ("halted", False)

        # Resume: her orders pass again.
        resumed = await _halt(f, scope="account", account_id=alice.account_id, state="active", reason="fixed")
        assert (resumed["from_state"], resumed["state"], resumed["changed"]) == ("halted", "active", True)
        assert await _place(f, alice) == (201, [])

        assert await _audit(f, "account", alice.account_id) == [
            ("active", "halted", "root", "runaway algo"),
            ("halted", "active", "root", "fixed"),
        ]
        events = await _events(f, alice.account_id)
        assert [(e["scope"], e["from_state"], e["to_state"], e["by"], e["reason"]) for e in events] == [
            ("account", "active", "halted", "root", "runaway algo"),
            ("account", "halted", "active", "root", "fixed"),
        ]

        # The history as risk serves it: an admin sees it; alice sees her own account's; bob not alice's.
        history = await f.risk.get(
            "/v1/risk/trading-states", params={"scope": "account", "key": alice.account_id}, headers=f.headers(ROOT)
        )
        assert [(h["from_state"], h["state"]) for h in history.json()["history"]] == [
            ("halted", "active"),
            ("active", "halted"),
        ]
        mine = await f.risk.get(
            "/v1/risk/trading-states", params={"scope": "account", "key": alice.account_id}, headers=f.headers(alice)
        )
        assert mine.status_code == 200 and len(mine.json()["history"]) == 2
        theirs = await f.risk.get(
            "/v1/risk/trading-states", params={"scope": "account", "key": alice.account_id}, headers=f.headers(bob)
        )
        assert theirs.status_code == 403
        await settle(f)


async def test_reducing_passes_only_sells_within_the_position(backing: Backing) -> None:
    settings = backing.settings()
    carl = trader()
    async with fleet(settings) as f:
        assert (await _place(f, carl, qty=1000)) == (201, [])
        await trades_were_yesterday(f, carl.account_id)
        await _halt(f, scope="account", account_id=carl.account_id, state="reducing", reason="drawdown review")

        assert await _place(f, carl, side="sell", qty=300) == (201, [])  # 1,000 held: reduces it to 700
        await risk_caught_up(f, carl.account_id)  # (risk learns of the fill from execution's events)
        assert await _place(f, carl) == (422, ["trading_reducing"])  # a buy adds
        # 700 held now: selling 800 is more than the position (and than the sellable shares)
        assert await _place(f, carl, side="sell", qty=800) == (422, ["trading_reducing", "insufficient_position"])
        assert await _place(f, carl, side="sell", qty=700) == (201, [])  # the whole rest
        await settle(f)


async def test_a_global_halt_stops_everyone_until_resumed(backing: Backing) -> None:
    settings = backing.settings("halt_global")  # its own database: a global halt would stop the other tests' orders
    dora, ed = trader(), trader()
    async with fleet(settings) as f:
        await _halt(f, scope="global", state="halted", reason="exchange outage")
        assert await _place(f, dora) == (422, ["trading_halted"])
        assert await _place(f, ed) == (422, ["trading_halted"])
        listed = (await f.risk.get("/v1/risk/trading-states", headers=f.headers(dora))).json()
        assert [(s["scope"], s["key"], s["state"]) for s in listed["states"]] == [("global", "", "halted")]
        await _halt(f, scope="global", state="active", reason="exchange back")
        assert await _place(f, dora) == (201, [])
        assert await _audit(f, "global", "") == [
            ("active", "halted", "root", "exchange outage"),
            ("halted", "active", "root", "exchange back"),
        ]
        await settle(f)


async def test_cancel_open_orders_cancels_the_scope_only_and_repeats_harmlessly(backing: Backing) -> None:
    settings = backing.settings()
    fay, gus = trader(), trader()
    async with fleet(settings) as f:
        ids: dict[str, list[str]] = {}
        for who in (fay, gus):
            ids[who.account_id] = []
            for _ in range(2):
                placed = await f.risk.post("/v1/orders", json=_resting_buy(), headers=f.headers(who))
                assert placed.status_code == 201 and placed.json()["order"]["status"] == "submitted"
                ids[who.account_id].append(placed.json()["order"]["order_id"])

        body = {"scope": "account", "account_id": fay.account_id, "state": "halted", "reason": "kill",
                "cancel_open_orders": True}  # fmt: skip
        answer = await _halt(f, **body)
        assert answer["changed"] is True
        assert answer["cancels"] == {"cancelled": 2, "failed": 0, "failures": []}

        async def statuses(who: Principal) -> dict[str, str]:
            listed = (await f.execution.get("/v1/orders", headers=f.headers(who))).json()
            return {o["order_id"]: o["status"] for o in listed}

        assert await statuses(fay) == dict.fromkeys(ids[fay.account_id], "cancelled")
        assert await statuses(gus) == dict.fromkeys(ids[gus.account_id], "submitted")

        again = await _halt(f, **body)
        assert (again["changed"], again["cancels"]) == (False, {"cancelled": 0, "failed": 0, "failures": []})
        await settle(f)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "global", "state": "halted", "reason": "x", "force": True}, "force"),
        ({"scope": "planet", "state": "halted", "reason": "x"}, "scope"),
        ({"scope": "global", "state": "frozen", "reason": "x"}, "state"),
        ({"scope": "global", "state": "halted"}, "reason"),
        ({"scope": "global", "state": "halted", "reason": "   "}, "reason"),
        ({"scope": "account", "state": "halted", "reason": "x"}, "account_id"),
        ({"scope": "global", "account_id": "acct-x", "state": "halted", "reason": "x"}, "account_id"),
        ({"scope": "instance", "state": "halted", "reason": "x"}, "instance_id"),
        ({"scope": "instance", "instance_id": "not-hex", "state": "halted", "reason": "x"}, "instance_id"),
        ({"scope": "global", "state": "halted", "reason": "x", "cancel_open_orders": "yes"}, "cancel_open_orders"),
    ],
)
async def test_bad_bodies_are_422_naming_the_field_and_change_nothing(
    backing: Backing, body: dict[str, Any], field: str
) -> None:
    settings = backing.settings()
    async with fleet(settings) as f:
        response = await f.risk.post("/v1/risk/halt", json=body, headers=f.headers(ROOT))
        assert response.status_code == 422 and response.json()["code"] == "invalid_request"
        assert [d["field"] for d in response.json()["details"]] == [field]
        assert await _audit(f, "global", "") == []
        await settle(f)


async def test_only_an_admin_sets_a_trading_state(backing: Backing) -> None:
    settings = backing.settings()
    hal = trader()
    async with fleet(settings) as f:
        body = {"scope": "account", "account_id": hal.account_id, "state": "halted", "reason": "x"}
        for who in (hal, Principal("vic", "viewer", "acct-vic"), Principal("svc:strategy", "service")):
            refused = await _halt(f, 403, who, **body)
            assert refused["code"] == "forbidden"
        assert await _audit(f, "account", hal.account_id) == []
        await settle(f)


@asynccontextmanager
async def _second_risk(f: Fleet) -> AsyncIterator[httpx.AsyncClient]:
    """Another risk process on the same database (and the same execution, data and strategy services)."""
    settings = f.settings
    infra = Infra(
        settings,
        create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="risk"),
        create_cache(settings.redis_url),
        ServiceDirectory(
            settings,
            transports={"execution": f.execution_transport, "data": f.data_transport, "strategy": f.strategy_transport},
        ),
    )
    app = create_risk_app(settings, infra)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://risk-2") as client,
    ):
        yield client


async def test_a_state_set_in_one_risk_process_holds_at_once_in_another(backing: Backing) -> None:
    settings = backing.settings()
    ivy = trader()
    async with fleet(settings) as f, _second_risk(f) as other:
        assert (await other.post("/v1/orders", json=_order(), headers=f.headers(ivy))).status_code == 201
        await _halt(f, scope="account", account_id=ivy.account_id, state="halted", reason="drill")
        refused = await other.post("/v1/orders", json=_order(), headers=f.headers(ivy))
        assert refused.status_code == 422
        assert [r["code"] for r in refused.json()["decision"]["reasons"]] == ["trading_halted"]
        resumed = await other.post(
            "/v1/risk/halt",
            json={"scope": "account", "account_id": ivy.account_id, "state": "active", "reason": "drill over"},
            headers=f.headers(ROOT),
        )
        assert resumed.json()["from_state"] == "halted"
        assert await _place(f, ivy) == (201, [])
        await settle(f)


async def test_a_halted_instance_stops_its_orders_only_and_its_open_orders_are_cancelled(backing: Backing) -> None:
    settings = backing.settings()
    kim = trader()
    strategy = Principal("svc:strategy", "service")
    async with fleet(settings) as f:
        assert (await f.execution.get("/v1/account", headers=f.headers(kim))).status_code == 200  # opens the account
        halted, running = f.strategy.add(kim.account_id), f.strategy.add(kim.account_id)

        def instance_order(instance_id: str) -> dict[str, Any]:
            return f.strategy.order({**_resting_buy(), "client_order_id": f"{instance_id}-{new_id()[:6]}",
                                     "strategy_instance_id": instance_id})  # fmt: skip

        placed = {}
        for instance_id in (halted, running):
            answer = await f.risk.post("/v1/orders", json=instance_order(instance_id), headers=f.headers(strategy))
            assert answer.status_code == 201 and answer.json()["order"]["status"] == "submitted", answer.text
            placed[instance_id] = answer.json()["order"]["order_id"]
        own = await f.risk.post("/v1/orders", json=_resting_buy(), headers=f.headers(kim))
        assert own.status_code == 201

        answer = await _halt(
            f, scope="instance", instance_id=halted, state="halted", reason="bad params", cancel_open_orders=True
        )
        assert (answer["key"], answer["cancels"]) == (halted, {"cancelled": 1, "failed": 0, "failures": []})
        # its event names the instance's account (from its orders' decisions), so its alert reaches kim's people
        (event,) = await _events(f, halted)
        assert (event["scope"], event["key"], event["account_id"]) == ("instance", halted, kim.account_id)

        refused = await f.risk.post("/v1/orders", json=instance_order(halted), headers=f.headers(strategy))
        assert [r["code"] for r in refused.json()["decision"]["reasons"]] == ["trading_halted"]
        other = await f.risk.post("/v1/orders", json=instance_order(running), headers=f.headers(strategy))
        assert other.status_code == 201  # the same account's other instance, and its owner, trade on
        assert await _place(f, kim) == (201, [])

        listed = (await f.execution.get("/v1/orders", headers=f.headers(kim))).json()
        status = {o["order_id"]: o["status"] for o in listed}
        assert (status[placed[halted]], status[placed[running]], status[own.json()["order"]["order_id"]]) == (
            "cancelled",
            "submitted",
            "submitted",
        )

        # An instance halted before any order of it was decided: its halt names no account, and the change clearing
        # it names none either (the alert it raised is resolved by the same labels), though a refused order of it
        # has named its account since; the next halt names it.
        fresh = f.strategy.add(kim.account_id)
        await _halt(f, scope="instance", instance_id=fresh, state="halted", reason="before its first order")
        refused = await f.risk.post("/v1/orders", json=instance_order(fresh), headers=f.headers(strategy))
        assert [r["code"] for r in refused.json()["decision"]["reasons"]] == ["trading_halted"]
        await _halt(f, scope="instance", instance_id=fresh, state="reducing", reason="winding down")
        await _halt(f, scope="instance", instance_id=fresh, state="active", reason="fixed")
        await _halt(f, scope="instance", instance_id=fresh, state="halted", reason="again")
        await _halt(f, scope="instance", instance_id=fresh, state="active", reason="fixed again")
        changes = [(e["from_state"], e["to_state"], e["account_id"]) for e in await _events(f, fresh)]
        assert changes == [
            ("active", "halted", None), ("halted", "reducing", None), ("reducing", "active", None),
            ("active", "halted", kim.account_id), ("halted", "active", kim.account_id),
        ]  # fmt: skip
        await settle(f)
