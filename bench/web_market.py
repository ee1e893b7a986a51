"""The Market page's speed in headless chromium over loopback (issue 16, benchmarks): the first meaningful paint of
a 10-year daily chart (from the page's navigation start to the chart drawn with its default MA overlay: the page's
`performance.mark("market:chart-drawn")`), and the chart's redraw after an indicator change (from the page's
`market:indicator-change` mark to the next `market:chart-drawn`): adding MACD, KDJ or RSI (computed ahead by the page
after the first paint: drawn only), adding CCI or WILLR from the catalogue (computed by the strategy service, then
drawn) and removing one (drawn only). Aims: under 1 s and under 100 ms.

The platform is `lianghua.standalone` in a subprocess (SQLite in a temporary folder, the demo market), with one
code's 10-year series (a generated one: `generate_bulk_market`, weekdays up to today) loaded into its data service.
Each run loads the page afresh in the same tab (the session kept, the browser's cache warm after the first run).

    python -m bench.web_market [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from statistics import median

from playwright.async_api import Page, async_playwright

from bench.live_platform import load_into_data_service
from services.data.demo import BulkMarket, generate_bulk_market
from tests.e2e.test_standalone import standalone_process

CHROMIUM = os.environ.get("LH_TEST_CHROMIUM", "/usr/bin/chromium")
CODE = "603999.SH"  # not a demo code: the 10-year series is the only one under it
YEARS = 10
PRESET_PICKS = ("MACD", "KDJ", "RSI")  # the page computes the common ones ahead, after the first paint
SELECT = "#market-indicator-add"
CATALOGUE_PICKS = ("CCI", "WILLR")  # catalogue entries in panes of their own: one request each


def ten_year_series(today: date) -> BulkMarket:
    """One main-board code's weekdays from ten years back to today (about 2,600 bars), as the bulk generator makes
    them, relabelled CODE."""
    first = today.replace(year=today.year - YEARS) + timedelta(days=7)
    days = sum(1 for i in range((today - first).days + 1) if (first + timedelta(days=i)).weekday() < 5)
    market = generate_bulk_market(5, days, start=first)
    main = market.securities[market.securities["ts_code"].str.match(r"^60[0-5]")]
    source = str(main["ts_code"].iloc[0])
    securities = market.securities[market.securities["ts_code"] == source].copy()
    securities["ts_code"] = CODE
    securities["symbol"] = CODE[:6]
    securities["name"] = "十年样本"
    daily = market.daily[market.daily["ts_code"] == source].copy()
    daily["ts_code"] = CODE
    return BulkMarket(securities.reset_index(drop=True), daily.reset_index(drop=True), market.trade_days)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _mark(page: Page, name: str, after: float = -1.0, timeout_s: float = 30) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await page.evaluate(
            f"() => performance.getEntriesByName({name!r}).map(e => e.startTime).filter(t => t > {after})"
        )
        if found:
            return float(found[0])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {name} mark")
        await asyncio.sleep(0.01)


async def _redraw(page: Page, act: Callable[[], Awaitable[object]]) -> float:
    """Milliseconds from the `market:indicator-change` mark `act` makes to the next `market:chart-drawn`."""
    before = await page.evaluate("() => performance.now()")
    await act()
    change = await _mark(page, "market:indicator-change", after=before)
    drawn = await _mark(page, "market:chart-drawn", after=change)
    return drawn - change


async def measure(base: str, password: str, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"paint": [], "ahead": [], "server": [], "remove": []}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        page = await browser.new_page(viewport={"width": 1366, "height": 900})
        await page.goto(base + "/")
        await page.fill("#login-username", "admin")
        await page.fill("#login-password", password)
        await page.click("#login-form button[type=submit]")
        await page.wait_for_selector("#desk-view:not(.d-none)")
        candles = ""
        for run in range(runs + 1):  # the first load (a cold browser cache) is not counted
            got: dict[str, list[float]] = {k: [] for k in out}
            await page.goto("about:blank")
            await page.goto(f"{base}/#market/{CODE}")
            got["paint"].append(await _mark(page, "market:chart-drawn"))
            candles = await page.get_attribute("#market-chart", "data-candles") or ""
            # the common indicators, computed ahead after the first paint: a pick redraws without a request
            await _mark(page, "market:indicators-ahead")
            for key in PRESET_PICKS:
                got["ahead"].append(
                    await _redraw(page, lambda key=key: page.select_option("#market-indicator-add", key))
                )
            # catalogue entries: the strategy service computes each, then the chart redraws
            for key in CATALOGUE_PICKS:
                await page.wait_for_selector(f"#market-indicator-add option[value='{key}']", state="attached")
                got["server"].append(
                    await _redraw(page, lambda key=key: page.select_option("#market-indicator-add", key))
                )
            for key in ("RSI", *CATALOGUE_PICKS):
                got["remove"].append(
                    await _redraw(page, lambda key=key: page.click(f"[data-indicator='{key}'] button"))
                )
            if run:
                for k, values in got.items():
                    out[k].extend(values)
        await browser.close()
    print(f"chart: {candles} daily candles of {CODE}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lh-bench-market-") as work, standalone_process(Path(work)) as platform:
        base, password = platform
        series = ten_year_series(date.today())
        rows = asyncio.run(load_into_data_service(f"sqlite+aiosqlite:///{work}/data.db", series))
        print(f"loaded {rows} bars of {CODE} ({series.trade_days[0]} .. {series.trade_days[-1]})")
        figures = asyncio.run(measure(base, password, args.runs))
    aims = {"paint": 1000.0, "ahead": 100.0, "server": 100.0, "remove": 100.0}
    titles = {
        "paint": "first meaningful paint, 10-year daily chart",
        "ahead": "redraw after adding MACD/KDJ/RSI (computed ahead)",
        "server": f"redraw after adding {'/'.join(CATALOGUE_PICKS)} (the server computes)",
        "remove": "redraw after removing an indicator",
    }
    for key, values in figures.items():
        print(
            f"{titles[key]}: n={len(values)} p50 {median(values):.0f} ms, p99 {percentile(values, 0.99):.0f} ms "
            f"(aim < {aims[key]:.0f} ms)"
        )


if __name__ == "__main__":
    main()
