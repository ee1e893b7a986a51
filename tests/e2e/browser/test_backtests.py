"""The Backtests page in a browser, against one standalone platform, driven as a user would: run a backtest from
the form, find it by searching, open its report and see its charts, compare two runs, keep a run inside the data's
range (the form and the API both refuse one outside it), and run a small optimisation to its ranked table and
heatmap. Screenshots go to var/screenshots/."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import ConsoleMessage, Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.browser.conftest import OfflineContext, log_in
from tests.e2e.flow import Session, login

pytestmark = pytest.mark.e2e

SHOTS = Path(__file__).resolve().parents[3] / "var" / "screenshots"
START, END = "2024-01-02", "2024-06-28"


def _pct(value: Any, signed: bool = True) -> str:
    """A fraction as the page writes it: a percentage with 2 decimals, a + on a gain."""
    number = Decimal(str(value)) * 100
    text = f"{number:.2f}%"
    return f"+{text}" if signed and number > 0 else text


@pytest_asyncio.fixture(scope="module")
async def platform(standalone: tuple[str, str]) -> AsyncIterator[tuple[Session, str, list[str]]]:
    base, password = standalone
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", password)
        codes = [s["ts_code"] for s in (await client.get(base + "/api/v1/securities", headers=admin.headers)).json()]
    yield admin, password, codes[:3]


async def _page(offline: OfflineContext, base: str, password: str, errors: list[str]) -> Page:
    page = await offline.context.new_page()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, base, "admin", password)
    await page.click("#nav-backtests")
    await page.wait_for_selector("#backtests-view:not(.d-none)")
    await page.wait_for_selector("#backtest-strategy option[value=buy_and_hold]", state="attached")
    return page


async def _fill(page: Page, strategy: str, codes: list[str], name: str, start: str = START, end: str = END) -> None:
    await page.select_option("#backtest-strategy", strategy)
    await page.fill("#backtest-symbols", ", ".join(codes))
    await page.fill("#backtest-start", start)
    await page.fill("#backtest-end", end)
    await page.fill("#backtest-name", name)


async def _finished(client: httpx.AsyncClient, admin: Session, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        record: dict[str, Any] = (await client.get(f"{admin.base_url}/api/v1/{path}", headers=admin.headers)).json()
        if record["status"] not in ("queued", "running"):
            assert record["status"] == "succeeded", record
            return record
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.3)


async def _run_from_the_form(page: Page, strategy: str, codes: list[str], name: str) -> str:
    await _fill(page, strategy, codes, name)
    async with page.expect_response(
        lambda r: r.url.endswith("/api/v1/backtests") and r.request.method == "POST"
    ) as sent:
        await page.click("#backtest-submit")
    answer = await sent.value
    assert answer.status == 202, await answer.text()
    await page.wait_for_selector("#backtest-result .alert-success")
    return str((await answer.json())["backtest_id"])


async def _hover(page: Page, chart: str, value: list[Any] | None = None) -> None:
    """Point at a chart (at a data value, or its middle) as a user would, so its tooltip shows; the tooltip is drawn
    as text on the canvas: no HTML box (whose inline styles the page's policy refuses) appears in the chart."""
    await page.locator(f"#{chart}").scroll_into_view_if_needed()
    box = await page.locator(f"#{chart}").bounding_box()
    assert box is not None
    x, y = box["width"] / 2, box["height"] / 2
    if value is not None:
        x, y = await page.evaluate(
            "([id, v]) => echarts.getInstanceByDom(document.getElementById(id)).convertToPixel({seriesIndex: 0}, v)",
            [chart, value],
        )
    await page.mouse.move(box["x"] + x - 5, box["y"] + y - 5)
    await page.mouse.move(box["x"] + x, box["y"] + y, steps=5)
    await page.wait_for_timeout(300)
    html_boxes = await page.evaluate(
        "id => Array.from(document.querySelectorAll(`#${id} div`)).filter(d => d.innerText.trim()).length", chart
    )
    assert html_boxes == 0
    mode = await page.evaluate(
        "id => echarts.getInstanceByDom(document.getElementById(id)).getOption().tooltip[0].renderMode", chart
    )
    assert mode == "richText"


async def _search(page: Page, text: str) -> None:
    """Type into the search box and press Enter, then wait for the page to have drawn the answer."""
    await page.fill("#backtests-q", text)
    async with page.expect_response(lambda r: "/api/v1/backtests?" in r.url and f"q={text}" in r.url) as answer:
        await page.press("#backtests-q", "Enter")
    await (await answer.value).finished()
    await page.wait_for_timeout(100)  # the table is drawn in the same task as the answer is read


async def test_run_find_open_the_report_and_compare(
    platform: tuple[Session, str, list[str]], offline: OfflineContext
) -> None:
    admin, password, codes = platform
    errors: list[str] = []
    page = await _page(offline, admin.base_url, password, errors)
    held = await _run_from_the_form(page, "buy_and_hold", codes, "bt-ui-held")
    crossed = await _run_from_the_form(page, "dual_ma", codes, "bt-ui-crossed")
    async with httpx.AsyncClient(timeout=30) as client:
        runs = {i: await _finished(client, admin, f"backtests/{i}") for i in (held, crossed)}

    # Found by searching its name: the one row, finished, with its owner and return.
    await _search(page, "bt-ui-held")
    row = page.locator(f"#backtest-row-{held}")
    await row.locator("button[data-action=report]").wait_for(timeout=30_000)
    assert await page.locator("#backtests tr[id^=backtest-row-]").count() == 1
    assert await row.locator("td").nth(3).inner_text() == "admin"
    assert await row.locator("td[data-col=return]").inner_text() == _pct(runs[held]["summary"]["total_return"])

    # The report opens in its own tab with its five charts drawn and nothing refused by a policy.
    async with offline.context.expect_page() as opened:
        await row.locator("button[data-action=report]").click()
    report = await opened.value
    report_errors: list[str] = []
    report.on("console", lambda m: report_errors.append(m.text) if m.type == "error" else None)
    report.on("pageerror", lambda exc: report_errors.append(str(exc)))
    await report.wait_for_url(lambda url: url != "about:blank")
    await report.wait_for_load_state("load")
    for _ in range(100):
        if await report.locator("div.chart:has(canvas)").count() >= 5:
            break
        await asyncio.sleep(0.1)
    assert await report.locator("div.chart:has(canvas)").count() == 5
    assert report_errors == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    await report.screenshot(path=SHOTS / "backtests-report.png", full_page=True)
    await report.close()

    # Compare the two: both picked, metrics side by side, one curve each overlaid.
    await _search(page, "bt-ui-")
    await page.locator(f"#backtest-row-{crossed} input[data-compare]").wait_for()
    await page.check(f"#backtest-row-{held} input[data-compare]")
    await page.check(f"#backtest-row-{crossed} input[data-compare]")
    await page.click("#backtests-compare-go")
    await page.wait_for_selector(
        "#backtests-compare:not(.d-none) #backtests-compare-table tr[data-metric=total_return]"
    )
    cells = page.locator("#backtests-compare-table tr[data-metric=total_return] td")
    shown = [await cells.nth(i).inner_text() for i in range(await cells.count())]
    assert sorted(shown) == sorted(_pct(r["summary"]["total_return"]) for r in runs.values())
    drawdowns = page.locator("#backtests-compare-table tr[data-metric=max_drawdown] td")
    assert sorted([await drawdowns.nth(i).inner_text() for i in range(2)]) == sorted(
        _pct(r["summary"]["metrics"]["max_drawdown"], signed=False) for r in runs.values()
    )
    await page.wait_for_selector("#backtests-compare-chart canvas")
    series = await page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('backtests-compare-chart')).getOption().series"
        ".map(s => [s.data.length, s.data[0][1], s.data[s.data.length - 1][1]])"
    )
    for run in runs.values():
        curve = run["equity_curve"]
        cash = Decimal(run["initial_cash"])
        last = float(Decimal(curve[-1]["equity"]) / cash)
        assert any(n == len(curve) and first == float(Decimal(curve[0]["equity"]) / cash) and abs(end - last) < 1e-9
                   for n, first, end in series), (series, len(curve))  # fmt: skip
    await _hover(page, "backtests-compare-chart")
    await page.screenshot(path=SHOTS / "backtests-compare.png", full_page=True)
    assert errors == []  # no policy refusal either (an HTML tooltip's inline styles would be one)
    assert offline.blocked == []


