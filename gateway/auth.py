"""Who is calling: the user behind a JWT or an API key, their role checked against the route's, and their rate limit."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
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
from shared.platform.cache import Cache
from shared.platform.errors import Forbidden, ServiceError
from shared.platform.internal_auth import Principal
from shared.platform.roles import Role
from shared.platform.settings import Settings

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
    via: str  # "jwt" | "api_key" (| "password": the log-in itself, in the audit log; "link": a report link)
    token_expires_at: int | None = None  # unix seconds: a JWT's expiry, or an API key's if it has one
    key_id: str | None = None  # the API key's id when via == "api_key" (the audit log names it)

    @property
    def principal(self) -> Principal:
        """What the services behind the gateway see, in the internal token."""
        return Principal(self.username, self.role.value, self.account_id)


@dataclass(frozen=True)
class Credential:
    """What a request presents, checked without I/O: a JWT whose signature, audience and expiry are good, or an
    API key of the right shape (its secret is checked against the database later). `subject` keys the rate limit
    counted before the lookup, so a request over the limit is refused before it costs one: the user of a verified
    JWT, or for an API key a hash of the whole key as presented. Not its key id: that is no secret (it is in
    listings and logs), and anyone could use it up with wrong secrets; a wrong secret only uses up its own bucket.
    The key's own limit (`key:<key_id>`) is counted once its secret has matched."""

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
        presented = hashlib.sha256(api_key.strip().encode()).hexdigest()[:32]
        return Credential(f"keyhash:{presented}", api_key=parsed)
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
    # the next request in this process (at most USER_CACHE_TTL_S later in another gateway process) instead of when
    # the token expires. Remembered that long, not read per request (a transaction on every call).
    user = await store.current_user(claims.username)
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
    return CurrentUser(user.username, role, user.account_id, "api_key", expires_at, key_id=key.key_id)


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
    if credential.api_key is not None:
        # The key's own limit, which only its holder can use up.
        await enforce_rate_limit(
            state.infra.cache, f"key:{credential.api_key[0]}", state.settings.rate_limit_per_minute
        )
    request.state.user = user
    return user


def require_role(needed: Role) -> Callable[[CurrentUser], Awaitable[CurrentUser]]:
    async def check_role(user: Annotated[CurrentUser, Depends(current_user)]) -> CurrentUser:
        if not user.role.at_least(needed):
            raise Forbidden("forbidden", f"this needs the {needed.value} role (you have {user.role.value})")
        return user

    check_role.__name__ = f"require_{needed.value}"
    return check_role


def require_session(needed: Role) -> Callable[[CurrentUser], Awaitable[CurrentUser]]:
    """`needed` and a log-in session (a JWT), not an API key: keys are for scripts; credentials (keys, users and
    their passwords) are managed by a person who logged in. Otherwise a key that expires could make one that never
    does, or an admin key a user with a password, and outlive its expiry or revocation."""
    check_role = require_role(needed)

    # A default, not an annotation: annotations are strings here, and `check_role` is not a module-level name.
    async def check_session(user: CurrentUser = Depends(check_role)) -> CurrentUser:
        if user.via != "jwt":
            raise Forbidden("session_required", "manage API keys and users after logging in, not with an API key")
        return user

    check_session.__name__ = f"require_{needed.value}_session"
    return check_session


# --- log-in throttling -------------------------------------------------------------------------------------


