"""The daily update scheduler, on the real 2024 SSE calendar, driven by a fake clock (no real waiting).

Holidays used (SSE 2024 closure notice): Spring Festival 2024-02-09..02-17 (trading resumes Mon 02-19),
Labour Day 2024-05-01..05-05 (resumes Mon 05-06), National Day 2024-10-01..10-07 (resumes Tue 10-08),
New Year 2024-01-01 (Mon). The make-up working Sundays/Saturdays (e.g. 2024-02-04, 2024-02-18) stay closed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.data.scheduler import (
    SHANGHAI,
    DailyScheduler,
    MemoryRunLog,
    RetryPolicy,
    latest_due_day,
    next_run,
    parse_run_time,
)
from shared.core.market.calendar import is_trading_day

AT = time(17, 30)
NEW_YORK = ZoneInfo("America/New_York")


def sh(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=SHANGHAI)


# -- next_run --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(sh(2024, 2, 8, 10), sh(2024, 2, 8, 17, 30), id="trading-day-before-the-time"),
        pytest.param(sh(2024, 2, 8, 17, 30), sh(2024, 2, 8, 17, 30), id="exactly-at-the-time-is-due-now"),
        pytest.param(sh(2024, 2, 8, 17, 30, 1), sh(2024, 2, 19, 17, 30), id="after-the-time-then-spring-festival"),
        pytest.param(sh(2024, 2, 9, 9), sh(2024, 2, 19, 17, 30), id="holiday-today"),
        pytest.param(sh(2024, 2, 18, 12), sh(2024, 2, 19, 17, 30), id="make-up-workday-sunday-is-closed"),
        pytest.param(sh(2024, 3, 2, 9), sh(2024, 3, 4, 17, 30), id="saturday"),
        pytest.param(sh(2024, 5, 1, 10), sh(2024, 5, 6, 17, 30), id="labour-day"),
        pytest.param(sh(2024, 9, 30, 18), sh(2024, 10, 8, 17, 30), id="national-day"),
        pytest.param(sh(2023, 12, 29, 18), sh(2024, 1, 2, 17, 30), id="new-year-across-years"),
    ],
)
def test_next_run_on_the_2024_sse_calendar(now: datetime, expected: datetime) -> None:
    got = next_run(now, AT, is_trading_day)
    assert got == expected
    assert got.tzinfo is SHANGHAI and got.utcoffset() == timedelta(hours=8)


def test_next_run_takes_now_in_any_timezone() -> None:
    # 2024-02-08 10:00 UTC is 18:00 in Shanghai: past Thursday's run, so the next is after Spring Festival,
    # 2024-02-19 17:30 +08:00 = 09:30 UTC.
    got = next_run(datetime(2024, 2, 8, 10, 0, tzinfo=UTC), AT, is_trading_day)
    assert got == datetime(2024, 2, 19, 9, 30, tzinfo=UTC)
    assert (got.date(), got.time()) == (date(2024, 2, 19), AT)
    # 2024-09-30 16:00 in New York (EDT, UTC-4) is 2024-10-01 04:00 in Shanghai: National Day has begun.
    got = next_run(datetime(2024, 9, 30, 16, 0, tzinfo=NEW_YORK), AT, is_trading_day)
    assert got == sh(2024, 10, 8, 17, 30)
    # 2024-02-08 04:00 New York (EST, UTC-5) is 17:00 in Shanghai: still before the day's run.
    assert next_run(datetime(2024, 2, 8, 4, 0, tzinfo=NEW_YORK), AT, is_trading_day) == sh(2024, 2, 8, 17, 30)


def test_next_run_refuses_naive_times_and_a_missing_calendar() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(datetime(2024, 2, 8, 10), AT, is_trading_day)
    with pytest.raises(RuntimeError, match="calendar"):
        next_run(sh(2024, 2, 8), AT, lambda day: False)


def test_latest_due_day() -> None:
    assert latest_due_day(sh(2024, 2, 8, 17, 29), AT, is_trading_day) == date(2024, 2, 7)
    assert latest_due_day(sh(2024, 2, 8, 17, 30), AT, is_trading_day) == date(2024, 2, 8)
    assert latest_due_day(sh(2024, 2, 14, 12), AT, is_trading_day) == date(2024, 2, 8)
    assert latest_due_day(sh(2024, 10, 8, 9), AT, is_trading_day) == date(2024, 9, 30)


def test_parse_run_time() -> None:
    assert parse_run_time("17:30") == time(17, 30)
    assert parse_run_time(" 08:05:30 ") == time(8, 5, 30)
    for bad in ("25:00", "5pm", "", "17:30+08:00"):
        with pytest.raises(ValueError, match="update time"):
            parse_run_time(bad)


# -- DailyScheduler with a fake clock ---------------------------------------------------------------------------------


class Horizon(Exception):
    """The fake clock ran past the end of the scenario."""


class FakeClock:
    def __init__(self, start: datetime, horizon: datetime) -> None:
        self.now = start
        self.horizon = horizon
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        if self.now >= self.horizon:
            raise Horizon


class Job:
    """Records (trade_date, time of the call); fails the first `failures` calls, or always when failures < 0."""

    def __init__(self, clock: FakeClock, failures: int = 0) -> None:
        self.clock = clock
        self.failures = failures
        self.calls: list[tuple[date, datetime]] = []

    async def __call__(self, day: date) -> None:
        self.calls.append((day, self.clock.now))
        if self.failures < 0 or len(self.calls) <= self.failures:
            raise ConnectionError("tushare unreachable")


async def drive(
    start: datetime,
    horizon: datetime,
    *,
    last: date | None,
    failures: int = 0,
    at: time = AT,
    retry: RetryPolicy | None = None,
) -> tuple[Job, MemoryRunLog, FakeClock]:
    clock = FakeClock(start, horizon)
    job = Job(clock, failures)
    log = MemoryRunLog(last)
    scheduler = DailyScheduler(
        job, at=at, is_trading_day=is_trading_day, run_log=log, retry=retry, clock=clock, sleep=clock.sleep
    )
    with pytest.raises(Horizon):
        await scheduler.run()
    return job, log, clock


async def test_runs_once_per_trading_day_across_spring_festival() -> None:
    job, log, clock = await drive(sh(2024, 2, 8, 9), sh(2024, 2, 21), last=date(2024, 2, 7))
    assert job.calls == [
        (date(2024, 2, 8), sh(2024, 2, 8, 17, 30)),
        (date(2024, 2, 19), sh(2024, 2, 19, 17, 30)),
        (date(2024, 2, 20), sh(2024, 2, 20, 17, 30)),
    ]
    assert log.last == date(2024, 2, 20)
    # Long waits are cut into pieces of at most five minutes, re-reading the clock between them.
    assert max(clock.sleeps) <= 300


async def test_failures_are_retried_with_doubling_backoff() -> None:
    # Fails at 17:30 and at 17:31 (after 1 min), succeeds at 17:33 (after 2 more min).
    job, log, _ = await drive(sh(2024, 2, 8, 9), sh(2024, 2, 19, 18), last=date(2024, 2, 7), failures=2)
    assert job.calls == [
        (date(2024, 2, 8), sh(2024, 2, 8, 17, 30)),
        (date(2024, 2, 8), sh(2024, 2, 8, 17, 31)),
        (date(2024, 2, 8), sh(2024, 2, 8, 17, 33)),
        (date(2024, 2, 19), sh(2024, 2, 19, 17, 30)),
    ]
    assert log.last == date(2024, 2, 19)


async def test_gives_up_after_max_attempts_and_tries_again_next_trading_day(caplog: pytest.LogCaptureFixture) -> None:
    retry = RetryPolicy(max_attempts=3)
    with caplog.at_level(logging.WARNING, logger="services.data.scheduler"):
        job, log, _ = await drive(
            sh(2024, 2, 8, 9), sh(2024, 2, 19, 18), last=date(2024, 2, 7), failures=-1, retry=retry
        )
    minutes = [(day, t.strftime("%m-%d %H:%M")) for day, t in job.calls]
    assert minutes == [
        (date(2024, 2, 8), "02-08 17:30"),
        (date(2024, 2, 8), "02-08 17:31"),
        (date(2024, 2, 8), "02-08 17:33"),
        (date(2024, 2, 19), "02-19 17:30"),
        (date(2024, 2, 19), "02-19 17:31"),
        (date(2024, 2, 19), "02-19 17:33"),
    ]
    assert log.last == date(2024, 2, 7)  # never recorded as done
    gave_up = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(gave_up) == 2 and "2024-02-08" in gave_up[0].getMessage()
    assert "ConnectionError" in gave_up[0].getMessage()


async def test_retries_stop_at_shanghai_midnight() -> None:
    # At 23:55 a 10-minute backoff would cross into the next day: one attempt only, then the next trading day.
    retry = RetryPolicy(max_attempts=5, first_backoff=timedelta(minutes=10), max_backoff=timedelta(minutes=10))
    job, _, _ = await drive(
        sh(2024, 2, 8, 9), sh(2024, 2, 20), last=date(2024, 2, 7), failures=-1, at=time(23, 55), retry=retry
    )
    assert job.calls == [
        (date(2024, 2, 8), sh(2024, 2, 8, 23, 55)),
        (date(2024, 2, 19), sh(2024, 2, 19, 23, 55)),
    ]


async def test_catches_up_the_missed_day_at_once() -> None:
    # Started on Saturday during Spring Festival; Thursday 02-08 never ran: it runs now, then the schedule resumes.
    job, log, _ = await drive(sh(2024, 2, 10, 10), sh(2024, 2, 19, 18), last=date(2024, 2, 7))
    assert job.calls == [
        (date(2024, 2, 8), sh(2024, 2, 10, 10)),
        (date(2024, 2, 19), sh(2024, 2, 19, 17, 30)),
    ]
    assert log.last == date(2024, 2, 19)


async def test_no_catch_up_without_history() -> None:
    job, _, _ = await drive(sh(2024, 2, 8, 18), sh(2024, 2, 19, 18), last=None)
    assert job.calls == [(date(2024, 2, 19), sh(2024, 2, 19, 17, 30))]


@pytest.mark.parametrize("start", [sh(2024, 2, 8, 10), sh(2024, 2, 8, 20)], ids=["before-the-time", "after"])
async def test_a_day_already_done_is_not_run_again(start: datetime) -> None:
    # The run log says 02-08 succeeded already (an earlier process, or a manual update).
    job, _, _ = await drive(start, sh(2024, 2, 19, 18), last=date(2024, 2, 8))
    assert job.calls == [(date(2024, 2, 19), sh(2024, 2, 19, 17, 30))]


async def test_a_manual_update_during_the_wait_is_respected() -> None:
    clock = FakeClock(sh(2024, 2, 8, 9), sh(2024, 2, 19, 18))
    job = Job(clock)
    log = MemoryRunLog(date(2024, 2, 7))

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if clock.now >= sh(2024, 2, 8, 12):
            await log.record_success(date(2024, 2, 8))  # someone ran `update` by hand at noon

    scheduler = DailyScheduler(job, at=AT, is_trading_day=is_trading_day, run_log=log, clock=clock, sleep=sleep)
    with pytest.raises(Horizon):
        await scheduler.run()
    assert job.calls == [(date(2024, 2, 19), sh(2024, 2, 19, 17, 30))]


async def test_cancel_while_waiting_stops_cleanly() -> None:
    never = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await never.wait()

    calls: list[date] = []

    async def job(day: date) -> None:
        calls.append(day)

    scheduler = DailyScheduler(
        job,
        at=AT,
        is_trading_day=is_trading_day,
        run_log=MemoryRunLog(date(2024, 2, 7)),
        clock=lambda: sh(2024, 2, 8, 9),
        sleep=sleep,
    )
    task = asyncio.create_task(scheduler.run())
    for _ in range(5):
        await asyncio.sleep(0)
    assert scheduler.status().next_run_at == sh(2024, 2, 8, 17, 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == []


async def test_cancel_during_the_job_does_not_record_the_day() -> None:
    started, never = asyncio.Event(), asyncio.Event()

    async def job(day: date) -> None:
        started.set()
        await never.wait()

    log = MemoryRunLog(date(2024, 2, 7))
    scheduler = DailyScheduler(
        job, at=AT, is_trading_day=is_trading_day, run_log=log, clock=lambda: sh(2024, 2, 8, 18), sleep=asyncio.sleep
    )
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(started.wait(), timeout=5)  # catch-up for 02-08 starts at once
    assert scheduler.status().running_day == date(2024, 2, 8)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log.last == date(2024, 2, 7)


def test_bad_configuration_is_refused() -> None:
    async def job(day: date) -> None:
        return None

    with pytest.raises(ValueError, match="naive"):
        DailyScheduler(
            job,
            at=time(17, 30, tzinfo=SHANGHAI),
            is_trading_day=is_trading_day,
            run_log=MemoryRunLog(),
        )
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


async def test_the_pre_open_limits_retry_until_the_open_and_say_when_they_give_up() -> None:
    # The limits job at 08:45, retried every 30 s doubling to at most 2 min, only while the wait ends before 09:30.
    clock = FakeClock(sh(2024, 2, 8, 8), sh(2024, 2, 8, 12))
    job = Job(clock, failures=-1)
    gave_up: list[tuple[date, str]] = []
    scheduler = DailyScheduler(
        job, at=time(8, 45), is_trading_day=is_trading_day, run_log=MemoryRunLog(date(2024, 2, 7)),
        retry=RetryPolicy(max_attempts=1000, first_backoff=timedelta(seconds=30), max_backoff=timedelta(minutes=2)),
        retry_until=time(9, 30), on_give_up=lambda day, error: gave_up.append((day, error)), clock=clock,
        sleep=clock.sleep, name="pre-open limits",
    )  # fmt: skip
    with pytest.raises(Horizon):
        await scheduler.run()
    times = [t.strftime("%H:%M:%S") for _, t in job.calls]
    # 08:45:00, +30 s, +1 min, +2 min capped from then on: 08:48:30, 08:50:30, ... 09:28:30; the next wait (2 min)
    # would end at 09:30:30, after the open: given up then.
    assert times[:4] == ["08:45:00", "08:45:30", "08:46:30", "08:48:30"]
    # 08:48:30 .. 09:28:30 every 2 min is 40 / 2 + 1 = 21 tries, after the first three: 24 in all
    assert times[-1] == "09:28:30" and len(times) == 24
    assert gave_up == [(date(2024, 2, 8), "ConnectionError: tushare unreachable")]


async def test_the_pre_open_limits_succeed_on_a_retry_without_giving_up() -> None:
    clock = FakeClock(sh(2024, 2, 8, 8), sh(2024, 2, 8, 12))
    job = Job(clock, failures=2)
    gave_up: list[tuple[date, str]] = []
    log = MemoryRunLog(date(2024, 2, 7))
    scheduler = DailyScheduler(
        job, at=time(8, 45), is_trading_day=is_trading_day, run_log=log,
        retry=RetryPolicy(max_attempts=1000, first_backoff=timedelta(seconds=30), max_backoff=timedelta(minutes=2)),
        retry_until=time(9, 30), on_give_up=lambda day, error: gave_up.append((day, error)), clock=clock,
        sleep=clock.sleep,
    )  # fmt: skip
    with pytest.raises(Horizon):
        await scheduler.run()
    assert [t.strftime("%H:%M:%S") for _, t in job.calls] == ["08:45:00", "08:45:30", "08:46:30"]
    assert log.last == date(2024, 2, 8) and gave_up == []
