"""The web pages in a browser, against one standalone platform: backtest reports opened from the Backtests page draw
their charts, the quantity field refuses what it would otherwise change, up is red and down is green, the placeholders are
codes of the demo market, the events print returns as percentages, and the API docs pages render offline."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page, Request

from tests.e2e.browser.conftest import OfflineContext, log_in
from tests.e2e.flow import Session, login

pytestmark = pytest.mark.e2e

# Bootstrap 5.3's --bs-danger (#dc3545) and --bs-success (#198754), as getComputedStyle writes them.
RED = "rgb(220, 53, 69)"
GREEN = "rgb(25, 135, 84)"
HOLD_SYMBOLS = 3


async def _finished(client: httpx.AsyncClient, admin: Session, backtest_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        run: dict[str, Any] = (
            await client.get(f"{admin.base_url}/api/v1/backtests/{backtest_id}", headers=admin.headers)
        ).json()
        if run["status"] not in ("queued", "running"):
            assert run["status"] == "succeeded", run
            return run
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.2)


async def _backtest(client: httpx.AsyncClient, admin: Session, **body: Any) -> str:
    body.setdefault("benchmark", None)
    accepted = await client.post(f"{admin.base_url}/api/v1/backtests", json=body, headers=admin.headers)
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["backtest_id"])


@pytest_asyncio.fixture(scope="module")
async def desk(standalone: tuple[str, str]) -> AsyncIterator[tuple[Session, str, list[dict[str, Any]]]]:
    """The admin's API session, the admin password, and buy-and-hold runs over the first demo symbols (some end up,
    some down), finished."""
    base, password = standalone
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", password)
        codes = [s["ts_code"] for s in (await client.get(base + "/api/v1/securities", headers=admin.headers)).json()]
        ids = []
        for code in codes[:HOLD_SYMBOLS]:
            body = {"strategy": "buy_and_hold", "params": {}, "universe": {"ts_codes": [code]},
                    "start": "2023-01-03", "end": "2024-12-31"}  # fmt: skip
            ids.append(await _backtest(client, admin, **body))
        runs = [await _finished(client, admin, backtest_id) for backtest_id in ids]
    yield admin, password, runs


async def _desk_page(offline: OfflineContext, base: str, password: str) -> Page:
    page = await offline.context.new_page()
    await page.add_init_script("localStorage.setItem('lianghua.lang', 'en')")  # these tests read the English words
    await log_in(page, base, "admin", password)
    return page


async def test_a_report_opened_from_the_backtests_page_draws_its_five_charts(
    desk: tuple[Session, str, list[dict[str, Any]]], offline: OfflineContext
) -> None:
    admin, password, runs = desk
    run = runs[0]
    page = await _desk_page(offline, admin.base_url, password)
    await page.click("#nav-backtests")
    button = page.locator(f"#backtest-row-{run['backtest_id']} button[data-action=report]")
    async with offline.context.expect_page() as opened:
        await button.click()
    report = await opened.value
    errors: list[str] = []
    report.on("pageerror", lambda e: errors.append(str(e)))
    # The tab may open blank at the click and be pointed at the report once the desk has its link.
    await report.wait_for_url(lambda url: url != "about:blank")
    await report.wait_for_load_state("load")

    # Equity, drawdown, monthly returns, rolling Sharpe, exposure: each a div.chart that ECharts draws a canvas in,
    # sized by the report's own stylesheet.
    charts = report.locator("div.chart")
    await charts.first.wait_for(state="attached")
    assert await charts.count() == 5
    # Polled from outside the page: a wait_for_function would be refused by the old (desk) policy, not fail.
    for _ in range(100):  # up to 10 s
        if (drawn := await report.locator("div.chart:has(canvas)").count()) >= 5:
            break
        await asyncio.sleep(0.1)
    assert drawn == 5, f"the report drew {drawn} of its 5 charts (page errors: {errors})"
    for i in range(5):
        chart = charts.nth(i)
        assert await chart.locator("canvas").count() >= 1
        box = await chart.bounding_box()
        assert box is not None and box["height"] >= 150, box
    header_font = await report.eval_on_selector("h1", "e => getComputedStyle(e).fontFamily")
    assert "Times" not in header_font  # the report's stylesheet applies (not the browser's default serif)
    assert errors == []
    assert offline.blocked == []
    assert report.url.startswith(f"{admin.base_url}/reports/backtests/{run['backtest_id']}?link=")


async def test_a_report_link_opens_one_report_for_a_minute(desk: tuple[Session, str, list[dict[str, Any]]]) -> None:
    admin, _, runs = desk
    base = admin.base_url
    first, second = runs[0]["backtest_id"], runs[1]["backtest_id"]
    async with httpx.AsyncClient(timeout=30) as client:
        anonymous = await client.post(f"{base}/api/v1/backtests/{first}/report-link")
        assert anonymous.status_code == 401
        made = await client.post(f"{base}/api/v1/backtests/{first}/report-link", headers=admin.headers)
        assert made.status_code == 200, made.text
        assert made.json()["expires_in"] == 60
        url = made.json()["url"]
        page = await client.get(base + url)
        assert page.status_code == 200 and runs[0]["summary"]["manifest"]["input_sha256"] in page.text
        policy = page.headers["content-security-policy"]
        assert "sandbox allow-scripts" in policy and "default-src 'none'" in policy and "connect-src" not in policy
        assert page.headers["referrer-policy"] == "no-referrer"
        link = url.split("link=", 1)[1]
        # Another report, a bent signature, no link, and the link used as a session token: all refused.
        other = await client.get(f"{base}/reports/backtests/{second}?link={link}")
        assert other.status_code == 401 and other.json()["code"] == "unauthenticated"
        bent = await client.get(f"{base}/reports/backtests/{first}?link={link[:-2]}{'A' if link[-2] != 'A' else 'B'}x")
        assert bent.status_code == 401
        assert (await client.get(f"{base}/reports/backtests/{first}")).status_code == 422
        as_session = await client.get(f"{base}/api/v1/auth/me", headers={"Authorization": f"Bearer {link}"})
        assert as_session.status_code == 401


async def test_the_quantity_field_refuses_what_it_would_change(
    desk: tuple[Session, str, list[dict[str, Any]]], offline: OfflineContext
) -> None:
    admin, password, _ = desk
    page = await _desk_page(offline, admin.base_url, password)
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.method == "POST" and r.url.endswith("/api/v1/orders") else None)
    await page.fill("#order-ts-code", "600405.SH")
    await page.select_option("#order-type", "market")

    for typed in ("100.5", "1e3", "-100", "+100", "１００", "100 shares", ""):
        await page.fill("#order-qty", typed)
        # What is typed and wrong turns the button off as it is typed (an empty field only once the order is asked
        # for): Enter in the field is the one way left to ask.
        assert await page.is_disabled("#order-submit") == (typed != ""), typed
        await page.press("#order-qty", "Enter")
        await page.wait_for_timeout(200)  # a request the form sent by mistake is on its way by now
        assert sent == [], f"{typed!r} was sent as qty {sent[0].post_data_json['qty'] if sent else None}"
        assert await page.is_visible("#order-qty-error"), typed
        assert (await page.inner_text("#order-qty-error")).strip(), typed
        assert await page.locator("#order-qty.is-invalid").count() == 1
    assert "lots of 100" in await page.inner_text("#order-qty-hint")

    await page.fill("#order-qty", "200")
    assert not await page.locator("#order-qty.is-invalid").count()  # typing clears the error
    async with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/v1/orders")) as request:
        await page.click("#order-submit")
        await page.click("#order-confirm")
    assert (await request.value).post_data_json["qty"] == 200
    await page.wait_for_selector("#order-result .alert-success")


async def test_up_is_red_and_down_is_green(
    desk: tuple[Session, str, list[dict[str, Any]]], offline: OfflineContext
) -> None:
    admin, password, runs = desk
    signs = {run["backtest_id"]: Decimal(run["summary"]["total_return"]) for run in runs}
    assert any(r > 0 for r in signs.values()) and any(r < 0 for r in signs.values()), signs
    async with httpx.AsyncClient(timeout=30) as client:
        order = {"client_order_id": "web-colour-buy", "ts_code": "600405.SH", "side": "buy", "order_type": "limit",
                 "qty": 100, "price": "1.00"}  # fmt: skip
        placed = await client.post(f"{admin.base_url}/api/v1/orders", json=order, headers=admin.headers)
    assert placed.status_code in (201, 422), placed.text

    page = await _desk_page(offline, admin.base_url, password)
    await page.click("#nav-backtests")
    for backtest_id, total_return in signs.items():
        cell = page.locator(f"#backtest-row-{backtest_id} td[data-col='return']")  # the Total return column
        await cell.wait_for()
        assert (await cell.inner_text()).startswith("+" if total_return > 0 else "-")
        colour = await cell.evaluate("e => getComputedStyle(e).color")
        assert colour == (RED if total_return > 0 else GREEN), (backtest_id, total_return, colour)
        await cell.hover()  # the hovered row keeps the colours
        assert await cell.evaluate("e => getComputedStyle(e).color") == colour
    await page.click("#nav-desk")
    buy = page.locator("#orders td.side-buy").first
    await buy.wait_for()
    assert await buy.evaluate("e => getComputedStyle(e).color") == RED


async def test_placeholders_are_demo_codes_and_events_print_returns_as_percentages(
    desk: tuple[Session, str, list[dict[str, Any]]], offline: OfflineContext
) -> None:
    admin, password, _ = desk
    async with httpx.AsyncClient(timeout=30) as client:
        market = {
            s["ts_code"]
            for s in (await client.get(f"{admin.base_url}/api/v1/securities", headers=admin.headers)).json()
        }
        page = await _desk_page(offline, admin.base_url, password)
        assert await page.get_attribute("#order-ts-code", "placeholder") in market
        symbols = await page.get_attribute("#backtest-symbols", "placeholder")
        assert symbols and {code.strip() for code in symbols.split(",")} <= market
        await page.wait_for_selector("#ws-status:has-text('live')")

        # No trade at all (the slow average never fills in a quarter): the return is exactly zero.
        flat = await _backtest(
            client, admin, strategy="dual_ma", params={"fast": 250, "slow": 500}, universe={"ts_codes": ["600405.SH"]},
            start="2024-01-02", end="2024-03-29",
        )  # fmt: skip
        held = await _backtest(
            client, admin, strategy="buy_and_hold", params={}, universe={"ts_codes": ["600405.SH"]},
            start="2024-01-02", end="2024-03-29",
        )  # fmt: skip
        flat_run, held_run = await _finished(client, admin, flat), await _finished(client, admin, held)
    assert Decimal(flat_run["summary"]["total_return"]) == 0
    held_return = Decimal(held_run["summary"]["total_return"]) * 100
    expected = f"{'+' if held_return > 0 else ''}{held_return:.2f}%"

    for backtest_id, text in ((flat, "return 0.00%"), (held, f"return {expected}")):
        event = page.locator("#events li", has_text=f"backtest {backtest_id} succeeded")
        await event.wait_for(timeout=20_000)
        assert text in await event.inner_text()
    assert "E-" not in await page.inner_text("#events")


async def test_swagger_ui_and_redoc_render_the_operations_offline(
    standalone: tuple[str, str], offline: OfflineContext
) -> None:
    base, _ = standalone
    page = await offline.context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    await page.goto(base + "/docs")
    # Swagger UI draws one .opblock per operation once it has loaded the schema.
    await page.wait_for_selector(".opblock", timeout=20_000)
    operations = await page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/v1/orders" in path for path in operations), operations
    assert "/api/v1/auth/token" in {path.strip().replace("\u200b", "") for path in operations}

    await page.goto(base + "/redoc")
    # ReDoc draws each operation as a section with an id of operation/<tag>/<operationId>.
    await page.wait_for_selector("[data-section-id^='operation/']", state="attached", timeout=20_000)
    assert await page.locator("[data-section-id^='operation/']").count() == len(operations)

    assert offline.blocked == [], f"the docs pages tried to reach: {offline.blocked}"
    # Nothing refused either: the vendored ReDoc no longer draws its CDN-hosted footer logo.
    assert problems == []


async def test_the_order_form_shows_the_live_quote_moving(
    desk: tuple[Session, str, list[dict[str, Any]]], offline: OfflineContext
) -> None:
    """`make run`'s replay feed quotes the demo's last session from 09:30 on; the order form subscribes to the chosen
    code on /ws and shows its quote as each round arrives (docs/quotes.md)."""
    admin, password, _ = desk
    page = await _desk_page(offline, admin.base_url, password)
    await page.fill("#order-ts-code", "600405.SH")
    line = page.locator("#order-live-quote")
    await line.filter(has_text="live ").wait_for(timeout=15_000)
    first = await line.inner_text()
    assert re.match(r"^live \d+\.\d{2} \(pre \d+\.\d{2}\) · bid \d+\.\d{2} × \d+ · ask \d+\.\d{2} × \d+ · vol ", first)
    # The next round (every 3 s of the replay clock) moves the volume and the time: pushed, not polled.
    deadline = time.monotonic() + 15
    while await line.inner_text() == first:
        assert time.monotonic() < deadline, first
        await page.wait_for_timeout(200)
    await page.fill("#order-ts-code", "")
    assert await line.inner_text() == ""
