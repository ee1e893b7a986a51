"""The public routes that belong to the services behind the gateway, built from the table in gateway/routes.py: each
one checks the caller's role, mints the internal token for them and passes the service's answer back as it came
(status and JSON body, or a stream). Their OpenAPI operations come from the services' documents: gateway/openapi.py."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Body, Depends, Path, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.routing import BaseRoute, Match

from gateway.auth import CurrentUser, require_role
from gateway.routes import ID_PATTERN, ROUTES, ProxyRoute
from shared.platform.errors import ServiceError, Unavailable
from shared.platform.internal_auth import INTERNAL_HEADER, mint_internal_token

log = logging.getLogger(__name__)

PASSED_HEADERS = ("retry-after",)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not authenticated: `{code: unauthenticated}`"},
    403: {"description": "the role is too low: `{code: forbidden}`"},
    429: {"description": "rate limited: `{code: rate_limited}`, with Retry-After"},
    503: {
        "description": "the service behind, or a dependency of it, cannot answer now; try again later: "
        "`{code: <service>_unavailable}` or the service's own code (`database_unavailable`, `cache_unavailable`, ...)"
    },
}

Id = Annotated[str, Path(pattern=ID_PATTERN)]


async def forward(
    request: Request, user: CurrentUser, service: str, method: str, path: str, *, with_body: bool = False
) -> Response:
    """Call `service` on the user's behalf and relay its status and JSON body unchanged."""
    state = request.app.state
    headers = {INTERNAL_HEADER: mint_internal_token(state.settings.internal_secret, user.principal)}
    kwargs: dict[str, Any] = {"headers": headers}
    if with_body:
        # The raw bytes, not the parsed dict: the service sees exactly what the client sent (e.g. "10.10" stays).
        content = await request.body()
        if content:  # an optional body left out stays out
            kwargs["content"] = content
            headers["Content-Type"] = "application/json"
    target = f"{path}?{request.url.query}" if request.url.query else path
    try:
        upstream = await state.infra.services.client(service).request(method, target, **kwargs)
    except Unavailable as exc:
        if method != "GET" and isinstance(exc.__cause__, httpx.TimeoutException):
            raise Unavailable(
                exc.code,
                f"{exc.message}; the request may or may not have been carried out. Send it again with the same "
                "client_order_id to find out (it is idempotent)",
            ) from exc
        raise
    return relay(service, upstream)


# Answers streamed through as they are (not JSON): bulk market data, and the HTML backtest reports.
STREAMED_TYPES = ("application/vnd.apache.arrow.stream", "application/vnd.apache.parquet", "text/html")
STREAMED_HEADERS = ("content-length", "x-lh-data-version", "content-disposition")


async def forward_stream(
    request: Request, user: CurrentUser, service: str, path: str, *, query: str | None = None
) -> Response:
    """GET a non-JSON answer (Arrow, Parquet, an HTML report) and stream it through without holding it: a whole
    market is hundreds of MB. Errors (JSON) are relayed as `forward` does. The request's query string is passed on
    unless `query` is given."""
    state = request.app.state
    headers = {INTERNAL_HEADER: mint_internal_token(state.settings.internal_secret, user.principal)}
    query = request.url.query if query is None else query
    target = f"{path}?{query}" if query else path
    upstream = await state.infra.services.client(service).open_stream("GET", target, headers=headers)
    content_type = upstream.headers.get("content-type", "")
    if upstream.status_code != 200 or content_type.split(";")[0].strip() not in STREAMED_TYPES:
        await upstream.aread()
        await upstream.aclose()
        return relay(service, upstream)
    passed = {k: v for k, v in upstream.headers.items() if k.lower() in STREAMED_HEADERS}
    return StreamingResponse(
        upstream.aiter_raw(), media_type=content_type, headers=passed, background=BackgroundTask(upstream.aclose)
    )


