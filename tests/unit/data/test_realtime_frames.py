"""The bridge endpoint's handling of one received frame (services/data/realtime/bridge.py `take_frame`): checked,
its round taken, with cyclic garbage collection held off from the frame's arrival to the round published
(services/data/realtime/gc_pause.py), and back on after, whatever happened."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bridge.qmt import protocol
from services.data.realtime.bridge import take_frame
from services.data.realtime.gc_pause import collection_paused
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes
from services.data.realtime.store import MemoryLiveStore
from shared.platform.bus import MemoryBus
from tests.unit.data.test_realtime_quotes import FakeStore, at, raw


def channels() -> tuple[protocol.Channel, protocol.Channel]:
    bridge = protocol.Channel(secret="k" * 32, session="s1", outgoing=protocol.TO_PLATFORM)
    platform = protocol.Channel(secret="k" * 32, session="s1", outgoing=protocol.TO_BRIDGE)
    return bridge, platform


class Watching(MemoryLiveStore):
    """Notes whether the collector was on when the round's quotes were stored."""

    def __init__(self) -> None:
        super().__init__()
        self.collector_on: list[bool] = []

    async def put_quotes(self, quotes: Any, feed: str) -> None:
        self.collector_on.append(gc.isenabled())
        await super().put_quotes(quotes, feed)


def provider(live: MemoryLiveStore) -> RealtimeQuotes:
    return RealtimeQuotes(FakeStore(), live, MemoryBus(), QuoteMetrics(CollectorRegistry(), lambda: at("09:31:00")))  # type: ignore[arg-type]


def test_the_collector_is_held_off_inside_and_back_on_after_the_last_round() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
        with collection_paused():  # rounds that overlap (a bridge's and the replay's)
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first one is still going
    assert gc.isenabled()
    with pytest.raises(KeyError), collection_paused():
        raise KeyError("a round that fails")
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_process_stays_off() -> None:
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_a_quotes_frame_is_taken_with_the_collector_off() -> None:
    live = Watching()
    realtime = provider(live)
    bridge, platform = channels()
    frame = await take_frame(
        platform, realtime, bridge.seal(protocol.QUOTES, {"quotes": [raw(), raw(code="600001.SH")]})
    )
    assert frame.type == protocol.QUOTES and frame.body == {}  # the snapshots let go with the round
    assert frame.round is not None and frame.round.accepted == 1 and dict(frame.round.rejected) == {"unknown_code": 1}
    assert live.collector_on == [False] and gc.isenabled()
    assert await live.quote("600000.SH") is not None
    # the bridge's frames as they come, as bytes too; another type is handed back with its body, nothing taken
    frame = await take_frame(platform, realtime, bridge.seal(protocol.CONNECTION, {"qmt": "connected"}).encode())
    assert (frame.type, frame.body, frame.round) == (protocol.CONNECTION, {"qmt": "connected"}, None)
    assert gc.isenabled()


@pytest.mark.parametrize(
    "make",
    [
        lambda bridge: bridge.seal(protocol.QUOTES, {"quotes": [raw()]}).replace('"last":"10.05"', '"last":"10.06"'),
        lambda bridge: bridge.seal(protocol.QUOTES, {"quotes": {"600000.SH": raw()}}),  # not a list
        lambda bridge: "x" * (16 * 1024 * 1024 + 1),  # too big
    ],
    ids=["changed after signing", "not a list", "too big"],
)
async def test_a_bad_frame_is_refused_takes_nothing_and_the_collector_is_back_on(make: Any) -> None:
    live = Watching()
    bridge, platform = channels()
    with pytest.raises(protocol.ProtocolError):
        await take_frame(platform, provider(live), make(bridge))
    assert live.collector_on == [] and await live.quote("600000.SH") is None
    assert gc.isenabled()
