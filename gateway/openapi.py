"""The gateway's public OpenAPI document: its own routes, and each forwarded route with the service's real request
and response schemas, under the public path, with the gateway's credentials and its own answers added.

The services' documents come from `gateway/service_openapi.json`, written by `scripts/service_openapi.py` from the
services' apps and kept current by a test (tests/unit/gateway/test_gateway_openapi.py): the gateway imports no
service, its document does not change with which service happens to answer at start-up, and standalone and fleet
publish the same one."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from gateway.routes import ID_PATTERN, ROUTES, ProxyRoute

SERVICE_SPECS = Path(__file__).resolve().parent / "service_openapi.json"
SECURITY: list[dict[str, list[str]]] = [{"OAuth2PasswordBearer": []}, {"APIKeyHeader": []}]
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "Every refusal and failure: a machine-readable `code`, a `message`, sometimes `details` and other "
    "fields (e.g. risk's `decision`).",
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
    "required": ["code", "message"],
}
# The gateway's own answers on every forwarded route, before (or instead of) the service's.
GATEWAY_RESPONSES: dict[str, str] = {
    "401": "not authenticated: `unauthenticated`",
    "403": "the role is too low: `forbidden`",
    "413": "the body is larger than LH_MAX_BODY_BYTES: `body_too_large`",
    "422": "the request is not valid: `invalid_request` (at the gateway or the service), or the service's own code",
    "429": "rate limited: `rate_limited`, with Retry-After",
    "502": "the service refused the gateway's credentials or answered without JSON: `internal_auth_failed`, "
    "`<service>_error`",
    "503": "the service, or a dependency of it, cannot answer now; try again later: `<service>_unavailable` or the "
    "service's own code (`database_unavailable`, ...)",
}
ROLE_NOTE = {"viewer": "any signed-in user", "trader": "a trader or an admin", "admin": "an admin"}


@cache
def service_specs() -> dict[str, Any]:
    specs: dict[str, Any] = json.loads(SERVICE_SPECS.read_text(encoding="utf-8"))
    return specs


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v, renames) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            out["$ref"] = "#/components/schemas/" + renames.get(ref.rsplit("/", 1)[1], ref.rsplit("/", 1)[1])
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def _uses_validation_error(response: dict[str, Any]) -> bool:
    return "HTTPValidationError" in json.dumps(response)


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def _errors_as_they_are(doc: dict[str, Any]) -> None:
    """FastAPI documents its 422 as `{detail: [...]}`; the platform answers every error `{code, message, ...}`."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if _uses_validation_error(response):
                    operation["responses"][status] = _error_response(response.get("description", "invalid request"))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA


def merge(base: dict[str, Any], specs: dict[str, Any], routes: tuple[ProxyRoute, ...] = ROUTES) -> dict[str, Any]:
    """`base` (the gateway's own document) with the `routes` taken from the services' documents `specs`."""
    doc = copy.deepcopy(base)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    renames: dict[str, dict[str, str]] = {}
    for service in sorted({r.service for r in routes}):
        renames[service] = {}
        for name, schema in specs[service].get("components", {}).get("schemas", {}).items():
            # The same name with another meaning in two services (or the gateway) gets the service's prefix.
            if name in schemas and schemas[name] != schema and name not in ("HTTPValidationError", "ValidationError"):
                renames[service][name] = f"{service}_{name}"
        for name, schema in specs[service].get("components", {}).get("schemas", {}).items():
            schemas[renames[service].get(name, name)] = _rewrite_refs(schema, renames[service])
    for route in routes:
        operation = _rewrite_refs(
            copy.deepcopy(specs[route.service]["paths"][route.path][route.method.lower()]), renames[route.service]
        )
        operation["tags"] = [route.tag]
        operation["operationId"] = f"{route.service}_{operation['operationId']}"
        operation["security"] = SECURITY
        role = f"Role: {ROLE_NOTE[route.role.value]}; forwarded to the {route.service} service."
        operation["description"] = f"{operation.get('description', '').strip()}\n\n{role}".strip()
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "path":
                parameter["schema"] = {**parameter.get("schema", {}), "pattern": ID_PATTERN}
        responses = operation.setdefault("responses", {})
        for status, description in GATEWAY_RESPONSES.items():
            responses.setdefault(status, _error_response(description))
        if route.path_params:
            responses.setdefault("404", _error_response("no such " + " or ".join(route.path_params)))
        for status, response in responses.items():
            if int(status) >= 400 and "content" not in response:  # every refusal is `{code, message}`
                response["content"] = {"application/json": {"schema": ERROR_REF}}
        doc.setdefault("paths", {}).setdefault(route.public_path, {})[route.method.lower()] = operation
    _errors_as_they_are(doc)
    return doc


def install(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Make `app.openapi()` answer the merged document (built once, on first use)."""
    build_own = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = merge(build_own(), service_specs())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
