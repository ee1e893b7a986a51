"""PeriodicTask, the one background loop: it survives failures, counts them, runs on a wake-up, and stops by letting
the call in progress finish, cancelling it only when it overruns the grace period. Long intervals and explicit
wake-ups drive it; nothing here depends on how long anything takes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from shared.platform.periodic import PeriodicTask

HOUR = 3600.0


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(2000):  # up to about 10 s: a bound against hanging, not a timing expectation
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


async def test_a_failing_call_is_logged_and_counted_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the database is down")

    loop = PeriodicTask("flaky", 0.01, flaky)
    with caplog.at_level(logging.ERROR, logger="shared.platform.periodic"):
        loop.start()
        await eventually(lambda: loop.runs >= 2)
        await loop.stop()
    assert loop.failures == 1
    assert loop.task is None
    [record] = [r for r in caplog.records if r.name == "shared.platform.periodic"]
    assert record.getMessage() == "flaky failed; it runs again in 0.01s"
    assert record.exc_info is not None and str(record.exc_info[1]) == "the database is down"


async def test_wake_runs_the_call_now_and_run_at_start_false_waits_for_it() -> None:
    loop = PeriodicTask("lazy", HOUR, _nothing, run_at_start=False)
    loop.start()
    for _ in range(20):
        await asyncio.sleep(0)
    assert loop.runs == 0  # an hour to go, and not woken
    loop.wake()
    await eventually(lambda: loop.runs == 1)
    loop.wake()
    await eventually(lambda: loop.runs == 2)
    await loop.stop()
    assert loop.runs == 2 and loop.failures == 0


async def _nothing() -> None:
    return None


async def test_stop_lets_the_call_in_progress_finish() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def work() -> None:
        entered.set()
        await release.wait()
        finished.append(True)

    loop = PeriodicTask("work", HOUR, work)
    loop.start()
    await entered.wait()
    stopping = asyncio.create_task(loop.stop(grace_s=HOUR))
    await eventually(loop.stopping.is_set)
    assert not stopping.done()  # it waits for the call, it does not cancel it
    release.set()
    await stopping
    assert finished == [True] and loop.runs == 1


async def test_stop_cancels_a_call_that_overruns_the_grace_period() -> None:
    entered = asyncio.Event()
    cancelled: list[bool] = []

    async def stuck() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    loop = PeriodicTask("stuck", HOUR, stuck)
    loop.start()
    task = loop.task
    assert task is not None
    await entered.wait()
    await loop.stop(grace_s=0.01)
    assert cancelled == [True] and task.done()


async def test_the_call_sees_stopping_and_ends_between_items() -> None:
    entered, done_items = asyncio.Event(), []

    async def sweep() -> None:
        for item in range(5):
            if loop.stopping.is_set():
                return
            done_items.append(item)
            entered.set()
            if item == 0:
                await loop.stopping.wait()  # the first item holds until the stop arrives

    loop = PeriodicTask("sweep", HOUR, sweep)
    loop.start()
    await entered.wait()
    await loop.stop(grace_s=HOUR)
    assert done_items == [0] and loop.runs == 1


async def test_a_stopped_loop_starts_again_and_a_running_one_refuses_a_second_start() -> None:
    loop = PeriodicTask("again", HOUR, _nothing)
    loop.start()
    with pytest.raises(RuntimeError, match="again is already running"):
        loop.start()
    await eventually(lambda: loop.runs == 1)
    await loop.stop()
    loop.start()
    await eventually(lambda: loop.runs == 2)
    await loop.stop()
