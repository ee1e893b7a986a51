"""Business alerts: the events services raise about trading (risk warnings and breaches, halts, failed strategy
instances, refused strategy code, failed stop exits, reconciliation differences, broker disconnects) become
Alertmanager alerts, posted to its API, so that dedup, grouping, silences, inhibition and routing are Alertmanager's,
as for Prometheus's rules.

An alert's labels identify it (the same condition posted twice is one alert); a condition that clears (trading
active again, the instance started or stopped) is posted again with `endsAt` now, which resolves it. An event is
acknowledged on the bus only once Alertmanager took its alerts: while Alertmanager is down the consumer retries with
backoff and the events wait in their durable queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.notify.metrics import NotifyMetrics
from shared.platform.events import (
    BrokerBridgeLink,
    BrokerReconciliationDifference,
    Envelope,
    RiskAlert,
    StopTriggered,
    StrategyCodeRejected,
    StrategyInstanceChanged,
    TradingStateChanged,
)

log = logging.getLogger(__name__)

CONSUMER = "notify.business-alerts"
EVENT_PATTERNS = [
    "risk.alert",
    "risk.trading_state.changed",
    "risk.stop.triggered",
    "strategy.instance.failed",
    "strategy.instance.started",
    "strategy.instance.resumed",
    "strategy.instance.stopped",
    "strategy.instance.deleted",
    "strategy.code.rejected",
    "broker.reconciliation.difference",
    "broker.bridge.connected",
    "broker.bridge.disconnected",
]
RUNBOOK = "docs/operations.md#{}"
# A condition's alert holds until the event that clears it; Alertmanager needs an end, so a far one.
CONDITION_S = 30 * 24 * 3600


def _alert(name: str, severity: str, labels: dict[str, str | None], summary: str, description: str,
           starts: datetime, ends: datetime) -> dict[str, Any]:  # fmt: skip
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "team": "trading",
            **{k: v for k, v in labels.items() if v},
        },
        "annotations": {"summary": summary, "description": description, "runbook_url": RUNBOOK.format(name.lower())},
        "startsAt": starts.isoformat(),
        "endsAt": ends.isoformat(),
    }


def alerts_for(event: Envelope, *, now: datetime, ttl_s: int) -> list[dict[str, Any]]:
    """The Alertmanager alerts an event raises or resolves (none for one that says nothing to people)."""
    payload = event.parsed()
    ttl = timedelta(seconds=ttl_s)
    if isinstance(payload, RiskAlert):
        breach = payload.severity == "critical"
        name = "LianghuaRiskBreach" if breach else "LianghuaRiskWarning"
        values = ", ".join(f"{k}={v}" for k, v in sorted(payload.values.items()))
        return [_alert(
            name, "critical" if breach else "warning",
            {"account": payload.account_id, "instance_id": payload.strategy_instance_id, "rule": payload.rule,
             "code": payload.code},
            payload.message, f"Risk rule {payload.rule} ({payload.code}) on account {payload.account_id}: "
            f"{payload.message}" + (f" [{values}]" if values else ""), payload.at, payload.at + ttl,
        )]  # fmt: skip
    if isinstance(payload, TradingStateChanged):
        # an instance's halt goes to its account's people as well (its account: the event's, when risk knows it)
        account = payload.key if payload.scope == "account" else payload.account_id
        labels: dict[str, str | None] = {"scope": payload.scope, "key": payload.key or "global",
                                         "account": account}  # fmt: skip
        out = []
        for state, name, severity in (("halted", "LianghuaTradingHalted", "critical"),
                                      ("reducing", "LianghuaTradingReducing", "warning")):  # fmt: skip
            where = f"{payload.scope} {payload.key}".strip()
            summary = f"Trading is {state} for {where} (by {payload.by}: {payload.reason})"
            description = (
                f"Risk set {where} from {payload.from_state} to {payload.to_state} at {payload.at.isoformat()}"
                f" ({payload.by}): {payload.reason}"
            )
            if payload.to_state == state:
                out.append(_alert(name, severity, labels, summary, description, payload.at,
                                  payload.at + timedelta(seconds=CONDITION_S)))  # fmt: skip
            elif payload.from_state == state:  # cleared: resolve it
                out.append(_alert(name, severity, labels, summary, description, payload.at, now))
        return out
    if isinstance(payload, StrategyInstanceChanged):
        labels = {"account": payload.account_id, "instance_id": payload.instance_id, "strategy": payload.strategy,
                  "owner": payload.owner}  # fmt: skip
        summary = f"Strategy instance {payload.instance_id} ({payload.strategy}) failed"
        description = (
            f"{payload.mode} instance of {payload.owner} on account {payload.account_id}: {payload.error or ''}"
        )
        if event.type == "strategy.instance.failed":
            return [_alert("LianghuaStrategyFailed", "critical", labels, summary, description, payload.at,
                           payload.at + timedelta(seconds=CONDITION_S))]  # fmt: skip
        # started, resumed, stopped or deleted: whatever failed is over
        return [_alert("LianghuaStrategyFailed", "critical", labels, summary, description, payload.at, now)]
    if isinstance(payload, StrategyCodeRejected):
        return [_alert(
            "LianghuaStrategyCodeRejected", "warning",
            {"strategy": payload.strategy, "instance_id": payload.instance_id, "owner": payload.owner,
             "file": payload.file},
            f"Hot reload refused {payload.file}", payload.error, payload.at, payload.at + ttl,
        )]  # fmt: skip
    if isinstance(payload, StopTriggered):
        if payload.status != "failed":
            return []
        return [_alert(
            "LianghuaStopExitFailed", "critical",
            {"account": payload.account_id, "stop_id": payload.stop_id, "ts_code": payload.ts_code},
            f"The exit of stop {payload.stop_id} on {payload.ts_code} was refused ({payload.code})",
            payload.message, payload.at, payload.at + ttl,
        )]  # fmt: skip
    if isinstance(payload, BrokerReconciliationDifference):
        parts = [f"{d.get('kind')} {d.get('ts_code') or ''}: platform {d.get('platform')}, broker {d.get('broker')}"
                 for d in payload.differences[:20]]  # fmt: skip
        return [_alert(
            "LianghuaReconciliationDifference", "critical",
            {"account": payload.account_id, "bridge_id": payload.bridge_id},
            f"{len(payload.differences)} difference(s) between the platform and the broker of {payload.bridge_id}",
            f"Reconciliation {payload.reconciliation_id}: " + "; ".join(parts), payload.at, payload.at + ttl,
        )]  # fmt: skip
    if isinstance(payload, BrokerBridgeLink):
        summary = f"QMT bridge {payload.bridge_id} of account {payload.account_id} is disconnected"
        description = (
            f"Execution lost the trading link of bridge {payload.bridge_id} ({payload.why or 'closed'}) at "
            f"{payload.at.isoformat()}: the account's orders are refused with broker_unavailable until it is back."
        )
        labels = {"account": payload.account_id, "bridge_id": payload.bridge_id}
        if event.type == "broker.bridge.disconnected":
            return [_alert("LianghuaBrokerDisconnected", "critical", labels, summary, description, payload.at,
                           payload.at + timedelta(seconds=CONDITION_S))]  # fmt: skip
        return [_alert("LianghuaBrokerDisconnected", "critical", labels, summary, description, payload.at, now)]
    return []


class AlertmanagerPoster:
    """Posts alerts to Alertmanager's API (`POST /api/v2/alerts`), retrying with backoff until it takes them."""

    def __init__(self, http: httpx.AsyncClient, metrics: NotifyMetrics, *, retry_base_s: float, retry_max_s: float,
                 ttl_s: int, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:  # fmt: skip
        self.http = http
        self.metrics = metrics
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.ttl_s = ttl_s
        self.clock = clock
        # One event at a time, in the order the bus delivers them: a halt and the "active" that clears it must reach
        # Alertmanager in that order (the bus runs handlers of one queue concurrently).
        self._in_order = asyncio.Lock()

    async def post(self, alerts: list[dict[str, Any]]) -> None:
        backoff = self.retry_base_s
        while True:
            try:
                response = await self.http.post("/api/v2/alerts", json=alerts)
                if response.status_code == 200:
                    return
                reason = f"http_{response.status_code}"
                if 400 <= response.status_code < 500:
                    # Alertmanager refused what we built: a bug here, never fixed by waiting. Raise: the bus
                    # redelivers once, then dead-letters the event (kept in lh.dead-letters for a person).
                    raise ValueError(f"Alertmanager refused the alerts ({reason}): {response.text[:300]}")
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            self.metrics.alertmanager_failures.inc()
            log.warning("Alertmanager unavailable; retrying", extra={"reason": reason, "retry_in_s": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.retry_max_s)

    async def handle(self, event: Envelope) -> None:
        """The bus handler: returns (and the event is acknowledged) only once Alertmanager took its alerts."""
        async with self._in_order:
            alerts = alerts_for(event, now=self.clock(), ttl_s=self.ttl_s)
            if not alerts:
                return
            await self.post(alerts)
        for alert in alerts:
            self.metrics.business_alerts.labels(alertname=alert["labels"]["alertname"]).inc()
        log.info("business alert posted", extra={"event_type": event.type, "event_id": event.id,
                                                 "alerts": [a["labels"]["alertname"] for a in alerts]})  # fmt: skip
