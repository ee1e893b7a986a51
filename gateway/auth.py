"""Who is calling: the user behind a JWT or an API key, their role checked against the route's, and their rate limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from gateway.security import InvalidToken, TokenClaims, api_key_matches, parse_api_key, verify_token
from gateway.store import GatewayStore
from shared.cache import Cache
from shared.errors import Forbidden, ServiceError
from shared.internal_auth import Principal
from shared.roles import Role
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
        if not user.role.at_least(needed):
            raise Forbidden("forbidden", f"this needs the {needed.value} role (you have {user.role.value})")
        return user

    check_role.__name__ = f"require_{needed.value}"
    return check_role


Viewer = Annotated[CurrentUser, Depends(require_role(Role.VIEWER))]
Trader = Annotated[CurrentUser, Depends(require_role(Role.TRADER))]
Admin = Annotated[CurrentUser, Depends(require_role(Role.ADMIN))]


# --- log-in throttling -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginPolicy:
    """After `free_*` failed log-ins from one client address, or for one user name, each further failure locks that
    address or name out for twice as long as the one before: 1 s, 2 s, 4 s, ... up to `max_lockout_s`. So one name
    gets at most 10 guesses in its first minute (5 at once, then at 1, 3, 7, 15 and 31 s), and one address at most
    ~20 plus a handful an hour, whatever names it tries. Failures are forgotten `memory_s` after the first one; a
    successful log-in clears its name (not its address: a guesser with one good account could otherwise reset
    it). At most `max_concurrent_verifications` password checks (argon2, ~50 ms of CPU and 64 MiB each) run at once
    in a process; a log-in beyond that is refused at once with 503 `login_busy`, not queued."""

    free_failures_per_name: int = 5
    free_failures_per_address: int = 20
    first_lockout_s: float = 1.0
    max_lockout_s: float = 900.0
    memory_s: int = 3600
    max_concurrent_verifications: int = 4


class LoginThrottle:
    """Failed log-ins per client address and per user name, counted in the cache (shared by gateway processes)."""

    def __init__(self, cache: Cache, policy: LoginPolicy | None = None, clock: Callable[[], float] = time.time):
        self.cache = cache
        self.policy = policy or LoginPolicy()
        self.clock = clock
        self.verifications = asyncio.Semaphore(self.policy.max_concurrent_verifications)

    def _subjects(self, address: str, username: str) -> list[tuple[str, int]]:
        # Names are matched case-insensitively by the database: so are their counters.
        return [
            (f"addr:{address}", self.policy.free_failures_per_address),
            (f"name:{username.casefold()[:64]}", self.policy.free_failures_per_name),
        ]

    async def check(self, address: str, username: str) -> None:
        """429 `login_locked` while the address or the name is locked out (a right password included)."""
        now = self.clock()
        try:
            until = [await self.cache.get(f"login:lock:{subject}") for subject, _ in self._subjects(address, username)]
        except Exception:
            log.warning("login throttle unavailable; attempt let through", exc_info=True)
            return
        latest = max((float(u) for u in until if u is not None), default=0.0)
        if latest > now:
            retry_after = max(1, math.ceil(latest - now))
            raise HeaderError(
                "login_locked",
                f"too many failed log-ins from this address or for this user; retry in {retry_after} s",
                status_code=429,
                headers={"Retry-After": str(retry_after)},
            )

    async def failed(self, address: str, username: str) -> None:
        now, policy = self.clock(), self.policy
        try:
            for subject, free in self._subjects(address, username):
                failures = await self.cache.incr_window(f"login:fail:{subject}", policy.memory_s)
                if failures >= free:
                    lockout = min(policy.max_lockout_s, policy.first_lockout_s * 2 ** min(failures - free, 32))
                    # The time it ends is the value: the key itself lives as long as the failures are remembered.
                    await self.cache.set(f"login:lock:{subject}", repr(now + lockout), ttl_s=policy.memory_s)
        except Exception:
            log.warning("login throttle unavailable; failure not counted", exc_info=True)

    async def succeeded(self, username: str) -> None:
        subject = f"name:{username.casefold()[:64]}"
        try:
            await self.cache.delete(f"login:fail:{subject}", f"login:lock:{subject}")
        except Exception:
            log.warning("login throttle unavailable; failures of this name not cleared", exc_info=True)

    @contextlib.asynccontextmanager
    async def verifying(self) -> AsyncIterator[None]:
        """A slot for one password check, or 503 `login_busy` at once when every slot is taken."""
        if self.verifications.locked():
            raise HeaderError(
                "login_busy",
                "too many log-ins at once; retry in a moment",
                status_code=503,
                headers={"Retry-After": "1"},
            )
        async with self.verifications:
            yield