def client_group(address: str) -> str:
    """What the log-in throttle counts as one client: an IPv4 address, or an IPv6 /64 (one subscriber's network,
    whose addresses a client can rotate through at will); anything else (e.g. "unknown") as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class LoginPolicy:
    """Failed log-ins are counted per client (an IPv4 address or an IPv6 /64, `client_group`), per (client, name)
    and per name, and forgotten `memory_s` after the first one:

    - a client gets `free_failures_per_address` failures whatever the names, a (client, name) pair
      `free_failures_per_pair`; each failure beyond that locks the client (or the pair) for twice as long as the one
      before, 1 s, 2 s, 4 s, ... up to `max_lockout_s`, a right password from it included;
    - a name (from any client) gets `free_failures_per_name`; each failure beyond that delays every client's next
      attempt on the name by twice as long as the last, 1 s, 2 s, ... but never more than `max_name_delay_s`: a
      guesser with many addresses gets about one guess a minute, and the owner waits a minute at most, never locked
      out for good. A client the name logged in from (successfully) in the last `known_client_s` is not delayed by
      the name at all (its own and its pair's counts still apply).

    A successful log-in clears its pair's and its name's failures (not its client's: a guesser with one good
    account could otherwise reset it). At most `max_concurrent_verifications` password checks (argon2, ~50 ms of
    CPU and 64 MiB each) run at once in a process; a log-in beyond that is refused at once with 503 `login_busy`,
    not queued."""

    free_failures_per_address: int = 20
    free_failures_per_pair: int = 5
    free_failures_per_name: int = 10
    first_lockout_s: float = 1.0
    max_lockout_s: float = 900.0
    max_name_delay_s: float = 60.0
    memory_s: int = 3600
    known_client_s: int = 30 * 24 * 3600
    max_concurrent_verifications: int = 4


class LoginThrottle:
    """Failed log-ins per client, per (client, name) and per name, counted in the cache (shared by gateway
    processes). `username` is None for a name that cannot be a user's (it then counts against its client only)."""

    def __init__(self, cache: Cache, policy: LoginPolicy | None = None, clock: Callable[[], float] = time.time):
        self.cache = cache
        self.policy = policy or LoginPolicy()
        self.clock = clock
        self.verifications = asyncio.Semaphore(self.policy.max_concurrent_verifications)

    def _subjects(self, client: str, username: str | None) -> list[tuple[str, int, float]]:
        """(subject, free failures, longest lockout). Names are compared exactly, as the users table does once a
        name has passed USERNAME_PATTERN (utf8mb4_bin on MariaDB and SQLite's BINARY are case-sensitive; MariaDB's
        PAD SPACE would ignore trailing spaces, which the pattern refuses before any lookup)."""
        policy = self.policy
        subjects = [(f"addr:{client}", policy.free_failures_per_address, policy.max_lockout_s)]
        if username is not None:
            subjects += [
                (f"pair:{client}:{username}", policy.free_failures_per_pair, policy.max_lockout_s),
                (f"name:{username}", policy.free_failures_per_name, policy.max_name_delay_s),
            ]
        return subjects

    async def check(self, address: str, username: str | None) -> None:
        """429 `login_locked` while the client, the pair or the name is locked out (a right password included)."""
        now, client = self.clock(), client_group(address)
        try:
            subjects = [subject for subject, _, _ in self._subjects(client, username)]
            if username is not None and await self.cache.get(f"login:known:{username}:{client}") is not None:
                subjects.remove(f"name:{username}")
            until = [await self.cache.get(f"login:lock:{subject}") for subject in subjects]
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

    async def failed(self, address: str, username: str | None) -> None:
        now, policy = self.clock(), self.policy
        try:
            for subject, free, longest in self._subjects(client_group(address), username):
                failures = await self.cache.incr_window(f"login:fail:{subject}", policy.memory_s)
                if failures >= free:
                    lockout = min(longest, policy.first_lockout_s * 2 ** min(failures - free, 32))
                    # The time it ends is the value: the key itself lives as long as the failures are remembered.
                    await self.cache.set(f"login:lock:{subject}", repr(now + lockout), ttl_s=policy.memory_s)
        except Exception:
            log.warning("login throttle unavailable; failure not counted", exc_info=True)

    async def succeeded(self, address: str, username: str) -> None:
        client = client_group(address)
        subjects = [f"pair:{client}:{username}", f"name:{username}"]
        try:
            await self.cache.delete(*(f"login:{kind}:{s}" for s in subjects for kind in ("fail", "lock")))
            await self.cache.set(f"login:known:{username}:{client}", "1", ttl_s=self.policy.known_client_s)
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
