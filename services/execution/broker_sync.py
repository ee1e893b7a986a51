"""Reconciliation with the QMT bridges' brokers (docs/qmt-bridge.md, "Execution"): on every bridge hello, at start
and every LH_QMT_RECONCILE_S while connected. The broker's orders and trades settle execution's (a missed fill is
recorded with its events; an order the broker does not know is looked up and resolved); its positions and cash are
compared with execution's, and differences are stored and reported (`broker.reconciliation.difference`, a metric),
never overwritten."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.qmt import protocol
from services.execution.bridges import BridgeError, BridgeMetrics, BridgeNotConnected, BridgeRefused, BridgeRegistry
from services.execution.brokers.base import BrokerUnavailable
from services.execution.brokers.qmt import SESSION_CLOSED, Difference, QmtBroker, differences, unconfirmed
from services.execution.positions import holdings, session_start
from services.execution.store import ExecutionStore
from shared.core.domain import OrderStatus, to_fen
from shared.platform.clock import utcnow
from shared.platform.events import BrokerReconciliationDifference, Envelope, make_event
from shared.platform.periodic import PeriodicTask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconciliationResult:
    bridge_id: str
    account_id: str
    at: datetime
    orders_checked: int
    orders_updated: int
    differences: tuple[Difference, ...]
    reconciliation_id: int | None  # stored (its differences changed, or orders moved); None: not stored


class QmtSync:
    def __init__(
        self,
        store: ExecutionStore,
        qmt: QmtBroker,
        registry: BridgeRegistry,
        metrics: BridgeMetrics,
        *,
        sessions: Callable[[], Any],
        notify: Callable[[], None],
        interval_s: float,
        clock: Callable[[], datetime] = utcnow,
        source: str = "execution",
    ) -> None:
        self.store = store
        self.qmt = qmt
        self.registry = registry
        self.metrics = metrics
        self.sessions = sessions  # () -> awaitable OrderSession: the session positions are counted for
        self.notify = notify
        self.clock = clock
        self.source = source
        self.last: dict[str, ReconciliationResult] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.loop = PeriodicTask("qmt-reconciler", interval_s, self.reconcile_all)

    def wake(self, bridge_id: str | None = None) -> None:
        """A bridge said hello: reconcile now."""
        self.loop.wake()

    async def reconcile_all(self) -> None:
        for bridge_id in list(self.registry.links):
            if self.loop.stopping.is_set():
                break
            try:
                await self.reconcile(bridge_id)
            except (BrokerUnavailable, BridgeError, BridgeNotConnected, BridgeRefused) as exc:
                log.warning("reconciliation with a bridge failed", extra={"bridge_id": bridge_id, "error": str(exc)})
        self.metrics.unknown.set(await self.store.count_unknown())
        bound = await self.store.bound_bridges()
        for bridge_id in self.registry.secrets:
            self.metrics.bound.labels(bridge_id=bridge_id).set(1 if bridge_id in bound else 0)

    async def reconcile(self, bridge_id: str) -> ReconciliationResult:
        lock = self._locks.setdefault(bridge_id, asyncio.Lock())
        async with lock:
            return await self._reconcile(bridge_id)

    async def _reconcile(self, bridge_id: str) -> ReconciliationResult:
        link = self.registry.link(bridge_id)
        account_id = link.account_id
        broker_orders = (await link.request(protocol.QUERY_ORDERS, {})).get("orders") or []
        broker_trades = (await link.request(protocol.QUERY_TRADES, {})).get("trades") or []
        trades_of: dict[str, list[dict[str, Any]]] = {}
        for trade in broker_trades:
            remark = _remark_of(trade)
            if remark is not None:
                trades_of.setdefault(remark, []).append(trade)
        checked = updated = 0
        seen: set[str] = set()
        listed: dict[str, dict[str, Any]] = {}
        for body in broker_orders:
            if not isinstance(body, dict):
                continue
            remark = _remark_of(body)
            if remark is not None:
                listed[remark] = body
            mapping = await self.qmt._mapping_of(bridge_id, body)
            if mapping is None:
                continue  # an order placed outside the platform
            stored = await self.store.get_order(mapping.order_id)
            if stored is None:
                continue
            if unconfirmed(body):
                # one the bridge has only in its journal (255, no MiniQMT id) is settled by its own query (below)
                continue
            # an order MiniQMT lists by its remark (an `unknown` one too) is settled from what MiniQMT says of it
            seen.add(mapping.order_id)
            checked += 1
            report = await self.qmt._report_of(stored.order, mapping.remark, body, trades_of.get(mapping.remark, []))
            if await self._applied(stored.order.order_id, report):
                updated += 1
        # the account's open orders the broker did not list: looked up one by one. One left `accepted` whose mapping
        # records a send is looked up too (never sent again); one never sent is the desk's to send within its
        # session, and withdrawn once that session has closed (a day order is never sent on another day).
        session = await self.sessions()
        opened = session_start(session.day, session.opens_after)
        for stored in await self.store.open_orders_of(account_id):
            if stored.order.order_id in seen:
                continue
            if stored.order.status is OrderStatus.ACCEPTED:
                mapping = await self.store.broker_order(stored.order.order_id)
                if mapping is None or mapping.sent_at is None:
                    if stored.order.created_at >= opened:
                        continue
                    withdrawn = await self.qmt.withdraw(stored.order, SESSION_CLOSED)
                    if withdrawn is None:
                        continue
                    checked += 1
                    if await self._applied(stored.order.order_id, withdrawn):
                        updated += 1
                    continue
            checked += 1
            report = await self.qmt.look_up(stored.order, listed=listed)
            if await self._applied(stored.order.order_id, report):
                updated += 1
        found = await self._compare(link, account_id)
        return await self._conclude(bridge_id, account_id, checked, updated, found)

    async def _applied(self, order_id: str, report: Any) -> bool:
        before = await self.store.get_order(order_id)
        if before is None or not await self.qmt.apply(before.order, report):
            return False
        after = await self.store.get_order(order_id)
        return after is not None and after.version != before.version

    async def _compare(self, link: Any, account_id: str) -> list[Difference]:
        positions = (await link.request(protocol.QUERY_POSITIONS, {})).get("positions") or []
        asset = (await link.request(protocol.QUERY_ASSET, {})).get("asset")
        theirs: dict[str, int] = {}
        for p in positions:
            if isinstance(p, dict) and isinstance(p.get("ts_code"), str):
                theirs[p["ts_code"]] = theirs.get(p["ts_code"], 0) + int(p.get("volume") or 0)
        session = await self.sessions()
        lots, sells = await self.store.position_inputs(account_id, session.day, session.opens_after)
        mine = {h.ts_code: h.qty for h in holdings(lots, sells, today=session.day, opens_after=session.opens_after)}
        broker_cash: int | None = None
        if isinstance(asset, dict):
            try:
                # the broker's cash is what is available plus what open orders froze: the ledger's balance here
                broker_cash = to_fen(Decimal(str(asset["cash"])) + Decimal(str(asset.get("frozen_cash") or "0")))
            except (KeyError, InvalidOperation, ValueError):
                log.warning("a malformed asset from a bridge", extra={"account_id": account_id})
        cash = await self.store.cash(account_id, session.day)
        return differences(
            {k: v for k, v in mine.items() if v}, {k: v for k, v in theirs.items() if v}, cash.balance_fen, broker_cash
        )

    async def _conclude(
        self, bridge_id: str, account_id: str, checked: int, updated: int, found: list[Difference]
    ) -> ReconciliationResult:
        now = self.clock()
        previous = self.last.get(bridge_id)
        changed = previous is None or previous.differences != tuple(found)
        stored_id: int | None = None
        if found:
            self.metrics.differences.labels(bridge_id=bridge_id).inc(len(found))
        if (found and changed) or updated:
            differences_out = [d.as_dict() for d in found]

            def event_of(reconciliation_id: int) -> Envelope:
                payload = BrokerReconciliationDifference(
                    reconciliation_id=str(reconciliation_id),
                    bridge_id=bridge_id,
                    account_id=account_id,
                    differences=differences_out,
                    at=now,
                )
                return make_event("broker.reconciliation.difference", payload, source=self.source)

            announce = bool(found and changed)
            stored_id = await self.store.record_reconciliation(
                bridge_id, account_id, now, checked, updated, differences_out, event_of if announce else None
            )
            if announce:
                self.notify()
                log.warning(
                    "reconciliation found differences with the broker",
                    extra={"bridge_id": bridge_id, "account_id": account_id, "differences": len(found)},
                )
        result = ReconciliationResult(bridge_id, account_id, now, checked, updated, tuple(found), stored_id)
        self.last[bridge_id] = result
        return result


def _remark_of(body: Any) -> str | None:
    """The remark an `order` or `trade` object's order was placed with: its own, else the one of the platform's order
    it names (MiniQMT reports an order without its remark after a restart that lost its session; the bridge names
    the order from its journal)."""
    if not isinstance(body, dict):
        return None
    remark = body.get("remark")
    if isinstance(remark, str) and remark:
        return remark
    order_id = body.get("order_id")
    if isinstance(order_id, str) and order_id and order_id.isascii():
        return protocol.remark_for(order_id)
    return None
