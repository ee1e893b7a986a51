"""The notify service's webhook: the bearer token (fail closed), unknown robots, bad bodies; health and metrics open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from shared.platform.observability import redact
from shared.platform.settings import Settings

TOKEN = "notify-test-token-0123456789"
ROBOTS = {"ops-chat": {"kind": "wecom", "url": "http://127.0.0.1:9/cgi-bin/webhook/send?key=k"}}
BODY = {
    "version": "4", "groupKey": "{}:{alertname=\"X\"}", "status": "firing", "receiver": "ops-chat",
    "groupLabels": {"alertname": "X"}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
    "truncatedAlerts": 0,
    "alerts": [{"status": "firing", "labels": {"alertname": "X"}, "annotations": {},
                "startsAt": "2026-12-07T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                "fingerprint": "abc"}],
}  # fmt: skip


def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # a long merge window: nothing is sent to the (unreachable) robot while the test runs
    notify = NotifySettings(webhook_token=TOKEN, robots=ROBOTS, merge_window_s=60)
    app = create_app(settings(tmp_path), notify=notify)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notify") as http:
            yield http


def test_the_service_refuses_to_start_without_a_webhook_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LH_NOTIFY_WEBHOOK_TOKEN"):
        create_app(settings(tmp_path), notify=NotifySettings(webhook_token="short"))


def test_the_token_and_robots_can_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "robots.json").write_text('{"trading": {"kind": "dingtalk", "url": "https://d.test/s?access_token=a", '
                                          '"secret": "SECx"}}')  # fmt: skip
    notify = NotifySettings(webhook_token_file=tmp_path / "token", robots_file=tmp_path / "robots.json")
    assert notify.require_webhook_token() == TOKEN
    assert set(notify.robots) == {"trading"}


def test_robot_names_are_checked() -> None:
    with pytest.raises(ValueError, match="robot name"):
        NotifySettings(webhook_token=TOKEN, robots={"Trading Desk": ROBOTS["ops-chat"]})


async def test_a_webhook_with_the_token_is_queued_for_its_robot(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/alertmanager/robots/ops-chat", json=BODY, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"robot": "ops-chat", "alerts": 1, "pending": 1}
    robots = await client.get("/v1/alertmanager/robots", headers={"Authorization": f"Bearer {TOKEN}"})
    assert robots.json() == [{"name": "ops-chat", "kind": "wecom", "pending": 1}]
    assert "key=k" not in robots.text  # never the robot's URL


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer wrong-token-0123456789", f"Basic {TOKEN}", "Bearer "],
    ids=["none", "wrong", "not-bearer", "empty"],
)
async def test_a_webhook_without_the_token_is_refused_and_queues_nothing(
    client: httpx.AsyncClient, authorization: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = await client.post("/v1/alertmanager/robots/ops-chat", json=BODY, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthenticated"
    robots = await client.get("/v1/alertmanager/robots", headers={"Authorization": f"Bearer {TOKEN}"})
    assert robots.json()[0]["pending"] == 0


async def test_an_unknown_robot_is_404_and_a_body_that_is_not_alertmanagers_is_422(client: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    unknown = await client.post("/v1/alertmanager/robots/nobody", json=BODY, headers=auth)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_robot")
    extra = await client.post("/v1/alertmanager/robots/ops-chat", json={**BODY, "color": "red"}, headers=auth)
    assert (extra.status_code, extra.json()["code"]) == (422, "invalid_request")
    assert "color" in extra.json()["message"]
    wrong_version = await client.post("/v1/alertmanager/robots/ops-chat", json={**BODY, "version": "3"}, headers=auth)
    assert wrong_version.status_code == 422


async def test_health_and_metrics_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert 'lh_notify_pending_notifications{robot="ops-chat"} 0.0' in metrics.text


def test_the_robots_secrets_never_reach_a_log_line(tmp_path: Path) -> None:
    robots = {
        "trading": {"kind": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=ding-tok-8c1f2e",
                    "secret": "SECsign-5d9a7b"},
        "chat": {"kind": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-key-71e3c0"},
    }  # fmt: skip
    create_app(settings(tmp_path), notify=NotifySettings(webhook_token=TOKEN, robots=robots))
    # what httpx logs of a request, and what a careless line could carry
    line = redact(
        "HTTP Request: POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-key-71e3c0 "
        "https://oapi.dingtalk.com/robot/send?access_token=ding-tok-8c1f2e&timestamp=1&sign=x "
        f"secret SECsign-5d9a7b token {TOKEN}"
    )
    for secret in ("wecom-key-71e3c0", "ding-tok-8c1f2e", "SECsign-5d9a7b", TOKEN):
        assert secret not in line
