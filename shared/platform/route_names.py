"""The metrics middleware's route name for a request, remembered per (method, path).

prometheus-fastapi-instrumentator names each request's route (its template, e.g. `/v1/orders/{order_id}`, the
`handler` label) by matching the request against every route of the application in turn, on every request: about
a thirtieth of a service's CPU on the order path (py-spy, docs/benchmarks.md). The routes are fixed once the
application serves, so the same method and path always get the same name: it is kept in a bounded dict (emptied when
full, so paths with ids in them cannot make it grow without bound)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from starlette.middleware import Middleware

ROUTE_NAMES_MAX = 4096
ROUTE_PATH_MAX = 256  # longer paths are not remembered


class RouteNameCachingMiddleware(PrometheusInstrumentatorMiddleware):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._handlers: dict[tuple[str, str, str], tuple[str, bool]] = {}

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        scope = request.scope
        key = (scope.get("method", ""), scope.get("path", ""), scope.get("root_path", ""))
        found = self._handlers.get(key)
        if found is None:
            found = super()._get_handler(request)
            # Only a path a route matched, and not a long one: 404s (a scanner's paths) are matched afresh each time
            # instead of filling the dict with whatever was asked.
            if found[1] and len(key[1]) <= ROUTE_PATH_MAX:
                if len(self._handlers) >= ROUTE_NAMES_MAX:
                    self._handlers.clear()
                self._handlers[key] = found
        return found


def cache_route_names(app: FastAPI) -> None:
    """Swap the instrumentator's middleware (added by `Instrumentator.instrument`) for the caching one, same
    arguments. Before the application's middleware stack is built (at its first request)."""
    for i, middleware in enumerate(app.user_middleware):
        if middleware.cls is PrometheusInstrumentatorMiddleware:
            app.user_middleware[i] = Middleware(RouteNameCachingMiddleware, *middleware.args, **middleware.kwargs)
