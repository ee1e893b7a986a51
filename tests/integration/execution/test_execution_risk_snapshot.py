"""Execution's snapshot for risk's hot book (`GET /v1/risk-snapshot`) on the real MariaDB: after buys over two
sessions (one at the previous session's 15:00 close, one a microsecond after it), an old buy outside the 7-day window,
a corporate action (the account's own part and an instance's), a filled sell, a resting sell, a partly filled buy, a
deposit and a withdrawal, the snapshot's shares give execution's own sellable shares for the session of an order
placed now, and its balance less its open buys' reservations gives execution's available cash — each worked by hand
too. Who may read it, and the `cash.moved` events and the `order.*` events' cap and session in the outbox."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from services.execution.brokers.base import BrokerReport, Fill
from services.execution.brokers.paper_tables import paper_fills, paper_orders
from services.execution.corporate import ExDate, HolderPosition, plan_adjustments
from services.execution.snapshot import WINDOW, risk_snapshot
from services.execution.store import MIGRATIONS, ExecutionStore, cash_ledger, orders, outbox, trades
from shared.core.domain import OrderStatus, from_fen, to_fen
from shared.core.market.orders import buy_cost
from shared.platform.approval import OrderTerms
from shared.platform.clock import fill_session
from shared.platform.db import Database
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import Fleet, fleet, limit_buy, settle, signed_order, trader
from tests.support.positions import held as shares_held

pytestmark = pytest.mark.integration

ADMIN = Principal("root", "admin", "acct-root")
RISK = Principal("svc:risk", "service")
CODE = "600000.SH"
INSTANCE = "a" * 32
SESSION, PREVIOUS = date(2024, 3, 5), date(2024, 3, 4)  # a Tuesday and the Monday before it
NOW = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai on 2024-03-05: an order placed now is for it
CLOSE = datetime(2024, 3, 4, 7, 0, tzinfo=UTC)  # 2024-03-04 15:00 in Shanghai
LONG_AGO = datetime(2024, 2, 20, 2, 0, tzinfo=UTC)  # outside the window (NOW - 7 days = 2024-02-27)


async def _submit(f: Fleet, principal: Principal, terms: OrderTerms) -> dict[str, Any]:
    response = await f.execution.post("/v1/orders", json=signed_order(f.settings, terms), headers=f.headers(principal))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _bought(f: Fleet, who: Principal, qty: int, at: datetime, *, created: datetime | None = None) -> str:
    order = await _submit(f, who, limit_buy(who, qty=qty))
    assert order["status"] == "filled"
    async with f.store.db.session() as s:
        moved: dict[str, Any] = {"traded_at": at}
        if created is not None:
            moved["created_at"] = created
            await s.execute(
                update(orders)
                .where(orders.c.order_id == order["order_id"])
                .values(created_at=created, updated_at=created)
            )
        await s.execute(update(trades).where(trades.c.order_id == order["order_id"]).values(**moved))
    return str(order["order_id"])


async def _partly_fill(f: Fleet, order_id: str, qty: int, price: str, at: datetime) -> None:
    async with f.store.db.session() as s:
        await s.execute(
            paper_fills.insert().values(
                fill_id=f"paper-{order_id}-1", order_id=order_id, qty=qty, price=Decimal(price), traded_at=at
            )
        )
        await s.execute(
            update(paper_orders)
            .where(paper_orders.c.order_id == order_id)
            .values(status=OrderStatus.PARTIALLY_FILLED.value)
        )
    report = await f.execution_app.state.broker.report(order_id)
    await f.store.apply_report(order_id, report, now=NOW)


async def _outbox(f: Fleet, event_type: str) -> list[dict[str, Any]]:
    async with f.store.db.session() as s:
        bodies = (await s.execute(select(outbox.c.body).where(outbox.c.type == event_type))).scalars().all()
    return [json.loads(b)["payload"] for b in bodies]


async def test_the_snapshot_gives_executions_sellable_shares_and_available_cash(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "100000")
    settings = backing.settings()
    tia = trader()
    async with fleet(settings) as f:
        f.execution_app.state.desk.clock = lambda: NOW
        f.execution_app.state.broker.clock = lambda: NOW
        f.data.clock = lambda: NOW

        # Buys at 10.00: 100 long ago (1,000.00 + 5.00 + 0.01), 1,000 on 2024-03-04 at 10:00 (10,000.00 + 5.00 + 0.10),
        # 500 at its 15:00 close (5,000.00 + 5.00 + 0.05: that session's), 300 a microsecond after it (3,000.00 + 5.00
        # + 0.03: 2024-03-05's, not sellable in it).
        await _bought(f, tia, 100, LONG_AGO, created=LONG_AGO)
        await _bought(f, tia, 1000, datetime(2024, 3, 4, 2, 0, tzinfo=UTC))
        await _bought(f, tia, 500, CLOSE)
        await _bought(f, tia, 300, CLOSE + timedelta(microseconds=1))

        # 2024-03-05 goes ex at 2.105263 (reference price 4.75): the account's own 1,600 shares held at the session's
        # start become 3,368 (3,368.4208; 0.4208 x 4.75 = 2.00 in cash), an instance's 100 become 210 (+2.50).
        holders = [
            HolderPosition(tia.account_id, None, CODE, 1600),
            HolderPosition(tia.account_id, INSTANCE, CODE, 100),
        ]
        ex = {CODE: ExDate(CODE, SESSION, Decimal("2.105263"), Decimal("1.000000"), 475)}
        planned = plan_adjustments(holders, ex)
        assert [(a.qty_after, a.cash_in_lieu_fen) for a in planned] == [(3368, 200), (210, 250)]
        for adjustment in planned:
            assert await f.store.record_adjustment(adjustment)

        # A sell of 400 fills at 10.00 (4,000.00 - 5.00 - stamp duty 2.00 - 0.04), one of 200 at 10.50 rests; a buy of
        # 1,000 at 9.50 rests and 300 of it fill at 9.50 at 11:00 (2,850.00 + 5.00 + 0.03).
        sold = await _submit(f, tia, limit_buy(tia, side="sell", qty=400))
        assert sold["status"] == "filled"
        resting_sell = await _submit(f, tia, limit_buy(tia, side="sell", qty=200, price="10.50"))
        assert resting_sell["status"] == "submitted"
        partly = await _submit(f, tia, limit_buy(tia, price="9.50"))
        assert partly["status"] == "submitted"
        await _partly_fill(f, partly["order_id"], 300, "9.50", datetime(2024, 3, 5, 3, 0, tzinfo=UTC))

        for kind, amount, key in (("deposit", "5000.00", "d1"), ("withdrawal", "1234.56", "w1")):
            body = {"account_id": tia.account_id, "kind": kind, "amount": amount, "idempotency_key": key}
            moved = await f.execution.post("/v1/account/cash", json=body, headers=f.headers(ADMIN))
            assert moved.status_code == 201, moved.text

        answer = await f.execution.get(f"/v1/risk-snapshot?account_id={tia.account_id}", headers=f.headers(RISK))
        assert answer.status_code == 200, answer.text
        snap = answer.json()
        positions = shares_held((await f.execution.get("/v1/positions", headers=f.headers(tia))).json())
        account = (await f.execution.get("/v1/account", headers=f.headers(tia))).json()

        # By hand: 100,000.00 - 1,005.01 - 10,005.10 - 5,005.05 - 3,005.03 + 2.00 + 2.50 + 3,992.96 - 2,855.03
        # + 5,000.00 - 1,234.56 = 85,887.68; the partly filled buy reserves 700 x 9.50 = 6,650.00 + 5.00 + 0.07.
        assert snap["balance_fen"] == 85_887_68
        assert (account["balance"], account["reserved"], account["available"]) == ("85887.68", "6655.07", "79232.61")
        # base: the old 100 + the adjustments' 1,768 + 110 - the 400 sold; the window's buys by session.
        assert snap["lots"] == [
            {"ts_code": CODE, "base": 1578, "bought_by_session": {"2024-03-04": 1500, "2024-03-05": 600}}
        ]
        # Held 3,678; sellable now: 1,600 bought before the session + 1,878 adjusted - 400 sold - 200 resting = 2,878.
        assert positions == [{"ts_code": CODE, "qty": 3678, "sellable_qty": 2878}]

        # The second method: the book's arithmetic on the snapshot gives execution's own figures.
        lots = snap["lots"][0]
        open_orders = [o for o in snap["orders"] if not OrderStatus(o["status"]).is_final]
        selling = sum(o["qty"] - o["traded_qty"] for o in open_orders if o["side"] == "sell")
        before = sum(q for d, q in lots["bought_by_session"].items() if date.fromisoformat(d) < SESSION)
        held = lots["base"] + sum(lots["bought_by_session"].values())
        assert [{"ts_code": CODE, "qty": held, "sellable_qty": lots["base"] + before - selling}] == positions
        reserved = sum(
            to_fen(buy_cost(o["qty"] - o["traded_qty"], from_fen(o["cap_fen"]), SESSION))
            for o in open_orders
            if o["side"] == "buy"
        )
        assert str(from_fen(snap["balance_fen"] - reserved)) == account["available"]

        # The orders (all placed at the same moment: in no particular order): every open one and those final within the
        # window (not the old buy); the partly filled buy's traded shares; the ids the snapshot counts.
        listed = [
            (o["side"], o["qty"], o["status"], o["filled_qty"], o["traded_qty"], o["cap_fen"]) for o in snap["orders"]
        ]
        assert sorted(listed) == sorted([
            ("buy", 1000, "filled", 1000, 1000, 10_00),
            ("buy", 500, "filled", 500, 500, 10_00),
            ("buy", 300, "filled", 300, 300, 10_00),
            ("sell", 400, "filled", 400, 400, 0),
            ("sell", 200, "submitted", 0, 0, 0),
            ("buy", 1000, "partially_filled", 300, 300, 9_50),
        ])  # fmt: skip
        async with f.store.db.session() as s:
            recent_trades = (
                (
                    await s.execute(
                        select(trades.c.trade_id).where(
                            trades.c.account_id == tia.account_id, trades.c.traded_at > LONG_AGO
                        )
                    )
                )
                .scalars()
                .all()
            )
            movements = (
                await s.execute(
                    select(cash_ledger.c.id, cash_ledger.c.amount)
                    .where(
                        cash_ledger.c.account_id == tia.account_id, cash_ledger.c.kind.in_(["deposit", "withdrawal"])
                    )
                    .order_by(cash_ledger.c.id)
                )
            ).all()
        assert len(recent_trades) == 5 and snap["trade_ids"] == sorted(recent_trades)
        assert sorted(snap["entry_keys"]) == sorted(
            [f"adjust:-:{CODE}:2024-03-05", f"adjust:{INSTANCE}:{CODE}:2024-03-05", *(str(m.id) for m in movements)]
        )

        # The deposit and the withdrawal each left a `cash.moved` in the outbox, with its entry id.
        cash_events = [p for p in await _outbox(f, "cash.moved") if p["account_id"] == tia.account_id]
        assert sorted((p["entry_id"], p["amount"], p["kind"]) for p in cash_events) == sorted(
            [(str(movements[0].id), "5000.00", "deposit"), (str(movements[1].id), "-1234.56", "withdrawal")]
        )
        # The order events carry a buy's cap, and `order.accepted` the session the order is for.
        of_partly = [
            p
            for t in ("order.accepted", "order.submitted", "order.partially_filled")
            for p in await _outbox(f, t)
            if p["order_id"] == partly["order_id"]
        ]
        assert [(p["status"], p["price_cap"], p["session"]) for p in of_partly] == [
            ("accepted", "9.50", "2024-03-05"),
            ("submitted", "9.50", None),
            ("partially_filled", "9.50", None),
        ]
        sell_accepted = [p for p in await _outbox(f, "order.accepted") if p["order_id"] == resting_sell["order_id"]]
        assert [(p["price_cap"], p["session"]) for p in sell_accepted] == [(None, "2024-03-05")]
        await settle(f)


async def test_only_risk_reads_the_snapshot_of_an_account_it_has_seen(backing: Backing) -> None:
    settings = backing.settings()
    uma = trader()
    async with fleet(settings) as f:
        assert (await f.execution.get("/v1/account", headers=f.headers(uma))).status_code == 200  # opens it
        url = f"/v1/risk-snapshot?account_id={uma.account_id}"
        for who in (uma, ADMIN, Principal("svc:strategy", "service")):
            refused = await f.execution.get(url, headers=f.headers(who))
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden", who
        unknown = await f.execution.get("/v1/risk-snapshot?account_id=acct-nobody-here", headers=f.headers(RISK))
        assert unknown.status_code == 404 and unknown.json()["code"] == "account_not_found"
        missing = await f.execution.get("/v1/risk-snapshot", headers=f.headers(RISK))
        assert missing.status_code == 422

        fresh = (await f.execution.get(url, headers=f.headers(RISK))).json()
        assert {k: v for k, v in fresh.items() if k not in ("as_of", "since")} == {
            "account_id": uma.account_id,
            "balance_fen": 10_000_000_00,  # the default opening cash, 10,000,000.00
            "orders": [],
            "lots": [],
            "trade_ids": [],
            "entry_keys": [],
        }
        as_of = datetime.fromisoformat(fresh["as_of"])
        assert as_of - datetime.fromisoformat(fresh["since"]) == timedelta(days=7)
        await settle(f)


async def test_the_snapshot_reads_on_sqlite_as_standalone_mode_has_them(tmp_path: Path) -> None:
    """The store's reads on SQLite (standalone mode: no REPEATABLE READ statement there, one writer): a buy of 100
    long ago in `base`, a buy of 200 in the window by its session (by calendar date: no calendar), a deposit's id."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/execution.db")
    await db.connect()
    await db.migrate(MIGRATIONS)
    store = ExecutionStore(db, source="execution", opening_cash_fen=1_000_000)
    try:
        for qty, at in ((100, LONG_AGO), (200, NOW)):
            terms = OrderTerms(client_order_id=f"c-{qty}", account_id="acct-solo", ts_code=CODE, side="buy",
                               order_type="limit", qty=qty, price=Decimal("10.00"))  # fmt: skip
            stored = await store.create_order(terms, new_id(), today=at.date(), now=at)
            fill = Fill(fill_id=f"f-{qty}", qty=qty, price=Decimal("10.00"), traded_at=at)
            await store.apply_report(stored.order.order_id, BrokerReport(status=OrderStatus.FILLED, fills=(fill,)),
                                     now=at)  # fmt: skip
        entry, _ = await store.move_cash("acct-solo", "deposit", 500_00, "d1", created_by="root", today=SESSION)
        rows = await store.snapshot_rows("acct-solo", NOW - WINDOW)
        assert rows is not None
        snap = risk_snapshot("acct-solo", NOW, NOW - WINDOW, rows, lambda at: fill_session(at, None))
        # 10,000.00 - (1,000.00 + 5.00 + 0.01) - (2,000.00 + 5.00 + 0.02) + 500.00 = 7,489.97
        assert snap.balance_fen == 7_489_97
        assert [(lot.base, lot.bought_by_session) for lot in snap.lots] == [(100, {SESSION: 200})]
        assert [(o.qty, o.traded_qty) for o in snap.orders] == [(200, 200)]
        assert (snap.trade_ids, snap.entry_keys) == (["f-200"], [str(entry.entry_id)])
        assert await store.snapshot_rows("acct-nobody", NOW - WINDOW) is None
    finally:
        await db.dispose()


