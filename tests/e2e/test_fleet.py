"""End to end: the fleet as real processes against MariaDB, Redis and RabbitMQ, driven through the gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect

from lianghua.fleet import DEFAULT_PORTS, Fleet
from shared.platform.approval import OrderTerms, sign_approval
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from tests.conftest import Backing
from tests.e2e.flow import Session, create_user, login, place_order_and_see_the_fill, tradable_main_board_stock

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fleet(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    env = {
        **backing.env(scope="e2e"),
        "LH_JWT_SECRET": secrets.token_urlsafe(32),
        "LH_INTERNAL_SECRET": secrets.token_urlsafe(32),
        "LH_APPROVAL_SECRET": secrets.token_urlsafe(32),
        "LH_ADMIN_USERNAME": "admin",
        "LH_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "LH_LOG_JSON": "true",
        # The demo market ends on 2024-12-31: the fleet trades its next session, 2025-01-02 (on the wall clock an
        # order would be for a session whose price limits the demo data cannot know: refused, limits_unknown)
        "LH_MARKET_CLOCK": "shifted",
        "LH_MARKET_CLOCK_AT": "2025-01-02T10:00:00+08:00",
    }
    fleet = Fleet(
        env=env, ports={name: _free_port() for name in DEFAULT_PORTS}, log_dir=tmp_path_factory.mktemp("fleet")
    )
    fleet.start()
    supervisor = threading.Thread(target=fleet.supervise, name="fleet-supervisor", daemon=True)
    supervisor.start()
    try:
        yield fleet
    finally:
        fleet.stopping.set()
        supervisor.join()
        fleet.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20) as c:
        yield c


async def _users(client: httpx.AsyncClient, fleet: Fleet) -> dict[str, Session]:
    base = fleet.url("gateway")
    admin = await login(client, base, "admin", fleet.env["LH_ADMIN_PASSWORD"])
    sessions = {"admin": admin}
    for role in ("trader", "viewer"):
        name, pw = await create_user(client, admin, role)
        sessions[role] = await login(client, base, name, pw)
    return sessions


async def test_trader_order_is_approved_filled_and_pushed_over_the_websocket(
    fleet: Fleet, client: httpx.AsyncClient
) -> None:
    users = await _users(client, fleet)
    seen = await place_order_and_see_the_fill(client, users["trader"])
    quote, placed = seen["quote"], seen["placed"]
    assert placed["decision"]["approved"] is True
    order = placed["order"]
    assert order["status"] == "filled" and order["filled_qty"] == 100
    # The paper broker fills a market order at the latest close.
    assert Decimal(order["avg_fill_price"]) == Decimal(quote["last_close"])
    assert seen["fill"]["payload"]["order_id"] == order["order_id"]
    assert Decimal(seen["fill"]["payload"]["price"]) == Decimal(quote["last_close"])
    assert Decimal(seen["fill"]["payload"]["amount"]) == Decimal(quote["last_close"]) * 100
    assert seen["filled_event"]["payload"]["status"] == "filled"
    # One correlation id from the browser's request through gateway, risk and execution logs to the event.
    cid = seen["correlation_id"]
    assert seen["fill"]["correlation_id"] == cid
    for name in ("gateway", "risk", "execution"):
        logged = [
            json.loads(line)
            for line in (fleet.log_dir / f"{name}.log").read_text().splitlines()
            if line.startswith("{")
        ]
        assert any(entry.get("correlation_id") == cid for entry in logged), name
    assert seen["read_back"]["status"] == "filled" and seen["read_back"]["order_id"] == order["order_id"]
    # Prometheus sees it.
    metrics = (await client.get(fleet.url("execution") + "/metrics")).text
    assert 'lh_orders_total{status="filled"}' in metrics


async def test_execution_refuses_orders_without_a_valid_risk_approval(fleet: Fleet, client: httpx.AsyncClient) -> None:
    users = await _users(client, fleet)
    quote = await tradable_main_board_stock(client, users["trader"])
    token = mint_internal_token(fleet.env["LH_INTERNAL_SECRET"], Principal("mallory", "trader", "mallory"))
    terms = {
        "client_order_id": f"bypass-{secrets.token_hex(4)}",
        "account_id": "mallory",
        "ts_code": quote["ts_code"],
        "side": "buy",
        "order_type": "market",
        "qty": 100,
    }
    forged = {"decision_id": "d-forged", "issued_at": datetime.now(UTC).isoformat(), "signature": "0" * 64}
    for body in (terms, {**terms, "approval": forged}):
        resp = await client.post(fleet.url("execution") + "/v1/orders", json=body, headers={INTERNAL_HEADER: token})
        assert resp.status_code == 403, resp.text
        assert resp.json()["code"] == "approval_invalid"
    # Without even an internal token the service does not listen.
    assert (await client.post(fleet.url("execution") + "/v1/orders", json=terms)).status_code == 401
    # Nothing reached the books: no order, no trade for that account.
    admin_token = mint_internal_token(fleet.env["LH_INTERNAL_SECRET"], Principal("svc:test", "service"))
    orders = (await client.get(fleet.url("execution") + "/v1/orders", headers={INTERNAL_HEADER: admin_token})).json()
    assert all(o["client_order_id"] != terms["client_order_id"] for o in orders)
    trades = (await client.get(fleet.url("execution") + "/v1/trades", headers={INTERNAL_HEADER: admin_token})).json()
    assert all(t["account_id"] != "mallory" for t in trades)


async def test_viewer_cannot_place_orders_and_bad_orders_get_clear_4xx(fleet: Fleet, client: httpx.AsyncClient) -> None:
    users = await _users(client, fleet)
    base, trader = fleet.url("gateway"), users["trader"]
    quote = await tradable_main_board_stock(client, trader)
    good = {"client_order_id": "x", "ts_code": quote["ts_code"], "side": "buy", "order_type": "market", "qty": 100}
    resp = await client.post(f"{base}/api/v1/orders", json=good, headers=users["viewer"].headers)
    assert resp.status_code == 403 and resp.json()["code"] == "forbidden"
    assert (await client.post(f"{base}/api/v1/orders", json=good)).status_code == 401

    limit_up = Decimal(quote["limit_up"])
    cases = {
        "unknown ts_code": ({**good, "ts_code": "600999.SH"}, "unknown_security"),
        "not a stock code": ({**good, "ts_code": "510300.SH"}, "invalid_ts_code"),
        "zero qty": ({**good, "qty": 0}, None),
        "odd lot": ({**good, "qty": 150}, "lot_size"),
        "off tick": ({**good, "order_type": "limit", "price": str(limit_up - Decimal("0.005"))}, "price_tick"),
        "above limit-up": ({**good, "order_type": "limit", "price": str(limit_up + Decimal("0.01"))}, "price_limit"),
        "missing side": ({k: v for k, v in good.items() if k != "side"}, None),
        "unknown field": ({**good, "time_in_force": "GTC"}, "invalid_request"),
        "qty as text": ({**good, "qty": "100"}, "invalid_request"),
    }
    before = await client.get(f"{base}/api/v1/orders", headers=trader.headers)
    for label, (body, reason) in cases.items():
        body = {**body, "client_order_id": f"bad-{secrets.token_hex(4)}"}
        resp = await client.post(f"{base}/api/v1/orders", json=body, headers=trader.headers)
        assert 400 <= resp.status_code < 500, (label, resp.text)
        payload = resp.json()
        assert payload["code"] and payload["message"], label
        if reason is not None:
            reasons = [r["code"] for r in payload.get("decision", {}).get("reasons", [])] or [payload["code"]]
            assert reason in reasons, (label, payload)
    after = await client.get(f"{base}/api/v1/orders", headers=trader.headers)
    assert len(after.json()) == len(before.json())  # nothing was created at the broker


async def test_every_process_reports_health_readiness_and_metrics(fleet: Fleet, client: httpx.AsyncClient) -> None:
    for name in ("gateway", "data", "strategy", "backtest", "risk", "execution"):
        assert (await client.get(fleet.url(name) + "/healthz")).status_code == 200
        ready = await client.get(fleet.url(name) + "/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        assert "http_requests_total" in (await client.get(fleet.url(name) + "/metrics")).text
    assert "lh_backtest_jobs_total" in (await client.get(fleet.url("backtest-worker") + "/metrics")).text


async def test_backtest_runs_on_a_worker_process(fleet: Fleet, client: httpx.AsyncClient) -> None:
    import asyncio

    users = await _users(client, fleet)
    trader, base = users["trader"], fleet.url("gateway")
    quote = await tradable_main_board_stock(client, trader)
    body = {"strategy": "buy_and_hold", "ts_codes": [quote["ts_code"]], "start": "2024-01-02", "end": "2024-06-28"}
    resp = await client.post(f"{base}/api/v1/backtests", json=body, headers=trader.headers)
    assert resp.status_code == 202, resp.text
    backtest_id = resp.json()["backtest_id"]
    async with asyncio.timeout(60):
        while True:
            result = (await client.get(f"{base}/api/v1/backtests/{backtest_id}", headers=trader.headers)).json()
            if result["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.2)
    assert result["status"] == "succeeded", result.get("error")
    assert result["equity_curve"] and result["summary"]


async def test_cash_through_the_gateway_opening_deposit_and_a_fill(fleet: Fleet, client: httpx.AsyncClient) -> None:
    users = await _users(client, fleet)
    base, trader, admin = fleet.url("gateway"), users["trader"], users["admin"]
    first = await client.get(f"{base}/api/v1/account", headers=trader.headers)
    assert first.status_code == 200, first.text
    account = first.json()
    # A paper account seen for the first time starts with LH_PAPER_OPENING_CASH, by default 10,000,000.00.
    assert (account["balance"], account["reserved"], account["available"]) == ("10000000.00", "0.00", "10000000.00")

    deposit = {"account_id": account["account_id"], "kind": "deposit", "amount": "1000.00", "idempotency_key": "d1"}
    assert (await client.post(f"{base}/api/v1/account/cash", json=deposit, headers=trader.headers)).status_code == 403
    moved = await client.post(f"{base}/api/v1/account/cash", json=deposit, headers=admin.headers)
    assert moved.status_code == 201, moved.text
    assert moved.json()["account"]["balance"] == "10001000.00"
    again = await client.post(f"{base}/api/v1/account/cash", json=deposit, headers=admin.headers)
    assert again.status_code == 200 and again.json()["account"]["balance"] == "10001000.00"

    seen = await place_order_and_see_the_fill(client, trader)
    [trade] = [
        t
        for t in (await client.get(f"{base}/api/v1/trades", headers=trader.headers)).json()
        if t["order_id"] == seen["placed"]["order"]["order_id"]
    ]
    after = (await client.get(f"{base}/api/v1/account", headers=trader.headers)).json()
    # The buy paid its amount and its fees; nothing stays reserved once it is filled.
    paid = Decimal(trade["amount"]) + Decimal(trade["fees"])
    assert Decimal(trade["commission"]) >= Decimal("5.00")  # the commission minimum
    assert Decimal(after["balance"]) == Decimal("10001000.00") - paid
    assert (after["reserved"], after["available"]) == ("0.00", after["balance"])
    # The position through the gateway: bought today, so none of it is sellable yet (T+1).
    positions = (await client.get(f"{base}/api/v1/positions", headers=trader.headers)).json()
    held = {p["ts_code"]: p for p in positions}[trade["ts_code"]]
    assert held["qty"] >= trade["qty"] and held["sellable_qty"] == 0  # every share of it was bought today


async def test_no_secret_used_in_a_session_reaches_any_log(fleet: Fleet, client: httpx.AsyncClient) -> None:
    """Everything a user and the services handle as a credential, used once each, then looked for in the logs."""
    base = fleet.url("gateway")
    admin = await login(client, base, "admin", fleet.env["LH_ADMIN_PASSWORD"])
    name, password = await create_user(client, admin, "trader")
    trader = await login(client, base, name, password)
    wrong_password = "wrong-" + secrets.token_urlsafe(12)
    failed = await client.post(f"{base}/api/v1/auth/token", data={"username": name, "password": wrong_password})
    assert failed.status_code == 401
    created = await client.post(f"{base}/api/v1/api-keys", json={"name": "e2e"}, headers=trader.headers)
    assert created.status_code == 201, created.text
    api_key = created.json()["api_key"]

    # The order flow with its socket on /ws?token=, then a socket on /ws?api_key= and a REST call with the key.
    seen = await place_order_and_see_the_fill(client, trader)
    async with connect(base.replace("http://", "ws://") + f"/ws?api_key={api_key}", open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "ws.connected"
    assert (await client.get(f"{base}/api/v1/orders", headers={"X-API-Key": api_key})).status_code == 200

    # An approval signed as risk signs one, handed to execution with an internal token as risk hands it.
    terms = OrderTerms(
        client_order_id=f"signed-{secrets.token_hex(4)}",
        account_id=name,
        ts_code=seen["quote"]["ts_code"],
        side="buy",
        order_type="market",
        qty=100,
    )
    approval = sign_approval(fleet.env["LH_APPROVAL_SECRET"], terms, f"d-{secrets.token_hex(6)}")
    internal = mint_internal_token(fleet.env["LH_INTERNAL_SECRET"], Principal(name, "trader", name))
    body = {**terms.model_dump(mode="json"), "approval": approval.model_dump(mode="json")}
    placed = await client.post(fleet.url("execution") + "/v1/orders", json=body, headers={INTERNAL_HEADER: internal})
    assert placed.status_code == 201, placed.text

    url_passwords = [urlsplit(v).password or "" for k, v in fleet.env.items() if k.endswith("_URL") and "://" in v]
    used = {
        "admin password": fleet.env["LH_ADMIN_PASSWORD"],
        "user password": password,
        "wrong password": wrong_password,
        "admin JWT": admin.token,
        "trader JWT": trader.token,
        "API key secret": api_key.split("_", 2)[2],  # lh_<hex key id>_<secret>: the secret may hold "_"
        "approval signature": approval.signature,
        "internal token": internal,
        "JWT secret": fleet.env["LH_JWT_SECRET"],
        "internal secret": fleet.env["LH_INTERNAL_SECRET"],
        "approval secret": fleet.env["LH_APPROVAL_SECRET"],
        # A URL's password as it would leak, in its URL ("guest" is also the RabbitMQ user name of a test setup).
        **{f"password in a URL ({i})": f":{p}@" for i, p in enumerate(url_passwords) if p},
    }
    logs = {path.name: path.read_text() for path in fleet.log_dir.glob("*.log")}
    assert set(logs) >= {"gateway.log", "risk.log", "execution.log", "data.log"}
    leaks = [(what, file) for what, secret in used.items() for file, text in logs.items() if secret in text]
    assert leaks == []
    # The handshakes were logged, without their credentials: the check above looked at the lines that had them.
    handshakes = [line for line in logs["gateway.log"].splitlines() if '"WebSocket /ws?' in line]
    assert any("/ws?token=[REDACTED]" in line for line in handshakes), handshakes
    assert any("/ws?api_key=[REDACTED]" in line for line in handshakes), handshakes


async def test_a_killed_process_is_restarted_and_answers_again_while_the_others_run_on(
    fleet: Fleet, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """`kill -9` of execution: the supervisor logs it and starts it again after the first backoff delay; the other
    processes keep their pids; an order goes through again without anyone restarting anything."""
    caplog.set_level(logging.INFO, logger="lianghua.fleet")
    before = {name: proc.pid for name, proc in fleet.processes.items()}
    os.kill(before["execution"], signal.SIGKILL)
    async with asyncio.timeout(90):
        while True:
            proc = fleet.processes["execution"]
            if proc.pid != before["execution"] and proc.poll() is None:
                try:
                    health = await client.get(fleet.url("execution") + "/healthz")
                    ready = await client.get(fleet.url("execution") + "/readyz")
                    if health.status_code == ready.status_code == 200:
                        break  # back to normal by itself: alive and its dependencies answer
                except httpx.TransportError:
                    pass
            await asyncio.sleep(0.2)
    after = {name: proc.pid for name, proc in fleet.processes.items()}
    assert {n: p for n, p in after.items() if n != "execution"} == {n: p for n, p in before.items() if n != "execution"}
    assert all(proc.poll() is None for proc in fleet.processes.values())
    assert fleet.restarts == {"execution": 1}
    [exited] = [r for r in caplog.records if r.getMessage().startswith("process exited")]
    assert (exited.child, exited.exit_code, exited.restart_count, exited.delay_s) == (  # type: ignore[attr-defined]
        "execution",
        -signal.SIGKILL,
        1,
        fleet.backoff.first_s,
    )
    started = [r for r in caplog.records if r.getMessage() == "process started"]
    assert [(r.child, r.pid) for r in started] == [("execution", after["execution"])]  # type: ignore[attr-defined]
    # The order path works through the new process.
    users = await _users(client, fleet)
    seen = await place_order_and_see_the_fill(client, users["trader"])
    assert seen["placed"]["order"]["status"] == "filled"
