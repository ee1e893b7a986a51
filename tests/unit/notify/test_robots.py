"""Robot messages: the DingTalk signature, what a merged batch reads like, and how a robot's answer is judged."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from services.notify.robots import (
    MAX_TEXT_BYTES,
    dingtalk_sign,
    message_body,
    render_markdown,
    send_robot_message,
    signed_url,
)
from services.notify.schemas import WebhookNotification
from services.notify.settings import Robot, RobotKind


def notification(name: str, n: int, *, status: str = "firing", account: str = "acct-1") -> WebhookNotification:
    at = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)  # 09:30 Asia/Shanghai
    return WebhookNotification.model_validate({
        "version": "4", "groupKey": f"{{}}:{{alertname=\"{name}\"}}", "status": status, "receiver": "trading-page",
        "groupLabels": {"alertname": name}, "commonLabels": {"alertname": name, "severity": "critical"},
        "alerts": [
            {"status": status, "labels": {"alertname": name, "severity": "critical", "account": f"{account}-{i}"},
             "annotations": {"summary": f"{name} number {i}", "runbook_url": f"docs/operations.md#{name.lower()}"},
             "startsAt": at.isoformat(), "endsAt": "0001-01-01T00:00:00Z"}
            for i in range(n)
        ],
    })  # fmt: skip


def test_dingtalk_sign_is_the_documented_hmac() -> None:
    # printf '1700000000000\nSECabc123' | openssl dgst -sha256 -hmac 'SECabc123' -binary | base64
    #   -> N5P09a4+p1AMJIJWnIvQd2Yxw9+fu/oEBnPrjCcsLXk=, url-encoded (+ -> %2B, / -> %2F, = -> %3D)
    assert dingtalk_sign("SECabc123", 1700000000000) == "N5P09a4%2Bp1AMJIJWnIvQd2Yxw9%2Bfu%2FoEBnPrjCcsLXk%3D"


def test_a_dingtalk_robot_is_called_with_timestamp_and_sign_and_a_wecom_robot_as_configured() -> None:
    ding = Robot(kind=RobotKind.DINGTALK, url=SecretStr("https://oapi.dingtalk.com/robot/send?access_token=t0k"),
                 secret=SecretStr("SECabc123"))  # fmt: skip
    assert signed_url(ding, 1700000000000) == (
        "https://oapi.dingtalk.com/robot/send?access_token=t0k&timestamp=1700000000000"
        "&sign=N5P09a4%2Bp1AMJIJWnIvQd2Yxw9%2Bfu%2FoEBnPrjCcsLXk%3D"
    )
    wecom = Robot(kind=RobotKind.WECOM, url=SecretStr("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1"))
    assert signed_url(wecom, 1700000000000) == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1"


def test_robots_refuse_an_unsigned_dingtalk_robot_and_a_url_that_is_not_one() -> None:
    with pytest.raises(ValueError, match="signing secret"):
        Robot(kind=RobotKind.DINGTALK, url=SecretStr("https://oapi.dingtalk.com/robot/send?access_token=t"))
    with pytest.raises(ValueError, match="webhook address"):
        Robot(kind=RobotKind.WECOM, url=SecretStr("qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"))


def test_a_merged_batch_lists_every_alert_with_its_account_time_and_runbook() -> None:
    batch = [notification("LianghuaTradingHalted", 2), notification("LianghuaRiskBreach", 1, status="resolved")]
    title, text = render_markdown(batch, kind=RobotKind.DINGTALK, runbook_base="https://git.example/lh/blob/main",
                                  deferred=1)  # fmt: skip
    assert title == "LiangHua: 2 firing, 1 resolved"
    assert "2 notifications merged (1 held by the rate limit)" in text
    assert "**🔴 告警 FIRING 2 · LianghuaTradingHalted (critical)**" in text
    assert "**✅ 恢复 RESOLVED 1 · LianghuaRiskBreach (critical)**" in text
    # 01:30 UTC is 09:30 in Shanghai
    assert (
        "- • LianghuaTradingHalted number 1 [account=acct-1-1] · since 12-07 09:30:00 · "
        "[runbook](https://git.example/lh/blob/main/docs/operations.md#lianghuatradinghalted)"
    ) in text
    assert "- ✅ LianghuaRiskBreach number 0 [account=acct-1-0]" in text


def test_a_storm_is_shortened_to_the_robots_limit_and_says_how_many_are_not_listed() -> None:
    batch = [notification(f"LianghuaStorm{g}", 50) for g in range(4)]  # 200 alerts
    _, text = render_markdown(batch, kind=RobotKind.WECOM)
    assert len(text.encode()) <= MAX_TEXT_BYTES[RobotKind.WECOM]
    assert "see Alertmanager" in text
    _, ding = render_markdown(batch, kind=RobotKind.DINGTALK)
    # 40 alerts are listed, the other 200 - 40 = 160 counted
    assert "… and 160 more alert(s): see Alertmanager" in ding
    assert ding.count("\n- • ") == 40


def test_message_bodies_are_the_robots_markdown_messages() -> None:
    assert message_body(RobotKind.DINGTALK, "t", "x") == {
        "msgtype": "markdown",
        "markdown": {"title": "t", "text": "x"},
    }
    assert message_body(RobotKind.WECOM, "t", "x") == {"msgtype": "markdown", "markdown": {"content": "x"}}


@pytest.mark.parametrize(
    ("status", "answer", "ok", "retryable", "reason"),
    [
        (200, {"errcode": 0, "errmsg": "ok"}, True, False, "ok"),
        (200, {"errcode": 130101, "errmsg": "send too fast"}, False, True, "errcode_130101"),
        (200, {"errcode": 45009, "errmsg": "api freq out of limit"}, False, True, "errcode_45009"),
        (200, {"errcode": 310000, "errmsg": "sign not match"}, False, False, "errcode_310000"),
        (503, {}, False, True, "http_503"),
        (404, {}, False, False, "http_404"),
    ],
    ids=["taken", "dingtalk-too-fast", "wecom-too-fast", "bad-sign", "server-error", "not-found"],
)
async def test_a_robots_answer_is_judged_taken_retryable_or_not(
    status: int, answer: dict[str, object], ok: bool, retryable: bool, reason: str
) -> None:
    robot = Robot(kind=RobotKind.WECOM, url=SecretStr("https://robot.test/send?key=k"))
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=answer))
    async with httpx.AsyncClient(transport=transport) as http:
        result = await send_robot_message(http, robot, {"msgtype": "markdown"}, 1)
    assert (result.ok, result.retryable, result.reason) == (ok, retryable, reason)


async def test_a_timeout_is_retryable_and_the_reason_never_carries_the_url() -> None:
    robot = Robot(kind=RobotKind.WECOM, url=SecretStr("https://robot.test/send?key=very-secret-key"))

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(timeout)) as http:
        result = await send_robot_message(http, robot, {}, 1)
    assert (result.ok, result.retryable, result.reason) == (False, True, "timeout")
    assert "very-secret-key" not in repr(robot)
