"""The Market page in a browser, against one standalone platform, as a trader uses it: find a stock by its pinyin
initials, open it, read its chart (one candle per bar the data API gives for the range, the days closed at the limit
marked, the trader's own fill marked at its price), add MACD and see its pane, read the quote box, switch to English,
and press Trade to get the desk's ticket with the code. Nothing leaves this machine."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Page

from tests.e2e.browser.conftest import OfflineContext, log_in
from tests.e2e.flow import create_user, login, place_order_and_see_the_fill, tradable_main_board_stock

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[3] / "var" / "screenshots"
# The demo market's first tradable main-board stock, and its name's initials worked out by hand:
# 岚 lán, 岳 yuè, 置 zhì, 业 yè.
STOCK_NAME = "岚岳置业"
INITIALS = "lyzy"
FEN = Decimal("0.01")
CHART = "document.getElementById('market-chart')"
EXTENT = "c.getModel().getComponent('xAxis', 0).axis.scale.getExtent()"  # the days an x axis shows (by index)


def _ten_years_back(today: date) -> date:
    # as the page's Date.setFullYear(year - 10): 29 February rolls over to 1 March
    try:
        return today.replace(year=today.year - 10)
    except ValueError:
        return date(today.year - 10, 3, 1)


def _closed_at_limit(bars: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Main board, not ST: the limits are 10 % around the bar's pre_close, half up to the fen."""
    hits = []
    for b in bars:
        pre = Decimal(b["pre_close"])
        up = (pre * Decimal("1.10")).quantize(FEN, rounding=ROUND_HALF_UP)
        down = (pre * Decimal("0.90")).quantize(FEN, rounding=ROUND_HALF_UP)
        close = Decimal(b["close"])
        if close == up:
            hits.append((b["trade_date"], "up"))
        elif close == down:
            hits.append((b["trade_date"], "down"))
    return hits


async def _chart(page: Page, expression: str) -> Any:
    return await page.evaluate(f"() => {{ const c = echarts.getInstanceByDom({CHART}); const o = c.getOption(); "
                               f"return {expression}; }}")  # fmt: skip


async def _pane(page: Page, key: str, expression: str) -> Any:
    """`expression` over the chart of the indicator pane `key` (c: the ECharts instance, o: its option)."""
    node = f"document.querySelector('#market-panes [data-pane=\"{key}\"]')"
    return await page.evaluate(f"() => {{ const c = echarts.getInstanceByDom({node}); const o = c.getOption(); "
                               f"return {expression}; }}")  # fmt: skip


def _ema_dif(closes: list[float]) -> list[float]:
    fast = slow = closes[0]
    out = []
    for c in closes:
        fast += (c - fast) * 2 / 13
        slow += (c - slow) * 2 / 27
        out.append(fast - slow)
    return out


def _socket_frame(frame: str | bytes, subscribed: list[list[str]], quoted: list[str]) -> None:
    event = json.loads(frame)
    if event.get("type") == "ws.subscribed":
        subscribed.append(event["payload"]["codes"])
    elif event.get("type") == "quotes.snapshot":
        quoted.extend(q["ts_code"] for q in event["payload"].get("quotes") or [])


async def _subscribed(subscribed: list[list[str]], check: Callable[[list[str]], bool]) -> None:
    """Wait until the socket's latest subscription (as the gateway answered it) passes `check`."""
    deadline = time.monotonic() + 10
    while not (subscribed and check(subscribed[-1])):
        assert time.monotonic() < deadline, f"the socket's codes: {subscribed[-1:]}"
        await asyncio.sleep(0.05)


