"""Paper trading on a replayed market: risk and execution share one replay clock (standalone mode, where a replay
runs: SQLite files and the in-memory bus), the paper broker matches each order at the replayed session's own bar, and
"today" (T+1, fees by date, day-order expiry) is the replayed session. The data service is a fake serving hand-made
bars and the session quotes worked out from them by hand; every amount below is worked out by hand too."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.execution.app import create_app as create_execution_app
from services.risk.app import create_app as create_risk_app
from shared.core.market.calendar import is_trading_day
from shared.platform.app import Infra
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.clock import MarketClock, RealClock, ReplayClock, ShiftedClock
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, service_headers, verify_internal_token
from shared.platform.quotes import ReferenceQuotes
from shared.platform.settings import Settings
from tests.integration.execution.order_path_harness import (
    NOW_SESSION,
    QUOTES,
    FakeStrategyService,
    headers,
    limit_buy,
    now_session,
    quote,
    signed_order,
    trader,
)
from tests.support.positions import held

# (ts_code, day) -> open, high, low, close, vol (shares), amount (CNY). 000001.SZ has no bar on 2024-03-04
# (suspended); 600036.SH opens 2024-03-04 at its limit-up (11.00 = 10.00 x 1.1).
BARS: dict[tuple[str, str], tuple[str, str, str, str, int, str]] = {
    ("600000.SH", "2023-06-01"): ("10.00", "10.20", "9.95", "10.10", 1_000_000, "10050000.00"),
    ("600000.SH", "2023-06-02"): ("10.20", "10.30", "10.05", "10.25", 1_000_000, "10180000.00"),
    ("600000.SH", "2024-03-04"): ("10.20", "10.60", "10.05", "10.50", 2_000_000, "20800000.00"),
    ("600000.SH", "2024-03-05"): ("10.40", "10.70", "10.30", "10.60", 1_500_000, "15750000.00"),
    ("600036.SH", "2024-03-04"): ("11.00", "11.00", "10.80", "10.95", 500_000, "5450000.00"),
    ("000001.SZ", "2024-03-05"): ("12.10", "12.30", "12.00", "12.20", 800_000, "9720000.00"),
    ("601398.SH", "2024-03-04"): ("5.10", "5.20", "5.05", "5.15", 100_000, "513000.00"),
    ("600030.SH", "2024-03-04"): ("10.00", "10.10", "9.90", "10.00", 1_000_000, "10000000.00"),
    ("600030.SH", "2024-03-05"): ("4.80", "4.90", "4.70", "4.85", 2_000_000, "9700000.00"),
}
# (ts_code, day) -> adj_factor, pre_close where not 1 and 0.00. 600030.SH goes ex on 2024-03-05: 10 bonus shares per
# 10 held and 0.50 CNY a share in cash, so its reference price is (10.00 - 0.50) / 2 = 4.75 and Tushare's backward
# factor rises by 10.00 / 4.75 = 2.105263 (6 places).
FACTORS: dict[tuple[str, str], tuple[str, str]] = {
    ("600030.SH", "2024-03-04"): ("1.000000", "10.00"),
    ("600030.SH", "2024-03-05"): ("2.105263", "4.75"),
}


def _session_quote(code: str, day: str, last_day: str, last_close: str, up: str, down: str, **kw: Any) -> Any:
    return quote(code, last_close, up, down, last_trade_date=last_day, next_trade_date=day, **kw)


# The quotes as the data stood before each session: the last close before it, main-board limits of +-10% (half-up).
SESSION_QUOTES = {
    # 9.90 x 1.1 = 10.89, x 0.9 = 8.91
    ("600000.SH", "2023-06-01"): _session_quote("600000.SH", "2023-06-01", "2023-05-31", "9.90", "10.89", "8.91"),
    # 10.10 x 1.1 = 11.11, x 0.9 = 9.09
    ("600000.SH", "2023-06-02"): _session_quote("600000.SH", "2023-06-02", "2023-06-01", "10.10", "11.11", "9.09"),
    # 9.80 x 1.1 = 10.78, x 0.9 = 8.82: below the latest quote's 11.00
    ("600000.SH", "2024-03-04"): _session_quote("600000.SH", "2024-03-04", "2024-03-01", "9.80", "10.78", "8.82"),
    # 10.50 x 1.1 = 11.55, x 0.9 = 9.45
    ("600000.SH", "2024-03-05"): _session_quote("600000.SH", "2024-03-05", "2024-03-04", "10.50", "11.55", "9.45"),
    ("600036.SH", "2024-03-04"): _session_quote("600036.SH", "2024-03-04", "2024-03-01", "10.00", "11.00", "9.00"),
    ("000001.SZ", "2024-03-04"): _session_quote(
        "000001.SZ", "2024-03-04", "2024-03-01", "12.00", "13.20", "10.80", suspended=True
    ),
    ("000001.SZ", "2024-03-05"): _session_quote("000001.SZ", "2024-03-05", "2024-03-01", "12.00", "13.20", "10.80"),
    ("601398.SH", "2024-03-04"): _session_quote("601398.SH", "2024-03-04", "2024-03-01", "5.00", "5.50", "4.50"),
    ("600030.SH", "2024-03-04"): _session_quote("600030.SH", "2024-03-04", "2024-03-01", "10.00", "11.00", "9.00"),
    # limits from the ex-date's reference price 4.75: x 1.1 = 5.225 -> 5.23, x 0.9 = 4.275 -> 4.28
    ("600030.SH", "2024-03-05"): _session_quote("600030.SH", "2024-03-05", "2024-03-04", "10.00", "5.23", "4.28"),
}


def _open(day: date) -> bool:
    """A trading day of the built-in calendar; a day beyond what it covers is none (a calendar not loaded yet)."""
    try:
        return is_trading_day(day)
    except ValueError:
        return False


class ReplayData:
    """The data service's quotes and reference data (latest and `?session=`), bars (one symbol's, a day's
    cross-section) and calendar, from the tables above. The latest reference data's version is a digest of the
    latest quotes (tests change them: `test_paper_sessions.bars_in`); a session's never changes."""

    def __init__(self, internal_secret: str) -> None:
        self.app = FastAPI()
        self.session_quotes_asked: list[tuple[str, str]] = []
        self.many_bars_asked: list[tuple[str, str, str]] = []  # (ts_codes, start, end) of each /v1/bars/many
        self.reference_sessions_asked: list[str | None] = []
        self.complete_through: str | None = None  # the newest day whose bars are in, in full (the calendar says)

        def caller(request: Request) -> None:
            verify_internal_token(internal_secret, request.headers.get(INTERNAL_HEADER, ""))

        @self.app.get("/v1/quotes/{ts_code}")
        async def get_quote(ts_code: str, request: Request, session: str | None = None) -> JSONResponse:
            caller(request)
            if session is None:
                body = QUOTES.get(ts_code)
                if body is not None and body.get("next_trade_date") == NOW_SESSION:
                    body = {**body, "next_trade_date": now_session()}
            else:
                self.session_quotes_asked.append((ts_code, session))
                body = SESSION_QUOTES.get((ts_code, session))
            if body is None:
                return JSONResponse({"code": "unknown_security", "message": ts_code}, status_code=404)
            return JSONResponse(body)

        @self.app.get("/v1/reference")
        async def get_reference(request: Request, session: str | None = None) -> JSONResponse:
            caller(request)
            self.reference_sessions_asked.append(session)
            if session is None:
                rows = list(QUOTES.values())
                version = int(hashlib.sha256(json.dumps(QUOTES, sort_keys=True).encode()).hexdigest()[:12], 16)
            else:
                rows = [q for (_, day), q in sorted(SESSION_QUOTES.items()) if day == session]
                version = 1
            body = {"data_version": version, "session": session, "next_trade_date": session or "2024-03-04",
                    "securities": [{**row, "industry": None, "avg_vol_20d": None} for row in rows]}  # fmt: skip
            return JSONResponse(body, headers={"ETag": f'"v{version}"'})

        @self.app.get("/v1/cross-section")
        async def get_cross_section(trade_date: date, request: Request) -> JSONResponse:
            caller(request)
            rows = []
            for (code, day), (o, h, low, c, vol, amount) in sorted(BARS.items()):
                if day == trade_date.isoformat():
                    factor, pre_close = FACTORS.get((code, day), ("1", "0.00"))
                    rows.append({"ts_code": code, "open": o, "high": h, "low": low, "close": c, "pre_close": pre_close,
                                 "vol": vol, "amount": amount, "adj_factor": factor, "up_limit": None,
                                 "down_limit": None})  # fmt: skip
            return JSONResponse({"trade_date": trade_date.isoformat(), "bars": rows})

        def bars(ts_code: str, start: date, end: date) -> list[dict[str, Any]]:
            rows = []
            for (code, day), (o, h, low, c, vol, amount) in sorted(BARS.items()):
                if code == ts_code and start <= date.fromisoformat(day) <= end:
                    factor, pre_close = FACTORS.get((code, day), ("1", "0.00"))
                    rows.append({"trade_date": day, "open": o, "high": h, "low": low, "close": c,
                                 "pre_close": pre_close, "vol": vol, "amount": amount, "adj_factor": factor})  # fmt: skip
            return rows

        @self.app.get("/v1/bars")
        async def get_bars(ts_code: str, start: date, end: date, request: Request) -> JSONResponse:
            caller(request)
            return JSONResponse({"ts_code": ts_code, "bars": bars(ts_code, start, end)})

        @self.app.get("/v1/bars/many")
        async def get_many_bars(ts_codes: str, start: date, end: date, request: Request) -> JSONResponse:
            caller(request)
            self.many_bars_asked.append((ts_codes, str(start), str(end)))
            series = [{"ts_code": code, "bars": bars(code, start, end)} for code in sorted(ts_codes.split(","))]
            return JSONResponse({"start": str(start), "end": str(end), "adjust": "none", "series": series})

        @self.app.get("/v1/calendar")
        async def get_calendar(start: date, end: date, request: Request) -> JSONResponse:
            caller(request)
            days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
            open_days = [str(d) for d in days if _open(d)]
            return JSONResponse({"exchange": "SSE", "start": str(start), "end": str(end), "trading_days": open_days,
                                 "complete_through": self.complete_through})  # fmt: skip


