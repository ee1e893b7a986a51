"""The gateway's forwarded routes against the real services, all in one process (standalone, in-process ASGI):
the routes the table adds (a strategy by name, risk's decisions) with their roles."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from lianghua.standalone import build_app
from services.execution.tca import NO_BARS
from shared.platform.clock import ShiftedClock
from shared.platform.events import LiveQuote, QuotesSnapshot, make_event
from shared.platform.settings import Mode, Settings
from tests.e2e.flow import Session, create_user, login, tradable_main_board_stock

pytestmark = pytest.mark.e2e
BASE = "http://gateway.test"


@dataclass
class Platform:
    client: httpx.AsyncClient
    admin: Session
    sessions: dict[str, Session]
    host: Any = None

    async def user(self, role: str) -> Session:
        username, password = await create_user(self.client, self.admin, role)
        return await login(self.client, BASE, username, password)


@pytest.fixture(scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    work: Path = tmp_path_factory.mktemp("gateway-routes")
    password = secrets.token_urlsafe(12)
    settings = Settings(
        mode=Mode.STANDALONE,
        database_url=f"sqlite+aiosqlite:///{work}/{{service}}.db",
        admin_password=password,
        rate_limit_per_minute=100_000,
    )
    # the demo market's next session (it ends on 2024-12-31): on the wall clock no session of the demo calendar is
    # ahead, and every order would also be refused for that (no_session)
    host = build_app(settings, clock=ShiftedClock(datetime(2025, 1, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))))
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as client:
            admin = await login(client, BASE, "admin", password)
            yield Platform(client, admin, {}, host)


async def test_a_strategy_is_read_by_name_through_the_gateway(platform: Platform) -> None:
    viewer = await platform.user("viewer")
    listed = await platform.client.get("/api/v1/strategies", headers=viewer.headers)
    assert listed.status_code == 200
    first = listed.json()[0]
    one = await platform.client.get(f"/api/v1/strategies/{first['name']}", headers=viewer.headers)
    assert one.status_code == 200 and one.json() == first
    unknown = await platform.client.get("/api/v1/strategies/no_such_strategy", headers=viewer.headers)
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_strategy"
    anonymous = await platform.client.get(f"/api/v1/strategies/{first['name']}")
    assert anonymous.status_code == 401


async def test_risk_decisions_are_read_through_the_gateway_each_user_their_own(platform: Platform) -> None:
    alice, bob, viewer = (
        await platform.user("trader"),
        await platform.user("trader"),
        await platform.user("viewer"),
    )
    stock: dict[str, Any] = await tradable_main_board_stock(platform.client, alice)
    order = {
        "client_order_id": f"dec-{secrets.token_hex(4)}",
        "ts_code": stock["ts_code"],
        "side": "buy",
        "order_type": "limit",
        "qty": 150,  # not a whole lot: refused by risk, and the refusal recorded
        "price": stock["last_close"],
    }
    refused = await platform.client.post("/api/v1/orders", json=order, headers=alice.headers)
    assert refused.status_code == 422 and refused.json()["code"] == "order_rejected", refused.text
    decision_id = refused.json()["decision"]["decision_id"]

    mine = await platform.client.get("/api/v1/decisions", headers=alice.headers)
    assert mine.status_code == 200
    [decision] = [d for d in mine.json() if d["decision_id"] == decision_id]
    assert (decision["client_order_id"], decision["qty"], decision["approved"]) == (
        order["client_order_id"],
        150,
        False,
    )
    assert [r["code"] for r in decision["reasons"]] == ["lot_size"]

    theirs = await platform.client.get("/api/v1/decisions", headers=bob.headers)
    assert theirs.status_code == 200 and decision_id not in {d["decision_id"] for d in theirs.json()}
    seen_by_viewer = await platform.client.get("/api/v1/decisions", headers=viewer.headers)
    assert seen_by_viewer.status_code == 200 and decision_id not in {d["decision_id"] for d in seen_by_viewer.json()}
    everyone = await platform.client.get("/api/v1/decisions?limit=500", headers=platform.admin.headers)
    assert decision_id in {d["decision_id"] for d in everyone.json()}
    assert (await platform.client.get("/api/v1/decisions")).status_code == 401


async def test_a_method_a_path_does_not_take_is_405_naming_every_method_it_does(platform: Platform) -> None:
    # GET /orders goes to execution and POST /orders to risk: two routes, one path, and `Allow` names both.
    refused = await platform.client.request("TRACE", "/api/v1/orders", headers=platform.admin.headers)
    assert refused.status_code == 405 and refused.json()["code"] == "method_not_allowed"
    assert refused.headers["Allow"] == "GET, POST"
    healthz = await platform.client.request("TRACE", "/healthz")
    assert healthz.status_code == 405 and healthz.headers["Allow"] == "GET"


async def test_odd_requests_get_a_json_4xx_not_a_server_error(platform: Platform) -> None:
    h = platform.admin.headers
    # an offset no database integer holds
    far = await platform.client.get(f"/api/v1/backtests?offset={2**70}", headers=h)
    assert far.status_code == 422 and far.json()["code"] == "invalid_request"
    # a path no route's pattern matches (a newline in it): the gateway's JSON 404, in standalone as in a fleet
    odd = await platform.client.get("/api/v1/no%0Asuch", headers=h)
    assert odd.status_code == 404 and odd.json()["code"] == "not_found"


async def test_a_strategy_instance_through_the_gateway_each_role_its_part(platform: Platform) -> None:
    alice, bob, viewer = (
        await platform.user("trader"),
        await platform.user("trader"),
        await platform.user("viewer"),
    )
    stock: dict[str, Any] = await tradable_main_board_stock(platform.client, alice)
    body = {
        "strategy": "dual_ma",
        "params": {"fast": 5, "slow": 20},
        "universe": {"ts_codes": [stock["ts_code"]]},
        "capital": "50000.00",
    }
    assert (
        await platform.client.post("/api/v1/strategy-instances", json=body, headers=viewer.headers)
    ).status_code == 403
    created = await platform.client.post("/api/v1/strategy-instances", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    iid = created.json()["instance_id"]
    path = f"/api/v1/strategy-instances/{iid}"
    assert (created.json()["state"], created.json()["capital"]) == ("created", "50000.00")
    bad = await platform.client.post(
        "/api/v1/strategy-instances", json={**body, "params": {"fast": 0}}, headers=alice.headers
    )
    assert bad.status_code == 422 and bad.json()["message"].startswith("params.fast: ")

    assert (await platform.client.get(path, headers=viewer.headers)).status_code == 200
    assert (await platform.client.get(path, headers=bob.headers)).status_code == 404
    assert (await platform.client.post(f"{path}/start", headers=bob.headers)).status_code == 404
    assert (await platform.client.post(f"{path}/start", headers=viewer.headers)).status_code == 403  # the gateway's

    assert (await platform.client.post(f"{path}/start", headers=alice.headers)).json()["state"] == "running"
    assert (await platform.client.post(f"{path}/pause", headers=alice.headers)).json()["state"] == "paused"
    patched = await platform.client.patch(path, json={"params": {"fast": 10, "slow": 20}}, headers=alice.headers)
    assert patched.status_code == 200 and patched.json()["params_version"] == 2
    versions = await platform.client.get(f"{path}/versions", headers=viewer.headers)
    assert [v["params"]["fast"] for v in versions.json()] == [5, 10]
    # stop with no body (the instance's own setting), then with one
    assert (await platform.client.post(f"{path}/resume", headers=alice.headers)).json()["state"] == "running"
    stopped = await platform.client.post(f"{path}/stop", headers=alice.headers)
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    audit = await platform.client.get(f"{path}/audit", headers=alice.headers)
    assert [a["action"] for a in audit.json()] == [
        "created", "started", "paused", "params_updated", "resumed", "stopped"
    ]  # fmt: skip
    assert audit.json()[-1]["after"] == {"state": "stopped", "cancel_open_orders": True}
    listed = await platform.client.get("/api/v1/strategy-instances?state=stopped", headers=alice.headers)
    assert [i["instance_id"] for i in listed.json()] == [iid]

    assert (await platform.client.delete(path, headers=viewer.headers)).status_code == 403
    deleted = await platform.client.delete(path, headers=alice.headers)
    assert deleted.status_code == 204
    assert (await platform.client.get(path, headers=alice.headers)).status_code == 404
    assert (await platform.client.get("/api/v1/strategy-instances")).status_code == 401


async def test_stopping_a_strategy_instance_takes_an_optional_body(platform: Platform) -> None:
    alice = await platform.user("trader")
    stock: dict[str, Any] = await tradable_main_board_stock(platform.client, alice)
    body = {"strategy": "buy_and_hold", "universe": {"ts_codes": [stock["ts_code"]]}, "capital": "1000.00"}
    iid = (await platform.client.post("/api/v1/strategy-instances", json=body, headers=alice.headers)).json()[
        "instance_id"
    ]
    path = f"/api/v1/strategy-instances/{iid}"
    not_an_object = await platform.client.post(f"{path}/stop", json=[1], headers=alice.headers)
    assert not_an_object.status_code == 422
    kept = await platform.client.post(f"{path}/stop", json={"cancel_open_orders": False}, headers=alice.headers)
    assert kept.status_code == 200, kept.text
    audit = (await platform.client.get(f"{path}/audit", headers=alice.headers)).json()
    assert audit[-1]["after"] == {"state": "stopped", "cancel_open_orders": False}


async def test_a_body_that_is_not_utf8_json_is_a_422_naming_the_body(platform: Platform) -> None:
    trader = await platform.user("trader")
    for path in ("/api/v1/orders", "/api/v1/strategy-instances"):
        answer = await platform.client.post(
            path, content=b"\xea\xb8\xa3d\xff\xfeQ9$", headers={**trader.headers, "Content-Type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "invalid_request" and answer.json()["message"].startswith("body: ")


async def test_an_instances_report_and_the_accounts_allocation_through_the_gateway(platform: Platform) -> None:
    alice, bob, viewer = (
        await platform.user("trader"),
        await platform.user("trader"),
        await platform.user("viewer"),
    )
    stock: dict[str, Any] = await tradable_main_board_stock(platform.client, alice)
    body = {"strategy": "dual_ma", "universe": {"ts_codes": [stock["ts_code"]]}, "capital": "50000.00"}
    created = await platform.client.post("/api/v1/strategy-instances", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    iid = created.json()["instance_id"]

    report = f"/api/v1/strategy-instances/{iid}/report.html"
    page = await platform.client.get(report, headers=viewer.headers)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"<tr><td>Instance</td><td>{iid}</td></tr>" in page.text
    assert "<tr><td>Stocks in the universe today</td><td>1</td></tr>" in page.text
    saved = await platform.client.get(report, params={"download": "true"}, headers=alice.headers)
    assert saved.headers["content-disposition"] == f'attachment; filename="strategy-instance-{iid}.html"'
    hidden = await platform.client.get(report, headers=bob.headers)
    assert hidden.status_code == 404 and hidden.json()["code"] == "instance_not_found"
    assert (await platform.client.get(report)).status_code == 401

    account = (await platform.client.get("/api/v1/account", headers=alice.headers)).json()
    allocation = await platform.client.get("/api/v1/strategy-allocation", headers=alice.headers)
    assert allocation.status_code == 200, allocation.text
    balance = Decimal(account["balance"])
    assert allocation.json() == {
        "account_id": account["account_id"],
        "balance": f"{balance:.2f}",
        "allocated": "50000.00",
        "unallocated": f"{balance - Decimal('50000.00'):.2f}",
        "instances": [{"instance_id": iid, "strategy": "dual_ma", "state": "created", "capital": "50000.00"}],
    }
    others = await platform.client.get(
        "/api/v1/strategy-allocation", params={"account_id": account["account_id"]}, headers=bob.headers
    )
    assert others.status_code == 403 and others.json()["code"] == "forbidden"
    by_admin = await platform.client.get(
        "/api/v1/strategy-allocation",
        params={"account_id": account["account_id"]},
        headers=platform.admin.headers,
    )
    assert by_admin.json() == allocation.json()


async def test_an_instances_days_through_the_gateway(platform: Platform) -> None:
    alice, bob, viewer = (
        await platform.user("trader"),
        await platform.user("trader"),
        await platform.user("viewer"),
    )
    stock: dict[str, Any] = await tradable_main_board_stock(platform.client, alice)
    body = {"strategy": "buy_and_hold", "universe": {"ts_codes": [stock["ts_code"]]}, "capital": "1000.00"}
    created = await platform.client.post("/api/v1/strategy-instances", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    days = f"/api/v1/strategy-instances/{created.json()['instance_id']}/days"

    for who in (alice, viewer):  # not started: no day closed yet
        listed = await platform.client.get(days, params={"start": "2024-01-02"}, headers=who.headers)
        assert listed.status_code == 200 and listed.json() == [], listed.text
    hidden = await platform.client.get(days, headers=bob.headers)
    assert hidden.status_code == 404 and hidden.json()["code"] == "instance_not_found"
    assert (await platform.client.get(days)).status_code == 401
    missing = await platform.client.get(f"{days}/2024-01-02", headers=alice.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "day_not_found"
    bad = await platform.client.get(f"{days}/2024-02-30", headers=alice.headers)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    backwards = await platform.client.get(days, params={"start": "2024-02-01", "end": "2024-01-31"},
                                          headers=alice.headers)  # fmt: skip
    assert backwards.status_code == 422 and backwards.json()["code"] == "invalid_range"


async def test_positions_account_and_cost_analysis_through_the_gateway(platform: Platform) -> None:
    ada, bob = await platform.user("trader"), await platform.user("trader")
    stock: dict[str, Any] = await tradable_main_board_stock(platform.client, ada)
    order = {
        "client_order_id": f"tca-{secrets.token_hex(4)}",
        "ts_code": stock["ts_code"],
        "side": "buy",
        "order_type": "limit",
        "qty": 100,
        "price": stock["last_close"],
    }
    placed = await platform.client.post("/api/v1/orders", json=order, headers=ada.headers)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order"]["order_id"]
    # no live quote of the day at the order's creation: it arrived at the last close
    [analysed] = (await platform.client.get("/api/v1/tca/orders", headers=ada.headers)).json()
    assert (analysed["order_id"], analysed["arrival_source"], analysed["arrival_price"]) == (
        order_id, "last_close", stock["last_close"],
    )  # fmt: skip
    # filled at the last close: no slippage against it; no minute bars of the replayed day to set it against
    close = Decimal(stock["last_close"])
    assert (analysed["filled_qty"], analysed["fill_vwap"], analysed["slippage_vs_arrival_bps"]) == (
        100, str(close.quantize(Decimal("0.0001"))), "0.00",
    )  # fmt: skip
    assert (analysed["interval_vwap"], analysed["interval_note"]) == (None, NO_BARS)
    summary = (await platform.client.get("/api/v1/tca/summary?by=day", headers=ada.headers)).json()
    assert [(g["key"], g["orders"], g["slippage_vs_arrival_bps"]) for g in summary["groups"]] == [
        ("2025-01-02", 1, "0.00")
    ]
    assert (await platform.client.get("/api/v1/tca/orders", headers=bob.headers)).json() == []
    assert (await platform.client.get("/api/v1/tca/summary?by=month", headers=ada.headers)).status_code == 422
    assert (await platform.client.get("/api/v1/tca/orders")).status_code == 401
    # the position at the last close: its value, its cost (the amount and the fees), bought today
    [position] = (await platform.client.get("/api/v1/positions", headers=ada.headers)).json()
    value = close * 100
    fees = Decimal(analysed["fees"])
    assert (position["qty"], position["today_buy_qty"], position["price_source"]) == (100, 100, "last_close")
    assert (Decimal(position["market_value"]), Decimal(position["cost_basis"])) == (value, value + fees)
    assert Decimal(position["unrealised_pnl"]) == -fees
    account = (await platform.client.get("/api/v1/account", headers=ada.headers)).json()
    assert Decimal(account["total_assets"]) == Decimal(account["balance"]) + value
    assert Decimal(account["pnl_total"]) == -fees
    bad = await platform.client.get("/api/v1/quotes/live?codes=60000X.SH", headers=ada.headers)
    assert bad.status_code == 422 and "codes" in bad.json()["message"]


async def test_a_stop_through_the_gateway_triggers_on_a_quote_and_its_child_is_decided_by_risk(
    platform: Platform,
) -> None:
    alice, viewer = await platform.user("trader"), await platform.user("viewer")
    stock: dict[str, Any] = await tradable_main_board_stock(platform.client, alice)
    last = Decimal(stock["last_close"])
    stop_price = (last * Decimal("1.02")).quantize(Decimal("0.01"))
    body = {"ts_code": stock["ts_code"], "side": "buy", "qty": 100, "kind": "stop", "stop_price": str(stop_price)}
    refused = await platform.client.post("/api/v1/conditional-orders", json=body, headers=viewer.headers)
    assert refused.status_code == 403
    wrong = {**body, "stop_price": str(last - Decimal("0.10"))}  # a buy stop below the market
    below = await platform.client.post("/api/v1/conditional-orders", json=wrong, headers=alice.headers)
    assert below.status_code == 422 and below.json()["code"] == "invalid_stop_price", below.text
    created = await platform.client.post("/api/v1/conditional-orders", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    cid = created.json()["conditional_id"]
    assert (created.json()["status"], Decimal(created.json()["ref_price"])) == ("armed", last)

    # a real-time round with the price through the stop, on the standalone bus
    infra = platform.host.state.infra
    now = infra.clock.now()
    price = stop_price + Decimal("0.01")
    quote = LiveQuote(ts_code=stock["ts_code"], time=now, last=price, open=last, high=price, low=last,
                      pre_close=last, volume=100, amount=price * 100, bid=(), ask=(), limit_up=None,
                      limit_down=None, source="replay")  # fmt: skip
    await infra.bus.publish(
        make_event("quotes.snapshot", QuotesSnapshot(as_of=now, source="replay", quotes=(quote,)), source="data")
    )
    for _ in range(100):
        got = (await platform.client.get(f"/api/v1/conditional-orders/{cid}", headers=alice.headers)).json()
        if got["status"] != "armed" and got["status"] != "triggered":
            break
        await asyncio.sleep(0.1)
    assert got["status"] == "placed", got
    child = (await platform.client.get(f"/api/v1/orders/{got['child_order_id']}", headers=alice.headers)).json()
    assert (child["client_order_id"], child["side"], child["order_type"], child["qty"]) == (
        f"cond-{cid}", "buy", "market", 100)  # fmt: skip
    decisions = (await platform.client.get("/api/v1/decisions", headers=alice.headers)).json()
    [decision] = [d for d in decisions if d["decision_id"] == got["decision_id"]]
    assert decision["approved"] and decision["rule_check"]["parent_id"] == cid
    hidden = await platform.client.get(f"/api/v1/conditional-orders/{cid}", headers=viewer.headers)
    assert hidden.status_code == 404


async def test_order_batches_and_cancel_all_through_the_gateway(platform: Platform) -> None:
    ada, viewer = await platform.user("trader"), await platform.user("viewer")
    stock: dict[str, Any] = await tradable_main_board_stock(platform.client, ada)
    # a limit 5% below the last close (within the day's 10% limits), on the fen: it rests until cancelled
    below = (Decimal(stock["last_close"]) * Decimal("0.95")).quantize(Decimal("0.01"))
    batch = {
        "batch_id": f"gw-{secrets.token_hex(4)}",
        "orders": [
            {"client_order_id": f"gwb-{secrets.token_hex(4)}", "ts_code": stock["ts_code"], "side": "buy",
             "order_type": "limit", "qty": 100, "price": str(below)},
            {"client_order_id": f"gwb-{secrets.token_hex(4)}", "ts_code": stock["ts_code"], "side": "buy",
             "order_type": "limit", "qty": 150, "price": str(below)},  # not a whole lot: refused
        ],
    }  # fmt: skip
    by_viewer = await platform.client.post("/api/v1/order-batches", json=batch, headers=viewer.headers)
    assert by_viewer.status_code == 403
    placed = await platform.client.post("/api/v1/order-batches", json=batch, headers=ada.headers)
    assert placed.status_code == 200, placed.text
    answer = placed.json()
    assert [i["status"] for i in answer["items"]] == ["placed", "refused"]
    assert [r["code"] for r in answer["items"][1]["reasons"]] == ["lot_size"]
    again = await platform.client.post("/api/v1/order-batches", json=batch, headers=ada.headers)
    assert again.status_code == 200 and again.json() == answer

    order_id = answer["items"][0]["order"]["order_id"]
    refused = await platform.client.post("/api/v1/orders/cancel-all", json={}, headers=viewer.headers)
    assert refused.status_code == 403
    cancelled = await platform.client.post(
        "/api/v1/orders/cancel-all", json={"ts_code": stock["ts_code"]}, headers=ada.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["cancelled"], cancelled.json()["failed"]) == ([order_id], [])
    account = await platform.client.get("/api/v1/account", headers=ada.headers)
    assert account.json()["reserved"] == "0.00"
    # the path's own method, as the OpenAPI document gives it: not GET, which /orders/{order_id} would take
    other = await platform.client.request("PUT", "/api/v1/orders/cancel-all", headers=ada.headers)
    assert (other.status_code, other.headers["Allow"]) == (405, "POST")


async def test_an_amend_through_the_gateway_replaces_a_resting_order(platform: Platform) -> None:
    """docs/order-path.md "Amending an order": a trader's resting limit order amended through the gateway is
    cancelled and replaced at the new price (the paper broker confirms the cancel at once); a viewer may not amend."""
    ada, viewer = await platform.user("trader"), await platform.user("viewer")
    stock: dict[str, Any] = await tradable_main_board_stock(platform.client, ada)
    # 5% and 4% below the last close (within the day's 10% limits), on the fen: both rest
    below = (Decimal(stock["last_close"]) * Decimal("0.95")).quantize(Decimal("0.01"))
    nearer = (Decimal(stock["last_close"]) * Decimal("0.96")).quantize(Decimal("0.01"))
    body = {"client_order_id": f"gwa-{secrets.token_hex(4)}", "ts_code": stock["ts_code"], "side": "buy",
            "order_type": "limit", "qty": 100, "price": str(below)}  # fmt: skip
    placed = await platform.client.post("/api/v1/orders", json=body, headers=ada.headers)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order"]["order_id"]

    by_viewer = await platform.client.post(f"/api/v1/orders/{order_id}/amend", json={"price": str(nearer)},
                                           headers=viewer.headers)  # fmt: skip
    assert by_viewer.status_code == 403
    amended = await platform.client.post(f"/api/v1/orders/{order_id}/amend", json={"price": str(nearer)},
                                         headers=ada.headers)  # fmt: skip
    assert amended.status_code == 202, amended.text
    amend = amended.json()
    assert (amend["status"], amend["replacement_qty"], amend["new_price"]) == ("replaced", 100, str(nearer))
    original = (await platform.client.get(f"/api/v1/orders/{order_id}", headers=ada.headers)).json()
    assert (original["status"], original["replaced_by"]) == ("cancelled", amend["replacement_order_id"])
    read = await platform.client.get(f"/api/v1/amends/{amend['amend_id']}", headers=ada.headers)
    assert read.status_code == 200 and read.json()["replacement_order_id"] == amend["replacement_order_id"]
    # tidy: the replacement cancelled
    cancelled = await platform.client.post(f"/api/v1/orders/{amend['replacement_order_id']}/cancel",
                                           headers=ada.headers)  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