async def test_find_a_stock_read_its_chart_and_trade_it(standalone: tuple[str, str], offline: OfflineContext) -> None:
    base, password = standalone
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", password)
        username, user_password = await create_user(client, admin, "trader")
        trader = await login(client, base, username, user_password)
        stock = await tradable_main_board_stock(client, trader)
        code = stock["ts_code"]
        assert stock["name"] == STOCK_NAME
        deadline = time.monotonic() + 30
        while (await client.get(f"{base}/api/v1/quotes/{code}/live", headers=trader.headers)).status_code != 200:
            assert time.monotonic() < deadline, "no live quote from the replay feed"
            await asyncio.sleep(0.2)
        seen = await place_order_and_see_the_fill(client, trader)
        fill = seen["fill"]["payload"]
        assert fill["ts_code"] == code
        today = date.today()
        bars = (
            await client.get(
                f"{base}/api/v1/bars",
                params={"ts_code": code, "start": _ten_years_back(today).isoformat(), "end": today.isoformat()},
                headers=trader.headers,
            )
        ).json()["bars"]
        live = (await client.get(f"{base}/api/v1/quotes/{code}/live", headers=trader.headers)).json()
        listed = (await client.get(f"{base}/api/v1/securities", headers=trader.headers)).json()
        other = next(s["ts_code"] for s in listed if s["ts_code"] != code)

    errors: list[str] = []
    page = await offline.context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    # what the gateway says this tab's socket is subscribed to (each `ws.subscribed` answer), and the codes quoted
    subscribed: list[list[str]] = []
    quoted: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: _socket_frame(frame, subscribed, quoted)))
    await log_in(page, base, username, user_password)
    await page.click("#nav-market")
    await page.wait_for_selector("#market-view:not(.d-none)")
    await page.fill("#market-search", INITIALS)
    result = page.locator(f"#market-results [data-code='{code}']")
    await result.wait_for(timeout=10_000)
    assert STOCK_NAME in await result.inner_text()
    await result.click()
    assert page.url.endswith(f"#market/{code}")
    await page.wait_for_selector("#market-chart[data-candles]:not([data-candles='0'])", timeout=20_000)

    # one candle per bar of the range, drawn red-up / green-down, in the bars' order
    assert await page.get_attribute("#market-chart", "data-candles") == str(len(bars))
    assert await _chart(page, "o.series[0].data.length") == len(bars)
    assert await _chart(page, "o.xAxis[0].data[o.xAxis[0].data.length - 1]") == bars[-1]["trade_date"]
    first = bars[0]
    assert await _chart(page, "o.series[0].data[0]") == [float(first[k]) for k in ("open", "close", "low", "high")]
    assert await _chart(page, "[o.series[0].itemStyle.color, o.series[0].itemStyle.color0]") == ["#dc3545", "#198754"]
    # the days closed at a limit, worked out here from the bars by the 10 % rule
    marks = await _chart(page, "o.series[0].markPoint.data.map(m => [m.coord[0], m.itemStyle.color])")
    expected = [(d, "#dc3545" if hit == "up" else "#198754") for d, hit in _closed_at_limit(bars)]
    assert [tuple(m) for m in marks] == expected
    # the trader's own fill: a red (buy) triangle on its day, at its price
    traded_day = datetime.fromisoformat(fill["traded_at"]).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    await page.wait_for_selector("#market-chart[data-trades='1']", timeout=10_000)
    trades = await _chart(page, "o.series.filter(s => s.name === 'trades')[0].data")
    assert [(p["value"], p["itemStyle"]["color"]) for p in trades] == [([traded_day, float(fill["price"])], "#dc3545")]
    assert f"{len(bars):,}" in await page.inner_text("#market-chart-note")

    # MACD from the catalogue: a pane of its own under the volume, drawn from the server's series
    assert await page.get_attribute("#market-chart", "data-panes") == "0"
    chart_id = await page.evaluate(f"() => echarts.getInstanceByDom({CHART}).id")
    await page.select_option("#market-indicator-add", "MACD")
    await page.wait_for_selector("#market-chart[data-panes='1']", timeout=10_000)
    # a pane is a chart of its own under the volume: the candles' chart is not redrawn, and keeps the MA overlay
    assert await page.get_attribute("#market-chart", "data-redraw") == "panes"
    assert await _chart(page, "o.grid.length") == 2
    assert await page.evaluate(f"() => echarts.getInstanceByDom({CHART}).id") == chart_id
    assert "MA5" in await _chart(page, "o.series.map(s => s.name)")
    assert await _pane(page, "MACD", "o.xAxis[0].data.length") == len(bars)
    assert await _pane(page, "MACD", "o.xAxis[0].data[o.xAxis[0].data.length - 1]") == bars[-1]["trade_date"]
    names = await _pane(page, "MACD", "o.series.map(s => s.name)")
    assert {"MACD dif", "MACD dea", "MACD macd"} == set(names)
    colours = await _pane(page, "MACD", "o.series.filter(s => s.type === 'line').map(s => s.color)")
    assert len(colours) == 2 and len(set(colours)) == 2
    assert await _pane(page, "MACD", "o.series.find(s => s.name === 'MACD dif').data.length") == len(bars)
    macd = await _pane(page, "MACD", "o.series.map(s => [s.name, s.data])")
    # MACD_CN's DIF is EMA12 - EMA26 of the closes (seeded with the first close): worked out here, to a float's noise
    dif = _ema_dif([float(b["close"]) for b in bars])
    drawn_dif = next(d for name, d in macd if name == "MACD dif")
    assert drawn_dif[-1] == pytest.approx(dif[-1], abs=1e-6)
    # the pane opens on the window the candles show, then follows the zoom both ways
    n = len(bars)
    assert await _pane(page, "MACD", EXTENT) == [max(0, n - 250), n - 1]
    assert await _chart(page, EXTENT) == [max(0, n - 250), n - 1]
    await _chart(page, "c.dispatchAction({type: 'dataZoom', dataZoomId: 'zoom-slider', startValue: 10, endValue: 59})")
    assert await _pane(page, "MACD", EXTENT) == [10, 59]
    await _pane(
        page, "MACD", "c.dispatchAction({type: 'dataZoom', dataZoomId: 'zoom-inside', startValue: 20, endValue: 89})"
    )
    assert await _chart(page, "[0, 1].map(i => c.getModel().getComponent('xAxis', i).axis.scale.getExtent())") == [
        [20, 89], [20, 89]
    ]  # fmt: skip
    # the crosshair's day followed from the candles into the pane, and from the pane onto the candles
    shown = (
        "Object.values(c.getModel().getComponent('axisPointer').coordSysAxesInfo.axesInfo)"
        ".filter(a => a.axis.dim === 'x').map(a => [a.axisPointerModel.option.value, a.axisPointerModel.option.status])"
    )
    await _chart(page, "c.dispatchAction({type: 'updateAxisPointer', currTrigger: 'mousemove', "
                       "x: c.convertToPixel({xAxisIndex: 0}, 42), y: 150})")  # fmt: skip
    assert await _pane(page, "MACD", shown) == [[42, "show"]]
    await _pane(page, "MACD", "c.dispatchAction({type: 'updateAxisPointer', currTrigger: 'mousemove', "
                              "x: c.convertToPixel({xAxisIndex: 0}, 61), y: 60})")  # fmt: skip
    assert await _chart(page, shown) == [[61, "show"], [61, "show"]]
    await _pane(page, "MACD", "c.dispatchAction({type: 'updateAxisPointer', currTrigger: 'leave'})")
    assert await _chart(page, shown) == [[61, "hide"], [61, "hide"]]

    # BOLL on the candles: added in place (ECharts given the new series only), in colours of their own
    await page.select_option("#market-indicator-add", "BOLL")
    await page.wait_for_selector("#market-chart[data-redraw='added']", timeout=10_000)
    names = await _chart(page, "o.series.map(s => s.name)")
    assert names[:3] == ["K", "成交量", "成交量"] and {"MA5", "MA10", "MA20"} <= set(names)
    assert sum(1 for name in names if name.startswith("BOLL")) == 3
    colours = await _chart(page, "o.series.filter(s => s.type === 'line').map(s => s.color)")
    assert len(colours) == 6 and len(set(colours)) == 6
    assert await _chart(page, "o.series[0].data[0]") == [float(first[k]) for k in ("open", "close", "low", "high")]
    await page.click("[data-indicator='BOLL'] button")
    await page.wait_for_selector("#market-chart[data-redraw='replaced']", timeout=10_000)
    assert not any(name.startswith("BOLL") for name in await _chart(page, "o.series.map(s => s.name)"))
    assert await page.get_attribute("#market-chart", "data-panes") == "1"

    await page.click("[data-indicator='MACD'] button")
    await page.wait_for_selector("#market-chart[data-panes='0']", timeout=10_000)
    assert await page.locator("[data-pane]").count() == 0
    assert "MA5" in await _chart(page, "o.series.map(s => s.name)")
    # picked again: the pane is back under the volume with the same values, the candles' chart the same
    await page.select_option("#market-indicator-add", "MACD")
    await page.wait_for_selector("#market-chart[data-panes='1']", timeout=10_000)
    assert await _pane(page, "MACD", "o.series.map(s => [s.name, s.data])") == macd
    assert await _chart(page, "o.series[0].data.length") == len(bars)
    assert await page.evaluate(f"() => echarts.getInstanceByDom({CHART}).id") == chart_id
    await page.click("[data-indicator='MACD'] button")
    await page.wait_for_selector("#market-chart[data-panes='0']", timeout=10_000)

    # reloaded on its address, the page draws the default MA with the candles at once (it is shown before it starts):
    # drawn whole, or drawn whole and then again in place with the same series (a second show() after the start
    # redraws what is there: "panes") — never with MA added afterwards ("added")
    await page.reload()
    await page.wait_for_selector("#market-chart[data-candles]:not([data-candles='0'])", timeout=20_000)
    assert await page.get_attribute("#market-chart", "data-redraw") in ("whole", "panes")
    assert {"MA5", "MA10", "MA20"} <= set(await _chart(page, "o.series.map(s => s.name)"))
    assert await page.locator("#market-indicators [data-indicator]").count() == 1

    # The socket's quotes are shared with the desk: the trader holds `code` (the fill), so opening another stock here,
    # then leaving the page, keeps `code` subscribed (the desk revalues the position with it).
    await page.goto(f"{base}/#market/{other}")
    await _subscribed(subscribed, lambda codes: other in codes and code in codes)
    await page.click("#nav-desk")
    await page.wait_for_selector("#desk-view:not(.d-none)")
    await _subscribed(subscribed, lambda codes: other not in codes and code in codes)
    quoted.clear()
    deadline = time.monotonic() + 30
    while code not in quoted:
        assert time.monotonic() < deadline, f"no quote of the held {code} after leaving the Market page"
        await asyncio.sleep(0.1)
    await page.click("#nav-market")
    await _subscribed(subscribed, lambda codes: other in codes and code in codes)
    await page.goto(f"{base}/#market/{code}")
    await page.wait_for_selector("#market-chart[data-candles]:not([data-candles='0'])", timeout=20_000)

    # the quote box: the day's limits as the live quote gives them, in their colours
    assert await page.inner_text("#market-limit-up") == live["limit_up"]
    assert await page.inner_text("#market-limit-down") == live["limit_down"]
    assert "return-up" in (await page.get_attribute("#market-limit-up", "class") or "")
    assert await page.locator("#market-bid-1").count() == 1 and await page.locator("#market-ask-5").count() == 1

    await page.click("#lang-switch")
    assert await page.inner_text("#market-trade") == "Trade"
    # the note is rewritten in English as the chart is drawn again (with the bars, if still loading)
    await page.wait_for_function(
        "() => document.getElementById('market-chart-note').textContent.includes('daily candles')"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "market.png"), full_page=True)

    # Trade: the desk's ticket with the code
    await page.click("#market-trade")
    await page.wait_for_selector("#desk-view:not(.d-none)")
    assert await page.input_value("#order-ts-code") == code
    await page.click("#lang-switch")  # back to Chinese for the next test in this browser
    assert offline.blocked == []
    assert errors == []