@dataclass
class Replay:
    settings: Settings
    clock: MarketClock
    bus: MemoryBus
    data: ReplayData
    risk: httpx.AsyncClient
    execution: httpx.AsyncClient
    strategy: FakeStrategyService  # the sleeves of strategy instances, which their orders carry
    reference: list[ReferenceQuotes]  # risk's and execution's copies of the data service's reference data
    execution_app: FastAPI | None = None

    async def place(self, principal: Principal, **order: Any) -> httpx.Response:
        """Through risk, as the trader does."""
        return await self.risk.post("/v1/orders", json=order, headers=headers(self.settings, principal))

    async def submit(self, principal: Principal, **terms: Any) -> dict[str, Any]:
        """Straight to execution with an approval (what risk would forward)."""
        body = signed_order(self.settings, limit_buy(principal, **terms))
        response = await self.execution.post("/v1/orders", json=body, headers=headers(self.settings, principal))
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def next_session(self, day: str, *, as_service: str = "strategy") -> httpx.Response:
        return await self.execution.post(
            "/v1/paper/session",
            json={"session": day},
            headers=service_headers(self.settings.internal_secret, as_service),
        )

    async def get(self, principal: Principal, path: str) -> Any:
        response = await self.execution.get(path, headers=headers(self.settings, principal))
        assert response.status_code == 200, response.text
        return response.json()

    async def event_types(self, order_id: str, count: int) -> list[str]:
        """The order's events on the bus, once `count` of them are there (the outbox relay publishes after the
        answer; a loaded machine can take a moment), or what is there after 10 s."""
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            seen = [e.type for e in self.bus.published if e.payload.get("order_id") == order_id]
            if len(seen) >= count or asyncio.get_running_loop().time() > deadline:
                return seen
            await asyncio.sleep(0.02)


