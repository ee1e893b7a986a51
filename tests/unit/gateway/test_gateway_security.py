"""Passwords, user tokens, roles and API keys of the gateway, without I/O."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from gateway.security import (
    AUDIENCE,
    InvalidToken,
    api_key_matches,
    hash_password,
    issue_token,
    new_api_key,
    parse_api_key,
    password_needs_rehash,
    verify_password,
    verify_token,
)
from shared.platform.internal_auth import Principal, mint_internal_token
from shared.platform.roles import Role

SECRET = "unit-test-secret-0123456789abcdef"


# --- passwords ---


def test_password_hash_verifies_only_the_right_password() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse battery" not in stored
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse batterY")
    assert not verify_password(stored, "")


def test_same_password_hashes_differently_each_time() -> None:
    assert hash_password("s3cret-pass") != hash_password("s3cret-pass")  # salted


def test_unknown_user_and_garbage_hash_never_verify() -> None:
    assert not verify_password(None, "anything")
    assert not verify_password("not-an-argon2-hash", "anything")


def test_current_hashes_need_no_rehash_but_garbage_does() -> None:
    assert not password_needs_rehash(hash_password("abcdefgh"))
    assert password_needs_rehash("not-an-argon2-hash")


# --- tokens ---


def test_token_round_trip_carries_user_role_and_account() -> None:
    token = issue_token(SECRET, "alice", Role.TRADER, "acct-7", ttl_s=600)
    claims = verify_token(SECRET, token)
    assert (claims.username, claims.role, claims.account_id) == ("alice", Role.TRADER, "acct-7")
    assert abs(claims.expires_at - (time.time() + 600)) < 5
    raw = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert raw["aud"] == "lianghua-gateway" and raw["sub"] == "alice" and raw["acct"] == "acct-7"


def test_expired_token_is_refused() -> None:
    token = issue_token(SECRET, "alice", Role.VIEWER, "alice", ttl_s=60, now=time.time() - 3600)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(SECRET, token)


def test_token_signed_with_another_secret_is_refused() -> None:
    token = issue_token("another-secret-0123456789abcdefgh", "alice", Role.ADMIN, "alice", ttl_s=600)
    with pytest.raises(InvalidToken):
        verify_token(SECRET, token)


def test_tampered_role_is_refused() -> None:
    header, payload, signature = issue_token(SECRET, "bob", Role.VIEWER, "bob", ttl_s=600).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(InvalidToken):
        verify_token(SECRET, f"{header}.{forged}.{signature}")


def test_unsigned_token_is_refused() -> None:
    claims = {"sub": "eve", "role": "admin", "aud": AUDIENCE, "iss": "lianghua-gateway", "exp": time.time() + 600}
    token = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(InvalidToken):
        verify_token(SECRET, token)


def test_internal_service_token_is_not_a_user_token() -> None:
    # Same secret, other audience: a token minted for the services cannot log in at the gateway.
    internal = mint_internal_token(SECRET, Principal("alice", "admin", "alice"))
    with pytest.raises(InvalidToken):
        verify_token(SECRET, internal)


def test_unknown_role_in_token_is_refused() -> None:
    claims = {"sub": "eve", "role": "root", "aud": AUDIENCE, "iss": "lianghua-gateway", "exp": time.time() + 600}
    with pytest.raises(InvalidToken, match="unknown role"):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"))


# --- roles ---


@pytest.mark.parametrize(
    ("have", "needed", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.TRADER, False),
        (Role.VIEWER, Role.ADMIN, False),
        (Role.TRADER, Role.VIEWER, True),
        (Role.TRADER, Role.TRADER, True),
        (Role.TRADER, Role.ADMIN, False),
        (Role.ADMIN, Role.VIEWER, True),
        (Role.ADMIN, Role.TRADER, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_roles_are_ordered_viewer_trader_admin(have: Role, needed: Role, allowed: bool) -> None:
    assert have.at_least(needed) is allowed


def test_role_names_are_the_stored_values() -> None:
    assert [r.value for r in sorted(Role, key=lambda r: r.rank)] == ["viewer", "trader", "admin"]


# --- API keys ---


def test_api_key_format_and_parse() -> None:
    key = new_api_key()
    prefix, key_id, secret = key.token.split("_", 2)
    assert prefix == "lh"
    assert key_id == key.key_id and len(key_id) == 16 and int(key_id, 16) >= 0
    assert secret == key.secret and len(secret) >= 43  # 32 random bytes, base64url
    assert parse_api_key(key.token) == (key.key_id, key.secret)
    assert parse_api_key(f"  {key.token}\n") == (key.key_id, key.secret)


def test_api_key_secret_may_contain_underscores() -> None:
    token = "lh_0123456789abcdef_" + "a_b-" * 10
    assert parse_api_key(token) == ("0123456789abcdef", "a_b-" * 10)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "lh_",
        "lh_0123456789abcdef",
        "lh_0123456789abcdef_short",
        "xx_0123456789abcdef_" + "s" * 43,
        "lh_0123456789ABCDEF_" + "s" * 43,  # key ids are lower-case hex
        "lh_0123456789abcde_" + "s" * 43,  # 15 hex digits
        "eyJhbGciOiJIUzI1NiJ9.e30.sig",  # a JWT
    ],
)
def test_malformed_api_keys_do_not_parse(token: str) -> None:
    assert parse_api_key(token) is None


def test_api_key_is_checked_against_its_hash_only() -> None:
    key = new_api_key()
    assert key.secret not in key.secret_hash and len(key.secret_hash) == 64
    assert api_key_matches(key.secret, key.secret_hash)
    assert not api_key_matches(key.secret + "x", key.secret_hash)
    assert not api_key_matches(new_api_key().secret, key.secret_hash)


def test_new_api_keys_are_unique() -> None:
    keys = [new_api_key() for _ in range(200)]
    assert len({k.key_id for k in keys}) == 200
    assert len({k.secret for k in keys}) == 200
