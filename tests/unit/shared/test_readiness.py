"""Public `/readyz`: which dependency fails, never how or where (driver errors, hosts, ports stay in the log)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.platform.app import Infra, create_service_app
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.http import ServiceDirectory
from shared.platform.observability import configure_logging
from shared.platform.settings import Mode, Settings

DB_PASSWORD = "pw-in-the-url-1234"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    root.handlers[:], root.level = saved


async def test_a_database_that_is_down_is_named_without_its_driver_error_host_or_port(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("probe", "INFO", json_format=True)  # as the process does: JSON lines on stderr
    port = _closed_port()
    url = f"mysql+asyncmy://lianghua:{DB_PASSWORD}@127.0.0.1:{port}/lh_probe"

    async def database() -> bool:  # what Database.ping does, against a server that is not there
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        finally:
            await engine.dispose()
        return True

    async def answers_false() -> bool:
        return False

    settings = Settings(mode=Mode.FLEET, internal_secret="i" * 32)
    infra = Infra(settings, MemoryBus(), MemoryCache(), ServiceDirectory(settings), shared=True)
    app = create_service_app("probe", infra, readiness={"database": database, "quotes": answers_false})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://probe.test") as client:
        ready = await client.get("/readyz")

    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not_ready",
        "service": "probe",
        "checks": {"database": "unavailable", "quotes": "unavailable", "bus": "ok", "cache": "ok"},
    }
    # The operator finds the why in the log, with the host and port, but not the password of the URL.
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    [failure] = [e for e in logged if e["msg"] == "readiness check failed" and e["check"] == "database"]
    assert "127.0.0.1" in failure["error"] and "OperationalError" in failure["error"]
    assert DB_PASSWORD not in json.dumps(logged)


async def test_a_flood_of_readiness_requests_checks_each_dependency_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    import time
    from types import SimpleNamespace

    now = [1000.0]
    monkeypatch.setattr(
        "shared.platform.app.time", SimpleNamespace(monotonic=lambda: now[0], perf_counter=time.perf_counter)
    )
    pings = 0

    async def database() -> bool:
        nonlocal pings
        pings += 1
        await asyncio.sleep(0.01)  # requests arriving meanwhile wait for this check instead of starting their own
        return True

    settings = Settings(mode=Mode.FLEET, internal_secret="i" * 32)
    infra = Infra(settings, MemoryBus(), MemoryCache(), ServiceDirectory(settings), shared=True)
    app = create_service_app("probe", infra, readiness={"database": database})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://probe.test") as client:
        flood = await asyncio.gather(*(client.get("/readyz") for _ in range(50)))
        assert {r.status_code for r in flood} == {200} and pings == 1
        now[0] += 0.9
        assert (await client.get("/readyz")).json()["checks"]["database"] == "ok" and pings == 1
        now[0] += 0.1  # a second after the check: the next request checks again
        assert (await client.get("/readyz")).status_code == 200 and pings == 2
