"""The gateway's audit log over the real MariaDB (every state-changing request, who, how, what, the answer; never a
body), the admin-only views of it, every user's API keys and the services' health."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from gateway.audit import AuditLog
from gateway.store import AuditEntry
from shared.platform.clock import utcnow

pytestmark = pytest.mark.integration

ORDER = {"client_order_id": "c-audit", "ts_code": "600000.SH", "side": "buy", "order_type": "limit", "qty": 100}


async def audit_of(gw: Any, **query: Any) -> dict[str, Any]:
    await gw.app.state.audit.flush()
    response = await gw.client.get("/api/v1/audit", params=query, headers=await gw.admin_headers())
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_user_administration_and_orders_are_recorded_with_who_what_and_the_answer(gw: Any) -> None:
    admin = await gw.admin_headers()
    name, password = f"aud-{secrets.token_hex(4)}", "pw-" + secrets.token_hex(10)
    created = await gw.client.post(
        "/api/v1/users", json={"username": name, "password": password, "role": "viewer"}, headers=admin
    )
    assert created.status_code == 201
    changed = await gw.client.patch(
        f"/api/v1/users/{name}", json={"role": "trader"}, headers={**admin, "X-Request-ID": "audit-req-1"}
    )
    assert changed.status_code == 200
    token = (await gw.login(name, password)).json()["access_token"]
    trader = {"Authorization": f"Bearer {token}"}
    placed = await gw.client.post("/api/v1/orders", json={**ORDER, "price": "10.50"}, headers=trader)
    assert placed.status_code == 201
    refused = await gw.client.post("/api/v1/orders", json={**ORDER, "price": "10.50", "qty": 150}, headers=trader)
    assert refused.status_code == 422  # risk's refusal, passed through
    cancelled = await gw.client.post("/api/v1/orders/ord-77/cancel", headers=trader)
    assert cancelled.status_code == 200
    await gw.client.get("/api/v1/orders", headers=trader)  # a read: not audited

    mine = (await audit_of(gw, user=name))["entries"]
    assert [(e["method"], e["path"], e["resource_id"], e["status"], e["via"]) for e in mine] == [
        ("POST", "/api/v1/orders/ord-77/cancel", "ord-77", 200, "jwt"),
        ("POST", "/api/v1/orders", None, 422, "jwt"),
        ("POST", "/api/v1/orders", None, 201, "jwt"),
        ("POST", "/api/v1/auth/token", None, 200, "password"),  # the log-in names who logged in
    ]
    admin_name = gw.settings.admin_username
    by_admin = (await audit_of(gw, user=admin_name, path_prefix=f"/api/v1/users/{name}"))["entries"]
    [patch] = by_admin
    assert (patch["method"], patch["resource_id"], patch["status"], patch["request_id"]) == (
        "PATCH", name, 200, "audit-req-1",
    )  # fmt: skip
    creations = (await audit_of(gw, user=admin_name, path_prefix="/api/v1/users"))["entries"]
    assert any(e["method"] == "POST" and e["status"] == 201 for e in creations)
    # Every entry has the request id the client was answered with; no body reaches the log.
    for entry in mine + creations:
        assert entry["request_id"]
    assert password not in json.dumps(creations)
    assert all(e["path"] != "/api/v1/orders" or e["method"] != "GET" for e in mine)


def refusals_before_authentication(gw: Any, status: int) -> float:
    value = gw.app.state.metrics_registry.get_sample_value(
        "lh_gateway_audit_unauthenticated_refusals_total", {"status": str(status)}
    )
    return value or 0.0


async def test_refusals_by_role_are_recorded_and_those_before_authentication_only_counted(gw: Any) -> None:
    viewer = await gw.new_user("viewer")
    denied = await gw.client.post("/api/v1/orders", json={**ORDER, "price": "10.50"}, headers=viewer.headers)
    assert denied.status_code == 403
    before_401, before_404 = refusals_before_authentication(gw, 401), refusals_before_authentication(gw, 404)
    marker = secrets.token_hex(4)
    for _ in range(3):
        anonymous = await gw.client.delete(f"/api/v1/api-keys/{marker}")
        assert anonymous.status_code == 401
    forged = await gw.client.post(f"/api/v1/orders/{marker}/cancel", headers={"Authorization": "Bearer forged"})
    assert forged.status_code == 401
    failed_login = await gw.login(f"nobody-{marker}", "wrong-password")
    assert failed_login.status_code == 401
    unknown = await gw.client.post(f"/api/v1/no-such-thing-{marker}")
    assert unknown.status_code == 404

    [entry] = (await audit_of(gw, user=viewer.username, path_prefix="/api/v1/orders"))["entries"]
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/api/v1/orders", 403)
    # Anyone can send those as fast as they like: none is queued (nor written), each is counted by status.
    for prefix in (f"/api/v1/api-keys/{marker}", f"/api/v1/orders/{marker}", f"/api/v1/no-such-thing-{marker}"):
        assert (await audit_of(gw, path_prefix=prefix))["entries"] == [], prefix
    anonymous_entries = [e for e in (await audit_of(gw, limit=500))["entries"] if e["username"] is None]
    assert anonymous_entries == []
    assert refusals_before_authentication(gw, 401) == before_401 + 5
    assert refusals_before_authentication(gw, 404) == before_404 + 1


async def test_posts_that_only_read_are_neither_recorded_nor_refused(gw: Any) -> None:
    viewer = await gw.new_user("viewer")
    link = await gw.client.post("/api/v1/backtests/bt-read-1/report-link", headers=viewer.headers)
    assert link.status_code == 200 and link.json()["url"]
    series = await gw.client.post(
        "/api/v1/indicators/series", json={"ts_code": "600000.SH", "indicators": []}, headers=viewer.headers
    )
    assert series.status_code == 503  # the strategy service is down in these tests: answered, not audited
    audit = gw.app.state.audit
    saved = audit.max_pending
    audit.max_pending = 0  # a full backlog refuses changes, not reads
    try:
        full = await gw.client.post("/api/v1/optimisations/opt-read-1/report-link", headers=viewer.headers)
    finally:
        audit.max_pending = saved
    assert full.status_code == 200
    assert (await audit_of(gw, user=viewer.username))["entries"][0]["path"] == "/api/v1/auth/token"  # its log-in only
    assert len((await audit_of(gw, user=viewer.username))["entries"]) == 1


async def test_an_api_keys_requests_name_the_key(gw: Any) -> None:
    trader = await gw.new_user("trader")
    created = (await gw.client.post("/api/v1/api-keys", json={"name": "bot"}, headers=trader.headers)).json()
    placed = await gw.client.post(
        "/api/v1/orders",
        json={**ORDER, "price": "10.50", "client_order_id": "c-k"},
        headers={"X-API-Key": created["api_key"]},
    )
    assert placed.status_code == 201
    entries = (await audit_of(gw, user=trader.username))["entries"]
    assert [(e["path"], e["via"], e["key_id"]) for e in entries] == [
        ("/api/v1/orders", "api_key", created["key_id"]),
        ("/api/v1/api-keys", "jwt", None),
        ("/api/v1/auth/token", "password", None),
    ]
    assert created["api_key"].split("_", 2)[2] not in json.dumps(entries)


async def test_filters_and_pages(gw: Any) -> None:
    trader = await gw.new_user("trader")
    before = datetime.now(UTC)
    for n in range(5):
        response = await gw.client.post(f"/api/v1/orders/ord-{n}/cancel", headers=trader.headers)
        assert response.status_code == 200
    cancels = {"user": trader.username, "path_prefix": "/api/v1/orders/"}
    first = await audit_of(gw, **cancels, limit=2)
    assert [e["resource_id"] for e in first["entries"]] == ["ord-4", "ord-3"]
    second = await audit_of(gw, **cancels, limit=2, before_id=first["next_before_id"])
    assert [e["resource_id"] for e in second["entries"]] == ["ord-2", "ord-1"]
    third = await audit_of(gw, **cancels, limit=2, before_id=second["next_before_id"])
    assert [e["resource_id"] for e in third["entries"]] == ["ord-0"] and third["next_before_id"] is None

    later = (before + timedelta(days=1)).isoformat()
    assert (await audit_of(gw, user=trader.username, since=later))["entries"] == []
    assert len((await audit_of(gw, **cancels, since=before.isoformat()))["entries"]) == 5
    # A path prefix is a prefix, not a pattern: "_" and "%" match themselves only.
    assert (await audit_of(gw, user=trader.username, path_prefix="/api/v1/orders/ord_"))["entries"] == []
    assert len((await audit_of(gw, user=trader.username, path_prefix="/api/v1/orders/ord-"))["entries"]) == 5

    admin = await gw.admin_headers()
    for bad in ({"since": "2026-01-01T00:00:00"}, {"since": "0.5"}, {"since": "2026-13-01T00:00:00Z"}, {"limit": 0}, {"limit": 501}, {"path_prefix": "orders"},
                {"before_id": 0}, {"before_id": 2**63}, {"user": "no spaces"}):  # fmt: skip
        response = await gw.client.get("/api/v1/audit", params=bad, headers=admin)
        assert response.status_code == 422 and response.json()["code"] == "invalid_request", bad


async def test_entries_are_written_in_the_background_within_a_second(gw: Any) -> None:
    trader = await gw.new_user("trader")
    assert (await gw.client.post("/api/v1/orders/ord-bg/cancel", headers=trader.headers)).status_code == 200
    admin = await gw.admin_headers()
    deadline = time.monotonic() + 2.0
    while True:
        page = (await gw.client.get("/api/v1/audit", params={"user": trader.username}, headers=admin)).json()
        # the trader's log-in is an entry too, possibly written in a batch of its own before the cancel's
        cancels = [e for e in page["entries"] if e["resource_id"] == "ord-bg"]
        if cancels:
            break
        assert time.monotonic() < deadline, "the audit entry was not written within 2 s"
        await asyncio.sleep(0.05)
    assert [(e["method"], e["path"]) for e in cancels] == [("POST", "/api/v1/orders/ord-bg/cancel")]


async def test_only_admins_read_the_audit_log_and_the_services_health(gw: Any) -> None:
    for role in ("viewer", "trader"):
        user = await gw.new_user(role)
        for path in ("/api/v1/audit", "/api/v1/admin/services"):
            response = await gw.client.get(path, headers=user.headers)
            assert response.status_code == 403 and response.json()["code"] == "forbidden", (role, path)
    assert (await gw.client.get("/api/v1/audit")).status_code == 401


async def test_services_health_names_each_service_and_its_state(gw: Any) -> None:
    response = await gw.client.get("/api/v1/admin/services", headers=await gw.admin_headers())
    assert response.status_code == 200
    health = {s["service"]: s for s in response.json()}
    assert list(health) == ["gateway", "data", "strategy", "backtest", "risk", "execution"]
    assert health["gateway"]["readyz"] == "ready"
    assert health["gateway"]["checks"] == {"db": "ok", "bus": "ok", "cache": "ok"}
    # The fake services answer /healthz but have no /readyz (404): answering, not ready.
    for name in ("data", "backtest", "risk", "execution"):
        assert (health[name]["healthz"], health[name]["readyz"]) == ("ok", "not_ready"), name
        assert health[name]["latency_ms"] >= 0
    # The strategy service's port is closed (conftest).
    assert health["strategy"] == {
        "service": "strategy", "healthz": "unavailable", "readyz": "unavailable", "checks": {}, "latency_ms": None,
    }  # fmt: skip


async def test_an_admin_lists_every_users_keys_and_others_only_their_own(gw: Any) -> None:
    trader = await gw.new_user("trader")
    viewer = await gw.new_user("viewer")
    for user in (trader, viewer):
        created = await gw.client.post("/api/v1/api-keys", json={"name": f"k-{user.role}"}, headers=user.headers)
        assert created.status_code == 201
    everyone = await gw.client.get("/api/v1/api-keys", params={"all": "true"}, headers=await gw.admin_headers())
    owners = {(k["username"], k["name"]) for k in everyone.json()}
    assert {(trader.username, "k-trader"), (viewer.username, "k-viewer")} <= owners
    own = await gw.client.get("/api/v1/api-keys", headers=trader.headers)
    assert [(k["username"], k["name"]) for k in own.json()] == [(trader.username, "k-trader")]
    refused = await gw.client.get("/api/v1/api-keys", params={"all": "true"}, headers=trader.headers)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    # A trader's key cannot be an admin's (the key's role is at most its owner's).
    above = await gw.client.post("/api/v1/api-keys", json={"name": "x", "role": "admin"}, headers=trader.headers)
    assert above.status_code == 403 and above.json()["code"] == "role_exceeds_owner"


async def test_entries_wait_while_the_database_is_down_and_are_written_once_it_is_back(gw: Any) -> None:
    store = gw.app.state.store
    audit = AuditLog(store, batch_size=2)
    marker = secrets.token_hex(4)
    for n in range(3):
        audit.record(AuditEntry(utcnow(), f"dbdown-{marker}", "jwt", None, "POST", f"/x/{n}", str(n), 200, f"r{n}"))

    real_insert = store.insert_audit
    calls: list[int] = []

    async def down(entries: list[AuditEntry]) -> None:
        calls.append(len(entries))
        raise ConnectionError("database down")

    store.insert_audit = down
    try:
        with pytest.raises(ConnectionError):
            await audit.flush()
        assert len(audit.pending) == 3  # nothing dropped
    finally:
        store.insert_audit = real_insert
    await audit.flush()
    assert not audit.pending and calls == [2]
    written = (await audit_of(gw, user=f"dbdown-{marker}"))["entries"]
    assert [e["resource_id"] for e in written] == ["2", "1", "0"]  # each once, in order


async def test_a_full_backlog_refuses_changes_but_serves_cancels_and_the_kill_switch(
    gw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    trader = await gw.new_user("trader")
    admin = await gw.admin_headers()
    audit = gw.app.state.audit
    calls_before = len(gw.downstream.calls)
    saved = audit.max_pending
    audit.max_pending = 0
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.audit"):
            refused = await gw.client.post("/api/v1/orders", json={**ORDER, "price": "10.50"}, headers=trader.headers)
            read = await gw.client.get("/api/v1/orders", headers=trader.headers)
            cancelled = await gw.client.post("/api/v1/orders/ord-full/cancel", headers=trader.headers)
            halted = await gw.client.post(
                "/api/v1/risk/halt", json={"scope": "global", "state": "halted"}, headers=admin
            )
            # The same path resumes trading: that is no safety move, and with the backlog full it is refused.
            resumed = await gw.client.post(
                "/api/v1/risk/halt", json={"scope": "global", "state": "active", "reason": "back"}, headers=admin
            )
            garbled = await gw.client.post(
                "/api/v1/risk/halt",
                content=b'{"state": "halted"',
                headers={**admin, "content-type": "application/json"},
            )
    finally:
        audit.max_pending = saved
    assert refused.status_code == 503 and refused.json()["code"] == "audit_unavailable"
    assert refused.headers["Retry-After"] == "5"
    assert read.status_code == 200  # reads change nothing: served
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert halted.status_code == 200 and halted.json()["state"] == "halted"
    assert [r.status_code for r in (resumed, garbled)] == [503, 503]
    assert resumed.json()["code"] == "audit_unavailable"
    # The order and the resume never reached risk; the cancel and the halt did, the halt's body intact.
    assert [(c.service, c.method, c.path) for c in gw.downstream.calls[calls_before:]] == [
        ("execution", "GET", "/v1/orders"),
        ("execution", "POST", "/v1/orders/ord-full/cancel"),
        ("risk", "POST", "/v1/risk/halt"),
    ]
    assert json.loads(gw.downstream.calls[-1].body) == {"scope": "global", "state": "halted"}
    # Not queued: their entries are in the log instead, one ERROR line each with every field.
    logged = [json.loads(r.audit) for r in caplog.records if r.getMessage() == "audit entry not written"]
    assert [(e["username"], e["method"], e["path"], e["resource_id"], e["status"]) for e in logged] == [
        (trader.username, "POST", "/api/v1/orders/ord-full/cancel", "ord-full", 200),
        (gw.settings.admin_username, "POST", "/api/v1/risk/halt", None, 200),
    ]
    assert all(e["request_id"] for e in logged)
    assert (await audit_of(gw, user=trader.username, path_prefix="/api/v1/orders/ord-full"))["entries"] == []


async def test_entries_past_their_retention_are_deleted_in_batches(gw: Any) -> None:
    store = gw.app.state.store
    marker = f"ret-{secrets.token_hex(4)}"
    now = utcnow()
    ages = {"old-1": 401, "old-2": 500, "old-3": 1000, "edge": 399, "new": 0}
    await store.insert_audit(
        [
            AuditEntry(now - timedelta(days=d), marker, "jwt", None, "POST", f"/x/{n}", n, 200, n)
            for n, d in ages.items()
        ]
    )
    audit = AuditLog(store, retention_days=400, purge_batch_size=2)
    assert await audit.purge_expired() >= 3  # other tests' entries are all recent
    kept = (await audit_of(gw, user=marker))["entries"]
    assert sorted(e["resource_id"] for e in kept) == ["edge", "new"]
    assert await audit.purge_expired() == 0


async def test_the_path_prefix_filter_has_an_index(gw: Any) -> None:
    async for attempt in gw.app.state.store.db.transaction():
        async with attempt as s:
            rows = (await s.execute(text("SHOW INDEX FROM audit_log"))).mappings().all()
    columns: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: (r["Key_name"], r["Seq_in_index"])):
        columns.setdefault(row["Key_name"], []).append(row["Column_name"])
    assert columns["ix_audit_log_path_id"] == ["path", "id"]
