"""What admitting and filling an order costs execution's MariaDB (issue 13, "Straight order path and speed"), and
that the report is applied safely to the order as its admission recorded it: a report applied to a stale copy (the
order moved on meanwhile) is found out by the version check and applied to the order as the database has it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from services.execution.brokers.base import AlreadyBooked, BrokerReport, Fill
from services.execution.brokers.paper import PaperBroker, PaperQuote
from services.execution.brokers.paper_tables import paper_fills, paper_orders
from services.execution.events import exchange_date
from services.execution.store import MIGRATIONS, ExecutionStore, cash_ledger, outbox, trades
from shared.core.domain import OrderStatus, to_fen
from shared.platform.approval import OrderTerms
from shared.platform.db import Database
from shared.platform.observability import new_id
from tests.conftest import Backing

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(backing: Backing) -> AsyncIterator[ExecutionStore]:
    db = Database(backing.database_url().format(service=f"trips_{secrets.token_hex(4)}"))
    await db.connect()
    await db.migrate(MIGRATIONS)
    try:
        yield ExecutionStore(db, source="execution", opening_cash_fen=to_fen(Decimal("10000000")))
    finally:
        async with db.session() as s:
            await s.exec_driver_sql(f"DROP DATABASE `{db.url.database}`")
        await db.dispose()


def _buy(account_id: str) -> OrderTerms:
    return OrderTerms(client_order_id=f"c-{new_id()[:12]}", account_id=account_id, ts_code="600000.SH", side="buy",
                      order_type="limit", qty=1000, price=Decimal("10.00"))  # fmt: skip


def _filled(order_id: str) -> BrokerReport:
    fill = Fill(f"fill-{order_id}", 1000, Decimal("10.00"), datetime.now(UTC))
    return BrokerReport(status=OrderStatus.FILLED, fills=(fill,))


def _spent(store: ExecutionStore, before: dict[str, int]) -> dict[str, int]:
    after = store.db.operation_counts()
    return {op: after[op] - before[op] for op in after if after[op] != before[op]}


async def test_admitting_and_filling_an_order_is_two_transactions_of_six_statements_each(store: ExecutionStore) -> None:
    account = f"acct-{new_id()[:8]}"
    today = exchange_date(datetime.now(UTC))
    await store.create_order(_buy(account), new_id(), today=today)  # the account's row and opening cash made

    before = store.db.operation_counts()
    stored = await store.create_order(_buy(account), new_id(), today=today)
    # the account's lock (UPDATE), the look for the same client_order_id or decision, the cash (balance and open buys
    # in one SELECT), the order, its transition, its order.accepted event
    assert _spent(store, before) == {"statements": 6, "transactions": 1, "commits": 1}

    before = store.db.operation_counts()
    order_id = stored.order.order_id
    applied = await store.apply_report(order_id, _filled(order_id), known=stored)
    # the version-checked UPDATE of the order, its two transitions (one INSERT), its three events (one INSERT), the
    # trade, its cash entry and the account's balance: nothing read back
    assert _spent(store, before) == {"statements": 6, "transactions": 1, "commits": 1}

    assert applied.stored.order.status is OrderStatus.FILLED and applied.new_trades == 1
    assert await store.transitions(order_id) == [(None, "accepted"), ("accepted", "submitted"), ("submitted", "filled")]
    async with store.db.session() as s:
        published_in = (
            (
                await s.execute(
                    select(outbox.c.type)
                    .where(outbox.c.body.contains(order_id))
                    .order_by(outbox.c.created_at, outbox.c.id)
                )
            )
            .scalars()
            .all()
        )
    # the relay's order (created_at, then id) is the order they happened in
    assert published_in == ["order.accepted", "order.submitted", "trade.executed", "order.filled"]


class Quotes:
    """The paper broker's latest close: 10.00 for every code (limit-up 11.00)."""

    async def latest(self, ts_code: str, session: object = None) -> PaperQuote:
        return PaperQuote(last_close=Decimal("10.00"), suspended=False, limit_up=Decimal("11.00"))


