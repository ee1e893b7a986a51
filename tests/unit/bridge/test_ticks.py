"""The quote feed's per-code ticks (docs/qmt-bridge.md, "subscribe_ticks"): the platform's set replaces the bridge's,
xtdata's subscriptions follow it by difference, the ticks of a window go out in one frame, an unsubscribed code's
ticks stop, and a reconnect makes every subscription again."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

from bridge.qmt import protocol
from bridge.qmt.quotes import QuoteFeed

WAIT_S = 10.0  # a bound on waiting for a push, not a timing assertion


def tick(ms: int, last: float, lots: int) -> dict[str, Any]:
    return {"time": ms, "lastPrice": last, "open": 10.0, "high": 10.5, "low": 9.9, "lastClose": 10.0,
            "amount": 1000.0, "volume": lots, "bidPrice": [last - 0.01], "bidVol": [2], "askPrice": [last],
            "askVol": [3]}  # fmt: skip


class Pushes:
    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    def __call__(self, type_: str, body: dict[str, Any]) -> None:
        self.frames.append((type_, body))
        self.changed.set()

    async def next(self) -> tuple[str, dict[str, Any]]:
        count = len(self.frames)
        async with asyncio.timeout(WAIT_S):
            while len(self.frames) == count:
                self.changed.clear()
                await self.changed.wait()
        return self.frames[count]


async def feed_on(xt: SimpleNamespace) -> tuple[QuoteFeed, Pushes]:
    pushes = Pushes()
    feed = QuoteFeed(("*",), pushes, xt.xtdata)
    feed.attach(asyncio.get_running_loop())
    feed.resubscribe()
    await feed.settled()
    return feed, pushes


async def test_the_set_replaces_the_old_one_by_difference(xt: SimpleNamespace) -> None:
    feed, _ = await feed_on(xt)
    first = await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH", "000001.SZ"]})
    assert first == {"ok": True, "body": {"codes": ["000001.SZ", "600000.SH"], "added": ["000001.SZ", "600000.SH"],
                                          "removed": [], "failed": []}}  # fmt: skip
    seq_kept = feed._tick_subs["600000.SH"]
    second = await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH", "300750.SZ"]})
    assert second["body"] == {"codes": ["300750.SZ", "600000.SH"], "added": ["300750.SZ"], "removed": ["000001.SZ"],
                              "failed": []}  # fmt: skip
    # the kept code was not subscribed again; xtdata holds exactly the two, each with period 'tick'
    assert feed._tick_subs["600000.SH"] == seq_kept
    assert sorted((code, period) for code, period, _ in xt.broker.tick_subs.values()) == [
        ("300750.SZ", "tick"), ("600000.SH", "tick"),
    ]  # fmt: skip
    none = await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": []})
    assert none["body"]["removed"] == ["300750.SZ", "600000.SH"] and xt.broker.tick_subs == {}


async def test_more_than_300_codes_or_a_bad_code_is_refused_and_nothing_changes(xt: SimpleNamespace) -> None:
    feed, _ = await feed_on(xt)
    await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH"]})
    many = [f"{600000 + i:06d}.SH" for i in range(301)]
    too_many = await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": many})
    assert too_many["ok"] is False and too_many["error"]["code"] == protocol.TOO_MANY_CODES
    assert "301 codes, at most 300" in too_many["error"]["message"]
    for bad in ({"codes": ["600000"]}, {"codes": ["SH"]}, {"codes": "600000.SH"}, {"codes": [], "x": 1}):
        answer = await feed.handle(protocol.SUBSCRIBE_TICKS, bad)
        assert answer["error"]["code"] == protocol.BAD_REQUEST, bad
    assert [code for code, _, _ in xt.broker.tick_subs.values()] == ["600000.SH"]
    # exactly 300 is taken
    taken = await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": many[:300]})
    assert taken["ok"] is True and len(xt.broker.tick_subs) == 300


async def test_ticks_of_a_window_go_out_in_one_frame_the_newest_per_code(xt: SimpleNamespace) -> None:
    feed, pushes = await feed_on(xt)
    await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH", "000001.SZ"]})
    # three ticks delivered together on xtdata's thread (well within one 100 ms window): two of 600000.SH, one of
    # 000001.SZ, and one of a code not subscribed (ignored)
    xt.broker.feed_ticks({"600000.SH": tick(1765071000000, 10.01, 10), "000001.SZ": tick(1765071000000, 12.0, 7),
                          "600519.SH": tick(1765071000000, 1500.0, 1)})  # fmt: skip
    xt.broker.feed_ticks({"600000.SH": tick(1765071003000, 10.02, 12)})
    type_, body = await pushes.next()
    assert type_ == protocol.TICKS
    got = {t["ts_code"]: (t["last"], t["volume_lots"]) for t in body["ticks"]}
    assert got == {"600000.SH": ("10.020", 12), "000001.SZ": ("12.000", 7)}
    assert len(pushes.frames) == 1 and feed.ticks_forwarded == 2


async def test_an_unsubscribed_codes_ticks_stop(xt: SimpleNamespace) -> None:
    feed, pushes = await feed_on(xt)
    await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH", "000001.SZ"]})
    callback = next(cb for code, _, cb in xt.broker.tick_subs.values() if code == "000001.SZ")
    await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH"]})
    # a tick xtdata had in flight for the removed code reaches the callback after the unsubscribe: not forwarded
    callback({"000001.SZ": [tick(1765071000000, 12.0, 7)]})
    xt.broker.feed_ticks({"000001.SZ": tick(1765071003000, 12.1, 8), "600000.SH": tick(1765071003000, 10.0, 1)})
    _, body = await pushes.next()
    assert [t["ts_code"] for t in body["ticks"]] == ["600000.SH"]


async def test_a_reconnect_subscribes_every_code_again(xt: SimpleNamespace) -> None:
    feed, pushes = await feed_on(xt)
    await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH", "000001.SZ"]})
    xt.broker.restart()  # MiniQMT restarts: its quote subscriptions are gone
    assert xt.broker.tick_subs == {} and xt.broker.quote_subs == {}
    feed.resubscribe()  # what the bridge does on the MiniQMT reconnect (and on a platform welcome)
    await feed.settled()
    assert xt.broker.tick_codes() == ["000001.SZ", "600000.SH"] and len(xt.broker.quote_subs) == 1
    xt.broker.feed_ticks({"000001.SZ": tick(1765071003000, 12.1, 8)})
    _, body = await pushes.next()
    assert [t["ts_code"] for t in body["ticks"]] == ["000001.SZ"]


async def test_a_code_xtdata_refuses_is_reported_failed_and_tried_again(xt: SimpleNamespace) -> None:
    feed, _ = await feed_on(xt)
    xt.broker.down = True  # MiniQMT's data service unreachable: subscribe_quote answers -1
    answer = await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH"]})
    assert answer["body"] == {"codes": [], "added": [], "removed": [], "failed": ["600000.SH"]}
    xt.broker.down = False
    feed.resubscribe()  # the next reconnect
    await feed.settled()
    assert xt.broker.tick_codes() == ["600000.SH"]


class BlockingXtdata:
    """xtdata whose subscribe_quote blocks (as the real one does while MiniQMT answers) until the test releases it;
    the other calls go to the fake."""

    def __init__(self, xtdata: Any) -> None:
        self.xtdata = xtdata
        self.release = threading.Event()
        self.order: list[str] = []

    def subscribe_quote(self, code: str, **kwargs: Any) -> int:
        # bounded so that a bridge that calls this on the loop fails the test instead of hanging it
        released = self.release.wait(WAIT_S)
        self.order.append(f"subscribed {code}" + ("" if released else " (never released)"))
        return int(self.xtdata.subscribe_quote(code, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.xtdata, name)


async def other_work(blocking: BlockingXtdata) -> None:
    """A coroutine the loop serves meanwhile (the trading channel's): it can only run if the loop is free."""
    await asyncio.sleep(0)
    blocking.order.append("other coroutine done")
    blocking.release.set()


async def test_a_blocking_subscribe_quote_does_not_hold_up_the_loop(xt: SimpleNamespace) -> None:
    blocking = BlockingXtdata(xt.xtdata)
    feed = QuoteFeed(("*",), Pushes(), blocking)
    feed.attach(asyncio.get_running_loop())
    subscribing = asyncio.create_task(feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH"]}))
    other = asyncio.create_task(other_work(blocking))
    answer = await subscribing
    await other
    # the other coroutine ran while subscribe_quote was blocked on the worker thread, and released it
    assert blocking.order == ["other coroutine done", "subscribed 600000.SH"]
    assert answer["body"] == {"codes": ["600000.SH"], "added": ["600000.SH"], "removed": [], "failed": []}


async def test_a_reconnects_resubscription_does_not_hold_up_the_loop(xt: SimpleNamespace) -> None:
    feed, _ = await feed_on(xt)
    await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH", "000001.SZ"]})
    blocking = BlockingXtdata(xt.xtdata)
    feed._xtdata = blocking  # xtdata blocks from now on
    xt.broker.restart()
    feed.resubscribe()  # a hook of the reconnect: schedules the work and returns
    other = asyncio.create_task(other_work(blocking))
    await feed.settled()
    await other
    assert blocking.order == ["other coroutine done", "subscribed 000001.SZ", "subscribed 600000.SH"]
    assert xt.broker.tick_codes() == ["000001.SZ", "600000.SH"]


async def test_changes_of_the_subscriptions_are_applied_one_at_a_time_the_last_set_wins(xt: SimpleNamespace) -> None:
    blocking = BlockingXtdata(xt.xtdata)
    feed = QuoteFeed(("*",), Pushes(), blocking)
    feed.attach(asyncio.get_running_loop())
    feed.resubscribe()  # a reconnect, its subscriptions blocked on the worker thread ...
    first = asyncio.create_task(feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH", "000001.SZ"]}))
    second = asyncio.create_task(feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["000001.SZ", "300750.SZ"]}))
    await asyncio.sleep(0)
    blocking.release.set()  # ... until now
    await feed.settled()
    answers = [(await first)["body"], (await second)["body"]]
    # whichever ran first, xtdata ends with the last set asked for, each code subscribed once
    assert xt.broker.tick_codes() == ["000001.SZ", "300750.SZ"]
    assert answers[1]["codes"] == ["000001.SZ", "300750.SZ"]
    assert sorted(feed._tick_subs) == ["000001.SZ", "300750.SZ"]
    assert "(never released)" not in " ".join(blocking.order)
