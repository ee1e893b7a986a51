"""The fleet supervisor's restart delays (lianghua/fleet.py): doubling from the first delay, capped, and starting
again once a process has stayed up long enough."""

from __future__ import annotations

import pytest

from lianghua.fleet import Backoff, Fleet


def test_restart_delay_doubles_with_each_death_in_a_row_up_to_the_cap() -> None:
    backoff = Backoff(first_s=1.0, max_s=30.0, stable_s=30.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_different_first_delay_scales_the_whole_sequence() -> None:
    backoff = Backoff(first_s=0.5, max_s=3.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


class _Proc:
    """A stand-in for a child process: alive until `die(code)`."""

    _pids = iter(range(1000, 2000))

    def __init__(self) -> None:
        self.pid = next(self._pids)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def die(self, code: int) -> None:
        self.returncode = code


def test_the_supervisor_restarts_with_growing_delays_and_starts_again_from_the_first_after_a_stable_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr("lianghua.fleet.time.monotonic", lambda: clock[0])
    fleet = Fleet(env={}, backoff=Backoff(first_s=1.0, max_s=30.0, stable_s=30.0))
    spawned: list[str] = []

    def spawn(name: str) -> None:
        spawned.append(name)
        fleet.processes[name] = _Proc()  # type: ignore[assignment]
        fleet._started_at[name] = clock[0]

    monkeypatch.setattr(fleet, "_spawn", spawn)
    spawn("risk")
    spawn("execution")
    spawned.clear()

    def death_after(up_s: float) -> float:
        """Let execution run `up_s`, kill it, and return the delay before the supervisor started it again."""
        clock[0] += up_s
        fleet.processes["execution"].die(-9)  # type: ignore[attr-defined]
        died_at = clock[0]
        while not spawned:
            fleet.supervise_once()
            clock[0] += 0.25
        spawned.clear()
        return clock[0] - 0.25 - died_at

    assert [death_after(0.5) for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert death_after(31.0) == 1.0  # up longer than stable_s: from the first delay again
    assert death_after(0.5) == 2.0
    assert fleet.restarts == {"execution": 6}
    assert fleet.processes["risk"].poll() is None  # never touched

    fleet.stopping.set()  # stopping: a death is no longer restarted
    fleet.processes["execution"].die(-15)  # type: ignore[attr-defined]
    clock[0] += 60
    fleet.supervise_once()
    assert spawned == []
