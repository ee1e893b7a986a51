"""The amend's pure decisions (docs/order-path.md "Amending an order"): which orders may be amended, which requests
are refused before anything is sent, and what is placed once the original's cancel is confirmed. No I/O.

An amend is a cancel-replace: the original is cancelled and, only once its cancel is confirmed (the paper broker at
once, QMT by the broker's report), a replacement is placed for what the new total still wants: the new total quantity
less what the original filled by the time it ended. A fill that came between the request and the confirmation makes
the replacement smaller, or leaves none.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from shared.core.domain import InvalidTsCode, OrderSide, OrderStatus, OrderType, parse_ts_code
from shared.core.market.rules import buy_qty_error

# The replacement's client_order_id: derived from the original's id, so whatever is attempted again (a crash between
# the cancel and the replacement, a "not now" answer, two processes) is the same order at risk and at execution.
REPLACEMENT_PREFIX = "amend-"


def replacement_client_order_id(order_id: str) -> str:
    return f"{REPLACEMENT_PREFIX}{order_id}"


class Status(StrEnum):
    CANCELLING = "cancelling"  # the original's cancel was sent; its confirmation is awaited (QMT: the broker's report)
    REPLACING = "replacing"  # the cancel is confirmed; the replacement is being decided by risk
    REPLACED = "replaced"  # risk approved the replacement and execution holds it (replacement_order_id)
    REPLACEMENT_REFUSED = "replacement_refused"  # risk (or execution) refused it: the original stays cancelled
    NOT_NEEDED = "not_needed"  # the original filled (all of it, or the new total) before the cancel took: none placed
    EXPIRED = "expired"  # the replacement could not be placed by the close of the amend's session
    # the user cancelled the original (or a cancel-all reached it) while the amend was cancelling or replacing: the
    # amend stops there, its replacement never submitted (one an attempt in flight placed is cancelled)
    CANCELLED_BY_USER = "cancelled_by_user"


FINAL = frozenset(
    {Status.REPLACED, Status.REPLACEMENT_REFUSED, Status.NOT_NEEDED, Status.EXPIRED, Status.CANCELLED_BY_USER}
)
ACTIVE = (Status.CANCELLING, Status.REPLACING)  # what a user's cancel stops
MOVES: dict[Status, frozenset[Status]] = {
    Status.CANCELLING: frozenset({Status.REPLACING, Status.NOT_NEEDED, Status.EXPIRED, Status.CANCELLED_BY_USER}),
    Status.REPLACING: frozenset(
        {Status.REPLACED, Status.REPLACEMENT_REFUSED, Status.EXPIRED, Status.CANCELLED_BY_USER}
    ),
}


def may_move(from_: Status, to: Status) -> bool:
    return to in MOVES.get(from_, frozenset())


@dataclass(frozen=True)
class Refusal:
    """Why an amend request is refused before anything is stored or sent: the HTTP status, a code, a message and
    the field it concerns."""

    status_code: int
    code: str
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Original:
    """What the amend reads of the original order."""

    status: OrderStatus
    order_type: OrderType
    side: OrderSide
    ts_code: str
    qty: int
    price: Decimal | None
    filled_qty: int
    strategy_instance_id: str | None


def refusal(order: Original, price: Decimal | None, qty: int | None) -> Refusal | None:
    """Why `order` cannot be amended to (`price`, `qty`: the new total; None keeps the original's), or None. A
    market order never is (422, whatever its state); a final one is 409."""
    if order.order_type is not OrderType.LIMIT:
        return Refusal(422, "order_not_amendable", "only limit orders can be amended (a market order trades at once "
                       "or not at all): cancel it instead", "order_type")  # fmt: skip
    if order.status.is_final:
        return Refusal(409, "order_not_amendable", f"the order is already {order.status.value}: there is nothing "
                       "left to amend")  # fmt: skip
    if order.strategy_instance_id is not None:
        return Refusal(409, "order_not_amendable", "an order of a strategy instance is its runner's: it is not "
                       "amended by hand (cancel it, or change the instance)")  # fmt: skip
    if price is None and qty is None:
        return Refusal(422, "invalid_request", "an amend names price, qty or both")
    new_qty = order.qty if qty is None else qty
    new_price = order.price if price is None else price
    if new_qty == order.qty and new_price == order.price:
        return Refusal(422, "amend_changes_nothing", "the order already has this price and quantity", "price")
    if new_qty <= order.filled_qty:
        return Refusal(422, "qty_not_above_filled", f"qty {new_qty} is the new total quantity and must exceed the "
                       f"{order.filled_qty} already filled (to stop the rest, cancel the order)", "qty")  # fmt: skip
    if order.side is OrderSide.BUY:
        try:
            board = parse_ts_code(order.ts_code).board
        except InvalidTsCode:  # (a stored order's code was checked when it was placed)
            return None
        # the fills of a buy are whole lots unless they complete it, so the replacement (new - filled) is in lots
        # exactly when the new total is
        lot_error = buy_qty_error(board, new_qty - order.filled_qty)
        if lot_error is not None:
            return Refusal(422, "lot_size", f"qty {new_qty} less the {order.filled_qty} filled: {lot_error}", "qty")
    return None


def replacement_qty(new_total: int, filled_when_cancelled: int) -> int:
    """The replacement's quantity once the original's cancel is confirmed: the new total less what the original
    filled by then; 0 (nothing placed) when its fills reached the new total."""
    return max(new_total - filled_when_cancelled, 0)


def after_cancel(original_status: OrderStatus, new_total: int, filled: int) -> tuple[Status, int]:
    """What the amend does once the original is final: (REPLACING, the replacement's qty) or (NOT_NEEDED, 0) when
    the original filled in full, or filled the new total, before its cancel took."""
    qty = replacement_qty(new_total, filled)
    if original_status is OrderStatus.FILLED or qty == 0:
        return Status.NOT_NEEDED, 0
    return Status.REPLACING, qty
