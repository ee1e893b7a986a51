"""The desk in Chinese first, with an English switch (issue 16 §3), in a browser against one standalone platform on the
demo market's replay feed: the nav, an order placed from the ticket that fills (已成), one placed and cancelled from
the open orders (已撤), one risk refused with its reason (风控拒绝), all in Chinese; the same rows in English after the
switch and after a reload (the choice kept); profit red and loss green with no exponent notation; and the desk at phone
width (375 px) with its nav folded behind the toggler and nothing wider than the screen."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page, Route

from tests.e2e.browser.conftest import OfflineContext, log_in
from tests.e2e.flow import login
from tests.e2e.test_standalone import standalone_process

pytestmark = pytest.mark.e2e

CODE = "600405.SH"  # a main-board stock of the demo market: lots of 100
RED = "rgb(220, 53, 69)"  # Bootstrap's --bs-danger: up
GREEN = "rgb(25, 135, 84)"  # --bs-success: down
SHOTS = Path(os.environ.get("LH_TEST_SCREENSHOTS") or Path(__file__).resolve().parents[3] / "var" / "screenshots")

# What an A-share screen says for each order status (the words the test expects, written out here, not read from
# the page's dictionary).
ZH = {"filled": "已成", "cancelled": "已撤", "risk_refused": "风控拒绝"}
EN = {"filled": "Filled", "cancelled": "Cancelled", "risk_refused": "Refused by risk"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with standalone_process(tmp_path_factory.mktemp("i18n")) as p:
        yield p


@pytest_asyncio.fixture(scope="module")
async def people(platform: tuple[str, str]) -> AsyncIterator[dict[str, Any]]:
    base, admin_password = platform
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", admin_password)
    yield {"base": base, "admin": admin, "admin_password": admin_password}


async def _page(offline: OfflineContext, people: dict[str, Any], errors: list[str]) -> Page:
    page = await offline.context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in(page, people["base"], "admin", people["admin_password"])  # no language set: the default
    return page


async def _until(what: str, check: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"no {what} in {timeout_s} s"
        await asyncio.sleep(0.3)


async def _place_from_ticket(page: Page, price_selector: str) -> str:
    """Put a price from the ladder in the ticket, 100 shares, place and confirm; the order id the page gives."""
    price = await page.inner_text(price_selector)
    await page.fill("#order-price", price)
    await page.fill("#order-qty", "100")
    await page.click("#order-submit")
    confirm = page.locator("#order-confirm-box")
    await confirm.wait_for()
    text = await page.inner_text("#order-confirm-text")
    assert "买入" in text and CODE in text and "100 股" in text and price in text, text
    await page.click("#order-confirm")
    await page.wait_for_selector("#order-result .alert-success")
    result = await page.inner_text("#order-result")
    assert "委托已受理。" in result, result
    return result.split("委托已受理。")[1].split("·")[0].strip()


def _order_row(page: Page, order_id: str) -> Any:
    return page.locator("#orders tr", has=page.locator(f"td.mono:text-is('{order_id}')"))


async def test_chinese_first_then_english_kept_across_a_reload(people: dict[str, Any], offline: OfflineContext) -> None:
    base, admin = people["base"], people["admin"]
    errors: list[str] = []
    page = await _page(offline, people, errors)
    assert await page.get_attribute("html", "lang") == "zh-CN"
    assert await page.inner_text("#nav-desk") == "交易"
    assert await page.inner_text("#nav-strategies") == "策略"
    assert await page.inner_text("#lang-switch") == "English"

    await page.fill("#order-ts-code", CODE)
    await page.locator("#ladder-ask-1 .ladder-price").wait_for(timeout=15_000)
    # The highest ask shown: a buy at it takes the asks at once (paper fills on the replayed quotes).
    ask = (
        "#ladder-ask-5 .ladder-price"
        if await page.locator("#ladder-ask-5 .ladder-price").count()
        else "#ladder-ask-1 .ladder-price"
    )
    filled_id = await _place_from_ticket(page, ask)
    # A buy at the limit-down price rests; it is cancelled from the open orders with its 撤单 button.
    resting_id = await _place_from_ticket(page, "#ladder-limit-down")
    cancel = page.locator(f"[id='open-order-{resting_id}'] button[data-action=cancel]")
    assert await cancel.inner_text() == "撤单"
    await cancel.click()

    async with httpx.AsyncClient(timeout=30) as client:

        async def status(order_id: str, wanted: str) -> dict[str, Any] | None:
            r = await client.get(f"{base}/api/v1/orders/{order_id}", headers=admin.headers)
            order = r.json()
            return order if order.get("status") == wanted else None

        filled = await _until("the buy filled", lambda: status(filled_id, "filled"))
        cancelled = await _until("the resting buy cancelled", lambda: status(resting_id, "cancelled"))
        assert filled["filled_qty"] == 100 and cancelled["filled_qty"] == 0
        # Above the limit-up price: risk refuses it (price_limit); it never becomes an order.
        live = (await client.get(f"{base}/api/v1/quotes/{CODE}/live", headers=admin.headers)).json()
        over = str(Decimal(live["limit_up"]) + 1)  # a whole yuan above: well outside the limits
        order = {"client_order_id": "i18n-over-limit", "ts_code": CODE, "side": "buy", "order_type": "limit",
                 "qty": 100, "price": over}  # fmt: skip
        refused = await client.post(f"{base}/api/v1/orders", headers=admin.headers, json=order)
    assert refused.status_code == 422, refused.text
    decision = refused.json()["decision"]
    assert [r["code"] for r in decision["reasons"]] == ["price_limit"], decision

    await page.click("#orders-refresh")
    filled_row, cancelled_row = _order_row(page, filled_id), _order_row(page, resting_id)
    refusal_row = page.locator(f"[id='refusal-{decision['decision_id']}']")
    await refusal_row.wait_for(timeout=10_000)
    assert await filled_row.locator(".order-status .badge").inner_text() == ZH["filled"]
    assert await cancelled_row.locator(".order-status .badge").inner_text() == ZH["cancelled"]
    assert await filled_row.locator("td.side-buy").inner_text() == "买入"
    assert await refusal_row.locator(".order-status .badge").inner_text() == ZH["risk_refused"]
    reason = await refusal_row.locator(".order-reason").inner_text()
    assert reason.startswith("价格超出涨跌停（price_limit）："), reason  # the words, the code, the server's figures
    assert over in reason, reason

    await page.click("#lang-switch")
    assert await page.get_attribute("html", "lang") == "en"
    assert await page.inner_text("#nav-desk") == "Desk"
    assert await page.inner_text("#lang-switch") == "中文"
    assert await filled_row.locator(".order-status .badge").inner_text() == EN["filled"]
    assert await cancelled_row.locator(".order-status .badge").inner_text() == EN["cancelled"]
    assert await refusal_row.locator(".order-status .badge").inner_text() == EN["risk_refused"]
    assert (await refusal_row.locator(".order-reason").inner_text()).startswith("price_limit: ")  # the server's words
    assert await page.inner_text("label[for=order-qty]") == "Quantity (shares)"

    await page.reload()
    await page.wait_for_selector("#desk-view:not(.d-none)")
    assert await page.inner_text("#nav-desk") == "Desk"  # the choice is kept
    await _order_row(page, filled_id).locator(".order-status .badge").wait_for()
    assert await _order_row(page, filled_id).locator(".order-status .badge").inner_text() == EN["filled"]
    assert await _order_row(page, resting_id).locator(".order-status .badge").inner_text() == EN["cancelled"]
    await page.click("#lang-switch")  # and back
    assert await page.inner_text("#nav-desk") == "交易"
    assert await _order_row(page, filled_id).locator(".order-status .badge").inner_text() == ZH["filled"]
    assert errors == []
    assert offline.blocked == []


async def test_profit_is_red_loss_green_and_no_exponent_shows(people: dict[str, Any], offline: OfflineContext) -> None:
    base, admin = people["base"], people["admin"]
    async with httpx.AsyncClient(timeout=30) as client:
        held = (await client.get(f"{base}/api/v1/positions", headers=admin.headers)).json()
        if not any(p["ts_code"] == CODE and p["qty"] > 0 for p in held):
            live = (await client.get(f"{base}/api/v1/quotes/{CODE}/live", headers=admin.headers)).json()
            order = {"client_order_id": "i18n-colour-buy", "ts_code": CODE, "side": "buy", "order_type": "limit",
                     "qty": 100, "price": live["limit_up"]}  # fmt: skip
            placed = await client.post(f"{base}/api/v1/orders", headers=admin.headers, json=order)
            assert placed.status_code == 201, placed.text

            async def holding() -> bool:
                r = await client.get(f"{base}/api/v1/positions", headers=admin.headers)
                return any(p["ts_code"] == CODE and p["qty"] > 0 for p in r.json())

            await _until("the position", holding)

    # The service's answer as it comes, with three figures set to what the colours are about: a profit, a loss,
    # and a zero written as Python's Decimal may write it.
    async def positions(route: Route) -> None:
        answer = await route.fetch()
        rows = await answer.json()
        for row in rows:
            if row["ts_code"] == CODE:
                row.update(unrealised_pnl="1234.50", pnl_today="-12.30", realised_pnl="0E-8")
        await route.fulfill(response=answer, body=json.dumps(rows))

    errors: list[str] = []
    page = await offline.context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.route("**/api/v1/positions", positions)
    await log_in(page, base, "admin", people["admin_password"])
    row = page.locator(f"[id='position-{CODE}']")
    await row.wait_for(timeout=15_000)
    colour = "e => getComputedStyle(e).color"
    profit, loss, zero = row.locator(".pos-unrealised"), row.locator(".pos-pnl-today"), row.locator(".pos-realised")
    assert await profit.inner_text() == "1,234.50"
    assert await profit.evaluate(colour) == RED
    assert await loss.inner_text() == "-12.30"
    assert await loss.evaluate(colour) == GREEN
    assert await zero.inner_text() == "0.00"
    assert await zero.evaluate(colour) not in (RED, GREEN)
    # The account's own total P&L (not routed): coloured by the sign of the figure shown.
    await page.locator("#account-cash:not(.d-none)").wait_for()
    total = page.locator("#account-pnl-total")
    shown = (await total.inner_text()).split(" ")[0]
    expected = GREEN if shown.startswith("-") else RED if Decimal(shown.replace(",", "")) else None
    assert (await total.evaluate(colour) in (RED, GREEN)) == (expected is not None), shown
    if expected:
        assert await total.evaluate(colour) == expected, shown
    assert "E" not in await page.inner_text("#account-card")  # no exponent anywhere in the account
    assert errors == []
    assert offline.blocked == []


async def test_the_desk_at_phone_width(people: dict[str, Any], offline: OfflineContext) -> None:
    errors: list[str] = []
    page = await offline.context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.set_viewport_size({"width": 375, "height": 812})
    await log_in(page, people["base"], "admin", people["admin_password"])
    overflow = "() => document.documentElement.scrollWidth - window.innerWidth"
    # The nav is folded: the toggler shows it, the language switch stays in sight.
    assert await page.is_visible("#nav-toggler")
    assert await page.is_visible("#lang-switch")
    assert not await page.is_visible("#nav-desk")
    await page.click("#nav-toggler")
    await page.locator("#nav-desk").wait_for(state="visible")
    await page.locator("#orders tr").first.wait_for()
    assert await page.evaluate(overflow) <= 0
    await page.screenshot(path=SHOTS / "i18n-desk-375.png", full_page=True)  # playwright makes the directory
    await page.click("#nav-strategies")
    await page.wait_for_selector("#strategies-view:not(.d-none)")
    await page.locator("#nav-desk").wait_for(state="hidden")  # the page chosen, the nav folds again
    await page.locator("#instances tr").first.wait_for()
    assert await page.evaluate(overflow) <= 0
    await page.screenshot(path=SHOTS / "i18n-strategies-375.png", full_page=True)
    assert errors == []
    assert offline.blocked == []
