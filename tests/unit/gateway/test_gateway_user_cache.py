"""The signed-in user remembered briefly by a gateway process (`GatewayStore.current_user`): one read of the users
table per USER_CACHE_TTL_S instead of one per request; a change made through this process (disabled, a new role)
applies from its next request; one made through another process within the bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import USER_CACHE_TTL_S, GatewayStore, UserRecord
from shared.platform.db import Database
from shared.platform.roles import Role


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[GatewayStore, GatewayStore, Clock]]:
    """Two gateway processes' stores on one database, sharing a clock the test moves."""
    clock = Clock()
    url = f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    one = GatewayStore(Database(url), clock=clock)
    other = GatewayStore(Database(url), clock=clock)
    await one.start()
    await other.start()
    await one.create_user("alice", "hash", Role.TRADER, "acct-alice")
    try:
        yield one, other, clock
    finally:
        await one.close()
        await other.close()


def reads(store: GatewayStore) -> int:
    return store.db.operation_counts()["statements"]


async def test_the_user_is_read_once_per_bound_not_per_request(
    stores: tuple[GatewayStore, GatewayStore, Clock],
) -> None:
    one, _, clock = stores
    before = reads(one)
    seen = [await one.current_user("alice") for _ in range(5)]
    assert reads(one) - before == 1
    assert all(u is not None and (u.role, u.account_id, u.disabled) == (Role.TRADER, "acct-alice", False) for u in seen)
    clock.now += USER_CACHE_TTL_S  # the bound has passed: read again
    await one.current_user("alice")
    assert reads(one) - before == 2


async def test_a_user_disabled_or_demoted_through_this_process_is_seen_at_its_next_request(
    stores: tuple[GatewayStore, GatewayStore, Clock],
) -> None:
    one, _, _ = stores
    assert (await one.current_user("alice")) is not None
    await one.update_user("alice", disabled=True)
    user = await one.current_user("alice")  # the clock has not moved
    assert user is not None and user.disabled is True
    await one.update_user("alice", disabled=False, role=Role.VIEWER)
    user = await one.current_user("alice")
    assert user is not None and (user.disabled, user.role) == (False, Role.VIEWER)


async def test_a_change_made_through_another_process_is_seen_within_the_bound(
    stores: tuple[GatewayStore, GatewayStore, Clock],
) -> None:
    one, other, clock = stores
    assert (await one.current_user("alice")).disabled is False  # type: ignore[union-attr]
    await other.update_user("alice", disabled=True)
    clock.now += USER_CACHE_TTL_S - 0.001
    assert (await one.current_user("alice")).disabled is False  # type: ignore[union-attr]  # stale, within the bound
    clock.now += 0.001
    assert (await one.current_user("alice")).disabled is True  # type: ignore[union-attr]


async def test_a_lookup_that_overlaps_a_change_does_not_remember_what_it_read(
    stores: tuple[GatewayStore, GatewayStore, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that began before a change in this process and ends after it may carry the old row: it answers its own
    request with it but is not remembered, so the next request reads the table."""
    one, _, _ = stores
    read = one.get_user

    async def read_then_change(username: str) -> UserRecord | None:
        found = await read(username)
        monkeypatch.setattr(one, "get_user", read)
        await one.update_user(username, disabled=True)  # lands while the lookup is in flight
        return found

    monkeypatch.setattr(one, "get_user", read_then_change)
    assert (await one.current_user("alice")).disabled is False  # type: ignore[union-attr]
    assert (await one.current_user("alice")).disabled is True  # type: ignore[union-attr]


async def test_an_unknown_user_is_not_remembered(stores: tuple[GatewayStore, GatewayStore, Clock]) -> None:
    one, other, _ = stores
    assert await one.current_user("bob") is None
    await other.create_user("bob", "hash", Role.VIEWER, "acct-bob")
    bob = await one.current_user("bob")
    assert bob is not None and bob.account_id == "acct-bob"
