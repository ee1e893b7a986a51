"""Risk's Prometheus metrics (names used by the Grafana dashboard)."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    ERROR = "error"  # risk could not decide (fails closed: the order is not forwarded)


class RiskMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "lh_risk_decisions_total", "Risk decisions on orders, by outcome", ["outcome"], registry=registry
        )
        for outcome in Outcome:
            self.decisions.labels(outcome=outcome.value)

    def decided(self, outcome: Outcome) -> None:
        self.decisions.labels(outcome=outcome.value).inc()
