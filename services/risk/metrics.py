"""Risk's Prometheus metrics (names used by the Grafana dashboard)."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.platform.events import Envelope


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    ERROR = "error"  # risk could not decide (fails closed: the order is not forwarded)


class RiskMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.decisions = Counter(
            "lh_risk_decisions_total", "Risk decisions on orders, by outcome", ["outcome"], registry=registry
        )
        for outcome in Outcome:
            self.decisions.labels(outcome=outcome.value)
        # A rule found an order near a limit (warning) or an account in breach (critical): the risk.alert events.
        self.alerts = Counter(
            "lh_risk_alerts_total", "Risk alerts raised (risk.alert events), by severity", ["severity"],
            registry=registry,
        )  # fmt: skip
        for severity in ("warning", "critical"):
            self.alerts.labels(severity=severity)
        # Scopes (global, account, instance) not trading normally, from risk's table (refreshed by a loop).
        self.trading_states = Gauge(
            "lh_risk_trading_states", "Scopes in a trading state other than active, by scope and state",
            ["scope", "state"], registry=registry,
        )  # fmt: skip
        for scope in ("global", "account", "instance"):
            for state in ("reducing", "halted"):
                self.trading_states.labels(scope=scope, state=state).set(0)

    def decided(self, outcome: Outcome) -> None:
        self.decisions.labels(outcome=outcome.value).inc()

    def alerted(self, alerts: list[Envelope]) -> None:
        for alert in alerts:
            self.alerts.labels(severity=str(alert.payload.get("severity", "warning"))).inc()

    def trading_states_are(self, counts: dict[tuple[str, str], int]) -> None:
        """`counts`: (scope, state) -> how many scopes; every known pair not in it is 0."""
        for scope in ("global", "account", "instance"):
            for state in ("reducing", "halted"):
                self.trading_states.labels(scope=scope, state=state).set(counts.get((scope, state), 0))
