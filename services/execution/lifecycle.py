"""The order state machine applied to broker reports: which transitions, trades and totals a report implies.
Pure functions: the store applies the plan in one transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from services.execution.brokers.base import BrokerReport, Fill
from shared.core.domain import OrderStatus, check_transition
from shared.core.domain.money import FEN

_AVG_PRICE_STEP = Decimal("0.0001")


class InconsistentReport(ValueError):
    """The broker's report contradicts what execution recorded (e.g. more filled than ordered)."""


@dataclass(frozen=True)
class OrderProgress:
    status: OrderStatus
    qty: int
    filled_qty: int
    filled_amount: Decimal  # sum of qty * price over recorded fills
    reason: str | None = None


@dataclass(frozen=True)
class ReportPlan:
    steps: tuple[OrderStatus, ...]  # statuses the order passes through, in order (empty: no status change)
    new_fills: tuple[Fill, ...]  # fills not recorded yet
    filled_qty: int
    filled_amount: Decimal
    reason: str | None
    final_status: OrderStatus
    reason_changed: bool = False  # a resting order's reason moved on (the paper broker: what it waits for)

    @property
    def changed(self) -> bool:
        return bool(self.steps or self.new_fills or self.reason_changed)


def average_price(filled_amount: Decimal, filled_qty: int) -> Decimal | None:
    """Volume-weighted fill price: exact to the fen when it lies on the tick, else half-up to 0.0001."""
    if filled_qty == 0:
        return None
    avg = filled_amount / filled_qty
    if avg == avg.quantize(FEN):
        return avg.quantize(FEN)
    return avg.quantize(_AVG_PRICE_STEP, rounding=ROUND_HALF_UP)


def plan_report(progress: OrderProgress, report: BrokerReport, recorded_fill_ids: Iterable[str]) -> ReportPlan:
    """What recording `report` changes. Fills are identified by fill id, so the same report twice plans nothing.

    An order goes ACCEPTED -> SUBMITTED before any fill: a broker that fills at once still had the order first.
    """
    recorded = set(recorded_fill_ids)
    new_fills: list[Fill] = []
    for fill in report.fills:
        if fill.fill_id in recorded:
            continue
        if fill.qty <= 0 or fill.price <= 0:
            raise InconsistentReport(f"fill {fill.fill_id} has qty {fill.qty} at {fill.price}")
        recorded.add(fill.fill_id)
        new_fills.append(fill)
    filled_qty = progress.filled_qty + sum(f.qty for f in new_fills)
    filled_amount = progress.filled_amount + sum((f.price * f.qty for f in new_fills), Decimal(0))
    if filled_qty > progress.qty:
        raise InconsistentReport(f"{filled_qty} shares filled of an order for {progress.qty}")

    target = report.status
    open_targets = (OrderStatus.ACCEPTED, OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNKNOWN)
    if target in open_targets and filled_qty > 0:
        # What the fills say wins over a status the broker has not caught up with.
        target = OrderStatus.FILLED if filled_qty == progress.qty else OrderStatus.PARTIALLY_FILLED
    if target is OrderStatus.ACCEPTED:
        raise InconsistentReport("a broker report cannot put an order back to accepted")
    if target is OrderStatus.FILLED and filled_qty != progress.qty:
        raise InconsistentReport(f"reported filled with {filled_qty} of {progress.qty} shares")

    if progress.status.is_final:
        # The same final state again, or a late open one with nothing new (a broker's answer to the send that lost the
        # race with its own push of the outcome: QMT's "placed" after a reject or a fill was recorded): a final state
        # is never downgraded. A final state contradicting this one, or a new fill, is a contradiction.
        late = target in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN) or (
            target is OrderStatus.PARTIALLY_FILLED and filled_qty == progress.filled_qty
        )
        if (target is progress.status or late) and not new_fills:
            return ReportPlan((), (), progress.filled_qty, progress.filled_amount, progress.reason, progress.status)
        raise InconsistentReport(f"the order is {progress.status.value} here but {target.value} at the broker")

    steps: list[OrderStatus] = []
    state = progress.status

    def enter(status: OrderStatus) -> None:
        nonlocal state
        check_transition(state, status)
        steps.append(status)
        state = status

    if target is OrderStatus.UNKNOWN:
        # Sent with no answer: an order not yet known at the broker becomes unknown; one the broker has acknowledged
        # already is not put back (an unknown report says nothing new about it).
        if state is OrderStatus.ACCEPTED:
            enter(OrderStatus.UNKNOWN)
        return ReportPlan(tuple(steps), (), filled_qty, filled_amount, progress.reason, state)

    reached_broker = target is not OrderStatus.REJECTED and (target is not OrderStatus.CANCELLED or new_fills)
    if state in (OrderStatus.ACCEPTED, OrderStatus.UNKNOWN) and reached_broker:
        enter(OrderStatus.SUBMITTED)
    if new_fills and target is not OrderStatus.FILLED:
        enter(OrderStatus.PARTIALLY_FILLED)
    if target in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED):
        enter(target)

    if target in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
        reason = report.reason
    elif target is OrderStatus.SUBMITTED and not new_fills:
        reason = report.reason  # why it rests, when the broker says (the paper broker: what it waits for)
    elif target is OrderStatus.FILLED:
        reason = None  # what it waited for is over
    else:
        reason = progress.reason
    changed_reason = reason != progress.reason
    return ReportPlan(tuple(steps), tuple(new_fills), filled_qty, filled_amount, reason, state, changed_reason)
