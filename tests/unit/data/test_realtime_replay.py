"""The replay feed: deterministic snapshots from a daily bar that touch its open, high, low and close exactly, never
leave [low, high], and whose volumes and amounts add up to the day's; through the provider, the day's 240 minute
bars add up to the daily bar."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry

from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes
from services.data.realtime.replay import IntradayPath, ReplayFeed, snapshot_at, trading_seconds
from services.data.realtime.snapshots import read_snapshot
from services.data.realtime.store import MemoryLiveStore
from services.data.store import BarRecord, SecurityRecord
from shared.platform.bus import MemoryBus
from shared.platform.clock import EXCHANGE_TZ, ReplayClock
from shared.platform.events.schemas import BarsMinute, LiveQuote

DAY = date(2024, 12, 31)
UP = BarRecord("600000.SH", DAY, 1000, 1050, 980, 1020, 1000, 1_234_500, 1_250_000_000, Decimal(1))
DOWN = BarRecord("000001.SZ", DAY, 1200, 1230, 1150, 1160, 1210, 800_000, 950_000_000, Decimal(1))


def grid(step_s: int = 20) -> list[datetime]:
    start = datetime(2024, 12, 31, 9, 15, tzinfo=EXCHANGE_TZ)
    end = datetime(2024, 12, 31, 15, 0, 20, tzinfo=EXCHANGE_TZ)
    times = []
    while start <= end:
        times.append(start)
        start += timedelta(seconds=step_s)
    return times


def test_trading_seconds_leave_out_the_lunch_break() -> None:
    def t(h: int, m: int, s: int = 0) -> datetime:
        return datetime(2024, 12, 31, h, m, s, tzinfo=EXCHANGE_TZ)

    assert trading_seconds(t(9, 24, 59)) is None
    assert [trading_seconds(t(9, 25)), trading_seconds(t(9, 30)), trading_seconds(t(10, 30))] == [0, 0, 3600]
    assert [trading_seconds(t(11, 30)), trading_seconds(t(12, 30)), trading_seconds(t(13, 0, 1))] == [7200, 7200, 7201]
    assert [trading_seconds(t(15, 0)), trading_seconds(t(16, 0))] == [14_400, 14_400]


def test_the_path_touches_the_bar_and_stays_within_it() -> None:
    for bar in (UP, DOWN):
        path = IntradayPath.of(bar)
        prices = [path.price(s) for s in range(0, 14_401, 20)]
        assert prices[0] == bar.open and prices[-1] == bar.close
        assert min(prices) == bar.low and max(prices) == bar.high
        # the low first on an up day, the high first on a down day
        first_extreme = path.waypoints[1][1]
        assert first_extreme == (bar.low if bar.close >= bar.open else bar.high)


def test_volumes_and_amounts_are_cumulative_and_reach_the_days_exactly() -> None:
    path = IntradayPath.of(UP)
    totals = [path.totals(s) for s in range(0, 14_401, 1)]
    assert totals[-1] == (12_345, 1_250_000_000)  # 1,234,500 shares = 12,345 lots; amount in fen
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(totals))
    assert totals[0][0] > 0  # the opening auction traded


def test_snapshots_are_deterministic_and_read_back_as_valid() -> None:
    first = [snapshot_at(IntradayPath.of(UP), t, (1100, 900)) for t in grid()]
    second = [snapshot_at(IntradayPath.of(UP), t, (1100, 900)) for t in grid()]
    assert first == second
    assert first[0] is None  # 09:15: before the opening auction
    made = [s for s in first if s is not None]
    assert made[0]["time"] == "2024-12-31T09:25:00+08:00"  # nothing before the opening auction
    ticks = [read_snapshot(s) for s in made]  # every one is a valid snapshot
    assert all(UP.low <= t.last <= UP.high for t in ticks)
    assert all(all(p <= 1100 for p, _ in t.ask) and all(p >= 900 for p, _ in t.bid) for t in ticks)
    assert ticks[-1].last == UP.close and ticks[-1].volume == UP.vol
    assert (ticks[-1].high, ticks[-1].low) == (UP.high, UP.low)


class FakeStore:
    async def list_securities(self) -> list[SecurityRecord]:
        return [
            SecurityRecord("600000.SH", "600000", "浦发银行", "SH", "main", False, date(1999, 11, 10), None),
            SecurityRecord("000001.SZ", "000001", "平安银行", "SZ", "main", False, date(1991, 4, 3), None),
        ]

    async def cross_section(self, day: date) -> list[tuple[BarRecord, int | None, int | None]]:
        return [(UP, None, None), (DOWN, None, None)] if day == DAY else []

    async def latest_session(self) -> date:
        return DAY

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[FakeStore]:
        yield self

    async def last_bars(self, before: date | None = None) -> dict[str, tuple[date, int]]:
        # the closes before DAY; the session's own bars (stored: a replayed day) carry the reference, their pre_close
        return {"600000.SH": (DAY - timedelta(days=1), 1000), "000001.SZ": (DAY - timedelta(days=1), 1210)}

    async def session_pre_closes(self, day: date) -> dict[str, int]:
        return {UP.ts_code: UP.pre_close, DOWN.ts_code: DOWN.pre_close} if day == DAY else {}

    async def session_limits(self, day: date) -> dict[str, tuple[int | None, int, int]]:
        return {}  # no exchange limits loaded: the bands are computed from the stored closes

    async def limits_loaded(self, kind: str, day: date) -> datetime | None:
        return None


async def replay_day() -> tuple[list[Any], MemoryLiveStore]:
    bus = MemoryBus()
    seen: list[Any] = []

    async def hear(event: Any) -> None:
        seen.append(event.parsed())

    await bus.subscribe("t", ["bars.1m"], hear)
    live = MemoryLiveStore()
    provider = RealtimeQuotes(FakeStore(), live, bus, QuoteMetrics(CollectorRegistry(), lambda: grid()[0]))  # type: ignore[arg-type]
    feed = ReplayFeed(FakeStore(), provider, ReplayClock(DAY), interval_s=20)  # type: ignore[arg-type]
    await provider.load_securities()
    for t in grid():
        await feed.round_at(DAY, t)
    await provider.expire(datetime(2024, 12, 31, 15, 1, tzinfo=EXCHANGE_TZ))
    for _ in range(100):
        await asyncio.sleep(0)  # the memory bus delivers on its own task
    return [bar for payload in seen if isinstance(payload, BarsMinute) for bar in payload.bars], live


async def test_a_replayed_day_makes_240_bars_that_add_up_to_the_daily_bar() -> None:
    bars, live = await replay_day()
    for daily in (UP, DOWN):
        mine = [b for b in bars if b.ts_code == daily.ts_code]
        assert len(mine) == 240
        assert mine[0].minute == datetime(2024, 12, 31, 9, 30, tzinfo=EXCHANGE_TZ)
        assert mine[-1].minute == datetime(2024, 12, 31, 14, 59, tzinfo=EXCHANGE_TZ)
        assert mine[0].open == Decimal(daily.open) / 100 and mine[-1].close == Decimal(daily.close) / 100
        assert max(b.high for b in mine) == Decimal(daily.high) / 100
        assert min(b.low for b in mine) == Decimal(daily.low) / 100
        assert sum(b.volume for b in mine) == daily.vol
        assert sum(b.amount for b in mine) == Decimal(daily.amount) / 100
        quote = LiveQuote.model_validate_json(await live.quote(daily.ts_code) or b"")
        assert quote.source == "replay" and quote.volume == daily.vol
        assert (quote.limit_up, quote.limit_down) == (
            (Decimal(daily.pre_close) * Decimal("1.1") / 100).quantize(Decimal("0.01")),
            (Decimal(daily.pre_close) * Decimal("0.9") / 100).quantize(Decimal("0.01")),
        )
    # And the same again: the replay is deterministic to the event.
    again, _ = await replay_day()
    assert again == bars


async def test_on_a_replay_clock_the_feed_follows_the_clock() -> None:
    clock = ReplayClock(DAY)  # 09:30 of the session plus the seconds since
    live = MemoryLiveStore()
    provider = RealtimeQuotes(FakeStore(), live, MemoryBus(), QuoteMetrics(CollectorRegistry(), clock.now))  # type: ignore[arg-type]
    feed = ReplayFeed(FakeStore(), provider, clock, interval_s=3)  # type: ignore[arg-type]
    assert await feed.step() is True
    quote = LiveQuote.model_validate_json(await live.quote("600000.SH") or b"")
    assert quote.time == datetime(2024, 12, 31, 9, 30, tzinfo=EXCHANGE_TZ)  # on the 3 s grid at the clock's now
    assert quote.last == Decimal("10.00")  # the open


async def test_at_a_speed_the_feed_replays_the_newest_session_and_stops_after_the_close() -> None:
    wall = [0.0]
    live = MemoryLiveStore()
    provider = RealtimeQuotes(FakeStore(), live, MemoryBus(), QuoteMetrics(CollectorRegistry(), lambda: grid()[0]))  # type: ignore[arg-type]
    clock = ReplayClock()  # no session set: the feed takes the store's newest, 2024-12-31
    feed = ReplayFeed(FakeStore(), provider, clock, interval_s=3, speed=60, monotonic=lambda: wall[0])  # type: ignore[arg-type]
    assert await feed.step() is True  # 09:25:00: the opening auction
    auction = LiveQuote.model_validate_json(await live.quote("600000.SH") or b"")
    assert auction.time == datetime(2024, 12, 31, 9, 25, tzinfo=EXCHANGE_TZ) and auction.last == Decimal("10.00")
    wall[0] = 65.0  # 65 wall seconds at 60x: 10:30:00 of the session
    assert await feed.step() is True
    assert LiveQuote.model_validate_json(await live.quote("600000.SH") or b"").time == datetime(
        2024, 12, 31, 10, 30, tzinfo=EXCHANGE_TZ
    )
    wall[0] = 600.0  # long after 15:00: the last round closes the day, then the feed is done
    assert await feed.step() is False
    last = LiveQuote.model_validate_json(await live.quote("600000.SH") or b"")
    assert last.last == Decimal("10.20") and last.volume == UP.vol  # the close, the day's whole volume
