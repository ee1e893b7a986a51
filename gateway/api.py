"""The gateway's own routes: log in, who am I, user administration, API keys, the audit log and the services'
health (admins)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from gateway.auth import WWW_AUTHENTICATE, CurrentUser, HeaderError, LoginThrottle
from gateway.deps import Admin, AdminSession, Store, Viewer, ViewerSession
from gateway.proxy import ERRORS
from gateway.schemas import (
    USERNAME_PATTERN,
    USERNAME_RE,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    AuditEntryOut,
    AuditPage,
    Me,
    ServiceHealth,
    TokenResponse,
    UserCreate,
    UserOut,
    UserUpdate,
)
from gateway.security import (
    hash_password,
    issue_token,
    new_api_key,
    password_needs_rehash,
    verify_password,
)
from shared.platform.app import ReadinessCheck
from shared.platform.errors import Forbidden, NotFound, ServiceError
from shared.platform.http import SERVICES
from shared.platform.roles import Role

router = APIRouter(prefix="/api/v1")


# --- auth --------------------------------------------------------------------------------------------------


def _invalid_credentials() -> HeaderError:
    return HeaderError(
        "invalid_credentials",
        "wrong username or password",
        status_code=401,
        headers={"WWW-Authenticate": WWW_AUTHENTICATE},
    )


@router.post("/auth/token", response_model=TokenResponse, tags=["auth"])
async def issue_access_token(
    request: Request, store: Store, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> TokenResponse:
    """Log in with a username and password (an OAuth2 password form) and get a bearer token. Failed log-ins lock
    out their client and (client, name) pair for a while, and slow down their name by at most a minute
    (429 `login_locked` with `Retry-After`; gateway.auth.LoginPolicy)."""
    settings = request.app.state.settings
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client else "unknown"
    if USERNAME_RE.fullmatch(form.username) is None:
        # No user has such a name, and the database could take it for one that does (MariaDB ignores trailing
        # spaces: 'admin ' would be admin, with counters of its own). The same answer as a wrong password, before
        # any lookup, counted against the client.
        await throttle.check(address, None)
        await throttle.failed(address, None)
        raise _invalid_credentials()
    await throttle.check(address, form.username)  # before any database lookup or password check
    async with throttle.verifying():
        user = await store.get_user(form.username)
        valid = await asyncio.to_thread(verify_password, user.password_hash if user else None, form.password)
        if user is not None and valid and password_needs_rehash(user.password_hash):
            new_hash = await asyncio.to_thread(hash_password, form.password)
            await store.update_user(user.username, password_hash=new_hash)
    if user is None or not valid or user.disabled:
        await throttle.failed(address, form.username)
        raise _invalid_credentials()
    await throttle.succeeded(address, form.username)
    # Named in the audit log's entry of this log-in (gateway/audit.py); a failed one has no user.
    request.state.user = CurrentUser(user.username, user.role, user.account_id, "password")
    token = issue_token(settings.jwt_secret, user.username, user.role, user.account_id, settings.jwt_ttl_s)
    return TokenResponse(access_token=token, role=user.role, expires_in=settings.jwt_ttl_s)


@router.get("/auth/me", response_model=Me, tags=["auth"])
async def who_am_i(user: Viewer) -> Me:
    return Me(username=user.username, role=user.role, account_id=user.account_id, auth=user.via)


# --- users (admin) -----------------------------------------------------------------------------------------


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED, tags=["users"])
async def create_user(body: UserCreate, store: Store, _: AdminSession) -> UserOut:
    password_hash = await asyncio.to_thread(hash_password, body.password)
    user = await store.create_user(body.username, password_hash, body.role, body.account_id or body.username)
    return UserOut.of(user)


@router.get("/users", response_model=list[UserOut], tags=["users"])
async def list_users(store: Store, _: Admin) -> list[UserOut]:
    return [UserOut.of(u) for u in await store.list_users()]


@router.patch("/users/{username}", response_model=UserOut, tags=["users"])
async def update_user(
    username: Annotated[str, Path(pattern=USERNAME_PATTERN)], body: UserUpdate, store: Store, admin: AdminSession
) -> UserOut:
    """Change a user's role, disable or re-enable them, or set a new password."""
    if username == admin.username and (body.disabled or (body.role is not None and body.role is not Role.ADMIN)):
        # Otherwise the last admin can lock everyone out of user administration.
        raise ServiceError("cannot_demote_self", "an admin cannot disable or demote themselves", status_code=409)
    password_hash = await asyncio.to_thread(hash_password, body.password) if body.password else None
    user = await store.update_user(username, role=body.role, disabled=body.disabled, password_hash=password_hash)
    if user is None:
        raise NotFound("user_not_found", f"no user named {username!r}")
    return UserOut.of(user)


# --- API keys ----------------------------------------------------------------------------------------------


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED, tags=["api keys"])
async def create_api_key(body: ApiKeyCreate, store: Store, user: ViewerSession) -> ApiKeyCreated:
    """A key for scripts, acting as you with the role you give it (at most yours, by default yours) until it expires
    or is revoked. The key is shown once; only its hash is kept."""
    role = body.role or user.role
    if not user.role.at_least(role):
        raise Forbidden("role_exceeds_owner", f"a key cannot have the {role.value} role: yours is {user.role.value}")
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise ServiceError("invalid_expiry", "expires_at must be in the future", status_code=422)
    key = new_api_key()
    record = await store.create_api_key(
        user.username, body.name, key.key_id, key.secret_hash, role=role, expires_at=body.expires_at
    )
    return ApiKeyCreated(
        key_id=record.key_id,
        name=record.name,
        role=record.role,
        created_at=record.created_at,
        expires_at=record.expires_at,
        api_key=key.token,
    )


