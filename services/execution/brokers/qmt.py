"""The QMT adapter: the BrokerAdapter port through a QMT bridge (docs/qmt-bridge.md, "Execution").

- submit: the (order <-> bridge, remark) mapping is written with the moment `place` is sent BEFORE it is sent; an
  order sent once is never sent again, only looked up (`query_order`). No link to the bridge: BrokerUnavailable,
  nothing sent. Sent with no reply (a timeout, a disconnect): the report is `unknown`, settled by a query later.
- the bridge's pushes (`order`, `trade`, `order_error`) become cumulative reports (every fill recorded so far plus
  the new one) recorded through the desk; a report never downgrades a final state (it is skipped and logged).
- reconcile: on every hello and every LH_QMT_RECONCILE_S, the broker's orders and trades settle execution's, and its
  positions and cash are compared with execution's: differences are stored and reported, never overwritten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.qmt import protocol
from services.execution.bridges import BridgeError, BridgeNotConnected, BridgeRefused, BridgeRegistry
from services.execution.brokers.base import (
    BrokerReport,
    BrokerUnavailable,
    CancelOutcomeUnknown,
    CancelTooLate,
    Fill,
)
from services.execution.events import exchange_date
from services.execution.store import ExecutionStore
from services.execution.store.brokers import WITHDRAWN, BrokerOrder
from shared.core.domain import Order, OrderSide, OrderStatus, OrderType
from shared.core.market.order_types import DEFAULT_MARKET_TYPE, qmt_price_type
from shared.platform.approval import PaperFill
from shared.platform.clock import utcnow
from shared.platform.events import BrokerReconciliationDifference, Envelope, make_event

log = logging.getLogger(__name__)

UNKNOWN_GRACE_S = 60.0  # an order the broker does not know this long after it was sent never reached it
NEVER_REACHED = "never reached the broker"
NO_LONGER_LISTED = "the broker no longer lists it (a day order of a closed session)"
SESSION_CLOSED = f"{WITHDRAWN}: its session closed (a day order is never sent on another day)"

# MiniQMT's order states as execution reads them (docs/qmt-bridge.md, "MiniQMT's order states").
STATUS_MAP: dict[int, OrderStatus] = {
    48: OrderStatus.SUBMITTED,
    49: OrderStatus.SUBMITTED,
    50: OrderStatus.SUBMITTED,
    51: OrderStatus.SUBMITTED,
    52: OrderStatus.PARTIALLY_FILLED,
    55: OrderStatus.PARTIALLY_FILLED,
    53: OrderStatus.CANCELLED,
    54: OrderStatus.CANCELLED,
    56: OrderStatus.FILLED,
    57: OrderStatus.REJECTED,
    255: OrderStatus.UNKNOWN,
}


def fill_id(remark: str, trade_id: str) -> str:
    """A QMT trade's fill id: MiniQMT's `traded_id` is the exchange's trade number, unique within a day and an
    exchange only, so it is qualified by the order's remark (unique per order): `q<remark>-<traded_id>`."""
    return f"q{remark}-{trade_id}"[:64]


def fill_of(remark: str, trade: dict[str, Any]) -> Fill:
    """A `trade` object (push or query) as a fill. Raises ValueError when it is malformed."""
    try:
        qty = int(trade["qty"])
        price = Decimal(str(trade["price"]))
        at = datetime.fromisoformat(str(trade["traded_at"]))
        trade_id = str(trade["trade_id"])
    except (KeyError, ValueError, TypeError, InvalidOperation) as exc:
        raise ValueError(f"a malformed trade: {exc}") from exc
    if at.tzinfo is None or not trade_id:
        raise ValueError("a trade without a timezone or a trade_id")
    return Fill(fill_id(remark, trade_id), qty, price, at)


def merged(recorded: Iterable[Fill], new: Iterable[Fill]) -> tuple[Fill, ...]:
    """Every fill so far, each once (by fill id), the recorded ones first."""
    out: dict[str, Fill] = {}
    for fill in (*recorded, *new):
        out.setdefault(fill.fill_id, fill)
    return tuple(out.values())


