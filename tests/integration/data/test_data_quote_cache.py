"""Quotes and bar ranges are cached in Redis and dropped when new bars are loaded; a dead cache is bypassed."""

from collections.abc import AsyncIterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from services.data.app import create_app
from shared.platform.internal_auth import service_headers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def data_app(backing) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:  # type: ignore[no-untyped-def]
    settings = backing.settings(scope="quotecache", demo_symbols=50)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://data",
            headers=service_headers(settings.internal_secret, "test"),
        ) as client,
    ):
        yield app, client


async def test_a_load_replaces_the_cached_quote(backing, data_app) -> None:  # type: ignore[no-untyped-def]
    app, client = data_app
    prefix = app.state.read_cache.prefix
    securities = (await client.get("/v1/securities", params={"board": "main", "is_st": "false"})).json()
    code = securities[0]["ts_code"]
    first = (await client.get(f"/v1/quotes/{code}")).json()
    day = date.fromisoformat(first["next_trade_date"])
    window = {"ts_code": code, "start": first["last_trade_date"], "end": day.isoformat()}
    before = (await client.get("/v1/bars", params=window)).json()["bars"]
    assert [b["trade_date"] for b in before] == [first["last_trade_date"]]
    redis = aioredis.Redis.from_url(backing.redis_url)
    try:
        assert await redis.get(f"{prefix}quote:{code}") is not None  # cached
        # A new session arrives: close 1% above the last close, on the tick.
        last_close = Decimal(first["last_close"])
        new_close = (last_close * Decimal("1.01")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        fen = int(new_close * 100)
        row = dict(
            ts_code=code, trade_date=day, open=fen, high=fen, low=fen, close=fen, pre_close=int(last_close * 100),
            vol=100, amount=fen, adj_factor=Decimal("1"),
        )  # fmt: skip
        await app.state.store.load([], [], [row])
        assert await redis.get(f"{prefix}quote:{code}") is None  # dropped by the load
        assert await redis.keys(f"{prefix}*") == []  # quotes and bar ranges alike
        second = (await client.get(f"/v1/quotes/{code}")).json()
        after = (await client.get("/v1/bars", params=window)).json()["bars"]
    finally:
        await redis.aclose()
    assert second["last_trade_date"] == day.isoformat() and Decimal(second["last_close"]) == new_close
    assert [b["trade_date"] for b in after] == [first["last_trade_date"], day.isoformat()]
    assert after[-1]["close"] == str(new_close) and after[-1]["vol"] == 100
    # Main board, not ST: limits are the new close ±10%, rounded half-up to the fen.
    up = (new_close * Decimal("1.1")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    down = (new_close * Decimal("0.9")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert (Decimal(second["limit_up"]), Decimal(second["limit_down"])) == (up, down)


async def test_quotes_work_without_the_cache(backing) -> None:  # type: ignore[no-untyped-def]
    settings = backing.settings(scope="quotecache", redis_url="redis://127.0.0.1:1/0", demo_symbols=50)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://data",
            headers=service_headers(settings.internal_secret, "test"),
        ) as client,
    ):
        code = (await client.get("/v1/securities")).json()[0]["ts_code"]
        for _ in range(2):
            resp = await client.get(f"/v1/quotes/{code}")
            assert resp.status_code == 200 and resp.json()["ts_code"] == code