def relay(service: str, upstream: httpx.Response) -> Response:
    content_type = upstream.headers.get("content-type", "")
    if upstream.status_code == 401:
        # The service refused the gateway's own internal token: the two disagree on LH_INTERNAL_SECRET. Passing the 401
        # on would tell the user their login is bad (and log them out) when the fault is the deployment's.
        log.error("service rejected the internal token", extra={"service": service, "body": upstream.text[:200]})
        raise ServiceError(
            "internal_auth_failed",
            f"the {service} service did not accept the gateway's credentials (check LH_INTERNAL_SECRET)",
            status_code=502,
        )
    if upstream.content and "json" not in content_type:
        log.error(
            "service answered without JSON",
            extra={"service": service, "status": upstream.status_code, "content_type": content_type},
        )
        if upstream.status_code == 503:
            # Not one of ours (every service answers its 503s in JSON with a code): something in front of it.
            raise Unavailable(f"{service}_unavailable", f"the {service} service is unavailable (HTTP 503)")
        raise ServiceError(
            f"{service}_error",
            f"the {service} service answered HTTP {upstream.status_code} without a JSON body",
            status_code=502,
        )
    headers = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_HEADERS}
    return Response(
        content=upstream.content,
        status_code=upstream.status_code,
        headers=headers,
        media_type=content_type or None,
    )


# --- the routes, built from the table in gateway/routes.py ---------------------------------------------------


def _endpoint(route: ProxyRoute) -> Callable[..., Awaitable[Response]]:
    """The route's handler: checks the role (and, before anything reaches the service, that ids are safe to put in
    its path and that a body is a JSON object), then forwards. Its signature is built so that FastAPI reads those
    checks from it like from a hand-written one."""

    async def endpoint(request: Request, user: CurrentUser, **params: Any) -> Response:
        path = route.path.format(**{name: quote(params[name], safe="") for name in route.path_params})
        if route.streamed:
            return await forward_stream(request, user, route.service, path)
        return await forward(request, user, route.service, route.method, path, with_body=route.body)

    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        inspect.Parameter(
            "user",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[CurrentUser, Depends(require_role(route.role))],
        ),
    ]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Id) for name in route.path_params]
    if route.optional_body:
        parameters.append(
            inspect.Parameter(
                "body",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[dict[str, Any] | None, Body()],
                default=None,
            )
        )
    elif route.body:
        # Read here only to refuse what is not a JSON object; the service is sent the bytes as they came.
        parameters.append(
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[dict[str, Any], Body()])
        )
    endpoint.__signature__ = inspect.Signature(parameters, return_annotation=Response)  # type: ignore[attr-defined]
    endpoint.__name__ = f"{route.method.lower()}_{route.service}_" + re.sub(r"\W+", "_", route.path).strip("_")
    return endpoint


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    """405 with every method the path takes in `Allow` (RFC 9110): where two routes share a path (GET /orders from
    execution, POST /orders to risk), the route that refuses the method knows only its own. A path that is a route's
    own literal path (POST /orders/cancel-all) names that path's methods only, not those of a route whose parameter
    would also match it (GET /orders/{order_id}): the methods the OpenAPI document gives the path."""
    allowed: set[str] = set()
    literal: set[str] = set()
    routes: list[Any] = list(request.app.router.routes)
    while routes:
        route = routes.pop()
        if (included := getattr(route, "original_router", None)) is not None:
            routes.extend(included.routes)  # an included router: its own routes carry the full paths
        elif isinstance(route, BaseRoute) and route.matches(request.scope)[0] is Match.PARTIAL:
            methods = getattr(route, "methods", None) or set()
            allowed |= methods
            if not getattr(route, "param_convertors", None):
                literal |= methods
    return JSONResponse(
        {"code": "method_not_allowed", "message": f"{request.method} is not allowed here"},
        status_code=405,
        headers={"Allow": ", ".join(sorted(literal or allowed))},
    )


def build_router(routes: tuple[ProxyRoute, ...] = ROUTES) -> APIRouter:
    built = APIRouter(prefix="/api")
    for route in routes:
        built.add_api_route(
            route.path,
            _endpoint(route),
            methods=[route.method],
            tags=[route.tag],
            response_class=HTMLResponse if route.path.endswith(".html") else Response,
            include_in_schema=False,  # documented with the service's schemas: gateway/openapi.py
        )
    return built


router = build_router()
