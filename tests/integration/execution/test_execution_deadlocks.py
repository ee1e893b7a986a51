"""Issue 10 #9 on the real MariaDB: a deadlock on the outbox insert of `apply_report` (the broker has already filled
the order) is retried, so the fill is recorded once and the caller sees no error; and many traders placing and
filling orders at once all get their fills recorded exactly once."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, select, text, update

from services.execution.brokers.base import BrokerReport, Fill
from services.execution.events import exchange_date
from services.execution.store import MIGRATIONS, ExecutionStore, cash_ledger, orders, outbox, trades
from services.execution.store import transitions as execution_store
from shared.core.domain import OrderStatus, to_fen
from shared.platform.approval import OrderTerms
from shared.platform.db import Database
from shared.platform.events import Envelope
from shared.platform.observability import new_id
from tests.conftest import Backing

pytestmark = pytest.mark.integration

ballast = Table("test_ballast", MetaData(), Column("id", Integer, primary_key=True, autoincrement=True))


@pytest.fixture
async def store(backing: Backing) -> AsyncIterator[ExecutionStore]:
    db = Database(backing.database_url().format(service=f"deadlock_{secrets.token_hex(4)}"))
    await db.connect()
    await db.migrate(MIGRATIONS)
    async with db.session() as s:
        await s.run_sync(ballast.metadata.create_all)
    try:
        yield ExecutionStore(db, source="execution", opening_cash_fen=to_fen(Decimal("10000000")))
    finally:
        async with db.session() as s:
            await s.exec_driver_sql(f"DROP DATABASE `{db.url.database}`")
        await db.dispose()


def _buy(account_id: str, qty: int = 1000) -> OrderTerms:
    return OrderTerms(client_order_id=f"c-{new_id()[:12]}", account_id=account_id, ts_code="600000.SH", side="buy",
                      order_type="limit", qty=qty, price=Decimal("10.00"))  # fmt: skip


async def _place(store: ExecutionStore, terms: OrderTerms) -> str:
    stored = await store.create_order(terms, new_id(), today=exchange_date(datetime.now(UTC)))
    return stored.order.order_id


def _filled(order_id: str, qty: int = 1000) -> BrokerReport:
    fill = Fill(fill_id=f"fill-{order_id}", qty=qty, price=Decimal("10.00"), traded_at=datetime.now(UTC))
    return BrokerReport(status=OrderStatus.FILLED, fills=(fill,))


async def _count(store: ExecutionStore, table: Table, *where: Any) -> int:
    async with store.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


async def test_a_deadlock_on_the_outbox_insert_of_a_fill_is_retried_and_the_fill_recorded_once(
    store: ExecutionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = await _place(store, _buy(f"acct-{new_id()[:8]}"))
    holds_order, holds_outbox = asyncio.Event(), asyncio.Event()
    real_add_many_to_outbox = execution_store.add_many_to_outbox
    calls = 0

    async def add_many_to_outbox(session: Any, table: Table, events: list[Envelope]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            holds_order.set()  # apply_report has updated (locked) the order row
            await holds_outbox.wait()
        await real_add_many_to_outbox(session, table, events)

    async def other_writer() -> None:
        """A larger transaction that locks the outbox, then asks for the order row: the two wait for each other,
        and InnoDB rolls back the smaller one, apply_report's (1213 on its outbox insert, as in the issue)."""
        await holds_order.wait()
        async with store.db.engine.connect() as conn, conn.begin():
            await conn.execute(ballast.insert(), [{} for _ in range(300)])
            await conn.execute(select(outbox.c.id).with_for_update())
            holds_outbox.set()
            await conn.execute(update(orders).where(orders.c.order_id == order_id).values(reason=orders.c.reason))

    monkeypatch.setattr(execution_store, "add_many_to_outbox", add_many_to_outbox)
    applied, _ = await asyncio.gather(store.apply_report(order_id, _filled(order_id)), other_writer())

    assert store.db.retries.labels("deadlock")._value.get() == 1  # it was a real deadlock, retried once
    assert applied.new_trades == 1 and applied.stored.order.status is OrderStatus.FILLED
    assert await _count(store, trades, trades.c.order_id == order_id) == 1
    assert await _count(store, cash_ledger, cash_ledger.c.trade_id == f"fill-{order_id}") == 1
    async with store.db.session() as s:
        bodies = (await s.execute(select(outbox.c.body).where(outbox.c.type == "trade.executed"))).scalars().all()
    assert [order_id in body for body in bodies] == [True]
    # Applying the same report again (the desk or reconciliation repeating it) changes nothing.
    again = await store.apply_report(order_id, _filled(order_id))
    assert again.new_trades == 0
    assert await _count(store, trades, trades.c.order_id == order_id) == 1


async def test_fifty_traders_placing_and_filling_at_once_get_every_fill_recorded_exactly_once(
    store: ExecutionStore,
) -> None:
    accounts = [f"acct-{i:02d}-{new_id()[:6]}" for i in range(50)]

    async def trade(account_id: str) -> list[str]:
        order_ids = []
        for _ in range(4):
            order_id = await _place(store, _buy(account_id, qty=100))
            applied = await store.apply_report(order_id, _filled(order_id, qty=100))
            assert applied.new_trades == 1
            order_ids.append(order_id)
        return order_ids

    placed = await asyncio.gather(*(trade(a) for a in accounts))  # an error anywhere fails the test here

    order_ids = [o for per_account in placed for o in per_account]
    assert len(set(order_ids)) == 200
    async with store.db.session() as s:
        traded = (await s.execute(select(trades.c.order_id))).scalars().all()
        fills_in_ledger = await s.execute(select(cash_ledger.c.trade_id).where(cash_ledger.c.trade_id.is_not(None)))
        trade_events = await s.execute(text("SELECT COUNT(*) FROM outbox WHERE type = 'trade.executed'"))
        assert sorted(traded) == sorted(order_ids)  # one trade per order, none twice
        assert sorted(fills_in_ledger.scalars().all()) == sorted(f"fill-{o}" for o in order_ids)
        assert trade_events.scalar_one() == 200
