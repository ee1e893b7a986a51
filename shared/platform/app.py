"""The app factory every service uses: lifespan around its infrastructure, /healthz, /readyz, /metrics,
correlation ids, JSON errors with machine-readable codes, and authenticated routes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from asyncmy.errors import MySQLError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.platform.apidocs import install_api_docs
from shared.platform.body_limit import BodyLimitMiddleware
from shared.platform.bus import EventBus, create_bus
from shared.platform.bus.metrics import register_bus_metrics
from shared.platform.cache import Cache, create_cache
from shared.platform.clock import MarketClock, RealClock, ReplayClock, ShiftedClock
from shared.platform.errors import ServiceError, dependency_failure, unavailable_message
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import internal_principal
from shared.platform.loop_lag import LoopLag
from shared.platform.observability import (
    CORRELATION_HEADER,
    REQUEST_ID_HEADER,
    configure_logging,
    correlation_id_var,
    new_id,
)
from shared.platform.route_names import cache_route_names
from shared.platform.settings import Settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("lianghua.access")

ReadinessCheck = Callable[[], Awaitable[Any]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics")
# What the access log keeps of a request path: anyone can send a 60 KB one, and every log line goes through the
# redacting filter and on to the log store.
MAX_LOGGED_PATH = 2048
READY_CACHE_S = 1.0  # how long a /readyz answer is reused
# Our requests take milliseconds: the instrumentator's default 0.1/0.5/1 s buckets would make p50/p99 guesses.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def market_clock(settings: Settings) -> MarketClock:
    """The market clock `LH_MARKET_CLOCK` asks for. A replay clock is an object in one process that the services
    following it must share, so it is refused outside standalone mode (where every service runs in one process). A
    shifted clock (LH_MARKET_CLOCK_AT, LH_MARKET_CLOCK_ANCHOR) is computed from the settings alone, so processes given
    the same settings agree on it: any mode."""
    if settings.market_clock == "real":
        return RealClock()
    if settings.market_clock == "shifted":
        assert settings.market_clock_at is not None  # the settings refuse "shifted" without it
        return ShiftedClock(settings.market_clock_at, settings.market_clock_anchor)
    if not settings.standalone:
        raise ValueError(
            "LH_MARKET_CLOCK=replay needs standalone mode (LH_MODE=standalone): a replay clock is one process's, "
            "and in fleet mode every service would follow its own. Use LH_MARKET_CLOCK=real in fleet mode."
        )
    return ReplayClock(settings.replay_session)


def warn_if_shifted(clock: MarketClock) -> None:
    """Say at start, once logging is set up, that the market clock is shifted (rehearsals and tests only)."""
    if isinstance(clock, ShiftedClock):
        log.warning(
            "the market clock is shifted: for rehearsals and tests, never in production",
            extra={"market_clock_at": clock.at.isoformat(), "market_clock_anchor": clock.anchor,
                   "market_now": clock.now().isoformat()},
        )  # fmt: skip


@dataclass
class Infra:
    """Connections a service uses, and the market clock. Standalone mode hands every service the same bus, cache,
    directory and clock."""

    settings: Settings
    bus: EventBus
    cache: Cache
    services: ServiceDirectory
    shared: bool = False  # True: someone else starts and closes these
    # Built from the settings by `from_settings` and standalone mode (`market_clock`); the real clock otherwise.
    clock: MarketClock = field(default_factory=RealClock)

    @classmethod
    def from_settings(cls, settings: Settings, source: str) -> Infra:
        return cls(
            settings=settings,
            bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source=source),
            cache=create_cache(settings.redis_url),
            services=ServiceDirectory(settings),
            clock=market_clock(settings),
        )

    async def start(self) -> None:
        if not self.shared:
            await self.bus.start()

    async def close(self) -> None:
        if not self.shared:
            await self.bus.close()
            await self.cache.close()
            await self.services.aclose()


class CorrelationMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): adopt or create the correlation id, echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cid = headers.get(CORRELATION_HEADER.lower()) or headers.get(REQUEST_ID_HEADER.lower()) or new_id()
        token = correlation_id_var.set(cid[:64])
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(CORRELATION_HEADER.encode(), cid[:64].encode())]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            if path not in PUBLIC_PATHS:
                access_log.info(
                    "request",
                    extra={
                        "method": scope.get("method", "WS"),
                        "path": path if len(path) <= MAX_LOGGED_PATH else f"{path[:MAX_LOGGED_PATH]}...",
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            correlation_id_var.reset(token)


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        fields = [".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")) for e in errors]
        first = errors[0] if errors else {"msg": "invalid request"}
        message = f"{fields[0] or 'request'}: {first['msg']}" if fields else str(first["msg"])
        details = [{"field": f, "message": e["msg"], "type": e["type"]} for f, e in zip(fields, errors, strict=True)]
        return error_response(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (bytes that are not UTF-8 JSON): bad input like any other,
            # answered as every malformed body is
            return error_response(422, "invalid_request", f"body: {exc.detail} (expected a JSON object in UTF-8)")
        code = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
        response = error_response(
            exc.status_code, code.get(exc.status_code, f"http_{exc.status_code}"), str(exc.detail)
        )
        response.headers.update(exc.headers or {})  # a 405's `Allow` (RFC 9110)
        return response

    async def _dependency_error(request: Request, exc: Exception) -> JSONResponse:
        # The one place that turns a dependency's failure into an answer, for every service. The body names the
        # dependency, never the driver's message (it carries hosts and ports); the log keeps the whole error.
        service = getattr(request.app.state, "service_name", "")
        code = dependency_failure(exc)
        if code is not None:
            log.error("dependency unavailable", extra={"code": code, "error": type(exc).__name__}, exc_info=exc)
            return error_response(503, code, unavailable_message(service, code))
        # Not a dependency being down: a bug or a broken invariant (e.g. an unexpected constraint violation).
        # Every write is one transaction, so nothing was left half-written.
        log.error("dependency failed", extra={"error": type(exc).__name__}, exc_info=exc)
        kind = "database" if isinstance(exc, SQLAlchemyError | MySQLError) else "cache"
        return error_response(500, f"{kind}_error", f"the {service} service's {kind} failed: {type(exc).__name__}")

    # MySQLError: asyncmy's own errors, raised where a raw driver connection is used (the data store's bulk paths).
    for failure in (SQLAlchemyError, MySQLError, RedisError, AMQPError, ChannelInvalidStateError):
        app.add_exception_handler(failure, _dependency_error)


def create_service_app(
    name: str,
    infra: Infra,
    *,
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan | None = None,
    readiness: dict[str, ReadinessCheck] | None = None,
    public_routers: Sequence[APIRouter] = (),
    version: str = "0.1.0",
) -> FastAPI:
    """A FastAPI app for service `name`. `routers` require an internal token; `public_routers` do not."""
    settings = infra.settings
    checks: dict[str, ReadinessCheck] = dict(readiness or {})
    checks.setdefault("bus", infra.bus.ping)
    checks.setdefault("cache", infra.cache.ping)

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        await infra.start()
        try:
            async with app.state.loop_lag.running():
                if lifespan is None:
                    yield
                else:
                    async with lifespan(app):
                        yield
        finally:
            await infra.close()

    # The API docs pages load their assets from the service itself (shared.platform.apidocs), not FastAPI's CDN
    # defaults.
    app = FastAPI(title=f"LiangHua {name} service", version=version, lifespan=_lifespan, docs_url=None, redoc_url=None)
    install_api_docs(app)
    app.state.settings = settings
    app.state.infra = infra
    app.state.service_name = name
    app.state.metrics_registry = CollectorRegistry()
    register_bus_metrics(infra.bus, app.state.metrics_registry)
    app.state.loop_lag = LoopLag(app.state.metrics_registry)  # lh_event_loop_lag_seconds, probed while it runs
    install_error_handlers(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    # /readyz is public: its answer is kept READY_CACHE_S, and requests that arrive while the dependencies are being
    # checked wait for that one check, so a flood of requests pings each dependency at most once a second.
    answered: list[tuple[float, dict[str, str]]] = []
    checking = asyncio.Lock()

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """Public: each dependency is "ok" or "unavailable" (as checked within the last second); why one failed
        (driver errors, hosts, ports) is logged, never answered."""
        async with checking:
            if not answered or time.monotonic() - answered[0][0] >= READY_CACHE_S:
                results = await asyncio.gather(*(_run_check(name, check) for name, check in checks.items()))
                answered[:] = [(time.monotonic(), dict(zip(checks, results, strict=True)))]
            report = answered[0][1]
        ready = all(r == "ok" for r in report.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "service": name, "checks": report},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)

    # Inside the metrics middleware, so refused bodies are counted (as 4xx of their route).
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    Instrumentator(excluded_handlers=list(PUBLIC_PATHS), registry=app.state.metrics_registry).instrument(
        app, latency_lowr_buckets=LATENCY_BUCKETS_S
    )
    cache_route_names(app)

    for router in routers:
        app.include_router(router, dependencies=[Depends(internal_principal)])
    for router in public_routers:
        app.include_router(router)
    app.add_middleware(CorrelationMiddleware)
    return app


async def _run_check(name: str, check: ReadinessCheck) -> str:
    try:
        result = await asyncio.wait_for(check(), timeout=3.0)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.warning("readiness check failed", extra={"check": name, "error": error[:500]})
        return "unavailable"
    if result is False:
        log.warning("readiness check failed", extra={"check": name, "error": "the check answered False"})
        return "unavailable"
    return "ok"


def serve(app: FastAPI, host: str, port: int, service: str, settings: Settings) -> None:
    """Run one service as its own process (fleet mode)."""
    import uvicorn

    configure_logging(service, settings.log_level, settings.log_json)
    infra = getattr(app.state, "infra", None)
    if isinstance(infra, Infra):
        warn_if_shifted(infra.clock)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, loop="uvloop", http="httptools")
