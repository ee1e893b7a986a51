"""The Redis hot book under concurrent decisions on the real Redis: a reservation's check and record are one step, so
100 decisions racing for cash or shares enough for exactly 37 reserve exactly 37 — from one client or from two
(two risk processes) — and events applied while decisions race keep the running totals equal to the sums over the
orders, ending where the same operations one by one end."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest
from redis.asyncio import Redis

from services.risk.state.book import buy_reservation_fen
from services.risk.state.memory_book import MemoryHotBook
from services.risk.state.ports import (
    BookSnapshot,
    CashEvent,
    OrderEvent,
    Reservation,
    SnapshotLots,
    TradeEvent,
    Verdict,
)
from services.risk.state.redis_book import RedisHotBook
from shared.core.domain import OrderSide
from tests.conftest import Backing

pytestmark = pytest.mark.integration

TODAY = date(2026, 12, 7)
AT = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
A = "acct-race"
# 1,000 at 10.00: 10,000.00 + commission 5.00 (the minimum; 0.025% is 2.50) + transfer fee 0.10 = 10,005.10
NEED = 1_000_510


OTHER_CLIENTS: list[Redis] = []


async def stores(redis_client: Redis, backing: Backing, prefix: str, clients: int) -> list[RedisHotBook]:
    """`clients` stores on the same keys, each with its own Redis client (its own connections): as many risk
    processes."""
    out = [RedisHotBook(redis_client, prefix)]
    for _ in range(clients - 1):
        OTHER_CLIENTS.append(Redis.from_url(backing.redis_url))
        out.append(RedisHotBook(OTHER_CLIENTS[-1], prefix))
    return out


async def close(books: list[RedisHotBook]) -> None:
    while OTHER_CLIENTS:
        await OTHER_CLIENTS.pop().aclose()


@pytest.mark.parametrize("clients", [1, 2])
async def test_100_concurrent_buys_against_cash_for_37_reserve_37(
    clients: int, redis_client: Redis, backing: Backing, book_prefix: str
) -> None:
    assert buy_reservation_fen(1000, 1000, TODAY) == NEED
    books = await stores(redis_client, backing, book_prefix, clients)
    balance = 37 * NEED + NEED - 1  # one fen short of a 38th
    await books[0].seed(BookSnapshot(A, AT, balance, (), (), frozenset(), frozenset()), keep_decided_since=AT)
    results = await asyncio.gather(
        *(
            books[i % clients].reserve(
                A,
                f"b{i}",
                ts_code="600000.SH",
                side=OrderSide.BUY,
                qty=1000,
                cap_fen=1000,
                need_fen=NEED,
                session=TODAY,
                decided_at=AT,
            )
            for i in range(100)
        )
    )
    verdicts = [r.verdict for r in results]
    assert verdicts.count(Verdict.RESERVED) == 37
    assert verdicts.count(Verdict.INSUFFICIENT_CASH) == 63
    assert sorted((r.available for r in results if r.verdict is Verdict.RESERVED), reverse=True) == [
        balance - k * NEED for k in range(37)
    ]  # each saw the cash the ones before it left
    view = await books[-1].view(A, TODAY)
    assert view is not None and (view.reserved_fen, view.available_fen) == (37 * NEED, NEED - 1)
    assert len(view.open_orders) == 37
    await close(books)


@pytest.mark.parametrize("clients", [1, 2])
async def test_100_concurrent_sells_of_100_against_3700_sellable_reserve_37(
    clients: int, redis_client: Redis, backing: Backing, book_prefix: str
) -> None:
    books = await stores(redis_client, backing, book_prefix, clients)
    lots = (SnapshotLots("600000.SH", base=3000, bought_by_session={date(2026, 12, 4): 700, TODAY: 900}),)
    await books[0].seed(BookSnapshot(A, AT, 0, (), lots, frozenset(), frozenset()), keep_decided_since=AT)
    results = await asyncio.gather(
        *(
            books[i % clients].reserve(
                A,
                f"s{i}",
                ts_code="600000.SH",
                side=OrderSide.SELL,
                qty=100,
                cap_fen=0,
                need_fen=0,
                session=TODAY,
                decided_at=AT,
            )
            for i in range(100)
        )
    )
    verdicts = [r.verdict for r in results]
    assert verdicts.count(Verdict.RESERVED) == 37  # 3,000 + 700 bought before today; today's 900 wait for T+1
    assert verdicts.count(Verdict.INSUFFICIENT_POSITION) == 63
    view = await books[-1].view(A, TODAY)
    assert view is not None and view.holdings["600000.SH"].sellable_qty == 0
    assert view.holdings["600000.SH"].qty == 4600
    await close(books)


def race_ops() -> tuple[list[tuple], list[tuple]]:
    """(what is decided first; then decisions and the first orders' events, to run at once). Cash and shares are
    ample, so every decision passes and the end does not depend on the order they ran in."""
    first = [("reserve", f"o{i}", OrderSide.BUY if i % 2 else OrderSide.SELL) for i in range(20)]
    racing: list[tuple] = [("reserve", f"n{i}", OrderSide.BUY if i % 3 else OrderSide.SELL) for i in range(60)]
    for i in range(20):
        side = OrderSide.BUY if i % 2 else OrderSide.SELL
        cash = -buy_reservation_fen(400, 990, TODAY) if side is OrderSide.BUY else 400 * 1010 - 500
        racing.append(("event", OrderEvent(A, f"o{i}", "600000.SH", side, 1000, "accepted", 0, None, TODAY)))
        racing.append(("event", TradeEvent(A, f"t{i}", f"o{i}", "600000.SH", side, 400, cash, TODAY)))
        racing.append(("event", OrderEvent(A, f"o{i}", "600000.SH", side, 1000, "partially_filled", 400, None)))
        if i % 4 == 0:
            racing.append(("event", OrderEvent(A, f"o{i}", "600000.SH", side, 1000, "cancelled", 400, None)))
        if i % 5 == 1:
            racing.append(("release", f"n{i}"))  # reported by none: released (or not yet decided: nothing)
    racing.append(("event", CashEvent(A, "dep-1", 7_000_000)))
    return first, racing


async def do(store: MemoryHotBook | RedisHotBook, op: tuple) -> object:
    if op[0] == "event":
        return await store.apply(op[1])
    if op[0] == "release":
        await store.release(A, op[1])
        return None
    side = op[2]
    return await store.reserve(A, op[1], ts_code="600000.SH", side=side, qty=1000,
                               cap_fen=1000 if side is OrderSide.BUY else 0,
                               need_fen=NEED if side is OrderSide.BUY else 0, session=TODAY, decided_at=AT)  # fmt: skip


async def test_decisions_racing_events_keep_the_totals_equal_to_the_orders(
    redis_client: Redis, backing: Backing, book_prefix: str
) -> None:
    snapshot = BookSnapshot(A, AT, 500_000_000, (), (SnapshotLots("600000.SH", base=1_000_000),), frozenset(),
                            frozenset())  # fmt: skip
    books = await stores(redis_client, backing, book_prefix, 2)
    memory = MemoryHotBook()
    first, racing = race_ops()
    racing_reserves = [op for op in racing if op[0] == "reserve"]
    for store in (books[0], memory):
        await store.seed(snapshot, keep_decided_since=AT)
        for op in first:
            before = await available(store, op)
            assert await do(store, op) == Reservation(Verdict.RESERVED, before)
    # releases race their decisions: run them after, one by one, in the memory store, and in the race in Redis
    racing_now = [op for op in racing if op[0] != "release"]
    releases = [op for op in racing if op[0] == "release"]
    results = await asyncio.gather(*(do(books[n % 2], op) for n, op in enumerate(racing_now + releases)))
    reserved = [r for op, r in zip(racing_now, results, strict=False) if op[0] == "reserve"]
    assert len(reserved) == len(racing_reserves) == 60
    assert all(isinstance(r, Reservation) and r.verdict is Verdict.RESERVED for r in reserved)
    for op in racing_now:
        await do(memory, op)
    stored = await books[0].load(A)
    assert stored is not None and stored.totals_consistent()
    released = {op[1] for op in releases if stored.orders.get(op[1]) is None}
    for cid in sorted(released):  # the releases that came after their decision: the same in the memory store
        await memory.release(A, cid)
    assert stored == memory.book(A)
    view = await books[1].view(A, TODAY)
    assert view == await memory.view(A, TODAY)
    assert view is not None and view.reserved_fen == sum(o.reserved_fen for o in stored.orders.values())
    await close(books)


async def available(store: MemoryHotBook | RedisHotBook, op: tuple) -> int:
    view = await store.view(A, TODAY)
    assert view is not None
    return view.available_fen if op[2] is OrderSide.BUY else view.holdings["600000.SH"].sellable_qty
