"""`make run`'s paper trading on the replay feed's quotes (LH_PAPER_FILLS=quotes), through the whole platform in one
process: a trader places a limit buy below the market at 09:31 of the demo's last session; it rests; when the
replayed market comes down to its price (the intraday path's low, at a moment the test moves the market clock to)
it fills at the quoted ask, and the trader reads it back filled. The market clock is a replay clock the test steps,
so the feed's rounds (and what they quote) are known in advance from the replay's own path of the day."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lianghua.standalone import build_app
from services.data.realtime.replay import IntradayPath
from shared.core.domain import from_fen
from shared.platform.clock import EXCHANGE_TZ, ReplayClock
from shared.platform.settings import Mode, Settings
from tests.e2e.flow import Session, create_user, login

pytestmark = pytest.mark.e2e
BASE = "http://gateway.test"
DAY = date(2024, 12, 31)  # the demo's last session, where `make run` parks its replay clock
OPEN = datetime(2024, 12, 31, 9, 30, tzinfo=EXCHANGE_TZ)


class SteppedClock(ReplayClock):
    """A replay clock on DAY whose time the test sets (every service and the replay feed read it)."""

    def __init__(self, at: datetime) -> None:
        super().__init__(DAY)
        self.moment = at.astimezone(UTC)

    def now(self) -> datetime:
        return self.moment


async def _until(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Session, Any, SteppedClock]]:
    password = secrets.token_urlsafe(12)
    settings = Settings(
        mode=Mode.STANDALONE,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db",
        admin_password=password,
        rate_limit_per_minute=1_000_000,
        market_clock="replay",
        paper_fills="quotes",
        quotes_feed="replay",
    )
    clock = SteppedClock(OPEN + timedelta(minutes=1))
    host = build_app(settings, clock=clock)
    transport = httpx.ASGITransport(app=host)
    async with (
        host.router.lifespan_context(host),
        httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as client,
    ):
        admin = await login(client, BASE, "admin", password)
        name, pw = await create_user(client, admin, "trader")
        yield client, await login(client, BASE, name, pw), host, clock


async def test_a_limit_buy_below_the_market_fills_when_the_replayed_quotes_reach_it(
    platform: tuple[httpx.AsyncClient, Session, Any, SteppedClock],
) -> None:
    client, trader, host, clock = platform
    feed = host.state.services["data"].state.feed
    securities = (await client.get("/api/v1/securities", headers=trader.headers)).json()
    main = {s["ts_code"] for s in securities if s["board"] == "main" and not s["is_st"]}
    # a main-board stock on an up day (its path goes down to the low first, between 09:50 and 11:09) that is at
    # least 4 fen above its low at 09:31
    path: IntradayPath = next(
        p
        for p in await feed.paths(DAY)
        if p.bar.ts_code in main and p.bar.close >= p.bar.open and p.price(60) >= p.bar.low + 4
    )
    code, low = path.bar.ts_code, path.bar.low
    first_low_second = path.waypoints[1][0]
    assert path.waypoints[1][1] == low

    async def quoted_at(at: datetime) -> dict[str, Any] | None:
        answer = await client.get(f"/api/v1/quotes/{code}/live", headers=trader.headers)
        body: dict[str, Any] = answer.json()
        return body if answer.status_code == 200 and datetime.fromisoformat(body["time"]) == at else None

    now = OPEN + timedelta(minutes=1)
    quote = await _until(lambda: quoted_at(now), "the 09:31 quote")
    assert quote["ask"][0]["price"] == str(from_fen(path.price(60) + 1))  # the best ask: a fen above the last

    # 100 shares at the low + 0.02: below the 09:31 best ask (at least the low + 0.05), so it rests
    limit = from_fen(low + 2)
    order = {"client_order_id": f"e2e-{secrets.token_hex(6)}", "ts_code": code, "side": "buy",
             "order_type": "limit", "qty": 100, "price": str(limit)}  # fmt: skip
    placed = await client.post("/api/v1/orders", json=order, headers=trader.headers)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order"]["order_id"]
    assert placed.json()["order"]["status"] == "submitted"

    # a minute later the market is still above it: still resting
    clock.moment = (now + timedelta(minutes=1)).astimezone(UTC)
    await _until(lambda: quoted_at(now + timedelta(minutes=1)), "the 09:32 quote")
    resting = (await client.get(f"/api/v1/orders/{order_id}", headers=trader.headers)).json()
    assert (resting["status"], resting["filled_qty"]) == ("submitted", 0)

    # the market at its low: the best ask is the low + 0.01, with at least a lot on it: the order fills there
    at_low = OPEN + timedelta(seconds=first_low_second)
    clock.moment = at_low.astimezone(UTC)
    await _until(lambda: quoted_at(at_low), "the quote at the day's low")

    async def filled() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/api/v1/orders/{order_id}", headers=trader.headers)).json()
        return body if body["status"] == "filled" else None

    done = await _until(filled, "the order filled")
    assert done["filled_qty"] == 100
    assert str(done["avg_fill_price"]) == str(from_fen(low + 1))
    trades = (await client.get("/api/v1/trades", params={"order_id": order_id}, headers=trader.headers)).json()
    [trade] = [t for t in trades if t["order_id"] == order_id]
    assert (trade["qty"], str(trade["price"])) == (100, str(from_fen(low + 1)))
    assert datetime.fromisoformat(trade["traded_at"]) == at_low
