"""The notify service's Prometheus metrics (prometheus/alerts.yml's LianghuaNotify* rules use them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "lh_notify_notifications_received_total", "Alertmanager notifications received, by robot", ["robot"],
            registry=registry,
        )  # fmt: skip
        self.messages = Counter(
            "lh_notify_robot_messages_total", "Robot messages sent or failed, by robot", ["robot", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.send_failures = Counter(
            "lh_notify_robot_send_failures_total", "Failed robot sends, by robot and reason (retried)",
            ["robot", "reason"], registry=registry,
        )  # fmt: skip
        self.deferred = Counter(
            "lh_notify_notifications_deferred_total",
            "Notifications the robot's rate limit held back and merged into a later message", ["robot"],
            registry=registry,
        )  # fmt: skip
        self.pending = Gauge(
            "lh_notify_pending_notifications", "Notifications waiting for the robot's next message", ["robot"],
            registry=registry,
        )  # fmt: skip
        self.business_alerts = Counter(
            "lh_notify_business_alerts_total", "Business events posted to Alertmanager as alerts, by alert name",
            ["alertname"], registry=registry,
        )  # fmt: skip
        self.alertmanager_failures = Counter(
            "lh_notify_alertmanager_post_failures_total",
            "Failed posts of business alerts to Alertmanager (each retried until it succeeds)", registry=registry,
        )  # fmt: skip
        self.alertmanager_failures.inc(0)

    def robot(self, name: str) -> None:
        """Create a robot's series at start, so its alerts see zeros before the first failure."""
        self.received.labels(robot=name)
        self.deferred.labels(robot=name)
        self.pending.labels(robot=name).set(0)
        for outcome in ("sent", "failed"):
            self.messages.labels(robot=name, outcome=outcome)
