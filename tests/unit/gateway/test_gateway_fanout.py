"""Which events a WebSocket user sees, and that a slow client is dropped without holding up the others."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal

from gateway.auth import CurrentUser
from gateway.ws import CLOSE_GOING_AWAY, CLOSE_TOO_SLOW, EVENT_PATTERNS, EventHub, visible_to
from shared.platform.bus.port import topic_matches
from shared.platform.events.envelope import Envelope, make_event
from shared.platform.events.schemas import (
    BacktestFinished,
    DenialReason,
    OrderDenied,
    OrderUpdated,
    StopTriggered,
    StrategyCodeRejected,
    StrategyInstanceBar,
    StrategyInstanceChanged,
)
from shared.platform.roles import Role

ALICE = CurrentUser("alice", Role.TRADER, "acct-alice", "jwt")
BOB = CurrentUser("bob", Role.VIEWER, "acct-bob", "api_key")
ROOT = CurrentUser("root", Role.ADMIN, "root", "jwt")


def order_filled(account_id: str, qty: int = 100) -> Envelope:
    payload = OrderUpdated(
        order_id="o-1",
        client_order_id="c-1",
        account_id=account_id,
        ts_code="600000.SH",
        side="buy",
        order_type="limit",
        qty=qty,
        price=Decimal("10.50"),
        status="filled",
        filled_qty=qty,
        avg_fill_price=Decimal("10.50"),
        updated_at=datetime(2024, 3, 1, 2, 0, tzinfo=UTC),
    )
    return make_event("order.filled", payload, source="test")


def test_order_events_go_to_the_account_owner_and_admins() -> None:
    event = order_filled("acct-alice")
    assert visible_to(ALICE, event)
    assert not visible_to(BOB, event)
    assert visible_to(ROOT, event)


def test_account_is_matched_not_username() -> None:
    # alice's account is "acct-alice": an event for an account named like her username is not hers.
    assert not visible_to(ALICE, order_filled("alice"))


def test_stop_triggers_go_to_the_account_owner_and_admins() -> None:
    payload = StopTriggered(stop_id="s-1", account_id="acct-alice", owner="alice", ts_code="600000.SH",
                            kind="stop_loss", price=Decimal("9.50"), stop_level=Decimal("9.50"), qty=100,
                            client_order_id="stop-s-1", status="triggered", order_id="o-1", message="placed",
                            at=datetime(2024, 3, 1, 2, 0, tzinfo=UTC))  # fmt: skip
    event = make_event("risk.stop.triggered", payload, source="risk")
    assert any(topic_matches(pattern, event.type) for pattern in EVENT_PATTERNS)
    assert visible_to(ALICE, event)
    assert not visible_to(BOB, event)
    assert visible_to(ROOT, event)


def test_risk_denials_go_to_the_account_owner_and_admins() -> None:
    reason = DenialReason(code="lot_size", message="qty 150 is not a multiple of 100")
    denial = OrderDenied(
        decision_id="d-1", account_id="acct-bob", client_order_id="c-9", ts_code="600000.SH", side="buy",
        order_type="limit", qty=150, price=Decimal("10.00"), reasons=(reason,),
        denied_at=datetime(2024, 3, 1, 2, 0, tzinfo=UTC),
    )  # fmt: skip
    event = make_event("risk.order.denied", denial, source="risk")
    assert visible_to(BOB, event)
    assert not visible_to(ALICE, event)
    assert visible_to(ROOT, event)


def test_backtest_events_go_to_their_owner() -> None:
    mine = Envelope(
        type="backtest.finished", source="test", payload={"backtest_id": "b1", "status": "done", "owner": "bob"}
    )
    assert visible_to(BOB, mine)
    assert not visible_to(ALICE, mine)
    assert visible_to(ROOT, mine)


def test_events_naming_no_owner_go_to_admins_only() -> None:
    event = make_event("backtest.finished", BacktestFinished(backtest_id="b2", status="done"), source="test")
    assert not visible_to(ALICE, event)
    assert not visible_to(BOB, event)
    assert visible_to(ROOT, event)


def test_strategy_instance_events_go_to_the_owner_and_the_accounts_user() -> None:
    at = datetime(2025, 1, 2, 7, 0, tzinfo=UTC)
    started = make_event(
        "strategy.instance.started",
        StrategyInstanceChanged(
            instance_id="a" * 32, strategy="dual_ma", owner="bob", account_id="acct-alice", mode="paper",
            state="running", at=at,
        ),
        source="strategy",
    )  # fmt: skip
    assert visible_to(BOB, started)  # he made it
    assert visible_to(ALICE, started)  # it trades her account
    assert visible_to(ROOT, started)
    assert not visible_to(CurrentUser("carol", Role.TRADER, "acct-carol", "jwt"), started)
    bar = make_event(
        "strategy.instance.bar",
        StrategyInstanceBar(
            instance_id="a" * 32, owner="bob", bar_date=date(2025, 1, 2), orders_sent=3, equity=Decimal("1.00"), at=at
        ),
        source="strategy",
    )
    assert visible_to(BOB, bar)
    assert not visible_to(ALICE, bar)  # the bar names its owner only
    assert visible_to(ROOT, bar)
    # and the gateway's subscription takes them off the bus
    for event in (started, bar):
        assert any(topic_matches(pattern, event.type) for pattern in EVENT_PATTERNS)


def test_a_refused_strategy_reload_goes_to_the_instances_owner_or_to_admins_only() -> None:
    at = datetime(2025, 1, 2, 7, 0, tzinfo=UTC)
    kept = make_event(
        "strategy.code.rejected",
        StrategyCodeRejected(strategy="dual_ma", file="/srv/strategies/dual_ma.py", error="params.fast: too small",
                             instance_id="a" * 32, owner="alice", at=at),
        source="strategy",
    )  # fmt: skip
    assert visible_to(ALICE, kept)
    assert not visible_to(BOB, kept)
    assert visible_to(ROOT, kept)
    broken = make_event(
        "strategy.code.rejected",
        StrategyCodeRejected(file="/srv/strategies/dual_ma.py", error="SyntaxError: invalid syntax (line 3)", at=at),
        source="strategy",
    )
    assert not visible_to(ALICE, broken)  # a file names no one: the operators (admins) fix it
    assert visible_to(ROOT, broken)
    for event in (kept, broken):
        assert any(topic_matches(pattern, event.type) for pattern in EVENT_PATTERNS)


async def test_hub_delivers_each_user_their_events_in_order() -> None:
    hub = EventHub(queue_size=10)
    alice, bob, root = hub.add(ALICE), hub.add(BOB), hub.add(ROOT)
    events = [order_filled("acct-bob", 100), order_filled("acct-alice", 200), order_filled("acct-alice", 300)]
    for event in events:
        await hub.dispatch(event)
    assert [Envelope.model_validate_json(alice.queue.get_nowait()).payload["qty"] for _ in range(2)] == [200, 300]
    assert alice.queue.empty()
    assert Envelope.model_validate_json(bob.queue.get_nowait()).id == events[0].id
    assert bob.queue.empty()
    assert root.queue.qsize() == 3


async def test_slow_client_is_dropped_and_the_others_keep_receiving() -> None:
    hub = EventHub(queue_size=2)
    slow, fast = hub.add(ALICE), hub.add(CurrentUser("alice", Role.TRADER, "acct-alice", "jwt"))
    received: list[str] = []
    for i in range(5):
        await hub.dispatch(order_filled("acct-alice", 100 * (i + 1)))
        received.append(fast.queue.get_nowait())  # the fast client reads everything as it comes
    assert len(received) == 5
    assert slow.stopped.is_set() and slow.stop_code == CLOSE_TOO_SLOW
    assert len(hub) == 1  # only the fast one is left
    assert not fast.stopped.is_set()


async def test_dispatch_never_waits_on_a_full_queue() -> None:
    hub = EventHub(queue_size=1)
    hub.add(ALICE)
    # Would hang if dispatch awaited a full queue.
    await asyncio.wait_for(asyncio.gather(*(hub.dispatch(order_filled("acct-alice")) for _ in range(50))), 1.0)


async def test_shutdown_stops_every_socket() -> None:
    hub = EventHub()
    subs = [hub.add(ALICE), hub.add(BOB)]
    hub.close_all()
    assert all(s.stopped.is_set() and s.stop_code == CLOSE_GOING_AWAY for s in subs)
    assert len(hub) == 0
