"""The strategy service in fleet configuration (real Redis and RabbitMQ behind /readyz), in-process."""

from __future__ import annotations

import httpx
import pytest

from services.strategy.app import create_app
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from tests.conftest import Backing
from tests.integration.backtest.fakes import STRATEGIES

pytestmark = pytest.mark.integration


async def test_the_catalogue_over_http(backing: Backing) -> None:
    settings = backing.settings()
    app = create_app(settings)
    headers = {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal("viewer1", "viewer"))}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://strategy") as client,
    ):
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        listed = await client.get("/v1/strategies", headers=headers)
        assert listed.status_code == 200
        by_name = {s["name"]: s for s in listed.json()}
        assert set(by_name["buy_and_hold"]) == {"name", "title", "description", "parameters"}
        schema = by_name["buy_and_hold"]["parameters"]
        assert schema["properties"]["cash_reserve"]["description"].startswith("Fraction of the initial cash")
        detail = await client.get("/v1/strategies/buy_and_hold", headers=headers)
        assert detail.json() == by_name["buy_and_hold"]
        missing = await client.get("/v1/strategies/no_such_strategy", headers=headers)
        assert missing.status_code == 404 and missing.json()["code"] == "unknown_strategy"
        assert (await client.get("/v1/strategies")).status_code == 401
        openapi = (await client.get("/openapi.json")).json()
        assert "/v1/strategies/{name}" in openapi["paths"]


async def test_an_explicit_catalogue_replaces_discovery(backing: Backing) -> None:
    settings = backing.settings()
    app = create_app(settings, strategies=STRATEGIES)
    headers = {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal("svc:gateway", "service"))}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://strategy") as client,
    ):
        names = [s["name"] for s in (await client.get("/v1/strategies", headers=headers)).json()]
        assert names == sorted(STRATEGIES) and "dual_ma" not in names  # exactly the catalogue given
