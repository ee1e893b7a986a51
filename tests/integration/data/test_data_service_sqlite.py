"""The data service in standalone mode (SQLite, in-memory bus and cache): same migration, same upserts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import func, select

from services.data.app import create_app
from services.data.demo import generate_demo_market
from services.data.loader import load_demo_market
from services.data.store import DataStore, daily_bars, metadata
from shared.internal_auth import service_headers
from shared.settings import Settings


async def test_standalone_sqlite_store(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=12)
    market = generate_demo_market(settings)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://data",
            headers=service_headers(settings.internal_secret, "test"),
        ) as client,
    ):
        store: DataStore = app.state.store
        async with store.db.engine.connect() as conn:
            diffs = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
        assert diffs == []

        listed = (await client.get("/v1/securities")).json()
        assert len(listed) == 12
        code = listed[0]["ts_code"]
        bars = (
            await client.get("/v1/bars", params={"ts_code": code, "start": "2023-01-01", "end": "2024-12-31"})
        ).json()
        expected = market.daily[market.daily["ts_code"] == code]
        assert [Decimal(b["close"]) for b in bars["bars"]] == [Decimal(str(c)) for c in expected["close"]]
        assert [b["vol"] for b in bars["bars"]] == [int(Decimal(str(v)) * 100) for v in expected["vol"]]

        async with store.db.session() as session:
            before = (await session.execute(select(func.count(), func.sum(daily_bars.c.amount)))).one()
        await load_demo_market(store, settings)
        async with store.db.session() as session:
            after = (await session.execute(select(func.count(), func.sum(daily_bars.c.amount)))).one()
        # thousand CNY with 3 decimals -> fen, by hand: x 1000 (CNY) x 100 (fen)
        amount_fen = sum(int(Decimal(str(a)) * 100_000) for a in market.daily["amount"])
        assert tuple(after) == tuple(before) == (len(market.daily), amount_fen)

        await _new_listings_are_quoted_without_limits(store, client)

    assert (tmp_path / "data.db").exists()


async def _new_listings_are_quoted_without_limits(store: DataStore, client: httpx.AsyncClient) -> None:
    def security(ts_code: str, board: str, listed: date) -> dict:
        exchange = ts_code[-2:]
        return {"ts_code": ts_code, "symbol": ts_code[:6], "name": "新股" + ts_code[:6], "exchange": exchange,
                "board": board, "is_st": False, "list_date": listed, "delist_date": None}  # fmt: skip

    def bar(ts_code: str, day: date) -> dict:
        return {"ts_code": ts_code, "trade_date": day, "open": 2000, "high": 2500, "low": 1900, "close": 2400,
                "pre_close": 1000, "vol": 1_000_000, "amount": 2_200_000_000, "adj_factor": Decimal(1)}  # fmt: skip

    # Listed on 2024-12-26: 12-26, 27, 30, 31 traded; 2025-01-02 is its 5th session, still without limits (ChiNext).
    # Listed on 2024-12-24: 2025-01-02 is its 7th session, seasoned: 20% around the last close of 24.00.
    gem_days = [date(2024, 12, d) for d in (26, 27, 30, 31)]
    star_days = [date(2024, 12, d) for d in (24, 25, 26, 27, 30, 31)]
    await store.load(
        [security("301999.SZ", "chinext", gem_days[0]), security("688999.SH", "star", star_days[0]),
         security("300999.SZ", "chinext", date(2025, 1, 2))],
        [],
        [bar("301999.SZ", d) for d in gem_days] + [bar("688999.SH", d) for d in star_days],
    )  # fmt: skip
    gem = (await client.get("/v1/quotes/301999.SZ")).json()
    assert gem["next_trade_date"] == "2025-01-02" and gem["suspended"] is False
    assert gem["limit_up"] is None and gem["limit_down"] is None
    star = (await client.get("/v1/quotes/688999.SH")).json()
    assert (star["limit_up"], star["limit_down"]) == ("28.80", "19.20")
    unlisted = (await client.get("/v1/quotes/300999.SZ")).json()  # listing tomorrow: no bars yet
    assert unlisted["suspended"] is True and unlisted["last_close"] is None and unlisted["limit_up"] is None


async def test_a_tushare_store_never_gets_the_demo_market(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=10,
                        data_provider="tushare", tushare_token=SecretStr("not-used-here"))  # fmt: skip
    assert settings.load_demo_data  # the default, which used to load the demo into any empty store
    app = create_app(settings, scheduler=False)
    async with app.router.lifespan_context(app):
        store: DataStore = app.state.store
        assert await store.count_securities() == 0 and await store.latest_session() is None
    demo = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/demo-{{service}}.db", demo_symbols=10)
    app = create_app(demo)
    async with app.router.lifespan_context(app):
        assert await app.state.store.count_securities() == 10


async def test_a_read_overtaken_by_a_write_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=10)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://data",
                          headers=service_headers(settings.internal_secret, "test")) as client,
    ):  # fmt: skip
        store: DataStore = app.state.store
        read_cache = app.state.read_cache
        code = (await client.get("/v1/securities")).json()[0]["ts_code"]
        last = await store.last_bar(code)
        assert last is not None
        new_day = date(2025, 1, 2)
        new_bar = {"ts_code": code, "trade_date": new_day, "open": last.close, "high": last.close + 10,
                   "low": last.close, "close": last.close + 10, "pre_close": last.close, "vol": 1000,
                   "amount": 1000 * last.close, "adj_factor": last.adj_factor}  # fmt: skip
        params = {"ts_code": code, "start": "2024-12-01", "end": "2025-01-31"}
        real_put = read_cache.put

        async def a_write_lands_first(*args: Any, **kwargs: Any) -> None:
            # The day's bars arrive between the read and the caching of its answer (their invalidation included).
            await store.load([], [], [new_bar])
            await real_put(*args, **kwargs)

        monkeypatch.setattr(read_cache, "put", a_write_lands_first)
        before = (await client.get("/v1/bars", params=params)).json()["bars"]
        assert before[-1]["trade_date"] == last.trade_date.isoformat()  # read before the write
        monkeypatch.setattr(read_cache, "put", real_put)
        after = (await client.get("/v1/bars", params=params)).json()["bars"]
        assert after[-1]["trade_date"] == "2025-01-02"  # not the stale answer from the cache