def build_report(
    qty: int, qmt_status: int | None, traded_qty: int | None, fills: tuple[Fill, ...], status_msg: str | None = None
) -> BrokerReport:
    """The cumulative report of an order of `qty` shares from MiniQMT's last status code and traded volume for it and
    every fill known. A final status whose fills are not all in yet (MiniQMT says 300 traded, 200 are recorded) is
    held back as the open status the fills give, until the trades come (a push, or the reconciliation's query): an
    order made final could take no more fills."""
    filled = sum(f.qty for f in fills)
    status = STATUS_MAP.get(qmt_status, OrderStatus.SUBMITTED) if qmt_status is not None else OrderStatus.SUBMITTED
    missing = traded_qty is not None and traded_qty > filled
    if (status is OrderStatus.FILLED and (filled < qty or missing)) or (status is OrderStatus.CANCELLED and missing):
        status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.SUBMITTED
    elif status is OrderStatus.REJECTED and filled:
        status = OrderStatus.CANCELLED  # a junk order with fills cannot be: what filled stands, the rest is off
    elif status is OrderStatus.PARTIALLY_FILLED and not filled:
        status = OrderStatus.SUBMITTED  # the fills are on their way
    reason = None
    if status is OrderStatus.REJECTED:
        reason = status_msg or "rejected by the broker"
    elif status is OrderStatus.CANCELLED:
        reason = status_msg or "cancelled at the broker"
    return BrokerReport(status=status, fills=fills, reason=reason)


def unconfirmed(broker_order: dict[str, Any]) -> bool:
    """An `order` the bridge knows only from its journal: status 255 with no MiniQMT order id (journalled, then the
    bridge stopped or MiniQMT never answered, and MiniQMT shows no order with its remark). It says nothing of the
    order at the broker."""
    return broker_order.get("status") == 255 and broker_order.get("qmt_order_id") is None


def place_body(order: Order, remark: str, price_cap: Decimal | None) -> dict[str, Any]:
    """The `place` request of an order. A limit order at its price (FIX_PRICE 11); a market order as MiniQMT's price
    type for its market type on the code's exchange (`order_types.QMT_PRICE_TYPES`: SH/BJ 42-45, SZ 44-48), with its
    protection price: a STAR market order's own (`price`), else a buy's cap (the limit-up its cash was reserved
    at), a sell's none ("0")."""
    if order.order_type is OrderType.LIMIT:
        assert order.price is not None
        price_type, price = protocol.FIX_PRICE, order.price
    else:
        price_type = qmt_price_type(order.ts_code, order.market_type or DEFAULT_MARKET_TYPE)
        if order.price is not None:
            price = order.price
        else:
            price = price_cap if price_cap is not None and order.side is OrderSide.BUY else Decimal(0)
    return {
        "order_id": order.order_id,
        "remark": remark,
        "ts_code": order.ts_code,
        "side": "buy" if order.side is OrderSide.BUY else "sell",
        "qty": order.qty,
        "price_type": price_type,
        "price": str(price),
        "strategy_name": (order.strategy_instance_id or "")[:24],
    }


@dataclass(frozen=True)
class Difference:
    kind: str  # position | cash
    ts_code: str | None
    platform: str
    broker: str

    def as_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "ts_code": self.ts_code, "platform": self.platform, "broker": self.broker}


def differences(
    platform_positions: dict[str, int],
    broker_positions: dict[str, int],
    platform_cash_fen: int | None,
    broker_cash_fen: int | None,
) -> list[Difference]:
    """Where the broker's positions (shares by code) and cash differ from execution's, by code then cash."""
    out: list[Difference] = []
    for code in sorted(set(platform_positions) | set(broker_positions)):
        mine, theirs = platform_positions.get(code, 0), broker_positions.get(code, 0)
        if mine != theirs:
            out.append(Difference("position", code, str(mine), str(theirs)))
    if platform_cash_fen is not None and broker_cash_fen is not None and platform_cash_fen != broker_cash_fen:
        out.append(Difference("cash", None, _cny(platform_cash_fen), _cny(broker_cash_fen)))
    return out


def _cny(fen: int) -> str:
    return str((Decimal(fen) / 100).quantize(Decimal("0.01")))


Recorder = Callable[[str, BrokerReport], Awaitable[Any]]  # (order_id, report): the desk's _record