@asynccontextmanager
async def replay(tmp_path: Path, clock: MarketClock, **settings: Any) -> AsyncIterator[Replay]:
    """Risk and execution as standalone mode runs them: one bus, one cache, one clock."""
    config = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False, **settings)
    bus, cache = MemoryBus(), MemoryCache()
    data = ReplayData(config.internal_secret)
    to_data = httpx.ASGITransport(app=data.app)
    execution_app = create_execution_app(
        config, Infra(config, bus, cache, ServiceDirectory(config, {"data": to_data}), shared=True, clock=clock)
    )
    strategy = FakeStrategyService(config.internal_secret)
    directory = ServiceDirectory(
        config,
        {
            "data": to_data,
            "execution": httpx.ASGITransport(app=execution_app),
            "strategy": httpx.ASGITransport(app=strategy.app),
        },
    )
    risk_app = create_risk_app(config, Infra(config, bus, cache, directory, shared=True, clock=clock))
    async with (
        execution_app.router.lifespan_context(execution_app),
        risk_app.router.lifespan_context(risk_app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=risk_app), base_url="http://risk") as risk,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=execution_app), base_url="http://execution") as ex,
    ):
        await execution_app.state.desk.first_reconcile_done.wait()
        held = [risk_app.state.quotes, execution_app.state.broker.quotes.reference]
        yield Replay(config, clock, bus, data, risk, ex, strategy, held, execution_app)


def at(day: str, hh: int, mm: int) -> str:
    """A moment in Asia/Shanghai (UTC+8) as execution serves it (UTC, ISO 8601)."""
    shanghai = datetime.fromisoformat(f"{day}T{hh:02d}:{mm:02d}:00+08:00")
    return shanghai.astimezone(UTC).isoformat().replace("+00:00", "Z")


MARKET_BUY = {"client_order_id": "mb-1", "ts_code": "600000.SH", "side": "buy", "order_type": "market", "qty": 100}


