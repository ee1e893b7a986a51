"""The Risk and Data pages in a browser, against a standalone platform: an admin changes the global rule set from the
form (each change a new version in the history, a refused one marked at its field and stored nowhere), halts a
trader's account with the kill switch (the trader's order is refused while halted, taken once resumed) and reads the
limit utilisation the trader's order left; on the Data page the admin runs the daily update and a quality check whose
report's findings include a defect planted in the store; a viewer reads both pages without a control to act with.
Every figure is checked against the API (the second witness) or worked out here."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import ConsoleMessage, Page, Route

from tests.e2e.browser.conftest import OfflineContext, log_in
from tests.e2e.flow import Session, create_user, login, tradable_main_board_stock
from tests.e2e.test_standalone import standalone_process

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(__file__).resolve().parents[3] / "var" / "screenshots"
PLANTED_DAY = "2024-06-05"  # a trading day of the demo market


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    work = tmp_path_factory.mktemp("risk-data-ui")
    with standalone_process(work) as (base, password):
        yield base, password, work


@pytest_asyncio.fixture(scope="module")
async def people(platform: tuple[str, str, Path]) -> AsyncIterator[dict[str, Any]]:
    base, admin_password, work = platform
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", admin_password)
        trader_name, trader_password = await create_user(client, admin, "trader")
        viewer_name, viewer_password = await create_user(client, admin, "viewer")
        trader = await login(client, base, trader_name, trader_password)
    yield {
        "base": base,
        "work": work,
        "admin": ("admin", admin_password),
        "admin_api": admin,
        "trader": (trader_name, trader_password),
        "trader_api": trader,
        "viewer": (viewer_name, viewer_password),
    }


async def _page(offline: OfflineContext, base: str, who: tuple[str, str], nav: str, errors: list[str]) -> Page:
    page = await offline.context.new_page()

    def console(message: ConsoleMessage) -> None:
        # a refusal (422) or an outage (503) the test makes is logged by the browser as a failed load: not a fault
        # of the page
        if message.type == "error" and "status of 422" not in message.text and "status of 503" not in message.text:
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, base, *who)
    await page.click(f"#nav-{nav}")
    await page.wait_for_selector(f"#{nav}-view:not(.d-none)")
    assert await page.is_hidden("#desk-view")
    return page


async def _get(client: httpx.AsyncClient, s: Session, path: str, **params: str) -> Any:
    answer = await client.get(s.base_url + path, params=params, headers=s.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _order(client: httpx.AsyncClient, trader: Session, stock: dict[str, Any]) -> httpx.Response:
    body = {
        "client_order_id": f"ui-{secrets.token_hex(6)}",
        "ts_code": stock["ts_code"],
        "side": "buy",
        "order_type": "limit",
        "qty": 100,
        "price": stock["last_close"],
    }
    return await client.post(trader.base_url + "/api/v1/orders", json=body, headers=trader.headers)


async def _set_state(page: Page, key: str, state: str, reason: str) -> None:
    await page.select_option("#risk-kill-scope", "account")
    await page.fill("#risk-kill-key", key)
    await page.select_option("#risk-kill-state", state)
    await page.fill("#risk-kill-reason", reason)
    await page.click("#risk-kill-submit")
    # nothing is sent before the confirmation, which names the account, the state and the reason
    await page.wait_for_selector("#risk-kill-confirm:not(.d-none)")
    confirm = await page.inner_text("#risk-kill-confirm-text")
    assert key in confirm and reason in confirm
    await page.evaluate("() => { document.getElementById('risk-kill-result').textContent = ''; }")
    await page.click("#risk-kill-yes")
    await page.wait_for_function("() => document.getElementById('risk-kill-result').textContent !== ''")
    result = page.locator("#risk-kill-result")
    assert "text-success" in (await result.get_attribute("class") or ""), await result.inner_text()


async def test_an_admin_edits_rules_halts_and_resumes_an_account_and_reads_its_utilisation(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    errors: list[str] = []
    base, admin, trader = people["base"], people["admin_api"], people["trader_api"]
    trader_name = people["trader"][0]
    page = await _page(offline, base, people["admin"], "risk", errors)
    await page.wait_for_selector("#risk-rule-sets tr")
    assert await page.is_visible("#risk-rule-edit") and await page.is_visible("#risk-kill")
    assert await page.get_attribute("#risk-alerts-link", "href") == "#alerts"

    # a first global rule set, then a second: versions 1 and 2, newest first, with who and why
    await page.fill("#risk-rule-rules", '{"order_limits": {"max_order_value": "1000000"}}')
    await page.fill("#risk-rule-reason", "platform default")
    await page.click("#risk-rule-submit")
    await page.wait_for_selector("#risk-rule-history-table tr[data-version='1']")
    await page.fill("#risk-rule-rules", '{"order_limits": {"max_order_value": "2000000"}}')
    await page.fill("#risk-rule-reason", "raised by the committee")
    await page.click("#risk-rule-submit")
    await page.wait_for_selector("#risk-rule-history-table tr[data-version='2']")
    current = page.locator("#risk-rule-sets tr[data-scope='global']")
    assert await current.get_attribute("data-version") == "2"
    assert "2000000" in await current.inner_text() and "raised by the committee" in await current.inner_text()
    versions = await page.locator("#risk-rule-history-table tbody tr").evaluate_all(
        "(rows) => rows.map((r) => [r.dataset.version, r.innerText])"
    )
    assert [v for v, _ in versions] == ["2", "1"]
    assert "platform default" in versions[1][1] and "admin" in versions[1][1] and "1000000" in versions[1][1]

    # refused: a negative limit (by the API, marked on the rules box) and no reason (at the field, not sent)
    await page.fill("#risk-rule-rules", '{"order_limits": {"max_order_value": "-5"}}')
    await page.fill("#risk-rule-reason", "oops")
    await page.click("#risk-rule-submit")
    await page.wait_for_selector("#risk-rule-rules.is-invalid")
    assert "rules.order_limits.max_order_value" in await page.inner_text("#risk-rule-rules-error")
    assert "invalid_request" in await page.inner_text("#risk-rule-result")
    await page.fill("#risk-rule-reason", "  ")
    await page.click("#risk-rule-submit")
    await page.wait_for_selector("#risk-rule-reason.is-invalid")
    async with httpx.AsyncClient(timeout=30) as client:
        history = await _get(client, admin, "/api/v1/risk/rules/global/history")
        assert [(v["version"], v["reason"], v["set_by"]) for v in history] == [
            (2, "raised by the committee", "admin"),
            (1, "platform default", "admin"),
        ]
        assert history[0]["body"] == {"order_limits": {"max_order_value": "2000000"}}

        # the kill switch: halted, the trader's order is refused for it
        stock = await tradable_main_board_stock(client, trader)
        await _set_state(page, trader_name, "halted", "runaway algo")
        await page.wait_for_selector(f"#risk-states tr[data-key='{trader_name}'] [data-state='halted']")
        assert "runaway algo" in await page.inner_text(f"#risk-states tr[data-key='{trader_name}']")
        refused = await _order(client, trader, stock)
        assert refused.status_code == 422, refused.text
        assert "trading_halted" in [r["code"] for r in refused.json()["decision"]["reasons"]]
        states = await _get(client, admin, "/api/v1/risk/trading-states")
        assert [(s["key"], s["state"]) for s in states["states"]] == [(trader_name, "halted")]

        # resumed: the account is active again (who resumed it and why shown) and the same order passes
        await _set_state(page, trader_name, "active", "fixed")
        await page.wait_for_selector(f"#risk-states tr[data-key='{trader_name}'] [data-state='active']")
        assert "fixed" in await page.inner_text(f"#risk-states tr[data-key='{trader_name}']")
        await page.wait_for_function("() => document.querySelectorAll('#risk-state-history li').length === 2")
        changes = page.locator("#risk-state-history li")
        assert "fixed" in await changes.nth(0).inner_text() and "runaway algo" in await changes.nth(1).inner_text()
        taken = await _order(client, trader, stock)
        assert taken.status_code == 201, taken.text

    # the order used 100 x last_close of the 2,000,000 CNY limit: that share, as a percentage to 2 decimals
    share = (100 * Decimal(stock["last_close"]) * 100 / Decimal(2_000_000)).quantize(Decimal("0.01"))
    await page.click("#risk-refresh")
    row = page.locator(f"#risk-util tr[data-account='{trader_name}'][data-code='max_order_value']")
    await row.wait_for()
    assert f"{share}%" in await row.inner_text()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "risk.png", full_page=True)
    assert offline.blocked == []
    assert errors == []


def _plant_zero_volume(work: Path) -> str:
    """A bar of PLANTED_DAY with its volume set to 0 in the data service's own store: the quality check's
    zero_volume finding (the stock was not suspended). Returns its code."""
    with sqlite3.connect(work / "data.db", timeout=30) as db:
        (code,) = db.execute(
            "SELECT ts_code FROM daily_bars WHERE trade_date = ? AND vol > 0 ORDER BY ts_code LIMIT 1", (PLANTED_DAY,)
        ).fetchone()
        db.execute("UPDATE daily_bars SET vol = 0 WHERE ts_code = ? AND trade_date = ?", (code, PLANTED_DAY))
    return str(code)


async def test_an_admin_runs_the_update_and_a_quality_check_and_reads_its_findings(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    errors: list[str] = []
    base, admin = people["base"], people["admin_api"]
    page = await _page(offline, base, people["admin"], "data", errors)
    async with httpx.AsyncClient(timeout=30) as client:
        status = await _get(client, admin, "/api/v1/data/status")
    await page.wait_for_function("() => document.getElementById('data-complete').textContent !== ''")
    assert await page.inner_text("#data-complete") == status["complete_through"]
    assert await page.inner_text("#data-latest") == status["latest_trading_day"]
    assert await page.get_attribute("#data-lag", "data-lag") == str(status["lag_days"])
    assert await page.inner_text("#data-feed-mode") == "回放"  # the standalone platform replays the demo market
    # the snapshot's time on the exchange's clock: the replayed session's day, in Shanghai
    replayed = datetime.fromisoformat(status["feed"]["latest_snapshot_at"]).astimezone(ZoneInfo("Asia/Shanghai"))
    latest = await page.inner_text("#data-feed-latest")
    assert latest.startswith(f"{replayed:%Y-%m-%d} ") and latest.endswith("(UTC+8)")

    # the daily update, started from the page, is listed and ends succeeded
    await page.click("#data-run-update")
    await page.wait_for_selector("#data-runs tr[data-run] [data-status='succeeded']", timeout=60_000)
    async with httpx.AsyncClient(timeout=30) as client:
        runs = await _get(client, admin, "/api/v1/ingest/runs")
    row = page.locator(f"#data-runs tr[data-run='{runs[0]['run_id']}']")
    assert "每日更新" in await row.inner_text() and "100.00%" in await row.inner_text()

    # a quality check over the planted day's week: the report opens with the finding
    code = _plant_zero_volume(people["work"])
    await page.fill("#data-quality-start", "2024-06-03")
    await page.fill("#data-quality-end", "2024-06-07")
    await page.click("#data-quality-submit")
    await page.wait_for_selector("#data-report-findings tr[data-finding]")
    async with httpx.AsyncClient(timeout=30) as client:
        reports = await _get(client, admin, "/api/v1/quality/reports")
        report = await _get(client, admin, f"/api/v1/quality/reports/{reports[0]['run_id']}")
    assert report["counts"]["zero_volume"] >= 1
    planted = [i for i in report["items"] if i["rule"] == "zero_volume" and i["ts_code"] == code]
    assert [i["trade_date"] for i in planted] == [PLANTED_DAY]
    rows = await page.locator("#data-report-findings tbody tr").all_inner_texts()
    assert len(rows) == len(report["items"])
    assert any(code in r and PLANTED_DAY in r and "zero_volume" in r for r in rows)
    count = await page.inner_text("#data-report-counts tr[data-rule='zero_volume']")
    assert count.split()[-1] == str(report["counts"]["zero_volume"])
    assert await page.locator(f"#data-reports tr[data-report='{report['run_id']}']").count() == 1
    assert "null" not in await page.inner_text("#data-report")

    # refused at the field: an end before the start is never sent
    await page.fill("#data-quality-end", "2024-06-01")
    await page.click("#data-quality-submit")
    await page.wait_for_selector("#data-quality-end.is-invalid")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "data.png", full_page=True)
    assert offline.blocked == []
    assert errors == []


async def test_a_viewer_reads_both_pages_without_controls_and_in_english(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    errors: list[str] = []
    admin = people["admin_api"]
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"rules": {"codes": {"refuse_st": True}}, "reason": "no ST stocks"}
        put = await client.put(admin.base_url + "/api/v1/risk/rules/global", json=body, headers=admin.headers)
        assert put.status_code == 201, put.text
    page = await _page(offline, people["base"], people["viewer"], "risk", errors)
    await page.wait_for_selector("#risk-rule-sets tr[data-scope='global']")  # the admin's global set, read
    assert "no ST stocks" in await page.inner_text("#risk-rule-sets tr[data-scope='global']")
    for hidden in ("#risk-rule-edit", "#risk-kill", "#risk-stop-form"):
        assert await page.is_hidden(hidden), hidden
    assert await page.is_visible("#risk-readonly")
    assert await page.locator("#risk-rule-sets button", has_text="编辑").count() == 0
    assert await page.locator("#risk-stops button").count() == 0
    await page.click("#lang-switch")
    assert await page.inner_text("#risk-rules-card .card-header") == "Risk rule sets"
    assert (await page.inner_text("#risk-updated")).startswith("Updated ")
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "risk-viewer-phone.png", full_page=True)

    await page.click("#nav-toggler")  # at phone width the pages are folded behind the toggler
    await page.click("#nav-data")
    await page.wait_for_selector("#data-view:not(.d-none)")
    await page.wait_for_function("() => document.getElementById('data-complete').textContent !== ''")
    assert await page.is_hidden("#data-run-update") and await page.is_hidden("#data-quality-form")
    assert await page.inner_text("#data-runs-admin-only") == "Ingest runs are shown to admins only."
    assert await page.is_hidden("#data-error")  # a viewer's page does not ask for the admins' runs
    shown = await page.inner_text("#data-complete")

    # the status cannot be read: the refresh says it failed, and the figures it showed before stay
    async def outage(route: Route) -> None:
        await route.fulfill(status=503, json={"code": "database_unavailable", "message": "down for the test"})

    await page.route("**/api/v1/data/status", outage)
    await page.click("#data-refresh")
    await page.wait_for_selector("#data-error:not(.d-none)")
    assert "Refresh failed" in await page.inner_text("#data-error")
    assert "database_unavailable" in await page.inner_text("#data-error")
    assert await page.inner_text("#data-complete") == shown
    assert offline.blocked == []
    assert errors == []
