"""The alerts API through the gateway against a real Alertmanager (started here: its own port and data directory,
running the repository's alertmanager.yml, whose alert-history route posts to this gateway on a real port) and the
real MariaDB: list, silence (acknowledge), expire, roles and ownership, the history Alertmanager's webhook fills in,
kept once per transition, all scoped by account (a trader neither sees nor silences another account's or a platform
alert; a silence's matchers are exactly the alert's labels; an admin sees and silences everything); Alertmanager
down -> 503."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from gateway.app import create_app
from gateway.store import MIGRATIONS_DIR, GatewayStore, HistoryScope, metadata
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.db import Database
from shared.platform.http import ServiceDirectory
from tests.chaos.servers import free_port
from tests.conftest import Backing
from tests.integration.gateway.conftest import Gateway, build_downstream, served, unique_database_url
from tests.support.alertmanager import Alertmanager

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "alert-history-token-" + "0123456789abcdef"
ALERT_LABELS = {"alertname": "LianghuaTestAlert", "severity": "critical", "team": "platform", "account": "acc-it"}
PLATFORM_LABELS = {"alertname": "LianghuaTestPlatform", "severity": "critical", "team": "platform", "job": "data"}


@dataclass
class Stack:
    gw: Gateway
    am: Alertmanager

    async def post_alert(self, labels: dict[str, str], summary: str, *, ends: datetime | None = None) -> None:
        body: dict[str, Any] = {"labels": labels, "annotations": {"summary": summary}}
        if ends is not None:
            body["endsAt"] = ends.isoformat()
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{self.am.url}/api/v2/alerts", json=[body])
            assert answer.status_code == 200, answer.text

    async def am_silences(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            return list((await http.get(f"{self.am.url}/api/v2/silences")).json())


async def until(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.2)


def am_config(repo: dict[str, Any], gateway: str, secrets_dir: Path) -> dict[str, Any]:
    """The repository's alertmanager.yml with the alert history posted to this test's gateway; the other receivers
    point at a closed port (tests/integration/notify tests them), timings shortened."""
    closed = f"http://127.0.0.1:{free_port()}"
    text = yaml.safe_dump(repo)
    text = text.replace("http://gateway:8000", f"http://{gateway}")
    text = text.replace("http://notify:8107", closed).replace("http://incident-webhook.example:9000", closed)
    text = text.replace("/etc/alertmanager/secrets", str(secrets_dir))
    config = yaml.safe_load(text)
    config["global"]["smtp_smarthost"] = closed.removeprefix("http://")
    config["global"]["smtp_require_tls"] = False
    config["route"].update({"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"})
    return config


@pytest.fixture(scope="module")
async def stack(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("gateway-alerts")
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir()
    for name, value in (("notify_webhook_token", TOKEN), ("smtp_password", "x"), ("incident_webhook_token", "x" * 16)):
        (secrets_dir / name).write_text(value)
    config_path = tmp / "alertmanager.yml"
    am = Alertmanager(config_path, tmp)  # its port is chosen here, before the gateway needs its URL

    base = backing.settings()
    settings = backing.settings(
        database_url=unique_database_url(base, "gwalerts"),
        bus_namespace=f"{backing.namespace}.gwalerts",
        rate_limit_per_minute=1000,
        alertmanager_url=am.url,
        notify_webhook_token=TOKEN,
    )
    downstream = build_downstream(settings.internal_secret)
    infra = Infra(settings=settings, bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace,
                  source="gateway"), cache=create_cache(settings.redis_url),
                  services=ServiceDirectory(settings, transports=downstream.transports()))  # fmt: skip
    app = create_app(settings, infra)
    async with served(app) as hostport:
        repo = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text(encoding="utf-8"))
        config_path.write_text(yaml.safe_dump(am_config(repo, hostport, secrets_dir)))
        await am.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://{hostport}", timeout=30) as client:
                yield Stack(Gateway(app, client, settings, downstream), am)
        finally:
            await am.stop()


async def test_a_trader_silences_an_alert_and_ends_the_silence_the_history_shows_it(stack: Stack) -> None:
    gw = stack.gw
    viewer = await gw.new_user("viewer", account_id="acc-it")
    trader = await gw.new_user("trader", account_id="acc-it")
    other = await gw.new_user("trader")  # of another account (their username)
    summary = "the test alert fired"
    await stack.post_alert(ALERT_LABELS, summary)
    await stack.post_alert(PLATFORM_LABELS, "a platform alert")

    async def listed() -> dict[str, Any] | None:
        answer = await gw.client.get("/api/v1/alerts", headers=viewer.headers)
        assert answer.status_code == 200, answer.text
        return next((a for a in answer.json() if a["labels"] == ALERT_LABELS), None)

    alert = await until(listed, "the alert listed through the gateway")
    assert (alert["alertname"], alert["severity"], alert["summary"]) == ("LianghuaTestAlert", "critical", summary)
    assert alert["state"] == "active" and alert["silenced_by"] == []

    async def platform_listed() -> dict[str, Any] | None:
        answer = await gw.client.get("/api/v1/alerts", headers=other.headers)
        return next((a for a in answer.json() if a["labels"] == PLATFORM_LABELS), None)

    platform = await until(platform_listed, "the platform alert listed to the other account's trader")
    # the other account's trader sees the platform alert, never this account's
    seen = (await gw.client.get("/api/v1/alerts", headers=other.headers)).json()
    assert [a for a in seen if a["labels"].get("account") == "acc-it"] == []

    # Alertmanager notifies the history (the first route, continue: true) once group_wait is over
    async def firing_kept() -> list[dict[str, Any]]:
        page = (await gw.client.get("/api/v1/alerts/history", headers=viewer.headers)).json()
        return [e for e in page["items"] if e["alertname"] == "LianghuaTestAlert" and e["status"] == "firing"]

    [fired] = await until(firing_kept, "the firing alert in the history")
    assert fired["fingerprint"] == alert["fingerprint"] and fired["summary"] == summary
    assert fired["labels"] == ALERT_LABELS and fired["ends_at"] is None
    others_history = (await gw.client.get("/api/v1/alerts/history?limit=200", headers=other.headers)).json()
    assert [e for e in others_history["items"] if e["labels"].get("account") == "acc-it"] == []

    # a viewer cannot silence; bad input reaches nothing; the other account's trader cannot silence this account's
    # alert nor (as any trader) a platform alert, nor give matchers
    body = {"fingerprint": alert["fingerprint"], "duration_minutes": 90, "comment": "restarting the data service"}
    refused = await gw.client.post("/api/v1/alerts/silences", json=body, headers=viewer.headers)
    assert refused.status_code == 403
    bad = await gw.client.post("/api/v1/alerts/silences", json={**body, "comment": " "}, headers=trader.headers)
    assert bad.status_code == 422
    foreign_alert = await gw.client.post("/api/v1/alerts/silences", json=body, headers=other.headers)
    # another account's alert answers as an unknown one would: its existence is not theirs to learn
    assert foreign_alert.status_code == 404 and foreign_alert.json()["code"] == "alert_not_found"
    for who in (trader, other):
        answer = await gw.client.post("/api/v1/alerts/silences", json={**body, "fingerprint": platform["fingerprint"]},
                                      headers=who.headers)  # fmt: skip
        assert answer.status_code == 403 and answer.json()["code"] == "platform_alert"
    for matchers in ({"severity": "critical"}, {"account": "acc-it"}, ALERT_LABELS):
        by_matchers = {"matchers": matchers, "duration_minutes": 90, "comment": "quiet"}
        answer = await gw.client.post("/api/v1/alerts/silences", json=by_matchers, headers=trader.headers)
        assert answer.status_code == 403 and answer.json()["code"] == "matchers_admin_only", answer.text
    assert await stack.am_silences() == []

    before = datetime.now(UTC)
    created = await gw.client.post("/api/v1/alerts/silences", json=body, headers=trader.headers)
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["created_by"] == trader.username and silence["comment"] == "restarting the data service"
    assert silence["state"] == "active"
    [held] = await stack.am_silences()  # Alertmanager holds it, as created
    assert held["id"] == silence["id"] and held["createdBy"] == trader.username
    assert sorted((m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in held["matchers"]) == sorted(
        (k, v, False, True) for k, v in ALERT_LABELS.items()
    )
    length = datetime.fromisoformat(held["endsAt"]) - datetime.fromisoformat(held["startsAt"])
    assert abs(length - timedelta(minutes=90)) < timedelta(seconds=2)
    assert datetime.fromisoformat(held["startsAt"]) >= before - timedelta(seconds=1)

    async def silenced() -> dict[str, Any] | None:
        a = await listed()
        return a if a and a["state"] == "suppressed" else None

    assert (await until(silenced, "the alert silenced"))["silenced_by"] == [silence["id"]]
    listed_silences = (await gw.client.get("/api/v1/alerts/silences", headers=viewer.headers)).json()
    assert [s["id"] for s in listed_silences] == [silence["id"]]
    assert (await gw.client.get("/api/v1/alerts/silences", headers=other.headers)).json() == []

    # another trader cannot end it; its author can
    foreign = await gw.client.delete(f"/api/v1/alerts/silences/{silence['id']}", headers=other.headers)
    assert foreign.status_code == 403 and foreign.json()["code"] == "not_your_silence"
    assert [s["status"]["state"] for s in await stack.am_silences()] == ["active"]
    ended = await gw.client.delete(f"/api/v1/alerts/silences/{silence['id']}", headers=trader.headers)
    assert ended.status_code == 200, ended.text
    assert ended.json()["state"] == "expired"
    assert [s["status"]["state"] for s in await stack.am_silences()] == ["expired"]
    again = await gw.client.delete(f"/api/v1/alerts/silences/{silence['id']}", headers=trader.headers)
    assert again.status_code == 409 and again.json()["code"] == "silence_expired"
    assert (await gw.client.get("/api/v1/alerts/silences", headers=viewer.headers)).json() == []
    with_expired = await gw.client.get("/api/v1/alerts/silences?include_expired=true", headers=viewer.headers)
    assert [s["id"] for s in with_expired.json()] == [silence["id"]]

    async def active_again() -> dict[str, Any] | None:
        a = await listed()
        return a if a and a["state"] == "active" else None

    await until(active_again, "the alert active again")

    # resolved: Alertmanager notifies the history once more; the alert leaves the active list
    await stack.post_alert(ALERT_LABELS, summary, ends=datetime.now(UTC))

    async def resolved_kept() -> list[dict[str, Any]]:
        page = (await gw.client.get("/api/v1/alerts/history", headers=viewer.headers)).json()
        return [e for e in page["items"] if e["alertname"] == "LianghuaTestAlert" and e["status"] == "resolved"]

    [resolved] = await until(resolved_kept, "the resolved alert in the history")
    assert resolved["fingerprint"] == alert["fingerprint"] and resolved["ends_at"] is not None
    assert await listed() is None
    page = (await gw.client.get("/api/v1/alerts/history", headers=viewer.headers)).json()
    kept = [(e["status"], e["fingerprint"]) for e in page["items"] if e["alertname"] == "LianghuaTestAlert"]
    assert kept == [("resolved", alert["fingerprint"]), ("firing", alert["fingerprint"])]  # each once, newest first


async def test_an_admin_sees_and_silences_every_alert(stack: Stack) -> None:
    gw = stack.gw
    admin = await gw.new_user("admin")
    labels = {"alertname": "LianghuaTestAdmin", "severity": "warning", "team": "trading", "account": "acc-admin-it"}
    await stack.post_alert(labels, "another account's alert")
    await stack.post_alert(PLATFORM_LABELS, "a platform alert")

    async def both() -> list[dict[str, Any]] | None:
        answer = await gw.client.get("/api/v1/alerts", headers=admin.headers)
        mine = [a for a in answer.json() if a["labels"] in (labels, PLATFORM_LABELS)]
        return mine if len(mine) == 2 else None

    found = await until(both, "both alerts listed to the admin")
    before = {s["id"] for s in await stack.am_silences()}
    made = []
    for alert in found:
        body = {"fingerprint": alert["fingerprint"], "duration_minutes": 5, "comment": "admin"}
        answer = await gw.client.post("/api/v1/alerts/silences", json=body, headers=admin.headers)
        assert answer.status_code == 201, answer.text
        made.append(answer.json()["id"])
    by_matchers = {"matchers": {"team": "trading", "account": "acc-admin-it"}, "duration_minutes": 5, "comment": "x"}
    answer = await gw.client.post("/api/v1/alerts/silences", json=by_matchers, headers=admin.headers)
    assert answer.status_code == 201, answer.text
    made.append(answer.json()["id"])
    held = {s["id"]: s for s in await stack.am_silences() if s["id"] not in before}
    assert sorted(held) == sorted(made)
    matchers = [{(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in held[i]["matchers"]} for i in made]
    assert matchers == [
        {(k, v, False, True) for k, v in found[0]["labels"].items()},
        {(k, v, False, True) for k, v in found[1]["labels"].items()},
        {("team", "trading", False, True), ("account", "acc-admin-it", False, True)},
    ]
    listed = {s["id"] for s in (await gw.client.get("/api/v1/alerts/silences", headers=admin.headers)).json()}
    assert set(made) <= listed
    for silence_id in made:
        ended = await gw.client.delete(f"/api/v1/alerts/silences/{silence_id}", headers=admin.headers)
        assert ended.status_code == 200, ended.text


async def test_a_redelivered_notification_adds_nothing_on_mariadb(stack: Stack) -> None:
    gw = stack.gw
    viewer = await gw.new_user("viewer")
    labels = {"alertname": "LianghuaRedelivered", "severity": "warning", "team": "data"}
    notification = {
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing", "receiver": "alert-history",
        "groupLabels": {}, "commonLabels": labels, "commonAnnotations": {}, "externalURL": stack.am.url,
        "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": "again and again"},
                    "startsAt": "2026-12-07T01:02:03.456789Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "", "fingerprint": "00000000000000aa"}],
    }  # fmt: skip
    token = {"Authorization": f"Bearer {TOKEN}"}
    answers = await asyncio.gather(
        *(gw.client.post("/api/v1/alerts/webhook", json=notification, headers=token) for _ in range(3))
    )
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert sum(a.json()["recorded"] for a in answers) == 1  # kept by exactly one of the three deliveries
    page = (await gw.client.get("/api/v1/alerts/history?limit=200", headers=viewer.headers)).json()
    mine = [e for e in page["items"] if e["fingerprint"] == "00000000000000aa"]
    assert len(mine) == 1
    assert mine[0]["starts_at"].startswith("2026-12-07T01:02:03.456789")


async def test_alertmanager_down_is_a_503_alertmanager_unavailable(backing: Backing) -> None:
    base = backing.settings()
    settings = backing.settings(
        database_url=unique_database_url(base, "gwalertsdown"),
        bus_namespace=f"{backing.namespace}.gwalertsdown",
        alertmanager_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
    )
    infra = Infra(settings=settings, bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace,
                  source="gateway"), cache=create_cache(settings.redis_url), services=ServiceDirectory(settings))  # fmt: skip
    app = create_app(settings, infra)
    async with served(app) as hostport, httpx.AsyncClient(base_url=f"http://{hostport}") as client:
        gw = Gateway(app, client, settings, build_downstream(settings.internal_secret))
        trader = await gw.new_user("trader")
        for method, path, body in (
            ("GET", "/api/v1/alerts", None),
            ("GET", "/api/v1/alerts/silences", None),
            ("POST", "/api/v1/alerts/silences", {"fingerprint": "0123456789abcdef", "duration_minutes": 5,
                                                 "comment": "down"}),
        ):  # fmt: skip
            answer = await client.request(method, path, json=body, headers=trader.headers)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["code"] == "alertmanager_unavailable"


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_the_gateway_migrations_create_exactly_its_tables_on_mariadb(backing: Backing) -> None:
    base = backing.settings()
    db = Database(unique_database_url(base, "gwmigrations").format(service="gateway"))
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        await db.migrate(MIGRATIONS_DIR)  # a restart migrates nothing
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await db.dispose()


async def test_the_gateway_migrations_create_exactly_its_tables_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/gateway.db")
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await db.dispose()


def _migrate_to(connection: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def test_migration_0005_scopes_the_history_kept_before_it(tmp_path: Path) -> None:
    """The rows kept before 0005 get their account, owner and platform-wide flag from their labels, failing closed: a
    trader's history then shows exactly what their live alerts would."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/gateway.db")
    await db.connect()
    kept = {
        "f1": {"alertname": "A", "account": "tom"},
        "f2": {"alertname": "B", "scope": "account", "key": "tom"},
        "f3": {"alertname": "C", "scope": "instance", "key": "0123456789abcdef0123456789abcdef"},
        "f4": {"alertname": "D", "bridge_id": "b1"},
        "f5": {"alertname": "E", "job": "data"},
        "f6": {"alertname": "F", "scope": "global", "key": "global"},
        "f7": {"alertname": "G", "owner": "tom", "instance_id": "0123"},
        "f8": {"alertname": "H", "account": "carol"},
    }
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0004")
            for i, (fingerprint, labels) in enumerate(kept.items(), start=1):
                await conn.exec_driver_sql(
                    "INSERT INTO alert_events (id, fingerprint, status, alertname, severity, labels, summary,"
                    " starts_at, received_at) VALUES (?, ?, 'firing', ?, 'warning', ?, 's', ?, ?)",
                    (i, fingerprint, labels["alertname"], json.dumps(labels), "2026-12-07 09:00:00.000000",
                     "2026-12-07 09:00:00.000000"),
                )  # fmt: skip
        await db.migrate(MIGRATIONS_DIR)
        store = GatewayStore(db)
        toms = await store.alert_history(limit=50, scope=HistoryScope(account="tom", username="tom"))
        assert sorted(t.fingerprint for t in toms) == ["f1", "f2", "f5", "f6", "f7"]
        everything = await store.alert_history(limit=50)
        assert len(everything) == len(kept)
    finally:
        await db.dispose()
