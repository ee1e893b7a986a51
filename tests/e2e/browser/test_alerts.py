"""The alerts page in a browser, as a trader uses it: the standalone platform pointed at a real Alertmanager started
here (the repository's alertmanager.yml, its alert-history route posting to the platform), an alert posted to
Alertmanager, then: the trader sees it (and a platform alert they cannot silence, and not another account's alert),
silences it from the page (the form refusing a missing comment and a
duration out of range at their fields first), sees it silenced and the silence listed, ends the silence, sees the
history; with Alertmanager stopped, a refresh shows as failed. What the page shows is checked against Alertmanager's
own API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from playwright.async_api import Page

from tests.chaos.servers import free_port
from tests.e2e.browser.conftest import OfflineContext, log_in
from tests.e2e.flow import create_user, login
from tests.e2e.test_standalone import standalone_process
from tests.support.alertmanager import Alertmanager

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "var" / "screenshots"
TOKEN = "browser-alerts-token-0123456789"
LABELS = {"alertname": "LianghuaDataUpdateLate", "severity": "warning", "team": "data", "job": "data"}
PLATFORM_LABELS = {"alertname": "LianghuaBackupStale", "severity": "warning", "team": "platform"}  # inhibits nothing
SUMMARY = "日线数据更新晚于 18:30"


def am_config(base: str, secrets_dir: Path) -> dict[str, Any]:
    closed = f"http://127.0.0.1:{free_port()}"  # robots, e-mail and the incident tool are not this test's
    text = (ROOT / "prometheus" / "alertmanager.yml").read_text(encoding="utf-8")
    text = text.replace("http://gateway:8000", base)
    text = text.replace("http://notify:8107", closed).replace("http://incident-webhook.example:9000", closed)
    text = text.replace("/etc/alertmanager/secrets", str(secrets_dir))
    config = yaml.safe_load(text)
    config["global"]["smtp_smarthost"] = closed.removeprefix("http://")
    config["global"]["smtp_require_tls"] = False
    config["route"].update({"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"})
    return dict(config)


@pytest_asyncio.fixture(scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, str, Alertmanager]]:
    tmp = tmp_path_factory.mktemp("alerts-page")
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir()
    for name, value in (("notify_webhook_token", TOKEN), ("smtp_password", "x"), ("incident_webhook_token", "x" * 16)):
        (secrets_dir / name).write_text(value)
    am = Alertmanager(tmp / "alertmanager.yml", tmp)
    settings = {"LH_ALERTMANAGER_URL": am.url, "LH_NOTIFY_WEBHOOK_TOKEN": TOKEN}
    (tmp / "platform").mkdir()
    with standalone_process(tmp / "platform", **settings) as (base, password):
        (tmp / "alertmanager.yml").write_text(yaml.safe_dump(am_config(base, secrets_dir)))
        await am.start()
        try:
            yield base, password, am
        finally:
            await am.stop()


async def am_silences(am: Alertmanager) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        return list((await http.get(f"{am.url}/api/v2/silences")).json())


async def refresh_until(page: Page, selector: str, timeout_s: float = 30) -> None:
    """Click the page's refresh until `selector` is there (Alertmanager notifies the history after group_wait)."""
    deadline = time.monotonic() + timeout_s
    while await page.locator(selector).count() == 0:
        assert time.monotonic() < deadline, f"{selector} never appeared"
        await page.click("#alerts-refresh")
        await asyncio.sleep(0.5)


