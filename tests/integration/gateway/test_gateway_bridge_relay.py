"""The gateway's relay for broker bridges (gateway/bridges.py), under uvicorn: a bridge's WebSocket on
`/bridge/v1/trading` reaches execution's `/v1/bridge/trading` (here a fake execution that records what reached it),
frames pass both ways unchanged, the service's close code comes back to the bridge, and a service that cannot be
reached closes the bridge's socket with 1013 (try again later)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.app import create_app
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, verify_internal_token
from shared.platform.settings import Settings

pytestmark = pytest.mark.integration


def fake_execution(secret: str, seen: list[str]) -> FastAPI:
    """Greets with a challenge, echoes every frame reversed, and refuses (4403) on "refuse me"."""
    app = FastAPI()

    @app.websocket("/v1/bridge/trading")
    async def trading(websocket: WebSocket) -> None:
        principal = verify_internal_token(secret, websocket.headers[INTERNAL_HEADER])
        seen.append(f"principal:{principal.subject}")
        await websocket.accept()
        await websocket.send_text('{"type":"challenge"}')
        while True:
            text = await websocket.receive_text()
            seen.append(text)
            if text == "refuse me":
                await websocket.close(code=4403, reason="account_mismatch")
                return
            await websocket.send_text(text[::-1])

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_infra(settings: Settings) -> Infra:
    return Infra(
        settings=settings,
        bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="gateway"),
        cache=create_cache(settings.redis_url),
        services=ServiceDirectory(settings),
        shared=False,
    )


async def test_a_bridge_reaches_execution_through_the_gateway(gw_settings: Settings, serve_app: Any) -> None:
    seen: list[str] = []
    async with serve_app(fake_execution(gw_settings.internal_secret, seen)) as execution:
        settings = Settings.model_validate({**gw_settings.model_dump(), "execution_url": f"http://{execution}"})
        async with serve_app(create_app(settings, gateway_infra(settings))) as gateway:
            async with connect(f"ws://{gateway}/bridge/v1/trading") as bridge:
                assert await bridge.recv() == '{"type":"challenge"}'
                await bridge.send("hello 123")
                assert await bridge.recv() == "321 olleh"
                await bridge.send("refuse me")
                with pytest.raises(ConnectionClosed):
                    await bridge.recv()
            # the service's verdict, not the relay's, reaches the bridge
            assert bridge.close_code == 4403
            assert bridge.close_reason == "account_mismatch"
    # the relay connected as the gateway (the service may tell it from a stranger), and passed frames unchanged
    assert seen == ["principal:svc:gateway", "hello 123", "refuse me"]


async def test_an_unreachable_service_closes_the_bridge_socket_with_try_again_later(
    gw_settings: Settings, serve_app: Any
) -> None:
    settings = Settings.model_validate({**gw_settings.model_dump(), "data_url": f"http://127.0.0.1:{free_port()}"})
    async with serve_app(create_app(settings, gateway_infra(settings))) as gateway:
        async with connect(f"ws://{gateway}/bridge/v1/quotes") as bridge:
            with pytest.raises(ConnectionClosed):
                await bridge.recv()
        assert bridge.close_code == 1013
        assert bridge.close_reason == "data is unavailable"
