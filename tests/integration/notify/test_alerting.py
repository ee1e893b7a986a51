"""Alerts that reach people, end to end: a real Alertmanager (started here, its own port and data directory, no
cluster) running prometheus/alertmanager.yml's routes, the notify service on a real port, a fake SMTP server, fake
DingTalk and WeCom robots that check the signature, the payload and the rate, and business events from RabbitMQ.

Timings are shortened for the test (group_wait 1 s, the robots' window 3 s where the rate is tested); the routes,
receivers and inhibitions are the repository's."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from shared.platform.bus.amqp import AmqpBus
from shared.platform.events import TradingStateChanged, make_event
from shared.platform.settings import Settings
from tests.chaos.servers import free_port
from tests.conftest import Backing
from tests.support.alertmanager import ALERTMANAGER_INSTALL, Alertmanager
from tests.support.fake_smtp import FakeSmtp

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "notify-it-token-" + "0123456789abcdef"
INCIDENT_TOKEN = "incident-token-0123456789"
SMTP_USER, SMTP_PASSWORD = "lianghua-alerts@example.com", "smtp-password-from-a-file"
DINGTALK = {"trading": "SECtrading-0123456789", "ops": "SECops-0123456789", "rate": "SECrate-0123456789"}
WECOM = ("trading-chat", "ops-chat")
RATE_WINDOW_S = 3.0  # the fake "rate" robot's (and its notify's) window: 20 messages in any 3 s


# --- the fake robots ------------------------------------------------------------------------------------------------


@dataclass
class RobotMessage:
    robot: str
    body: dict[str, Any]
    at: float

    @property
    def text(self) -> str:
        markdown = self.body["markdown"]
        return str(markdown.get("text") or markdown.get("content"))


@dataclass
class FakeRobots:
    """DingTalk custom robots (signed) and WeCom group robots, as strict as the real ones about what this test
    checks: the token or key, the signature and its timestamp, a markdown message, at most 20 messages in a window
    (the real robots: a minute; "rate": RATE_WINDOW_S). Anything wrong is answered as the robot would and listed in
    `problems`."""

    messages: list[RobotMessage] = field(default_factory=list)
    incident: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def of(self, robot: str, containing: str = "") -> list[RobotMessage]:
        return [m for m in self.messages if m.robot == robot and containing in m.text]

    def _over_rate(self, robot: str) -> bool:
        window = RATE_WINDOW_S if robot == "rate" else 60.0
        now = time.monotonic()
        return sum(1 for m in self.messages if m.robot == robot and m.at > now - window) >= 20

    async def dingtalk(self, request: Request) -> JSONResponse:
        robot = request.path_params["robot"]
        q = request.query_params
        if q.get("access_token") != f"token-{robot}":
            self.problems.append(f"{robot}: wrong access_token")
            return JSONResponse({"errcode": 300001, "errmsg": "token is not exist"})
        timestamp = int(q.get("timestamp", "0"))
        if abs(timestamp - time.time() * 1000) > 3600_000:  # DingTalk takes a timestamp within an hour
            self.problems.append(f"{robot}: stale timestamp")
            return JSONResponse({"errcode": 310000, "errmsg": "invalid timestamp"})
        secret = DINGTALK[robot]
        expected = base64.b64encode(
            hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
        ).decode()
        if q.get("sign") != expected:  # query_params are url-decoded: a '+' sent unencoded would read as ' '
            self.problems.append(f"{robot}: bad sign")
            return JSONResponse({"errcode": 310000, "errmsg": "sign not match"})
        body = await request.json()
        markdown = body.get("markdown", {})
        if body.get("msgtype") != "markdown" or not markdown.get("title") or not markdown.get("text"):
            self.problems.append(f"{robot}: not a markdown message: {body}")
            return JSONResponse({"errcode": 40035, "errmsg": "bad message"})
        if self._over_rate(robot):
            self.problems.append(f"{robot}: more than 20 messages in the window")
            return JSONResponse({"errcode": 130101, "errmsg": "send too fast"})
        self.messages.append(RobotMessage(robot, body, time.monotonic()))
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def wecom(self, request: Request) -> JSONResponse:
        robot = request.path_params["robot"]
        if request.query_params.get("key") != f"key-{robot}":
            self.problems.append(f"{robot}: wrong key")
            return JSONResponse({"errcode": 93000, "errmsg": "invalid webhook url"})
        body = await request.json()
        content = body.get("markdown", {}).get("content", "")
        if body.get("msgtype") != "markdown" or not content or len(content.encode()) > 4096:
            self.problems.append(f"{robot}: not a markdown message of at most 4096 bytes")
            return JSONResponse({"errcode": 40058, "errmsg": "bad message"})
        if self._over_rate(robot):
            self.problems.append(f"{robot}: more than 20 messages in the window")
            return JSONResponse({"errcode": 45009, "errmsg": "api freq out of limit"})
        self.messages.append(RobotMessage(robot, body, time.monotonic()))
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def incident_hook(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {INCIDENT_TOKEN}":
            self.problems.append("incident: wrong bearer token")
            return JSONResponse({}, status_code=401)
        self.incident.append(await request.json())
        return JSONResponse({})

    async def history_hook(self, request: Request) -> JSONResponse:
        """Stands in for the gateway's alert history (tests/integration/gateway/test_gateway_alerts.py tests it)."""
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            self.problems.append("alert history: wrong bearer token")
            return JSONResponse({}, status_code=401)
        self.history.append(await request.json())
        return JSONResponse({})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/dingtalk/{robot}/robot/send", self.dingtalk, methods=["POST"]),
            Route("/wecom/{robot}/cgi-bin/webhook/send", self.wecom, methods=["POST"]),
            Route("/incident", self.incident_hook, methods=["POST"]),
            Route("/history", self.history_hook, methods=["POST"]),
        ])  # fmt: skip