def _days(iso: str, n: int) -> str:
    return (date.fromisoformat(iso) + timedelta(days=n)).isoformat()


async def test_the_data_range_is_shown_and_enforced(
    platform: tuple[Session, str, list[str]], offline: OfflineContext
) -> None:
    admin, password, codes = platform
    async with httpx.AsyncClient(timeout=30) as client:
        calendar = (
            await client.get(f"{admin.base_url}/api/v1/calendar?start=1990-01-01&end=2100-01-01", headers=admin.headers)
        ).json()
        days, complete = calendar["trading_days"], calendar["complete_through"]
        assert complete is not None
        first = days[0]
        # The service's rule, worked out here: a start up to 14 days before the first trading day; an end up to the
        # day before the trading day after the last complete one, and at most 14 days after it.
        earliest = _days(first, -14)
        following = [d for d in days if d > complete]
        latest = min(_days(complete, 14), _days(following[0], -1)) if following else _days(complete, 14)

        async def post(start: str, end: str) -> httpx.Response:
            body = {"strategy": "buy_and_hold", "universe": {"ts_codes": codes}, "start": start, "end": end}
            return await client.post(f"{admin.base_url}/api/v1/backtests", json=body, headers=admin.headers)

        # The API refuses a run one day past either limit whatever sends it.
        for start, end, field in ((START, "2099-12-31", "end"), (START, _days(latest, 1), "end"),
                                  (_days(earliest, -1), END, "start")):  # fmt: skip
            refused = await post(start, end)
            assert refused.status_code == 422 and refused.json()["code"] == "outside_data_range", refused.text
            assert refused.json()["message"].startswith(f"{field}: "), refused.text

    errors: list[str] = []
    page = await _page(offline, admin.base_url, password, errors)
    range_text = page.locator("#backtest-range")
    await page.wait_for_function("() => document.getElementById('backtest-range').textContent.includes('20')")
    shown = await range_text.inner_text()
    assert all(d in shown for d in (first, complete, earliest, latest)), shown

    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" and r.url.endswith("/backtests") else None)
    await _fill(page, "buy_and_hold", codes, "bt-ui-out", end="2099-12-31")
    await page.click("#backtest-submit")
    await page.wait_for_selector("#backtest-end.is-invalid")
    assert complete in await page.locator("#backtest-end ~ .invalid-feedback").inner_text()
    assert sent == []
    # One day past each limit: both fields marked, naming the limits, and nothing sent.
    await _fill(page, "buy_and_hold", codes, "bt-ui-out", start=_days(earliest, -1), end=_days(latest, 1))
    await page.click("#backtest-submit")
    await page.wait_for_selector("#backtest-start.is-invalid")
    assert first in await page.locator("#backtest-start ~ .invalid-feedback").inner_text()
    assert latest in await page.locator("#backtest-end ~ .invalid-feedback").inner_text()
    assert sent == []
    # On both limits (a start before the first trading day, an end after the last complete day): the form sends it
    # and the service accepts it.
    await page.fill("#backtest-start", earliest)
    await page.fill("#backtest-end", latest)
    await page.dispatch_event("#backtest-end", "change")
    assert await page.locator("#backtest-start.is-invalid, #backtest-end.is-invalid").count() == 0
    async with page.expect_response(
        lambda r: r.url.endswith("/api/v1/backtests") and r.request.method == "POST"
    ) as answer:
        await page.click("#backtest-submit")
    assert (await answer.value).status == 202, await (await answer.value).text()
    await page.wait_for_selector("#backtest-result .alert-success")
    assert errors == []


