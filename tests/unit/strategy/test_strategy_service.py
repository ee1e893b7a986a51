"""The strategy service's routes, in-process with the in-memory backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.strategy.app import create_app
from shared.platform.internal_auth import service_headers
from shared.platform.settings import Settings


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    application = create_app(Settings(redis_url="memory://", amqp_url="memory://"))
    async with application.router.lifespan_context(application):
        yield application


async def test_lists_and_describes_strategies(app: FastAPI) -> None:
    headers = service_headers(app.state.settings.internal_secret, "gateway")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://strategy") as client:
        listed = (await client.get("/v1/strategies", headers=headers)).json()
        names = [s["name"] for s in listed]
        assert "buy_and_hold" in names
        one = await client.get("/v1/strategies/buy_and_hold", headers=headers)
        assert one.status_code == 200
        assert one.json() == listed[names.index("buy_and_hold")]
        assert one.json()["parameters"]["properties"]["cash_reserve"]["default"] == "0"

        missing = await client.get("/v1/strategies/nope", headers=headers)
        assert missing.status_code == 404 and missing.json()["code"] == "unknown_strategy"
        assert (await client.get("/v1/strategies")).status_code == 401


# What the strategy service's request bodies may carry, field by field (InstanceCreate with its Universe and CostModel,
# ParamsUpdate, the start's ReplaySpec, StopRequest): names, numbers, dates and the strategy's parameters — which its
# Params model validates as data. None is code, a file or a module.
BODY_FIELDS = {
    "strategy", "params", "universe", "ts_codes", "index", "filter", "board", "industry", "exclude_st",
    "listed_before", "account_id", "capital", "mode", "bar_freq", "order_timing", "costs", "commission_rate",
    "min_commission", "transfer_fee_rate", "stamp_duty", "slippage", "slippage_amount", "fill_price", "volume_cap",
    "suspended_orders", "corporate_actions", "reload", "cancel_open_orders_on_stop", "replay", "start", "end",
    "days_per_second", "cancel_open_orders",
    "ts_code", "indicators", "name",  # the indicator series' ask (a read: names from the catalogue, numbers)
}  # fmt: skip


def _fields(node: object, schemas: dict[str, Any], seen: set[str]) -> set[str]:
    """Every property name in a schema, through its $refs, at any depth."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= _fields(item, schemas, seen)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.split("/")[-1] not in seen:
            seen.add(ref.split("/")[-1])
            found |= _fields(schemas[ref.split("/")[-1]], schemas, seen)
        properties = node.get("properties")
        if isinstance(properties, dict):
            found |= set(properties)
        for value in node.values():
            found |= _fields(value, schemas, seen)
    return found


def test_no_route_takes_strategy_code() -> None:
    """Strategy code comes from the service's own strategy folders only (hot reload watches them): the catalogue is
    read-only, no route takes a file or anything but JSON, and no body has a field for code."""
    spec = create_app(Settings(redis_url="memory://", amqp_url="memory://")).openapi()
    schemas = spec.get("components", {}).get("schemas", {})
    writes = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method.lower() in ("post", "put", "patch", "delete")
    }
    # the one POST outside the instances computes catalogue indicators over stored bars: a read with a JSON body
    assert all(path.startswith("/v1/strategy-instances") for _, path in writes - {("POST", "/v1/indicators/series")})
    assert {op for path, ops in spec["paths"].items() if path.startswith("/v1/strategies") for op in ops} == {"get"}
    bodies = {
        (method.upper(), path): operation["requestBody"]
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    assert set(bodies) == {
        ("POST", "/v1/strategy-instances"),
        ("PATCH", "/v1/strategy-instances/{instance_id}"),
        ("POST", "/v1/strategy-instances/{instance_id}/start"),
        ("POST", "/v1/strategy-instances/{instance_id}/stop"),
        ("POST", "/v1/indicators/series"),
    }
    for body in bodies.values():
        assert set(body["content"]) == {"application/json"}  # no multipart/form-data: no file upload
    fields = _fields(list(bodies.values()), schemas, set())
    assert {"strategy", "params", "ts_codes", "days_per_second", "cancel_open_orders"} <= fields  # the walk reads them
    assert fields <= BODY_FIELDS, f"a new body field: is it code? {sorted(fields - BODY_FIELDS)}"
