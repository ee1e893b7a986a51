"""Service-to-service identity. The gateway authenticates people; every hop behind it carries a short-lived
token (HS256, audience `lianghua-internal`) naming the user and role, so no service endpoint is open."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from fastapi import Request

from shared.errors import ServiceError

INTERNAL_HEADER = "X-LH-Internal-Token"
AUDIENCE = "lianghua-internal"
TOKEN_TTL_S = 300


@dataclass(frozen=True)
class Principal:
    subject: str  # a username, or "svc:<service>" for a service acting on its own
    role: str  # viewer | trader | admin | service
    account_id: str | None = None


def mint_internal_token(secret: str, principal: Principal, ttl_s: int = TOKEN_TTL_S) -> str:
    now = int(time.time())
    claims = {
        "sub": principal.subject,
        "role": principal.role,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl_s,
    }
    if principal.account_id:
        claims["acct"] = principal.account_id
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_internal_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=AUDIENCE, options={"require": ["exp", "sub", "role", "aud"]}
        )
    except jwt.PyJWTError as exc:
        raise ServiceError("unauthenticated", f"invalid internal token: {exc}", status_code=401) from exc
    return Principal(subject=str(claims["sub"]), role=str(claims["role"]), account_id=claims.get("acct"))


def service_headers(secret: str, service: str) -> dict[str, str]:
    return {INTERNAL_HEADER: mint_internal_token(secret, Principal(f"svc:{service}", "service"))}


async def internal_principal(request: Request) -> Principal:
    """FastAPI dependency for every non-public route of a service."""
    token = request.headers.get(INTERNAL_HEADER)
    if not token:
        raise ServiceError("unauthenticated", f"missing {INTERNAL_HEADER}", status_code=401)
    principal = verify_internal_token(request.app.state.settings.internal_secret, token)
    request.state.principal = principal
    return principal
