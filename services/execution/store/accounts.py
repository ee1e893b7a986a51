"""Accounts (the admission lock) and their cash ledger: the tables, the cash reads and the cash movements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Column, String, Table, UniqueConstraint, and_, bindparam, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from services.execution import cash as cashbook
from services.execution.admission import Refusal
from services.execution.cash import Cash, OpenBuy, account_cash, withdrawal_refusal
from services.execution.events import cash_event
from services.execution.store.base import AutoId, StoreBase, metadata, outbox
from services.execution.store.orders import orders
from shared.core.domain import OrderSide, OrderStatus, from_fen, to_fen
from shared.platform.clock import UtcDateTime, utcnow
from shared.platform.columns import CnyFen
from shared.platform.db import DbSession
from shared.platform.observability import current_correlation_id
from shared.platform.outbox import add_to_outbox

# One row per account: admission locks it (an UPDATE, in the transaction that checks and inserts an order), so
# that two orders of one account are admitted one after the other and cannot both spend the same shares or cash.
# `balance` is the sum of the account's cash ledger, kept by every transaction that adds an entry (in that
# transaction, by an UPDATE that adds the entry's amount), so that a cash read is one row, not a SUM over every fill
# the account ever had. The ledger stays the record; migration 0004 filled the balance from it.
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("admissions", BigInteger, nullable=False),  # bumped by every admission attempt: the lock
    Column("created_at", UtcDateTime, nullable=False),
    Column("balance_fen", CnyFen, key="balance", nullable=False, server_default="0"),
)

# The account's cash, append-only: balance = sum(amount). One entry per idempotency key and account: the
# opening cash ("opening"), each fill ("trade:<trade_id>"), each deposit or withdrawal (the caller's key).
cash_ledger = Table(
    "cash_ledger",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("account_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # opening | deposit | withdrawal | buy_fill | sell_fill | cash_in_lieu
    Column("amount_fen", CnyFen, key="amount", nullable=False),  # signed: + money in, - money out
    Column("idempotency_key", String(80), nullable=False),
    Column("trade_id", String(64), nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("correlation_id", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "idempotency_key", name="uq_cash_ledger_account_key"),
)


# The order path's statements, built once (constant statements with their parameters: SQLAlchemy neither builds nor
# cache-keys them again per order).
# The account's admission lock (`AccountStore._lock_account`).
_LOCK_ACCOUNT = (
    update(accounts).where(accounts.c.account_id == bindparam("p_account")).values(admissions=accounts.c.admissions + 1)
)
# The balance moved by a ledger entry's amount (`AccountStore._add_entry`).
_MOVE_BALANCE = (
    update(accounts)
    .where(accounts.c.account_id == bindparam("p_account"))
    .values(balance=accounts.c.balance + bindparam("p_amount", type_=CnyFen))
)
# The balance and the open buys in one statement (`AccountStore._cash`): the account's row joined to each of its open
# buys (one row with the order's columns NULL when it has none).
_CASH = (
    select(accounts.c.balance, orders.c.qty, orders.c.filled_qty, orders.c.price_cap)
    .select_from(
        accounts.outerjoin(
            orders,
            and_(
                orders.c.account_id == accounts.c.account_id,
                orders.c.side == OrderSide.BUY.value,
                orders.c.status.in_([status.value for status in OrderStatus if not status.is_final]),
            ),
        )
    )
    .where(accounts.c.account_id == bindparam("p_account"))
)


class EntryExists(Exception):
    """A cash movement's idempotency key was used already on the account: nothing was stored."""

    def __init__(self, entry: LedgerEntry) -> None:
        super().__init__("idempotency key used")
        self.entry = entry


