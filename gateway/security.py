"""The gateway's credentials, without I/O: password hashes (argon2), user JWTs, API keys (roles:
shared/platform/roles.py)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.platform.roles import Role

# Users' session tokens, signed with LH_JWT_SECRET; the internal tokens are signed with LH_INTERNAL_SECRET and carry
# another audience ("lianghua-internal"): a user token is never accepted by a service, nor an internal token here.
AUDIENCE = "lianghua-gateway"
ISSUER = "lianghua-gateway"
JWT_ALGORITHM = "HS256"

API_KEY_PREFIX = "lh"
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a login takes as long for an unknown name as for a known one.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# --- passwords ---------------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches. With no hash (unknown user) a dummy hash is checked, to keep the time flat."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current ones (upgrade it at the next login)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


# --- user tokens -------------------------------------------------------------------------------------------


class InvalidToken(ValueError):
    pass


@dataclass(frozen=True)
class TokenClaims:
    username: str
    role: Role
    account_id: str
    expires_at: int  # unix seconds


def issue_token(
    secret: str, username: str, role: Role, account_id: str, ttl_s: int, *, now: float | None = None
) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": username,
        "role": role.value,
        "acct": account_id,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def verify_token(secret: str, token: str) -> TokenClaims:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],  # never taken from the token header: no "none", no key confusion
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["sub", "role", "exp", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the token has expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid token: {exc}") from exc
    try:
        role = Role(claims["role"])
    except ValueError as exc:
        raise InvalidToken(f"invalid token: unknown role {claims['role']!r}") from exc
    username = str(claims["sub"])
    return TokenClaims(username, role, str(claims.get("acct") or username), int(claims["exp"]))


# --- API keys ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    secret: str

    @property
    def token(self) -> str:
        """What the user is shown once and sends as `X-API-Key`."""
        return f"{API_KEY_PREFIX}_{self.key_id}_{self.secret}"

    @property
    def secret_hash(self) -> str:
        return hash_api_key_secret(self.secret)


def new_api_key() -> NewApiKey:
    # 64 bits of id (a lookup handle, not a secret) and 256 bits of secret.
    return NewApiKey(key_id=secrets.token_hex(8), secret=secrets.token_urlsafe(32))


def parse_api_key(token: str) -> tuple[str, str] | None:
    """Split `lh_<key_id>_<secret>` into (key_id, secret); None when it is not shaped like one of our keys."""
    prefix, _, rest = token.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != API_KEY_PREFIX or not _KEY_ID.match(key_id) or len(secret) < 32:
        return None
    return key_id, secret


def hash_api_key_secret(secret: str) -> str:
    # SHA-256 rather than argon2: the secret is 256 random bits, so no dictionary or brute force can reach it and
    # a slow hash would add nothing but ~50 ms of CPU to every API-key request. Only human passwords need argon2.
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key_secret(secret), secret_hash)
