"""Calling another service over REST: correlation id forwarded, keep-alive below uvicorn's, failures mapped
to errors the caller can act on. In standalone mode the same client talks to an in-process ASGI app."""

from __future__ import annotations

from typing import Any

import httpx

from shared.platform.errors import ServiceError, Unavailable
from shared.platform.observability import CORRELATION_HEADER, current_correlation_id
from shared.platform.settings import Settings

SERVICES = ("data", "strategy", "backtest", "risk", "execution")
# Below uvicorn's 5 s keep-alive timeout, or pooled connections meet closed sockets under load.
KEEPALIVE_EXPIRY_S = 4.0


class ServiceClient:
    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_EXPIRY_S)
        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s, limits=limits, transport=transport, event_hooks={}
        )

    def batch_timeout_s(self, items: int, per_item_s: float) -> float:
        """The timeout of a request carrying `items` orders that the callee handles one after another (a batch):
        the client's own plus `per_item_s` an item, so a large batch is not cut off (and its orders' outcomes left
        unknown) while it is still being worked through."""
        return self.timeout_s + per_item_s * items

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        cid = current_correlation_id()
        if cid and CORRELATION_HEADER not in out:
            out[CORRELATION_HEADER] = cid
        return out

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        try:
            return await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(
                f"{self.name}_unavailable", f"the {self.name} service did not answer: {type(exc).__name__}"
            ) from exc

    async def open_stream(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request and return as soon as the headers arrive, the body unread (bulk Arrow/Parquet answers,
        HTML reports: hundreds of MB must not be held). The caller reads it and must `aclose()` the response."""
        headers = self._headers(kwargs.pop("headers", None))
        try:
            return await self.http.send(self.http.build_request(method, path, headers=headers, **kwargs), stream=True)
        except httpx.TransportError as exc:
            raise Unavailable(
                f"{self.name}_unavailable", f"the {self.name} service did not answer: {type(exc).__name__}"
            ) from exc

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        return _json_or_raise(self.name, await self.request("GET", path, **kwargs))

    async def aclose(self) -> None:
        await self.http.aclose()


def _json_or_raise(name: str, response: httpx.Response) -> Any:
    if response.status_code >= 500:
        raise Unavailable(f"{name}_error", f"the {name} service failed with HTTP {response.status_code}")
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {}
        raise ServiceError(
            str(body.get("code", f"{name}_rejected")),
            str(body.get("message", response.text[:200])),
            status_code=response.status_code,
        )
    return response.json()


class ServiceDirectory:
    """Where each service is: URLs in fleet mode, in-process ASGI transports in standalone mode."""

    def __init__(self, settings: Settings, transports: dict[str, httpx.AsyncBaseTransport] | None = None) -> None:
        self.settings = settings
        # Kept by reference (not `or {}`): standalone mode fills the dict in after building the directory.
        self.transports = transports if transports is not None else {}
        self._clients: dict[str, ServiceClient] = {}

    def url(self, name: str) -> str:
        if name in self.transports:
            return f"http://{name}.internal"
        url: str = getattr(self.settings, f"{name}_url")
        return url

    def client(self, name: str) -> ServiceClient:
        if name not in SERVICES:
            raise KeyError(name)
        if name not in self._clients:
            self._clients[name] = ServiceClient(
                name,
                self.url(name),
                timeout_s=self.settings.http_timeout_s,
                transport=self.transports.get(name),
            )
        return self._clients[name]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