async def test_each_snapshot_taken_while_orders_fill_agrees_with_itself(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshots read while buys fill: each one's balance, shares and orders are of one moment (one transaction), so
    that the balance is the opening cash less 1,005.01 (100 x 10.00 + 5.00 + 0.01) for each buy its orders and lots
    count as traded, and its lots hold exactly its orders' traded shares."""
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "100000")
    settings = backing.settings()
    vic = trader()
    async with fleet(settings) as f:
        f.execution_app.state.desk.clock = lambda: NOW
        f.execution_app.state.broker.clock = lambda: NOW
        f.data.clock = lambda: NOW
        url = f"/v1/risk-snapshot?account_id={vic.account_id}"
        await _submit(f, vic, limit_buy(vic, qty=100))  # the account exists before the first read
        done = asyncio.Event()
        taken: list[dict[str, Any]] = []

        async def read() -> None:
            while not done.is_set():
                answer = await f.execution.get(url, headers=f.headers(RISK))
                assert answer.status_code == 200, answer.text
                taken.append(answer.json())

        async def buy() -> None:
            try:
                await asyncio.gather(*(_submit(f, vic, limit_buy(vic, qty=100)) for _ in range(12)))
            finally:
                done.set()

        await asyncio.gather(read(), read(), buy())
        taken.append((await f.execution.get(url, headers=f.headers(RISK))).json())
        for snap in taken:
            traded = sum(o["traded_qty"] for o in snap["orders"])
            assert sum(sum(lot["bought_by_session"].values()) + lot["base"] for lot in snap["lots"]) == traded
            assert snap["balance_fen"] == 100_000_00 - traded // 100 * 1005_01
            assert len(snap["trade_ids"]) == traded // 100
        assert sum(o["traded_qty"] for o in taken[-1]["orders"]) == 1300
        await settle(f)
