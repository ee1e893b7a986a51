"""The data service's daily update scheduler: run one job per trading day, after the close, Shanghai time.

`next_run` is the pure timing rule; `DailyScheduler` is the loop around it. Everything with a side effect is
injected — the trading calendar (`is_trading_day`), the clock, the sleep, the job and the record of the last
successful run — so the service wires in the stored trade calendar and its ingestion log, and tests drive the
loop with a fake clock instead of waiting.

Guarantees: a trading day's job succeeds at most once (the run log is consulted before every run); a failing job is
logged and retried with a doubling, capped backoff (tenacity, on the injected clock), only while that trading day
lasts (Shanghai midnight), and then left for the next run (the daily update fetches every missing day, so the next
success catches up); a cancelled scheduler stops at once, mid-sleep or mid-job, without recording the interrupted
day as done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

SHANGHAI = ZoneInfo("Asia/Shanghai")  # no daylight saving since 1991: every local time exists exactly once
SEARCH_DAYS = 370  # more than a year of closures in a row means the calendar is missing, not a long holiday

log = logging.getLogger(__name__)

IsTradingDay = Callable[[date], bool]
Job = Callable[[date], Awaitable[object]]


def parse_run_time(text: str) -> time:
    """'17:30' or '17:30:15' -> time; a clear error naming the value otherwise (for settings)."""
    try:
        parsed = time.fromisoformat(text.strip())
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"update time {text!r} is not HH:MM (24-hour, Asia/Shanghai)") from exc
    if parsed.tzinfo is not None:
        raise ValueError(f"update time {text!r} must not carry a timezone: it is always Asia/Shanghai")
    return parsed


def _local(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (a naive time is ambiguous across hosts)")
    return now.astimezone(SHANGHAI)


def _at(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=SHANGHAI)


def next_run(now: datetime, at: time, is_trading_day: IsTradingDay) -> datetime:
    """The first `at` o'clock (Asia/Shanghai) on a trading day that is at or after `now`.

    `now` may be in any timezone; the result is in Asia/Shanghai. A run exactly at `now` counts as due now.
    """
    local = _local(now)
    day = local.date()
    if _at(day, at) < local:
        day += timedelta(days=1)
    for _ in range(SEARCH_DAYS):
        if is_trading_day(day):
            return _at(day, at)
        day += timedelta(days=1)
    raise RuntimeError(f"no trading day within {SEARCH_DAYS} days after {local.date()}: is the calendar loaded?")


def latest_due_day(now: datetime, at: time, is_trading_day: IsTradingDay) -> date | None:
    """The most recent trading day whose run time is at or before `now` (None if none within a year)."""
    local = _local(now)
    day = local.date()
    if _at(day, at) > local:
        day -= timedelta(days=1)
    for _ in range(SEARCH_DAYS):
        if is_trading_day(day):
            return day
        day -= timedelta(days=1)
    return None


class RunLog(Protocol):
    """Where the scheduler remembers the last trading day whose job succeeded (the service keeps it in its
    ingestion log so a restart does not repeat a day)."""

    async def last_success(self) -> date | None: ...

    async def record_success(self, day: date) -> None: ...


class MemoryRunLog:
    """A RunLog in memory: for tests and for standalone runs that accept a repeat after a restart."""

    def __init__(self, last: date | None = None) -> None:
        self.last = last

    async def last_success(self) -> date | None:
        return self.last

    async def record_success(self, day: date) -> None:
        if self.last is None or day > self.last:
            self.last = day


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # per trading day, the first try included
    first_backoff: timedelta = timedelta(minutes=1)
    max_backoff: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.first_backoff <= timedelta(0) or self.max_backoff < self.first_backoff:
            raise ValueError("backoffs must be positive, and max_backoff >= first_backoff")

    def backoff(self, failures: int) -> timedelta:
        """Wait after the `failures`-th failure (1-based): first, 2x first, 4x first, ... capped."""
        return min(self.first_backoff * (2 ** (failures - 1)), self.max_backoff)


@dataclass(frozen=True)
class SchedulerStatus:
    """For the API: what ran, what failed, what comes next."""

    next_run_at: datetime | None
    running_day: date | None
    last_success: date | None
    last_failure_day: date | None
    last_error: str | None


def _real_now() -> datetime:
    return datetime.now(SHANGHAI)


class DailyScheduler:
    """Runs `job(trade_date)` at `at` (Asia/Shanghai) on every trading day, until cancelled.

    Catch-up: when started (or woken) after a trading day's run time and the run log shows an earlier last success,
    the most recent due day runs at once — one run, since the update job fetches everything missing. With no
    recorded success (a fresh install) it waits for the next scheduled time instead.
    """

    def __init__(
        self,
        job: Job,
        *,
        at: time,
        is_trading_day: IsTradingDay,
        run_log: RunLog,
        retry: RetryPolicy | None = None,
        catch_up: bool = True,
        clock: Callable[[], datetime] = _real_now,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        max_sleep: timedelta = timedelta(minutes=5),
        retry_until: time | None = None,
        on_give_up: Callable[[date, str], object] | None = None,
        name: str = "daily update",
    ) -> None:
        if at.tzinfo is not None:
            raise ValueError("`at` is a Shanghai wall-clock time and must be naive")
        if max_sleep <= timedelta(0):
            raise ValueError("max_sleep must be positive")
        self.job = job
        self.at = at
        self.is_trading_day = is_trading_day
        self.run_log = run_log
        self.retry = retry or RetryPolicy()
        self.catch_up = catch_up
        self.clock = clock
        self._sleep = sleep
        # Long waits are cut into pieces and the clock re-read after each, so a suspended host or a corrected
        # system clock delays a run by at most one piece rather than by the whole drift.
        self.max_sleep = max_sleep
        # Retries of a day stay before this time of that day (Asia/Shanghai; None: its midnight), e.g. the open.
        self.retry_until = retry_until
        self.on_give_up = on_give_up  # told (day, last error) when a day's attempts end without success
        self.name = name
        self._next_run_at: datetime | None = None
        self._running_day: date | None = None
        self._last_success: date | None = None
        self._attempted: date | None = None  # last day this process tried (success or given up)
        self._last_failure_day: date | None = None
        self._last_error: str | None = None
        self._failures = 0  # failed attempts of the day being run

    def status(self) -> SchedulerStatus:
        return SchedulerStatus(
            next_run_at=self._next_run_at,
            running_day=self._running_day,
            last_success=self._last_success,
            last_failure_day=self._last_failure_day,
            last_error=self._last_error,
        )

    async def run(self) -> None:
        """Loop forever; returns only by cancellation (CancelledError propagates) or an error outside the job
        (the calendar or the run log failing), which the caller should see."""
        while True:
            day, when = await self._plan()
            self._next_run_at = when
            await self._sleep_until(when)
            self._next_run_at = None
            # Re-read the log: a manual update may have finished the day while this loop slept.
            last = await self.run_log.last_success()
            self._last_success = last
            if last is not None and last >= day:
                self._attempted = day
                continue
            await self._run_day(day)

    async def _plan(self) -> tuple[date, datetime]:
        """The next (trading day, run time): a due catch-up now, else the next scheduled run after every day
        already done or attempted."""
        now = self.clock()
        last = await self.run_log.last_success()
        self._last_success = last
        done = max((d for d in (last, self._attempted) if d is not None), default=None)
        if self.catch_up and last is not None:
            due = latest_due_day(now, self.at, self.is_trading_day)
            if due is not None and (done is None or due > done):
                return due, now
        when = next_run(now, self.at, self.is_trading_day)
        if done is not None and when.date() <= done:
            when = next_run(_at(done + timedelta(days=1), time(0)), self.at, self.is_trading_day)
        return when.date(), when

    async def _sleep_until(self, when: datetime) -> None:
        while True:
            remaining = when - self.clock()
            if remaining <= timedelta(0):
                return
            await self._sleep(min(remaining, self.max_sleep).total_seconds())

    def _retrying(self, day: date, deadline: datetime) -> AsyncRetrying:
        """The day's retry policy (tenacity, driven by the injected clock and sleep): any job failure is recorded,
        then retried after `retry.backoff(n)` while attempts remain and the wait ends before `deadline`."""
        self._failures = 0

        def failed(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            self._failures = state.attempt_number
            self._last_failure_day, self._last_error = day, f"{type(exc).__name__}: {exc}"

        def out_of_time(state: RetryCallState) -> bool:
            failed(state)
            wait = self.retry.backoff(state.attempt_number)
            return state.attempt_number >= self.retry.max_attempts or self.clock() + wait >= deadline

        def announce(state: RetryCallState) -> None:
            log.warning(
                "%s for %s failed (attempt %d of %d), retrying in %s: %s",
                self.name,
                day,
                state.attempt_number,
                self.retry.max_attempts,
                self.retry.backoff(state.attempt_number),
                self._last_error,
            )

        async def sleep(seconds: float) -> None:
            await self._sleep_until(self.clock() + timedelta(seconds=seconds))

        return AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            stop=out_of_time,
            wait=lambda state: self.retry.backoff(state.attempt_number).total_seconds(),
            before_sleep=announce,
            sleep=sleep,
            reraise=True,
        )

    async def _run_day(self, day: date) -> None:
        # Retries stay within the trading day they are for (before `retry_until` of it, if set).
        deadline = _at(day, self.retry_until) if self.retry_until is not None else _at(day + timedelta(days=1), time(0))
        self._running_day = day
        try:
            try:
                async for attempt in self._retrying(day, deadline):
                    with attempt:
                        await self.job(day)
            except Exception as exc:  # out of attempts (or of the day); CancelledError is not an Exception
                log.error(
                    "%s for %s failed %d time(s), giving up until the next run: %s",
                    self.name,
                    day,
                    self._failures,
                    self._last_error,
                    exc_info=exc,
                )
                if self.on_give_up is not None:
                    self.on_give_up(day, self._last_error or "")
                return
            await self.run_log.record_success(day)
            self._last_success = day
            log.info("%s for %s done", self.name, day)
        finally:
            self._attempted = day if self._attempted is None else max(self._attempted, day)
            self._running_day = None
