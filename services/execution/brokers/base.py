"""The port every broker adapter implements (the paper broker, and the QMT bridge: brokers/qmt.py).

Adapters must be idempotent by order_id: submitting an order the broker already has returns what the broker
already did with it (the same fills, with the same fill ids), so execution can resubmit after a crash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from shared.core.domain import Order, OrderStatus
from shared.platform.approval import PaperFill
from shared.platform.db import DbSession


class BrokerUnavailable(Exception):
    """The broker (or what it needs, e.g. market data) could not answer: the order's fate is unknown or
    untouched, and execution will retry it. Never means "rejected"."""


class MarketDataError(BrokerUnavailable):
    """The market data of one symbol could not be used (malformed, off the tick): that order waits, the others go
    on (not an outage of the data service)."""


class CancelOutcomeUnknown(BrokerUnavailable):
    """A cancel was sent but its answer was lost (QMT: the bridge took the request and no reply came): whether it
    took, the order's own reports will say. Not "nothing was sent"."""


class CancelTooLate(Exception):
    """The broker cannot withdraw the order any more: its price is set already (an auction has run, the closing call
    has begun), though its outcome is not reported yet."""


@dataclass(frozen=True)
class Fill:
    fill_id: str  # the broker's id of the fill: becomes the trade_id, unique
    qty: int
    price: Decimal
    traded_at: datetime  # timezone-aware


@dataclass(frozen=True)
class BrokerReport:
    """What the broker says about an order: its status there and every fill so far (cumulative)."""

    status: OrderStatus  # submitted | partially_filled | filled | rejected | cancelled | unknown (sent, no answer)
    fills: tuple[Fill, ...] = field(default_factory=tuple)
    reason: str | None = None
    # A cancel a broker takes asynchronously (QMT): asked for, its outcome comes later (the order is still open).
    cancel_requested: bool = False


class BrokerAdapter(Protocol):
    name: str

    async def submit(
        self, order: Order, *, price_cap: Decimal | None = None, paper_fill: PaperFill | None = None
    ) -> BrokerReport:
        """Send the order (or look it up, if the broker has it already). A buy never fills above `price_cap`, the
        price its cash was reserved at (a market buy: the limit-up price when it was admitted); one that would is
        rejected, and a market buy without a cap is rejected. `paper_fill`: a strategy instance's own fill rules,
        which a paper broker matches the order with instead of its own (a real broker's market fills it). Raises
        BrokerUnavailable."""

    async def cancel(self, order_id: str, *, paper_fill: PaperFill | None = None) -> BrokerReport:
        """Cancel what rests of the order. The report says what happened: `cancelled`, or the final status the
        order reached first (e.g. `filled`). `paper_fill`: the order's own fill rules (a paper broker's cut-off for
        cancels follows the price they set). Raises BrokerUnavailable."""


@runtime_checkable
class ExpiringBroker(Protocol):
    """A broker that execution tells when a day order's trading day has closed (the paper broker). A real broker's
    exchange expires day orders itself and reports them cancelled."""

    async def expire(self, order_id: str, reason: str) -> BrokerReport:
        """Cancel what rests of the order with `reason`; the report says what happened (as `cancel`)."""


@runtime_checkable
class ResumingBroker(Protocol):
    """A broker with orders that wait across sessions (the paper broker on a replay clock: an order whose symbol had
    no bar on its session waits for the next session it trades, as the backtest engine's orders do)."""

    async def resume(
        self, order: Order, *, price_cap: Decimal | None = None, paper_fill: PaperFill | None = None
    ) -> BrokerReport | None:
        """Match a waiting order on the current session; its report, or None when the order does not wait (it is
        then a day order like any other). Raises BrokerUnavailable."""


class AlreadyBooked(Exception):
    """The broker's book has the order already (a resubmission, or a cancel's tombstone written first): nothing was
    written; its `report` says what the book holds."""


@dataclass(frozen=True)
class Booking:
    """A broker's answer to an order whose book lives in execution's own database (the paper broker): the report,
    and `write`, which records the order in the broker's book inside a transaction execution gives it (the one that
    applies the report: both are stored, or neither is). `write` raises AlreadyBooked when the book has the order."""

    report: BrokerReport
    write: Callable[[DbSession], Awaitable[None]]
    # the rows `write` writes (the book's order, its fills), for the broker's `write_many` of several bookings
    rows: tuple[dict[str, Any], tuple[dict[str, Any], ...]] | None = None


@runtime_checkable
class BookingBroker(Protocol):
    """A broker whose book is in execution's database (the paper broker): a new order's match and its book write are
    split, so that execution writes the book in the transaction that records the report (one transaction a new order
    fewer than `submit` and then the report). Crash safety is kept: the order is recorded `accepted` before it is
    matched; a crash before the joint commit leaves it `accepted` with nothing in the book, and it is matched again."""

    async def book(
        self, order: Order, *, price_cap: Decimal | None = None, paper_fill: PaperFill | None = None
    ) -> Booking:
        """Match the order (as `submit` does) without writing anything. Raises BrokerUnavailable."""

    async def report(self, order_id: str) -> BrokerReport | None:
        """What the book holds for the order (None: nothing)."""

    def write_many(self, bookings: Sequence[Booking]) -> Callable[[DbSession], Awaitable[None]]:
        """One write of several bookings (what each one's `write` writes, the rows together), for a transaction that
        applies their reports together. Raises AlreadyBooked or IntegrityError (nothing written) when the book has
        one of them."""
