"""The gateway's own routes: log in, who am I, user administration and API keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from gateway.auth import WWW_AUTHENTICATE, HeaderError, LoginThrottle
from gateway.deps import Admin, AdminSession, Store, Viewer, ViewerSession
from gateway.schemas import (
    USERNAME_PATTERN,
    USERNAME_RE,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    Me,
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
from shared.platform.errors import Forbidden, NotFound, ServiceError
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
async def list_api_keys(store: Store, user: ViewerSession) -> list[ApiKeyOut]:
    return [ApiKeyOut.of(k) for k in await store.list_api_keys(user.username)]


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, tags=["api keys"])
async def revoke_api_key(key_id: Annotated[str, Path(max_length=32)], store: Store, user: ViewerSession) -> ApiKeyOut:
    """Revoke one of your keys (an admin can revoke anyone's). Revoking twice keeps the first revocation time."""
    key = await store.get_api_key(key_id)
    if key is None or (key.username != user.username and user.role is not Role.ADMIN):
        raise NotFound("api_key_not_found", f"you have no API key {key_id!r}")
    revoked = await store.revoke_api_key(key_id)
    assert revoked is not None  # keys are never deleted, only revoked
    return ApiKeyOut.of(revoked)
