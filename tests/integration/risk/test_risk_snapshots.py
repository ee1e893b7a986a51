"""Risk's client of execution's snapshot (services/risk/state/snapshots.py) against a real execution app on MariaDB:
the snapshot of an account with a buy of each of two sessions, a resting sell, a resting buy and a deposit, read as
the port's BookSnapshot; a book seeded from it answers execution's own positions and available cash (the second
method), and does not count again a trade or a deposit it holds when their events arrive after the seed; an account
execution never saw is None; execution out of reach is SnapshotUnavailable."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from services.execution.store import outbox, trades
from services.risk.state.memory_book import MemoryHotBook
from services.risk.state.ports import CashEvent, HoldingView, TradeEvent
from services.risk.state.snapshots import BookEvents, ExecutionSnapshots, SnapshotUnavailable
from shared.core.domain import OrderSide, from_fen
from shared.platform.calendar import OrderSessions
from shared.platform.events import Envelope
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import Principal
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import Fleet, fleet, limit_buy, settle, signed_order, trader
from tests.support.positions import held

pytestmark = pytest.mark.integration

ADMIN = Principal("root", "admin", "acct-root")
SESSION = date(2024, 3, 5)
NOW = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai on 2024-03-05, a Tuesday


async def _submit(f: Fleet, who: Principal, **kw: Any) -> dict[str, Any]:
    terms = limit_buy(who, **kw)
    response = await f.execution.post("/v1/orders", json=signed_order(f.settings, terms), headers=f.headers(who))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _events(f: Fleet, account_id: str) -> list[Envelope]:
    async with f.store.db.session() as s:
        bodies = (await s.execute(select(outbox.c.body))).scalars().all()
    envelopes = [Envelope.model_validate(json.loads(b)) for b in bodies]
    return [e for e in envelopes if e.payload.get("account_id") == account_id]


async def test_risks_client_reads_executions_snapshot_and_a_book_seeded_from_it_answers_as_execution(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "50000")
    settings = backing.settings()
    ivy = trader()
    async with fleet(settings) as f:
        f.execution_app.state.desk.clock = lambda: NOW
        f.execution_app.state.broker.clock = lambda: NOW
        f.data.clock = lambda: NOW
        client = ExecutionSnapshots(ServiceDirectory(settings, {"execution": f.execution_transport}),
                                    settings.internal_secret)  # fmt: skip
        assert await client.snapshot(ivy.account_id) is None  # never seen

        # 1,000 bought on 2024-03-04 (10,005.10 with fees), 200 today (2,000.00 + 5.00 + 0.02); a sell of 300 at
        # 10.50 and a buy of 100 at 9.50 rest (950.00 + 5.00 + 0.01 reserved); 1,000.00 deposited.
        first = await _submit(f, ivy)
        async with f.store.db.session() as s:
            await s.execute(
                update(trades)
                .where(trades.c.order_id == first["order_id"])
                .values(traded_at=datetime(2024, 3, 4, 2, 0, tzinfo=UTC))
            )
        assert (await _submit(f, ivy, qty=200))["status"] == "filled"
        assert (await _submit(f, ivy, side="sell", qty=300, price="10.50"))["status"] == "submitted"
        assert (await _submit(f, ivy, qty=100, price="9.50"))["status"] == "submitted"
        body = {"account_id": ivy.account_id, "kind": "deposit", "amount": "1000.00", "idempotency_key": "d1"}
        assert (await f.execution.post("/v1/account/cash", json=body, headers=f.headers(ADMIN))).status_code == 201

        snapshot = await client.snapshot(ivy.account_id)
        assert snapshot is not None and snapshot.account_id == ivy.account_id
        # 50,000.00 - 10,005.10 - 2,005.02 + 1,000.00 = 38,989.88
        assert snapshot.balance_fen == 38_989_88
        assert [(lot.ts_code, lot.base, dict(lot.bought_by_session)) for lot in snapshot.lots] == [
            ("600000.SH", 0, {date(2024, 3, 4): 1000, SESSION: 200})
        ]
        assert len(snapshot.orders) == 4 and len(snapshot.trade_ids) == 2 and len(snapshot.entry_keys) == 1

        book = MemoryHotBook()
        await book.seed(snapshot, keep_decided_since=NOW)
        view = await book.view(ivy.account_id, SESSION)
        assert view is not None
        positions = held((await f.execution.get("/v1/positions", headers=f.headers(ivy))).json())
        account = (await f.execution.get("/v1/account", headers=f.headers(ivy))).json()
        # held 1,200; sellable 1,000 - 300 resting = 700; available 38,989.88 - 955.01 = 38,034.87
        assert positions == [{"ts_code": "600000.SH", "qty": 1200, "sellable_qty": 700}]
        assert dict(view.holdings) == {"600000.SH": HoldingView("600000.SH", 1200, 700)}
        assert account["available"] == "38034.87" == str(from_fen(view.available_fen))

        # Their events, arriving after the seed, change nothing: the snapshot counted them. The trades' sessions come
        # from the calendar risk reads (the fake data service's), as the desk keeps it.
        to_event = BookEvents(OrderSessions(f.execution_app.state.desk.calendar))
        converted = [await to_event(e) for e in await _events(f, ivy.account_id)]
        trades_and_cash = [e for e in converted if isinstance(e, TradeEvent | CashEvent)]
        assert sorted(type(e).__name__ for e in trades_and_cash) == ["CashEvent", "TradeEvent", "TradeEvent"]
        assert {e.trade_id for e in trades_and_cash if isinstance(e, TradeEvent)} == snapshot.trade_ids
        for event in trades_and_cash:
            assert await book.apply(event) is False
        # today's buy counts in the session the snapshot grouped it under (the other trade was moved back in the table
        # after its event was made)
        today = [e for e in trades_and_cash if isinstance(e, TradeEvent) and e.qty == 200]
        assert [(e.side, e.session) for e in today] == [(OrderSide.BUY, SESSION)]
        after = await book.view(ivy.account_id, SESSION)
        assert after is not None and (after.available_fen, after.balance_fen) == (38_034_87, 38_989_88)

        # Execution out of reach, or answering an error: unavailable, not "no account".
        f.execution_transport.down = True
        with pytest.raises(SnapshotUnavailable, match="execution_unavailable"):
            await client.snapshot(ivy.account_id)
        f.execution_transport.down = False
        wrong_secret = ExecutionSnapshots(
            ServiceDirectory(settings, {"execution": f.execution_transport}), "wrong-" + "x" * 40
        )
        with pytest.raises(SnapshotUnavailable, match="unauthenticated"):
            await wrong_secret.snapshot(ivy.account_id)
        await settle(f)
