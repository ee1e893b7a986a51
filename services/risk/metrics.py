"""Risk's Prometheus metrics (names used by the Grafana dashboard)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
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
        # Why orders were refused: one count per reason of a refused order (a ReasonCode, or a rule's finding code
        # such as position_pct), so an order refused for two reasons counts once under each.
        self.denials = Counter(
            "lh_risk_denials_total", "Reasons risk refused orders for, by code (a check's or a rule's)", ["code"],
            registry=registry,
        )  # fmt: skip
        # The limit rules' own arithmetic (services/risk/rules/base.py, against_limit): what the last order checked
        # for an account would have brought each limit to, as a share of it (1.0: at the limit; above: refused).
        self.limit_utilisation = Gauge(
            "lh_risk_limit_utilisation_ratio",
            "Share of each limit the last order checked for an account would have used (used / limit), by rule "
            "and code",
            ["account_id", "rule", "code"],
            registry=registry,
        )
        self.stops_triggered = Counter(
            "lh_risk_stops_triggered_total", "Stops that triggered (claimed, exit attempted), by kind", ["kind"],
            registry=registry,
        )  # fmt: skip
        for kind in ("stop_loss", "take_profit", "trailing"):
            self.stops_triggered.labels(kind=kind)

    def denied(self, codes: Iterable[str]) -> None:
        for code in codes:
            self.denials.labels(code=code).inc()

    def utilised(self, account_id: str, shares: Mapping[tuple[str, str], Decimal]) -> None:
        """`shares`: (rule, code) -> used / limit, as the rules computed them for one order."""
        for (rule, code), share in shares.items():
            self.limit_utilisation.labels(account_id=account_id, rule=rule, code=code).set(float(share))

    def stop_triggered(self, kind: str) -> None:
        self.stops_triggered.labels(kind=kind).inc()

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
