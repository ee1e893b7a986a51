"""The one clock, the market clock and the one timestamp column type. `utcnow()` is aware UTC; `UtcDateTime` stores
a timestamp as naive UTC (MySQL/MariaDB DATETIME(6) and SQLite keep no zone) and reads it back as aware UTC, so code
never meets a naive time from a table. An aware value of any zone is converted to UTC on the way in; a naive one is
taken as UTC already (what every table held before this type). The column type in the database is unchanged
(`PreciseDateTime`), so migrations are unaffected. `MarketClock` is what time it is for the market: `RealClock`, a
`ReplayClock` set to a historical trading day (paper trading on a replayed market), or a `ShiftedClock`: the real clock
moved to another moment, which the processes of a fleet can share (rehearsals and tests, never production)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from time import time as unix_time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Dialect
from sqlalchemy.types import TypeDecorator

from shared.platform.db import PreciseDateTime


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` as aware UTC: an aware time converted, a naive one taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_naive_utc(value: datetime) -> datetime:
    """`value` as the naive UTC a DATETIME column holds (a naive value is taken as UTC already)."""
    return as_utc(value).replace(tzinfo=None)


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC timestamp column: binds naive UTC (microseconds kept on MySQL too), reads aware UTC."""

    impl = PreciseDateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else to_naive_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


# --- the market clock ------------------------------------------------------------------------------------------

EXCHANGE_TZ = ZoneInfo("Asia/Shanghai")
SESSION_OPEN = time(9, 30)  # continuous trading starts: the moment a replayed session begins
SESSION_CLOSE = time(15, 0)
# Continuous trading (连续竞价) on the SSE, SZSE and BSE, Asia/Shanghai, each [start, end): the morning, and the
# afternoon until the closing call auction (14:57-15:00). Outside them: the opening call (09:15-09:25) and its pause,
# the lunch break, the closing call, and after the close.
CONTINUOUS_TRADING = ((time(9, 30), time(11, 30)), (time(13, 0), time(14, 57)))
_TICK = timedelta(microseconds=1)


class MarketClock(Protocol):
    """What time it is for the market: the real clock, or a replay clock over historical trading days. Execution's
    desk and paper broker and risk's desk read it through `Infra.clock`."""

    def now(self) -> datetime:
        """Now, aware UTC."""

    def session(self) -> date | None:
        """The replayed trading day, or None on the real clock (then "today" is the exchange date of `now()`)."""


class RealClock:
    """The wall clock: `now()` is `utcnow()`, no replayed session."""

    def now(self) -> datetime:
        return utcnow()

    def session(self) -> date | None:
        return None


class ShiftedClock:
    """The real clock moved to another moment, for rehearsals and tests (never production): `now()` is `at` plus the
    wall seconds since `anchor` (unix seconds), so it runs at the wall clock's pace from `at` on. No replayed session:
    to every consumer it is a real clock ("today" is the exchange date of `now()`). Unlike a replay clock it is no
    one process's object: processes given the same `at` and `anchor` (LH_MARKET_CLOCK_AT, LH_MARKET_CLOCK_ANCHOR)
    agree on the time, so a fleet may run on it (`python -m lianghua.fleet` gives its processes one anchor)."""

    def __init__(self, at: datetime, anchor: float | None = None) -> None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"a shifted clock's moment needs a UTC offset: {at.isoformat()}")
        self.at = at.astimezone(UTC)
        self.anchor = unix_time() if anchor is None else float(anchor)

    def now(self) -> datetime:
        return self.at + timedelta(seconds=unix_time() - self.anchor)

    def session(self) -> date | None:
        return None


class ReplayClock:
    """A settable clock over historical trading days. `now()` is the session day at 09:30 Asia/Shanghai (as aware
    UTC) plus the seconds since the session was set, so times keep their order within a session and a later session
    is always later; it stops just before the session's 15:00 close (the session closes when the replay moves on).
    Before any session is set it has no session and `now()` is the wall clock (nothing is being replayed yet). One
    process's object: every service holding it must share it (standalone mode)."""

    def __init__(self, session: date | None = None) -> None:
        self._session: date | None = None
        self._start = self._last_moment = utcnow()
        self._set_at = monotonic()
        if session is not None:
            self.set_session(session)

    def set_session(self, day: date) -> None:
        self._session = day
        self._start = session_open(day)
        self._last_moment = datetime.combine(day, SESSION_CLOSE, tzinfo=EXCHANGE_TZ).astimezone(UTC) - _TICK
        self._set_at = monotonic()

    def now(self) -> datetime:
        if self._session is None:
            return utcnow()
        # Never the session's close: a replayed session closes when the replay moves on (`set_session`), not after
        # five and a half hours of wall time, or the day orders of a slow replay would expire before their day ends.
        return min(self._start + timedelta(seconds=monotonic() - self._set_at), self._last_moment)

    def session(self) -> date | None:
        return self._session