@router.get("/api-keys", response_model=list[ApiKeyOut], tags=["api keys"])
async def list_api_keys(
    store: Store,
    user: ViewerSession,
    all_users: Annotated[bool, Query(alias="all", description="every user's keys (admins only)")] = False,
) -> list[ApiKeyOut]:
    """Your keys, oldest first; with `all=true` (admins) everyone's."""
    if all_users and user.role is not Role.ADMIN:
        raise Forbidden("forbidden", "only an admin lists every user's API keys")
    return [ApiKeyOut.of(k) for k in await store.list_api_keys(None if all_users else user.username)]


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, tags=["api keys"])
async def revoke_api_key(key_id: Annotated[str, Path(max_length=32)], store: Store, user: ViewerSession) -> ApiKeyOut:
    """Revoke one of your keys (an admin can revoke anyone's). Revoking twice keeps the first revocation time."""
    key = await store.get_api_key(key_id)
    if key is None or (key.username != user.username and user.role is not Role.ADMIN):
        raise NotFound("api_key_not_found", f"you have no API key {key_id!r}")
    revoked = await store.revoke_api_key(key_id)
    assert revoked is not None  # keys are never deleted, only revoked
    return ApiKeyOut.of(revoked)


# --- audit log and services' health (admin) ------------------------------------------------------------------


# A date-time with its offset, as text: a query value is always a string, and pydantic would read "0.5" as seconds.
ISO_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$"
MAX_AUDIT_ID = 2**63 - 1  # a BIGINT's largest: a larger id is bad input, not a database error


@router.get("/audit", response_model=AuditPage, tags=["admin"], responses=ERRORS)
async def list_audit(
    store: Store,
    _: Admin,
    user: Annotated[str | None, Query(pattern=USERNAME_PATTERN, description="only this user's requests")] = None,
    path_prefix: Annotated[
        str | None, Query(pattern=r"^/", max_length=512, description="only paths starting with this")
    ] = None,
    since: Annotated[
        str | None, Query(pattern=ISO_TIME_PATTERN, description="only from this time: ISO 8601 with its UTC offset")
    ] = None,
    before_id: Annotated[
        int | None, Query(ge=1, le=MAX_AUDIT_ID, description="the previous page's next_before_id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """Every state-changing request through the gateway (POST, PUT, PATCH, DELETE), newest first: who, how, when,
    method, path, resource id, status and request id; never a body. Written in the background: an entry shows up
    within about a second of its request (docs/operations.md, "Audit log")."""
    try:
        since_at = None if since is None else datetime.fromisoformat(since)
    except ValueError as exc:  # the shape is right, the date is not (a 13th month, a 25th hour)
        raise ServiceError("invalid_request", f"since: {exc}", status_code=422) from exc
    entries = await store.list_audit(
        username=user, path_prefix=path_prefix, since=since_at, before_id=before_id, limit=limit + 1
    )
    more = len(entries) > limit
    entries = entries[:limit]
    return AuditPage(
        entries=[AuditEntryOut.of(e) for e in entries],
        next_before_id=entries[-1].id if more and entries else None,
    )


SERVICE_PROBE_TIMEOUT_S = 3.0


async def _probe(request: Request, service: str) -> ServiceHealth:
    client = request.app.state.infra.services.client(service)
    started = time.perf_counter()
    try:
        health = await asyncio.wait_for(client.request("GET", "/healthz"), SERVICE_PROBE_TIMEOUT_S)
    except Exception:  # not answering, whatever the reason: that is the answer
        return ServiceHealth(service=service, healthz="unavailable", readyz="unavailable", checks={}, latency_ms=None)
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    healthz = "ok" if health.status_code == 200 else f"http_{health.status_code}"
    try:
        ready = await asyncio.wait_for(client.request("GET", "/readyz"), SERVICE_PROBE_TIMEOUT_S)
        body = ready.json()
        readyz = "ready" if ready.status_code == 200 else "not_ready"
        checks = {str(k): str(v) for k, v in (body.get("checks") or {}).items()}
    except Exception:
        readyz, checks = "unavailable", {}
    return ServiceHealth(service=service, healthz=healthz, readyz=readyz, checks=checks, latency_ms=latency_ms)


async def _own_health(request: Request, store: Store) -> ServiceHealth:
    infra = request.app.state.infra
    own: dict[str, ReadinessCheck] = {"db": store.db.ping, "bus": infra.bus.ping, "cache": infra.cache.ping}

    async def run(check: ReadinessCheck) -> str:
        try:
            result = await asyncio.wait_for(check(), SERVICE_PROBE_TIMEOUT_S)
        except Exception:
            return "unavailable"
        return "unavailable" if result is False else "ok"

    results = await asyncio.gather(*(run(check) for check in own.values()))
    checks = dict(zip(own, results, strict=True))
    readyz = "ready" if all(r == "ok" for r in results) else "not_ready"
    return ServiceHealth(service="gateway", healthz="ok", readyz=readyz, checks=checks, latency_ms=0.0)


@router.get("/admin/services", response_model=list[ServiceHealth], tags=["admin"], responses=ERRORS)
async def services_health(request: Request, store: Store, _: Admin) -> list[ServiceHealth]:
    """The gateway and each service behind it: does it answer (`/healthz`), and are its dependencies reachable
    (`/readyz` and its checks), asked now, each within 3 s."""
    probes = await asyncio.gather(*(_probe(request, name) for name in SERVICES))
    return [await _own_health(request, store), *probes]
