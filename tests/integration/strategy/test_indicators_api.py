"""The indicator catalogue over HTTP: the strategy service's /v1/indicators in-process (fleet configuration, real
Redis and RabbitMQ behind /readyz), and the gateway's /api/v1/indicators proxied to that same app."""

from __future__ import annotations

import secrets

import httpx
import pytest
import talib

from gateway.app import create_app as create_gateway
from services.strategy.app import create_app
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers
from tests.conftest import Backing

pytestmark = pytest.mark.integration


async def test_the_indicator_catalogue_over_http(backing: Backing) -> None:
    settings = backing.settings()
    app = create_app(settings)
    headers = service_headers(settings.internal_secret, "gateway")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://strategy") as client,
    ):
        listed = await client.get("/v1/indicators", headers=headers)
        assert listed.status_code == 200
        by_name = {i["name"]: i for i in listed.json()}
        assert set(talib.get_functions()) <= set(by_name)
        assert {"KDJ_CN", "MACD_CN", "MOMENTUM", "ZSCORE"} <= set(by_name)
        rsi = by_name["RSI"]
        assert rsi["group"] == "Momentum Indicators" and rsi["inputs"] == ["close"] and rsi["outputs"] == ["real"]
        assert rsi["parameters"][0] | {"help": ""} == {
            "name": "timeperiod",
            "display_name": "Time Period",
            "type": "integer",
            "default": 14,
            "help": "",
            "choices": None,
        }
        assert rsi["lookback"] == 14

        detail = await client.get("/v1/indicators/rsi", headers=headers)
        assert detail.status_code == 200 and detail.json() == rsi
        kdj = (await client.get("/v1/indicators/KDJ_CN", headers=headers)).json()
        assert [(p["name"], p["default"]) for p in kdj["parameters"]] == [("n", 9), ("m1", 3), ("m2", 3)]

        missing = await client.get("/v1/indicators/BBAND", headers=headers)
        assert missing.status_code == 404
        body = missing.json()
        assert body["code"] == "unknown_indicator" and "BBANDS" in body["message"]
        assert "BBANDS" in body["details"]["suggestions"]

        assert (await client.get("/v1/indicators")).status_code == 401
        assert (await client.get("/v1/indicators/RSI")).status_code == 401
        # The strategies kept their paths when the router moved to the /v1 prefix.
        assert (await client.get("/v1/strategies/buy_and_hold", headers=headers)).status_code == 200
        openapi = (await client.get("/openapi.json")).json()
        assert {"/v1/indicators", "/v1/indicators/{name}", "/v1/strategies", "/v1/strategies/{name}"} <= set(
            openapi["paths"]
        )


async def test_the_gateway_proxies_the_catalogue_to_a_viewer(backing: Backing) -> None:
    base = backing.settings()
    server, _, name = base.database_url.rpartition("/")
    settings = backing.settings(
        database_url=f"{server}/{name.removesuffix('{service}')}indtest_{{service}}",
        bus_namespace=f"{backing.namespace}.indicators",
    )
    strategy = create_app(settings)
    infra = Infra(
        settings=settings,
        bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="gateway"),
        cache=create_cache(settings.redis_url),
        services=ServiceDirectory(settings, transports={"strategy": httpx.ASGITransport(app=strategy)}),
        shared=False,
    )
    gateway = create_gateway(settings, infra)
    async with (
        strategy.router.lifespan_context(strategy),
        gateway.router.lifespan_context(gateway),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as client,
    ):
        login = {"username": settings.admin_username, "password": settings.admin_password}
        admin_token = (await client.post("/api/v1/auth/token", data=login)).json()["access_token"]
        viewer = {"username": f"viewer-{secrets.token_hex(4)}", "password": "pw-" + secrets.token_hex(8)}
        created = await client.post(
            "/api/v1/users", json=viewer | {"role": "viewer"}, headers={"Authorization": f"Bearer {admin_token}"}
        )
        assert created.status_code == 201, created.text
        token = (await client.post("/api/v1/auth/token", data=viewer)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        listed = await client.get("/api/v1/indicators", headers=headers)
        assert listed.status_code == 200
        assert len(listed.json()) == len(talib.get_functions()) + 4
        one = await client.get("/api/v1/indicators/MACD_CN", headers=headers)
        assert one.status_code == 200 and one.json()["outputs"] == ["dif", "dea", "macd"]
        missing = await client.get("/api/v1/indicators/NOPE", headers=headers)
        assert missing.status_code == 404 and missing.json()["code"] == "unknown_indicator"
        assert (await client.get("/api/v1/indicators")).status_code == 401
