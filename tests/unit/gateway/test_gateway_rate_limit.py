"""The per-user rate limit: fixed one-minute windows counted in the cache."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from gateway.auth import HeaderError, enforce_rate_limit
from gateway.deps import Viewer
from gateway.security import NewApiKey, issue_token
from gateway.store import ApiKeyRecord, UserRecord
from shared.platform.app import install_error_handlers
from shared.platform.cache import MemoryCache
from shared.platform.roles import Role

MINUTE_START = 1_700_000_040.0  # a multiple of 60


async def test_limit_allows_exactly_n_requests_per_window_then_429() -> None:
    cache = MemoryCache()
    for i in range(5):
        await enforce_rate_limit(cache, "alice", 5, now=MINUTE_START + i)
    with pytest.raises(HeaderError) as refused:
        await enforce_rate_limit(cache, "alice", 5, now=MINUTE_START + 15.2)
    assert refused.value.status_code == 429 and refused.value.code == "rate_limited"
    # 15.2 s into the minute: 44.8 s left, rounded up.
    assert refused.value.headers == {"Retry-After": "45"}


async def test_users_are_counted_separately() -> None:
    cache = MemoryCache()
    for _ in range(3):
        await enforce_rate_limit(cache, "alice", 3, now=MINUTE_START)
    await enforce_rate_limit(cache, "bob", 3, now=MINUTE_START)  # bob is not limited by alice's use


async def test_next_window_starts_afresh() -> None:
    cache = MemoryCache()
    for _ in range(2):
        await enforce_rate_limit(cache, "alice", 2, now=MINUTE_START + 30)
    with pytest.raises(HeaderError):
        await enforce_rate_limit(cache, "alice", 2, now=MINUTE_START + 59.5)
    await enforce_rate_limit(cache, "alice", 2, now=MINUTE_START + 60)


class BrokenCache(MemoryCache):
    async def incr_window(self, key: str, window_s: int) -> int:
        raise ConnectionError("redis is down")


async def test_cache_outage_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    await enforce_rate_limit(BrokenCache(), "alice", 1)
    assert "rate limiter unavailable" in caplog.text


# --- the limit runs before the user lookup ------------------------------------------------------------------


class CountingStore:
    """The gateway's user store, counting its lookups: every user exists, no API key does."""

    def __init__(self) -> None:
        self.lookups = 0

    async def get_user(self, username: str) -> UserRecord:
        self.lookups += 1
        return UserRecord(username, "hash", Role.TRADER, username, datetime(2026, 1, 1, tzinfo=UTC), False)

    async def current_user(self, username: str) -> UserRecord:
        return await self.get_user(username)  # not remembered: every served request is a lookup here

    async def api_key_with_user(self, key_id: str) -> None:
        self.lookups += 1
        return None


def _app(store: CountingStore, limit: int) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.store = store
    app.state.settings = SimpleNamespace(jwt_secret=JWT_SECRET, rate_limit_per_minute=limit)
    app.state.infra = SimpleNamespace(cache=MemoryCache())

    @app.get("/me")
    async def me(user: Viewer) -> dict[str, str]:
        return {"username": user.username}

    return app


JWT_SECRET = "j" * 32


@pytest.mark.parametrize("credential", ["jwt", "api_key"])
async def test_requests_over_the_limit_are_refused_before_any_lookup(
    credential: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One calendar minute for the whole test: the window cannot roll over between requests.
    monkeypatch.setattr("gateway.auth.time", SimpleNamespace(time=lambda: MINUTE_START + 1))
    store = CountingStore()
    if credential == "jwt":
        headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'alice', Role.TRADER, 'alice', 3600)}"}
        served = 200
    else:
        headers = {"X-API-Key": "lh_0123456789abcdef_" + "s" * 43}  # well formed, unknown: 401 after the lookup
        served = 401
    transport = httpx.ASGITransport(_app(store, limit=3))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        statuses = [(await client.get("/me", headers=headers)).status_code for _ in range(10)]
    assert statuses == [served] * 3 + [429] * 7
    assert store.lookups == 3  # the seven refused requests cost no database lookup


class KeyStore(CountingStore):
    """One API key, `KEY`, belonging to alice."""

    async def api_key_with_user(self, key_id: str) -> tuple[ApiKeyRecord, UserRecord] | None:
        self.lookups += 1
        if key_id != KEY.key_id:
            return None
        created = datetime(2026, 1, 1, tzinfo=UTC)
        record = ApiKeyRecord(KEY.key_id, "alice", "bot", KEY.secret_hash, created, None, None, Role.TRADER)
        return record, await self.get_user("alice")

    async def touch_api_key(self, key_id: str) -> None:
        pass


KEY = NewApiKey(key_id="0123456789abcdef", secret="k" * 43)


async def test_wrong_secrets_for_a_key_id_do_not_use_up_the_keys_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.auth.time", SimpleNamespace(time=lambda: MINUTE_START + 1))
    transport = httpx.ASGITransport(_app(KeyStore(), limit=3))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        # Someone who knows the key id (it is in listings and logs) but not the secret, 20 times, 2 secrets.
        wrong = [f"lh_{KEY.key_id}_{c * 43}" for c in "xy"]
        statuses = [(await client.get("/me", headers={"X-API-Key": wrong[i % 2]})).status_code for i in range(20)]
        assert sorted(statuses) == [401] * 6 + [429] * 14  # each wrong secret its own bucket of 3
        # The script holding the key still has its three requests this minute, then its own limit applies.
        right = {"X-API-Key": KEY.token}
        assert [(await client.get("/me", headers=right)).status_code for _ in range(4)] == [200] * 3 + [429]
