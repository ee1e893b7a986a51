"""The activity stores (services/risk/state/activity.py), memory and Redis, on the same calls give the same answers:
orders and cancels counted per second and per day, recent orders kept for a minute, the day's opening equity and the
all-time high-water mark, and duplicate claims: of 50 identical orders claimed at once, exactly one wins."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from services.risk.rules.base import Counters, RecentOrder
from services.risk.state.activity import ActivityLog, MemoryActivity, RedisActivity
from shared.core.domain import OrderSide

T0 = datetime(2026, 12, 7, 2, 0, 0, 100_000, tzinfo=UTC)
DAY1, DAY2 = date(2026, 12, 7), date(2026, 12, 8)


@pytest.fixture
async def redis_activity(redis_client: Redis) -> AsyncIterator[RedisActivity]:
    prefix = "lhtest-activity-" + secrets.token_hex(6)
    yield RedisActivity(redis_client, prefix)
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis_client.delete(*keys)


def _order(at: datetime, cid: str, qty: int = 100) -> RecentOrder:
    return RecentOrder("600000.SH", OrderSide.BUY, Decimal("10.50"), qty, at, cid)


async def _story(log: ActivityLog) -> list[object]:
    seen: list[object] = []
    first = await log.read("a", now=T0, day=DAY1, equity=Decimal("1000.00"))
    seen.append((first.counters, first.recent, first.opening_equity, first.high_water))
    await log.note_order("a", _order(T0, "c1"), day=DAY1)
    await log.note_order("a", _order(T0 + timedelta(milliseconds=300), "c2"), day=DAY1)
    await log.note_cancel("a", at=T0 + timedelta(milliseconds=500), day=DAY1, key="c1")
    await log.note_cancel("a", at=T0 + timedelta(milliseconds=600), day=DAY1, key="c1")  # redelivered: once
    same_second = await log.read("a", now=T0 + timedelta(milliseconds=800), day=DAY1, equity=Decimal("1200.00"))
    seen.append((same_second.counters, len(same_second.recent), same_second.opening_equity, same_second.high_water))
    next_second = await log.read("a", now=T0 + timedelta(seconds=1), day=DAY1, equity=Decimal("900.00"))
    seen.append((next_second.counters, next_second.opening_equity, next_second.high_water))
    a_minute_on = await log.read("a", now=T0 + timedelta(seconds=61), day=DAY1, equity=Decimal("900.00"))
    seen.append(len(a_minute_on.recent))
    next_day = await log.read("a", now=T0 + timedelta(days=1), day=DAY2, equity=Decimal("950.00"))
    seen.append((next_day.counters, next_day.opening_equity, next_day.high_water))
    other = await log.read("b", now=T0, day=DAY1, equity=Decimal("5.00"))
    seen.append((other.counters, other.opening_equity))
    return seen


async def test_memory_and_redis_activity_give_the_same_answers(redis_activity: RedisActivity) -> None:
    expected: list[object] = [
        (Counters(), (), Decimal("1000.00"), Decimal("1000.00")),
        # 2 orders and 1 cancel in T0's second, today; the opening stays the first equity seen today; high 1,200.00
        (Counters(2, 1, 2, 1), 2, Decimal("1000.00"), Decimal("1200.00")),
        (Counters(0, 0, 2, 1), Decimal("1000.00"), Decimal("1200.00")),
        0,  # recent orders are kept 60 s
        (Counters(0, 0, 0, 0), Decimal("950.00"), Decimal("1200.00")),  # a new day opens at its first equity
        (Counters(), Decimal("5.00")),
    ]
    assert await _story(MemoryActivity()) == expected
    assert await _story(redis_activity) == expected


async def test_of_identical_orders_claimed_at_once_one_wins_and_a_retry_of_it_passes(
    redis_activity: RedisActivity,
) -> None:
    for log in (MemoryActivity(), redis_activity):
        wins = await asyncio.gather(*(log.claim("a", "600000.SH|buy|10.50|100", 5, f"c{i}") for i in range(50)))
        assert sum(wins) == 1
        winner = f"c{wins.index(True)}"
        assert await log.claim("a", "600000.SH|buy|10.50|100", 5, winner)  # its own retry
        assert not await log.claim("a", "600000.SH|buy|10.50|100", 5, "other")
        await log.unclaim("a", "600000.SH|buy|10.50|100")
        assert await log.claim("a", "600000.SH|buy|10.50|100", 5, "other")
