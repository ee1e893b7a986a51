"""The gateway's public OpenAPI document carries each forwarded route with the service's real schemas, and the
services' documents it is built from (gateway/service_openapi.json) are current."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.openapi import SERVICE_SPECS, service_specs
from gateway.routes import ROUTES
from lianghua.standalone import build_app
from scripts.service_openapi import render, service_documents
from shared.platform.settings import Mode, Settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    doc: dict[str, Any] = build_app(Settings(mode=Mode.STANDALONE)).state.gateway.openapi()
    return doc


def test_the_services_documents_the_gateway_publishes_are_current() -> None:
    # Fails after a service's route or schema changed: run `python scripts/service_openapi.py`.
    assert json.loads(SERVICE_SPECS.read_text(encoding="utf-8")) == json.loads(render(service_documents()))


def test_every_route_in_the_table_is_a_service_route_with_the_same_body() -> None:
    specs = service_specs()
    for route in ROUTES:
        operation = specs[route.service]["paths"][route.path][route.method.lower()]
        assert ("requestBody" in operation) == route.body, route


def test_an_order_is_documented_with_risk_s_request_and_answer(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/orders"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    order = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert set(order["required"]) >= {"client_order_id", "ts_code", "side", "order_type", "qty"}
    assert order["additionalProperties"] is False
    placed = operation["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    assert placed.rsplit("/", 1)[1] in document["components"]["schemas"]
    # the gateway's own answers, with the platform's error shape
    for status in ("401", "403", "413", "422", "429", "503"):
        assert status in operation["responses"], status
    assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderRefused"  # risk's own, with the decision
    }
    # where a service left FastAPI's `{detail}` in place, the platform's `{code, message}` that is really answered
    bars = document["paths"]["/api/v1/bars"]["get"]["responses"]["422"]
    assert bars["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert operation["security"] == [{"OAuth2PasswordBearer": []}, {"APIKeyHeader": []}]


def test_every_forwarded_route_is_documented_and_every_reference_resolves(document: dict[str, Any]) -> None:
    for route in ROUTES:
        assert route.method.lower() in document["paths"][route.public_path], route
    refs = {r.rsplit("/", 1)[1] for r in _refs(document)}
    assert refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])
    assert "HTTPValidationError" not in refs
    # a path parameter carries the gateway's id pattern (others are refused before reaching the service)
    [order_id] = document["paths"]["/api/v1/orders/{order_id}"]["get"]["parameters"]
    assert order_id["schema"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


def test_bars_document_their_query_and_the_bulk_route_its_arrow_answer(document: dict[str, Any]) -> None:
    bars = document["paths"]["/api/v1/bars"]["get"]
    assert {p["name"]: p["required"] for p in bars["parameters"]}["ts_code"] is True
    bulk = document["paths"]["/api/v1/bars/bulk"]["get"]["responses"]["200"]["content"]
    assert "application/vnd.apache.arrow.stream" in bulk


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
