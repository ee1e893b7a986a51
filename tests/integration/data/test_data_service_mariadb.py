"""The data service against the real MariaDB: demo load at start-up, the REST contract, idempotent re-loads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import func, select, update

from services.data.app import create_app
from services.data.demo import DemoMarket, generate_demo_market
from services.data.loader import load_demo_market
from services.data.store import DataStore, daily_bars, metadata, securities, trade_calendar
from shared.platform.internal_auth import INTERNAL_HEADER, service_headers
from shared.platform.settings import Settings

pytestmark = pytest.mark.integration


@dataclass
class Service:
    settings: Settings
    app: FastAPI
    client: httpx.AsyncClient
    market: DemoMarket  # what the service should have loaded, generated independently here

    @property
    def store(self) -> DataStore:
        store: DataStore = self.app.state.store
        return store


@pytest.fixture(scope="module")
async def service(backing) -> AsyncIterator[Service]:  # type: ignore[no-untyped-def]
    settings = backing.settings(demo_symbols=50)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://data",
            headers=service_headers(settings.internal_secret, "test"),
        ) as client,
    ):
        yield Service(settings, app, client, generate_demo_market(settings))


async def fingerprint(store: DataStore) -> tuple:
    """Row counts and column sums of every table: equal fingerprints, unchanged data."""
    async with store.db.session() as session:
        bars = (
            await session.execute(
                select(
                    func.count(),
                    func.sum(daily_bars.c.open),
                    func.sum(daily_bars.c.high),
                    func.sum(daily_bars.c.low),
                    func.sum(daily_bars.c.close),
                    func.sum(daily_bars.c.pre_close),
                    func.sum(daily_bars.c.vol),
                    func.sum(daily_bars.c.amount),
                    func.sum(daily_bars.c.adj_factor),
                )
            )
        ).one()
        secs = (await session.execute(select(securities).order_by(securities.c.ts_code))).all()
        cal = (await session.execute(select(func.count(), func.sum(trade_calendar.c.is_open)))).one()
    return tuple(bars), tuple(secs), tuple(cal)


async def test_the_schema_is_exactly_what_the_migration_made(service: Service) -> None:
    async with service.store.db.engine.connect() as conn:
        diffs = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    assert diffs == []


async def test_ready_and_token_required(service: Service) -> None:
    ready = await service.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["db"] == "ok"
    for headers in ({}, {INTERNAL_HEADER: "not-a-token"}, service_headers("another-secret-of-32-characters!", "x")):
        bare = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://data")
        async with bare:
            r = await bare.get("/v1/securities", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


async def test_securities(service: Service) -> None:
    r = await service.client.get("/v1/securities")
    assert r.status_code == 200
    listed = r.json()
    assert len(listed) == 50
    assert [s["ts_code"] for s in listed] == sorted(s.ts_code for s in service.market.securities)
    first = service.market.securities[0]
    assert listed[0] == {
        "ts_code": first.ts_code,
        "symbol": first.symbol,
        "name": first.name,
        "exchange": first.exchange.value,
        "board": first.board.value,
        "is_st": first.is_st,
        "list_date": first.list_date.isoformat(),
        # Added with the issue-3 storage: the demo fills industry from its names; Tushare fills all four.
        "delist_date": None,
        "industry": first.industry,
        "area": None,
        "market": None,
        "list_status": "L",
        # The lot the order ticket enforces as the trader types (main board and ChiNext 100 then 100; STAR at least
        # 200 then 1; BSE at least 100 then 1: the exchanges' rules, written out here independently of the code).
        "lot_min": {"main": 100, "chinext": 100, "star": 200, "bse": 100}[first.board.value],
        "lot_step": {"main": 100, "chinext": 100, "star": 1, "bse": 1}[first.board.value],
        # The exchange's market order types (SSE/SZSE/BSE trading rules 3.3.4), counterparty best (the default) first.
        "market_types": {
            "SH": ["counterparty_best", "best5_cancel", "best5_limit", "own_best"],
            "SZ": ["counterparty_best", "own_best", "ioc", "best5_cancel", "fok"],
            "BJ": ["counterparty_best", "best5_cancel", "best5_limit", "own_best"],
        }[first.exchange.value],
    }
    lots = {s["board"]: (s["lot_min"], s["lot_step"]) for s in listed}
    assert lots.get("main") in (None, (100, 100)) and lots.get("star") in (None, (200, 1)), lots
    assert lots.get("chinext") in (None, (100, 100)) and lots.get("bse") in (None, (100, 1)), lots
    assert first.industry is not None and first.name.endswith(first.industry)
    assert {s["board"] for s in listed} == {"main", "chinext", "star", "bse"}
    star = (await service.client.get("/v1/securities", params={"board": "star"})).json()
    assert star and all(s["board"] == "star" and s["ts_code"].startswith("688") for s in star)
    st = (await service.client.get("/v1/securities", params={"is_st": "true"})).json()
    assert len(st) == 1 and st[0]["name"].startswith("ST")
    bad = await service.client.get("/v1/securities", params={"board": "nasdaq"})
    assert bad.status_code == 422 and bad.json()["message"].startswith("board:")


async def test_bars_match_the_generator_converted_by_hand(service: Service) -> None:
    market = service.market
    bonus = next(a for a in market.actions if a.bonus_per_10)  # a stock whose bars include an ex-rights day
    expected = market.daily[market.daily["ts_code"] == bonus.ts_code]
    r = await service.client.get(
        "/v1/bars", params={"ts_code": bonus.ts_code, "start": "20230101", "end": "2024-12-31"}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["ts_code"] == bonus.ts_code
    assert len(body["bars"]) == len(expected)
    for bar, row in zip(body["bars"], expected.itertuples(index=False), strict=True):
        day = row.trade_date
        assert bar["trade_date"] == f"{day[:4]}-{day[4:6]}-{day[6:]}"
        for column in ("open", "high", "low", "close", "pre_close"):
            assert bar[column] == f"{Decimal(str(getattr(row, column))):.2f}"  # CNY with 2 decimals
        assert bar["vol"] == int(Decimal(str(row.vol)) * 100)  # lots of 100 -> shares
        assert bar["amount"] == f"{Decimal(str(row.amount)) * 1000:.2f}"  # thousand CNY -> CNY
        assert Decimal(bar["adj_factor"]) == Decimal(str(row.adj_factor))
    ex_day = next(b for b in body["bars"] if b["trade_date"] == bonus.ex_date.isoformat())
    assert Decimal(ex_day["adj_factor"]) > 1

    window = await service.client.get(
        "/v1/bars", params={"ts_code": bonus.ts_code.lower(), "start": "2024-02-05", "end": "20240223"}
    )
    days = [b["trade_date"] for b in window.json()["bars"]]
    # Spring Festival 2024: the SSE was closed 9-16 February.
    assert days == ["2024-02-05", "2024-02-06", "2024-02-07", "2024-02-08"] + [f"2024-02-{d}" for d in range(19, 24)]


@pytest.mark.parametrize(
    ("params", "status", "code", "field"),
    [
        ({"start": "2024-01-02", "end": "2024-01-31"}, 422, "invalid_request", "ts_code"),
        ({"ts_code": "{code}", "end": "2024-01-31"}, 422, "invalid_request", "start"),
        ({"ts_code": "{code}", "start": "2024-01-02", "end": "2024-13-01"}, 422, "invalid_request", "end"),
        ({"ts_code": "{code}", "start": "0", "end": "2024-01-31"}, 422, "invalid_request", "start"),
        ({"ts_code": "{code}", "start": "2024-02-01", "end": "2024-01-31"}, 422, "invalid_range", None),
        ({"ts_code": "600000", "start": "2024-01-02", "end": "2024-01-31"}, 422, "invalid_ts_code", None),
        ({"ts_code": "510300.SH", "start": "2024-01-02", "end": "2024-01-31"}, 422, "invalid_ts_code", None),
        ({"ts_code": "999999.SZ", "start": "2024-01-02", "end": "2024-01-31"}, 422, "invalid_ts_code", None),
        ({"ts_code": "600001.SH", "start": "2024-01-02", "end": "2024-01-31"}, 404, "unknown_security", None),
    ],
)
async def test_bad_bar_requests(service: Service, params: dict, status: int, code: str, field: str | None) -> None:
    known = service.market.securities[0].ts_code
    # Precondition (the demo is deterministic): the "unknown" codes really are not in the demo market.
    assert not any(s.ts_code == params.get("ts_code") for s in service.market.securities)
    query = {k: v.replace("{code}", known) for k, v in params.items()}
    r = await service.client.get("/v1/bars", params=query)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    if field is not None:
        assert r.json()["message"].startswith(f"{field}:")


async def test_quotes(service: Service) -> None:
    market = service.market
    last_day = market.trade_days[-1]
    # The ST stock: 5% limits around its last close, worked out by hand.
    st = next(s for s in market.securities if s.is_st)
    last_close = Decimal(str(market.daily[market.daily["ts_code"] == st.ts_code]["close"].iloc[-1]))
    q = (await service.client.get(f"/v1/quotes/{st.ts_code}")).json()
    assert q["last_trade_date"] == last_day.isoformat() == "2024-12-31"
    assert q["next_trade_date"] == "2025-01-02"  # New Year's Day is closed
    assert q["suspended"] is False and q["is_st"] is True and q["board"] == "main"
    assert Decimal(q["last_close"]) == last_close
    assert Decimal(q["limit_up"]) == (last_close * Decimal("1.05")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert Decimal(q["limit_down"]) == (last_close * Decimal("0.95")).quantize(Decimal("0.01"), ROUND_HALF_UP)

    # The stock halted through the end of the data: suspended, quoted from its last close before the halt.
    halted = next(h for h in market.suspensions if h.last_day == last_day)
    rows = market.daily[market.daily["ts_code"] == halted.ts_code]
    q = (await service.client.get(f"/v1/quotes/{halted.ts_code}")).json()
    assert q["suspended"] is True
    last_bar_day = rows["trade_date"].iloc[-1]
    assert q["last_trade_date"] == f"{last_bar_day[:4]}-{last_bar_day[4:6]}-{last_bar_day[6:]}"
    assert date.fromisoformat(q["last_trade_date"]) < halted.first_day
    close = Decimal(str(rows["close"].iloc[-1]))
    pct = {"main": "0.10", "chinext": "0.20", "star": "0.20", "bse": "0.30"}[q["board"]]
    assert Decimal(q["limit_up"]) == (close * (1 + Decimal(pct))).quantize(Decimal("0.01"), ROUND_HALF_UP)

    r = await service.client.get("/v1/quotes/600001.SH")
    assert r.status_code == 404 and r.json()["code"] == "unknown_security"
    r = await service.client.get("/v1/quotes/60000X.SH")
    assert r.status_code == 422 and r.json()["code"] == "invalid_ts_code"


async def test_quotes_as_of_a_replayed_session(service: Service) -> None:
    """`?session=`: the quote as the data stood before that trading day opened. Numbers read off the demo bars (seed
    20240101) and worked out by hand."""

    async def quote(code: str, session: str) -> dict:
        response = await service.client.get(f"/v1/quotes/{code}", params={"session": session})
        assert response.status_code == 200, response.text
        return response.json()

    def picked(q: dict) -> tuple:
        return (q["last_trade_date"], q["last_close"], q["next_trade_date"], q["suspended"], q["limit_up"],
                q["limit_down"])  # fmt: skip

    # 000757.SZ (main board) closed 7.81 on Friday 2024-03-01. Monday 2024-03-04's limits: 7.81 x 1.1 = 8.591 -> 8.59,
    # 7.81 x 0.9 = 7.029 -> 7.03. (The latest quote is as of 2024-12-31, close 8.15: a different answer, so the cache
    # keeps the two apart.)
    latest = (await service.client.get("/v1/quotes/000757.SZ")).json()
    assert (latest["last_trade_date"], latest["last_close"]) == ("2024-12-31", "8.15")
    for _ in range(2):  # the second answer comes from the cache
        monday = await quote("000757.SZ", "2024-03-04")
        assert picked(monday) == ("2024-03-01", "7.81", "2024-03-04", False, "8.59", "7.03")
    assert (await service.client.get("/v1/quotes/000757.SZ")).json() == latest

    # The ST stock 603182.SH: 5% around 2024-03-01's close 5.29: 5.5545 -> 5.55, 5.0255 -> 5.03.
    assert picked(await quote("603182.SH", "20240304")) == ("2024-03-01", "5.29", "2024-03-04", False, "5.55", "5.03")

    # An ex-rights day: 003446.SZ closed 6.55 on 2024-06-21, and 2024-06-24's reference price (pre_close) is 6.23.
    # The limits are the exchange's, around 6.23: 6.853 -> 6.85 and 5.607 -> 5.61 (around 6.55 they would be
    # 7.21 / 5.90).
    assert picked(await quote("003446.SZ", "2024-06-24")) == (
        "2024-06-21", "6.55", "2024-06-24", False, "6.85", "5.61"
    )  # fmt: skip

    # 301120.SZ (ChiNext, 20%) is halted on 2024-04-08: suspended that session, quoted from its last close before,
    # 16.95 on 2024-04-03 (04-04 and 04-05 are the Qingming holiday): 20.34 / 13.56. It trades again on 04-09.
    assert picked(await quote("301120.SZ", "2024-04-08")) == (
        "2024-04-03", "16.95", "2024-04-08", True, "20.34", "13.56"
    )  # fmt: skip
    assert picked(await quote("301120.SZ", "2024-04-09")) == (
        "2024-04-03", "16.95", "2024-04-09", False, "20.34", "13.56"
    )  # fmt: skip

    saturday = await service.client.get("/v1/quotes/000757.SZ", params={"session": "2024-03-09"})
    assert (saturday.status_code, saturday.json()["code"]) == (422, "not_a_trading_day")
    assert saturday.json()["message"].startswith("session: 2024-03-09")
    malformed = await service.client.get("/v1/quotes/000757.SZ", params={"session": "2024-3-4"})
    assert (malformed.status_code, malformed.json()["code"]) == (422, "invalid_request")
    unknown = await service.client.get("/v1/quotes/600001.SH", params={"session": "2024-03-04"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_security")


async def test_calendar(service: Service) -> None:
    r = await service.client.get("/v1/calendar", params={"start": "20240928", "end": "2024-10-09"})
    assert r.status_code == 200
    assert r.json() == {
        "exchange": "SSE",
        "start": "2024-09-28",
        "end": "2024-10-09",
        "trading_days": ["2024-09-30", "2024-10-08", "2024-10-09"],  # National Day week closed
        "complete_through": "2024-12-31",  # the demo market's last day: its bars are all stored
    }
    r = await service.client.get("/v1/calendar", params={"start": "2024-10-09", "end": "2024-10-01"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_range"
    r = await service.client.get("/v1/calendar", params={"start": "2024-10-01"})
    assert r.status_code == 422 and r.json()["message"].startswith("end:")


async def test_loading_again_changes_nothing(service: Service) -> None:
    before = await fingerprint(service.store)
    counts = await load_demo_market(service.store, service.settings)
    assert counts.bars == len(service.market.daily) and counts.securities == 50
    assert await fingerprint(service.store) == before

    # A damaged row is put right by the next load (an upsert, not an insert-if-absent).
    victim = service.market.securities[1].ts_code
    async with service.store.db.session() as session:
        await session.execute(update(daily_bars).where(daily_bars.c.ts_code == victim).values(close=1, vol=0))
    assert await fingerprint(service.store) != before
    await load_demo_market(service.store, service.settings)
    assert await fingerprint(service.store) == before


async def test_a_restart_keeps_the_store_as_it_is(service: Service) -> None:
    before = await fingerprint(service.store)
    again = create_app(service.settings)
    async with again.router.lifespan_context(again):
        store: DataStore = again.state.store
        assert await fingerprint(store) == before
