"""DingTalk and WeCom robot messages: what a merged batch of Alertmanager notifications reads like, how a DingTalk
robot's request is signed, and one send. Pure functions apart from `send_robot_message`.

- DingTalk custom robot (加签): the request carries `timestamp` (ms) and `sign` = url-encoded base64 of
  HMAC-SHA256(key=secret, "timestamp\\nsecret"); the robot answers {"errcode": 0} when it took the message.
- WeCom group robot: the key is in the URL; a markdown message of at most 4096 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx

from services.notify.schemas import WebhookNotification
from services.notify.settings import Robot, RobotKind

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Bytes of message text each robot takes (DingTalk's markdown is documented at 20000; WeCom's at 4096).
MAX_TEXT_BYTES = {RobotKind.DINGTALK: 18000, RobotKind.WECOM: 4000}
# Answers that mean "too many messages, try later" (DingTalk 130101: more than 20 a minute; WeCom 45009).
RATE_LIMITED_ERRCODES = {130101, 45009}
MAX_ALERT_LINES = 40  # per message: the rest are counted, not listed


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` parameter of a DingTalk robot request (already url-encoded)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def signed_url(robot: Robot, timestamp_ms: int) -> str:
    url = robot.url.get_secret_value()
    if robot.kind is not RobotKind.DINGTALK:
        return url
    assert robot.secret is not None  # Robot refuses an unsigned DingTalk robot
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}timestamp={timestamp_ms}&sign={dingtalk_sign(robot.secret.get_secret_value(), timestamp_ms)}"


def _runbook(url: str, base: str) -> str:
    if url and base and "://" not in url:
        return base.rstrip("/") + "/" + url.lstrip("/")
    return url


def _when(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%m-%d %H:%M:%S")


def _group_title(n: WebhookNotification) -> str:
    name = n.groupLabels.get("alertname") or n.commonLabels.get("alertname") or "alerts"
    firing = sum(1 for a in n.alerts if a.status == "firing")
    resolved = len(n.alerts) - firing
    severity = n.commonLabels.get("severity", "")
    head = f"🔴 告警 FIRING {firing}" if firing else f"✅ 恢复 RESOLVED {resolved}"
    if firing and resolved:
        head += f", 恢复 RESOLVED {resolved}"
    return f"{head} · {name}" + (f" ({severity})" if severity else "")


_SHOWN_LABELS = ("account", "job", "instance_id", "bridge_id", "rule", "scope", "key", "queue")


def render_markdown(batch: list[WebhookNotification], *, kind: RobotKind, runbook_base: str = "",
                    deferred: int = 0) -> tuple[str, str]:  # fmt: skip
    """(title, markdown text) of one message for a batch of notifications. `deferred`: how many of them waited for
    the robot's rate limit. The text never exceeds the robot's limit: alerts beyond it are counted, never dropped
    without a word."""
    firing = sum(1 for n in batch for a in n.alerts if a.status == "firing")
    resolved = sum(1 for n in batch for a in n.alerts if a.status == "resolved")
    title = f"LiangHua: {firing} firing, {resolved} resolved"
    lines = [f"### LiangHua 告警 · {firing} firing · {resolved} resolved"]
    if len(batch) > 1:
        lines.append(
            f"> {len(batch)} notifications merged" + (f" ({deferred} held by the rate limit)" if deferred else "")
        )
    shown = 0
    hidden = 0
    for n in batch:
        lines.append("")
        lines.append(f"**{_group_title(n)}**")
        for alert in n.alerts:
            if shown >= MAX_ALERT_LINES:
                hidden += 1
                continue
            shown += 1
            summary = alert.annotations.get("summary") or alert.labels.get("alertname", "alert")
            where = ", ".join(f"{k}={alert.labels[k]}" for k in _SHOWN_LABELS if alert.labels.get(k))
            mark = "✅" if alert.status == "resolved" else "•"
            line = f"- {mark} {summary}" + (f" [{where}]" if where else "") + f" · since {_when(alert.startsAt)}"
            runbook = _runbook(alert.annotations.get("runbook_url", ""), runbook_base)
            if runbook:
                line += f" · [runbook]({runbook})" if "://" in runbook else f" · runbook: {runbook}"
            lines.append(line)
        hidden += n.truncatedAlerts
    if hidden:
        lines.append(f"\n… and {hidden} more alert(s): see Alertmanager")
    text = "\n".join(lines)
    limit = MAX_TEXT_BYTES[kind]
    if len(text.encode()) > limit:
        tail = "\n… (message shortened: see Alertmanager for every alert)"
        text = text.encode()[: limit - len(tail.encode())].decode(errors="ignore") + tail
    return title, text


def message_body(kind: RobotKind, title: str, text: str) -> dict[str, object]:
    if kind is RobotKind.DINGTALK:
        return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    return {"msgtype": "markdown", "markdown": {"content": text}}


@dataclass(frozen=True)
class SendResult:
    ok: bool
    retryable: bool
    reason: str  # for the metric and the log: never the URL (it holds the robot's token)


async def send_robot_message(http: httpx.AsyncClient, robot: Robot, body: dict[str, object],
                             timestamp_ms: int) -> SendResult:  # fmt: skip
    try:
        response = await http.post(signed_url(robot, timestamp_ms), json=body)
    except httpx.TimeoutException:
        return SendResult(False, True, "timeout")
    except httpx.TransportError as exc:
        return SendResult(False, True, type(exc).__name__)
    if response.status_code >= 500 or response.status_code == 429:
        return SendResult(False, True, f"http_{response.status_code}")
    if response.status_code >= 400:
        return SendResult(False, False, f"http_{response.status_code}")
    try:
        answer = response.json()
        errcode = int(answer.get("errcode", -1))
    except (ValueError, AttributeError, TypeError):
        return SendResult(False, True, "bad_answer")
    if errcode == 0:
        return SendResult(True, False, "ok")
    return SendResult(False, errcode in RATE_LIMITED_ERRCODES, f"errcode_{errcode}")
