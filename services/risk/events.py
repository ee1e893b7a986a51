"""What the risk service publishes: `order.denied` when it refuses an order, written to its outbox in the same
transaction as the decision and published by its relay."""

from __future__ import annotations

from services.risk.store import Decision
from shared.platform.events import Envelope, OrderDenied, make_event
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
    return make_event("order.denied", payload, source=SOURCE)