async def test_the_paper_brokers_book_and_its_report_are_one_transaction(store: ExecutionStore) -> None:
    account = f"acct-{new_id()[:8]}"
    today = exchange_date(datetime.now(UTC))
    await store.create_order(_buy(account), new_id(), today=today)
    stored = await store.create_order(_buy(account), new_id(), today=today)
    order_id = stored.order.order_id
    broker = PaperBroker(store.db, Quotes(), fills="immediate")

    before = store.db.operation_counts()
    booking = await broker.book(stored.order, price_cap=Decimal("10.00"))
    assert _spent(store, before) == {}  # matching writes nothing
    applied = await store.apply_report(order_id, booking.report, known=stored, within=booking.write)
    # the report's 6 statements (as above) and the book's 2 (the paper order, its fill) in one transaction: one COMMIT
    # where the broker's own transaction made two (2 + 6 statements, 2 transactions)
    assert _spent(store, before) == {"statements": 8, "transactions": 1, "commits": 1}

    assert applied.stored.order.status is OrderStatus.FILLED and applied.new_trades == 1
    async with store.db.session() as s:
        [book] = (await s.execute(select(paper_orders).where(paper_orders.c.order_id == order_id))).all()
        [fill] = (await s.execute(select(paper_fills).where(paper_fills.c.order_id == order_id))).all()
        [trade] = (await s.execute(select(trades).where(trades.c.order_id == order_id))).all()
    assert book.status == "filled" and (fill.qty, fill.price) == (1000, Decimal("10.00"))
    assert (trade.trade_id, trade.qty, trade.price) == (fill.fill_id, 1000, Decimal("10.00"))


async def test_an_order_the_paper_book_has_already_is_not_booked_again_and_its_report_not_applied(
    store: ExecutionStore,
) -> None:
    account = f"acct-{new_id()[:8]}"
    stored = await store.create_order(_buy(account), new_id(), today=exchange_date(datetime.now(UTC)))
    order_id = stored.order.order_id
    broker = PaperBroker(store.db, Quotes(), fills="immediate")
    booking = await broker.book(stored.order, price_cap=Decimal("10.00"))
    cancelled = await broker.cancel(order_id)  # a cancel's tombstone reaches the book first
    assert cancelled.status is OrderStatus.CANCELLED

    with pytest.raises(AlreadyBooked):
        await store.apply_report(order_id, booking.report, known=stored, within=booking.write)

    # nothing of the report was written: the order as admitted, no fill, no trade; the book holds the tombstone
    assert await store.transitions(order_id) == [(None, "accepted")]
    assert (await store.get_order(order_id)).order.status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
    async with store.db.session() as s:
        assert (await s.execute(select(func.count()).where(trades.c.order_id == order_id))).scalar_one() == 0
        assert (await s.execute(select(func.count()).where(paper_fills.c.order_id == order_id))).scalar_one() == 0
        [book] = (await s.execute(select(paper_orders).where(paper_orders.c.order_id == order_id))).all()
    assert book.status == "cancelled"


async def test_a_report_applied_to_a_stale_copy_of_the_order_is_applied_to_the_order_as_it_stands(
    store: ExecutionStore,
) -> None:
    account = f"acct-{new_id()[:8]}"
    stored = await store.create_order(_buy(account), new_id(), today=exchange_date(datetime.now(UTC)))
    order_id = stored.order.order_id
    first = await store.apply_report(order_id, _filled(order_id))  # e.g. reconciliation, before the desk's own
    assert first.new_trades == 1

    again = await store.apply_report(order_id, _filled(order_id), known=stored)  # `stored` is version 1: stale

    assert again.new_trades == 0 and again.statuses == ()
    assert again.stored.order.status is OrderStatus.FILLED and again.stored.version == first.stored.version
    async with store.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(trades))).scalar_one() == 1
        assert (
            await s.execute(select(func.count()).where(cash_ledger.c.trade_id == f"fill-{order_id}"))
        ).scalar_one() == 1
        executed = (await s.execute(select(func.count()).where(outbox.c.type == "trade.executed"))).scalar_one()
    assert executed == 1
    assert await store.transitions(order_id) == [(None, "accepted"), ("accepted", "submitted"), ("submitted", "filled")]
