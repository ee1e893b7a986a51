"""Corporate actions in execution's store on the real MariaDB: the holders at the start of a session (the account's
own part and an instance's apart), an adjustment recorded once with its cash-in-lieu ledger entry and its event even
when three passes record it at once, and positions including it. Figures worked by hand: 400 shares held by the
account and 100 by an instance, ratio 2.105263 at a reference price of 4.75 (test_execution_replay's ex-date)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import date, datetime, time
from decimal import Decimal

import pytest

from services.execution.brokers.base import BrokerReport, Fill
from services.execution.corporate import ExDate, HolderPosition, plan_adjustments
from services.execution.events import EXCHANGE_TZ
from services.execution.positions import holdings
from services.execution.store import MIGRATIONS, ExecutionStore, outbox, position_adjustments
from shared.core.domain import OrderStatus
from shared.platform.approval import OrderTerms
from shared.platform.db import Database
from shared.platform.observability import new_id
from tests.conftest import Backing

pytestmark = pytest.mark.integration

BOUGHT, EX = date(2024, 3, 4), date(2024, 3, 5)
INSTANCE = "a" * 32


@pytest.fixture
async def store(backing: Backing) -> AsyncIterator[ExecutionStore]:
    db = Database(backing.database_url().format(service=f"adjust_{secrets.token_hex(4)}"))
    await db.connect()
    await db.migrate(MIGRATIONS)
    try:
        yield ExecutionStore(db, source="execution", opening_cash_fen=1_000_000_00)
    finally:
        async with db.session() as s:
            await s.exec_driver_sql(f"DROP DATABASE `{db.url.database}`")
        await db.dispose()


async def _bought(store: ExecutionStore, account_id: str, qty: int, instance: str | None = None) -> None:
    terms = OrderTerms(client_order_id=f"c-{new_id()[:12]}", account_id=account_id, ts_code="600030.SH", side="buy",
                       order_type="limit", qty=qty, price=Decimal("10.00"), strategy_instance_id=instance)  # fmt: skip
    stored = await store.create_order(terms, new_id(), today=BOUGHT)
    at = datetime.combine(BOUGHT, time(9, 30), EXCHANGE_TZ)
    fill = Fill(fill_id=f"f-{stored.order.order_id}", qty=qty, price=Decimal("10.00"), traded_at=at)
    await store.apply_report(stored.order.order_id, BrokerReport(status=OrderStatus.FILLED, fills=(fill,)))


async def test_an_adjustment_is_recorded_once_with_its_cash_and_event(store: ExecutionStore) -> None:
    account = f"acct-adj-{new_id()[:6]}"
    await _bought(store, account, 400)
    await _bought(store, account, 100, INSTANCE)
    assert await store.holders_before(BOUGHT) == []  # bought on that day: not held at its start
    holders = await store.holders_before(EX)
    assert holders == [
        HolderPosition(account, None, "600030.SH", 400),
        HolderPosition(account, INSTANCE, "600030.SH", 100),
    ]
    ledger_before = await store.ledger_sum(account)

    ex = {"600030.SH": ExDate("600030.SH", EX, Decimal("2.105263"), Decimal("1.000000"), 475)}
    planned = plan_adjustments(holders, ex)
    # 400 x 2.105263 = 842.1052 -> 842, 0.1052 x 4.75 -> 0.50; 100 -> 210.5263 -> 210, 0.5263 x 4.75 -> 2.50
    assert [(a.qty_after, a.cash_in_lieu_fen) for a in planned] == [(842, 50), (210, 250)]
    # three passes at once (two execution processes and a retry): each adjustment once
    outcomes = await asyncio.gather(*(store.record_adjustment(a) for a in planned for _ in range(3)))
    assert sorted(outcomes) == [False, False, False, False, True, True]

    assert await store.count(position_adjustments, account_id=account) == 2
    assert await store.count(outbox, type="position.adjusted") == 2
    assert await store.ledger_sum(account) - ledger_before == 300
    assert (await store.cash(account, EX)).balance_fen == await store.ledger_sum(account)
    lots, sells = await store.position_inputs(account, EX)
    held = holdings(lots, sells, today=EX)
    assert [(h.ts_code, h.qty, h.sellable_qty) for h in held] == [("600030.SH", 1052, 1052)]
    # the next session starts from the adjusted shares
    assert [h.qty for h in await store.holders_before(date(2024, 3, 6))] == [842, 210]