async def test_the_market_reads_refuse_bad_input(standalone: tuple[str, str]) -> None:
    base, password = standalone
    async with httpx.AsyncClient(timeout=30) as client:
        viewer_name, viewer_password = await create_user(client, await login(client, base, "admin", password), "viewer")
        viewer = await login(client, base, viewer_name, viewer_password)
        code = (await tradable_main_board_stock(client, viewer))["ts_code"]
        series = f"{base}/api/v1/indicators/series"
        ask = {"ts_code": code, "start": "2024-01-01", "end": "2024-12-31"}

        ok = await client.post(series, json={**ask, "indicators": [{"name": "SMA", "params": {"timeperiod": 3}}]},
                               headers=viewer.headers)  # fmt: skip
        assert ok.status_code == 200, ok.text
        body = ok.json()
        bars = (await client.get(f"{base}/api/v1/bars", params=ask | {"ts_code": code}, headers=viewer.headers)).json()
        closes = [Decimal(b["close"]) for b in bars["bars"]]
        assert body["dates"] == [b["trade_date"] for b in bars["bars"]]
        sma = body["series"][0]["outputs"]["real"]
        assert sma[:2] == [None, None]
        assert sma[2] == pytest.approx(float(sum(closes[:3]) / 3)) and len(sma) == len(closes)

        refused = {
            "unknown indicator": ({**ask, "indicators": [{"name": "BBAND"}]}, 404, "unknown_indicator"),
            "bad parameter": ({**ask, "indicators": [{"name": "MA", "params": {"timeperiod": 0}}]}, 422, "invalid_request"),
            "bool parameter": ({**ask, "indicators": [{"name": "MA", "params": {"timeperiod": True}}]}, 422, "invalid_request"),
            "unknown field": ({**ask, "indicators": [{"name": "MA"}], "adjust": "qfq"}, 422, "invalid_request"),
            "no indicators": ({**ask, "indicators": []}, 422, "invalid_request"),
            "backwards range": ({**ask, "start": "2025-01-01", "indicators": [{"name": "MA"}]}, 422, "invalid_request"),
            "bad code": ({**ask, "ts_code": "600000.XX", "indicators": [{"name": "MA"}]}, 422, "invalid_request"),
        }  # fmt: skip
        for what, (payload, status, error) in refused.items():
            answer = await client.post(series, json=payload, headers=viewer.headers)
            assert (answer.status_code, answer.json()["code"]) == (status, error), what

        search = f"{base}/api/v1/securities/search"
        assert (await client.get(search, params={"q": ""}, headers=viewer.headers)).status_code == 422
        assert (await client.get(search, params={"q": "x" * 21}, headers=viewer.headers)).status_code == 422
        assert (await client.get(search, params={"q": "a", "limit": 51}, headers=viewer.headers)).status_code == 422
        assert (await client.get(search, params={"q": "lyzy"})).status_code == 401
        limits = f"{base}/api/v1/bars/limits"
        listed = {s["ts_code"] for s in (await client.get(f"{base}/api/v1/securities", headers=viewer.headers)).json()}
        absent = next(c for c in ("601999.SH", "601998.SH", "601997.SH") if c not in listed)
        unknown = await client.get(limits, params=ask | {"ts_code": absent}, headers=viewer.headers)
        assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_security")
        assert (
            await client.get(f"{base}/api/v1/trades", params={"ts_code": "nope"}, headers=viewer.headers)
        ).status_code == 422
