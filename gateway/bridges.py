"""The relay for broker bridges (docs/qmt-bridge.md): a QMT bridge on a Windows box connects out to the platform's one
public URL, and the gateway passes its WebSocket through to the service that owns the channel — `/bridge/v1/trading`
to execution, `/bridge/v1/quotes` to the data service. The frames are relayed as they are: a bridge is not a user, it
authenticates to the service itself (the protocol's challenge, signed hello and signed frames with its shared
secret), so the gateway neither reads nor trusts them. It limits handshakes per client address, like `/ws`.

In standalone mode the services are mounted in the same process and these paths reach them directly
(lianghua.standalone); the relay is for the fleet, where each service is its own process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bridge.qmt.protocol import QUOTES_PATH, TRADING_PATH
from gateway.auth import HeaderError, client_group, enforce_rate_limit
from shared.platform.internal_auth import service_headers

log = logging.getLogger(__name__)

# Public path -> (service, the service's own path).
BRIDGE_ROUTES: dict[str, tuple[str, str]] = {
    TRADING_PATH: ("execution", "/v1/bridge/trading"),
    QUOTES_PATH: ("data", "/v1/bridge/quotes"),
}
CLOSE_TOO_MANY = 4429
CLOSE_UNAVAILABLE = 1013  # "try again later": the service behind could not be reached
OPEN_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 4 * 1024 * 1024  # a full-market snapshot round of ~5,500 codes fits with room

router = APIRouter()


def service_ws_url(http_url: str, path: str) -> str:
    """The service's WebSocket URL for `path`, from its HTTP base URL (http -> ws, https -> wss)."""
    base = http_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + path
    if base.startswith("http://"):
        return "ws://" + base.removeprefix("http://") + path
    raise ValueError(f"not an http(s) URL: {http_url!r}")


async def relay(websocket: WebSocket, service: str, path: str) -> None:
    state = websocket.app.state
    client = client_group(websocket.client.host if websocket.client else "unknown")
    await websocket.accept()
    try:
        await enforce_rate_limit(state.infra.cache, f"bridge:{client}", state.settings.rate_limit_per_minute)
    except HeaderError as exc:
        await websocket.close(code=CLOSE_TOO_MANY, reason=exc.message[:120])
        return
    url = service_ws_url(state.infra.services.url(service), path)
    headers = service_headers(state.settings.internal_secret, "gateway")
    try:
        upstream = await connect(
            url, additional_headers=headers, open_timeout=OPEN_TIMEOUT_S, max_size=MAX_FRAME_BYTES, ping_interval=20
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidStatus) as exc:
        log.warning("bridge relay: the service could not be reached", extra={"service": service, "error": str(exc)})
        await websocket.close(code=CLOSE_UNAVAILABLE, reason=f"{service} is unavailable")
        return
    log.info("bridge relay opened", extra={"service": service, "client": client})
    async with upstream:
        down = asyncio.create_task(_downstream(upstream, websocket))
        up = asyncio.create_task(_upstream(websocket, upstream))
        try:
            await asyncio.wait((down, up), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (down, up):
                task.cancel()
            await asyncio.gather(down, up, return_exceptions=True)
        # Whichever side ended first, the other is closed with what the service said (its close code tells the
        # bridge why: 4403 refused, 4400 a bad frame), so the bridge sees the service's verdict, not the relay's.
        code, reason = upstream.close_code, upstream.close_reason
    if websocket.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=code or 1000, reason=(reason or "")[:120])
    log.info("bridge relay closed", extra={"service": service, "client": client, "code": code})


async def _downstream(upstream: ClientConnection, websocket: WebSocket) -> None:
    """Service -> bridge."""
    with contextlib.suppress(ConnectionClosed):
        async for message in upstream:
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)


async def _upstream(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Bridge -> service; the bridge going away closes the service's side."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])
    except ConnectionClosed:
        return
    await upstream.close()


@router.websocket(TRADING_PATH)
async def trading_bridge(websocket: WebSocket) -> None:
    """A QMT bridge's trading channel, relayed to execution (docs/qmt-bridge.md)."""
    service, path = BRIDGE_ROUTES[TRADING_PATH]
    await relay(websocket, service, path)


@router.websocket(QUOTES_PATH)
async def quotes_bridge(websocket: WebSocket) -> None:
    """A QMT bridge's quotes channel, relayed to the data service (docs/qmt-bridge.md)."""
    service, path = BRIDGE_ROUTES[QUOTES_PATH]
    await relay(websocket, service, path)