async def test_a_replayed_sessions_buy_fills_at_its_open_and_is_sellable_the_next_session(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    ada = trader()
    async with replay(tmp_path, clock) as r:
        # Through risk -> execution -> the paper broker: filled at 2024-03-04's open, 10.20 (the latest quote's
        # close, 2024-12-31's, is 10.00). 100 x 10.20 = 1,020.00; commission 0.255 -> the 5.00 minimum; transfer
        # fee 0.0102 -> 0.01; no stamp duty on a buy.
        placed = await r.place(ada, **MARKET_BUY)
        assert placed.status_code == 201, placed.text
        order = placed.json()["order"]
        assert (order["status"], order["filled_qty"], order["avg_fill_price"]) == ("filled", 100, "10.20")
        [buy] = await r.get(ada, "/v1/trades")
        assert (buy["price"], buy["amount"], buy["commission"], buy["stamp_duty"], buy["transfer_fee"]) == (
            "10.20", "1020.00", "5.00", "0.00", "0.01"
        )  # fmt: skip
        assert buy["traded_at"] == at("2024-03-04", 9, 30) == "2024-03-04T01:30:00Z"
        # Risk and the broker asked for the replayed session's reference data (limits and the market buy's price
        # cap): once each for the session, not per order.
        assert r.data.reference_sessions_asked.count("2024-03-04") == 2

        # T+1 on the replayed day: not sellable on 2024-03-04; risk refuses the sell for it.
        assert held(await r.get(ada, "/v1/positions")) == [{"ts_code": "600000.SH", "qty": 100, "sellable_qty": 0}]
        sell = {**MARKET_BUY, "client_order_id": "ms-1", "side": "sell"}
        refused = await r.place(ada, **sell)
        assert refused.status_code == 422, refused.text
        assert [x["code"] for x in refused.json()["decision"]["reasons"]] == ["insufficient_position"]

        # The replay moves on: sellable on 2024-03-05, and the sell fills at that day's open, 10.40. 1,040.00:
        # commission 5.00, stamp duty 0.05% (from 2023-08-28) = 0.52, transfer fee 0.0104 -> 0.01.
        moved = await r.next_session("2024-03-05")
        assert moved.status_code == 200, moved.text
        assert moved.json() == {"session": "2024-03-05", "now": moved.json()["now"]}
        assert moved.json()["now"].startswith("2024-03-05T01:30:")
        assert held(await r.get(ada, "/v1/positions")) == [{"ts_code": "600000.SH", "qty": 100, "sellable_qty": 100}]
        sold = await r.place(ada, **{**sell, "client_order_id": "ms-2"})
        assert sold.status_code == 201, sold.text
        assert (sold.json()["order"]["status"], sold.json()["order"]["avg_fill_price"]) == ("filled", "10.40")
        sale = next(t for t in await r.get(ada, "/v1/trades") if t["side"] == "sell")
        assert (sale["amount"], sale["commission"], sale["stamp_duty"], sale["transfer_fee"]) == (
            "1040.00", "5.00", "0.52", "0.01"
        )  # fmt: skip
        assert sale["traded_at"] == at("2024-03-05", 9, 30)
        # 10,000,000.00 - (1,020.00 + 5.01) + (1,040.00 - 5.53) = 10,000,009.46
        account = await r.get(ada, "/v1/account")
        assert (account["balance"], account["reserved"]) == ("10000009.46", "0.00")


async def test_a_sell_on_a_2023_session_pays_the_stamp_duty_of_that_day(tmp_path: Path) -> None:
    clock = ReplayClock(date(2023, 6, 1))
    bo = trader()
    async with replay(tmp_path, clock) as r:
        bought = await r.place(bo, **MARKET_BUY)  # 100 x 10.00 (2023-06-01's open)
        assert bought.json()["order"]["avg_fill_price"] == "10.00", bought.text
        assert (await r.next_session("2023-06-02")).status_code == 200
        sold = await r.place(bo, **{**MARKET_BUY, "client_order_id": "ms-1", "side": "sell"})
        assert sold.status_code == 201, sold.text
        # 100 x 10.20 = 1,020.00 on 2023-06-02, before the 2023-08-28 cut: stamp duty 0.1% = 1.02 (0.05% would be
        # 0.51); commission 5.00; transfer fee 0.0102 -> 0.01.
        sale = next(t for t in await r.get(bo, "/v1/trades") if t["side"] == "sell")
        assert (sale["price"], sale["stamp_duty"], sale["commission"], sale["transfer_fee"], sale["fees"]) == (
            "10.20", "1.02", "5.00", "0.01", "6.03"
        )  # fmt: skip
        assert sale["traded_at"] == at("2023-06-02", 9, 30)


async def test_a_buy_of_a_symbol_opening_at_limit_up_is_cancelled(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    cy = trader()
    async with replay(tmp_path, clock) as r:
        placed = await r.place(cy, **{**MARKET_BUY, "ts_code": "600036.SH"})
        assert placed.status_code == 201, placed.text
        order = placed.json()["order"]
        assert (order["status"], order["filled_qty"]) == ("cancelled", 0)
        assert order["reason"].startswith("limit_up: ") and "2024-03-04" in order["reason"]
        assert await r.get(cy, "/v1/trades") == []
        # Its cash reservation (100 x 11.00 + fees) is released.
        assert (await r.get(cy, "/v1/account"))["reserved"] == "0.00"


async def test_a_suspended_symbols_order_rests_and_fills_on_the_next_session_it_trades(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    di = trader()
    async with replay(tmp_path, clock) as r:
        # Straight to execution: risk refuses orders for a suspended symbol, the broker's rule is what is tested.
        order = await r.submit(di, ts_code="000001.SZ", order_type="market", price=None, qty=100)
        assert (order["status"], order["filled_qty"]) == ("submitted", 0)
        # Its cash is reserved at the session's limit-up, 13.20 (the latest quote does not even know the symbol):
        # 1,320.00 + commission 5.00 + transfer fee 0.0132 -> 0.01.
        assert (await r.get(di, "/v1/account"))["reserved"] == "1325.01"
        # Still waiting after a background pass on the same session.
        await r.next_session("2024-03-04")
        assert (await r.get(di, f"/v1/orders/{order['order_id']}"))["status"] == "submitted"

        # 2024-03-05: it trades again; the order fills at its open, 12.10, stamped that day.
        assert (await r.next_session("2024-03-05")).status_code == 200
        after = await r.get(di, f"/v1/orders/{order['order_id']}")
        assert (after["status"], after["filled_qty"], after["avg_fill_price"]) == ("filled", 100, "12.10")
        [trade] = await r.get(di, "/v1/trades")
        # 1,210.00: commission 5.00, transfer fee 0.0121 -> 0.01.
        assert (trade["amount"], trade["fees"], trade["traded_at"]) == ("1210.00", "5.01", at("2024-03-05", 9, 30))
        assert await r.event_types(order["order_id"], 4) == [
            "order.accepted", "order.submitted", "trade.executed", "order.filled"
        ]  # fmt: skip


async def test_a_volume_capped_order_fills_in_part_and_the_rest_is_cancelled(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    ed = trader()
    async with replay(tmp_path, clock, paper_volume_cap="0.01") as r:
        # 1% of the bar's 100,000 shares = 1,000 of the 1,500 asked, at the open 5.10.
        placed = await r.place(ed, **{**MARKET_BUY, "ts_code": "601398.SH", "qty": 1500})
        assert placed.status_code == 201, placed.text
        order = placed.json()["order"]
        assert (order["status"], order["filled_qty"], order["avg_fill_price"]) == ("cancelled", 1000, "5.10")
        assert order["reason"].startswith("volume_cap: ")
        [trade] = await r.get(ed, "/v1/trades")
        # 5,100.00: commission 1.275 -> 5.00, transfer fee 0.051 -> 0.05.
        assert (trade["qty"], trade["amount"], trade["fees"]) == (1000, "5100.00", "5.05")
        assert await r.event_types(order["order_id"], 5) == [
            "order.accepted", "order.submitted", "trade.executed", "order.partially_filled", "order.cancelled"
        ]  # fmt: skip
        account = await r.get(ed, "/v1/account")
        assert (account["balance"], account["reserved"]) == ("9994894.95", "0.00")  # 10,000,000 - 5,105.05


async def test_a_limit_order_not_reached_rests_and_expires_when_the_session_moves(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    flo = trader()
    async with replay(tmp_path, clock) as r:
        # A buy at 10.10 where 2024-03-04 opens at 10.20: nothing trades, it rests as a day order.
        order = await r.submit(flo, qty=100, price="10.10")
        assert (order["status"], order["reason"]) == ("submitted", None)
        assert (await r.next_session("2024-03-05")).status_code == 200
        after = await r.get(flo, f"/v1/orders/{order['order_id']}")
        assert (after["status"], after["filled_qty"]) == ("cancelled", 0)
        assert after["reason"] == "expired: a day order still open at the close of 2024-03-04 (15:00 Asia/Shanghai)"
        assert (await r.get(flo, "/v1/account"))["reserved"] == "0.00"


async def test_close_fills_are_stamped_at_the_sessions_close(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    gus = trader()
    async with replay(tmp_path, clock, paper_fill_price="close") as r:
        placed = await r.place(gus, **MARKET_BUY)
        assert placed.json()["order"]["avg_fill_price"] == "10.50", placed.text  # 2024-03-04's close
        [trade] = await r.get(gus, "/v1/trades")
        assert trade["traded_at"] == at("2024-03-04", 15, 0) == "2024-03-04T07:00:00Z"


async def test_risk_checks_the_replayed_sessions_limits(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    hu = trader()
    async with replay(tmp_path, clock) as r:
        # 10.90 is inside the latest quote's limits (9.00 - 11.00) but above 2024-03-04's limit-up, 10.78.
        order = {**MARKET_BUY, "order_type": "limit", "price": "10.90"}
        refused = await r.place(hu, **order)
        assert refused.status_code == 422, refused.text
        [reason] = refused.json()["decision"]["reasons"]
        assert reason["code"] == "price_limit" and "10.78" in reason["message"]
        # At the limit-up itself it is accepted (and fills at the open, 10.20, below its limit).
        placed = await r.place(hu, **{**order, "client_order_id": "lb-2", "price": "10.78"})
        assert placed.status_code == 201, placed.text
        assert placed.json()["order"]["avg_fill_price"] == "10.20"


async def test_moving_the_replay_clock_is_for_services_on_trading_days_forward_only(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    ivy = trader()
    async with replay(tmp_path, clock) as r:
        as_trader = await r.execution.post(
            "/v1/paper/session", json={"session": "2024-03-05"}, headers=headers(r.settings, ivy)
        )
        assert (as_trader.status_code, as_trader.json()["code"]) == (403, "forbidden")
        weekend = await r.next_session("2024-03-09")
        assert (weekend.status_code, weekend.json()["code"]) == (422, "not_a_trading_day")
        assert weekend.json()["message"].startswith("session: ")
        earlier = await r.next_session("2024-03-01")
        assert (earlier.status_code, earlier.json()["code"]) == (409, "session_in_the_past")
        bad = await r.next_session("2024-3-5")
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
        extra = await r.execution.post(
            "/v1/paper/session",
            json={"session": "2024-03-05", "speed": 2},
            headers=service_headers(r.settings.internal_secret, "strategy"),
        )
        assert (extra.status_code, extra.json()["code"]) == (422, "invalid_request")
        assert clock.session() == date(2024, 3, 4)  # none of these moved it


@pytest.mark.parametrize(
    ("clock", "name"),
    [
        (RealClock(), "real"),
        (ShiftedClock(datetime(2024, 3, 4, 9, 31, tzinfo=timezone(timedelta(hours=8)))), "shifted"),
    ],
)
async def test_the_real_clock_has_no_session_to_set(tmp_path: Path, clock: MarketClock, name: str) -> None:
    async with replay(tmp_path, clock) as r:
        answer = await r.next_session("2024-03-05")
        assert (answer.status_code, answer.json()["code"]) == (409, "not_replay")
        assert f"(LH_MARKET_CLOCK={name})" in answer.json()["message"]


async def test_a_waiting_order_cancelled_by_its_trader_stays_cancelled_when_its_symbol_trades(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    jo = trader()
    async with replay(tmp_path, clock) as r:
        order = await r.submit(jo, ts_code="000001.SZ", order_type="market", price=None, qty=100)
        assert order["status"] == "submitted"
        cancelled = await r.execution.post(f"/v1/orders/{order['order_id']}/cancel", headers=headers(r.settings, jo))
        assert cancelled.status_code == 200, cancelled.text
        assert (await r.next_session("2024-03-05")).status_code == 200
        after = await r.get(jo, f"/v1/orders/{order['order_id']}")
        assert (after["status"], after["filled_qty"], after["reason"]) == ("cancelled", 0, "cancelled by the client")
        assert await r.get(jo, "/v1/trades") == []


# --- a strategy instance's own fill rules (paper_fill) ---------------------------------------------------------------

STRATEGY = Principal("svc:strategy", "service")
CLOSE_FILLS = {
    "fill_price": "close",
    "slippage": "none",
    "slippage_amount": "0",
    "volume_cap": None,
    "suspended_orders": "wait",
}


def instance_order(instance_id: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_order_id": f"{instance_id}-20240304-{len(kw)}",
        "ts_code": "600000.SH",
        "side": "buy",
        "order_type": "limit",
        "qty": 100,
        "price": "10.60",
        "strategy_instance_id": instance_id,
        "paper_fill": CLOSE_FILLS,
    }
    body.update(kw)
    return body


async def test_an_instance_order_fills_by_its_own_rules_while_a_persons_fills_by_the_platforms(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    ida = trader()
    async with replay(tmp_path, clock) as r:  # the platform's rules: the open (LH_PAPER_FILL_PRICE default)
        # Ida's own market buy: 2024-03-04's open, 10.20, at 09:30 (it also opens her account).
        mine = await r.place(ida, **MARKET_BUY)
        assert mine.status_code == 201, mine.text
        assert (mine.json()["order"]["avg_fill_price"], mine.json()["order"]["paper_fill"]) == ("10.20", None)

        # Her strategy instance's limit buy at 10.60, at the same moment, with its own rules (fill at the close):
        # 2024-03-04's close, 10.50, at 15:00. The open (10.20) would have filled it too: the rules decided.
        instance = r.strategy.add(ida.account_id)
        placed = await r.risk.post(
            "/v1/orders", json=r.strategy.order(instance_order(instance)), headers=headers(r.settings, STRATEGY)
        )
        assert placed.status_code == 201, placed.text
        order = placed.json()["order"]
        assert (order["status"], order["filled_qty"], order["avg_fill_price"]) == ("filled", 100, "10.50")
        assert order["paper_fill"] == CLOSE_FILLS  # served with the order, as sent
        listed = await r.get(ida, f"/v1/orders/{order['order_id']}")
        assert listed["paper_fill"] == CLOSE_FILLS

        trades = {t["order_id"]: t for t in await r.get(ida, "/v1/trades")}
        own, person = trades[order["order_id"]], trades[mine.json()["order"]["order_id"]]
        assert (person["price"], person["traded_at"]) == ("10.20", at("2024-03-04", 9, 30))
        # Fees stay the account's: 1,050.00, commission 0.2625 -> the 5.00 minimum, transfer fee 0.0105 -> 0.01.
        assert (own["price"], own["traded_at"], own["amount"], own["fees"]) == (
            "10.50", at("2024-03-04", 15, 0), "1050.00", "5.01"
        )  # fmt: skip

        # Risk recorded the rules with its decision (a retry re-signs exactly them).
        [decision] = [
            d for d in (await r.risk.get("/v1/decisions", headers=headers(r.settings, STRATEGY))).json()
            if d["strategy_instance_id"] == instance
        ]  # fmt: skip
        assert decision["paper_fill"] == CLOSE_FILLS
        # The same order again: the same order back (200). With other fill rules: a conflict, nothing new.
        again = await r.risk.post(
            "/v1/orders", json=r.strategy.order(instance_order(instance)), headers=headers(r.settings, STRATEGY)
        )
        assert (again.status_code, again.json()["order"]["order_id"]) == (200, order["order_id"])
        other = instance_order(instance, paper_fill={**CLOSE_FILLS, "fill_price": "open"})
        other["client_order_id"] = instance_order(instance)["client_order_id"]
        conflict = await r.risk.post("/v1/orders", json=r.strategy.order(other), headers=headers(r.settings, STRATEGY))
        assert (conflict.status_code, conflict.json()["code"]) == (409, "client_order_id_conflict")


async def test_an_instances_volume_cap_and_slippage_are_its_own(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    jo = trader()
    async with replay(tmp_path, clock) as r:  # the platform has no volume cap and no slippage
        assert (await r.get(jo, "/v1/account"))["available"] == "10000000.00"  # opens the account
        instance = r.strategy.add(jo.account_id)
        rules = {**CLOSE_FILLS, "slippage": "ticks", "slippage_amount": "2", "volume_cap": "0.001"}
        body = instance_order(instance, ts_code="601398.SH", qty=300, price="5.20", paper_fill=rules)
        placed = await r.risk.post("/v1/orders", json=r.strategy.order(body), headers=headers(r.settings, STRATEGY))
        assert placed.status_code == 201, placed.text
        order = placed.json()["order"]
        # 0.1% of the bar's 100,000 shares = 100 of the 300 asked, at the close 5.15 + 2 ticks = 5.17; the rest is
        # cancelled at once.
        assert (order["status"], order["filled_qty"], order["avg_fill_price"]) == ("cancelled", 100, "5.17")
        assert order["reason"].startswith("volume_cap: ")
        assert order["paper_fill"] == rules


async def test_an_instance_that_cancels_orders_of_suspended_symbols(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    kai = trader()
    async with replay(tmp_path, clock) as r:
        assert (await r.get(kai, "/v1/account"))["available"] == "10000000.00"
        # Straight to execution (risk refuses orders for a suspended symbol): 000001.SZ has no bar on 2024-03-04.
        # With the platform's rules it would wait for the next session it trades; this instance's say cancel.
        terms = limit_buy(
            kai,
            ts_code="000001.SZ",
            qty=100,
            price="13.00",
            strategy_instance_id="0123456789abcdef0123456789abcdef",
            paper_fill={**CLOSE_FILLS, "suspended_orders": "cancel"},
        )
        response = await r.execution.post(
            "/v1/orders", json=signed_order(r.settings, terms), headers=headers(r.settings, STRATEGY)
        )
        assert response.status_code == 201, response.text
        order = response.json()
        assert (order["status"], order["filled_qty"]) == ("cancelled", 0)
        assert order["reason"].startswith("suspended: ")
        assert (await r.get(kai, "/v1/account"))["reserved"] == "0.00"


async def test_only_an_instances_order_carries_fill_rules_and_they_are_checked(tmp_path: Path) -> None:
    clock = ReplayClock(date(2024, 3, 4))
    lu = trader()
    async with replay(tmp_path, clock) as r:
        # A person sending fill rules, through risk: 403, nothing decided.
        mine = {**MARKET_BUY, "paper_fill": CLOSE_FILLS}
        refused = await r.place(lu, **mine)
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), refused.text
        assert "paper_fill" in refused.json()["message"]
        # Straight to execution with an approval of them (risk never signs one): refused, recorded.
        terms = limit_buy(lu, qty=100, price="10.60", paper_fill=CLOSE_FILLS)
        response = await r.execution.post(
            "/v1/orders", json=signed_order(r.settings, terms), headers=headers(r.settings, lu)
        )
        assert (response.status_code, response.json()["code"]) == (403, "approval_invalid"), response.text
        assert (
            response.json()["message"] == "only an order of a strategy instance carries its own fill rules (paper_fill)"
        )
        assert await r.get(lu, "/v1/orders") == []

        # The strategy service's bad values: 422 invalid_request naming the field; nothing reaches execution.
        instance = r.strategy.add(lu.account_id)
        bad: list[tuple[dict[str, Any], str]] = [
            ({**CLOSE_FILLS, "fill_price": "mid"}, "paper_fill.fill_price"),
            ({**CLOSE_FILLS, "volume_cap": "0"}, "paper_fill.volume_cap"),
            ({**CLOSE_FILLS, "volume_cap": "1.5"}, "paper_fill.volume_cap"),
            ({**CLOSE_FILLS, "volume_cap": True}, "paper_fill.volume_cap"),
            ({**CLOSE_FILLS, "slippage_amount": "-1"}, "paper_fill.slippage_amount"),
            ({**CLOSE_FILLS, "slippage_amount": "1e1"}, "paper_fill.slippage_amount"),
            ({**CLOSE_FILLS, "suspended_orders": "drop"}, "paper_fill.suspended_orders"),
            ({**CLOSE_FILLS, "commission_rate": "0.001"}, "paper_fill.commission_rate"),  # fees are the account's
            ({k: v for k, v in CLOSE_FILLS.items() if k != "suspended_orders"}, "paper_fill.suspended_orders"),
            ({**CLOSE_FILLS, "slippage_amount": "3"}, "paper_fill"),  # slippage none with an amount
            ({**CLOSE_FILLS, "slippage": "ticks", "slippage_amount": "1.5"}, "paper_fill"),  # not a whole tick
        ]
        for rules, field in bad:
            body = instance_order(instance, paper_fill=rules)
            response = await r.risk.post(
                "/v1/orders", json=r.strategy.order(body), headers=headers(r.settings, STRATEGY)
            )
            assert response.status_code == 422, (rules, response.text)
            assert response.json()["code"] == "invalid_request"
            assert response.json()["message"].startswith(f"{field}: "), (rules, response.text)
        assert await r.get(lu, "/v1/orders") == []


async def test_a_holding_through_an_ex_date_gets_its_bonus_shares_and_cash_in_lieu_once(tmp_path: Path) -> None:
    """600030.SH goes ex on 2024-03-05 (10 bonus shares per 10 and 0.50 CNY a share: ratio 2.105263, reference price
    4.75). The account holds 300 shares of its own and 100 of a strategy instance, each adjusted and floored apart:
    300 x 2.105263 = 631.5789 -> 631 shares and 0.5789 x 4.75 = 2.749775 -> 2.75 CNY; 100 x 2.105263 = 210.5263 -> 210
    and 0.5263 x 4.75 = 2.499925 -> 2.50 CNY. Together 841 shares (one share less than 400 x 2.105263 = 842.1 floored
    at once would give) and 5.25 CNY."""
    clock = ReplayClock(date(2024, 3, 4))
    ada = trader()
    async with replay(tmp_path, clock) as r:
        instance = r.strategy.add(ada.account_id)
        assert r.execution_app is not None
        store = r.execution_app.state.store
        # 2024-03-04: both buy at the open, 10.00
        mine = await r.submit(ada, ts_code="600030.SH", qty=300, price="10.50")
        # the instance's through risk, as the strategy service sends it (its own rules fill at the close, 10.00)
        order = instance_order(instance, ts_code="600030.SH", price="10.50")
        placed = await r.risk.post("/v1/orders", json=r.strategy.order(order), headers=headers(r.settings, STRATEGY))
        assert placed.status_code == 201, placed.text
        assert [o["status"] for o in (mine, placed.json()["order"])] == ["filled", "filled"]
        assert held(await r.get(ada, "/v1/positions")) == [{"ts_code": "600030.SH", "qty": 400, "sellable_qty": 0}]
        before = (await r.get(ada, "/v1/account"))["balance"]

        # The replay moves to the ex-date: the shares are adjusted before any order of the session is matched, and
        # the bonus shares are sellable at once (as the backtest engine has them).
        moved = await r.next_session("2024-03-05")
        assert moved.status_code == 200, moved.text
        assert held(await r.get(ada, "/v1/positions")) == [{"ts_code": "600030.SH", "qty": 841, "sellable_qty": 841}]
        after = (await r.get(ada, "/v1/account"))["balance"]
        assert Decimal(after) - Decimal(before) == Decimal("5.25")
        listed = await r.get(ada, "/v1/positions/adjustments")
        assert [
            (a["strategy_instance_id"], a["ex_date"], a["qty_before"], a["qty_after"], a["cash_in_lieu"],
             a["adj_factor"], a["previous_adj_factor"], a["pre_close"])
            for a in listed
        ] == [
            (None, "2024-03-05", 300, 631, "2.75", "2.105263", "1.000000", "4.75"),
            (instance, "2024-03-05", 100, 210, "2.50", "2.105263", "1.000000", "4.75"),
        ]  # fmt: skip
        mine_only = await r.get(ada, f"/v1/positions/adjustments?strategy_instance_id={instance}")
        assert [a["qty_after"] for a in mine_only] == [210]
        cash = sorted(
            (e.idempotency_key, e.amount_fen) for e in await store.ledger(ada.account_id) if e.kind == "cash_in_lieu"
        )
        assert cash == [("adjust:-:600030.SH:2024-03-05", 275), (f"adjust:{instance}:600030.SH:2024-03-05", 250)]
        # one read of the held codes' bars for the session: its own and the trading day's before it
        assert r.data.many_bars_asked == [("600030.SH", "2024-03-04", "2024-03-05")]

        # 600 shares sell on the ex-date (more than the 400 held before it): at the open, 4.80
        sold = await r.submit(ada, ts_code="600030.SH", side="sell", qty=600, price="4.70")
        assert (sold["status"], sold["avg_fill_price"]) == ("filled", "4.80")
        assert held(await r.get(ada, "/v1/positions")) == [{"ts_code": "600030.SH", "qty": 241, "sellable_qty": 241}]

        # The same session again: nothing is applied twice (the adjustments are of the shares held before the
        # session, whatever it has traded since).
        again = await r.next_session("2024-03-05")
        assert again.status_code == 200, again.text
        assert held(await r.get(ada, "/v1/positions")) == [{"ts_code": "600030.SH", "qty": 241, "sellable_qty": 241}]
        assert len(await r.get(ada, "/v1/positions/adjustments")) == 2
        assert len([e for e in await store.ledger(ada.account_id) if e.kind == "cash_in_lieu"]) == 2
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            events = [e for e in r.bus.published if e.type == "position.adjusted"]
            if len(events) >= 2 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)
        assert sorted((e.payload["strategy_instance_id"] or "", e.payload["qty_after"], e.payload["cash_in_lieu"])
                      for e in events) == [("", 631, "2.75"), (instance, 210, "2.50")]  # fmt: skip
