"""The request-body size limit every app gets from the shared app factory (LH_MAX_BODY_BYTES): a body over it is
refused with 413 body_too_large before the route runs, whether it declares its length or arrives chunked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel

from shared.app import Infra, create_service_app
from shared.internal_auth import service_headers
from shared.settings import Settings

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
