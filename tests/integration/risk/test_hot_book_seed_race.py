"""A seed is safe while events flow: an event that arrives while the seed's snapshot is being read (after execution
took the snapshot, before the book is written) is not lost — both stores keep an account's recent events and apply
them again over the seed, which counts each once (trades by id, orders only forward). Also `accounts`/`drop`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from services.risk.state.memory_book import MemoryHotBook
from services.risk.state.ports import BookSnapshot, CashEvent, HotBook, SnapshotOrder, TradeEvent, decode_event
from services.risk.state.redis_book import READ, WRITE, RedisHotBook
from shared.core.domain import OrderSide

AT = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
TODAY = date(2026, 12, 7)
A = "acct-race"


def _snapshot(*, trade_ids: frozenset[str] = frozenset()) -> BookSnapshot:
    # 1,000,000.00 CNY; one open buy of 1,000 at 10.00 with 400 traded (its trade t-1 is in the snapshot)
    order = SnapshotOrder("c-1", "600000.SH", OrderSide.BUY, 1000, 1000, "partially_filled", 400, 400)
    return BookSnapshot(A, AT, 100_000_000, (order,), (), trade_ids, frozenset())


async def _check(store: HotBook) -> None:
    # The snapshot is taken (t-1 counted in it); then, before the seed is written, trade t-2 (600 more) arrives and
    # a deposit of 500.00; and t-1's event arrives late too.
    later = TradeEvent(A, "t-2", "c-1", "600000.SH", OrderSide.BUY, 600, -600_300, TODAY)
    deposit = CashEvent(A, "e-1", 50_000)
    early = TradeEvent(A, "t-1", "c-1", "600000.SH", OrderSide.BUY, 400, -400_200, TODAY)
    assert not await store.apply(later)  # not seeded: only kept
    assert not await store.apply(deposit)
    assert not await store.apply(early)
    await store.seed(_snapshot(trade_ids=frozenset({"t-1"})), keep_decided_since=AT)
    view = await store.view(A, TODAY)
    assert view is not None
    # balance 1,000,000.00 - 6,003.00 (t-2) + 500.00 = 994,497.00; t-1 not counted twice
    assert view.balance_fen == 100_000_000 - 600_300 + 50_000
    assert view.holdings["600000.SH"].qty == 600  # (this snapshot lists no lots): t-2 brought 600, t-1 nothing again
    assert await store.accounts() == [A]
    # applying them again changes nothing
    assert not await store.apply(later) and not await store.apply(deposit)
    await store.drop(A)
    assert await store.accounts() == [] and await store.view(A, TODAY) is None


async def test_memory_store_counts_events_that_arrive_during_a_seed() -> None:
    await _check(MemoryHotBook())


async def test_redis_store_counts_events_that_arrive_during_a_seed(redis_client: Redis, book_prefix: str) -> None:
    await _check(RedisHotBook(redis_client, book_prefix))


async def test_an_event_on_a_seeded_redis_book_is_kept_and_applied_in_one_write(
    redis_client: Redis, book_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisHotBook(redis_client, book_prefix)
    await store.seed(_snapshot(trade_ids=frozenset({"t-1"})), keep_decided_since=AT)
    await redis_client.script_load(READ)
    await redis_client.script_load(WRITE)
    trips: list[str] = []
    real_execute = Redis.execute_command

    async def execute(self: Redis, *args: Any, **options: Any) -> Any:
        trips.append(str(args[0]))
        return await real_execute(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", execute)
    later = TradeEvent(A, "t-2", "c-1", "600000.SH", OrderSide.BUY, 600, -600_300, TODAY)
    assert await store.apply(later)
    # the Lua read, then the Lua write (the change and the event kept, if the book is as read): two round trips
    # (it was WATCH, the read, and MULTI/EXEC)
    assert trips == ["EVALSHA", "EVALSHA"]
    trips.clear()
    assert not await store.apply(later)  # again: nothing changes in the book, the event is still kept
    assert trips == ["EVALSHA", "EVALSHA"]
    monkeypatch.undo()

    kept = await redis_client.lrange("{" + f"{book_prefix}:book:{A}" + "}:recent", 0, -1)
    assert [decode_event(raw) for raw in kept] == [later, later]
    view = await store.view(A, TODAY)
    assert view is not None and view.balance_fen == 100_000_000 - 600_300  # t-2 counted once
    # a seed from a snapshot that does not count t-2 yet applies it again from the recent events
    await store.seed(_snapshot(trade_ids=frozenset({"t-1"})), keep_decided_since=AT)
    view = await store.view(A, TODAY)
    assert view is not None and view.balance_fen == 100_000_000 - 600_300


async def test_a_redis_update_is_written_only_over_the_book_it_read(redis_client: Redis, book_prefix: str) -> None:
    """Another writer between an update's read and its write (an event, or the book dropped and seeded again): the
    write finds the book's `ver` moved on, writes nothing, and the update starts over on the book as it is now."""
    store = RedisHotBook(redis_client, book_prefix)
    await store.seed(_snapshot(trade_ids=frozenset({"t-1"})), keep_decided_since=AT)
    other = RedisHotBook(redis_client, book_prefix)
    real_read = store._read
    meddle = [CashEvent(A, "e-1", 50_000), "reseed"]

    async def read_then_meddle(*args: Any, **kwargs: Any) -> Any:
        read = await real_read(*args, **kwargs)
        if meddle:
            step = meddle.pop(0)
            if step == "reseed":  # the snapshot counts neither the deposit nor t-2: the seed forgets them
                await other.drop(A, forget_events=True)
                await other.seed(_snapshot(trade_ids=frozenset({"t-1"})), keep_decided_since=AT)
            else:
                assert isinstance(step, CashEvent) and await other.apply(step)
        return read

    store._read = read_then_meddle  # type: ignore[method-assign]
    later = TradeEvent(A, "t-2", "c-1", "600000.SH", OrderSide.BUY, 600, -600_300, TODAY)
    assert await store.apply(later)
    assert store.conflicts == 2  # written on the third reading
    view = await store.view(A, TODAY)
    assert view is not None
    assert view.balance_fen == 100_000_000 - 600_300  # the reseeded book with t-2 on it, nothing lost or doubled
    assert view.holdings["600000.SH"].qty == 600
