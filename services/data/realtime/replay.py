"""The replay feed (docs/quotes.md, "The replay feed"): the snapshots a bridge would send, made from the stored
daily bars, for standalone mode, the demo and tests. Same shape, same path through the real-time provider.

Each security's day follows a deterministic intraday path through its daily bar: the opening auction at 09:25 at
the open, then straight lines through the open (09:30), the day's first extreme, its second and the close (15:00),
the extremes placed by a hash of the code and the date (the low first on an up day, the high first on a down day),
every price rounded to the fen, so the path touches open, high, low and close exactly and never leaves [low, high].
The day's volume and amount are spread over the auction and the 240 trading minutes by fixed U-shaped weights,
second by second, as cumulative totals that reach the day's exactly at 15:00.

It runs on the market clock (a replay clock's session, or the real clock's today when its bar is stored) or, with a
speed, replays one session from the auction at that many market seconds per wall second."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as wall
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from services.data.realtime.bars import AFTERNOON_CLOSE, AFTERNOON_OPEN, MORNING_CLOSE, MORNING_OPEN
from services.data.realtime.provider import RealtimeQuotes
from services.data.realtime.snapshots import LEVELS, SHARES_PER_LOT
from services.data.store import BarRecord, DataStore
from shared.core.domain.money import from_fen
from shared.platform.clock import EXCHANGE_TZ, MarketClock

log = logging.getLogger(__name__)

AUCTION = time(9, 25)  # the opening auction's result
PRE_OPEN = time(9, 15)
TRADING_MINUTES = 240
AUCTION_WEIGHT = 150  # the opening auction's share of the day, in minute weights


def minute_weight(i: int) -> int:
    """Minute i's (0 = 09:30 .. 239 = 14:59) share of the day's volume: more at the open and the close."""
    return 100 + (200 * (2 * i - 239) ** 2) // (239 * 239)


WEIGHTS = tuple(minute_weight(i) for i in range(TRADING_MINUTES))
TOTAL_WEIGHT = (AUCTION_WEIGHT + sum(WEIGHTS)) * 60  # in weight x seconds


def trading_seconds(at: datetime) -> int | None:
    """Seconds of continuous trading from 09:30 to `at` (lunch left out), 0..14,400; None before the auction."""
    local = at.astimezone(EXCHANGE_TZ).time()
    if local < AUCTION:
        return None
    if local < MORNING_OPEN:
        return 0
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    if local < MORNING_CLOSE:
        return seconds - (9 * 3600 + 30 * 60)
    if local < AFTERNOON_OPEN:
        return 7200
    if local < AFTERNOON_CLOSE:
        return 7200 + seconds - 13 * 3600
    return TRADING_MINUTES * 60


def _hash(ts_code: str, day: date, salt: str) -> int:
    return zlib.crc32(f"{ts_code}|{day.isoformat()}|{salt}".encode())


@dataclass(frozen=True)
class IntradayPath:
    """One security's day: price (fen) and cumulative volume (shares) and amount (fen) at any trading second."""

    bar: BarRecord
    waypoints: tuple[tuple[int, int], ...]  # (trading second, price fen), from 0 to 14,400

    @classmethod
    def of(cls, bar: BarRecord) -> IntradayPath:
        span = TRADING_MINUTES * 60
        first = (20 + _hash(bar.ts_code, bar.trade_date, "first") % 80) * 60  # 09:50 .. 11:09
        second = (130 + _hash(bar.ts_code, bar.trade_date, "second") % 90) * 60  # 13:10 .. 14:39
        extremes = (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
        points = ((0, bar.open), (first, extremes[0]), (second, extremes[1]), (span, bar.close))
        return cls(bar, points)

    def price(self, second: int) -> int:
        for (s0, p0), (s1, p1) in zip(self.waypoints, self.waypoints[1:], strict=False):
            if second <= s1:
                # Rounded half-up to the fen, so a value between two prices stays between them.
                return p0 + ((p1 - p0) * (second - s0) * 2 + (s1 - s0)) // (2 * (s1 - s0))
        return self.waypoints[-1][1]

    @staticmethod
    def weight_through(second: int) -> int:
        """The weight (x seconds) of the auction and the trading seconds before `second`."""
        minute, within = divmod(min(second, TRADING_MINUTES * 60), 60)
        done = AUCTION_WEIGHT * 60 + sum(WEIGHTS[:minute]) * 60
        return done + (WEIGHTS[minute] * within if minute < TRADING_MINUTES else 0)

    def totals(self, second: int) -> tuple[int, int]:
        """Cumulative (lots, amount fen) at `second`: the day's totals spread by weight, exact at the close."""
        weight = self.weight_through(second)
        lots = self.bar.vol // SHARES_PER_LOT
        return lots * weight // TOTAL_WEIGHT, self.bar.amount * weight // TOTAL_WEIGHT


def snapshot_at(
    path: IntradayPath, at: datetime, limits: tuple[int | None, int | None] = (None, None)
) -> dict[str, Any] | None:
    """The snapshot (the bridge's shape) of `path`'s security at `at`, or None before the opening auction. Bid and
    ask are five levels a fen apart around the last price, within the day's limits when given."""
    second = trading_seconds(at)
    if second is None:
        return None
    bar = path.bar
    last = bar.open if second == 0 else path.price(second)
    lots, amount = path.totals(second)
    # High and low so far: the path's extremes reached by now.
    seen = [p for s, p in path.waypoints if s <= second] + [last]
    up, down = limits
    seed = _hash(bar.ts_code, bar.trade_date, at.isoformat())
    bid = [(last - i, 1 + (seed >> i) % 50) for i in range(LEVELS)]
    ask = [(last + 1 + i, 1 + (seed >> (i + 8)) % 50) for i in range(LEVELS)]
    bid = [(p, v) for p, v in bid if p > 0 and (down is None or p >= down)]
    ask = [(p, v) for p, v in ask if up is None or p <= up]

    def levels(pairs: list[tuple[int, int]]) -> list[list[Any]]:
        return [[str(from_fen(p)), v] for p, v in pairs] + [["0", 0]] * (LEVELS - len(pairs))

    return {
        "ts_code": bar.ts_code,
        "time": at.astimezone(EXCHANGE_TZ).isoformat(),
        "last": str(from_fen(last)),
        "open": str(from_fen(bar.open)),
        "high": str(from_fen(max(seen))),
        "low": str(from_fen(min(seen))),
        "pre_close": str(from_fen(bar.pre_close)),
        "amount": str(from_fen(amount)),
        "volume_lots": lots,
        "bid": levels(bid),
        "ask": levels(ask),
    }


class ReplayFeed:
    """Feeds the provider a round every `interval_s` (market seconds; the round's time is on that grid, so the
    snapshots of a moment are the same whatever the wall clock did) until the replayed day is over."""

    def __init__(
        self,
        store: DataStore,
        provider: RealtimeQuotes,
        clock: MarketClock,
        *,
        interval_s: float = 3.0,
        speed: float | None = None,
        grace_s: float = 5.0,
        monotonic: Callable[[], float] = wall.monotonic,
    ) -> None:
        self.store = store
        self.provider = provider
        self.clock = clock
        self.replayed_session = clock.session  # the replay clock's session (None on the real clock)
        self.interval = timedelta(seconds=interval_s)
        self.speed = speed
        self.grace = timedelta(seconds=grace_s)
        self.monotonic = monotonic
        self._paths: dict[date, list[IntradayPath]] = {}
        self._task: asyncio.Task[None] | None = None
        self._started: float | None = None
        self._speed_day: date | None = None
        self.last_round: datetime | None = None
        self._empty_day: date | None = None

    async def paths(self, day: date) -> list[IntradayPath]:
        if day not in self._paths:
            self._paths = {day: [IntradayPath.of(bar) for bar, _, _ in await self.store.cross_section(day)]}
        return self._paths[day]

    async def _market_now(self) -> tuple[date, datetime] | None:
        if self.speed is None:
            now = self.clock.now()
            day = self.replayed_session() or now.astimezone(EXCHANGE_TZ).date()
            return day, now
        if self._speed_day is None:
            self._speed_day = self.replayed_session() or await self.store.latest_session()
            self._started = self.monotonic()
        if self._speed_day is None or self._started is None:
            return None
        start = datetime.combine(self._speed_day, AUCTION, tzinfo=EXCHANGE_TZ)
        return self._speed_day, start + timedelta(seconds=(self.monotonic() - self._started) * self.speed)

    def _on_grid(self, day: date, at: datetime) -> datetime:
        start = datetime.combine(day, PRE_OPEN, tzinfo=EXCHANGE_TZ)
        steps = (at - start) // self.interval
        return start + steps * self.interval

    async def round_at(self, day: date, at: datetime) -> int:
        """Feed the provider the snapshots of every security with a bar on `day` at `at` (a grid time); then let the
        bar timer run at `at`. How many snapshots were sent."""
        raws = []
        for path in await self.paths(day):
            security = self.provider.security(path.bar.ts_code)
            limits = (
                await self.provider.limits(security, day, path.bar.pre_close) if security is not None else (None, None)
            )
            raw = snapshot_at(path, at, limits)
            if raw is not None:
                raws.append(raw)
        if raws:
            await self.provider.ingest(raws, "replay", now=at)  # checked against the replayed moment
        await self.provider.expire(at)
        self.last_round = at
        return len(raws)

    async def step(self) -> bool:
        """One round at the market's now (if it is a new grid time); False once the replayed day is over."""
        found = await self._market_now()
        if found is None:
            return False
        day, now = found
        local = now.astimezone(EXCHANGE_TZ)
        if local.date() != day or local.time() < AUCTION:
            return True  # not yet: before the auction (or the clock is on another day)
        closing = datetime.combine(day, AFTERNOON_CLOSE, tzinfo=EXCHANGE_TZ)
        at = self._on_grid(day, min(now, closing + self.grace + self.interval))
        if self.last_round is not None and at <= self.last_round:
            return True
        await self.provider.load_securities()
        sent = await self.round_at(day, at)
        if sent == 0 and self._empty_day != day:
            self._empty_day = day
            log.info("nothing to replay: no stored bars of the day", extra={"day": day.isoformat()})
        return at < closing + self.grace

    async def run(self) -> None:
        idle = max(min(self.interval.total_seconds() / (self.speed or 1.0), 1.0), 0.05)
        while True:
            try:
                if not await self.step() and self.speed is not None:
                    log.info("the replayed session is over", extra={"day": str(self._speed_day)})
                    return
            except Exception:
                log.exception("replay feed round failed")
            await asyncio.sleep(idle)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="quotes-replay-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
