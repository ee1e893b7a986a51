"""What the runner tells the rest of the platform about the instances it trades: each bar (the
`strategy.instance.bar` event and the per-instance metrics), a failure (the instance is failed, with its
traceback, an event and a metric), and the end of a replay (the instance stops)."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from services.strategy.instances import InstanceService
from services.strategy.live import RunSpec
from services.strategy.runner import BarReport
from services.strategy.store import InstanceStore
from shared.platform.clock import utcnow
from shared.platform.events import StrategyInstanceBar, make_event


class RunMetrics:
    """Per running instance: equity, P&L (total, realised, unrealised), orders sent, fills, the bar last processed and
    how long a bar took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.equity = Gauge("lh_strategy_instance_equity_cny", "An instance's equity after its last bar",
                            ["instance_id"], registry=registry)  # fmt: skip
        self.orders = Gauge("lh_strategy_instance_orders_sent", "Orders an instance sent, since its process started",
                            ["instance_id"], registry=registry)  # fmt: skip
        self.last_bar = Gauge("lh_strategy_instance_last_bar_timestamp_seconds",
                              "The trading day (00:00 UTC) of the last bar an instance processed; its lag is "
                              "time() minus this", ["instance_id"], registry=registry)  # fmt: skip
        self.fills = Gauge("lh_strategy_instance_fills", "Fills an instance has booked", ["instance_id"],
                           registry=registry)  # fmt: skip
        self.pnl = Gauge("lh_strategy_instance_pnl_cny", "An instance's profit and loss (equity less capital)",
                         ["instance_id"], registry=registry)  # fmt: skip
        self.realised = Gauge("lh_strategy_instance_realised_pnl_cny",
                              "An instance's realised P&L since it began (sells less fees less their cost)",
                              ["instance_id"], registry=registry)  # fmt: skip
        self.unrealised = Gauge("lh_strategy_instance_unrealised_pnl_cny",
                                "An instance's unrealised P&L at its last bar's close (market value less cost)",
                                ["instance_id"], registry=registry)  # fmt: skip
        self.bar_seconds = Histogram("lh_strategy_instance_bar_seconds", "Time to process one bar (orders included)",
                                     registry=registry)  # fmt: skip


class InstanceReports:
    def __init__(self, store: InstanceStore, metrics: RunMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics  # set once the app (its registry) exists
        self.instances: InstanceService | None = None  # set once the service exists (it holds the runner)
        self.sent: dict[str, int] = {}

    async def bar(self, spec: RunSpec, report: BarReport) -> None:
        equity = Decimal(report.equity_fen) / 100
        payload = StrategyInstanceBar(
            instance_id=spec.instance_id, owner=spec.owner, bar_date=report.bar_date,
            orders_sent=report.orders_sent, equity=equity, at=utcnow(),
        )  # fmt: skip
        await self.store.emit(make_event("strategy.instance.bar", payload, source="strategy"))
        self.sent[spec.instance_id] = self.sent.get(spec.instance_id, 0) + report.orders_sent
        if self.metrics is None:
            return
        labels: dict[str, Any] = {"instance_id": spec.instance_id}
        self.metrics.equity.labels(**labels).set(float(equity))
        self.metrics.orders.labels(**labels).set(self.sent[spec.instance_id])
        self.metrics.fills.labels(**labels).set(report.fills)
        self.metrics.pnl.labels(**labels).set(float(equity - Decimal(spec.capital_fen) / 100))
        self.metrics.realised.labels(**labels).set(float(Decimal(report.realised_pnl_fen) / 100))
        self.metrics.unrealised.labels(**labels).set(float(Decimal(report.unrealised_pnl_fen) / 100))
        day = report.bar_date
        self.metrics.last_bar.labels(**labels).set(
            (day.toordinal() - 719163) * 86400  # days since 1970-01-01, in seconds
        )
        self.metrics.bar_seconds.observe(report.seconds)

    async def failed(self, spec: RunSpec, trace: str) -> None:
        assert self.instances is not None
        self.forget(spec.instance_id)
        await self.instances.fail(spec.instance_id, trace)

    async def finished(self, spec: RunSpec) -> None:
        assert self.instances is not None
        self.forget(spec.instance_id)
        await self.instances.finished(spec.instance_id, "the replay played its last day")

    def forget(self, instance_id: str) -> None:
        """An instance stopped or failed: its series go (a dashboard would show it trading, an alert find it late)."""
        self.sent.pop(instance_id, None)
        if self.metrics is None:
            return
        for gauge in (self.metrics.equity, self.metrics.orders, self.metrics.last_bar, self.metrics.fills,
                      self.metrics.pnl, self.metrics.realised, self.metrics.unrealised):  # fmt: skip
            with contextlib.suppress(KeyError):
                gauge.remove(instance_id)