async def test_a_small_optimisation_ranks_its_points_and_draws_a_heatmap(
    platform: tuple[Session, str, list[str]], offline: OfflineContext
) -> None:
    admin, password, codes = platform
    errors: list[str] = []
    page = await _page(offline, admin.base_url, password, errors)
    await _fill(page, "dual_ma", codes, "")
    await page.fill("#opt-space", '{"fast": [5, 10], "slow": [20, 40]}')
    await page.select_option("#opt-objective", "total_return")
    async with page.expect_response(
        lambda r: r.url.endswith("/api/v1/optimisations") and r.request.method == "POST"
    ) as sent:
        await page.click("#opt-submit")
    answer = await sent.value
    assert answer.status == 202, await answer.text()
    optimisation_id = (await answer.json())["optimisation_id"]
    async with httpx.AsyncClient(timeout=30) as client:
        await _finished(client, admin, f"optimisations/{optimisation_id}")
        points = (
            await client.get(f"{admin.base_url}/api/v1/optimisations/{optimisation_id}/points", headers=admin.headers)
        ).json()
    assert len(points) == 4
    await page.wait_for_selector("#opt-status[data-status=succeeded]", timeout=30_000)
    listed = page.locator(f"#opt-row-{optimisation_id}")  # in the recent list, finished
    await listed.locator(".badge.text-bg-success").wait_for()
    assert "4/4" in await listed.inner_text()
    await page.wait_for_selector("#opt-ranked tbody tr:nth-child(4)")
    rows = page.locator("#opt-ranked tbody tr")
    assert await rows.count() == 4
    for i, point in enumerate(points):  # best first, as the API ranks them
        cells = rows.nth(i).locator("td")
        assert await cells.nth(1).inner_text() == str(point["params"]["fast"])
        assert await cells.nth(2).inner_text() == str(point["params"]["slow"])
        assert await cells.nth(3).inner_text() == _pct(point["objective"])
    assert "fast × slow" in await page.inner_text("#opt-heatmap-title")
    await page.wait_for_selector("#opt-heatmap canvas")
    cells_drawn = await page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('opt-heatmap')).getOption().series[0].data.length"
    )
    assert cells_drawn == 4
    await _hover(page, "opt-heatmap", [0, 0])
    await page.screenshot(path=SHOTS / "backtests-heatmap-tooltip.png", full_page=True)
    assert errors == []
    await page.wait_for_selector("#opt-report:not(.d-none)")
    async with offline.context.expect_page() as opened:
        await page.click("#opt-report")
    report = await opened.value
    await report.wait_for_url(lambda url: url != "about:blank")
    assert f"/reports/optimisations/{optimisation_id}?link=" in report.url
    await report.close()

    # At phone width the page's content fits: nothing of it reaches past the screen's edge (its tables scroll
    # sideways inside their .table-responsive boxes).
    await page.set_viewport_size({"width": 390, "height": 844})
    overflowing = """() => Array.from(document.querySelectorAll("#backtests-view *"))
        .filter(e => e.offsetParent !== null && !e.closest(".table-responsive")
                     && e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => e.tagName + "#" + e.id + "." + e.className)"""
    # the charts are resized by the page's handler of the window's resize event, which runs after the viewport
    # changed: waited for (a bound, not a timing), then what still overflows is named
    with contextlib.suppress(PlaywrightTimeoutError):
        await page.wait_for_function(f"() => ({overflowing})().length === 0", timeout=10_000)
    wide = await page.evaluate(overflowing)
    assert wide == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SHOTS / "backtests-optimisation-phone.png", full_page=True)
    assert errors == []
    assert offline.blocked == []
