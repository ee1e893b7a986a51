"""The fleet supervisor's restart delays (lianghua/fleet.py): doubling from the first delay, capped, and starting
again once a process has stayed up long enough."""

from __future__ import annotations

from lianghua.fleet import Backoff


def test_restart_delay_doubles_with_each_death_in_a_row_up_to_the_cap() -> None:
    backoff = Backoff(first_s=1.0, max_s=30.0, stable_s=30.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_different_first_delay_scales_the_whole_sequence() -> None:
    backoff = Backoff(first_s=0.5, max_s=3.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
