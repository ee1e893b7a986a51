"""The bus's Prometheus metrics on a service's registry: the events its consumers could not read."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from shared.platform.bus.port import EventBus


class _RejectedEvents(Collector):
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "lh_bus_events_rejected",
            "Events dead-lettered unread because their payload did not parse into their type's schema, by consumer",
            labels=["consumer"],
        )
        for consumer, count in sorted(self.bus.rejected_events.items()):
            family.add_metric([consumer], count)
        yield family


def register_bus_metrics(bus: EventBus, registry: CollectorRegistry) -> None:
    registry.register(_RejectedEvents(bus))
