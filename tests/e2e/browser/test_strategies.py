"""The Strategies page in a browser, against a standalone platform on the replay market clock: a trader creates a
dual MA instance from the form and starts it with a replay; the page follows it to `stopped` and shows the equity
curve and the fills the platform recorded (read back through the API as the second witness); a refused parameter is
shown with the API's code; a viewer sees the instances without a button to act on them; on a platform on the real
clock a replay is refused with `not_replay` and the replay fields go."""

from __future__ import annotations

import os
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
from tests.e2e.flow import Session, create_user, login
from tests.e2e.test_standalone import standalone_process

pytestmark = pytest.mark.e2e

REPLAY = ("2024-01-02", "2024-03-29")
SYMBOLS = 5
CAPITAL = "1000000"
REPLAY_TIMEOUT_MS = 180_000
DETAIL_ROWS = 200  # the page lists an instance's latest 200 orders and fills (app.js DETAIL_ROWS)


@pytest.fixture(scope="module")
def replay_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with standalone_process(tmp_path_factory.mktemp("strategies-ui"), LH_MARKET_CLOCK="replay") as platform:
        yield platform


@pytest.fixture
def real_clock_platform(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A platform on the wall clock (`make run` replays the demo market unless LH_MARKET_CLOCK says otherwise)."""
    with standalone_process(tmp_path, LH_MARKET_CLOCK="real") as platform:
        yield platform


@pytest_asyncio.fixture(scope="module")
async def people(replay_platform: tuple[str, str]) -> AsyncIterator[dict[str, Any]]:
    """A trader and a viewer (names and passwords), the trader's API session, and the demo market's first codes."""
    base, admin_password = replay_platform
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", admin_password)
        trader_name, trader_password = await create_user(client, admin, "trader")
        viewer_name, viewer_password = await create_user(client, admin, "viewer")
        trader = await login(client, base, trader_name, trader_password)
        codes = [s["ts_code"] for s in (await client.get(base + "/api/v1/securities", headers=admin.headers)).json()]
    yield {
        "base": base,
        "trader": (trader_name, trader_password),
        "viewer": (viewer_name, viewer_password),
        "trader_api": trader,
        "codes": codes[:SYMBOLS],
    }


def _group(value: str) -> str:
    """A decimal as the page writes it: thousands separators in the integer part, the digits as given."""
    sign = value[0] if value[0] in "+-" else ""
    whole, _, fraction = value.lstrip("+-").partition(".")
    return sign + f"{int(whole):,}" + (f".{fraction}" if fraction else "")


def _signed(value: Decimal) -> str:
    text = f"{abs(value):.2f}"
    return ("+" if value > 0 else "-" if value < 0 else "") + text


async def _strategies_page(offline: OfflineContext, base: str, who: tuple[str, str], errors: list[str]) -> Page:
    page = await offline.context.new_page()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.add_init_script("localStorage.setItem('lianghua.lang', 'en')")  # these tests read the English words
    await log_in(page, base, *who)
    await page.click("#nav-strategies")
    await page.wait_for_selector("#strategies-view:not(.d-none)")
    assert await page.is_hidden("#desk-view")
    return page


async def _fill_form(page: Page, codes: list[str], fast: str) -> None:
    await page.select_option("#instance-strategy", "dual_ma")
    await page.wait_for_selector("#instance-param-fast")
    await page.fill("#instance-param-fast", fast)
    await page.fill("#instance-param-slow", "20")
    await page.fill("#instance-codes", ", ".join(codes))
    await page.fill("#instance-capital", CAPITAL)
    await page.fill("#instance-replay-start", REPLAY[0])
    await page.fill("#instance-replay-end", REPLAY[1])


async def _chart_points(page: Page, points: int) -> None:
    # A function, not an expression: polling an expression evals it, which the page's policy refuses.
    await page.wait_for_function(
        "(n) => document.getElementById('instance-chart').dataset.points === String(n)", arg=points
    )


async def _api(client: httpx.AsyncClient, s: Session, path: str, **params: str) -> Any:
    answer = await client.get(s.base_url + path, params=params, headers=s.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_trader_replays_a_dual_ma_instance_from_the_strategies_page(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    errors: list[str] = []
    page = await _strategies_page(offline, people["base"], people["trader"], errors)
    await _fill_form(page, people["codes"], fast="5")
    await page.click("#instance-submit")
    await page.wait_for_selector("#instance-result .alert-success")
    instance_id = (await page.inner_text("#instance-result .alert-success .mono")).strip()
    row = f"#instance-row-{instance_id}"
    await page.wait_for_selector(f"{row}[data-state=created]")

    # What the form sent is what the instance is.
    trader: Session = people["trader_api"]
    async with httpx.AsyncClient(timeout=30) as client:
        made = await _api(client, trader, f"/api/v1/strategy-instances/{instance_id}")
    assert made["strategy"] == "dual_ma" and made["params"]["fast"] == 5 and made["params"]["slow"] == 20
    assert made["universe"] == {"ts_codes": people["codes"]}
    assert made["capital"] == "1000000.00" and made["mode"] == "paper" and made["order_timing"] == "open"

    assert await page.locator(f"{row} button").all_inner_texts() == ["Start", "Stop"]
    await page.click(f"{row} button[data-action=start]")
    await page.wait_for_selector(f"{row}[data-state=stopped]", timeout=REPLAY_TIMEOUT_MS)
    assert await page.locator(f"{row} button").count() == 0  # nothing to do with a stopped instance

    async with httpx.AsyncClient(timeout=30) as client:
        path = f"/api/v1/strategy-instances/{instance_id}"
        performance = await _api(client, trader, f"{path}/performance")
        trades = await _api(client, trader, "/api/v1/trades", strategy_instance_id=instance_id, limit="1000")
        orders = await _api(client, trader, "/api/v1/orders", strategy_instance_id=instance_id, limit="1000")
    curve = performance["equity_curve"]
    assert performance["state"] == "stopped" and len(curve) > 20
    assert trades, "a dual MA over five symbols and three months trades"

    # The chart holds the whole curve (from /performance and the bar events), its last point the final equity.
    points = len(curve)
    await _chart_points(page, points)
    drawn = await page.evaluate(
        """() => {
            const chart = echarts.getInstanceByDom(document.getElementById('instance-chart'));
            const option = chart.getOption();
            const canvas = document.querySelector('#instance-chart canvas');
            return {x: option.xAxis[0].data, y: option.series[0].data, width: canvas.width, height: canvas.height};
        }"""
    )
    assert drawn["x"] == [p["date"] for p in curve]
    assert drawn["y"][-1] == float(curve[-1]["equity"]) and len(drawn["y"]) == points
    assert drawn["width"] > 300 and drawn["height"] > 200

    # The row: the final equity, and today's P&L as the difference of the last two points, to the fen.
    assert await page.inner_text(f"#instance-equity-{instance_id}") == _group(curve[-1]["equity"])
    pnl = Decimal(curve[-1]["equity"]) - Decimal(curve[-2]["equity"])
    assert await page.inner_text(f"#instance-pnl-{instance_id}") == _group(_signed(pnl))

    # The fills and orders tables: the platform's records of this instance, newest first.
    await page.wait_for_function(
        "(n) => document.querySelectorAll('#detail-fills tr[data-trade]').length === n",
        arg=min(len(trades), DETAIL_ROWS),
    )
    newest = trades[0]
    first_fill = await page.locator("#detail-fills tr[data-trade]").first.all_inner_texts()
    assert newest["ts_code"] in first_fill[0] and _group(str(newest["qty"])) in first_fill[0]
    # on the exchange's clock: a replayed open fill is 09:30 in Shanghai whatever the browser's time zone
    traded = datetime.fromisoformat(newest["traded_at"]).astimezone(ZoneInfo("Asia/Shanghai"))
    assert first_fill[0].startswith(f"{traded:%Y-%m-%d %H:%M}") and f"{traded:%H:%M}" == "09:30"
    assert await page.locator("#detail-orders tr td.mono").count() == min(len(orders), DETAIL_ROWS)
    # the detail is reloaded at most once a second after the instance's events (the row 0.3 s after): the stop shows
    # there by its next reload
    await page.wait_for_function(
        "() => document.getElementById('detail-progress').textContent.includes('stopped')", timeout=5000
    )

    shots = os.environ.get("LH_TEST_SCREENSHOTS")
    if shots:
        await page.screenshot(path=os.path.join(shots, "strategies.png"), full_page=True)  # playwright makes the dir
    assert not offline.blocked
    assert errors == []


async def test_a_refused_parameter_is_shown_with_the_apis_code_on_its_field(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    errors: list[str] = []
    page = await _strategies_page(offline, people["base"], people["trader"], errors)
    await _fill_form(page, people["codes"], fast="30")  # not shorter than slow (20): the strategy refuses
    await page.click("#instance-submit")
    alert = page.locator("#instance-result .alert-danger")
    await alert.wait_for()
    assert (await alert.locator("strong").inner_text()).startswith("invalid_request:")
    assert "fast (30) must be shorter than slow (20)" in await alert.inner_text()
    # a 4xx is the page's answer, not an error of the page
    assert all("422" in e for e in errors), errors


async def test_a_viewer_sees_the_instances_without_actions(people: dict[str, Any], offline: OfflineContext) -> None:
    trader: Session = people["trader_api"]
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"strategy": "dual_ma", "params": {}, "universe": {"ts_codes": people["codes"]}, "capital": "1000"}
        made = await client.post(trader.base_url + "/api/v1/strategy-instances", json=body, headers=trader.headers)
        assert made.status_code == 201, made.text
    instance_id = made.json()["instance_id"]
    row = f"#instance-row-{instance_id}"

    errors: list[str] = []
    as_trader = await _strategies_page(offline, people["base"], people["trader"], errors)
    await as_trader.wait_for_selector(f"{row}[data-state=created]")
    assert await as_trader.locator(f"{row} button").all_inner_texts() == ["Start", "Stop"]

    as_viewer = await _strategies_page(offline, people["base"], people["viewer"], errors)
    await as_viewer.wait_for_selector(f"{row}[data-state=created]")
    assert await as_viewer.locator("#instances tr[data-instance]").count() >= 1
    assert await as_viewer.locator("#instances button").count() == 0
    assert await as_viewer.is_disabled("#instance-submit")
    assert await as_viewer.is_visible("#instance-readonly")
    await as_viewer.click(row)  # watching is allowed: the detail opens
    await as_viewer.wait_for_selector("#detail-body:not(.d-none)")
    assert errors == []


async def test_a_replay_on_the_real_clock_is_refused_and_the_replay_fields_go(
    real_clock_platform: tuple[str, str], offline: OfflineContext
) -> None:
    base, admin_password = real_clock_platform  # a platform on the real market clock
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", admin_password)
        name, password = await create_user(client, admin, "trader")
        trader = await login(client, base, name, password)
        codes = [s["ts_code"] for s in (await client.get(base + "/api/v1/securities", headers=admin.headers)).json()]
        body = {"strategy": "buy_and_hold", "params": {}, "universe": {"ts_codes": codes[:2]}, "capital": "1000"}
        made = await client.post(base + "/api/v1/strategy-instances", json=body, headers=trader.headers)
        assert made.status_code == 201, made.text
    instance_id = made.json()["instance_id"]

    errors: list[str] = []
    page = await _strategies_page(offline, base, (name, password), errors)
    await page.fill("#instance-replay-start", REPLAY[0])
    await page.fill("#instance-replay-end", REPLAY[1])
    await page.click(f"#instance-row-{instance_id} button[data-action=start]")
    await page.wait_for_selector("#instance-action-error:not(.d-none)")
    refusal = await page.inner_text("#instance-action-error")
    assert refusal.startswith(f"Start {instance_id}: not_replay: ")
    # the list reloads after the action (and on Refresh): the refusal stays on the page
    loads = await page.get_attribute("#instances", "data-loads")
    await page.click("#instances-refresh")
    await page.wait_for_function("(n) => document.getElementById('instances').dataset.loads !== n", arg=loads)
    assert await page.inner_text("#instance-action-error") == refusal
    assert await page.is_hidden("#instance-replay")
    assert await page.get_attribute(f"#instance-row-{instance_id}", "data-state") == "created"


async def test_the_chart_follows_a_paced_replay_over_the_websocket(
    people: dict[str, Any], offline: OfflineContext
) -> None:
    errors: list[str] = []
    page = await _strategies_page(offline, people["base"], people["trader"], errors)
    await _fill_form(page, people["codes"], fast="5")
    await page.fill("#instance-replay-pace", "20")
    await page.click("#instance-submit")
    await page.wait_for_selector("#instance-result .alert-success")
    instance_id = (await page.inner_text("#instance-result .alert-success .mono")).strip()
    row = f"#instance-row-{instance_id}"
    await page.wait_for_selector(f"{row}[data-state=created]")
    await _chart_points(page, 0)

    # From here on the page cannot read /performance: every point the chart gains comes from a bar event.
    refused: list[str] = []

    async def cut(route: Route) -> None:
        refused.append(route.request.url)
        await route.abort()

    await page.route("**/performance", cut)
    async with page.expect_request(lambda r: r.url.endswith(f"{instance_id}/start")) as start:
        await page.click(f"{row} button[data-action=start]")
    assert (await start.value).post_data_json == {
        "replay": {"start": REPLAY[0], "end": REPLAY[1], "days_per_second": 20}
    }
    await page.wait_for_selector(f"{row}[data-state=stopped]", timeout=REPLAY_TIMEOUT_MS)

    trader: Session = people["trader_api"]
    async with httpx.AsyncClient(timeout=30) as client:
        performance = await _api(client, trader, f"/api/v1/strategy-instances/{instance_id}/performance")
    curve = performance["equity_curve"]
    await _chart_points(page, len(curve))
    drawn = await page.evaluate(
        """() => {
            const option = echarts.getInstanceByDom(document.getElementById('instance-chart')).getOption();
            return {x: option.xAxis[0].data, y: option.series[0].data};
        }"""
    )
    assert drawn["x"] == [p["date"] for p in curve]
    assert drawn["y"] == [float(p["equity"]) for p in curve]
    assert refused, "the page asked for /performance and was refused: the chart grew from the events"
    assert "performance: network error" in await page.inner_text("#detail-error")  # and said so
    assert [e for e in errors if "Failed to load resource" not in e] == []
