"""The alerts API's checks in the gateway (gateway/alerts.py), with Alertmanager replaced by a recorder: bad input is
refused with 422 and nothing reaches Alertmanager; roles and silence ownership are enforced; alerts, silences and
the history are scoped by account (a trader sees and silences only their account's alerts, by fingerprint, with the
matchers built from that alert's labels; an admin everything); no Alertmanager
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

# The alerts the fake Alertmanager holds, by fingerprint: one of tom's account, one of carol's, a platform alert (no
# account label) and carol's refused strategy code (an `owner`, no account). Every user's account is their username.
LABELS = {
    "a1a1a1a1a1a1a1a1": {"alertname": "LianghuaRiskBreach", "severity": "critical", "team": "trading",
                         "account": "tom", "rule": "max_daily_loss", "code": "daily_loss"},
    "c1c1c1c1c1c1c1c1": {"alertname": "LianghuaRiskBreach", "severity": "critical", "team": "trading",
                         "account": "carol", "rule": "max_daily_loss", "code": "daily_loss"},
    "b1b1b1b1b1b1b1b1": {"alertname": "LianghuaServiceDown", "severity": "critical", "team": "platform",
                         "job": "data"},
    "d1d1d1d1d1d1d1d1": {"alertname": "LianghuaStrategyCodeRejected", "severity": "warning", "team": "trading",
                         "owner": "carol", "strategy": "momo", "file": "momo.py"},
}  # fmt: skip
TOMS, CAROLS, PLATFORM, CAROLS_CODE = LABELS

# Alerts of no `account` label that are nonetheless somebody's (scoping fails closed): an instance's halt (risk's kill
# switch: `scope`+`key`, before any of the instance's orders was decided: after, it names the account), an instance behind its bars, a QMT bridge down (Prometheus: `bridge_id` only), the count of
# halted account scopes; and what is everybody's or tom's by label: the global halt, tom's account halted (`key`).
SCOPED = {
    "e1e1e1e1e1e1e1e1": {"alertname": "LianghuaTradingHalted", "severity": "critical", "team": "trading",
                         "scope": "instance", "key": "0123456789abcdef0123456789abcdef"},
    "e2e2e2e2e2e2e2e2": {"alertname": "LianghuaStrategyInstanceBehindBars", "severity": "warning",
                         "team": "trading", "instance_id": "0123456789abcdef0123456789abcdef"},
    "e3e3e3e3e3e3e3e3": {"alertname": "LianghuaBrokerDisconnected", "severity": "critical", "team": "trading",
                         "bridge_id": "b1", "job": "execution"},
    "e4e4e4e4e4e4e4e4": {"alertname": "LianghuaScopesHalted", "severity": "warning", "team": "trading",
                         "scope": "account"},
    "e5e5e5e5e5e5e5e5": {"alertname": "LianghuaTradingHalted", "severity": "critical", "team": "trading",
                         "scope": "global", "key": "global"},
    "e6e6e6e6e6e6e6e6": {"alertname": "LianghuaTradingReducing", "severity": "warning", "team": "trading",
                         "scope": "account", "key": "tom"},
}  # fmt: skip
INSTANCE_HALT, BEHIND_BARS, BRIDGE_DOWN, SCOPES_HALTED, GLOBAL_HALT, TOMS_KEY = SCOPED


def silence_of(silence_id: str, by: str, *matchers: tuple[str, str, bool, bool]) -> dict[str, Any]:
    return {
        "id": silence_id,
        "status": {"state": "active"},
        "updatedAt": "2026-12-07T10:00:00Z",
        "matchers": [{"name": n, "value": v, "isRegex": r, "isEqual": e} for n, v, r, e in matchers],
        "startsAt": "2026-12-07T10:00:00Z",
        "endsAt": "2026-12-07T11:00:00Z",
        "createdBy": by,
        "comment": "why",
    }


@dataclass
class FakeAlertmanager:
    """Records every request; answers as Alertmanager's API v2 would for one silence of `owner`'s."""

    owner: str = "carol"
    requests: list[httpx.Request] = field(default_factory=list)
    down: bool = False
    silences: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, dict[str, str]] = field(default_factory=lambda: dict(LABELS))
    # an alert's status by fingerprint where it is not plainly active (silencedBy, inhibitedBy)
    status: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        if request.method == "GET" and path == "/api/v2/silences":
            return httpx.Response(200, json=self.silences)
        if request.method == "GET" and path == "/api/v2/alerts":
            return httpx.Response(200, json=[self.alert(f) for f in self.held])
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

    def alert(self, fingerprint: str) -> dict[str, Any]:
        labels = self.held[fingerprint]
        return {
            "fingerprint": fingerprint,
            "labels": labels,
            "annotations": {"summary": f"{labels['alertname']} ({fingerprint})"},
            "startsAt": "2026-12-07T09:00:00Z",
            "endsAt": "2026-12-07T10:00:00Z",
            "updatedAt": "2026-12-07T09:00:00Z",
            "receivers": [{"name": "notify"}],
            "status": self.status.get(fingerprint, {"state": "active", "silencedBy": [], "inhibitedBy": []}),
        }

    def posted_silences(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]

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


GOOD = {"fingerprint": TOMS, "duration_minutes": 60, "comment": "on it"}


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
        ({"fingerprint": "not-hex!"}, "fingerprint"),
        ({"fingerprint": None}, "fingerprint"),
        ({"matchers": {"account": "tom"}}, "fingerprint"),
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
        "bad-fingerprint",
        "neither-fingerprint-nor-matchers",
        "both-fingerprint-and-matchers",
    ],
)
async def test_bad_silence_input_is_refused_and_nothing_is_sent(gw: Gateway, change: dict[str, Any],
                                                                field_name: str) -> None:  # fmt: skip
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
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
    [sent] = gw.am.posted_silences()
    assert sent["createdBy"] == "tom"
    assert sent["comment"] == "weekend maintenance"
    # the matchers are the alert's complete label set, each name=value, in label-name order
    assert sent["matchers"] == [
        {"name": "account", "value": "tom", "isRegex": False, "isEqual": True},
        {"name": "alertname", "value": "LianghuaRiskBreach", "isRegex": False, "isEqual": True},
        {"name": "code", "value": "daily_loss", "isRegex": False, "isEqual": True},
        {"name": "rule", "value": "max_daily_loss", "isRegex": False, "isEqual": True},
        {"name": "severity", "value": "critical", "isRegex": False, "isEqual": True},
        {"name": "team", "value": "trading", "isRegex": False, "isEqual": True},
    ]
    length = datetime.fromisoformat(sent["endsAt"]) - datetime.fromisoformat(sent["startsAt"])
    assert length.total_seconds() == 7 * 24 * 3600


@pytest.mark.parametrize(
    ("user", "seen"),
    [
        ("vera", {PLATFORM}),
        ("tom", {TOMS, PLATFORM}),
        ("carol", {CAROLS, PLATFORM, CAROLS_CODE}),
        ("ada", {TOMS, CAROLS, PLATFORM, CAROLS_CODE}),
    ],
)
async def test_each_user_sees_the_alerts_of_their_account_and_the_platforms(gw: Gateway, user: str,
                                                                             seen: set[str]) -> None:  # fmt: skip
    answer = await gw.http.get("/api/v1/alerts", headers=gw.auth(user))
    assert answer.status_code == 200, answer.text
    assert {a["fingerprint"] for a in answer.json()} == seen


@pytest.mark.parametrize(
    ("user", "fingerprint", "status", "code"),
    [
        ("tom", CAROLS, 404, "alert_not_found"),
        ("tom", CAROLS_CODE, 404, "alert_not_found"),
        ("tom", INSTANCE_HALT, 404, "alert_not_found"),
        ("tom", BRIDGE_DOWN, 404, "alert_not_found"),
        ("tom", PLATFORM, 403, "platform_alert"),
        ("tom", GLOBAL_HALT, 403, "platform_alert"),
        ("carol", CAROLS_CODE, 403, "platform_alert"),
    ],
    ids=["another-account", "another-owner", "an-instance", "a-bridge", "platform", "global-halt", "own-no-account"],
)
async def test_a_trader_cannot_silence_another_accounts_or_a_platform_alert(gw: Gateway, user: str, fingerprint: str,
                                                                            status: int, code: str) -> None:  # fmt: skip
    """An alert the trader may not see answers exactly as an unknown fingerprint (no telling it exists); one they see
    but that is of no account is refused as such."""
    gw.am.held.update(SCOPED)
    answer = await gw.http.post("/api/v1/alerts/silences", json={**GOOD, "fingerprint": fingerprint},
                                headers=gw.auth(user))  # fmt: skip
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code
    if status == 404:
        unknown = await gw.http.post("/api/v1/alerts/silences", json={**GOOD, "fingerprint": "0123456789abcdef"},
                                     headers=gw.auth(user))  # fmt: skip
        assert answer.json()["message"].replace(fingerprint, "F") == unknown.json()["message"].replace(
            "0123456789abcdef", "F"
        )
    assert gw.am.changes() == []


@pytest.mark.parametrize(
    ("user", "seen"),
    [
        ("vera", {PLATFORM, GLOBAL_HALT}),
        ("tom", {TOMS, PLATFORM, GLOBAL_HALT, TOMS_KEY}),
        ("carol", {CAROLS, PLATFORM, CAROLS_CODE, GLOBAL_HALT}),
        ("ada", set(LABELS) | set(SCOPED)),
    ],
)
async def test_an_instances_or_a_bridges_alert_is_an_admins_and_an_account_scopes_key_its_account(
    gw: Gateway, user: str, seen: set[str]
) -> None:
    gw.am.held.update(SCOPED)
    answer = await gw.http.get("/api/v1/alerts", headers=gw.auth(user))
    assert answer.status_code == 200, answer.text
    assert {a["fingerprint"] for a in answer.json()} == seen


async def test_a_trader_silences_their_account_scopes_alert_named_by_key(gw: Gateway) -> None:
    gw.am.held.update(SCOPED)
    answer = await gw.http.post("/api/v1/alerts/silences", json={**GOOD, "fingerprint": TOMS_KEY},
                                headers=gw.auth("tom"))  # fmt: skip
    assert answer.status_code == 201, answer.text
    [sent] = gw.am.posted_silences()
    assert {(m["name"], m["value"]) for m in sent["matchers"]} == {
        ("alertname", "LianghuaTradingReducing"), ("severity", "warning"), ("team", "trading"),
        ("scope", "account"), ("key", "tom"),
    }  # fmt: skip


async def test_what_suppresses_an_alert_is_named_only_as_far_as_the_reader_sees_it(gw: Gateway) -> None:
    gw.am.held.update(SCOPED)
    toms_silence = "00000000-0000-4000-8000-000000000001"
    carols_silence = "00000000-0000-4000-8000-000000000002"
    gw.am.silences = [
        silence_of(toms_silence, "ada", ("account", "tom", False, True)),
        silence_of(carols_silence, "ada", ("account", "carol", False, True)),
    ]
    gw.am.status[TOMS] = {
        "state": "suppressed",
        "silencedBy": [toms_silence, carols_silence],
        "inhibitedBy": [CAROLS, PLATFORM, INSTANCE_HALT, BRIDGE_DOWN],
    }

    async def suppressed(user: str) -> tuple[list[str], list[str]]:
        answer = await gw.http.get("/api/v1/alerts", headers=gw.auth(user))
        assert answer.status_code == 200, answer.text
        [toms] = [a for a in answer.json() if a["fingerprint"] == TOMS]
        assert toms["state"] == "suppressed"
        return toms["silenced_by"], toms["inhibited_by"]

    assert await suppressed("tom") == ([toms_silence], [PLATFORM])
    assert await suppressed("ada") == ([toms_silence, carols_silence], [CAROLS, PLATFORM, INSTANCE_HALT, BRIDGE_DOWN])


@pytest.mark.parametrize(
    "matchers",
    [{"severity": "critical"}, {"account": "carol"}, {"account": "tom"}, LABELS[TOMS]],
    ids=["fleet-wide", "another-account", "own-account", "own-alert-labels"],
)
async def test_a_trader_cannot_silence_by_matchers(gw: Gateway, matchers: dict[str, str]) -> None:
    body = {"matchers": matchers, "duration_minutes": 7 * 24 * 60, "comment": "quiet"}
    answer = await gw.http.post("/api/v1/alerts/silences", json=body, headers=gw.auth("tom"))
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "matchers_admin_only"
    assert gw.am.changes() == []


async def test_an_unknown_fingerprint_is_404_and_nothing_is_silenced(gw: Gateway) -> None:
    for user in ("tom", "ada"):
        answer = await gw.http.post("/api/v1/alerts/silences", json={**GOOD, "fingerprint": "0123456789abcdef"},
                                    headers=gw.auth(user))  # fmt: skip
        assert answer.status_code == 404 and answer.json()["code"] == "alert_not_found"
    assert gw.am.changes() == []


async def test_an_admin_silences_any_alert_or_any_matchers(gw: Gateway) -> None:
    carols = await gw.http.post("/api/v1/alerts/silences", json={**GOOD, "fingerprint": CAROLS},
                                headers=gw.auth("ada"))  # fmt: skip
    assert carols.status_code == 201, carols.text
    platform = await gw.http.post("/api/v1/alerts/silences", json={**GOOD, "fingerprint": PLATFORM},
                                  headers=gw.auth("ada"))  # fmt: skip
    assert platform.status_code == 201, platform.text
    body = {"matchers": {"team": "data", "severity": "warning"}, "duration_minutes": 30, "comment": "maintenance"}
    fleet = await gw.http.post("/api/v1/alerts/silences", json=body, headers=gw.auth("ada"))
    assert fleet.status_code == 201, fleet.text
    sent = [{(m["name"], m["value"]) for m in s["matchers"]} for s in gw.am.posted_silences()]
    assert sent == [
        {("alertname", "LianghuaRiskBreach"), ("severity", "critical"), ("team", "trading"), ("account", "carol"),
         ("rule", "max_daily_loss"), ("code", "daily_loss")},
        {("alertname", "LianghuaServiceDown"), ("severity", "critical"), ("team", "platform"), ("job", "data")},
        {("team", "data"), ("severity", "warning")},
    ]  # fmt: skip
    assert all(s["createdBy"] == "ada" for s in gw.am.posted_silences())


async def test_silences_are_listed_as_their_alerts_would_be(gw: Gateway) -> None:
    gw.am.silences = [
        silence_of("00000000-0000-4000-8000-000000000001", "ada", ("account", "carol", False, True),
                   ("alertname", "LianghuaRiskBreach", False, True)),
        silence_of("00000000-0000-4000-8000-000000000002", "ada", ("team", "platform", False, True)),
        silence_of("00000000-0000-4000-8000-000000000003", "ada", ("account", "tom|carol", True, True)),
        silence_of("00000000-0000-4000-8000-000000000004", "tom", ("account", "tom", False, True),
                   ("alertname", "LianghuaRiskBreach", False, True)),
        silence_of("00000000-0000-4000-8000-000000000005", "ada", ("owner", "carol", False, True)),
        silence_of("00000000-0000-4000-8000-000000000006", "ada", ("account", "carol", False, False)),
    ]  # fmt: skip

    async def ids(user: str) -> set[int]:
        answer = await gw.http.get("/api/v1/alerts/silences", headers=gw.auth(user))
        assert answer.status_code == 200, answer.text
        return {int(s["id"][-1]) for s in answer.json()}

    assert await ids("vera") == {2}
    assert await ids("tom") == {2, 4}
    assert await ids("carol") == {1, 2, 5}
    assert await ids("ada") == {1, 2, 3, 4, 5, 6}


async def test_silences_of_an_instance_or_a_bridge_are_an_admins(gw: Gateway) -> None:
    gw.am.silences = [
        silence_of("00000000-0000-4000-8000-000000000001", "ada", ("scope", "instance", False, True),
                   ("key", "0123456789abcdef0123456789abcdef", False, True)),
        silence_of("00000000-0000-4000-8000-000000000002", "ada", ("bridge_id", "b1", False, True)),
        silence_of("00000000-0000-4000-8000-000000000003", "ada", ("instance_id", "0123", False, True)),
        silence_of("00000000-0000-4000-8000-000000000004", "ada", ("scope", "account", False, True),
                   ("key", "tom", False, True)),
        silence_of("00000000-0000-4000-8000-000000000005", "ada", ("scope", "global", False, True)),
        silence_of("00000000-0000-4000-8000-000000000006", "ada", ("key", "tom|carol", True, True),
                   ("scope", "account", False, True)),
    ]  # fmt: skip

    async def ids(user: str) -> set[int]:
        answer = await gw.http.get("/api/v1/alerts/silences", headers=gw.auth(user))
        assert answer.status_code == 200, answer.text
        return {int(s["id"][-1]) for s in answer.json()}

    assert await ids("vera") == {5}
    assert await ids("tom") == {4, 5}
    assert await ids("carol") == {5}
    assert await ids("ada") == {1, 2, 3, 4, 5, 6}


async def test_the_history_of_an_instance_or_a_bridge_is_an_admins(gw: Gateway) -> None:
    token = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    starts = "2026-12-07T09:00:00Z"
    # an account label that disagrees with the account scope's key: whose it is is unclear, so an admin's alone
    mixed = {"alertname": "LianghuaTradingHalted", "severity": "critical", "scope": "account", "key": "carol",
             "account": "tom"}  # fmt: skip
    firing = notification(
        "firing",
        *(alert(f, "firing", starts, labels=SCOPED[f]) for f in SCOPED),
        alert("f0f0f0f0f0f0f0f0", "firing", starts, labels=mixed),
    )
    assert (await gw.http.post("/api/v1/alerts/webhook", json=firing, headers=token)).json()["recorded"] == 7

    async def seen(user: str) -> set[str]:
        answer = await gw.http.get("/api/v1/alerts/history", headers=gw.auth(user))
        assert answer.status_code == 200, answer.text
        return {e["fingerprint"] for e in answer.json()["items"]}

    assert await seen("vera") == {GLOBAL_HALT}
    assert await seen("carol") == {GLOBAL_HALT}
    assert await seen("tom") == {GLOBAL_HALT, TOMS_KEY}
    assert await seen("ada") == set(SCOPED) | {"f0f0f0f0f0f0f0f0"}


async def test_the_history_is_scoped_by_account_in_pages(gw: Gateway) -> None:
    token = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    starts = "2026-12-07T09:00:00Z"
    firing = notification("firing", *(alert(f, "firing", starts, labels=LABELS[f]) for f in LABELS))
    assert (await gw.http.post("/api/v1/alerts/webhook", json=firing, headers=token)).json()["recorded"] == 4
    more = notification("firing", alert("a2a2a2a2a2a2a2a2", "firing", starts, labels={**LABELS[TOMS], "rule": "x"}))
    assert (await gw.http.post("/api/v1/alerts/webhook", json=more, headers=token)).json()["recorded"] == 1

    async def pages(user: str) -> list[list[str]]:
        out: list[list[str]] = []
        query = "limit=1"
        while True:
            answer = await gw.http.get(f"/api/v1/alerts/history?{query}", headers=gw.auth(user))
            assert answer.status_code == 200, answer.text
            out.append([e["fingerprint"] for e in answer.json()["items"]])
            after = answer.json()["next_before_id"]
            if after is None:
                return out
            query = f"limit=1&before_id={after}"

    assert await pages("vera") == [[PLATFORM]]
    assert await pages("tom") == [["a2a2a2a2a2a2a2a2"], [PLATFORM], [TOMS]]  # newest first, one a page
    assert await pages("carol") == [[CAROLS_CODE], [PLATFORM], [CAROLS]]
    assert len(await pages("ada")) == 5


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


def alert(fingerprint: str, status: str, starts: str, ends: str = "0001-01-01T00:00:00Z",
          labels: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "status": status,
        "labels": labels if labels is not None else {"alertname": "X", "severity": "warning", "account": "acc1"},
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
    history = await gw.http.get("/api/v1/alerts/history", headers=gw.auth("ada"))
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

    page = (await gw.http.get("/api/v1/alerts/history?limit=2", headers=gw.auth("ada"))).json()
    assert [(e["fingerprint"], e["status"]) for e in page["items"]] == [("f1", "resolved"), ("f2", "firing")]
    assert page["items"][0]["ends_at"].startswith("2026-12-07T09:30:00")
    assert page["items"][1]["ends_at"] is None
    assert page["items"][0]["summary"] == "X on acc1 (f1)"
    assert page["items"][0]["labels"] == {"alertname": "X", "severity": "warning", "account": "acc1"}
    rest = await gw.http.get(f"/api/v1/alerts/history?limit=2&before_id={page['next_before_id']}",
                             headers=gw.auth("ada"))  # fmt: skip
    assert [(e["fingerprint"], e["status"]) for e in rest.json()["items"]] == [("f1", "firing")]
    assert rest.json()["next_before_id"] is None
    bad = await gw.http.get("/api/v1/alerts/history?limit=201", headers=gw.auth("vera"))
    assert bad.status_code == 422


@pytest.mark.parametrize("token", ["short-token", "changeme"])
def test_a_weak_history_token_is_refused_at_start(tmp_path: Path, token: str) -> None:
    with pytest.raises(ValueError, match="LH_NOTIFY_WEBHOOK_TOKEN must be set to a secret of at least 16"):
        settings_for(tmp_path, notify_webhook_token=token)
