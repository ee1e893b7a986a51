"""The gateway app: the one public entry of the fleet (auth, roles, rate limits, the proxy routes, /ws, the web UI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import alerts, api, bridges, openapi, proxy, reports, ws
from gateway.audit import AuditLog, AuditMiddleware
from gateway.auth import HeaderError, LoginThrottle
from gateway.bootstrap import ensure_admin
from gateway.store import GatewayStore
from shared.platform.app import Infra, ReadinessCheck, create_service_app
from shared.platform.db import Database
from shared.platform.http import SERVICES
from shared.platform.observability import CORRELATION_HEADER, REQUEST_ID_HEADER
from shared.platform.periodic import PeriodicTask
from shared.platform.quote_watch import CHECK_S, QuoteWatch, data_service_put, owner_name
from shared.platform.settings import Settings
from shared.research import report as report_package

AUDIT_PURGE_S = 3600.0
WEB_DIR = Path(__file__).resolve().parent / "web"
# The charting library the backtest reports inline (shared/research/report/vendor, with its licence there): the web
# UI's equity charts use the same file, served from the same origin, so there is one copy of it to keep up to date.
ECHARTS_FILE = Path(report_package.__file__).resolve().parent / "vendor" / "echarts.min.js"

# The UI is plain files from this origin: no inline script, no third-party origin, not framable.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def create_app(settings: Settings, infra: Infra | None = None) -> FastAPI:
    settings.require_jwt_secret()  # the gateway alone signs and checks users' sessions: refuse to start without it
    infra = infra or Infra.from_settings(settings, source="gateway")
    store = GatewayStore(Database(settings.database_url_for("gateway"), lock_wait_s=settings.db_lock_wait_s))
    hub = ws.EventHub()
    # The codes the browsers subscribed to on /ws, leased at the data service so the QMT bridge forwards their ticks
    # (docs/quotes.md, "Ticks of the watched codes"); only with a bridge feeding the quotes.
    quote_watch = QuoteWatch(owner_name("gateway"), hub.watched_codes, data_service_put(infra.services,
                             settings.internal_secret, "gateway"))  # fmt: skip
    watch_loop = PeriodicTask("quote-watch", CHECK_S, quote_watch.check, stop_grace_s=2.0)
    alertmanager = alerts.AlertmanagerApi(settings.alertmanager_url, timeout_s=settings.http_timeout_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        app.state.audit.start()
        purge_loop.start()
        try:
            await ensure_admin(store, settings)
            # One subscription per process, on a private queue (durable=False): every gateway process gets every
            # event, and an event nobody is connected for is not worth keeping.
            await infra.bus.subscribe(ws.CONSUMER, ws.EVENT_PATTERNS, hub.dispatch, durable=False)
            if settings.quotes_ticks and settings.quotes_feed_mode() == "bridge":
                watch_loop.start()
            yield
        finally:
            await watch_loop.stop()
            await purge_loop.stop()
            hub.close_all()
            await app.state.audit.stop()  # what waits is written (or logged) before the database goes
            await alertmanager.aclose()
            await store.close()

    readiness: dict[str, ReadinessCheck] = {"db": store.db.ping}
    for name in SERVICES:
        readiness[name] = _healthy(infra, name)

    app = create_service_app(
        "gateway",
        infra,
        public_routers=[api.router, proxy.router, reports.router, ws.router, bridges.router, alerts.router],
        lifespan=lifespan,
        readiness=readiness,
    )
    app.title = "LiangHua gateway"
    openapi.install(app)  # the forwarded routes documented with the services' schemas
    app.state.store = store
    store.db.register_metrics(app.state.metrics_registry)
    audit = AuditLog(store, retention_days=settings.audit_retention_days, registry=app.state.metrics_registry)
    # The retention: entries older than LH_AUDIT_RETENTION_DAYS deleted hourly (each process: deletes are idempotent).
    purge_loop = PeriodicTask("audit-retention", AUDIT_PURGE_S, audit.purge_expired, stop_grace_s=2.0)
    app.state.audit = audit
    app.state.hub = hub
    app.state.alertmanager = alertmanager
    app.state.quote_watch = quote_watch
    app.state.login_throttle = LoginThrottle(infra.cache)

    app.add_exception_handler(405, proxy.method_not_allowed)

    @app.exception_handler(HeaderError)
    async def _header_error(_: Request, exc: HeaderError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(
            WEB_DIR / "index.html",
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
        )

    # Before the /static mount, which would answer 404 for it.
    @app.get("/static/vendor/echarts/echarts.min.js", include_in_schema=False)
    async def echarts() -> FileResponse:
        return FileResponse(ECHARTS_FILE, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.add_middleware(RequestIdMiddleware)
    # Outermost: it sees every state-changing request's answer and request id (gateway/audit.py).
    app.add_middleware(AuditMiddleware, audit=audit)
    return app


def _healthy(infra: Infra, service: str) -> ReadinessCheck:
    async def check() -> bool:
        response = await infra.services.client(service).request("GET", "/healthz")
        if response.status_code != 200:
            raise RuntimeError(f"{service} /healthz answered HTTP {response.status_code}")
        return True

    return check


class RequestIdMiddleware:
    """Echo the request id as `X-Request-ID` as well as `X-Correlation-ID` (the shared middleware, inside this one,
    adopts either header from the request and sets the latter): clients look for the header they sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                cid = next((v for k, v in headers if k.lower() == CORRELATION_HEADER.lower().encode()), None)
                if cid is not None and REQUEST_ID_HEADER.lower().encode() not in names:
                    headers.append((REQUEST_ID_HEADER.encode(), cid))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_request_id)
