"""Conditional orders' pure logic (docs/conditional-orders.md): what a conditional order is, when it triggers, and
which moves its state may make. No I/O: the store (store.py) and the watcher (watcher.py) call these.

A conditional order holds a **child order** (market or limit, `side` `qty` of `ts_code`) and a **trigger**:

- `stop` / `stop_limit`: the price reaches `stop_price` against the position: a sell when the price falls to or below
  it (crosses below), a buy when it rises to or above it (crosses above). `stop` places a market child, `stop_limit`
  a limit child at `price`.
- `market` / `limit` with a `condition`: `price_above` / `price_below` (the price crosses the level), or `at_time`
  (the market clock reaches a moment).

A crossing is judged against the previous price the order saw (at first, the last price when it was armed): it
triggers on a price at or beyond the level coming from the other side, whatever the size of the step (a gap over the
level triggers as a step onto it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from shared.core.domain import OrderSide, OrderType
from shared.core.market.order_types import MARKET_TYPES
from shared.core.market.rules import lot_sizes


class Kind(StrEnum):
    STOP = "stop"  # market child when the stop price is reached
    STOP_LIMIT = "stop_limit"  # limit child (at `price`) when the stop price is reached
    MARKET = "market"  # market child when its condition holds
    LIMIT = "limit"  # limit child when its condition holds


class ConditionType(StrEnum):
    PRICE_ABOVE = "price_above"
    PRICE_BELOW = "price_below"
    AT_TIME = "at_time"


class Status(StrEnum):
    WAITING = "waiting"  # for another order to fill (after_order_id: a bracket's legs)
    ARMED = "armed"
    TRIGGERED = "triggered"  # claimed: its child is being submitted through risk
    PLACED = "placed"  # risk approved the child and execution holds it (child_order_id)
    REFUSED = "refused"  # risk (or execution) refused the child: reasons recorded
    # its trigger was missed while execution was down and on_missed is expire; or, triggered, its child could not be
    # placed by its session's close
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # by its owner or an admin, by its OCO partner, or its parent order never filled


class OnMissed(StrEnum):
    FIRE = "fire"
    EXPIRE = "expire"


FINAL = frozenset({Status.PLACED, Status.REFUSED, Status.EXPIRED, Status.CANCELLED})
# Every move a conditional order's state may make; each is a version-checked UPDATE (store.py).
MOVES: dict[Status, frozenset[Status]] = {
    Status.WAITING: frozenset({Status.ARMED, Status.CANCELLED}),
    Status.ARMED: frozenset({Status.TRIGGERED, Status.EXPIRED, Status.CANCELLED}),
    # expired: its child could not be placed (answered "not now") by the close of its session
    Status.TRIGGERED: frozenset({Status.PLACED, Status.REFUSED, Status.EXPIRED}),
}


def may_move(from_status: Status, to_status: Status) -> bool:
    return to_status in MOVES.get(from_status, frozenset())


# The exchanges' market order types (市价申报类型) are the order path's (shared.core.market.order_types): every type
# valid on the child's exchange is placeable (issue 15 section 1).


def child_client_order_id(conditional_id: str) -> str:
    """The child's client_order_id, derived from the conditional order's id: every attempt at the child (a trigger
    processed twice, a resumed attempt after a crash) is the same order at risk and execution."""
    return f"cond-{conditional_id}"


def child_type(kind: Kind) -> OrderType:
    return OrderType.MARKET if kind in (Kind.STOP, Kind.MARKET) else OrderType.LIMIT


@dataclass(frozen=True)
class Trigger:
    """What a conditional order waits for: a price crossing `level` in `direction` (`price_above` / `price_below`),
    or the market clock reaching `at`."""

    type: ConditionType
    level: Decimal | None = None
    at: datetime | None = None


def trigger_of(
    kind: Kind, side: OrderSide, stop_price: Decimal | None, condition: ConditionType | None, level: Decimal | None,
    at: datetime | None,
) -> Trigger:  # fmt: skip
    """A stop's trigger from its side (a sell stop waits for the price to fall to it, a buy stop to rise to it); a
    conditional market/limit order's from its condition."""
    if kind in (Kind.STOP, Kind.STOP_LIMIT):
        assert stop_price is not None
        direction = ConditionType.PRICE_BELOW if side is OrderSide.SELL else ConditionType.PRICE_ABOVE
        return Trigger(direction, level=stop_price)
    assert condition is not None
    if condition is ConditionType.AT_TIME:
        assert at is not None
        return Trigger(condition, at=at)
    assert level is not None
    return Trigger(condition, level=level)


def crossed(trigger: Trigger, previous: Decimal | None, price: Decimal) -> bool:
    """Whether `price`, after `previous`, crosses the trigger's level: above — previous below the level (or none
    seen) and price at or above it; below — previous above it (or none) and price at or below it. A price already
    beyond the level before (previous at or beyond it) is no crossing."""
    level = trigger.level
    assert level is not None
    if trigger.type is ConditionType.PRICE_ABOVE:
        return price >= level and (previous is None or previous < level)
    if trigger.type is ConditionType.PRICE_BELOW:
        return price <= level and (previous is None or previous > level)
    return False


def time_reached(trigger: Trigger, now: datetime) -> bool:
    return trigger.type is ConditionType.AT_TIME and trigger.at is not None and now >= trigger.at


def wrong_side(trigger: Trigger, last: Decimal) -> str | None:
    """Why a price trigger cannot be armed against the last price (None: it can): a crossing above needs a level
    above the last price, below one below it. A level already reached would fire at once on the next quote, which
    is not what a stop is for (a sell stop above the market is a limit sell)."""
    if trigger.type is ConditionType.PRICE_ABOVE and not trigger.level > last:  # type: ignore[operator]
        return f"must be above the last price {last} (a trigger crossing above; it is {trigger.level})"
    if trigger.type is ConditionType.PRICE_BELOW and not trigger.level < last:  # type: ignore[operator]
        return f"must be below the last price {last} (a trigger crossing below; it is {trigger.level})"
    return None


def market_type_error(exchange: str, market_type: str) -> tuple[str, str] | None:
    """(code, message) when `market_type` is not valid on `exchange`; None: fine (every valid type is placed)."""
    valid = MARKET_TYPES.get(exchange, frozenset())
    if market_type not in valid:
        return (
            "market_type_invalid",
            f"{market_type} is not a market order type of the {exchange} exchange "
            f"(it takes: {', '.join(sorted(valid))})",
        )
    return None


def missed(evidence_at: datetime, watching_since: datetime) -> bool:
    """A trigger is missed when what it saw — the quote's time, or a time condition's moment — came before this
    process was watching (execution was down then): the order's `on_missed` says whether it fires or expires."""
    return evidence_at < watching_since


def leg_qty_after_partial_fill(side: OrderSide, ts_code: str, leg_qty: int, filled: int) -> int:
    """The qty a bracket's leg is armed with when its entry ended partly filled (cancelled, expired at the close):
    what the entry filled, at most the leg's own qty. A sell may include the odd lot (it closes what was bought); a
    buy is cut down to what the exchange takes (`lot_sizes`: main board and ChiNext whole lots of 100, STAR at least
    200, BSE at least 100). 0: nothing to protect (the leg is cancelled)."""
    qty = min(leg_qty, max(filled, 0))
    if side is OrderSide.SELL or qty <= 0:
        return qty
    lot_min, lot_step = lot_sizes(ts_code)
    if qty < lot_min:
        return 0
    return lot_min + (qty - lot_min) // lot_step * lot_step
