"""Who is calling: the user behind a JWT or an API key, their role checked against the route's, and their rate limit."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from gateway.security import InvalidToken, Role, TokenClaims, api_key_matches, parse_api_key, verify_token
from gateway.store import GatewayStore
from shared.cache import Cache
from shared.errors import Forbidden, ServiceError
from shared.internal_auth import Principal
from shared.settings import Settings

log = logging.getLogger(__name__)

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 (a path)
API_KEY_HEADER = "X-API-Key"
RATE_WINDOW_S = 60
WWW_AUTHENTICATE = 'Bearer realm="lianghua"'

# Declared as security schemes so the OpenAPI schema (and Swagger UI) shows both ways in.
bearer_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


class HeaderError(ServiceError):
    """A ServiceError whose response carries headers (WWW-Authenticate, Retry-After)."""

    def __init__(self, code: str, message: str, *, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(code, message, status_code=status_code)
        self.headers = headers


def unauthenticated(message: str) -> HeaderError:
    return HeaderError("unauthenticated", message, status_code=401, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


@dataclass(frozen=True)
class CurrentUser:
    username: str
    role: Role
    account_id: str
    via: str  # "jwt" | "api_key"
    token_expires_at: int | None = None  # unix seconds: a JWT's expiry, or an API key's if it has one

    @property
    def principal(self) -> Principal:
        """What the services behind the gateway see, in the internal token."""
        return Principal(self.username, self.role.value, self.account_id)


@dataclass(frozen=True)
class Credential:
    """What a request presents, checked without I/O: a JWT whose signature, audience and expiry are good, or an
    API key of the right shape (its secret is checked against the database later). `subject` keys the rate limit,
    so a request over the limit is refused before it costs a database lookup."""

    subject: str
    claims: TokenClaims | None = None
    api_key: tuple[str, str] | None = None  # (key_id, secret)


def identify(settings: Settings, *, token: str | None, api_key: str | None) -> Credential:
    """The credential a request presents, or a 401. A bearer that is shaped like an API key is one (for tools that
    can only send `Authorization: Bearer`)."""
    if token and parse_api_key(token) is not None:
        token, api_key = None, token
    if token:
        try:
            claims = verify_token(settings.jwt_secret, token)
        except InvalidToken as exc:
            raise unauthenticated(str(exc)) from exc
        return Credential(f"user:{claims.username}", claims=claims)
    if api_key:
        parsed = parse_api_key(api_key)
        if parsed is None:
            raise unauthenticated("malformed API key (expected lh_<key_id>_<secret>)")
        return Credential(f"key:{parsed[0]}", api_key=parsed)
    raise unauthenticated(f"send Authorization: Bearer <token> (from {TOKEN_URL}) or {API_KEY_HEADER}: <key>")


async def resolve(store: GatewayStore, credential: Credential) -> CurrentUser:
    """The user behind an identified credential, as the user table says now, or a 401."""
    if credential.claims is not None:
        return await _user_from_jwt(store, credential.claims)
    assert credential.api_key is not None
    return await _user_from_api_key(store, *credential.api_key)


async def authenticate(
    store: GatewayStore, settings: Settings, *, token: str | None, api_key: str | None
) -> CurrentUser:
    """The user behind a bearer token or an API key, or a 401."""
    return await resolve(store, identify(settings, token=token, api_key=api_key))


async def _user_from_jwt(store: GatewayStore, claims: TokenClaims) -> CurrentUser:
    # The role and account come from the table, not the token: a disabled user or a changed role takes effect at
    # the next request instead of when the token expires. One indexed lookup (~0.5 ms) is worth that on this path.
    user = await store.get_user(claims.username)
    if user is None or user.disabled:
        raise unauthenticated("the user of this token is disabled or no longer exists")
    return CurrentUser(user.username, user.role, user.account_id, "jwt", claims.expires_at)


async def _user_from_api_key(store: GatewayStore, key_id: str, secret: str) -> CurrentUser:
    found = await store.api_key_with_user(key_id)
    if found is None or not api_key_matches(secret, found[0].secret_hash):
        raise unauthenticated("unknown API key")
    key, user = found
    if key.revoked_at is not None:
        raise unauthenticated("this API key has been revoked")
    if key.expired(datetime.now(UTC)):
        raise unauthenticated("this API key has expired")
    if user.disabled:
        raise unauthenticated("the owner of this API key is disabled")
    await store.touch_api_key(key_id)
    # The key's own role, lowered to its owner's if the owner was demoted since the key was made.
    role = min(key.role, user.role, key=lambda r: r.rank)
    expires_at = None if key.expires_at is None else math.floor(key.expires_at.timestamp())
    return CurrentUser(user.username, role, user.account_id, "api_key", expires_at)


async def enforce_rate_limit(cache: Cache, subject: str, limit: int, *, now: float | None = None) -> None:
    """Fixed one-minute windows per subject in Redis: at most `limit` requests a minute (a burst of up to 2x can
    straddle a window boundary, which is fine for stopping runaway scripts)."""
    now = time.time() if now is None else now
    window = int(now // RATE_WINDOW_S)
    try:
        count = await cache.incr_window(f"rl:{subject}:{window}", RATE_WINDOW_S)
    except Exception:
        # Fail open: the limit protects the fleet from runaway scripts, it is not what keeps orders safe (roles and
        # risk are), and a cache outage must not stop a trader from closing positions.
        log.warning("rate limiter unavailable; request let through", exc_info=True, extra={"subject": subject})
        return
    if count > limit:
        retry_after = max(1, math.ceil((window + 1) * RATE_WINDOW_S - now))
        raise HeaderError(
            "rate_limited",
            f"more than {limit} requests a minute; retry in {retry_after} s",
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )


async def current_user(
    request: Request,
    token: Annotated[str | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> CurrentUser:
    state = request.app.state
    credential = identify(state.settings, token=token, api_key=api_key)
    # Before the user lookup: a request over the limit costs a signature check and a cache increment, no database.
    await enforce_rate_limit(state.infra.cache, credential.subject, state.settings.rate_limit_per_minute)
    user = await resolve(state.store, credential)
    request.state.user = user
    return user


def require_role(needed: Role) -> Callable[[CurrentUser], Awaitable[CurrentUser]]:
    async def check_role(user: Annotated[CurrentUser, Depends(current_user)]) -> CurrentUser:
        if not user.role.allows(needed):
            raise Forbidden("forbidden", f"this needs the {needed.value} role (you have {user.role.value})")
        return user

    check_role.__name__ = f"require_{needed.value}"
    return check_role


Viewer = Annotated[CurrentUser, Depends(require_role(Role.VIEWER))]
Trader = Annotated[CurrentUser, Depends(require_role(Role.TRADER))]
Admin = Annotated[CurrentUser, Depends(require_role(Role.ADMIN))]


async def rate_limit_login(cache: Cache, username: str, limit: int) -> None:
    """Password guesses count against the name being guessed, in their own window (a login is not yet a user)."""
    await enforce_rate_limit(cache, f"login:{username[:64]}", limit)