# --- processes ------------------------------------------------------------------------------------------------------


class Served:
    """An ASGI app on a real port, in this event loop."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False, lifespan="on"))  # fmt: skip
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        await until(lambda: self.server.started, "server started", timeout_s=20)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


async def until(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.05)


def alertmanager_test_config(repo_config: dict[str, Any], *, notify_url: str, robots_url: str, smtp_port: int,
                secrets_dir: Path) -> dict[str, Any]:  # fmt: skip
    """The repository's alertmanager.yml with this test's addresses, secret files and short timings."""
    text = yaml.safe_dump(repo_config)
    text = text.replace("http://notify:8107", notify_url)
    text = text.replace("http://incident-webhook.example:9000/alerts", f"{robots_url}/incident")
    text = text.replace("http://gateway:8000/api/v1/alerts/webhook", f"{robots_url}/history")
    text = text.replace("/etc/alertmanager/secrets", str(secrets_dir))
    config = yaml.safe_load(text)
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{smtp_port}"
    config["global"]["smtp_require_tls"] = False
    config["route"].update({"group_wait": "1s", "group_interval": "2s", "repeat_interval": "1h"})
    return config


@dataclass
class Stack:
    robots: FakeRobots
    smtp: FakeSmtp
    alertmanager: Alertmanager
    notify: FastAPI
    bus: AmqpBus
    robots_url: str

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{self.alertmanager.url}/api/v2/alerts", json=alerts)
            assert answer.status_code == 200, answer.text

    async def active_alerts(self, alertname: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{self.alertmanager.url}/api/v2/alerts",
                                    params={"filter": f'alertname="{alertname}"', "active": "true"})  # fmt: skip
            return list(answer.json()) if answer.status_code == 200 else []


@pytest.fixture(scope="module")
async def stack(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("alerting")
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "notify_webhook_token").write_text(TOKEN)
    (secrets_dir / "smtp_password").write_text(SMTP_PASSWORD)
    (secrets_dir / "incident_webhook_token").write_text(INCIDENT_TOKEN)

    smtp = FakeSmtp(SMTP_USER, SMTP_PASSWORD)
    await smtp.start()
    robots = FakeRobots()
    robots_server = Served(robots.app())
    await robots_server.start()

    am_port_holder = free_port()  # Alertmanager's port is chosen before notify needs its URL
    robot_config = {
        **{name: {"kind": "dingtalk", "url": f"{robots_server.url}/dingtalk/{name}/robot/send?access_token=token-{name}",
                  "secret": DINGTALK[name]} for name in ("trading", "ops")},
        **{name: {"kind": "wecom", "url": f"{robots_server.url}/wecom/{name}/cgi-bin/webhook/send?key=key-{name}"}
           for name in WECOM},
    }  # fmt: skip
    notify_settings = NotifySettings(
        webhook_token=TOKEN, robots=robot_config, alertmanager_url=f"http://127.0.0.1:{am_port_holder}",
        merge_window_s=1.0, retry_base_s=0.2, retry_max_s=1.0,
    )  # fmt: skip
    notify = create_app(backing.settings("notify"), notify=notify_settings)
    notify_server = Served(notify)
    await notify_server.start()

    repo_config = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text(encoding="utf-8"))
    config_path = tmp / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(alertmanager_test_config(repo_config, notify_url=notify_server.url,
                                                      robots_url=robots_server.url, smtp_port=smtp.port,
                                                      secrets_dir=secrets_dir)))  # fmt: skip
    amtool = shutil.which("amtool")
    assert amtool is not None, ALERTMANAGER_INSTALL
    checked = await asyncio.to_thread(
        subprocess.run, [amtool, "check-config", str(config_path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp / "am-data").mkdir()
    alertmanager = Alertmanager(config_path, tmp / "am-data")
    alertmanager.port = am_port_holder
    await alertmanager.start()

    bus = AmqpBus(backing.amqp_url, namespace=backing.settings("notify").bus_namespace, source="test")
    await bus.start()
    try:
        yield Stack(robots, smtp, alertmanager, notify, bus, robots_server.url)
    finally:
        await bus.close()
        await alertmanager.stop()
        await notify_server.stop()
        await robots_server.stop()
        await smtp.stop()


def alert(name: str, severity: str, team: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, "team": team, **labels},
            "annotations": {"summary": f"{name} summary", "runbook_url": f"docs/operations.md#{name.lower()}"}}  # fmt: skip


# --- the tests ------------------------------------------------------------------------------------------------------


async def test_a_critical_trading_alert_reaches_dingtalk_signed_the_desks_email_and_the_incident_webhook(
    stack: Stack,
) -> None:
    await stack.post_alerts([alert("LianghuaTestPage", "critical", "trading", account="acct-1")])
    await until(lambda: stack.robots.of("trading", "LianghuaTestPage"), "the DingTalk trading robot's message")
    await until(lambda: any("LianghuaTestPage" in m.message["Subject"] for m in stack.smtp.messages), "the email")
    await until(lambda: any(n["commonLabels"].get("alertname") == "LianghuaTestPage" for n in stack.robots.incident),
                "the incident webhook")  # fmt: skip

    (message,) = stack.robots.of("trading", "LianghuaTestPage")
    assert "LianghuaTestPage summary [account=acct-1]" in message.text
    assert message.body["markdown"]["title"] == "LiangHua: 1 firing, 0 resolved"
    (mail,) = [m for m in stack.smtp.messages if "LianghuaTestPage" in m.message["Subject"]]
    assert mail.rcpt_to == ["trading-desk@example.com"]
    assert mail.mail_from == "lianghua-alerts@example.com"
    assert mail.authenticated_as == SMTP_USER  # the password came from the secrets file
    (hook,) = [n for n in stack.robots.incident if n["commonLabels"].get("alertname") == "LianghuaTestPage"]
    assert hook["version"] == "4" and hook["status"] == "firing"
    # a critical trading alert is not also sent to the chat robots
    assert not stack.robots.of("trading-chat", "LianghuaTestPage") and not stack.robots.of("ops", "LianghuaTestPage")
    assert stack.robots.problems == []


async def test_a_trading_warning_goes_to_the_wecom_chat_robot_only(stack: Stack) -> None:
    await stack.post_alerts([alert("LianghuaTestChat", "warning", "trading", account="acct-2")])
    await until(lambda: stack.robots.of("trading-chat", "LianghuaTestChat"), "the WeCom trading-chat message")
    (message,) = stack.robots.of("trading-chat", "LianghuaTestChat")
    assert message.body["msgtype"] == "markdown"
    assert "LianghuaTestChat summary [account=acct-2]" in message.text
    assert not stack.robots.of("trading", "LianghuaTestChat")
    assert not any("LianghuaTestChat" in m.message["Subject"] for m in stack.smtp.messages)
    assert not any(n["commonLabels"].get("alertname") == "LianghuaTestChat" for n in stack.robots.incident)
    assert stack.robots.problems == []


async def test_a_storm_of_50_alerts_becomes_a_few_messages_that_count_every_alert(stack: Stack) -> None:
    # 50 accounts: 50 groups in Alertmanager (it groups by account), flushed together; notify merges them
    await stack.post_alerts([alert("LianghuaTestStorm", "critical", "platform", account=f"s{i:02d}")
                             for i in range(50)])  # fmt: skip

    def counted() -> int:
        heads = [re.search(r"### LiangHua 告警 · (\d+) firing", m.text) for m in stack.robots.of("ops", "TestStorm")]
        return sum(int(h.group(1)) for h in heads if h)

    await until(lambda: counted() >= 50, "all 50 storm alerts at the ops robot")
    await asyncio.sleep(2.5)  # anything Alertmanager or notify would still send for the storm
    assert counted() == 50
    assert len(stack.robots.of("ops", "TestStorm")) <= 3
    assert stack.robots.problems == []


async def test_the_21st_message_in_a_window_is_deferred_and_merged_never_dropped(stack: Stack) -> None:
    # A notify of its own whose "rate" robot allows 20 messages in any RATE_WINDOW_S; the fake robot refuses a 21st.
    base = stack.robots_url
    settings = NotifySettings(
        webhook_token=TOKEN, merge_window_s=0.0, rate_limit=20, rate_window_s=RATE_WINDOW_S,
        robots={"rate": {"kind": "dingtalk", "url": f"{base}/dingtalk/rate/robot/send?access_token=token-rate",
                         "secret": DINGTALK["rate"]}},
    )  # fmt: skip
    app = create_app(Settings(log_json=False), notify=settings)
    body = {"version": "4", "groupKey": "k", "status": "firing", "receiver": "r", "alerts": []}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://n") as http:

        async def post(name: str) -> None:
            answer = await http.post("/v1/alertmanager/robots/rate", headers=auth,
                                         json={**body, "groupLabels": {"alertname": name}})  # fmt: skip
            assert answer.status_code == 200, answer.text

        for i in range(1, 21):
            await post(f"LianghuaRate{i:02d}")
            await until(lambda i=i: len(stack.robots.of("rate")) == i, f"message {i}")
        await post("LianghuaRate21")
        await post("LianghuaRate22")
        await until(lambda: len(stack.robots.of("rate")) == 21, "the deferred message", timeout_s=RATE_WINDOW_S * 4)
        deferred = app.state.metrics_registry.get_sample_value(
            "lh_notify_notifications_deferred_total", {"robot": "rate"}
        )
    last = stack.robots.of("rate")[-1]
    # both held notifications in the one message after the window (and counted: 2 deferred)
    assert "LianghuaRate21" in last.text and "LianghuaRate22" in last.text
    assert "2 notifications merged (2 held by the rate limit)" in last.text
    assert deferred == 2
    assert stack.robots.problems == []  # the robot never saw a 21st message inside its window


async def test_a_business_event_from_rabbitmq_becomes_an_alertmanager_alert_and_its_clearing_resolves_it(
    stack: Stack,
) -> None:
    def change(from_state: str, to_state: str, key: str) -> Any:
        return make_event("risk.trading_state.changed", TradingStateChanged(
            scope="account", key=key, from_state=from_state, to_state=to_state, reason="daily loss over its limit",
            by="risk:drawdown", at=datetime.now(UTC)), source="risk")  # fmt: skip

    await stack.bus.publish(change("active", "halted", "acct-biz"))
    found: list[dict[str, Any]] = []

    async def poll() -> None:
        for _ in range(300):
            found[:] = [a for a in await stack.active_alerts("LianghuaTradingHalted")
                        if a["labels"].get("account") == "acct-biz"]  # fmt: skip
            if found:
                return
            await asyncio.sleep(0.1)

    await poll()
    assert found, "the halt never reached Alertmanager"
    (halted,) = found
    assert halted["labels"] == {"alertname": "LianghuaTradingHalted", "severity": "critical", "team": "trading",
                                "scope": "account", "key": "acct-biz", "account": "acct-biz"}  # fmt: skip
    assert halted["annotations"]["runbook_url"] == "docs/operations.md#lianghuatradinghalted"
    # routed like any critical trading alert: the DingTalk trading robot
    await until(lambda: stack.robots.of("trading", "acct-biz"), "the halt at the trading robot")

    await stack.bus.publish(change("halted", "active", "acct-biz"))
    for _ in range(300):
        still = [
            a for a in await stack.active_alerts("LianghuaTradingHalted") if a["labels"].get("account") == "acct-biz"
        ]
        if not still:
            break
        await asyncio.sleep(0.1)
    assert not still, "the halt was not resolved"


async def test_an_instances_halt_mutes_none_of_its_accounts_warnings_an_accounts_halt_does(stack: Stack) -> None:
    """The repository's inhibition: the account's halt mutes its risk warnings; an instance's halt, which carries
    its account's label too, does not (Alertmanager's own status of the warning, `inhibitedBy`)."""
    now = datetime.now(UTC)
    base = {"severity": "critical", "team": "trading", "account": "acct-inh"}
    warning = {"alertname": "LianghuaRiskWarning", "severity": "warning", "team": "trading", "account": "acct-inh",
               "rule": "position_limit", "code": "near_position_limit"}  # fmt: skip
    instance_halt = {"alertname": "LianghuaTradingHalted", **base, "scope": "instance",
                     "key": "3f2b8c1d9e4a4b7c8d6e5f4a3b2c1d0e"}  # fmt: skip
    account_halt = {"alertname": "LianghuaTradingHalted", **base, "scope": "account", "key": "acct-inh"}

    async def post(*label_sets: dict[str, str]) -> None:
        alerts = [{"labels": labels, "annotations": {"summary": "s"}, "startsAt": now.isoformat(),
                   "endsAt": (now + timedelta(hours=1)).isoformat()} for labels in label_sets]  # fmt: skip
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{stack.alertmanager.url}/api/v2/alerts", json=alerts)
            assert answer.status_code == 200, answer.text

    async def warning_inhibited_by() -> list[str] | None:
        for alert in await stack.active_alerts("LianghuaRiskWarning"):
            if alert["labels"].get("account") == "acct-inh":
                return list(alert["status"]["inhibitedBy"])
        return None

    await post(warning, instance_halt)
    for _ in range(50):
        if await warning_inhibited_by() is not None and any(
            a["labels"].get("scope") == "instance" for a in await stack.active_alerts("LianghuaTradingHalted")
        ):
            break
        await asyncio.sleep(0.1)
    assert await warning_inhibited_by() == []
    await post(account_halt)
    for _ in range(50):
        if await warning_inhibited_by():
            break
        await asyncio.sleep(0.1)
    assert len(await warning_inhibited_by() or []) == 1


async def test_with_alertmanager_down_a_business_event_is_retried_and_arrives_when_it_is_back(stack: Stack) -> None:
    failures_before = stack.notify.state.metrics_registry.get_sample_value("lh_notify_alertmanager_post_failures_total")
    await stack.alertmanager.stop()
    try:
        event = make_event("risk.trading_state.changed", TradingStateChanged(
            scope="account", key="acct-down", from_state="active", to_state="halted", reason="kill switch",
            by="admin", at=datetime.now(UTC)), source="risk")  # fmt: skip
        await stack.bus.publish(event)
        registry = stack.notify.state.metrics_registry
        await until(lambda: registry.get_sample_value("lh_notify_alertmanager_post_failures_total")
                    >= (failures_before or 0) + 2, "notify retrying")  # fmt: skip
    finally:
        await stack.alertmanager.start()
    for _ in range(300):
        found = [
            a for a in await stack.active_alerts("LianghuaTradingHalted") if a["labels"].get("account") == "acct-down"
        ]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found, "the event held while Alertmanager was down never arrived"
    assert found[0]["annotations"]["summary"] == "Trading is halted for account acct-down (by admin: kill switch)"


async def test_the_fake_robots_refuse_a_bad_signature() -> None:
    """The fake DingTalk robot's check can fail: a sign made with another secret is refused."""
    robots = FakeRobots()
    app = robots.app()
    timestamp = int(time.time() * 1000)
    wrong = base64.b64encode(hmac.new(b"SECwrong", f"{timestamp}\nSECwrong".encode(), hashlib.sha256).digest())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://robots") as client:
        answer = await client.post("/dingtalk/trading/robot/send",
                             params={"access_token": "token-trading", "timestamp": timestamp, "sign": wrong.decode()},
                             json={"msgtype": "markdown", "markdown": {"title": "t", "text": "x"}})  # fmt: skip
    assert json.loads(answer.text)["errcode"] == 310000
    assert robots.problems == ["trading: bad sign"] and robots.messages == []
