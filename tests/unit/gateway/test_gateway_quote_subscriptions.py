"""A browser socket subscribes to codes and receives only its codes' quotes and bars; bad commands change nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal

from gateway.auth import CurrentUser
from gateway.ws import EVENT_PATTERNS, EventHub, subscription_answer
from shared.platform.bus.port import topic_matches
from shared.platform.clock import EXCHANGE_TZ
from shared.platform.events.envelope import Envelope, make_event
from shared.platform.events.schemas import BarsMinute, LiveQuote, MinuteBar, QuoteLevel, QuotesSnapshot
from shared.platform.roles import Role

ALICE = CurrentUser("alice", Role.TRADER, "acct-alice", "jwt")
BOB = CurrentUser("bob", Role.VIEWER, "acct-bob", "api_key")
ROOT = CurrentUser("root", Role.ADMIN, "root", "jwt")
T = datetime(2024, 12, 31, 9, 31, 3, tzinfo=EXCHANGE_TZ)


def quote(code: str, last: str) -> LiveQuote:
    return LiveQuote(
        ts_code=code, time=T, last=Decimal(last), open=Decimal(last), high=Decimal(last), low=Decimal(last),
        pre_close=Decimal(last), volume=100, amount=Decimal(last) * 100, bid=(QuoteLevel(price=Decimal(last), volume=100),),
        ask=(), limit_up=None, limit_down=None, source="replay",
    )  # fmt: skip


def snapshot(*codes: str) -> Envelope:
    payload = QuotesSnapshot(as_of=T, source="replay", quotes=tuple(quote(c, "10.00") for c in codes))
    return make_event("quotes.snapshot", payload, source="data")


def bars(*codes: str) -> Envelope:
    minute = T.replace(second=0)
    made = tuple(
        MinuteBar(ts_code=c, minute=minute, open=Decimal("1.00"), high=Decimal("1.10"), low=Decimal("0.90"),
                  close=Decimal("1.05"), volume=300, amount=Decimal("315.00"))
        for c in codes
    )  # fmt: skip
    return make_event("bars.1m", BarsMinute(bars=made, closed_at=T), source="data")


def drain(queue: asyncio.Queue[str]) -> list[dict]:  # type: ignore[type-arg]
    out = []
    while not queue.empty():
        out.append(json.loads(queue.get_nowait()))
    return out


def test_the_stream_listens_for_quote_events() -> None:
    assert any(topic_matches(p, "quotes.snapshot") for p in EVENT_PATTERNS)
    assert any(topic_matches(p, "bars.1m") for p in EVENT_PATTERNS)


async def test_each_socket_gets_only_its_codes() -> None:
    hub = EventHub()
    alice, bob, root = hub.add(ALICE), hub.add(BOB), hub.add(ROOT)
    assert subscription_answer(alice, {"op": "subscribe", "codes": ["600000.sh", "000001.SZ"]}, 50) == {
        "type": "ws.subscribed",
        "payload": {"codes": ["000001.SZ", "600000.SH"]},
    }
    assert subscription_answer(bob, {"op": "subscribe", "codes": ["300750.SZ"]}, 50)["type"] == "ws.subscribed"
    event = snapshot("600000.SH", "300750.SZ", "688001.SH")
    await hub.dispatch(event)
    [for_alice] = drain(alice.queue)
    assert for_alice["id"] == event.id and for_alice["type"] == "quotes.snapshot"
    assert [q["ts_code"] for q in for_alice["payload"]["quotes"]] == ["600000.SH"]
    assert for_alice["payload"]["quotes"][0]["last"] == "10.00" and for_alice["payload"]["source"] == "replay"
    [for_bob] = drain(bob.queue)
    assert [q["ts_code"] for q in for_bob["payload"]["quotes"]] == ["300750.SZ"]
    assert drain(root.queue) == []  # an admin without codes gets no market data (not the whole market either)

    await hub.dispatch(bars("000001.SZ", "688001.SH"))
    [bar_event] = drain(alice.queue)
    assert bar_event["type"] == "bars.1m"
    assert [(b["ts_code"], b["close"], b["volume"]) for b in bar_event["payload"]["bars"]] == [
        ("000001.SZ", "1.05", 300)
    ]
    assert drain(bob.queue) == []  # none of bob's codes closed a bar


async def test_unsubscribe_stops_the_codes() -> None:
    hub = EventHub()
    alice = hub.add(ALICE)
    subscription_answer(alice, {"op": "subscribe", "codes": ["600000.SH", "000001.SZ"]}, 50)
    answer = subscription_answer(alice, {"op": "unsubscribe", "codes": ["600000.SH"]}, 50)
    assert answer["payload"]["codes"] == ["000001.SZ"]
    await hub.dispatch(snapshot("600000.SH"))
    assert drain(alice.queue) == []


def test_bad_commands_are_refused_and_change_nothing() -> None:
    hub = EventHub()
    alice = hub.add(ALICE)
    subscription_answer(alice, {"op": "subscribe", "codes": ["600000.SH"]}, 3)
    bad = subscription_answer(alice, {"op": "subscribe", "codes": ["000001.SZ", "60000X.SH"]}, 3)
    assert bad["type"] == "ws.error" and bad["payload"]["code"] == "invalid_request"
    assert bad["payload"]["message"].startswith("codes[1]: ")
    fund = subscription_answer(alice, {"op": "subscribe", "codes": ["510300.SH"]}, 3)
    assert fund["payload"]["code"] == "invalid_request"
    unknown_op = subscription_answer(alice, {"op": "watch", "codes": ["000001.SZ"]}, 3)
    assert unknown_op["payload"]["code"] == "invalid_request" and unknown_op["payload"]["message"].startswith("op:")
    extra = subscription_answer(alice, {"op": "subscribe", "codes": ["000001.SZ"], "depth": 5}, 3)
    assert extra["payload"]["message"].startswith("depth:")
    empty = subscription_answer(alice, {"op": "subscribe", "codes": []}, 3)
    assert empty["payload"]["message"].startswith("codes:")
    too_many = subscription_answer(alice, {"op": "subscribe", "codes": ["000001.SZ", "000002.SZ", "000004.SZ"]}, 3)
    assert too_many["payload"]["code"] == "too_many_codes"
    assert alice.codes == {"600000.SH"}  # none of the refused commands changed anything
