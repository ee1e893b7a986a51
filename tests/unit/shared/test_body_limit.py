"""The request-body size limit every app gets from the shared app factory (LH_MAX_BODY_BYTES): a body over it is
refused with 413 body_too_large before the route runs, whether it declares its length or arrives chunked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, Request
from pydantic import BaseModel

from shared.platform import body_limit
from shared.platform.app import Infra, create_service_app
from shared.platform.internal_auth import service_headers
from shared.platform.settings import Settings

LIMIT = 1000


class Note(BaseModel):
    text: str


def _app(stored: list[Any]) -> tuple[Any, dict[str, str]]:
    settings = Settings(max_body_bytes=LIMIT)
    router = APIRouter()

    @router.post("/v1/notes", status_code=201)
    async def create(note: Note) -> dict[str, int]:
        stored.append(note.text)
        return {"stored": len(stored)}

    @router.post("/v1/raw", status_code=201)
    async def raw(request: Request) -> dict[str, int]:
        # How the gateway's proxy reads a body: the bytes, to pass them on.
        body = await request.body()
        stored.append(body)
        return {"bytes": len(body)}

    app = create_service_app("t", Infra.from_settings(settings, "t"), routers=[router])
    return app, service_headers(settings.internal_secret, "test")


def _padded(size: int) -> bytes:
    """A valid note of exactly `size` bytes of JSON (whitespace padding)."""
    head = json.dumps({"text": "hello"}).encode()
    return head[:-1] + b" " * (size - len(head)) + b"}"


async def _chunks(body: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


async def test_a_body_over_the_limit_is_refused_with_413_and_the_route_never_runs() -> None:
    stored: list[Any] = []
    app, headers = _app(stored)
    headers = {**headers, "Content-Type": "application/json", "X-Correlation-ID": "big-1"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        for path in ("/v1/notes", "/v1/raw"):
            # Declared length: refused from the header. Chunked (no Content-Length): refused once 1001 bytes came.
            declared = await client.post(path, content=_padded(LIMIT + 1), headers=headers)
            chunked = await client.post(path, content=_chunks(_padded(LIMIT + 1)), headers=headers)
            for response in (declared, chunked):
                assert response.status_code == 413, (path, response.text)
                assert response.json() == {
                    "code": "body_too_large",
                    "message": "the request body is larger than the limit of 1000 bytes",
                    "details": {"limit_bytes": 1000},
                }
                assert response.headers["X-Correlation-ID"] == "big-1"
        assert "content-length" not in chunked.request.headers
        assert stored == []
        metrics = (await client.get("/metrics")).text
        assert 'http_requests_total{handler="/v1/notes",method="POST",status="4xx"} 2.0' in metrics

        # At the limit, both ways, the body is read and stored.
        assert (await client.post("/v1/notes", content=_padded(LIMIT), headers=headers)).status_code == 201
        assert (await client.post("/v1/notes", content=_chunks(_padded(LIMIT)), headers=headers)).status_code == 201
        assert stored == ["hello", "hello"]


async def test_a_refused_body_costs_no_authentication_and_answers_json_even_where_no_route_reads_it() -> None:
    stored: list[Any] = []
    app, _ = _app(stored)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        # Without credentials, and to a path that does not exist: the size is the first thing checked.
        for path in ("/v1/notes", "/nowhere"):
            response = await client.post(path, content=b"x" * (LIMIT + 1))
            assert response.status_code == 413 and response.json()["code"] == "body_too_large"
        assert stored == []


# --- over a real server: what is read of a refused body, and when the connection is closed -----------------------


@asynccontextmanager
async def _served(app: Any) -> AsyncIterator[tuple[str, int]]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield "127.0.0.1", server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection (a hang here is the connection kept open)."""
    received = b""
    async with asyncio.timeout(10):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


async def test_a_body_declared_far_over_the_limit_gets_413_and_the_connection_closed_unread() -> None:
    """Without `Connection: close` the server would keep the connection and read and drop all 10 GB the client sends
    (a keep-alive connection must be drained before its next request)."""
    stored: list[Any] = []
    app, headers = _app(stored)
    async with _served(app) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST /v1/raw HTTP/1.1\r\nHost: t\r\n{head}Content-Type: application/json\r\n"
            f"Content-Length: {10 * 1024**3}\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await _until_closed(reader)
        writer.close()
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    header_block, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in header_block.lower()
    assert json.loads(body)["code"] == "body_too_large"
    assert stored == []


async def test_a_chunked_body_that_goes_on_past_the_discard_bound_is_cut_off(monkeypatch: Any) -> None:
    """A chunked body is read past the limit only up to DISCARD_MAX_BYTES more; then the connection is closed and
    the client's writes fail, where before the server read and dropped all of it, however long."""
    monkeypatch.setattr(body_limit, "DISCARD_MAX_BYTES", 256 * 1024)
    stored: list[Any] = []
    app, headers = _app(stored)
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    sent = 0
    async with _served(app) as (host, port):
        _, writer = await asyncio.open_connection(host, port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST /v1/raw HTTP/1.1\r\nHost: t\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        cut_off = False
        try:
            while sent < 64 * 1024 * 1024:  # 256 times the bound: far more than the socket buffers hold
                writer.write(chunk)
                await writer.drain()
                sent += 65536
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            cut_off = True
        writer.close()
    # Closed long before the end: what the socket buffers hold (a few MiB on loopback) is far below 64 MiB.
    assert cut_off and sent < 64 * 1024 * 1024
    assert stored == []


async def test_a_chunked_body_a_little_over_the_limit_gets_413_on_a_connection_that_stays_open() -> None:
    """Within the bound the rest is read and dropped before the 413, so a client that sends its whole body first
    gets the answer, and its connection serves the next request."""
    stored: list[Any] = []
    app, headers = _app(stored)
    headers = {**headers, "Content-Type": "application/json"}
    async with _served(app) as (host, port), httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
        refused = await client.post(
            "/v1/raw", content=_chunks(_padded(200 * LIMIT), 4096), headers={**headers, "X-Correlation-ID": "big-9"}
        )
        assert refused.status_code == 413 and refused.json()["code"] == "body_too_large"
        assert "close" not in refused.headers.get("connection", "")
        placed = await client.post("/v1/notes", content=_padded(LIMIT), headers=headers)
        assert placed.status_code == 201, placed.text
    assert stored == ["hello"]
