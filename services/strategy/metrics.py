"""The strategy service's Prometheus metrics: how many instances are in each state and each instance's state (both
refreshed from the table), and how many have failed."""

from __future__ import annotations

import contextlib

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
        # One series per instance and state, 1 for the state it is in and 0 for the others (so a query for one state
        # finds every instance, and a state change never leaves two at 1); an instance's series go when it is deleted.
        self.state = Gauge(
            "lh_strategy_instance_state",
            "1 for the state each strategy instance is in, 0 for the others (from the table)",
            ["instance_id", "state"],
            registry=registry,
        )
        self.known: set[str] = set()
        for state in State:
            self.instances.labels(state=state.value)

    def counted(self, by_state: dict[State, int]) -> None:
        for state in State:
            self.instances.labels(state=state.value).set(by_state.get(state, 0))

    def states(self, by_instance: dict[str, State]) -> None:
        """Every instance's state as the table has it; the series of instances no longer there are removed."""
        for instance_id, current in by_instance.items():
            for state in State:
                self.state.labels(instance_id=instance_id, state=state.value).set(1 if state is current else 0)
        for instance_id in self.known - by_instance.keys():
            for state in State:
                with contextlib.suppress(KeyError):
                    self.state.remove(instance_id, state.value)
        self.known = set(by_instance)

    def failed(self) -> None:
        self.failures.inc()
