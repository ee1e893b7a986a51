"""The strategy service's routes, in-process with the in-memory backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from services.strategy.app import create_app
from shared.platform.internal_auth import service_headers
from shared.platform.settings import Settings


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    application = create_app(Settings(redis_url="memory://", amqp_url="memory://"))
    async with application.router.lifespan_context(application):
        yield application


async def test_lists_and_describes_strategies(app: FastAPI) -> None:
    headers = service_headers(app.state.settings.internal_secret, "gateway")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://strategy") as client:
        listed = (await client.get("/v1/strategies", headers=headers)).json()
        names = [s["name"] for s in listed]
        assert "buy_and_hold" in names
        one = await client.get("/v1/strategies/buy_and_hold", headers=headers)
        assert one.status_code == 200
        assert one.json() == listed[names.index("buy_and_hold")]
        assert one.json()["parameters"]["properties"]["cash_reserve"]["default"] == "0"

        missing = await client.get("/v1/strategies/nope", headers=headers)
        assert missing.status_code == 404 and missing.json()["code"] == "unknown_strategy"
        assert (await client.get("/v1/strategies")).status_code == 401
