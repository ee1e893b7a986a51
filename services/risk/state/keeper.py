"""Keeps risk's hot books true: seeds an account's book from execution's snapshot the first time a decision needs it
(and after the store lost it), applies execution's events as they come, drops decisions execution never answered,
and reconciles the books against execution's snapshots on a period — a difference seen on two passes in a row is
drift: counted (`lh_risk_state_drift_total`), logged, and repaired by seeding the book again.

A seed is safe while events flow: the stores keep each account's recent events and apply them again over a seed
(every event is idempotent with respect to the snapshot: trades and cash by id, orders only forward)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.risk.state.ports import BookEvent, BookSnapshot, BookUnavailable, BookView, HotBook
from shared.platform.events import Envelope

log = logging.getLogger(__name__)


class SnapshotUnavailable(Exception):
    """Execution could not give an account's snapshot."""


class SnapshotSource(Protocol):
    async def snapshot(self, account_id: str) -> BookSnapshot | None:
        """Execution's snapshot of the account; None when execution has no such account. Raises
        SnapshotUnavailable."""


@dataclass(frozen=True)
class Drift:
    account_id: str
    what: str  # balance, holding, order


class BookKeeper:
    def __init__(
        self,
        book: HotBook,
        snapshots: SnapshotSource,
        *,
        to_event: Callable[[Envelope], Awaitable[BookEvent | None]],
        clock: Callable[[], datetime],
        decided_ttl_s: int,
        reference_book: Callable[[], HotBook],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.book = book
        self.snapshots = snapshots
        self.to_event = to_event
        self.clock = clock
        self.decided_ttl_s = decided_ttl_s  # a decided order execution never reported is dropped after this
        self.reference_book = reference_book  # a fresh memory book: the second reading of a snapshot
        self._seeding: dict[str, asyncio.Lock] = {}
        self._suspect: dict[str, str] = {}  # account -> the difference seen on the last pass
        # accounts an event could not be applied to (the store failed): seeded again before their next decision
        self._stale: set[str] = set()
        self.drift = Counter(
            "lh_risk_state_drift_total",
            "Differences between risk's hot books and execution's records found (and repaired) by reconciliation",
            ["what"],
            registry=registry,
        )
        for what in ("balance", "holding", "order"):
            self.drift.labels(what=what)
        self.reconciled = Gauge(
            "lh_risk_state_reconciled_timestamp_seconds",
            "When risk last reconciled its hot books against execution (unix time)",
            registry=registry,
        )

    async def view(self, account_id: str, session: date, *, opener: Callable[[], Awaitable[None]] | None = None) -> (
        BookView | None
    ):  # fmt: skip
        """The account's book for an order of `session`, seeded first if the store has none. None when execution
        knows no such account (after `opener`, when given, has had the chance to open it). Raises BookUnavailable."""
        if account_id in self._stale:
            await self.reseed(account_id)  # an event it missed: not decided on without it
        found = await self.book.view(account_id, session)
        if found is not None:
            return found
        if not await self.seed(account_id, opener=opener):
            return None
        found = await self.book.view(account_id, session)
        if found is None:
            raise BookUnavailable(f"the book of {account_id} was seeded but cannot be read")
        return found

    async def seed(self, account_id: str, *, opener: Callable[[], Awaitable[None]] | None = None) -> bool:
        """Seed the account's book from execution's snapshot (once at a time per account in this process). False
        when execution knows no such account. Raises BookUnavailable."""
        lock = self._seeding.setdefault(account_id, asyncio.Lock())
        async with lock:
            if await self.book.seeded(account_id):
                return True  # another request seeded it while this one waited
            snapshot = await self._snapshot(account_id)
            if snapshot is None and opener is not None:
                await opener()
                snapshot = await self._snapshot(account_id)
            if snapshot is None:
                return False
            await self.book.seed(snapshot, keep_decided_since=self._decided_since())
            log.info("risk seeded an account's book", extra={"account": account_id, "as_of": str(snapshot.as_of)})
            return True

    async def reseed(self, account_id: str) -> None:
        """Seed the account's book again over the one it has (a repair): its orders decided but not reported yet
        keep their reservations; its recent events are dropped (the snapshot counts every real one). An account
        execution no longer has is dropped. Raises BookUnavailable."""
        lock = self._seeding.setdefault(account_id, asyncio.Lock())
        async with lock:
            snapshot = await self._snapshot(account_id)
            if snapshot is None:
                await self.book.drop(account_id, forget_events=True)
            else:
                await self.book.seed(snapshot, keep_decided_since=self._decided_since(), forget_events=True)
            self._stale.discard(account_id)

    async def _snapshot(self, account_id: str) -> BookSnapshot | None:
        try:
            return await self.snapshots.snapshot(account_id)
        except SnapshotUnavailable as exc:
            raise BookUnavailable(f"no snapshot of {account_id} from execution: {exc}") from exc

    def _decided_since(self) -> datetime:
        return self.clock() - timedelta(seconds=self.decided_ttl_s)

    async def on_event(self, envelope: Envelope) -> None:
        """An execution event (the bus handler): applied to its account's book. A store that cannot be written
        raises, so the bus delivers the event again."""
        event = await self.to_event(envelope)
        if event is not None:
            try:
                await self.book.apply(event)
            except BookUnavailable:
                # The bus tries once more, then dead-letters it: the book would miss it for good. This process
                # seeds the account again before deciding on it (execution's snapshot counts the event).
                self._stale.add(event.account_id)
                raise

    async def difference(self, account_id: str, session: date) -> str | None:
        """The first difference between the account's book and execution's snapshot of it read a second way (a
        fresh reference book seeded from it), for `session`; None when they agree (orders risk decided that execution
        has not reported are not differences) or the account is not seeded here. Raises SnapshotUnavailable."""
        ours = await self.book.view(account_id, session)
        if ours is None:
            return None
        snapshot = await self.snapshots.snapshot(account_id)
        if snapshot is None:
            return "account: execution has no such account"
        reference = self.reference_book()
        await reference.seed(snapshot, keep_decided_since=self.clock())
        theirs = await reference.view(account_id, session)
        assert theirs is not None
        return _difference(ours, theirs)

    async def reconcile(self, session: date) -> list[Drift]:
        """One pass over every seeded account: its book against execution's snapshot read a second way (a fresh
        reference book seeded from it), for `session`. Orders risk decided that execution has not reported are not
        differences. A difference seen on two passes in a row is drift: counted, logged and repaired (seeded again).
        Decided orders older than the approval's TTL are dropped first."""
        await self.book.expire_decided(self._decided_since())
        drifts: list[Drift] = []
        for account_id in await self.book.accounts():
            try:
                difference = await self.difference(account_id, session)
            except SnapshotUnavailable as exc:
                log.warning("risk cannot reconcile an account", extra={"account": account_id, "error": str(exc)})
                continue
            if difference is None:
                self._suspect.pop(account_id, None)
                continue
            if difference.startswith("account:"):
                await self.book.drop(account_id)  # execution no longer has it (a test's database dropped)
                continue
            if self._suspect.get(account_id) != difference:
                self._suspect[account_id] = difference  # events in flight: look again on the next pass
                continue
            self._suspect.pop(account_id, None)
            what = difference.split(":", 1)[0]
            drift = Drift(account_id, what)
            drifts.append(drift)
            self.drift.labels(what=what).inc()
            log.error(
                "risk's book of an account differed from execution's: seeded again",
                extra={"account": account_id, "difference": difference},
            )
            # its recent events forgotten too: applied again over the new seed, a wrong one would make it wrong again
            await self.book.drop(account_id, forget_events=True)
            await self.seed(account_id)
        self.reconciled.set(self.clock().timestamp())
        return drifts


def _difference(ours: BookView, theirs: BookView) -> str | None:
    """The first difference between risk's book and execution's, ignoring what only risk knows yet (orders it
    decided that execution has not reported, and their reservations)."""
    # (each as the difference ours - theirs: the same fault seen on two passes reads the same while the account trades)
    if ours.balance_fen != theirs.balance_fen:
        return f"balance: {ours.balance_fen - theirs.balance_fen:+d} fen here against execution"
    for code in sorted(set(ours.holdings) | set(theirs.holdings)):
        a, b = ours.holdings.get(code), theirs.holdings.get(code)
        qty_a, qty_b = (0 if a is None else a.qty), (0 if b is None else b.qty)
        if qty_a != qty_b:
            return f"holding: {code} {qty_a - qty_b:+d} shares here against execution"
    reported = {o.client_order_id: o for o in ours.open_orders if not o.decided}
    open_there = {o.client_order_id: o for o in theirs.open_orders}
    for coid in sorted(set(reported) | set(open_there)):
        a_order, b_order = reported.get(coid), open_there.get(coid)
        left_a = 0 if a_order is None else a_order.remaining_qty
        left_b = 0 if b_order is None else b_order.remaining_qty
        if left_a != left_b:
            return f"order: {coid} commits {left_a - left_b:+d} shares here against execution"
    return None
