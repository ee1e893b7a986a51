"""The gateway in-process over the real MariaDB, Redis and RabbitMQ, with small fake services behind it that record
what reached them. The gateway tests get their own database and exchange namespace, so the admin they bootstrap and
the events they publish never meet another suite's."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from gateway.app import create_app
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.errors import ServiceError
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, verify_internal_token
from shared.platform.settings import Settings

pytestmark = pytest.mark.integration


# Failed log-ins are counted per client address in Redis for an hour: the tests' client gets an address of its own
# per run (IPv6 documentation range), so the failures the tests make on purpose never add up across runs.
CLIENT_ADDRESS = (f"2001:db8:ffff::{secrets.token_hex(2)}:{secrets.token_hex(2)}", 50000)


@dataclass
class Call:
    service: str
    method: str
    path: str
    query: str
    principal: Principal
    headers: dict[str, str]
    body: bytes


@dataclass
class Downstream:
    """Fake data/strategy/backtest/risk/execution apps. Each verifies the internal token like a real service."""

    secret: str
    calls: list[Call] = field(default_factory=list)
    apps: dict[str, FastAPI] = field(default_factory=dict)

    def calls_to(self, service: str) -> list[Call]:
        return [c for c in self.calls if c.service == service]

    def transports(self) -> dict[str, httpx.AsyncBaseTransport]:
        transports: dict[str, httpx.AsyncBaseTransport] = {n: httpx.ASGITransport(a) for n, a in self.apps.items()}

        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        # The strategy service is "down": its calls fail like a closed port.
        transports["strategy"] = httpx.MockTransport(refuse)
        return transports


def build_downstream(secret: str) -> Downstream:
    down = Downstream(secret)

    def service_app(name: str) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Any:
            if request.url.path == "/healthz":
                return await call_next(request)
            try:
                principal = verify_internal_token(secret, request.headers.get(INTERNAL_HEADER, ""))
            except ServiceError as exc:
                return JSONResponse(exc.body(), status_code=401)
            request.state.principal = principal
            down.calls.append(
                Call(
                    name,
                    request.method,
                    request.url.path,
                    request.url.query,
                    principal,
                    {k.lower(): v for k, v in request.headers.items()},
                    await request.body(),
                )
            )
            return await call_next(request)

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok", "service": name}

        down.apps[name] = app
        return app

    risk = service_app("risk")

    @risk.post("/v1/orders")
    async def place(request: Request) -> JSONResponse:
        body = await request.json()
        principal: Principal = request.state.principal
        if body.get("qty", 0) % 100:
            decision = {
                "decision_id": "dec-rejected",
                "approved": False,
                "reasons": [{"code": "lot_size", "message": "qty must be a multiple of 100 shares"}],
            }
            return JSONResponse(
                {"code": "order_rejected", "message": "rejected by risk: lot_size", "decision": decision},
                status_code=422,
            )
        order = {
            "order_id": "ord-" + body["client_order_id"],
            "client_order_id": body["client_order_id"],
            "account_id": principal.account_id,
            "ts_code": body["ts_code"],
            "side": body["side"],
            "order_type": body["order_type"],
            "qty": body["qty"],
            "price": body.get("price"),
            "status": "accepted",
        }
        return JSONResponse({"decision": {"decision_id": "dec-1", "approved": True}, "order": order}, status_code=201)

    @risk.post("/v1/risk/halt")
    async def halt(request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"scope": body["scope"], "key": "", "from_state": "active", "state": body["state"], "changed": True}

    @risk.get("/v1/risk/trading-states")
    async def trading_states(request: Request) -> dict[str, Any]:
        return {"states": [], "history": None}

    @risk.get("/v1/risk/rules")
    async def rule_sets(request: Request) -> dict[str, Any]:
        return {"rule_sets": [], "effective": {"account_id": request.state.principal.account_id}}

    @risk.put("/v1/risk/rules/{scope}")
    async def put_rule_set(scope: str, request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(
            {"scope": scope, "key": body.get("key", ""), "version": 1, "changed": True}, status_code=201
        )

    @risk.delete("/v1/risk/rules/{scope}")
    async def clear_rule_set(scope: str, request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"scope": scope, "key": body.get("key", ""), "version": 2, "body": None}, status_code=201)

    @risk.get("/v1/risk/rules/{scope}/history")
    async def rule_set_history(scope: str, request: Request) -> list[dict[str, Any]]:
        return [{"scope": scope, "key": request.query_params.get("key", ""), "version": 1}]

    execution = service_app("execution")

    @execution.get("/v1/orders")
    async def orders(request: Request) -> list[dict[str, Any]]:
        return [{"order_id": "ord-1", "account_id": request.state.principal.account_id, "status": "filled"}]

    @execution.get("/v1/orders/{order_id}")
    async def order(order_id: str) -> JSONResponse:
        return JSONResponse({"code": "order_not_found", "message": f"no order {order_id}"}, status_code=404)

    @execution.post("/v1/orders/{order_id}/cancel")
    async def cancel(order_id: str) -> dict[str, str]:
        return {"order_id": order_id, "status": "cancelled"}

    @execution.get("/v1/trades")
    async def trades() -> list[dict[str, Any]]:
        return []

    data = service_app("data")

    @data.get("/v1/securities")
    async def securities() -> list[dict[str, Any]]:
        return [{"ts_code": "600000.SH", "name": "浦发银行", "exchange": "SH", "board": "main", "is_st": False}]

    @data.get("/v1/bars")
    async def bars(request: Request) -> dict[str, Any]:
        return {"ts_code": request.query_params.get("ts_code"), "query": str(request.url.query), "bars": []}

    @data.post("/v1/ingest/backfill", status_code=202)
    async def backfill(request: Request) -> dict[str, Any]:
        return {"run_id": "run-1", "body": (await request.json())}

    @data.post("/v1/ingest/limits", status_code=202)
    async def limits(request: Request) -> dict[str, Any]:
        return {"run_id": "run-2", "body": (await request.json())}

    @data.get("/v1/quotes/{ts_code}")
    async def quote(ts_code: str) -> dict[str, Any]:
        return {"ts_code": ts_code, "last_close": "10.00", "limit_up": "11.00", "limit_down": "9.00"}

    backtest = service_app("backtest")

    @backtest.post("/v1/backtests", status_code=202)
    async def start_backtest() -> dict[str, str]:
        return {"backtest_id": "bt-1", "status": "queued"}

    @backtest.get("/v1/backtests")
    async def list_backtests() -> list[dict[str, str]]:
        return [{"backtest_id": "bt-1", "status": "queued"}]

    @backtest.get("/v1/backtests/{backtest_id}")
    async def get_backtest(backtest_id: str) -> dict[str, str]:
        return {"backtest_id": backtest_id, "status": "finished"}

    @backtest.get("/v1/backtests/{backtest_id}/report.html")
    async def report_html(backtest_id: str) -> HTMLResponse:
        if backtest_id == "bt-failed":
            return JSONResponse({"code": "backtest_not_succeeded", "message": "failed"}, status_code=409)
        disposition = {"Content-Disposition": f'attachment; filename="backtest-{backtest_id}.html"'}
        return HTMLResponse(f"<html><body>report of {backtest_id}</body></html>", headers=disposition)

    @backtest.post("/v1/backtests/{backtest_id}/cancel")
    async def cancel_backtest(backtest_id: str) -> dict[str, Any]:
        return {"backtest_id": backtest_id, "status": "running", "cancel_requested": True}

    @backtest.get("/v1/backtests/{backtest_id}/trades")
    async def backtest_trades(backtest_id: str, limit: int = 500, offset: int = 0) -> dict[str, Any]:
        return {"backtest_id": backtest_id, "total": 0, "limit": limit, "offset": offset, "trades": []}

    return down


@dataclass
class UserLogin:
    username: str
    password: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    downstream: Downstream
    _admin_token: str | None = None

    async def login(self, username: str, password: str) -> httpx.Response:
        return await self.client.post("/api/v1/auth/token", data={"username": username, "password": password})

    async def admin_headers(self) -> dict[str, str]:
        if self._admin_token is None:
            response = await self.login(self.settings.admin_username, self.settings.admin_password)
            assert response.status_code == 200, response.text
            self._admin_token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._admin_token}"}

    async def new_user(self, role: str, *, account_id: str | None = None) -> UserLogin:
        username = f"{role}-{secrets.token_hex(4)}"
        password = "pw-" + secrets.token_hex(8)
        body: dict[str, Any] = {"username": username, "password": password, "role": role}
        if account_id:
            body["account_id"] = account_id
        created = await self.client.post("/api/v1/users", json=body, headers=await self.admin_headers())
        assert created.status_code == 201, created.text
        token = (await self.login(username, password)).json()["access_token"]
        return UserLogin(username, password, role, token)


def unique_database_url(settings: Settings, label: str) -> str:
    """This run's MariaDB server, a database of the gateway tests' own (dropped with the run's others)."""
    server, _, name = settings.database_url.rpartition("/")
    run_prefix = name.removesuffix("{service}")  # "lhtest_<run>_"
    return f"{server}/{run_prefix}{label}_{{service}}"


@pytest.fixture(scope="session")
def gw_settings(backing: Any) -> Settings:
    base = backing.settings()
    return backing.settings(
        database_url=unique_database_url(base, "gwtest"),
        bus_namespace=f"{backing.namespace}.gw",
        # The admin's requests from every test share one Redis counter a minute: far from this limit. The rate-limit
        # test runs a gateway of its own with a limit of 5.
        rate_limit_per_minute=1000,
    )


@asynccontextmanager
async def running_gateway(settings: Settings, downstream: Downstream | None = None) -> AsyncIterator[Gateway]:
    downstream = downstream or build_downstream(settings.internal_secret)
    infra = Infra(
        settings=settings,
        bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="gateway"),
        cache=create_cache(settings.redis_url),
        services=ServiceDirectory(settings, transports=downstream.transports()),
        shared=False,
    )
    app = create_app(settings, infra)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app, client=CLIENT_ADDRESS), base_url="http://gateway.test"
        ) as client,
    ):
        yield Gateway(app, client, settings, downstream)


@pytest.fixture(scope="module")
async def gw(gw_settings: Settings) -> AsyncIterator[Gateway]:
    async with running_gateway(gw_settings) as gateway:
        yield gateway


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Run `app` (and its lifespan) under uvicorn on a free loopback port; yield its base URL host:port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if not server.started:
            raise RuntimeError("uvicorn did not start") from task.exception() if task.done() else None
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.fixture(scope="session")
def start_gateway() -> Any:
    """`async with start_gateway(settings) as gateway:` for a test that needs a gateway of its own."""
    return running_gateway


@pytest.fixture(scope="session")
def serve_app() -> Any:
    """`async with serve_app(app) as hostport:` runs the app under uvicorn on a free port."""
    return served