def session_open(day: date) -> datetime:
    """09:30 Asia/Shanghai on `day`, as aware UTC."""
    return datetime.combine(day, SESSION_OPEN, tzinfo=EXCHANGE_TZ).astimezone(UTC)


def continuous_trading(at: datetime, day: date | None = None) -> bool:
    """`at` (aware) is within continuous trading (`CONTINUOUS_TRADING`, Asia/Shanghai), and on trading day `day` when
    one is given. Whether `at`'s date is a trading day at all is the caller's (the calendar's) to say."""
    local = at.astimezone(EXCHANGE_TZ)
    if day is not None and local.date() != day:
        return False
    return any(start <= local.time() < end for start, end in CONTINUOUS_TRADING)


def session_close(day: date) -> datetime:
    """The 15:00 close of trading day `day` (Asia/Shanghai), aware."""
    return datetime.combine(day, SESSION_CLOSE, tzinfo=EXCHANGE_TZ)


def order_session(at: datetime, trading_days: Iterable[date]) -> date | None:
    """The session an order placed at `at` (aware) belongs to: the first trading day whose 15:00 close (Asia/Shanghai)
    is after `at`. During a trading day until 14:59:59.999999 that day; from its close on, and on a closed day, the
    next trading day. None when `trading_days` has no such day (the calendar does not reach that far). Pure: the
    one rule the paper broker, execution's admission and risk place an order in its session by."""
    return next((d for d in sorted(trading_days) if session_close(d) > at), None)


def fill_session(at: datetime, trading_days: Iterable[date] | None) -> date:
    """The session a fill at `at` (aware) counts in for T+1, as execution's positions split sessions
    (`services/execution/positions.session_start`): the first trading day whose 15:00 close is at or after `at` — a
    fill at a close (a paper fill at the close price is stamped 15:00:00) is that day's, a fill after it (an evening
    fill) the next trading day's; `order_session` but for that one instant. Without trading days (a replay clock, or
    no calendar: execution splits sessions by calendar date then), past the last one, or before the second one (the
    days given may not reach back to the session's own: the day before it must be among them), the exchange date of
    `at`."""
    if trading_days is not None:
        days = sorted(trading_days)
        i = next((k for k, d in enumerate(days) if session_close(d) >= at), None)
        if i is not None and i > 0:
            return days[i]
    return at.astimezone(EXCHANGE_TZ).date()


@dataclass(frozen=True)
class OrderSession:
    """The session an order placed now belongs to, and the moment after which trades count as that session's for
    T+1 (`opens_after`: the close of the trading day before it; shares bought after it are sellable from the next
    session on). On a replay clock the replayed session, whose trades are those of its calendar date."""

    day: date
    opens_after: datetime
    previous: date | None = None  # the trading day before it (None: not known, or a replayed session)

    @classmethod
    def of_date(cls, day: date) -> OrderSession:
        """The session `day` with T+1 by calendar date: trades from its midnight (Asia/Shanghai) on are its own."""
        return cls(day, datetime.combine(day, time.min, tzinfo=EXCHANGE_TZ) - _TICK)


def order_session_after(at: datetime, trading_days: Sequence[date]) -> OrderSession | None:
    """`order_session` with its T+1 boundary: the close of the trading day before it in `trading_days` (a trade at
    that close, 15:00:00, is that day's), or the session's midnight when the days reach no further back."""
    day = order_session(at, trading_days)
    if day is None:
        return None
    before = [d for d in trading_days if d < day]
    if not before:
        return OrderSession.of_date(day)
    previous = max(before)
    return OrderSession(day, session_close(previous), previous)


def market_today(now: datetime, session: date | None) -> date:
    """The trading day "today" is for T+1, fee dates and day-order expiry: the replayed session when there is one,
    else the exchange's (Asia/Shanghai) date of `now`."""
    return session if session is not None else now.astimezone(EXCHANGE_TZ).date()


def no_session() -> date | None:
    """The real clock's session (none): the default of components that take a `session` callable."""
    return None
