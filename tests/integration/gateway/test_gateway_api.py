"""The gateway over the real MariaDB and Redis: log-in, roles, API keys, rate limits, and the proxy to the (fake)
services behind it, as a client of the public API sees them."""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import jwt
import pytest

from gateway.app import create_app
from gateway.security import issue_token, new_api_key
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER
from shared.platform.roles import Role
from tests.integration.gateway.conftest import Gateway, build_downstream

pytestmark = pytest.mark.integration

ORDER = {"client_order_id": "c-1", "ts_code": "600000.SH", "side": "buy", "order_type": "limit", "qty": 100}


def order_body(**overrides: Any) -> dict[str, Any]:
    return {**ORDER, "price": "10.50", **overrides}


# --- log-in and the admin bootstrap --------------------------------------------------------------------------


async def test_bootstrapped_admin_logs_in_and_gets_a_bearer_token(gw: Any) -> None:
    settings = gw.settings
    response = await gw.login(settings.admin_username, settings.admin_password)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["role"] == "admin"
    assert body["expires_in"] == settings.jwt_ttl_s
    claims = jwt.decode(body["access_token"], settings.jwt_secret, algorithms=["HS256"], audience="lianghua-gateway")
    assert (claims["sub"], claims["role"], claims["acct"]) == ("admin", "admin", "admin")
    assert claims["exp"] - claims["iat"] == settings.jwt_ttl_s

    me = await gw.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json() == {"username": "admin", "role": "admin", "account_id": "admin", "auth": "jwt"}


async def test_generated_admin_password_is_printed_once_and_never_logged(
    backing: Any, gw_settings: Any, start_gateway: Any, capsys: pytest.CaptureFixture[str], caplog: Any
) -> None:
    url = gw_settings.database_url.replace("_gwtest_", "_gwboot_")
    settings = gw_settings.with_overrides(database_url=url, admin_password="", admin_username="chief")
    async with start_gateway(settings) as gateway:
        printed = capsys.readouterr().out
        match = re.search(r"LiangHua admin user: chief password: (\S+)", printed)
        assert match, printed
        password = match.group(1)
        assert password not in caplog.text
        assert "created the admin user" in caplog.text
        login = await gateway.login("chief", password)
        assert login.status_code == 200 and login.json()["role"] == "admin"
    async with start_gateway(settings):
        assert "LiangHua admin user" not in capsys.readouterr().out  # an admin exists now: nothing printed


async def test_wrong_password_and_unknown_user_are_both_401(gw: Any) -> None:
    for username, password in [(gw.settings.admin_username, "not-the-password"), ("nobody-here", "whatever1")]:
        response = await gw.login(username, password)
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_credentials"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


