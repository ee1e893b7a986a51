"""The two hot books give the same answers for the same history (a second method for the Redis store: the memory
store, itself checked against execution's arithmetic in tests/unit/risk/test_hot_book.py). Random histories over
two or three accounts — decisions, refusals, order events, partial fills, trades, cash, corporate actions, expiry,
a re-seed — delivered partly out of order and partly twice, go through both stores; every answer, every view and
the final books (orders, lots, running totals) are identical, and the Redis store's running totals equal the sums
over its orders."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from redis.asyncio import Redis

from services.risk.state.book import buy_reservation_fen
from services.risk.state.memory_book import MemoryHotBook
from services.risk.state.ports import (
    AdjustmentEvent,
    BookSnapshot,
    CashEvent,
    OrderEvent,
    SnapshotLots,
    SnapshotOrder,
    TradeEvent,
)
from services.risk.state.redis_book import RedisHotBook
from shared.core.domain import OrderSide

pytestmark = pytest.mark.integration

PREV, TODAY, NEXT = date(2026, 12, 4), date(2026, 12, 7), date(2026, 12, 8)
AT = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
CODES = ("600000.SH", "000001.SZ", "688001.SH")


def lots(rng: random.Random) -> tuple[SnapshotLots, ...]:
    return tuple(
        SnapshotLots(
            code, 100 * rng.randrange(0, 30), {PREV: 100 * rng.randrange(0, 10), TODAY: 100 * rng.randrange(0, 5)}
        )
        for code in rng.sample(CODES, rng.randrange(0, 3))
    )


def order_life(rng: random.Random, account: str, cid: str, at: datetime) -> list[tuple]:
    side = rng.choice((OrderSide.BUY, OrderSide.SELL))
    code, qty, cap = rng.choice(CODES), 100 * rng.randrange(1, 20), rng.randrange(500, 3000)
    session = rng.choice((TODAY, NEXT))
    need = buy_reservation_fen(qty, cap, session) if side is OrderSide.BUY else 0
    life: list[tuple] = [
        ("reserve", account, cid, code, side, qty, cap if side is OrderSide.BUY else 0, need, session, at)
    ]
    if rng.random() < 0.15:
        return [*life, ("release", account, cid)]
    if rng.random() < 0.1:
        return life  # never answered: left to expire
    order_cap = cap if rng.random() < 0.7 else None

    def order(status: str, filled: int) -> tuple:
        ev_session = session if rng.random() < 0.6 else None
        return ("event", OrderEvent(account, cid, code, side, qty, status, filled, order_cap, ev_session))

    if rng.random() < 0.1:
        return [*life, order("rejected", 0)]
    life.append(order("accepted", 0))
    filled = 0
    for k in range(rng.randrange(0, 4)):
        if filled == qty:
            break
        q = min(qty - filled, 100 * rng.randrange(1, 8))
        filled += q
        price = cap - rng.randrange(0, 40) if side is OrderSide.BUY else rng.randrange(500, 3000)
        cash = -buy_reservation_fen(q, price, session) if side is OrderSide.BUY else q * price - 500
        life.append(("event", TradeEvent(account, f"{cid}-t{k}", cid, code, side, q, cash, session)))
        life.append(order("partially_filled" if filled < qty else "filled", filled))
    if filled < qty and rng.random() < 0.6:
        life.append(order(rng.choice(("cancelled", "expired")), filled))
    return life


def history(rng: random.Random) -> tuple[list[BookSnapshot], list[tuple]]:
    accounts = [f"acct-{n}" for n in range(rng.choice((2, 3)))]
    seeds = [
        BookSnapshot(a, AT, rng.randrange(0, 20_000_000), (), lots(rng), frozenset(), frozenset()) for a in accounts
    ]
    lives: list[list[tuple]] = []
    for a in accounts:
        for i in range(rng.randrange(16, 26)):
            lives.append(order_life(rng, a, f"{a}-o{i}", AT + timedelta(seconds=rng.randrange(0, 600))))
        for i in range(rng.randrange(1, 4)):
            lives.append([("event", CashEvent(a, f"{a}-cash{i}", rng.randrange(-500_000, 5_000_000)))])
        code = rng.choice(CODES)
        lives.append(
            [("event", AdjustmentEvent(a, f"{a}-adj", code, 100 * rng.randrange(-2, 5), rng.randrange(0, 900)))]
        )
    ops: list[tuple] = []
    while lives:  # interleave the lives, each in its own order
        life = rng.choice(lives)
        ops.append(life.pop(0))
        if not life:
            lives.remove(life)
    for _ in range(len(ops) // 6):  # some reordering across a life
        i = rng.randrange(len(ops) - 1)
        ops[i], ops[i + 1] = ops[i + 1], ops[i]
    for _ in range(len(ops) // 5):  # some redelivery
        op = rng.choice(ops)
        if op[0] == "event":
            ops.insert(rng.randrange(ops.index(op), len(ops) + 1), op)
    for _ in range(len(ops) // 4):
        ops.insert(rng.randrange(len(ops) + 1), ("view", rng.choice(accounts), rng.choice((PREV, TODAY, NEXT))))
    ops.insert(rng.randrange(len(ops) // 2, len(ops)), ("expire", AT + timedelta(seconds=rng.randrange(0, 600))))
    # a re-seed of one account half-way: execution's balance and lots, one of its orders, some ids already counted
    a = accounts[0]
    mine = [op[1] for op in ops if op[0] == "event" and op[1].account_id == a and isinstance(op[1], TradeEvent)]
    snap_orders = (SnapshotOrder(f"{a}-o0", CODES[0], OrderSide.BUY, 500, 1500, "partially_filled", 300, 200),)
    reseed = BookSnapshot(
        a, AT + timedelta(minutes=5), rng.randrange(0, 20_000_000), snap_orders, lots(rng),
        frozenset(t.trade_id for t in mine[: len(mine) // 2]), frozenset({f"{a}-cash0"}),
    )  # fmt: skip
    ops.insert(len(ops) // 2, ("seed", reseed, AT + timedelta(seconds=rng.randrange(0, 600))))
    ops.append(("release", accounts[-1], f"{accounts[-1]}-o1"))
    return seeds, ops


async def run(store: MemoryHotBook | RedisHotBook, op: tuple) -> object:
    kind = op[0]
    if kind == "event":
        return await store.apply(op[1])
    if kind == "reserve":
        _, account, cid, code, side, qty, cap, need, session, at = op
        return await store.reserve(account, cid, ts_code=code, side=side, qty=qty, cap_fen=cap, need_fen=need,
                                   session=session, decided_at=at)  # fmt: skip
    if kind == "release":
        await store.release(op[1], op[2])
        return None
    if kind == "view":
        return await store.view(op[1], op[2])
    if kind == "expire":
        return await store.expire_decided(op[1])
    assert kind == "seed"
    await store.seed(op[1], keep_decided_since=op[2])
    return None


@pytest.mark.parametrize("seed", range(6))
async def test_memory_and_redis_books_answer_alike(seed: int, redis_client: Redis, book_prefix: str) -> None:
    rng = random.Random(seed)
    seeds, ops = history(rng)
    assert len(ops) >= 200
    memory, shared = MemoryHotBook(), RedisHotBook(redis_client, book_prefix)
    for snapshot in seeds:
        await memory.seed(snapshot, keep_decided_since=AT)
        await shared.seed(snapshot, keep_decided_since=AT)
    answers = set()
    for n, op in enumerate(ops):
        expected, got = await run(memory, op), await run(shared, op)
        assert got == expected, (n, op)
        answers.add(type(expected).__name__ if not isinstance(expected, bool) else f"bool:{expected}")
    assert {"bool:True", "bool:False", "Reservation", "BookView"} <= answers  # the history exercised both ways
    for snapshot in seeds:
        for session in (PREV, TODAY, NEXT):
            assert await shared.view(snapshot.account_id, session) == await memory.view(snapshot.account_id, session)
        stored = await shared.load(snapshot.account_id)
        assert stored is not None and stored.totals_consistent()
        assert stored == memory.book(snapshot.account_id)
