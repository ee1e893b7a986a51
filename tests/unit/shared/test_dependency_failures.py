"""A dependency that does not answer (a service's database, Redis) gives 503 and a machine-readable code, from every
service and through the gateway, and the answer names the dependency, not the driver's host and port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiormq.exceptions import AMQPConnectionError, ChannelInvalidStateError
from asyncmy.errors import IntegrityError as MySQLIntegrityError
from asyncmy.errors import InterfaceError as MySQLInterfaceError
from asyncmy.errors import InternalError as MySQLInternalError
from asyncmy.errors import OperationalError as MySQLOperationalError
from fastapi import APIRouter
from prometheus_client import generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from lianghua.standalone import build_app
from shared.platform.app import Infra, create_service_app
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.db import Database
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.platform.settings import Mode, Settings

ADMIN_PASSWORD = "admin-password-for-the-test"


def _closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Platform:
    host: Any
    client: httpx.AsyncClient
    headers: dict[str, str]

    def database(self, service: str) -> Database:
        if service == "gateway":
            db: Database = self.host.state.gateway.state.store.db
        else:
            db = self.host.state.services[service].state.db
        return db


@pytest.fixture(scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """One standalone platform for the module (each test puts back the database it broke)."""
    tmp_path = tmp_path_factory.mktemp("platform")
    settings = Settings(
        mode=Mode.STANDALONE,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db",
        admin_username="admin",
        admin_password=ADMIN_PASSWORD,
        log_json=False,
    )
    host = build_app(settings)
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://lh.test", timeout=30) as client:
            token = await client.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
            assert token.status_code == 200, token.text
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            yield Platform(host, client, headers)


ORDER = {"client_order_id": "db-down-1", "ts_code": "600000.SH", "side": "buy", "order_type": "limit", "qty": 100,
         "price": "10.00"}  # fmt: skip
BACKTEST = {"strategy": "dual_ma", "ts_codes": ["600000.SH"], "start": "2024-01-02", "end": "2024-03-29"}

# (service whose database goes down, a gateway route that needs it)
ROUTES = [
    ("gateway", "GET", "/api/v1/users", None),
    ("gateway", "GET", "/api/v1/api-keys", None),
    ("data", "GET", "/api/v1/securities", None),
    ("data", "GET", "/api/v1/calendar?start=2024-01-01&end=2024-01-31", None),
    ("backtest", "GET", "/api/v1/backtests", None),
    ("backtest", "POST", "/api/v1/backtests", BACKTEST),
    ("execution", "GET", "/api/v1/orders", None),
    ("execution", "GET", "/api/v1/account", None),
    ("risk", "POST", "/api/v1/orders", ORDER),
    ("strategy", "GET", "/api/v1/strategy-instances", None),
]


@pytest.mark.parametrize(("service", "method", "path", "body"), ROUTES, ids=[f"{r[0]}:{r[1]} {r[2]}" for r in ROUTES])
async def test_a_service_whose_database_refuses_connections_answers_503_database_unavailable(
    platform: Platform, service: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    port = _closed_port()
    db = platform.database(service)
    working = db._engine
    db._engine = create_async_engine(f"mysql+asyncmy://lh:not-the-password@127.0.0.1:{port}/lh_{service}")
    try:
        response = await platform.client.request(method, path, json=body, headers=platform.headers)
    finally:
        await db.engine.dispose()
        db._engine = working

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == "database_unavailable"
    assert f"the {service} service's database is unavailable" in response.json()["message"]
    for leak in (str(port), "127.0.0.1", "not-the-password", "Can't connect"):
        assert leak not in response.text
    # Back up: the same route works again.
    again = await platform.client.request("GET", "/api/v1/auth/me", headers=platform.headers)
    assert again.status_code == 200, again.text


FAILURES = [
    (RedisConnectionError("Error 111 connecting to 10.1.2.3:6379. Connection refused."), 503, "cache_unavailable"),
    (RedisTimeoutError("Timeout reading from 10.1.2.3:6379"), 503, "cache_unavailable"),
    (AMQPConnectionError("[Errno 111] connect to 10.1.2.3:5672 refused"), 503, "bus_unavailable"),
    (ChannelInvalidStateError("No active transport in channel to 10.1.2.3:5672"), 503, "bus_unavailable"),
    (OperationalError("SELECT 1", {}, Exception(2003, "Can't connect to MySQL server on '10.1.2.3:3306'")), 503,
     "database_unavailable"),
    (IntegrityError("INSERT ...", {}, Exception(1062, "Duplicate entry 'x' for key 'PRIMARY' on 10.1.2.3")), 500,
     "database_error"),
    # asyncmy's own errors, as the data store's raw bulk connections raise them (not wrapped by SQLAlchemy).
    (MySQLOperationalError(2003, "Can't connect to MySQL server on '10.1.2.3:3306'"), 503, "database_unavailable"),
    (MySQLOperationalError(2013, "Lost connection to MySQL server at '10.1.2.3:3306' during query"), 503,
     "database_unavailable"),
    (MySQLInterfaceError(0, "Connection to 10.1.2.3 closed"), 503, "database_unavailable"),
    (MySQLInternalError(1213, "Deadlock found when trying to get lock (10.1.2.3)"), 503, "database_unavailable"),
    (MySQLIntegrityError(1062, "Duplicate entry 'x' for key 'PRIMARY' on 10.1.2.3"), 500, "database_error"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    FAILURES,
    ids=[f"{type(f[0]).__module__}.{type(f[0]).__name__}{f[0].args[:1]}" for f in FAILURES],
)
async def test_every_service_app_maps_a_dependency_failure_to_a_json_code(
    failure: Exception, status: int, code: str
) -> None:
    """Redis and RabbitMQ are used fail-open on the request paths today (the rate limiter, the read cache), so the
    mapping is shown on a route of a service built by the shared app factory that lets the error through."""
    router = APIRouter()

    @router.get("/v1/boom")
    async def boom() -> None:
        raise failure

    settings = Settings(log_json=False)
    infra = Infra(settings, MemoryBus(), MemoryCache(), ServiceDirectory(settings), shared=True)
    app = create_service_app("strategy", infra, routers=[router])
    headers = {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal("alice", "trader"))}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://strategy") as client:
        response = await client.get("/v1/boom", headers=headers)

    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["message"].startswith("the strategy service's ")
    assert "10.1.2.3" not in response.text


def test_every_service_with_a_database_exposes_its_transaction_retries(platform: Platform) -> None:
    apps = {"gateway": platform.host.state.gateway, **platform.host.state.services}
    exposing = {
        name
        for name, app in apps.items()
        if b"lh_db_transaction_retries_total" in generate_latest(app.state.metrics_registry)
    }
    assert exposing == {"gateway", "data", "backtest", "risk", "execution", "strategy"}
