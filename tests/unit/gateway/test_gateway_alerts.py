"""The alerts API's checks in the gateway (gateway/alerts.py), with Alertmanager replaced by a recorder: bad input is
refused with 422 and nothing reaches Alertmanager; roles and silence ownership are enforced; no Alertmanager
configured or one that does not answer is a 503 with its own code; the history webhook takes only Alertmanager's
token and keeps each transition once. The same against a real Alertmanager and MariaDB:
tests/integration/gateway/test_gateway_alerts.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.security import issue_token
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.http import ServiceDirectory
from shared.platform.roles import Role
from shared.platform.settings import Settings

WEBHOOK_TOKEN = "history-token-0123456789"
SILENCE_ID = "5b0c7a3e-1111-4222-8333-944455556666"


@dataclass
class FakeAlertmanager:
    """Records every request; answers as Alertmanager's API v2 would for one silence of `owner`'s."""

    owner: str = "carol"
    requests: list[httpx.Request] = field(default_factory=list)
    down: bool = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if request.method == "GET" and path == f"/api/v2/silence/{SILENCE_ID}":
            return httpx.Response(200, json=self.silence())
        if request.method == "DELETE" and path == f"/api/v2/silence/{SILENCE_ID}":
            return httpx.Response(200)
        if request.method == "POST" and path == "/api/v2/silences":
            return httpx.Response(200, json={"silenceID": SILENCE_ID})
        return httpx.Response(404, text="not found")

    def silence(self) -> dict[str, Any]:
        return {
            "id": SILENCE_ID,
            "status": {"state": "active"},
            "updatedAt": "2026-12-07T10:00:00Z",
            "matchers": [{"name": "alertname", "value": "X", "isRegex": False, "isEqual": True}],
            "startsAt": "2026-12-07T10:00:00Z",
            "endsAt": "2026-12-07T11:00:00Z",
            "createdBy": self.owner,
            "comment": "looking into it",
        }

    def changes(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests if r.method != "GET"]


@dataclass
class Gateway:
    app: FastAPI
    http: httpx.AsyncClient
    am: FakeAlertmanager
    settings: Settings

    def auth(self, username: str) -> dict[str, str]:
        role = {"vera": Role.VIEWER, "tom": Role.TRADER, "carol": Role.TRADER, "ada": Role.ADMIN}[username]
        return {"Authorization": f"Bearer {issue_token(self.settings.jwt_secret, username, role, username, 600)}"}


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db",
        "jwt_secret": "unit-jwt-secret-0123456789abcdef0123456789",
        "internal_secret": "unit-internal-secret-0123456789",
        "admin_password": "admin-password-0123",
        "alertmanager_url": "http://alertmanager.test:9093",
        "notify_webhook_token": WEBHOOK_TOKEN,
        "log_json": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def make_gateway(tmp_path: Path) -> Callable[..., Any]:
    async def make(**overrides: Any) -> AsyncIterator[Gateway]:
        settings = settings_for(tmp_path, **overrides)
        infra = Infra(settings=settings, bus=create_bus("memory://", namespace="t", source="gateway"),
                      cache=create_cache("memory://"), services=ServiceDirectory(settings))  # fmt: skip
        app = create_app(settings, infra)
        am = FakeAlertmanager()
        app.state.alertmanager.http = httpx.AsyncClient(
            base_url="http://alertmanager.test:9093", transport=httpx.MockTransport(am.handler)
        )
        async with app.router.lifespan_context(app):
            for name, role in (
                ("vera", Role.VIEWER),
                ("tom", Role.TRADER),
                ("carol", Role.TRADER),
                ("ada", Role.ADMIN),
            ):
                await app.state.store.create_user(name, "not-a-hash", role, name)
            transport = httpx.ASGITransport(app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
                yield Gateway(app, http, am, settings)

    return make


@pytest.fixture
async def gw(make_gateway: Callable[..., Any]) -> AsyncIterator[Gateway]:
    async for gateway in make_gateway():
        yield gateway


GOOD = {"matchers": {"alertname": "LianghuaRiskBreach", "account": "acc1"}, "duration_minutes": 60,
        "comment": "on it"}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"duration_minutes": 7 * 24 * 60 + 1}, "duration_minutes"),
        ({"duration_minutes": "60"}, "duration_minutes"),
        ({"duration_minutes": 60.0}, "duration_minutes"),
        ({"comment": ""}, "comment"),
        ({"comment": "   "}, "comment"),
        ({"comment": "x" * 501}, "comment"),
        ({"matchers": {}}, "matchers"),
        ({"matchers": {"1bad": "x"}}, "matchers"),
        ({"matchers": {"alertname": ""}}, "matchers"),
        ({"created_by": "someone-else"}, "created_by"),
    ],
    ids=[
        "zero",
        "over-a-week",
        "string",
        "float",
        "empty-comment",
        "blank-comment",
        "long-comment",
        "no-matchers",
        "bad-label-name",
        "empty-label-value",
        "unknown-field",
    ],
)
async def test_bad_silence_input_is_refused_and_nothing_is_sent(gw: Gateway, change: dict[str, Any],
                                                                field_name: str) -> None:  # fmt: skip
    body = {**GOOD, **change}
    answer = await gw.http.post("/api/v1/alerts/silences", json=body, headers=gw.auth("tom"))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["code"] == "invalid_request"
    assert field_name in json.dumps(problem)
    assert gw.am.requests == []


async def test_a_week_is_the_longest_silence_and_the_author_is_the_caller(gw: Gateway) -> None:
    body = {**GOOD, "duration_minutes": 7 * 24 * 60, "comment": "  weekend maintenance  "}
    answer = await gw.http.post("/api/v1/alerts/silences", json=body, headers=gw.auth("tom"))
    assert answer.status_code == 201, answer.text
    [posted] = [r for r in gw.am.requests if r.method == "POST"]
    sent = json.loads(posted.content)
    assert sent["createdBy"] == "tom"
    assert sent["comment"] == "weekend maintenance"
    assert sent["matchers"] == [
        {"name": "account", "value": "acc1", "isRegex": False, "isEqual": True},
        {"name": "alertname", "value": "LianghuaRiskBreach", "isRegex": False, "isEqual": True},
    ]
    length = datetime.fromisoformat(sent["endsAt"]) - datetime.fromisoformat(sent["startsAt"])
    assert length.total_seconds() == 7 * 24 * 3600


async def test_viewers_read_but_do_not_silence(gw: Gateway) -> None:
    answer = await gw.http.post("/api/v1/alerts/silences", json=GOOD, headers=gw.auth("vera"))
    assert answer.status_code == 403 and answer.json()["code"] == "forbidden"
    expire = await gw.http.delete(f"/api/v1/alerts/silences/{SILENCE_ID}", headers=gw.auth("vera"))
    assert expire.status_code == 403
    assert gw.am.requests == []
    assert (await gw.http.get("/api/v1/alerts/silences")).status_code == 401  # no credentials at all


async def test_a_trader_expires_only_their_own_silences_an_admin_anyones(gw: Gateway) -> None:
    refused = await gw.http.delete(f"/api/v1/alerts/silences/{SILENCE_ID}", headers=gw.auth("tom"))
    assert refused.status_code == 403 and refused.json()["code"] == "not_your_silence"
    assert gw.am.changes() == []
    own = await gw.http.delete(f"/api/v1/alerts/silences/{SILENCE_ID}", headers=gw.auth("carol"))
    assert own.status_code == 200, own.text
    assert gw.am.changes() == [f"DELETE /api/v2/silence/{SILENCE_ID}"]
    admin = await gw.http.delete(f"/api/v1/alerts/silences/{SILENCE_ID}", headers=gw.auth("ada"))
    assert admin.status_code == 200
    assert len(gw.am.changes()) == 2


async def test_a_silence_id_that_is_no_id_is_refused(gw: Gateway) -> None:
    answer = await gw.http.delete("/api/v1/alerts/silences/..%2Fsilences", headers=gw.auth("ada"))
    assert answer.status_code in (404, 422)
    assert gw.am.requests == []


async def test_alertmanager_down_is_503_alertmanager_unavailable(gw: Gateway) -> None:
    gw.am.down = True
    for path in ("/api/v1/alerts", "/api/v1/alerts/silences"):
        answer = await gw.http.get(path, headers=gw.auth("vera"))
        assert answer.status_code == 503 and answer.json()["code"] == "alertmanager_unavailable", path
    answer = await gw.http.post("/api/v1/alerts/silences", json=GOOD, headers=gw.auth("tom"))
    assert answer.status_code == 503 and answer.json()["code"] == "alertmanager_unavailable"


async def test_no_alertmanager_configured_is_503_alertmanager_not_configured(make_gateway: Callable[..., Any]) -> None:
    async for gw in make_gateway(alertmanager_url=""):
        for method, path in (("GET", "/api/v1/alerts"), ("GET", "/api/v1/alerts/silences")):
            answer = await gw.http.request(method, path, headers=gw.auth("vera"))
            assert answer.status_code == 503 and answer.json()["code"] == "alertmanager_not_configured"
        answer = await gw.http.post("/api/v1/alerts/silences", json=GOOD, headers=gw.auth("tom"))
        assert answer.json()["code"] == "alertmanager_not_configured"
        # the history is the gateway's own: it answers without Alertmanager
        history = await gw.http.get("/api/v1/alerts/history", headers=gw.auth("vera"))
        assert history.status_code == 200 and history.json() == {"items": [], "next_before_id": None}


def notification(status: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="X"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "alert-history",
        "groupLabels": {"alertname": "X"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def alert(fingerprint: str, status: str, starts: str, ends: str = "0001-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "X", "severity": "warning", "account": "acc1"},
        "annotations": {"summary": f"X on acc1 ({fingerprint})"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "",
        "fingerprint": fingerprint,
    }


async def test_the_history_webhook_takes_only_alertmanagers_token(gw: Gateway) -> None:
    body = notification("firing", alert("f1", "firing", "2026-12-07T09:00:00Z"))
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, gw.auth("ada")):
        answer = await gw.http.post("/api/v1/alerts/webhook", json=body, headers=headers)
        assert answer.status_code == 401, headers
    # a bad body without the token is a 401 too: the token is checked first
    assert (await gw.http.post("/api/v1/alerts/webhook", json={"x": 1})).status_code == 401
    history = await gw.http.get("/api/v1/alerts/history", headers=gw.auth("vera"))
    assert history.json()["items"] == []


async def test_without_a_token_the_history_webhook_refuses_everything(make_gateway: Callable[..., Any]) -> None:
    async for gw in make_gateway(notify_webhook_token=""):
        body = notification("firing", alert("f1", "firing", "2026-12-07T09:00:00Z"))
        answer = await gw.http.post("/api/v1/alerts/webhook", json=body, headers={"Authorization": "Bearer "})
        assert answer.status_code == 503 and answer.json()["code"] == "alert_history_not_configured"


async def test_history_keeps_each_transition_once_newest_first_in_pages(gw: Gateway) -> None:
    token = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    firing = notification("firing", alert("f1", "firing", "2026-12-07T09:00:00Z"),
                          alert("f2", "firing", "2026-12-07T09:05:00Z"))  # fmt: skip
    first = await gw.http.post("/api/v1/alerts/webhook", json=firing, headers=token)
    assert first.json() == {"alerts": 2, "recorded": 2}
    again = await gw.http.post("/api/v1/alerts/webhook", json=firing, headers=token)  # a retry, or the repeat
    assert again.json() == {"alerts": 2, "recorded": 0}
    resolved = notification("resolved", alert("f1", "resolved", "2026-12-07T09:00:00Z", "2026-12-07T09:30:00Z"))
    assert (await gw.http.post("/api/v1/alerts/webhook", json=resolved, headers=token)).json()["recorded"] == 1

    page = (await gw.http.get("/api/v1/alerts/history?limit=2", headers=gw.auth("vera"))).json()
    assert [(e["fingerprint"], e["status"]) for e in page["items"]] == [("f1", "resolved"), ("f2", "firing")]
    assert page["items"][0]["ends_at"].startswith("2026-12-07T09:30:00")
    assert page["items"][1]["ends_at"] is None
    assert page["items"][0]["summary"] == "X on acc1 (f1)"
    assert page["items"][0]["labels"] == {"alertname": "X", "severity": "warning", "account": "acc1"}
    rest = await gw.http.get(f"/api/v1/alerts/history?limit=2&before_id={page['next_before_id']}",
                             headers=gw.auth("vera"))  # fmt: skip
    assert [(e["fingerprint"], e["status"]) for e in rest.json()["items"]] == [("f1", "firing")]
    assert rest.json()["next_before_id"] is None
    bad = await gw.http.get("/api/v1/alerts/history?limit=201", headers=gw.auth("vera"))
    assert bad.status_code == 422


@pytest.mark.parametrize("token", ["short-token", "changeme"])
def test_a_weak_history_token_is_refused_at_start(tmp_path: Path, token: str) -> None:
    with pytest.raises(ValueError, match="LH_NOTIFY_WEBHOOK_TOKEN must be set to a secret of at least 16"):
        settings_for(tmp_path, notify_webhook_token=token)