class FrozenClock:
    """The login throttle's clock, moved by the test: lockouts end when the test says so, not after real waits."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def from_address(gateway: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(gateway.app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


def documentation_address() -> str:
    """A random IPv6 documentation address (2001:db8::/32) in a /64 no other test logs in from: failures count per
    /64. Only a name for the throttle: the in-process transport sends nothing anywhere."""
    return f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::{secrets.token_hex(2)}"


async def test_failed_logins_under_many_names_lock_out_their_address(
    gw: Any, gw_settings: Any, start_gateway: Any
) -> None:
    user = await gw.new_user("viewer")
    async with start_gateway(gw_settings) as gateway:
        clock = gateway.app.state.login_throttle.clock = FrozenClock()
        attacker, elsewhere = documentation_address(), documentation_address()
        suffix = secrets.token_hex(3)
        async with from_address(gateway, attacker) as client:
            statuses = []
            for i in range(300):
                tried = await client.post(
                    "/api/v1/auth/token", data={"username": f"guess-{suffix}-{i}", "password": "password-1"}
                )
                statuses.append(tried.status_code)
            # 20 failures are free; the 20th locks the address for 1 s, and the clock does not move.
            assert statuses == [401] * 20 + [429] * 280
            assert tried.json()["code"] == "login_locked" and tried.headers["Retry-After"] == "1"
            # A right password from that address waits too, and from any other address of its /64...
            assert (await client.post("/api/v1/auth/token", data=_form(user))).status_code == 429
        neighbour = attacker.rsplit(":", 1)[0] + ":ffff"
        async with from_address(gateway, neighbour) as client:
            assert (await client.post("/api/v1/auth/token", data=_form(user))).status_code == 429
        # ...but not from another address.
        async with from_address(gateway, elsewhere) as client:
            assert (await client.post("/api/v1/auth/token", data=_form(user))).status_code == 200
        clock.now += 1
        async with from_address(gateway, attacker) as client:
            assert (await client.post("/api/v1/auth/token", data=_form(user))).status_code == 200


def _form(user: Any, password: str | None = None) -> dict[str, str]:
    return {"username": user.username, "password": password or user.password}


async def test_one_name_gets_fifteen_guesses_in_a_minute_then_one_a_minute_and_its_owner_logs_in(
    gw: Any, gw_settings: Any, start_gateway: Any
) -> None:
    victim = await gw.new_user("trader")
    async with start_gateway(gw_settings) as gateway:
        clock = gateway.app.state.login_throttle.clock = FrozenClock()
        start = clock.now
        guesses, times, delays = 0, [], []

        async def guess() -> None:
            nonlocal guesses
            # Each guess from a new /64 (an attacker with many), the clock moved on by Retry-After when delayed.
            async with from_address(gateway, documentation_address()) as client:
                response = await client.post("/api/v1/auth/token", data=_form(victim, "wrong-password"))
            if response.status_code == 401:
                guesses += 1
                times.append(clock.now - start)
            else:
                assert response.status_code == 429 and response.json()["code"] == "login_locked"
                delays.append(int(response.headers["Retry-After"]))
                clock.now += delays[-1]

        while clock.now < start + 60:
            await guess()
        # 10 free failures at 0 s, then one after each delay of 1, 2, 4, 8, 16 s: at 1, 3, 7, 15 and 31 s; the next
        # delay (32 s) ends at 63 s.
        assert guesses == 15 and times == [0] * 10 + [1, 3, 7, 15, 31]
        assert clock.now == start + 63
        # From then on the delay doubles to 64 s but is capped at 60 s: one guess a minute, however long it goes on.
        while clock.now < start + 63 + 3 * 60:
            await guess()
        assert times[15:] == [63, 123, 183]
        assert max(delays) == 60
        # Right after a guess, the owner, from a new address, waits that minute, then logs in (which clears the
        # name's failures).
        await guess()
        assert times[-1] == 243
        async with from_address(gateway, documentation_address()) as client:
            waits = await client.post("/api/v1/auth/token", data=_form(victim))
            assert waits.status_code == 429 and waits.headers["Retry-After"] == "60"
            clock.now += int(waits.headers["Retry-After"])
            assert (await client.post("/api/v1/auth/token", data=_form(victim))).status_code == 200
            assert (await client.post("/api/v1/auth/token", data=_form(victim, "typo-password"))).status_code == 401
            assert (await client.post("/api/v1/auth/token", data=_form(victim))).status_code == 200


async def test_a_name_under_attack_does_not_delay_its_owner_from_a_known_address(
    gw: Any, gw_settings: Any, start_gateway: Any
) -> None:
    owner = await gw.new_user("admin")
    home = documentation_address()
    async with start_gateway(gw_settings) as gateway:
        gateway.app.state.login_throttle.clock = FrozenClock()
        async with from_address(gateway, home) as client:
            assert (await client.post("/api/v1/auth/token", data=_form(owner))).status_code == 200
        for _ in range(10):  # the name's 10 free failures, from elsewhere: the 10th delays it 1 s
            async with from_address(gateway, documentation_address()) as client:
                assert (await client.post("/api/v1/auth/token", data=_form(owner, "guess-guess"))).status_code == 401
        async with from_address(gateway, documentation_address()) as client:
            assert (await client.post("/api/v1/auth/token", data=_form(owner))).status_code == 429
        async with from_address(gateway, home) as client:
            assert (await client.post("/api/v1/auth/token", data=_form(owner))).status_code == 200


async def test_a_client_is_locked_out_of_one_name_after_five_failures_but_not_others(
    gw: Any, gw_settings: Any, start_gateway: Any
) -> None:
    victim, other = await gw.new_user("viewer"), await gw.new_user("viewer")
    async with start_gateway(gw_settings) as gateway:
        gateway.app.state.login_throttle.clock = FrozenClock()
        guesser = documentation_address()
        async with from_address(gateway, guesser) as client:
            wrong = [await client.post("/api/v1/auth/token", data=_form(victim, "nope-nope")) for _ in range(5)]
            assert [r.status_code for r in wrong] == [401] * 5
            # The pair is locked (the 5th failure: 1 s), a right password included; the client's other names are not.
            locked = await client.post("/api/v1/auth/token", data=_form(victim))
            assert locked.status_code == 429 and locked.headers["Retry-After"] == "1"
            assert (await client.post("/api/v1/auth/token", data=_form(other))).status_code == 200
        # Five failures are below the name's ten: from another client the owner logs in.
        async with from_address(gateway, documentation_address()) as client:
            assert (await client.post("/api/v1/auth/token", data=_form(victim))).status_code == 200


async def test_a_name_the_database_would_match_loosely_is_refused_before_the_lookup(
    gw: Any, gw_settings: Any, start_gateway: Any
) -> None:
    victim = await gw.new_user("viewer")
    async with start_gateway(gw_settings) as gateway:
        gateway.app.state.login_throttle.clock = FrozenClock()
        async with from_address(gateway, documentation_address()) as client:
            # MariaDB's PAD SPACE collation takes 'name ' for 'name': a right password under such a spelling is
            # still the same 401 as a wrong one, and names are case-sensitive.
            for spelling in (
                victim.username + " ",
                victim.username + "  ",
                victim.username.upper(),
                " " + victim.username,
            ):
                refused = await client.post("/api/v1/auth/token", data=_form(victim) | {"username": spelling})
                assert refused.status_code == 401, spelling
                assert refused.json()["code"] == "invalid_credentials"
            assert (await client.post("/api/v1/auth/token", data=_form(victim))).status_code == 200
        # Refused names count against their client: 20 are free, then it is locked.
        async with from_address(gateway, documentation_address()) as client:
            statuses = [
                (
                    await client.post("/api/v1/auth/token", data=_form(victim) | {"username": f"{victim.username} "})
                ).status_code
                for _ in range(21)
            ]
            assert statuses == [401] * 20 + [429]
            assert (await client.post("/api/v1/auth/token", data=_form(victim))).status_code == 429


async def test_password_checks_beyond_the_bound_are_refused_at_once(
    gw: Any, gw_settings: Any, start_gateway: Any
) -> None:
    user = await gw.new_user("viewer")
    async with start_gateway(gw_settings) as gateway:
        throttle = gateway.app.state.login_throttle
        held = [await throttle.verifications.acquire() for _ in range(throttle.policy.max_concurrent_verifications)]
        assert len(held) == 4
        async with from_address(gateway, documentation_address()) as client:
            busy = await client.post("/api/v1/auth/token", data=_form(user))
            assert busy.status_code == 503 and busy.json()["code"] == "login_busy"
            assert busy.headers["Retry-After"] == "1"
            for _ in held:
                throttle.verifications.release()
            assert (await client.post("/api/v1/auth/token", data=_form(user))).status_code == 200


async def test_missing_or_bad_credentials_are_401_unauthenticated(gw: Any) -> None:
    expired = issue_token(gw.settings.jwt_secret, "admin", Role.ADMIN, "admin", 60, now=time.time() - 3600)
    forged = issue_token("some-other-secret-that-is-long-enough", "admin", Role.ADMIN, "admin", 600)
    before = len(gw.downstream.calls)
    for headers in [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
        {"X-API-Key": "lh_0123456789abcdef_" + "x" * 43},
        {"X-API-Key": "nonsense"},
    ]:
        response = await gw.client.get("/api/v1/orders", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="lianghua"'
    assert len(gw.downstream.calls) == before


# --- roles -----------------------------------------------------------------------------------------------------


async def test_viewer_cannot_place_orders_and_risk_never_hears_of_it(gw: Any) -> None:
    viewer = await gw.new_user("viewer")
    before = len(gw.downstream.calls_to("risk"))
    response = await gw.client.post("/api/v1/orders", json=order_body(), headers=viewer.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "trader" in response.json()["message"]
    assert len(gw.downstream.calls_to("risk")) == before

    for method, path in [("POST", "/api/v1/backtests"), ("POST", "/api/v1/orders/ord-1/cancel")]:
        refused = await gw.client.request(method, path, json={}, headers=viewer.headers)
        assert refused.status_code == 403 and "trader" in refused.json()["message"], path


async def test_ingestion_needs_admin_and_the_data_service_never_hears_of_a_trader(gw: Any) -> None:
    trader = await gw.new_user("trader")
    before = len(gw.downstream.calls_to("data"))
    body = {"start": "2024-01-02", "end": "2024-01-31"}
    for method, path in [
        ("POST", "/api/v1/ingest/backfill"),
        ("POST", "/api/v1/ingest/update"),
        ("POST", "/api/v1/quality/run"),
        ("POST", "/api/v1/ingest/limits"),
    ]:
        refused = await gw.client.request(method, path, json=body, headers=trader.headers)
        assert refused.status_code == 403 and "admin" in refused.json()["message"], path
    assert len(gw.downstream.calls_to("data")) == before

    # The day's exchange limits, loaded by hand: admins only, the body passed on as sent.
    limits = await gw.client.post(
        "/api/v1/ingest/limits", json={"trade_date": "2025-03-04"}, headers=await gw.admin_headers()
    )
    assert limits.status_code == 202 and limits.json() == {"run_id": "run-2", "body": {"trade_date": "2025-03-04"}}
    call = gw.downstream.calls_to("data")[-1]
    assert (call.path, call.principal.role) == ("/v1/ingest/limits", "admin")

    started = await gw.client.post("/api/v1/ingest/backfill", json=body, headers=await gw.admin_headers())
    assert started.status_code == 202
    assert started.json() == {"run_id": "run-1", "body": body}
    call = gw.downstream.calls_to("data")[-1]
    assert (call.path, call.principal.role) == ("/v1/ingest/backfill", "admin")


async def test_only_admins_reach_the_kill_switch_and_everyone_reads_trading_states(gw: Any) -> None:
    body = {"scope": "global", "state": "halted", "reason": "drill"}
    before = len(gw.downstream.calls_to("risk"))
    for role in ("trader", "viewer"):
        user = await gw.new_user(role)
        refused = await gw.client.post("/api/v1/risk/halt", json=body, headers=user.headers)
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden", role
        assert "admin" in refused.json()["message"]
        read = await gw.client.get("/api/v1/risk/trading-states", headers=user.headers)
        assert read.status_code == 200 and read.json() == {"states": [], "history": None}
    assert [c.path for c in gw.downstream.calls_to("risk")[before:]] == ["/v1/risk/trading-states"] * 2

    halted = await gw.client.post("/api/v1/risk/halt", json=body, headers=await gw.admin_headers())
    assert halted.status_code == 200 and halted.json()["state"] == "halted"
    call = gw.downstream.calls_to("risk")[-1]
    assert (call.method, call.path, call.principal.role, json.loads(call.body)) == (
        "POST",
        "/v1/risk/halt",
        "admin",
        body,
    )


async def test_only_admins_change_rule_sets_and_everyone_reads_them(gw: Any) -> None:
    body = {"key": "acct-x", "rules": {"order_limits": {"max_order_value": "100000"}}, "reason": "tighten"}
    before = len(gw.downstream.calls_to("risk"))
    for role in ("trader", "viewer"):
        user = await gw.new_user(role)
        for method in ("PUT", "DELETE"):
            refused = await gw.client.request(method, "/api/v1/risk/rules/account", json=body, headers=user.headers)
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden", (role, method)
            assert "admin" in refused.json()["message"]
        read = await gw.client.get("/api/v1/risk/rules", headers=user.headers)
        assert read.status_code == 200 and read.json()["rule_sets"] == []
        history = await gw.client.get("/api/v1/risk/rules/account/history?key=acct-x", headers=user.headers)
        assert history.status_code == 200 and history.json() == [{"scope": "account", "key": "acct-x", "version": 1}]
    assert [c.path for c in gw.downstream.calls_to("risk")[before:]] == [
        "/v1/risk/rules",
        "/v1/risk/rules/account/history",
    ] * 2

    admin = await gw.admin_headers()
    changed = await gw.client.put("/api/v1/risk/rules/account", json=body, headers=admin)
    assert changed.status_code == 201 and changed.json() == {"scope": "account", "key": "acct-x", "version": 1,
                                                             "changed": True}  # fmt: skip
    call = gw.downstream.calls_to("risk")[-1]
    assert (call.method, call.path, call.principal.role, json.loads(call.body)) == (
        "PUT",
        "/v1/risk/rules/account",
        "admin",
        body,
    )
    clear = {"key": "acct-x", "reason": "done"}
    cleared = await gw.client.request("DELETE", "/api/v1/risk/rules/account", json=clear, headers=admin)
    assert cleared.status_code == 201 and cleared.json()["body"] is None
    call = gw.downstream.calls_to("risk")[-1]
    assert (call.method, call.path, json.loads(call.body)) == ("DELETE", "/v1/risk/rules/account", clear)


async def test_user_administration_needs_admin(gw: Any) -> None:
    trader = await gw.new_user("trader")
    body = {"username": "mallory", "password": "password123", "role": "admin"}
    response = await gw.client.post("/api/v1/users", json=body, headers=trader.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden" and "admin" in response.json()["message"]
    assert (await gw.client.get("/api/v1/users", headers=trader.headers)).status_code == 403


async def test_create_user_validates_and_refuses_duplicates(gw: Any) -> None:
    admin = await gw.admin_headers()
    body = {"username": "dup-user-" + str(int(time.time() * 1000)), "password": "password123", "role": "trader"}
    created = await gw.client.post("/api/v1/users", json=body, headers=admin)
    assert created.status_code == 201
    assert created.json()["username"] == body["username"]
    assert created.json()["account_id"] == body["username"]  # defaults to the username
    assert created.json()["role"] == "trader" and created.json()["disabled"] is False
    assert "password" not in json.dumps(created.json())

    duplicate = await gw.client.post("/api/v1/users", json={**body, "role": "viewer"}, headers=admin)
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "user_exists"

    short = await gw.client.post(
        "/api/v1/users", json={**body, "username": "x-short", "password": "1234567"}, headers=admin
    )
    assert short.status_code == 422 and short.json()["code"] == "invalid_request"
    assert short.json()["message"].startswith("password")

    bad_role = await gw.client.post("/api/v1/users", json={**body, "username": "x-role", "role": "root"}, headers=admin)
    assert bad_role.status_code == 422


async def test_the_gateways_own_bodies_refuse_unknown_fields_and_loose_values_and_change_nothing(gw: Any) -> None:
    admin = await gw.admin_headers()
    name = f"strict-{secrets.token_hex(4)}"
    body = {"username": name, "password": "password123", "role": "viewer"}
    extra = await gw.client.post("/api/v1/users", json={**body, "is_admin": True}, headers=admin)
    assert extra.status_code == 422, extra.text
    assert extra.json()["code"] == "invalid_request"
    assert extra.json()["message"] == "is_admin: Extra inputs are not permitted"
    assert name not in {u["username"] for u in (await gw.client.get("/api/v1/users", headers=admin)).json()}

    user = await gw.new_user("viewer")
    for patch in ({"disabled": "yes"}, {"disabled": 1}, {"disabled": False, "locked": True}):
        refused = await gw.client.patch(f"/api/v1/users/{user.username}", json=patch, headers=admin)
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_request", (patch, refused.text)
    assert (await gw.client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200  # not disabled

    key = await gw.client.post("/api/v1/api-keys", json={"name": "bot", "scopes": ["orders"]}, headers=user.headers)
    assert key.status_code == 422 and key.json()["message"].startswith("scopes: "), key.text
    assert (await gw.client.get("/api/v1/api-keys", headers=user.headers)).json() == []


async def test_disabled_user_is_locked_out_at_once(gw: Any) -> None:
    trader = await gw.new_user("trader")
    assert (await gw.client.get("/api/v1/auth/me", headers=trader.headers)).status_code == 200
    patched = await gw.client.patch(
        f"/api/v1/users/{trader.username}", json={"disabled": True}, headers=await gw.admin_headers()
    )
    assert patched.status_code == 200 and patched.json()["disabled"] is True
    # The token has not expired, but the user is disabled now.
    assert (await gw.client.get("/api/v1/auth/me", headers=trader.headers)).status_code == 401
    assert (await gw.login(trader.username, trader.password)).status_code == 401


async def test_role_change_applies_to_existing_tokens(gw: Any) -> None:
    user = await gw.new_user("viewer")
    assert (await gw.client.post("/api/v1/orders", json=order_body(), headers=user.headers)).status_code == 403
    await gw.client.patch(f"/api/v1/users/{user.username}", json={"role": "trader"}, headers=await gw.admin_headers())
    assert (await gw.client.post("/api/v1/orders", json=order_body(), headers=user.headers)).status_code == 201


async def test_admin_cannot_lock_themselves_out(gw: Any) -> None:
    admin = await gw.admin_headers()
    response = await gw.client.patch(
        f"/api/v1/users/{gw.settings.admin_username}", json={"role": "viewer"}, headers=admin
    )
    assert response.status_code == 409
    assert (await gw.client.get("/api/v1/auth/me", headers=admin)).json()["role"] == "admin"


# --- the proxy -------------------------------------------------------------------------------------------------


async def test_trader_order_reaches_risk_with_an_internal_token_for_the_user(gw: Any) -> None:
    trader = await gw.new_user("trader")
    # Raw bytes: the price 10.10 must reach risk exactly as typed, not re-serialised as 10.1.
    raw = b'{"client_order_id":"c-raw","ts_code":"600000.SH","side":"buy","order_type":"limit","qty":200,"price":10.10}'
    headers = {**trader.headers, "Content-Type": "application/json", "X-Request-ID": "req-order-1"}
    response = await gw.client.post("/api/v1/orders", content=raw, headers=headers)

    assert response.status_code == 201, response.text
    assert response.json() == {
        "decision": {"decision_id": "dec-1", "approved": True},
        "order": {
            "order_id": "ord-c-raw",
            "client_order_id": "c-raw",
            "account_id": trader.username,
            "ts_code": "600000.SH",
            "side": "buy",
            "order_type": "limit",
            "qty": 200,
            "price": 10.10,
            "status": "accepted",
        },
    }
    assert response.headers["X-Request-ID"] == "req-order-1"
    assert response.headers["X-Correlation-ID"] == "req-order-1"

    call = gw.downstream.calls_to("risk")[-1]
    assert (call.method, call.path) == ("POST", "/v1/orders")
    assert call.principal.subject == trader.username
    assert call.principal.role == "trader"
    assert call.principal.account_id == trader.username
    assert call.body == raw
    assert call.headers["x-correlation-id"] == "req-order-1"
    assert "authorization" not in call.headers  # the user's own credential stays at the gateway
    assert INTERNAL_HEADER.lower() in call.headers


async def test_risk_rejection_is_passed_through_unchanged(gw: Any) -> None:
    trader = await gw.new_user("trader")
    response = await gw.client.post("/api/v1/orders", json=order_body(qty=150), headers=trader.headers)
    assert response.status_code == 422
    assert response.json() == {
        "code": "order_rejected",
        "message": "rejected by risk: lot_size",
        "decision": {
            "decision_id": "dec-rejected",
            "approved": False,
            "reasons": [{"code": "lot_size", "message": "qty must be a multiple of 100 shares"}],
        },
    }


async def test_account_id_travels_in_the_internal_token(gw: Any) -> None:
    trader = await gw.new_user("trader", account_id="acct-desk-7")
    response = await gw.client.post("/api/v1/orders", json=order_body(), headers=trader.headers)
    assert response.json()["order"]["account_id"] == "acct-desk-7"
    assert gw.downstream.calls_to("risk")[-1].principal.account_id == "acct-desk-7"


async def test_order_body_that_is_not_a_json_object_is_refused_at_the_gateway(gw: Any) -> None:
    trader = await gw.new_user("trader")
    before = len(gw.downstream.calls_to("risk"))
    response = await gw.client.post("/api/v1/orders", json=[1, 2], headers=trader.headers)
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    assert len(gw.downstream.calls_to("risk")) == before


async def test_reads_go_to_their_services_with_the_query_string(gw: Any) -> None:
    viewer = await gw.new_user("viewer")
    h = viewer.headers

    orders = await gw.client.get("/api/v1/orders?status=filled&limit=5", headers=h)
    assert orders.status_code == 200
    assert orders.json() == [{"order_id": "ord-1", "account_id": viewer.username, "status": "filled"}]
    call = gw.downstream.calls_to("execution")[-1]
    assert (call.path, call.query, call.principal.role) == ("/v1/orders", "status=filled&limit=5", "viewer")

    missing = await gw.client.get("/api/v1/orders/ord-404", headers=h)
    assert missing.status_code == 404
    assert missing.json() == {"code": "order_not_found", "message": "no order ord-404"}

    assert (await gw.client.get("/api/v1/trades", headers=h)).json() == []
    securities = await gw.client.get("/api/v1/securities", headers=h)
    assert securities.json()[0]["name"] == "浦发银行"

    bars = await gw.client.get("/api/v1/bars?ts_code=600000.SH&start=2024-01-02&end=2024-01-31", headers=h)
    assert bars.json() == {
        "ts_code": "600000.SH",
        "query": "ts_code=600000.SH&start=2024-01-02&end=2024-01-31",
        "bars": [],
    }

    quote = await gw.client.get("/api/v1/quotes/600000.SH", headers=h)
    assert quote.json()["limit_up"] == "11.00"
    assert gw.downstream.calls_to("data")[-1].path == "/v1/quotes/600000.SH"

    assert (await gw.client.get("/api/v1/backtests", headers=h)).json()[0]["backtest_id"] == "bt-1"
    assert (await gw.client.get("/api/v1/backtests/bt-9", headers=h)).json() == {
        "backtest_id": "bt-9",
        "status": "finished",
    }


async def test_ids_that_could_escape_the_service_path_are_refused(gw: Any) -> None:
    viewer = await gw.new_user("viewer")
    before = len(gw.downstream.calls)
    for path in ["/api/v1/orders/..", "/api/v1/orders/.hidden", "/api/v1/quotes/%2E%2E"]:
        response = await gw.client.get(path, headers=viewer.headers)
        assert response.status_code in (404, 422), path
    assert len(gw.downstream.calls) == before


async def test_trader_cancels_and_starts_backtests(gw: Any) -> None:
    trader = await gw.new_user("trader")
    cancelled = await gw.client.post("/api/v1/orders/ord-77/cancel", headers=trader.headers)
    assert cancelled.status_code == 200 and cancelled.json() == {"order_id": "ord-77", "status": "cancelled"}
    assert gw.downstream.calls_to("execution")[-1].path == "/v1/orders/ord-77/cancel"

    started = await gw.client.post("/api/v1/backtests", json={"strategy": "sma_cross"}, headers=trader.headers)
    assert started.status_code == 202 and started.json() == {"backtest_id": "bt-1", "status": "queued"}
    assert json.loads(gw.downstream.calls_to("backtest")[-1].body) == {"strategy": "sma_cross"}


async def test_backtest_cancel_trades_and_search_are_forwarded(gw: Any) -> None:
    trader = await gw.new_user("trader")
    viewer = await gw.new_user("viewer")
    cancelled = await gw.client.post("/api/v1/backtests/bt-5/cancel", headers=trader.headers)
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    assert gw.downstream.calls_to("backtest")[-1].path == "/v1/backtests/bt-5/cancel"
    refused = await gw.client.post("/api/v1/backtests/bt-5/cancel", headers=viewer.headers)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"

    page = await gw.client.get("/api/v1/backtests/bt-5/trades?limit=10&offset=20", headers=viewer.headers)
    assert page.status_code == 200 and (page.json()["limit"], page.json()["offset"]) == (10, 20)
    await gw.client.get("/api/v1/backtests?strategy=dual_ma&status=succeeded&q=hs300&offset=50", headers=viewer.headers)
    listed = gw.downstream.calls_to("backtest")[-1]
    assert listed.path == "/v1/backtests" and listed.query == "strategy=dual_ma&status=succeeded&q=hs300&offset=50"


async def test_unreachable_service_is_503_with_its_name(gw: Any) -> None:
    viewer = await gw.new_user("viewer")
    response = await gw.client.get("/api/v1/strategies", headers=viewer.headers)
    assert response.status_code == 503
    assert response.json()["code"] == "strategy_unavailable"


# --- API keys --------------------------------------------------------------------------------------------------


async def test_api_key_authenticates_until_revoked(gw: Any) -> None:
    trader = await gw.new_user("trader")
    created = await gw.client.post("/api/v1/api-keys", json={"name": "my bot"}, headers=trader.headers)
    assert created.status_code == 201
    key_id, api_key = created.json()["key_id"], created.json()["api_key"]
    assert re.fullmatch(rf"lh_{key_id}_[A-Za-z0-9_-]{{43}}", api_key)

    me = await gw.client.get("/api/v1/auth/me", headers={"X-API-Key": api_key})
    assert me.status_code == 200
    assert me.json() == {
        "username": trader.username,
        "role": "trader",
        "account_id": trader.username,
        "auth": "api_key",
    }
    # The key acts with its owner's role: a trader's key places orders...
    placed = await gw.client.post(
        "/api/v1/orders", json=order_body(client_order_id="c-key"), headers={"X-API-Key": api_key}
    )
    assert placed.status_code == 201
    assert gw.downstream.calls_to("risk")[-1].principal.subject == trader.username
    # ...also when sent as a bearer token.
    assert (await gw.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {api_key}"})).status_code == 200

    listed = await gw.client.get("/api/v1/api-keys", headers=trader.headers)
    [entry] = listed.json()
    assert entry["key_id"] == key_id and entry["name"] == "my bot"
    assert entry["last_used_at"] is not None and entry["revoked_at"] is None
    assert api_key.split("_", 2)[2] not in listed.text  # the secret (it may hold "_") is shown once, at creation

    # Someone else cannot revoke it (and cannot learn it exists).
    other = await gw.new_user("trader")
    assert (await gw.client.delete(f"/api/v1/api-keys/{key_id}", headers=other.headers)).status_code == 404

    revoked = await gw.client.delete(f"/api/v1/api-keys/{key_id}", headers=trader.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = await gw.client.get("/api/v1/auth/me", headers={"X-API-Key": api_key})
    assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"


async def test_api_key_with_a_wrong_secret_is_refused(gw: Any) -> None:
    viewer = await gw.new_user("viewer")
    api_key = (await gw.client.post("/api/v1/api-keys", json={"name": "k"}, headers=viewer.headers)).json()["api_key"]
    tampered = api_key[:-4] + ("AAAA" if not api_key.endswith("AAAA") else "BBBB")
    response = await gw.client.get("/api/v1/auth/me", headers={"X-API-Key": tampered})
    assert response.status_code == 401


async def test_an_api_key_has_its_own_role_at_most_its_owners(gw: Any) -> None:
    admin = await gw.admin_headers()
    created = await gw.client.post("/api/v1/api-keys", json={"name": "bot", "role": "trader"}, headers=admin)
    assert created.status_code == 201, created.text
    assert (created.json()["role"], created.json()["expires_at"]) == ("trader", None)
    bot = {"X-API-Key": created.json()["api_key"]}
    assert (await gw.client.get("/api/v1/auth/me", headers=bot)).json()["role"] == "trader"
    # The admin's trader key trades, but is not an admin.
    assert (await gw.client.get("/api/v1/users", headers=admin)).status_code == 200
    refused = await gw.client.get("/api/v1/users", headers=bot)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    placed = await gw.client.post("/api/v1/orders", json=order_body(client_order_id="c-bot"), headers=bot)
    assert placed.status_code == 201, placed.text
    # Nor can it make a key at all (keys are managed after logging in), let alone one above its own role.
    escalate = await gw.client.post("/api/v1/api-keys", json={"name": "up", "role": "admin"}, headers=admin)
    assert escalate.status_code == 201
    escalate = await gw.client.post("/api/v1/api-keys", json={"name": "up", "role": "trader"}, headers=bot)
    assert escalate.status_code == 403 and escalate.json()["code"] == "session_required"

    trader = await gw.new_user("trader")
    above = await gw.client.post("/api/v1/api-keys", json={"name": "up", "role": "admin"}, headers=trader.headers)
    assert above.status_code == 403 and above.json()["code"] == "role_exceeds_owner"
    assert (await gw.client.get("/api/v1/api-keys", headers=trader.headers)).json() == []  # nothing was made

    made = await gw.client.post("/api/v1/api-keys", json={"name": "ro", "role": "viewer"}, headers=trader.headers)
    reader = {"X-API-Key": made.json()["api_key"]}
    risk_calls = len(gw.downstream.calls_to("risk"))
    order = await gw.client.post("/api/v1/orders", json=order_body(client_order_id="c-ro"), headers=reader)
    assert order.status_code == 403 and order.json()["code"] == "forbidden"
    assert len(gw.downstream.calls_to("risk")) == risk_calls  # risk never heard of it
    assert (await gw.client.get("/api/v1/orders", headers=reader)).status_code == 200  # reading is allowed
    [listed] = (await gw.client.get("/api/v1/api-keys", headers=trader.headers)).json()
    assert (listed["key_id"], listed["role"], listed["expires_at"]) == (made.json()["key_id"], "viewer", None)

    # A key made without a role gets its owner's; when the owner is demoted, so is the key.
    default = await gw.client.post("/api/v1/api-keys", json={"name": "all"}, headers=trader.headers)
    assert default.json()["role"] == "trader"
    demoted = await gw.client.patch(f"/api/v1/users/{trader.username}", json={"role": "viewer"}, headers=admin)
    assert demoted.status_code == 200
    me = await gw.client.get("/api/v1/auth/me", headers={"X-API-Key": default.json()["api_key"]})
    assert me.json()["role"] == "viewer"


async def test_an_api_key_stops_working_when_it_expires(gw: Any) -> None:
    trader = await gw.new_user("trader")
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    body = {"name": "month", "expires_at": expires.isoformat()}
    created = await gw.client.post("/api/v1/api-keys", json=body, headers=trader.headers)
    assert created.status_code == 201, created.text
    assert datetime.fromisoformat(created.json()["expires_at"]) == expires
    [listed] = (await gw.client.get("/api/v1/api-keys", headers=trader.headers)).json()
    assert datetime.fromisoformat(listed["expires_at"]) == expires
    me = await gw.client.get("/api/v1/auth/me", headers={"X-API-Key": created.json()["api_key"]})
    assert me.status_code == 200

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    # In the past; with no UTC offset; as a Unix timestamp (2030-01-01) or a number that reads as a date.
    for bad, code in (
        (past, "invalid_expiry"),
        ("2030-01-01T00:00:00", "invalid_request"),
        (1893456000, "invalid_request"),
        (20300101.0, "invalid_request"),
    ):
        refused = await gw.client.post(
            "/api/v1/api-keys", json={"name": "x", "expires_at": bad}, headers=trader.headers
        )
        assert refused.status_code == 422 and refused.json()["code"] == code, (bad, refused.text)
    assert len((await gw.client.get("/api/v1/api-keys", headers=trader.headers)).json()) == 1

    # A key whose time is up (made in the store with an expiry a second ago: the API refuses past expiries).
    key = new_api_key()
    await gw.app.state.store.create_api_key(
        trader.username, "old", key.key_id, key.secret_hash, role=Role.TRADER,
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )  # fmt: skip
    expired = await gw.client.get("/api/v1/auth/me", headers={"X-API-Key": key.token})
    assert expired.status_code == 401 and expired.json()["message"] == "this API key has expired"


async def test_an_api_key_cannot_manage_keys_or_users_so_an_expiring_key_cannot_outlive_itself(gw: Any) -> None:
    admin = await gw.admin_headers()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    made = await gw.client.post("/api/v1/api-keys", json={"name": "hour", "expires_at": soon}, headers=admin)
    assert made.status_code == 201, made.text
    hour_key = {"X-API-Key": made.json()["api_key"]}
    assert (await gw.client.get("/api/v1/auth/me", headers=hour_key)).json()["role"] == "admin"  # the key works
    listed = await gw.client.get("/api/v1/api-keys", headers=admin)
    before = [k["key_id"] for k in listed.json()]

    # Neither a key that never expires, nor a user with a password, nor a new password for someone.
    refused = [
        await gw.client.post("/api/v1/api-keys", json={"name": "forever"}, headers=hour_key),
        await gw.client.get("/api/v1/api-keys", headers=hour_key),
        await gw.client.delete(f"/api/v1/api-keys/{made.json()['key_id']}", headers=hour_key),
        await gw.client.post(
            "/api/v1/users", json={"username": f"u-{secrets.token_hex(4)}", "password": "p" * 12}, headers=hour_key
        ),
        await gw.client.patch("/api/v1/users/admin", json={"password": "q" * 12}, headers=hour_key),
    ]
    assert [(r.status_code, r.json()["code"]) for r in refused] == [(403, "session_required")] * 5
    # Nothing changed: the same keys, none revoked, and the admin's password is still the old one.
    after = (await gw.client.get("/api/v1/api-keys", headers=admin)).json()
    assert [k["key_id"] for k in after] == before and all(k["revoked_at"] is None for k in after)
    assert (await gw.login(gw.settings.admin_username, gw.settings.admin_password)).status_code == 200


# --- rate limit, request ids, ops, UI ----------------------------------------------------------------------------


async def test_sixth_request_in_a_minute_is_429_with_retry_after(gw: Any, gw_settings: Any, start_gateway: Any) -> None:
    # Users made through the main gateway: the admin's own requests count against the admin's limit, in Redis.
    alice, bob = await gw.new_user("viewer"), await gw.new_user("viewer")
    async with start_gateway(gw_settings.with_overrides(rate_limit_per_minute=5)) as gateway:
        # The limit counts per calendar minute: start early in one, so six quick requests share it.
        if time.time() % 60 > 50:
            await asyncio.sleep(60 - time.time() % 60 + 0.1)
        statuses = [(await gateway.client.get("/api/v1/auth/me", headers=alice.headers)).status_code for _ in range(5)]
        assert statuses == [200] * 5
        before = time.time()
        sixth = await gateway.client.get("/api/v1/auth/me", headers=alice.headers)
        after = time.time()
        assert sixth.status_code == 429
        assert sixth.json()["code"] == "rate_limited"
        # Retry-After is the whole seconds left of this calendar minute, as the gateway saw the clock between our
        # two readings: ceil(60 - seconds into the minute).
        assert math.ceil(60 - after % 60) <= int(sixth.headers["Retry-After"]) <= math.ceil(60 - before % 60)
        # Per user: bob still has his five.
        assert (await gateway.client.get("/api/v1/auth/me", headers=bob.headers)).status_code == 200


async def test_request_id_is_adopted_and_echoed(gw: Any) -> None:
    response = await gw.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = await gw.client.get("/healthz")
    assert generated.headers["X-Request-ID"] == generated.headers["X-Correlation-ID"] != ""


async def test_readiness_names_each_dependency(gw: Any) -> None:
    assert (await gw.client.get("/healthz")).json() == {"status": "ok", "service": "gateway"}
    ready = await gw.client.get("/readyz")
    checks = ready.json()["checks"]
    assert {k: checks[k] for k in ("db", "cache", "bus", "data", "risk", "execution", "backtest")} == {
        "db": "ok",
        "cache": "ok",
        "bus": "ok",
        "data": "ok",
        "risk": "ok",
        "execution": "ok",
        "backtest": "ok",
    }
    # The fake strategy service is down: said so, without the transport's error or where it was looked for.
    assert checks["strategy"] == "unavailable"
    assert ready.status_code == 503
    assert "refused" not in ready.text and "ConnectError" not in ready.text


async def test_openapi_documents_the_proxied_routes(gw: Any) -> None:
    paths = (await gw.client.get("/openapi.json")).json()["paths"]
    for path in [
        "/api/v1/orders",
        "/api/v1/orders/{order_id}/cancel",
        "/api/v1/bars",
        "/api/v1/backtests/{backtest_id}",
    ]:
        assert path in paths
    assert "post" in paths["/api/v1/orders"] and "get" in paths["/api/v1/orders"]


async def test_web_ui_and_local_bootstrap_are_served(gw: Any) -> None:
    index = await gw.client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "/static/vendor/bootstrap/bootstrap.min.css" in index.text
    assert "/static/app.js" in index.text
    assert not re.search(r"(src|href)=\"(https?:)?//", index.text)  # nothing from another origin
    assert "default-src 'self'" in index.headers["Content-Security-Policy"]

    css = await gw.client.get("/static/vendor/bootstrap/bootstrap.min.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "Bootstrap" in css.text[:300]
    js = await gw.client.get("/static/vendor/bootstrap/bootstrap.bundle.min.js")
    assert js.status_code == 200
    assert "MIT" in (await gw.client.get("/static/vendor/bootstrap/LICENSE")).text
    app_js = await gw.client.get("/static/app.js")
    assert app_js.status_code == 200 and "/api/v1/orders" in app_js.text
    assert "/static/desk.js" in index.text  # the trader's desk: ticket, open orders, positions, TCA
    desk_js = await gw.client.get("/static/desk.js")
    assert desk_js.status_code == 200 and "/api/v1/conditional-orders" in desk_js.text
    # the Strategies page's charts: the reports' ECharts, from this origin
    echarts = await gw.client.get("/static/vendor/echarts/echarts.min.js")
    assert echarts.status_code == 200 and echarts.headers["content-type"].startswith("text/javascript")
    assert "Apache" in echarts.text[:1000] and "/static/vendor/echarts/echarts.min.js" in app_js.text


async def test_an_html_report_streams_through_the_gateway_and_errors_stay_json(gw: Any) -> None:
    viewer = await gw.new_user("viewer")
    page = await gw.client.get("/api/v1/backtests/bt-7/report.html", headers=viewer.headers)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == "<html><body>report of bt-7</body></html>"
    assert page.headers["content-disposition"] == 'attachment; filename="backtest-bt-7.html"'
    failed = await gw.client.get("/api/v1/backtests/bt-failed/report.html", headers=viewer.headers)
    assert failed.status_code == 409 and failed.json()["code"] == "backtest_not_succeeded"
    assert (await gw.client.get("/api/v1/backtests/bt-7/report.html")).status_code == 401


async def test_a_report_link_reads_with_the_users_current_role(gw: Any) -> None:
    chief = await gw.new_user("admin")
    made = await gw.client.post("/api/v1/backtests/bt-7/report-link", headers=chief.headers)
    assert made.status_code == 200, made.text
    demoted = await gw.client.patch(
        f"/api/v1/users/{chief.username}", json={"role": "viewer"}, headers=await gw.admin_headers()
    )
    assert demoted.status_code == 200
    page = await gw.client.get(made.json()["url"])
    assert page.status_code == 200 and page.text == "<html><body>report of bt-7</body></html>"
    call = gw.downstream.calls_to("backtest")[-1]
    assert (call.path, call.principal.subject, call.principal.role) == (
        "/v1/backtests/bt-7/report.html",
        chief.username,
        "viewer",
    )


async def test_report_pages_count_against_the_users_own_rate_limit(
    gw: Any, gw_settings: Any, start_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = await gw.new_user("viewer")
    now = time.time()
    monkeypatch.setattr("gateway.auth.time", SimpleNamespace(time=lambda: now))  # one rate-limit minute throughout
    async with start_gateway(gw_settings.with_overrides(rate_limit_per_minute=5)) as gateway:
        made = await gateway.client.post("/api/v1/backtests/bt-7/report-link", headers=reader.headers)  # 1 of 5
        assert made.status_code == 200
        statuses = [(await gateway.client.get(made.json()["url"])).status_code for _ in range(5)]
        assert statuses == [200] * 4 + [429]  # the link's pages share the user's bucket: 4 more, not 5
        me = await gateway.client.get("/api/v1/auth/me", headers=reader.headers)
        assert me.status_code == 429 and me.json()["code"] == "rate_limited"


# --- request-body size limit (LH_MAX_BODY_BYTES) ---------------------------------------------------------------


def _padded_order(size: int) -> bytes:
    """A valid order, padded with JSON whitespace to exactly `size` bytes: without the limit risk would place it."""
    head = json.dumps(order_body(client_order_id="c-big")).encode()
    return head[:-1] + b" " * (size - len(head)) + b"}"


async def test_an_order_body_over_the_size_limit_is_413_over_http_and_never_reaches_risk(
    gw_settings: Any, serve_app: Any
) -> None:
    downstream = build_downstream(gw_settings.internal_secret)
    infra = Infra(
        settings=gw_settings,
        bus=create_bus(gw_settings.amqp_url, namespace=gw_settings.bus_namespace, source="gateway"),
        cache=create_cache(gw_settings.redis_url),
        services=ServiceDirectory(gw_settings, transports=downstream.transports()),
    )
    limit = gw_settings.max_body_bytes
    assert limit == 1024 * 1024  # the default: 1 MiB

    async def chunks(body: bytes) -> Any:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    # A real uvicorn server, so the client is a real HTTP client that sends its whole body before it reads.
    async with (
        serve_app(create_app(gw_settings, infra)) as hostport,
        httpx.AsyncClient(base_url=f"http://{hostport}", timeout=30) as client,
    ):
        gateway = Gateway(client=client, app=None, settings=gw_settings, downstream=downstream)  # type: ignore[arg-type]
        trader = await gateway.new_user("trader")
        headers = {**trader.headers, "Content-Type": "application/json"}
        declared = await client.post("/api/v1/orders", content=_padded_order(limit + 1), headers=headers)
        chunked = await client.post("/api/v1/orders", content=chunks(_padded_order(limit + 1)), headers=headers)
        huge = await client.post("/api/v1/orders", content=_padded_order(20 * limit), headers=headers)
        for response in (declared, chunked, huge):
            assert response.status_code == 413, response.text
            assert response.json()["code"] == "body_too_large"
        assert chunked.request.headers.get("transfer-encoding") == "chunked"
        assert downstream.calls_to("risk") == []

        # One byte less: risk gets it (and the connection still serves requests after the refusals).
        placed = await client.post("/api/v1/orders", content=_padded_order(limit), headers=headers)
        assert placed.status_code == 201, placed.text
        assert [len(c.body) for c in downstream.calls_to("risk")] == [limit]


async def test_conditional_orders_traders_create_and_cancel_viewers_read_and_risk_child_route_is_not_public(
    gw: Any,
) -> None:
    viewer = await gw.new_user("viewer")
    trader = await gw.new_user("trader")
    body = {"ts_code": "600000.SH", "side": "sell", "qty": 100, "kind": "stop", "stop_price": "9.50"}
    before = len(gw.downstream.calls_to("execution"))
    for method, path in [
        ("POST", "/api/v1/conditional-orders"),
        ("POST", "/api/v1/oco-orders"),
        ("POST", "/api/v1/conditional-orders/c1/cancel"),
    ]:
        refused = await gw.client.request(method, path, json=body, headers=viewer.headers)
        assert refused.status_code == 403 and "trader" in refused.json()["message"], path
    assert len(gw.downstream.calls_to("execution")) == before

    await gw.client.get("/api/v1/conditional-orders", headers=viewer.headers)
    await gw.client.post("/api/v1/conditional-orders", json=body, headers=trader.headers)
    calls = gw.downstream.calls_to("execution")[before:]
    assert [(c.method, c.path, c.principal.role) for c in calls] == [
        ("GET", "/v1/conditional-orders", "viewer"),
        ("POST", "/v1/conditional-orders", "trader"),
    ]
    assert json.loads(calls[1].body) == body  # passed on as sent: execution validates it

    risk_before = len(gw.downstream.calls_to("risk"))
    hidden = await gw.client.post("/api/v1/conditional-children", json={}, headers=await gw.admin_headers())
    assert hidden.status_code in (404, 405)
    assert len(gw.downstream.calls_to("risk")) == risk_before
