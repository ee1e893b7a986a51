"""The trading switches (disabled at start, read-only), the request dispatch, the backoff and the quote feed."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

from bridge.qmt import protocol
from bridge.qmt.backoff import Backoff
from bridge.qmt.platform import TradingService
from bridge.qmt.quotes import QuoteFeed
from tests.unit.bridge.conftest import Harness, place_body


async def test_trading_is_disabled_until_the_platform_enables_it(harness: Harness, xt: SimpleNamespace) -> None:
    service = TradingService(harness.link)
    refused = await service.handle(protocol.PLACE, place_body("o-1"))
    assert refused["error"]["code"] == protocol.TRADING_DISABLED
    assert xt.broker.order_calls == [] and harness.journal.get("o-1") is None
    enabled = await service.handle(protocol.SET_TRADING, {"enabled": True, "read_only": False})
    assert enabled == {"ok": True, "body": {"enabled": True, "read_only": False}}
    placed = await service.handle(protocol.PLACE, place_body("o-1"))
    assert placed["body"]["state"] == "placed" and len(xt.broker.order_calls) == 1


async def test_disabled_trading_refuses_new_orders_but_still_cancels(harness: Harness, xt: SimpleNamespace) -> None:
    # an admin switches trading off: nothing new is placed, and what rests at the broker can still be pulled
    service = TradingService(harness.link)
    service.on_welcome({"trading": {"enabled": True, "read_only": False}})
    await service.handle(protocol.PLACE, place_body("o-1"))
    await harness.wait_for("order", lambda b: b["order_id"] == "o-1" and b["status"] == 50)
    await service.handle(protocol.SET_TRADING, {"enabled": False, "read_only": False})
    refused = await service.handle(protocol.PLACE, place_body("o-2"))
    assert refused["error"]["code"] == protocol.TRADING_DISABLED and len(xt.broker.order_calls) == 1
    cancel = await service.handle(protocol.CANCEL, {"order_id": "o-1"})
    assert cancel["body"]["state"] == "requested"
    await harness.wait_for("order", lambda b: b["order_id"] == "o-1" and b["status"] == 54)
    assert [o["order_status"] for o in xt.broker.orders.values()] == [54]


async def test_read_only_refuses_place_and_cancel_and_serves_queries(harness: Harness, xt: SimpleNamespace) -> None:
    service = TradingService(harness.link)
    service.on_welcome({"trading": {"enabled": True, "read_only": False}})
    await service.handle(protocol.PLACE, place_body("o-1"))
    await harness.wait_for("order", lambda b: b["order_id"] == "o-1")
    await service.handle(protocol.SET_TRADING, {"enabled": True, "read_only": True})
    cancel = await service.handle(protocol.CANCEL, {"order_id": "o-1"})
    place = await service.handle(protocol.PLACE, place_body("o-2"))
    assert cancel["error"]["code"] == place["error"]["code"] == protocol.TRADING_DISABLED
    assert [o.get("order_status") for o in xt.broker.orders.values()] == [50]  # not cancelled
    orders = await service.handle(protocol.QUERY_ORDERS, {})
    assert [o["order_id"] for o in orders["body"]["orders"]] == ["o-1"]
    assert (await service.handle(protocol.QUERY_ASSET, {}))["ok"] is True


async def test_a_welcome_without_switches_leaves_trading_disabled_and_bad_requests_are_named(
    harness: Harness,
) -> None:
    service = TradingService(harness.link)
    service.on_welcome({"trading": {"enabled": "yes"}})
    assert service.switches.enabled is False
    bad = await service.handle(protocol.SET_TRADING, {"enabled": True})
    assert bad["error"]["code"] == protocol.BAD_REQUEST and "read_only" in bad["error"]["message"]
    other = await service.handle("launch", {})
    assert other["error"]["code"] == protocol.BAD_REQUEST
    extra = await service.handle(protocol.QUERY_TRADES, {"since": 1})
    assert extra["error"]["message"].startswith("since")


def test_backoff_doubles_to_its_maximum_with_jitter() -> None:
    backoff = Backoff(1.0, 60.0, rng=random.Random(7))
    waits = [backoff.next() for _ in range(9)]
    steps = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    for wait, step in zip(waits, steps, strict=True):
        assert step / 2 <= wait <= step
    backoff.reset()
    assert backoff.next() <= 1.0


async def test_the_quote_feed_forwards_the_subscribed_codes(xt: SimpleNamespace) -> None:
    pushes: list[tuple[str, dict[str, Any]]] = []
    got = asyncio.Event()

    def push(type_: str, body: dict[str, Any]) -> None:
        pushes.append((type_, body))
        got.set()

    feed = QuoteFeed(("600000.SH",), push, xt.xtdata)
    feed.attach(asyncio.get_running_loop())
    feed.resubscribe()
    await feed.settled()
    tick = {"time": 1765071000000, "lastPrice": 10.0, "volume": 50, "bidPrice": [9.99], "bidVol": [3]}
    xt.broker.feed_quotes({"600000.SH": tick, "000001.SZ": tick})
    await asyncio.wait_for(got.wait(), 10)
    assert [t for t, _ in pushes] == ["quotes"]
    [snap] = pushes[0][1]["quotes"]
    assert (snap["ts_code"], snap["last"], snap["volume_lots"], snap["bid"][0]) == (
        "600000.SH",
        "10.000",
        50,
        ["9.990", 3],
    )
    # the platform subscribes the whole market: the old subscription goes, one new one for every market
    reply = await feed.handle(protocol.SUBSCRIBE, {"codes": ["*"]})
    assert reply == {"ok": True, "body": {"codes": ["*"]}}
    assert [codes for codes, _ in xt.broker.quote_subs.values()] == [["SH", "SZ", "BJ"]]
    got.clear()
    xt.broker.feed_quotes({"000001.SZ": tick})
    await asyncio.wait_for(got.wait(), 10)
    assert [s["ts_code"] for s in pushes[1][1]["quotes"]] == ["000001.SZ"]
    bad = await feed.handle(protocol.SUBSCRIBE, {"codes": ["600000"]})
    assert bad["error"]["code"] == protocol.BAD_REQUEST


async def test_a_quote_subscription_that_raises_is_logged_and_tried_again(xt: SimpleNamespace) -> None:
    class Down:
        calls = 0

        def subscribe_whole_quote(self, codes: list[str], callback: Any) -> int:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("xtdata cannot reach MiniQMT")
            return xt.xtdata.subscribe_whole_quote(codes, callback)

        def unsubscribe_quote(self, seq: int) -> None:
            xt.xtdata.unsubscribe_quote(seq)

    feed = QuoteFeed(("SH",), lambda t, b: None, Down())
    feed.attach(asyncio.get_running_loop())
    feed.resubscribe()
    await feed.settled()
    assert xt.broker.quote_subs == {}
    feed.resubscribe()  # the next reconnect
    await feed.settled()
    assert [codes for codes, _ in xt.broker.quote_subs.values()] == [["SH"]]
