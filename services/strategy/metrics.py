"""The strategy service's Prometheus metrics: how many instances are in each state (refreshed from the table) and how
many have failed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.strategy.lifecycle import State


class InstanceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.instances = Gauge(
            "lh_strategy_instances", "Strategy instances, by state (from the table)", ["state"], registry=registry
        )
        self.failures = Counter(
            "lh_strategy_instance_failures", "Strategy instances that failed (the strategy raised)", registry=registry
        )
        for state in State:
            self.instances.labels(state=state.value)

    def counted(self, by_state: dict[State, int]) -> None:
        for state in State:
            self.instances.labels(state=state.value).set(by_state.get(state, 0))

    def failed(self) -> None:
        self.failures.inc()