class AdmissionRefused(Exception):
    """The order would spend shares or cash the account does not have: nothing was stored."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @classmethod
    def of(cls, refusal: Refusal) -> AdmissionRefused:
        return cls(refusal.code, refusal.message, **refusal.details)


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: int
    account_id: str
    kind: str
    amount_fen: int
    idempotency_key: str
    trade_id: str | None
    created_by: str
    created_at: datetime


def ledger_entry(row: Row[Any]) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row.id,
        account_id=row.account_id,
        kind=row.kind,
        amount_fen=to_fen(row.amount),
        idempotency_key=row.idempotency_key,
        trade_id=row.trade_id,
        created_by=row.created_by,
        created_at=row.created_at,
    )


class AccountStore(StoreBase):
    async def _lock_account(self, s: DbSession, account_id: str) -> bool:
        """Take the account's admission lock for the rest of the transaction; False when it has no row yet.
        An UPDATE rather than SELECT ... FOR UPDATE: on MariaDB it locks the row, on SQLite it takes the write
        lock before anything is read (one writer), so the checks that follow see every earlier admission."""
        result = await s.execute(_LOCK_ACCOUNT, {"p_account": account_id})
        return bool(result.rowcount == 1)

    # --- cash ------------------------------------------------------------------------------------------

    async def ensure_account(self, account_id: str) -> None:
        """Create the account's row and its opening cash entry the first time the account is seen."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                exists = (
                    await s.execute(select(accounts.c.account_id).where(accounts.c.account_id == account_id))
                ).first()
        if exists is not None:
            return
        now = utcnow()
        try:
            async for attempt in self.db.transaction():
                async with attempt as s:
                    await self._create_row(s, account_id, now)
        except IntegrityError:
            pass  # created at the same moment by another request

    async def _cash(self, s: DbSession, account_id: str, today: date) -> Cash | None:
        """The account's cash, None when it has no row yet."""
        rows = (await s.execute(_CASH, {"p_account": account_id})).all()
        if not rows:
            return None
        # A buy without a cap (an open market buy admitted before caps were recorded, migration 0002) reserves
        # nothing: there is no price to reserve at (nor does the row of an account without open buys).
        open_buys = [OpenBuy(r.qty - r.filled_qty, to_fen(r.price_cap)) for r in rows if r.price_cap]
        return account_cash(to_fen(rows[0].balance), open_buys, today=today)

    async def _locked_cash(self, s: DbSession, account_id: str, today: date) -> Cash:
        """The cash of an account whose row this transaction has locked (so it exists)."""
        cash = await self._cash(s, account_id, today)
        if cash is None:
            raise AssertionError(f"account {account_id} vanished")
        return cash

    async def _create_row(self, s: DbSession, account_id: str, now: datetime) -> None:
        """The account's row and its opening cash entry. Its balance is the opening cash plus what the ledger already
        holds for it (an account whose orders predate the accounts table, migration 0002, can have fills booked
        before its row exists)."""
        earlier = (
            await s.execute(select(func.coalesce(func.sum(cash_ledger.c.amount), 0)).where(
                cash_ledger.c.account_id == account_id))
        ).scalar_one()  # fmt: skip
        opening = from_fen(self.opening_cash_fen)
        await s.execute(
            accounts.insert().values(account_id=account_id, admissions=0, created_at=now,
                                     balance=opening + Decimal(earlier))
        )  # fmt: skip
        await s.execute(
            cash_ledger.insert().values(
                account_id=account_id,
                kind=cashbook.OPENING,
                amount=opening,
                idempotency_key=cashbook.OPENING,
                trade_id=None,
                created_by=self.source,
                correlation_id=current_correlation_id(),
                created_at=now,
            )
        )

    async def _add_entry(self, s: DbSession, account_id: str, amount_fen: int, **entry: Any) -> int:
        """A ledger entry and, in the same transaction, the account's balance moved by its amount (the UPDATE takes
        the account's row lock until the commit, so concurrent entries add up one after the other). An account
        without a row yet (its orders predate the accounts table) gets it here, its balance counting this entry. Returns
        the entry's id."""
        amount = from_fen(amount_fen)
        inserted = await s.execute(cash_ledger.insert(), {"account_id": account_id, "amount": amount, **entry})
        moved = await s.execute(_MOVE_BALANCE, {"p_account": account_id, "p_amount": amount})
        if moved.rowcount != 1:
            await self._create_row(s, account_id, utcnow())
        key = inserted.inserted_primary_key
        assert key is not None
        return int(key[0])

    async def _add_entries(self, s: DbSession, rows: list[dict[str, Any]], moved_fen: dict[str, int]) -> None:
        """Ledger entries (rows as `_add_entry` inserts them) in one statement, and each account's balance moved by
        the sum of its entries (`moved_fen`), as `_add_entry` of each would leave them."""
        await s.execute(cash_ledger.insert(), rows)
        for account_id, amount_fen in sorted(moved_fen.items()):
            moved = await s.execute(_MOVE_BALANCE, {"p_account": account_id, "p_amount": from_fen(amount_fen)})
            if moved.rowcount != 1:
                await self._create_row(s, account_id, utcnow())  # its balance counts these entries

    async def ledger_sum(self, account_id: str) -> int:
        """The sum of the account's cash ledger, in fen (what its balance must equal; a check, not a hot path)."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                total = (
                    await s.execute(
                        select(func.sum(cash_ledger.c.amount)).where(cash_ledger.c.account_id == account_id)
                    )
                ).scalar_one()
        return 0 if total is None else to_fen(total)

    async def known_account(self, account_id: str) -> bool:
        """Whether the account has been seen: it has its row (an order, a cash movement, its owner looked at it)
        or orders (placed before the accounts table existed)."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(select(accounts.c.account_id).where(accounts.c.account_id == account_id))
                ).first()
                if row is None:
                    row = (
                        await s.execute(select(orders.c.order_id).where(orders.c.account_id == account_id).limit(1))
                    ).first()
        return row is not None

    async def cash(self, account_id: str, today: date) -> Cash:
        """The account's cash (opened with the paper opening cash the first time it is seen)."""
        for _ in range(2):
            async for attempt in self.db.transaction():
                async with attempt as s:
                    cash = await self._cash(s, account_id, today)
            if cash is not None:
                return cash
            await self.ensure_account(account_id)
        raise AssertionError(f"account {account_id} could not be created")

    async def find_entry(self, account_id: str, idempotency_key: str) -> LedgerEntry | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (
                    await s.execute(
                        select(cash_ledger).where(
                            cash_ledger.c.account_id == account_id, cash_ledger.c.idempotency_key == idempotency_key
                        )
                    )
                ).first()
        return None if row is None else ledger_entry(row)

    async def move_cash(
        self, account_id: str, kind: str, amount_fen: int, idempotency_key: str, *, created_by: str, today: date
    ) -> tuple[LedgerEntry, bool]:
        """Record a deposit (amount > 0) or a withdrawal (amount < 0) once per idempotency key: (the entry,
        whether it is new). Under the account's lock and before anything else, a used key raises EntryExists
        with the entry it made (a duplicate waiting behind the first copy is answered with it, not checked against
        the cash the copy took). A withdrawal may not take more than the available cash (AdmissionRefused), checked
        under the lock like an order's admission. Its `cash.moved` event goes to the outbox in the same transaction."""
        await self.ensure_account(account_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                if not await self._lock_account(s, account_id):
                    raise AssertionError(f"account {account_id} vanished")
                used = (
                    await s.execute(
                        select(cash_ledger).where(
                            cash_ledger.c.account_id == account_id, cash_ledger.c.idempotency_key == idempotency_key
                        )
                    )
                ).first()
                if used is not None:
                    raise EntryExists(ledger_entry(used))
                if amount_fen < 0:
                    refusal = withdrawal_refusal(-amount_fen, await self._locked_cash(s, account_id, today))
                    if refusal is not None:
                        raise AdmissionRefused.of(refusal)
                now = utcnow()
                entry_id = await self._add_entry(
                    s,
                    account_id,
                    amount_fen,
                    kind=kind,
                    idempotency_key=idempotency_key,
                    trade_id=None,
                    created_by=created_by[:128],
                    correlation_id=current_correlation_id(),
                    created_at=now,
                )
                moved = cash_event(entry_id, account_id, kind, amount_fen, now, source=self.source)
                await add_to_outbox(s, outbox, moved)
        entry = await self.find_entry(account_id, idempotency_key)
        assert entry is not None
        return entry, True

    async def ledger(self, account_id: str, limit: int = 100) -> list[LedgerEntry]:
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (
                    await s.execute(
                        select(cash_ledger)
                        .where(cash_ledger.c.account_id == account_id)
                        .order_by(cash_ledger.c.id.desc())
                        .limit(limit)
                    )
                ).all()
        return [ledger_entry(r) for r in rows]
