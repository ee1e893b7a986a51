"""The metrics middleware's route names, remembered per (method, path)."""

import httpx
import pytest
from fastapi import APIRouter

from shared.platform import route_names
from shared.platform.app import Infra, create_service_app
from shared.platform.internal_auth import service_headers
from shared.platform.route_names import RouteNameCachingMiddleware
from shared.platform.settings import Settings


async def test_route_names_are_the_templates_and_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    router = APIRouter()

    @router.get("/v1/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @router.post("/v1/things/{thing_id}")
    async def post_thing(thing_id: str) -> dict[str, str]:
        return {"posted": thing_id}

    app = create_service_app("t", Infra.from_settings(settings, "t"), routers=[router])
    assert [m.cls for m in app.user_middleware].count(RouteNameCachingMiddleware) == 1
    monkeypatch.setattr(route_names, "ROUTE_NAMES_MAX", 3)
    matched: list[str] = []
    looked_up = RouteNameCachingMiddleware.__mro__[1]._get_handler  # the instrumentator's own lookup

    def counting(self, request):  # type: ignore[no-untyped-def]
        matched.append(request.url.path)
        return looked_up(self, request)

    monkeypatch.setattr(RouteNameCachingMiddleware.__mro__[1], "_get_handler", counting)
    headers = service_headers(settings.internal_secret, "test")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for thing in ("a", "b", "a", "a", "c", "d", "a"):
                assert (await client.get(f"/v1/things/{thing}", headers=headers)).json() == {"id": thing}
            assert (await client.post("/v1/things/a", headers=headers)).json() == {"posted": "a"}
            assert (await client.get("/v1/nowhere", headers=headers)).status_code == 404
            assert (await client.get("/v1/nowhere", headers=headers)).status_code == 404
            metrics = (await client.get("/metrics")).text
    assert 'http_requests_total{handler="/v1/things/{thing_id}",method="GET",status="2xx"} 7.0' in metrics
    assert 'http_requests_total{handler="/v1/things/{thing_id}",method="POST",status="2xx"} 1.0' in metrics
    # looked up once per (method, path) while remembered; the dict emptied when full (3 here): "a" again after c, d
    assert matched[:5] == ["/v1/things/a", "/v1/things/b", "/v1/things/c", "/v1/things/d", "/v1/things/a"]
    assert matched.count("/v1/things/a") == 3  # GET twice (before and after the dict was emptied), POST once
    assert matched.count("/v1/nowhere") == 2  # a path no route matched: looked up each time, never remembered
