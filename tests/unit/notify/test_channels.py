"""A robot's channel: merging what arrives within the window, the rate limit (held back, merged, never dropped), and
retries that keep everything."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from services.notify.channels import RobotChannel, SlidingWindowLimit
from services.notify.metrics import NotifyMetrics
from services.notify.robots import SendResult
from services.notify.schemas import WebhookNotification
from tests.unit.notify.test_robots import notification


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_allows_n_in_any_window_and_says_when_the_next_may_go() -> None:
    clock = FakeClock()
    limit = SlidingWindowLimit(20, 60.0, clock)
    for _ in range(20):
        assert limit.wait_s() == 0
        limit.record()
        clock.now += 1.0  # one a second: sent at 1000, 1001, ..., 1019
    # the 21st at 1020: the first (1000) leaves the window at 1060 -> 40 s to wait
    assert limit.wait_s() == 40.0
    clock.now = 1059.5
    assert limit.wait_s() == 0.5
    clock.now = 1060.0
    assert limit.wait_s() == 0


def test_a_burst_of_20_does_not_let_a_21st_through_seconds_later_as_a_refilled_bucket_would() -> None:
    clock = FakeClock()
    limit = SlidingWindowLimit(20, 60.0, clock)
    for _ in range(20):
        limit.record()
    clock.now += 3.0  # a bucket refilling at 20/min has a token again after 3 s
    assert limit.wait_s() == 57.0


def sent_values(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class Robot:
    """A fake sender: records each message (the batch, how many were held, when), answers from a script."""

    def __init__(self, answers: Callable[[int], SendResult] | None = None) -> None:
        self.messages: list[tuple[list[WebhookNotification], int, float]] = []
        self.answers = answers or (lambda n: SendResult(True, False, "ok"))
        self.calls = 0

    async def __call__(self, batch: list[WebhookNotification], deferred: int) -> SendResult:
        self.calls += 1
        result = self.answers(self.calls)
        if result.ok:
            self.messages.append((batch, deferred, time.monotonic()))
        return result


async def wait_until(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached: {what}")


def channel(robot: Robot, registry: CollectorRegistry, *, limit: int = 20, window_s: float = 60.0,
            merge_window_s: float = 0.05) -> RobotChannel:  # fmt: skip
    metrics = NotifyMetrics(registry)
    metrics.robot("trading")
    return RobotChannel("trading", robot, SlidingWindowLimit(limit, window_s), metrics, merge_window_s=merge_window_s,
                        retry_base_s=0.05, retry_max_s=0.2)  # fmt: skip


async def test_notifications_arriving_within_the_window_become_one_message() -> None:
    robot, registry = Robot(), CollectorRegistry()
    ch = channel(robot, registry)
    ch.start()
    try:
        for i in range(10):
            ch.offer(notification(f"LianghuaStorm{i}", 5))
        await wait_until(lambda: len(robot.messages) == 1, "one message")
        await asyncio.sleep(0.1)  # nothing else follows
        assert len(robot.messages) == 1
        batch, deferred, _ = robot.messages[0]
        assert [n.groupLabels["alertname"] for n in batch] == [f"LianghuaStorm{i}" for i in range(10)]
        assert deferred == 0
        assert sent_values(registry, "lh_notify_robot_messages_total", robot="trading", outcome="sent") == 1
        assert sent_values(registry, "lh_notify_pending_notifications", robot="trading") == 0
    finally:
        await ch.stop()


async def test_what_exceeds_the_rate_is_held_counted_and_merged_into_the_next_message_never_dropped() -> None:
    robot, registry = Robot(), CollectorRegistry()
    ch = channel(robot, registry, limit=3, window_s=0.5, merge_window_s=0.0)
    ch.start()
    try:
        for i in range(3):  # three messages, one notification each: the limit's budget
            ch.offer(notification(f"LianghuaA{i}", 1))
            await wait_until(lambda i=i: len(robot.messages) == i + 1, f"message {i + 1}")
        ch.offer(notification("LianghuaHeld1", 1))
        ch.offer(notification("LianghuaHeld2", 1))
        await wait_until(lambda: len(robot.messages) == 4, "the held message")
        batch, deferred, _ = robot.messages[3]
        assert [n.groupLabels["alertname"] for n in batch] == ["LianghuaHeld1", "LianghuaHeld2"]
        assert deferred == 2
        assert sent_values(registry, "lh_notify_notifications_deferred_total", robot="trading") == 2
        # the rate the robot saw: never more than 3 messages in any 0.5 s
        times = [t for _, _, t in robot.messages]
        assert all(times[k + 3] - times[k] >= 0.5 for k in range(len(times) - 3))
    finally:
        await ch.stop()


async def test_a_failed_send_is_retried_with_what_arrived_meanwhile_and_counted() -> None:
    # 503 twice, then taken
    robot = Robot(lambda n: SendResult(n > 2, True, "http_503" if n <= 2 else "ok"))
    registry = CollectorRegistry()
    ch = channel(robot, registry, merge_window_s=0.0)
    ch.start()
    try:
        ch.offer(notification("LianghuaFirst", 2))
        await wait_until(lambda: robot.calls >= 1, "first attempt")
        ch.offer(notification("LianghuaWhileFailing", 1))
        await wait_until(lambda: len(robot.messages) == 1, "delivery")
        batch, _, _ = robot.messages[0]
        assert [n.groupLabels["alertname"] for n in batch] == ["LianghuaFirst", "LianghuaWhileFailing"]
        assert robot.calls == 3
        assert sent_values(registry, "lh_notify_robot_send_failures_total", robot="trading", reason="http_503") == 2
        assert sent_values(registry, "lh_notify_robot_messages_total", robot="trading", outcome="failed") == 2
        assert sent_values(registry, "lh_notify_robot_messages_total", robot="trading", outcome="sent") == 1
    finally:
        await ch.stop()
