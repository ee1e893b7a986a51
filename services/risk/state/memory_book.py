"""The hot state of standalone mode: every account's book in this process's memory (`book.AccountBook`), one
asyncio lock per account so that a reservation's check and record are one step even if a store method ever awaits."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from datetime import date, datetime

from services.risk.state.book import AccountBook
from services.risk.state.ports import (
    RECENT_EVENTS_MAX,
    RECENT_EVENTS_S,
    BookEvent,
    BookSnapshot,
    BookView,
    Reservation,
    Verdict,
)
from shared.core.domain import OrderSide


class MemoryHotBook:
    def __init__(self) -> None:
        self._books: dict[str, AccountBook] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # every account's recent events (seeded or not), applied again over a seed
        self._recent: defaultdict[str, deque[tuple[float, BookEvent]]] = defaultdict(
            lambda: deque(maxlen=RECENT_EVENTS_MAX)
        )

    async def seeded(self, account_id: str) -> bool:
        return account_id in self._books

    async def seed(self, snapshot: BookSnapshot, *, keep_decided_since: datetime, forget_events: bool = False) -> None:
        async with self._locks[snapshot.account_id]:
            if forget_events:
                self._recent.pop(snapshot.account_id, None)
            previous = self._books.get(snapshot.account_id)
            book = AccountBook.from_snapshot(snapshot, previous=previous, keep_decided_since=keep_decided_since)
            since = time.monotonic() - RECENT_EVENTS_S
            for at, event in self._recent.get(snapshot.account_id, ()):
                if at >= since:
                    book.apply(event)
            self._books[snapshot.account_id] = book

    async def apply(self, event: BookEvent) -> bool:
        async with self._locks[event.account_id]:
            self._recent[event.account_id].append((time.monotonic(), event))
            book = self._books.get(event.account_id)
            return False if book is None else book.apply(event)

    async def view(self, account_id: str, session: date) -> BookView | None:
        book = self._books.get(account_id)
        return None if book is None else book.view(session)

    async def reserve(
        self,
        account_id: str,
        client_order_id: str,
        *,
        ts_code: str,
        side: OrderSide,
        qty: int,
        cap_fen: int,
        need_fen: int,
        session: date,
        decided_at: datetime,
    ) -> Reservation:
        async with self._locks[account_id]:
            book = self._books.get(account_id)
            if book is None:
                return Reservation(Verdict.NOT_SEEDED)
            return book.reserve(
                client_order_id, ts_code=ts_code, side=side, qty=qty, cap_fen=cap_fen, need_fen=need_fen,
                session=session, decided_at=decided_at,
            )  # fmt: skip

    async def release(self, account_id: str, client_order_id: str) -> None:
        async with self._locks[account_id]:
            book = self._books.get(account_id)
            if book is not None:
                book.release(client_order_id)

    async def expire_decided(self, before: datetime) -> int:
        dropped = 0
        for account_id in list(self._books):
            async with self._locks[account_id]:
                book = self._books.get(account_id)
                if book is not None:
                    dropped += book.expire_decided(before)
        return dropped

    async def drop(self, account_id: str, *, forget_events: bool = False) -> None:
        async with self._locks[account_id]:
            self._books.pop(account_id, None)
            if forget_events:
                self._recent.pop(account_id, None)

    async def accounts(self) -> list[str]:
        return sorted(self._books)

    def book(self, account_id: str) -> AccountBook | None:
        """The account's whole book (tests: the running totals against the orders)."""
        return self._books.get(account_id)
