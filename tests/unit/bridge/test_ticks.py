"""The quote feed's per-code ticks (docs/qmt-bridge.md, "subscribe_ticks"): the platform's set replaces the bridge's,
xtdata's subscriptions follow it by difference, the ticks of a window go out in one frame, an unsubscribed code's
ticks stop, and a reconnect makes every subscription again."""

from __future__ import annotations

import asyncio
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


def feed_on(xt: SimpleNamespace) -> tuple[QuoteFeed, Pushes]:
    pushes = Pushes()
    feed = QuoteFeed(("*",), pushes, xt.xtdata)
    feed.attach(asyncio.get_running_loop())
    feed.resubscribe()
    return feed, pushes


async def test_the_set_replaces_the_old_one_by_difference(xt: SimpleNamespace) -> None:
    feed, _ = feed_on(xt)
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
    feed, _ = feed_on(xt)
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
    feed, pushes = feed_on(xt)
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
    feed, pushes = feed_on(xt)
    await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH", "000001.SZ"]})
    callback = next(cb for code, _, cb in xt.broker.tick_subs.values() if code == "000001.SZ")
    await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH"]})
    # a tick xtdata had in flight for the removed code reaches the callback after the unsubscribe: not forwarded
    callback({"000001.SZ": [tick(1765071000000, 12.0, 7)]})
    xt.broker.feed_ticks({"000001.SZ": tick(1765071003000, 12.1, 8), "600000.SH": tick(1765071003000, 10.0, 1)})
    _, body = await pushes.next()
    assert [t["ts_code"] for t in body["ticks"]] == ["600000.SH"]


async def test_a_reconnect_subscribes_every_code_again(xt: SimpleNamespace) -> None:
    feed, pushes = feed_on(xt)
    await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH", "000001.SZ"]})
    xt.broker.restart()  # MiniQMT restarts: its quote subscriptions are gone
    assert xt.broker.tick_subs == {} and xt.broker.quote_subs == {}
    feed.resubscribe()  # what the bridge does on the MiniQMT reconnect (and on a platform welcome)
    assert xt.broker.tick_codes() == ["000001.SZ", "600000.SH"] and len(xt.broker.quote_subs) == 1
    xt.broker.feed_ticks({"000001.SZ": tick(1765071003000, 12.1, 8)})
    _, body = await pushes.next()
    assert [t["ts_code"] for t in body["ticks"]] == ["000001.SZ"]


async def test_a_code_xtdata_refuses_is_reported_failed_and_tried_again(xt: SimpleNamespace) -> None:
    feed, _ = feed_on(xt)
    xt.broker.down = True  # MiniQMT's data service unreachable: subscribe_quote answers -1
    answer = await feed.handle(protocol.SUBSCRIBE_TICKS, {"codes": ["600000.SH"]})
    assert answer["body"] == {"codes": [], "added": [], "removed": [], "failed": ["600000.SH"]}
    xt.broker.down = False
    feed.resubscribe()  # the next reconnect
    assert xt.broker.tick_codes() == ["600000.SH"]
