"""An account's balance is kept on its row (accounts.balance_fen, migration 0005) by every transaction that adds a cash
ledger entry; the ledger stays the record. After many operations on two accounts — orders admitted and filled in two
parts, deposits, withdrawals, a repeated fill report and a repeated deposit — many of them at once on the same
account, on the real MariaDB, the balance equals the sum of the ledger and the figure worked out by hand. The
migration fills the balance of existing accounts from their ledgers (MariaDB and SQLite)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from services.execution import cash as cashbook
from services.execution.brokers.base import BrokerReport, Fill
from services.execution.events import exchange_date
from services.execution.store import MIGRATIONS, EntryExists, ExecutionStore
from shared.core.domain import OrderStatus
from shared.platform.approval import OrderTerms
from shared.platform.db import Database
from shared.platform.observability import new_id
from tests.conftest import Backing

pytestmark = pytest.mark.integration

OPENING_FEN = 1_000_000_00  # 1,000,000.00 CNY
# One buy of 100 shares at 10.00, filled as 60 + 40: each part pays its amount, the 5.00 minimum commission and the
# transfer fee (0.001%, to the fen): 600.00 + 5.00 + 0.01 and 400.00 + 5.00 + 0.00.
BUY_COST_FEN = (60_000 + 500 + 1) + (40_000 + 500 + 0)  # 101,001 fen = 1,010.01 CNY


@pytest.fixture
async def store(backing: Backing) -> AsyncIterator[ExecutionStore]:
    db = Database(backing.database_url().format(service=f"balance_{secrets.token_hex(4)}"))
    await db.connect()
    await db.migrate(MIGRATIONS)
    try:
        yield ExecutionStore(db, source="execution", opening_cash_fen=OPENING_FEN)
    finally:
        async with db.session() as s:
            await s.exec_driver_sql(f"DROP DATABASE `{db.url.database}`")
        await db.dispose()


async def _buy_filled_in_two_parts(store: ExecutionStore, account_id: str) -> None:
    terms = OrderTerms(client_order_id=f"c-{new_id()[:12]}", account_id=account_id, ts_code="600000.SH", side="buy",
                       order_type="limit", qty=100, price=Decimal("10.00"))  # fmt: skip
    stored = await store.create_order(terms, new_id(), today=exchange_date(datetime.now(UTC)))
    order_id = stored.order.order_id
    now = datetime.now(UTC)
    first = Fill(fill_id=f"f1-{order_id}", qty=60, price=Decimal("10.00"), traded_at=now)
    second = Fill(fill_id=f"f2-{order_id}", qty=40, price=Decimal("10.00"), traded_at=now)
    await store.apply_report(order_id, BrokerReport(status=OrderStatus.PARTIALLY_FILLED, fills=(first,)))
    report = BrokerReport(status=OrderStatus.FILLED, fills=(first, second))
    await asyncio.gather(
        store.apply_report(order_id, report), store.apply_report(order_id, report)
    )  # same report twice


async def _move(store: ExecutionStore, account_id: str, kind: str, amount_fen: int, key: str) -> None:
    signed = amount_fen if kind == cashbook.DEPOSIT else -amount_fen
    await store.move_cash(account_id, kind, signed, key, created_by="admin", today=date.today())


async def test_the_balance_equals_the_ledger_after_many_operations_at_once(store: ExecutionStore) -> None:
    accounts = [f"acct-bal-{i}-{new_id()[:6]}" for i in range(2)]
    for account_id in accounts:
        await store.ensure_account(account_id)

    async def work(account_id: str, worker: int) -> None:
        for round_ in range(3):
            await _buy_filled_in_two_parts(store, account_id)
            await _move(store, account_id, cashbook.DEPOSIT, 123_45, f"dep-{worker}-{round_}")
            await _move(store, account_id, cashbook.WITHDRAWAL, 50_00, f"wd-{worker}-{round_}")

    # four workers per account at once: 12 buys (24 fills), 12 deposits and 12 withdrawals an account
    await asyncio.gather(*(work(a, w) for a in accounts for w in range(4)))
    # a deposit sent again with its key changes nothing
    with pytest.raises(EntryExists):
        await _move(store, accounts[0], cashbook.DEPOSIT, 123_45, "dep-0-0")

    expected = OPENING_FEN - 12 * BUY_COST_FEN + 12 * 123_45 - 12 * 50_00  # 98,876,128 fen = 988,761.28 CNY
    assert expected == 98_876_128
    for account_id in accounts:
        cash = await store.cash(account_id, date.today())
        assert cash.balance_fen == expected
        assert await store.ledger_sum(account_id) == expected
        assert cash.reserved_fen == 0  # every buy filled


async def _alembic(db: Database, target: str) -> None:
    def run(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, target)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def _check_backfill(db: Database) -> None:
    await db.connect()
    try:
        await _alembic(db, "0003")
        at = datetime(2025, 1, 2, 2, 0)
        async with db.session() as s:
            for account_id in ("acct-a", "acct-b", "acct-empty"):
                await s.execute(
                    text("INSERT INTO accounts (account_id, admissions, created_at) VALUES (:a, 0, :at)"),
                    {"a": account_id, "at": at},
                )
            # acct-a: opening 1,000.00, a buy fill of -500.25, a deposit of 20.00; acct-b: opening 50.00 only
            for account_id, key, amount in (
                ("acct-a", "opening", 100_000), ("acct-a", "trade:t1", -50_025), ("acct-a", "dep-1", 2_000),
                ("acct-b", "opening", 5_000),
            ):  # fmt: skip
                await s.execute(
                    text(
                        "INSERT INTO cash_ledger (account_id, kind, amount_fen, idempotency_key, created_by,"
                        " created_at) VALUES (:a, 'deposit', :amount, :key, 'test', :at)"
                    ),
                    {"a": account_id, "amount": amount, "key": key, "at": at},
                )
        await _alembic(db, "head")
        async with db.session() as s:
            balances = dict((await s.execute(text("SELECT account_id, balance_fen FROM accounts"))).all())
        assert balances == {"acct-a": 51_975, "acct-b": 5_000, "acct-empty": 0}
        store = ExecutionStore(db, opening_cash_fen=OPENING_FEN)
        assert (await store.cash("acct-a", date(2025, 1, 2))).balance_fen == 51_975
    finally:
        await db.dispose()


async def test_the_migration_fills_the_balance_from_the_ledger_on_mariadb(backing: Backing) -> None:
    url = backing.database_url(f"bal{new_id()[:8].lower()}").format(service="execution")
    await _check_backfill(Database(url))


async def test_the_migration_fills_the_balance_from_the_ledger_on_sqlite(tmp_path: Path) -> None:
    await _check_backfill(Database(f"sqlite+aiosqlite:///{tmp_path}/execution.db"))


async def test_a_fill_of_an_account_without_a_row_keeps_its_balance_equal_to_its_ledger(store: ExecutionStore) -> None:
    account_id = f"acct-legacy-{new_id()[:6]}"
    terms = OrderTerms(client_order_id=f"c-{new_id()[:12]}", account_id=account_id, ts_code="600000.SH", side="buy",
                       order_type="limit", qty=100, price=Decimal("10.00"))  # fmt: skip
    stored = await store.create_order(terms, new_id(), today=exchange_date(datetime.now(UTC)))
    # as an account whose orders predate the accounts table (migration 0002): no row, no opening entry
    async with store.db.session() as s:
        await s.execute(text("DELETE FROM cash_ledger WHERE account_id = :a"), {"a": account_id})
        await s.execute(text("DELETE FROM accounts WHERE account_id = :a"), {"a": account_id})
    now = datetime.now(UTC)
    fills = (
        Fill(fill_id=f"f1-{stored.order.order_id}", qty=60, price=Decimal("10.00"), traded_at=now),
        Fill(fill_id=f"f2-{stored.order.order_id}", qty=40, price=Decimal("10.00"), traded_at=now),
    )
    await store.apply_report(stored.order.order_id, BrokerReport(status=OrderStatus.FILLED, fills=fills))
    # the fill gave the account its row: the opening cash, less what the buy cost (1,010.01 CNY)
    async with store.db.session() as s:
        row = (await s.execute(text("SELECT balance_fen FROM accounts WHERE account_id = :a"), {"a": account_id})).one()
    assert row.balance_fen == OPENING_FEN - BUY_COST_FEN
    cash = await store.cash(account_id, date.today())
    assert cash.balance_fen == OPENING_FEN - BUY_COST_FEN == await store.ledger_sum(account_id)
