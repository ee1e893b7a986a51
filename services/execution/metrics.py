"""Execution's Prometheus metrics (names used by the Grafana dashboard)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from shared.core.domain import OrderStatus


class ExecutionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.orders = Counter(
            "lh_orders_total", "Order state changes, by the status entered", ["status"], registry=registry
        )
        self.trades = Counter("lh_trades_total", "Trades (broker fills) recorded", registry=registry)
        self.refused = Counter(
            "lh_execution_refused_total", "Submissions refused for want of a valid risk approval", registry=registry
        )
        for status in OrderStatus:
            self.orders.labels(status=status.value)  # every series exists from the start, at 0

    def entered(self, *statuses: OrderStatus) -> None:
        for status in statuses:
            self.orders.labels(status=status.value).inc()
