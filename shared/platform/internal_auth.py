"""Service-to-service identity. The gateway authenticates people; every hop behind it carries a short-lived
token (HS256, audience `lianghua-internal`) naming the user and role, so no service endpoint is open."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request

from shared.platform.errors import ServiceError
from shared.platform.roles import SERVICE, Role, user_role

INTERNAL_HEADER = "X-LH-Internal-Token"
AUDIENCE = "lianghua-internal"
TOKEN_TTL_S = 300
# The subjects of two services that the order path names: the strategy service places orders for its instances
# (through risk, each carrying its instance's sleeve), and risk acts as itself (e.g. reading execution's snapshots).
STRATEGY_SUBJECT = "svc:strategy"
RISK_SUBJECT = "svc:risk"


@dataclass(frozen=True)
class Principal:
    subject: str  # a username, or "svc:<service>" for a service acting on its own
    role: str  # a user's Role (viewer | trader | admin), or SERVICE
    account_id: str | None = None

    @property
    def is_service(self) -> bool:
        return self.role == SERVICE

    def at_least(self, needed: Role) -> bool:
        """A user whose role includes `needed` (a service acting on its own has no user role: False)."""
        role = user_role(self.role)
        return role is not None and role.at_least(needed)

    @property
    def acts_for_everyone(self) -> bool:
        """An admin, or a service on its own behalf: sees every owner's records and acts for any account."""
        return self.is_service or self.at_least(Role.ADMIN)


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
    return {INTERNAL_HEADER: mint_internal_token(secret, Principal(f"svc:{service}", SERVICE))}


async def internal_principal(request: Request) -> Principal:
    """FastAPI dependency for every non-public route of a service."""
    token = request.headers.get(INTERNAL_HEADER)
    if not token:
        raise ServiceError("unauthenticated", f"missing {INTERNAL_HEADER}", status_code=401)
    principal = verify_internal_token(request.app.state.settings.internal_secret, token)
    request.state.principal = principal
    return principal


# The calling principal in a route's signature (`principal: Caller`): each service's deps.py hands it on.
Caller = Annotated[Principal, Depends(internal_principal)]
