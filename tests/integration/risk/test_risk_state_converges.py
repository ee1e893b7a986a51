"""Risk's hot book converges on execution's records (docs/risk-rules.md, "Hot state") through the fleet: execution's
events delivered twice change nothing; an event's effect that should not be there (a spurious or lost event) is found
by reconciliation on its second pass, counted as drift (`lh_risk_state_drift_total`) and repaired. Amounts by hand."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from services.execution.store.base import outbox
from services.risk.state.keeper import Drift
from services.risk.state.ports import AdjustmentEvent, BookEvent, CashEvent, TradeEvent
from shared.core.domain import OrderSide
from shared.platform.events import Envelope
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    fleet,
    now_session,
    order_body,
    risk_caught_up,
    settle,
    trader,
    until,
)

pytestmark = pytest.mark.integration


_order = order_body


# 100,000.00 opening cash; a buy of 1,000 at 10.00 filled: 10,000.00 + 5.00 + 0.10 = 10,005.10; a buy of 500 at 10.00
# filled: 5,000.00 + 5.00 + 0.05 = 5,005.05; balance 100,000.00 - 15,010.15 = 84,989.85. A buy of 1,000 at 9.50
# resting: reserves 9,500.00 + 5.00 + 0.10 = 9,505.10.
BALANCE_FEN = 8_498_985
RESERVED_FEN = 950_510
HELD = 1500


async def _history(f: Fleet, account_principal: Any) -> None:
    for body in (_order(), _order(qty=500), _order(price="9.50")):
        answer = await f.risk.post("/v1/orders", json=body, headers=f.headers(account_principal))
        assert answer.status_code == 201, answer.text
    await settle(f)  # every event published
    await risk_caught_up(f, account_principal.account_id)
    account = (await f.execution.get("/v1/account", headers=f.headers(account_principal))).json()
    assert (account["balance"], account["reserved"]) == ("84989.85", "9505.10")
    positions = (await f.execution.get("/v1/positions", headers=f.headers(account_principal))).json()
    assert [(p["ts_code"], p["qty"]) for p in positions] == [("600000.SH", HELD)]


async def _book(f: Fleet, account_id: str) -> tuple[int, int, int]:
    view = await f.risk_app.state.hot_book.view(account_id, date.fromisoformat(now_session()))
    assert view is not None
    return view.balance_fen, view.reserved_fen, view.holdings["600000.SH"].qty


async def _executions_events(f: Fleet, account_id: str) -> list[Envelope]:
    async with f.store.db.session() as s:
        rows = (await s.execute(select(outbox.c.body).order_by(outbox.c.created_at))).all()
    events = [Envelope.model_validate_json(row.body) for row in rows]
    return [e for e in events if e.payload.get("account_id") == account_id]


async def test_executions_events_delivered_again_change_nothing(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "100000")
    settings = backing.settings()
    eve = trader()
    acct = eve.account_id
    assert acct is not None
    async with fleet(settings) as f:
        await f.risk_app.state.reconcile_loop.stop()  # no pass of its own in between
        await _history(f, eve)
        assert await _book(f, acct) == (BALANCE_FEN, RESERVED_FEN, HELD)

        events = await _executions_events(f, acct)
        types = sorted(e.type for e in events)
        assert types.count("trade.executed") == 2 and "order.filled" in types, types

        # Every event published again (as a relay that crashed before marking them published would), in order and
        # then in reverse; the barrier is risk's consumer having handled each of them (its handler, wrapped).
        keeper = f.risk_app.state.keeper
        handled: list[str] = []
        original = keeper.on_event

        async def on_event(envelope: Envelope) -> None:
            await original(envelope)
            handled.append(envelope.id)

        monkeypatch.setattr(keeper, "on_event", on_event)
        for event in [*events, *reversed(events)]:
            await f.execution_bus.publish(event)
        await until(lambda: len(handled) >= 2 * len(events), what="risk handled every event again")
        assert sorted(handled) == sorted([e.id for e in events] * 2)

        assert await _book(f, acct) == (BALANCE_FEN, RESERVED_FEN, HELD)
        assert await keeper.difference(acct, date.fromisoformat(now_session())) is None
        await settle(f)


def _drift(f: Fleet, what: str) -> float:
    value = f.risk_app.state.metrics_registry.get_sample_value("lh_risk_state_drift_total", {"what": what})
    assert value is not None
    return float(value)


@pytest.mark.parametrize(
    ("spurious", "what", "wrong"),
    [
        # a cash movement execution never made: +1,234.56
        (lambda acct: CashEvent(acct, f"spurious-{new_id()}", 123_456), "balance", (BALANCE_FEN + 123_456, HELD)),
        # a fill of 100 shares at 9.50 of the resting buy that execution never made: -(950.00 + 5.00 + 0.01)
        (
            lambda acct: TradeEvent(
                acct,
                f"spurious-{new_id()}",
                "unknown-order",
                "600000.SH",
                OrderSide.BUY,
                100,
                -95_501,
                date.fromisoformat(now_session()),
            ),
            "balance",
            (BALANCE_FEN - 95_501, HELD + 100),
        ),
        # a corporate action (100 bonus shares) execution never recorded: the holding differs, the cash not
        (
            lambda acct: AdjustmentEvent(acct, f"spurious-{new_id()}", "600000.SH", 100, 0),
            "holding",
            (BALANCE_FEN, HELD + 100),
        ),
    ],
    ids=["cash", "trade", "adjustment"],
)
async def test_a_spurious_event_is_drift_found_on_the_second_pass_and_repaired(
    backing: Backing, monkeypatch: pytest.MonkeyPatch, spurious: Any, what: str, wrong: tuple[int, int]
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "100000")
    settings = backing.settings()
    fay = trader()
    acct = fay.account_id
    assert acct is not None
    async with fleet(settings) as f:
        await f.risk_app.state.reconcile_loop.stop()  # the test runs the passes itself
        await _history(f, fay)
        keeper = f.risk_app.state.keeper
        session = date.fromisoformat(now_session())
        before = _drift(f, what)

        event: BookEvent = spurious(acct)
        assert await f.risk_app.state.hot_book.apply(event) is True
        balance, _, held = await _book(f, acct)
        assert (balance, held) == wrong
        assert (await keeper.difference(acct, session) or "").startswith(f"{what}:")

        assert await keeper.reconcile(session) == []  # first pass: perhaps events in flight, look again
        assert _drift(f, what) == before
        assert await keeper.reconcile(session) == [Drift(acct, what)]  # second pass: drift
        assert _drift(f, what) == before + 1

        # repaired: seeded again from execution's snapshot
        assert await _book(f, acct) == (BALANCE_FEN, RESERVED_FEN, HELD)
        assert await keeper.difference(acct, session) is None
        assert await keeper.reconcile(session) == []
        assert _drift(f, what) == before + 1
        await settle(f)