class QmtBroker:
    """The BrokerAdapter of the accounts an admin bound to a QMT bridge."""

    name = "qmt"

    def __init__(
        self,
        store: ExecutionStore,
        registry: BridgeRegistry,
        *,
        clock: Callable[[], datetime] = utcnow,
        grace_s: float = UNKNOWN_GRACE_S,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.grace_s = grace_s
        self.record: Recorder | None = None  # the desk's recording of a report (set by the desk)
        self.notify: Callable[[], None] = lambda: None  # wakes the outbox relay (set by the app)
        self.source = "execution"
        self._after_final_seen: set[tuple[str, str, frozenset[str]]] = set()  # each disagreement alerted once
        # One order's sending and a cancel of it before it was sent are taken one at a time (in this process).
        self._order_locks: dict[str, asyncio.Lock] = {}

    def _lock(self, order_id: str) -> asyncio.Lock:
        if len(self._order_locks) > 10_000:  # forget the idle ones
            self._order_locks = {k: v for k, v in self._order_locks.items() if v.locked()}
        return self._order_locks.setdefault(order_id, asyncio.Lock())

    # --- the port ----------------------------------------------------------------------------------------------

    async def ready(self, account_id: str) -> None:
        """Raises BrokerUnavailable when an order of the account could not be sent now: no bridge bound, the bridge
        not connected, or its link to MiniQMT reported down. Asked before a new order is stored, so that an order
        placed while the broker is away is refused with nothing stored and nothing sent (not kept to be sent later)."""
        bridge_id = await self._bridge_of(account_id)
        link = self._link(bridge_id, account_id)
        if link.qmt == "disconnected":
            raise BrokerUnavailable(f"the QMT bridge {bridge_id} has no link to MiniQMT")

    async def submit(
        self, order: Order, *, price_cap: Decimal | None = None, paper_fill: PaperFill | None = None
    ) -> BrokerReport:
        async with self._lock(order.order_id):
            return await self._submit(order, price_cap)

    async def _submit(self, order: Order, price_cap: Decimal | None) -> BrokerReport:
        bridge_id = await self._bridge_of(order.account_id)
        link = self._link(bridge_id, order.account_id)
        mapping = await self.store.broker_order(order.order_id)
        if _withdrawn(mapping):
            assert mapping is not None
            # cancelled while it waited to be sent
            return BrokerReport(OrderStatus.CANCELLED, reason=mapping.status_msg or WITHDRAWN)
        if mapping is not None and mapping.sent_at is not None:
            # sent before (a crash or a timeout since): never sent again, only looked up
            return await self.look_up(order, mapping)
        remark = protocol.remark_for(order.order_id)
        now = self.clock()
        if not await self.store.record_sending(order.order_id, bridge_id, remark, now):
            # another pass recorded a send, or withdrew it, since it was read: nothing is sent here
            mapping = await self.store.broker_order(order.order_id)
            log.warning("an order's send was taken by another pass: not sent", extra={"order_id": order.order_id})
            if _withdrawn(mapping):
                assert mapping is not None
                return BrokerReport(OrderStatus.CANCELLED, reason=mapping.status_msg or WITHDRAWN)
            if mapping is not None and mapping.sent_at is not None:
                return await self.look_up(order, mapping)
            raise BrokerUnavailable(f"order {order.order_id} could not be marked as being sent: nothing was sent")
        try:
            body = await link.request(protocol.PLACE, place_body(order, remark, price_cap))
        except BridgeNotConnected as exc:
            await self.store.record_not_sent(order.order_id, self.clock())
            raise BrokerUnavailable(str(exc)) from exc
        except BridgeError as exc:
            log.warning(
                "an order sent to QMT has no answer: unknown", extra={"order_id": order.order_id, "error": str(exc)}
            )
            return BrokerReport(OrderStatus.UNKNOWN)
        except BridgeRefused as exc:
            if exc.code == protocol.QMT_DISCONNECTED:
                await self.store.record_not_sent(order.order_id, self.clock())
                raise BrokerUnavailable(f"the bridge placed nothing: {exc}") from exc
            if exc.code == protocol.TRADING_DISABLED:
                # an admin's decision, not an outage: the order is not kept to be sent whenever trading comes back
                await self.store.record_not_sent(order.order_id, self.clock())
                return BrokerReport(OrderStatus.REJECTED, reason=f"trading is disabled on QMT bridge {bridge_id}")
            if exc.code in (protocol.QMT_REFUSED, protocol.BAD_REQUEST):
                await self.store.record_not_sent(order.order_id, self.clock())
                return BrokerReport(OrderStatus.REJECTED, reason=f"QMT refused the order: {exc.message or exc.code}")
            return BrokerReport(OrderStatus.UNKNOWN)
        broker_order = body.get("order")
        if not isinstance(broker_order, dict):
            # "placed" (MiniQMT took the call; its state follows as pushes): at the broker, whatever the pushes that
            # may already have been recorded say of it since
            return BrokerReport(OrderStatus.SUBMITTED, fills=tuple(await self.store.recorded_fills(order.order_id)))
        if unconfirmed(broker_order):
            # "known" to the bridge only as journalled (sent by an earlier attempt that got no answer): unknown, and
            # settled by the queries (never placed again)
            return self._not_known(order, await self.store.broker_order(order.order_id), journalled=True)
        return await self._report_of(order, remark, broker_order, [])

    async def cancel(self, order_id: str, *, paper_fill: PaperFill | None = None) -> BrokerReport:
        stored = await self.store.get_order(order_id)
        if stored is None:
            raise LookupError(order_id)
        order = stored.order
        if order.status is OrderStatus.ACCEPTED:
            async with self._lock(order_id):
                mapping = await self.store.broker_order(order_id)
                if mapping is None or mapping.sent_at is None:
                    # never sent: withdrawn here, and marked so that no later pass sends it
                    bridge_id = await self._bridge_of(order.account_id)
                    await self.store.record_withdrawn(order_id, bridge_id, protocol.remark_for(order_id), WITHDRAWN,
                                                      self.clock())  # fmt: skip
                    return BrokerReport(OrderStatus.CANCELLED, reason=WITHDRAWN)
        link = self._link(await self._bridge_of(order.account_id), order.account_id)
        try:
            body = await link.request(protocol.CANCEL, {"order_id": order_id})
        except BridgeNotConnected as exc:
            raise BrokerUnavailable(str(exc)) from exc
        except BridgeError as exc:
            raise CancelOutcomeUnknown(
                f"the cancel got no answer; its outcome comes with the order's reports: {exc}"
            ) from exc
        except BridgeRefused as exc:
            if exc.code in (protocol.TRADING_DISABLED, protocol.QMT_DISCONNECTED):
                raise BrokerUnavailable(f"the bridge sent no cancel: {exc}") from exc
            raise CancelTooLate(f"QMT refused the cancel: {exc.message or exc.code}") from exc
        broker_order = body.get("order")
        mapping = await self.store.broker_order(order_id)
        remark = mapping.remark if mapping is not None else protocol.remark_for(order_id)
        if isinstance(broker_order, dict):
            report = await self._report_of(order, remark, broker_order, [])
        else:
            report = BrokerReport(
                order.status if order.status is not OrderStatus.ACCEPTED else OrderStatus.SUBMITTED,
                fills=tuple(await self.store.recorded_fills(order_id)),
            )
        if body.get("state") == "requested" and not report.status.is_final:
            # asynchronous at MiniQMT: the cancel is asked for; the push of its final state (53/54) records it
            return BrokerReport(report.status, report.fills, report.reason, cancel_requested=True)
        return report

    async def withdraw(self, order: Order, why: str) -> BrokerReport | None:
        """Withdraw an order never sent (marked so that no pass sends it after): its `cancelled` report; None when a
        send of it is recorded (it is the broker's now: looked up, never withdrawn here)."""
        async with self._lock(order.order_id):
            mapping = await self.store.broker_order(order.order_id)
            if mapping is not None and mapping.sent_at is not None:
                return None
            bridge_id = mapping.bridge_id if mapping is not None else await self._bridge_of(order.account_id)
            remark = mapping.remark if mapping is not None else protocol.remark_for(order.order_id)
            await self.store.record_withdrawn(order.order_id, bridge_id, remark, why, self.clock())
            mapping = await self.store.broker_order(order.order_id)
            if not _withdrawn(mapping):
                return None
            assert mapping is not None
            return BrokerReport(OrderStatus.CANCELLED, reason=mapping.status_msg or why)

    # --- looking an order up -----------------------------------------------------------------------------------

    async def look_up(
        self, order: Order, mapping: BrokerOrder | None = None, *, listed: dict[str, dict[str, Any]] | None = None
    ) -> BrokerReport:
        """What the broker has of an order sent before (`query_order`): its report; not known there within the grace
        after it was sent: still unknown; after it: rejected (it never reached the broker), or, for one the broker had
        acknowledged and no longer lists, cancelled. Raises BrokerUnavailable without a link.

        An order is made final as not at the broker only on MiniQMT's full list of the day's orders, had while it was
        connected, that does not have it: `listed` ({remark: order}, from a reconciliation's `query_orders`), or a
        `query_orders` made here. A bridge that cannot list them (MiniQMT down, no answer) leaves the order as it is."""
        mapping = mapping or await self.store.broker_order(order.order_id)
        link = self._link(
            mapping.bridge_id if mapping is not None else await self._bridge_of(order.account_id), order.account_id
        )
        try:
            body = await link.request(protocol.QUERY_ORDER, {"order_id": order.order_id})
        except BridgeNotConnected as exc:
            raise BrokerUnavailable(str(exc)) from exc
        except BridgeError as exc:
            raise BrokerUnavailable(f"the query got no answer: {exc}") from exc
        except BridgeRefused as exc:
            if exc.code != protocol.UNKNOWN_ORDER:
                raise BrokerUnavailable(f"the bridge could not look the order up: {exc}") from exc
            body = {"known": False, "order": None, "trades": []}
        remark = mapping.remark if mapping is not None else protocol.remark_for(order.order_id)
        if body.get("known") and isinstance(body.get("order"), dict) and not unconfirmed(body["order"]):
            trades = body.get("trades") if isinstance(body.get("trades"), list) else []
            return await self._report_of(order, remark, body["order"], trades)
        # Not known, or known to the bridge only as journalled (status 255, no MiniQMT order id: it cannot say
        # whether MiniQMT ever had it, and found no order with its remark): the grace decides, as for one not known.
        journalled = bool(body.get("known")) and isinstance(body.get("order"), dict)
        report = self._not_known(order, mapping, journalled=journalled)
        if report.status is OrderStatus.UNKNOWN or not report.status.is_final:
            return report
        # about to be made final as absent from the broker: only on MiniQMT's full list, which must not have it
        if listed is None:
            try:
                orders = (await link.request(protocol.QUERY_ORDERS, {})).get("orders")
            except (BridgeNotConnected, BridgeError, BridgeRefused) as exc:
                log.warning("the broker's orders could not be listed: the order is left as it is",
                            extra={"order_id": order.order_id, "error": str(exc)})  # fmt: skip
                return BrokerReport(OrderStatus.UNKNOWN)
            if not isinstance(orders, list):
                return BrokerReport(OrderStatus.UNKNOWN)
            listed = {o["remark"]: o for o in orders if isinstance(o, dict) and isinstance(o.get("remark"), str)}
        found = listed.get(remark)
        if found is not None and not unconfirmed(found):
            # MiniQMT has it after all (the bridge's journal lost it): its state there settles it
            return await self._report_of(order, remark, found, [])
        return report

    def _not_known(self, order: Order, mapping: BrokerOrder | None, *, journalled: bool = False) -> BrokerReport:
        """`journalled`: the bridge has the order in its journal but MiniQMT shows none with its remark (255)."""
        sent_at = mapping.sent_at if mapping is not None else None
        if sent_at is not None and self.clock() - sent_at < timedelta(seconds=self.grace_s):
            return BrokerReport(OrderStatus.UNKNOWN)
        # `submitted` from the bridge's "placed" only (no MiniQMT order id ever seen) is no acknowledgement by the
        # broker: one the bridge holds as journalled and MiniQMT does not have never reached it either.
        seen_at_broker = mapping is not None and mapping.qmt_order_id is not None
        if order.status is OrderStatus.PARTIALLY_FILLED or (
            order.status is OrderStatus.SUBMITTED and (seen_at_broker or not journalled)
        ):
            # The broker acknowledged it. MiniQMT lists only today's orders: one of an earlier day it no longer lists
            # has expired with its session. One of today's it does not know contradicts what it said: left as it
            # is (a failed query must not cancel a live order), and logged.
            if exchange_date(order.created_at) < exchange_date(self.clock()):
                return BrokerReport(OrderStatus.CANCELLED, reason=NO_LONGER_LISTED)
            log.warning("the broker does not know an order it acknowledged today; left open",
                        extra={"order_id": order.order_id, "status": order.status.value})  # fmt: skip
            # alerted (LianghuaBrokerOrderNotListed): someone must check it at the broker
            self.registry.metrics.not_listed.labels(bridge_id=mapping.bridge_id if mapping else "unbound").inc()
            return BrokerReport(OrderStatus.UNKNOWN)  # changes nothing for an acknowledged order
        # The bridge journals every order before MiniQMT sees it and reports one it cannot confirm as 255: an order
        # it does not know at all past the grace was never sent on.
        return BrokerReport(OrderStatus.REJECTED, reason=NEVER_REACHED)

    async def _report_of(
        self, order: Order, remark: str, broker_order: dict[str, Any], trades: list[Any]
    ) -> BrokerReport:
        """The cumulative report from a broker `order` object and `trades` (plus every fill recorded), with what
        MiniQMT said of it kept in the mapping."""
        status = broker_order.get("status")
        traded = broker_order.get("traded_qty")
        msg = broker_order.get("status_msg")
        await self.store.record_broker_state(
            order.order_id,
            qmt_order_id=_text(broker_order.get("qmt_order_id")),
            order_sysid=_text(broker_order.get("order_sysid")),
            qmt_status=status if isinstance(status, int) else None,
            traded_qty=traded if isinstance(traded, int) else None,
            status_msg=msg if isinstance(msg, str) else None,
            now=self.clock(),
        )
        new = [fill_of(remark, t) for t in trades if isinstance(t, dict)]
        fills = merged(await self.store.recorded_fills(order.order_id), new)
        return build_report(
            order.qty,
            status if isinstance(status, int) else None,
            traded if isinstance(traded, int) else None,
            fills,
            msg if isinstance(msg, str) and msg else None,
        )

    # --- pushes ------------------------------------------------------------------------------------------------

    async def on_push(self, bridge_id: str, type_: str, body: dict[str, Any]) -> None:
        """A push from a bridge: `order`, `trade` and `order_error` settle the platform's order they name (by the
        remark it was placed with); the rest only inform (the registry keeps the link's status)."""
        if type_ not in (protocol.ORDER, protocol.TRADE, protocol.ORDER_ERROR):
            if type_ == protocol.CANCEL_ERROR:
                log.warning("QMT refused a cancel", extra={"bridge_id": bridge_id, "body": body})
            return
        mapping = await self._mapping_of(bridge_id, body)
        if mapping is None:
            log.info("a QMT push for no order of the platform", extra={"bridge_id": bridge_id, "type": type_})
            return
        stored = await self.store.get_order(mapping.order_id)
        if stored is None:
            return
        order = stored.order
        if type_ == protocol.ORDER:
            report = await self._report_of(order, mapping.remark, body, [])
        elif type_ == protocol.TRADE:
            try:
                fill = fill_of(mapping.remark, body)
            except ValueError as exc:
                log.warning("a malformed trade push", extra={"bridge_id": bridge_id, "error": str(exc)})
                return
            fills = merged(await self.store.recorded_fills(order.order_id), [fill])
            report = build_report(order.qty, mapping.qmt_status, mapping.traded_qty, fills, mapping.status_msg)
        else:
            message = str(body.get("error_msg") or "refused by the broker")
            fills = tuple(await self.store.recorded_fills(order.order_id))
            report = BrokerReport(OrderStatus.CANCELLED if fills else OrderStatus.REJECTED, fills, message)
        await self.apply(order, report)

    async def apply(self, order: Order, report: BrokerReport) -> bool:
        """Record a report through the desk, unless it would move a final order (a late report: skipped, logged).
        Whether it was recorded."""
        current = await self.store.get_order(order.order_id)
        if current is None or self.record is None:
            return False
        status = current.order.status
        if status.is_final:
            known = {f.fill_id for f in await self.store.recorded_fills(order.order_id)}
            new_fills = [f for f in report.fills if f.fill_id not in known]
            if report.status is not status or new_fills:
                log.warning(
                    "a late broker report for a final order skipped",
                    extra={"order_id": order.order_id, "status": status.value, "reported": report.status.value},
                )
            if new_fills or (report.status.is_final and report.status is not status):
                # another outcome than the one recorded (a fill on a rejected order, filled at the broker but
                # cancelled here): never applied over a final state, never dropped silently either
                await self._after_final(current.order, report, new_fills)
            return False
        await self.record(order.order_id, report)
        return True

    async def _after_final(self, order: Order, report: BrokerReport, new_fills: list[Fill]) -> None:
        """Alert on a broker report that disagrees with an order's final state: counted
        (`lh_broker_reports_after_final_total`), stored as a reconciliation and published as
        `broker.reconciliation.difference` (kind `order`), once per disagreement."""
        mapping = await self.store.broker_order(order.order_id)
        bridge_id = mapping.bridge_id if mapping is not None else "unbound"
        key = (order.order_id, report.status.value, frozenset(f.fill_id for f in new_fills))
        if key in self._after_final_seen:
            return
        if len(self._after_final_seen) > 10_000:
            self._after_final_seen.clear()
        self._after_final_seen.add(key)
        self.registry.metrics.after_final.labels(bridge_id=bridge_id).inc()
        said = report.status.value
        if new_fills:
            ids = ", ".join(f.fill_id for f in new_fills)
            said += f" with {sum(f.qty for f in new_fills)} more shares filled ({ids})"
        difference: dict[str, str | None] = {
            "kind": "order",
            "ts_code": order.ts_code,
            "platform": f"{order.order_id} {order.status.value}",
            "broker": said,
        }
        now = self.clock()
        log.error(
            "a broker report after the order was final disagrees with it",
            extra={"order_id": order.order_id, "bridge_id": bridge_id, "status": order.status.value, "reported": said},
        )

        def event_of(reconciliation_id: int) -> Envelope:
            payload = BrokerReconciliationDifference(
                reconciliation_id=str(reconciliation_id),
                bridge_id=bridge_id,
                account_id=order.account_id,
                differences=[difference],
                at=now,
            )
            return make_event("broker.reconciliation.difference", payload, source=self.source)

        await self.store.record_reconciliation(bridge_id, order.account_id, now, 1, 0, [difference], event_of)
        self.notify()

    async def _mapping_of(self, bridge_id: str, body: dict[str, Any]) -> BrokerOrder | None:
        order_id = body.get("order_id")
        mapping = await self.store.broker_order(order_id) if isinstance(order_id, str) and order_id else None
        if mapping is None and isinstance(body.get("remark"), str):
            mapping = await self.store.broker_order_by_remark(body["remark"])
        if mapping is not None and mapping.bridge_id != bridge_id:
            log.warning(
                "a push names an order of another bridge: ignored",
                extra={"bridge_id": bridge_id, "order_id": mapping.order_id},
            )
            return None
        return mapping

    # --- helpers -----------------------------------------------------------------------------------------------

    async def _bridge_of(self, account_id: str) -> str:
        bound = await self.store.account_broker(account_id)
        if bound.bridge_id is None:
            raise BrokerUnavailable(f"account {account_id} has no QMT bridge bound")
        return bound.bridge_id

    def _link(self, bridge_id: str, account_id: str) -> Any:
        """The bridge's live link, for a request about an order of `account_id`. Raises BrokerUnavailable (nothing
        sent) when it is not connected, or when its link names another account (its hello was checked against a
        binding an admin has changed since: the link is being closed and must say hello again)."""
        try:
            link = self.registry.link(bridge_id)
        except BridgeNotConnected as exc:
            raise BrokerUnavailable(f"the QMT bridge {bridge_id} is not connected") from exc
        if link.account_id != account_id:
            log.warning(
                "a bridge's link names another account than the order's: nothing sent",
                extra={"bridge_id": bridge_id, "link_account_id": link.account_id, "account_id": account_id},
            )
            raise BrokerUnavailable(f"the QMT bridge {bridge_id} is connected for another account than {account_id}")
        return link


def _withdrawn(mapping: BrokerOrder | None) -> bool:
    """The order was cancelled before it was ever sent (by a trader, or its session closed): never sent after."""
    return (
        mapping is not None
        and mapping.sent_at is None
        and mapping.status_msg is not None
        and mapping.status_msg.startswith(WITHDRAWN)
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