async def test_a_trader_silences_an_alert_from_the_page(
    platform: tuple[str, str, Alertmanager], offline: OfflineContext
) -> None:
    base, password, am = platform
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", password)
        trader_name, trader_password = await create_user(client, admin, "trader")
        labels = {**LABELS, "account": trader_name}  # the trader's account is their username
        posted = await client.post(f"{am.url}/api/v2/alerts", json=[
            {"labels": labels, "annotations": {"summary": SUMMARY}},
            {"labels": PLATFORM_LABELS, "annotations": {"summary": "平台告警"}},
            {"labels": {**LABELS, "alertname": "LianghuaOtherAccount", "account": "someone-else"},
             "annotations": {"summary": "其他账户的告警"}},
        ])  # fmt: skip
        assert posted.status_code == 200, posted.text

    page = await offline.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, base, trader_name, trader_password)
    await page.click("#nav-alerts")
    await page.wait_for_selector("#alerts-view:not(.d-none)")
    row = page.locator(f'#alerts-active tr[data-alertname="{labels["alertname"]}"]')
    await row.wait_for()
    assert await row.locator("[data-severity]").inner_text() == "警告"  # Chinese first
    assert SUMMARY in await row.inner_text()
    assert "team=data" in await row.inner_text() and "job=data" in await row.inner_text()
    assert await row.locator("[data-state]").inner_text() == "告警中"
    assert "更新于" in await page.inner_text("#alerts-status")
    # the platform's alert is shown but only an admin silences it; another account's is not shown at all
    platform_row = page.locator(f'#alerts-active tr[data-alertname="{PLATFORM_LABELS["alertname"]}"]')
    assert "平台告警" in await platform_row.inner_text()
    assert await platform_row.locator('[data-action="silence"]').count() == 0
    assert await page.locator('#alerts-active tr[data-alertname="LianghuaOtherAccount"]').count() == 0
    assert "其他账户的告警" not in await page.inner_text("#alerts-view")
    fired_row = f'#alerts-history tr[data-status="firing"]:has-text("{labels["alertname"]}")'
    await refresh_until(page, fired_row)  # Alertmanager told the history
    fired = await page.locator(fired_row).first.inner_text()
    assert labels["alertname"] in fired and "触发" in fired

    # the form refuses what the API would, at the fields, and sends nothing
    await row.locator('[data-action="silence"]').click()
    await page.wait_for_selector("#alerts-silence-form:not(.d-none)")
    assert labels["alertname"] in await page.inner_text("#alerts-form-title")
    await page.fill("#alerts-duration", "0")
    await page.fill("#alerts-comment", "   ")
    await page.click("#alerts-silence-submit")
    assert await page.locator("#alerts-duration.is-invalid").count() == 1
    assert await page.locator("#alerts-comment.is-invalid").count() == 1
    assert "请填写说明" in await page.inner_text("#alerts-silence-form")
    assert await am_silences(am) == []

    await page.select_option("#alerts-preset", "120")
    assert await page.input_value("#alerts-duration") == "120"
    await page.fill("#alerts-duration", "90")
    await page.fill("#alerts-comment", "数据源延迟，正在处理")
    await page.click("#alerts-silence-submit")
    await page.wait_for_selector("#alerts-done:not(.d-none)")
    assert "已静默" in await page.inner_text("#alerts-done")

    # Alertmanager holds the silence the trader made: their name, their comment, 90 minutes, the alert's labels
    [silence] = await am_silences(am)
    assert silence["createdBy"] == trader_name and silence["comment"] == "数据源延迟，正在处理"
    length = datetime.fromisoformat(silence["endsAt"]) - datetime.fromisoformat(silence["startsAt"])
    assert abs(length - timedelta(minutes=90)) < timedelta(seconds=2)
    assert {m["name"]: m["value"] for m in silence["matchers"]} == labels

    listed = page.locator(f'#alerts-silence-rows tr[data-silence-id="{silence["id"]}"]')
    await listed.wait_for()
    text = await listed.inner_text()
    assert trader_name in text and "数据源延迟，正在处理" in text and "生效" in text
    await refresh_until(page, f'#alerts-active tr[data-alertname="{labels["alertname"]}"] [data-state="silenced"]')
    assert await row.locator("[data-state]").inner_text() == "已静默"
    assert await row.locator('[data-action="silence"]').count() == 0  # silenced: nothing to acknowledge

    # English on request: the same page in the other language
    await page.click("#lang-switch")
    assert await row.locator("[data-state]").inner_text() == "Silenced"
    assert await row.locator("[data-severity]").inner_text() == "Warning"
    assert (await page.inner_text("#alerts-status")).startswith("Updated at")
    assert (await page.inner_text("#alerts-done")).startswith(f"Silenced {labels['alertname']} until")
    assert "Silences" in await page.inner_text("#alerts-view")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "alerts.png"), full_page=True)
    await page.click("#lang-switch")

    # the trader ends their silence: the alert fires again
    await listed.locator('[data-action="expire"]').click()
    await page.wait_for_selector(f'#alerts-silence-rows tr[data-silence-id="{silence["id"]}"]', state="detached")
    assert [s["status"]["state"] for s in await am_silences(am)] == ["expired"]
    assert "静默已结束" in await page.inner_text("#alerts-done")
    await refresh_until(page, f'#alerts-active tr[data-alertname="{labels["alertname"]}"] [data-state="active"]')

    # Alertmanager gone: the refresh shows as failed, not as updated
    await am.stop()
    await page.click("#alerts-refresh")
    await page.wait_for_selector("#alerts-error:not(.d-none)")
    assert "刷新失败" in await page.inner_text("#alerts-error")
    assert "LianghuaOtherAccount" not in await page.inner_text("#alerts-history")  # nor in the history
    assert "Alertmanager 无响应" in await page.inner_text("#alerts-error")
    assert await page.inner_text("#alerts-status") == ""
    assert offline.blocked == []
    assert errors == []


async def test_without_alertmanager_the_page_says_so_and_a_viewer_only_reads(
    standalone: tuple[str, str], offline: OfflineContext
) -> None:
    """`make run` as it comes: no LH_ALERTMANAGER_URL. The page says Alertmanager is not configured (not a failed
    refresh), the history answers (empty), and a viewer is told they only read."""
    base, password = standalone
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", password)
        viewer_name, viewer_password = await create_user(client, admin, "viewer")
    page = await offline.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, base, viewer_name, viewer_password)
    await page.click("#nav-alerts")
    await page.wait_for_selector("#alerts-notice:not(.d-none)")
    assert "未配置 Alertmanager" in await page.inner_text("#alerts-notice")
    assert await page.locator("#alerts-error.d-none").count() == 1  # not configured is not a failure
    assert "更新于" in await page.inner_text("#alerts-status")
    assert await page.inner_text("#alerts-history") == "还没有告警记录"
    assert await page.locator("#alerts-readonly:not(.d-none)").count() == 1
    assert not await page.is_visible("#alerts-active")  # nothing to list without Alertmanager
    assert not await page.is_visible("#alerts-silence-rows")
    await page.click("#lang-switch")
    assert "No Alertmanager is configured" in await page.inner_text("#alerts-notice")
    assert await page.inner_text("#alerts-history") == "No alerts recorded yet"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "alerts-not-configured.png"), full_page=True)
    assert offline.blocked == []
    assert errors == []
