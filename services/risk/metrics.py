"""Risk's Prometheus metrics (names used by the Grafana dashboard)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric

from shared.platform.events import Envelope


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    ERROR = "error"  # risk could not decide (fails closed: the order is not forwarded)


UTILISATION_WINDOW_S = 15 * 60  # an account's shares count this long after the order they were measured on


class LimitUtilisation:
    """`lh_risk_limit_utilisation_ratio{rule, code}`: for each limit (rule and finding code, a fixed set of literals in
    services/risk/rules), the largest `used / limit` among the last order checked for each account, counting only the
    accounts with an order checked in the past UTILISATION_WINDOW_S. No account label: the series are bounded by the
    limits, and a limit no account's order touched for 15 minutes has no series (not a stale 1.25 forever). Which
    account is near its limit is in the risk.alert events and the decisions (docs/operations.md)."""

    NAME = "lh_risk_limit_utilisation_ratio"
    HELP = (
        "Largest share of each limit (used / limit) among the last order checked for each account in the past "
        "15 minutes, by rule and code"
    )

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        window_s: float = UTILISATION_WINDOW_S,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._window_s = window_s
        self._lock = threading.Lock()  # the scrape may run on another thread than the checks
        self._last: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}  # (rule, code) -> account -> (share, at)
        # (rule, code) -> account -> the exact share and the wall-clock time it was measured: GET /v1/risk/utilisation
        self._exact: dict[tuple[str, str], dict[str, tuple[Decimal, datetime]]] = {}
        registry.register(self)

    def note(self, account_id: str, shares: Mapping[tuple[str, str], Decimal]) -> None:
        now = self._clock()
        wall = self._wall()
        with self._lock:
            for key, share in shares.items():
                self._last.setdefault(key, {})[account_id] = (float(share), now)
                self._exact.setdefault(key, {})[account_id] = (share, wall)
            self._expire(now)

    def of_accounts(self, accounts: set[str] | None) -> dict[str, list[tuple[str, str, Decimal, datetime]]]:
        """account -> [(rule, code, used / limit, measured at)] for the limits its last orders checked within the
        window (`accounts` None: every account), sorted by rule and code."""
        with self._lock:
            self._expire(self._clock())
            answer: dict[str, list[tuple[str, str, Decimal, datetime]]] = {}
            for (rule, code), by_account in sorted(self._last.items()):
                for account in by_account:
                    if accounts is not None and account not in accounts:
                        continue
                    share, at = self._exact[(rule, code)][account]
                    answer.setdefault(account, []).append((rule, code, share, at))
            return answer

    def _expire(self, now: float) -> None:
        for key in list(self._last):
            recent = {a: v for a, v in self._last[key].items() if now - v[1] < self._window_s}
            if recent:
                self._last[key] = recent
                self._exact[key] = {a: v for a, v in self._exact[key].items() if a in recent}
            else:
                del self._last[key]
                self._exact.pop(key, None)

    def shares(self) -> dict[tuple[str, str], float]:
        """(rule, code) -> the value exported now."""
        with self._lock:
            self._expire(self._clock())
            return {key: max(share for share, _ in by_account.values()) for key, by_account in self._last.items()}

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["rule", "code"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["rule", "code"])
        for (rule, code), share in sorted(self.shares().items()):
            family.add_metric([rule, code], share)
        yield family


class RiskMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
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
        # The limit rules' own arithmetic (services/risk/rules/base.py, against_limit): for each limit, the largest
        # share among the last orders checked for each account in the past 15 minutes (no account label: bounded).
        self.limit_utilisation = LimitUtilisation(registry, clock=clock, wall=wall)
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
        """`shares`: (rule, code) -> used / limit, as the rules computed them for one order of the account."""
        self.limit_utilisation.note(account_id, shares)

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
