"""1-minute bars built from successive snapshots of one feed (docs/quotes.md, "Minute bars").

- A bar is labelled by its minute's start, Asia/Shanghai: 240 a day, 09:30-11:29 and 13:00-14:59. The opening call
  auction (09:15-09:29) folds into the 09:30 bar, the lunch break's snapshots (11:30-12:59) into 11:29's, and the
  closing auction and anything after 15:00 into 14:59's. Snapshots before 09:15 make no bar.
- OHLC are of the last prices the bar's snapshots carried; volume and amount are differences of the day's cumulative
  totals: the totals of the bar's last snapshot minus those at the close of the bar before (0 at the day's start).
- A bar closes when a snapshot of a later minute of its code arrives, or by the timer (`expire`) once its minute has
  ended `grace_s` ago. A snapshot of a minute already closed (it came late) reopens nothing: it counts in no bar's
  prices, and its volume and amount fall into the next bar (the totals are cumulative).
- A code first seen after 09:30 (the process started mid-session) starts counting from that snapshot: its first bar
  holds only what traded after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple

from services.data.realtime.snapshots import Tick
from shared.platform.clock import EXCHANGE_TZ

AUCTION_START = time(9, 15)
MORNING_OPEN, MORNING_CLOSE = time(9, 30), time(11, 30)
AFTERNOON_OPEN, AFTERNOON_CLOSE = time(13, 0), time(15, 0)
MINUTE = timedelta(minutes=1)


@lru_cache(maxsize=4096)  # a round's snapshots mostly share their time
def bar_minute(at: datetime) -> datetime | None:
    """The start of the minute bar a snapshot taken at `at` belongs to (+08:00), or None before 09:15."""
    local = at.astimezone(EXCHANGE_TZ)
    clock = local.time()
    day = local.date()
    if clock < AUCTION_START:
        return None
    if clock < MORNING_OPEN:
        return _at(day, MORNING_OPEN)
    if clock < MORNING_CLOSE:
        return local.replace(second=0, microsecond=0)
    if clock < AFTERNOON_OPEN:
        return _at(day, MORNING_CLOSE) - MINUTE
    if clock < AFTERNOON_CLOSE:
        return local.replace(second=0, microsecond=0)
    return _at(day, AFTERNOON_CLOSE) - MINUTE


def _at(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=EXCHANGE_TZ)


class Bar(NamedTuple):
    """A closed minute bar in exact units: prices and amount in fen, volume in shares. A named tuple (immutable): a
    minute's end closes every code's bar at once, 5,000 made in one round."""

    ts_code: str
    minute: datetime
    open: int
    high: int
    low: int
    close: int
    volume: int
    amount: int


@dataclass(slots=True)
class _Building:
    minute: datetime
    open: int
    high: int
    low: int
    close: int
    volume: int  # the cumulative totals of the bar's last snapshot
    amount: int


@dataclass(slots=True)
class _Code:
    day: date
    base_volume: int  # the cumulative totals at the close of the bar before
    base_amount: int
    closed: datetime | None = None  # the newest closed bar's minute
    building: _Building | None = None


class MinuteBars:
    """Builds every code's minute bars from its snapshots, in the order they are taken (the provider drops a
    snapshot that is not newer than the code's latest before it gets here)."""

    def __init__(self, grace_s: float = 5.0) -> None:
        self.grace = timedelta(seconds=grace_s)
        self._codes: dict[str, _Code] = {}

    def add(self, tick: Tick) -> Bar | None:
        """Take a snapshot; the bar it closed (its code's bar of an earlier minute), if any."""
        return self.add_quote(tick.ts_code, tick.time, tick.last, tick.volume, tick.amount)

    def add_quote(self, ts_code: str, at: datetime, last: int, volume: int, amount: int) -> Bar | None:
        """`add` of a snapshot's code, time, last price (fen) and the day's cumulative volume (shares) and amount
        (fen)."""
        minute = bar_minute(at)
        if minute is None:
            return None
        day = minute.date()
        state = self._codes.get(ts_code)
        if state is None or state.day != day:
            first_of_day = minute == _at(day, MORNING_OPEN)
            # Mid-session (a start after 09:30): the totals so far belong to no bar this process saw.
            state = _Code(day, 0 if first_of_day else volume, 0 if first_of_day else amount)
            self._codes[ts_code] = state
        closed = None
        building = state.building
        if building is not None and minute > building.minute:
            closed = self._close(ts_code, state)
            building = None
        if (state.closed is not None and minute <= state.closed) or (building is not None and minute < building.minute):
            return closed  # late: its minute is closed; its volume falls into the next bar
        if building is None:
            state.building = _Building(minute, last, last, last, last, volume, amount)
        else:
            if last > building.high:
                building.high = last
            if last < building.low:
                building.low = last
            building.close = last
            building.volume, building.amount = volume, amount
        return closed

    def expire(self, now: datetime) -> list[Bar]:
        """Close every bar whose minute ended `grace_s` or more before `now` (the timer)."""
        closed = []
        for code, state in self._codes.items():
            building = state.building
            if building is not None and building.minute + MINUTE + self.grace <= now:
                closed.append(self._close(code, state))
        return closed

    @staticmethod
    def _close(code: str, state: _Code) -> Bar:
        building = state.building
        assert building is not None
        volume, amount = building.volume - state.base_volume, building.amount - state.base_amount
        bar = Bar(
            code, building.minute, building.open, building.high, building.low, building.close,
            volume if volume > 0 else 0, amount if amount > 0 else 0,
        )  # fmt: skip
        state.base_volume, state.base_amount = building.volume, building.amount
        state.closed = building.minute
        state.building = None
        return bar
