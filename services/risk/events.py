"""What the risk service publishes: `risk.order.denied` when it refuses an order, `risk.trading_state.changed`
when a trading state changes (the kill switch) and `risk.rules.changed` when a level's rule set gets a new
version, each written to its outbox in the same transaction as what it reports and published by its relay."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.risk.store import Decision, ScopedState
from shared.platform.events import Envelope, OrderDenied, RiskAlert, RuleSetChanged, TradingStateChanged, make_event
from shared.platform.events.schemas import DenialReason

SOURCE = "risk"


def order_denied(decision: Decision) -> Envelope:
    payload = OrderDenied(
        decision_id=decision.decision_id,
        account_id=decision.account_id,
        client_order_id=decision.client_order_id,
        ts_code=decision.ts_code,
        side=decision.side,
        order_type=decision.order_type,
        qty=decision.qty,
        price=decision.price,
        reasons=tuple(DenialReason(code=r["code"], message=r["message"]) for r in decision.reasons),
        denied_at=decision.created_at,
        strategy_instance_id=decision.strategy_instance_id,
    )
    return make_event("risk.order.denied", payload, source=SOURCE)


def trading_state_changed(change: ScopedState) -> Envelope:
    payload = TradingStateChanged(
        scope=change.scope,
        key=change.key,
        from_state=change.from_state or "active",
        to_state=change.state,
        reason=change.reason,
        by=change.set_by,
        at=change.set_at,
        account_id=change.account_id,
    )
    return make_event("risk.trading_state.changed", payload, source=SOURCE)


def risk_alert(
    *,
    severity: str,
    account_id: str,
    instance_id: str | None,
    rule: str,
    code: str,
    message: str,
    values: dict[str, str],
    decision_id: str | None,
    at: datetime,
) -> Envelope:
    payload = RiskAlert(
        severity=severity,
        account_id=account_id,
        strategy_instance_id=instance_id,
        rule=rule,
        code=code,
        message=message,
        values=values,
        decision_id=decision_id,
        at=at,
    )
    return make_event("risk.alert", payload, source=SOURCE)


def rule_set_changed(scope: str, key: str, version: int, body: dict[str, Any] | None, reason: str, by: str,
                     at: datetime) -> Envelope:  # fmt: skip
    payload = RuleSetChanged(scope=scope, key=key, version=version, body=body, reason=reason, by=by, at=at)
    return make_event("risk.rules.changed", payload, source=SOURCE)
