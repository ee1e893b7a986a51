"""The bridge (in this process, on the fake MiniQMT) against a fake platform speaking the protocol: the handshake,
the trading switches, reconnects, forged frames and welcomes, quotes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.qmt import protocol
from bridge.qmt.app import Bridge
from bridge.qmt.config import BridgeConfig
from bridge.qmt.platform import ForgedWelcome
from tests.integration.bridge.fake_platform import WAIT_S, FakePlatform
from tests.support.qmt.loader import fake_xtquant

SECRET = "bridge-secret-0123456789"
ACCOUNT = "8881234567"
OID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture
def xt() -> Iterator[SimpleNamespace]:
    with fake_xtquant() as modules:
        yield modules


def config(tmp_path: Path, url: str, **overrides: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "userdata_path": str(tmp_path / "userdata_mini"),
        "session_id": 11,
        "account_id": ACCOUNT,
        "bridge_id": "desk1",
        "platform_url": url,
        "journal_path": str(tmp_path / "journal.sqlite3"),
        "reconnect_initial_s": 0.02,
        "reconnect_max_s": 0.1,
        "reconcile_interval_s": 3600,
        "secret": SECRET,
    }
    values.update(overrides)
    return BridgeConfig(**values)


def place(order_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "remark": protocol.remark_for(order_id),
        "ts_code": "600000.SH",
        "side": "buy",
        "qty": 100,
        "price_type": 11,
        "price": "10.000",
        "strategy_name": "",
    }


class Running:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(bridge.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def platform() -> AsyncIterator[FakePlatform]:
    p = FakePlatform({"desk1": SECRET}, {"desk1": ACCOUNT})
    await p.start()
    yield p
    await p.stop()


async def test_hello_welcome_then_trading_only_once_enabled(
    platform: FakePlatform, xt: SimpleNamespace, tmp_path: Path
) -> None:
    running = Running(Bridge(config(tmp_path, platform.url), xt=xt))
    try:
        session = await platform.session()
        hello = platform.hellos[0]
        assert (hello["bridge_id"], hello["account_id"], hello["channel"]) == ("desk1", ACCOUNT, "trading")
        await platform.push("connection", lambda b: b["qmt"] == "connected")
        refused = await platform.request(session, protocol.PLACE, place(OID))
        assert refused["error"]["code"] == protocol.TRADING_DISABLED and xt.broker.order_calls == []
        assert (await platform.request(session, protocol.SET_TRADING, {"enabled": True, "read_only": False}))["ok"]
        placed = await platform.request(session, protocol.PLACE, place(OID))
        assert placed == {"ok": True, "body": {"state": "placed", "order": None}}
        order = await platform.push("order", lambda b: b["order_id"] == OID)
        assert order["status"] == 50 and order["remark"] == OID[:24]
        xt.broker.fill(remark=OID[:24], price=10.0)
        trade = await platform.push("trade")
        assert (trade["order_id"], trade["qty"], trade["amount"]) == (OID, 100, "1000.00")
    finally:
        await running.close()


async def test_a_platform_disconnect_says_hello_again_and_keeps_the_orders(
    platform: FakePlatform, xt: SimpleNamespace, tmp_path: Path
) -> None:
    platform.trading = {"enabled": True, "read_only": False}
    running = Running(Bridge(config(tmp_path, platform.url), xt=xt))
    try:
        first = await platform.session()
        await platform.push("connection", lambda b: b["qmt"] == "connected")
        assert (await platform.request(first, protocol.PLACE, place(OID)))["body"]["state"] == "placed"
        await first.ws.close()
        second = await platform.session(number=2)
        assert len(platform.hellos) == 2 and second.welcome["session"] != first.welcome["session"]
        again = await platform.request(second, protocol.PLACE, place(OID))
        assert again["body"]["state"] == "known" and len(xt.broker.order_calls) == 1
        answer = await platform.request(second, protocol.QUERY_ORDER, {"order_id": OID})
        assert answer["body"]["known"] is True and answer["body"]["order"]["status"] == 50
    finally:
        await running.close()


async def test_a_forged_frame_closes_the_connection_unacted(
    platform: FakePlatform, xt: SimpleNamespace, tmp_path: Path
) -> None:
    platform.trading = {"enabled": True, "read_only": False}
    running = Running(Bridge(config(tmp_path, platform.url), xt=xt))
    try:
        first = await platform.session()
        forger = protocol.Channel("not-the-secret-at-all", first.welcome["session"], protocol.TO_BRIDGE)
        await first.ws.send(forger.seal(protocol.PLACE, place(OID), id_="x-1"))
        await asyncio.wait_for(first.closed.wait(), WAIT_S)
        assert first.close_code == protocol.PROTOCOL_CLOSE_CODE
        await platform.session(number=2)  # and it says hello again
        assert xt.broker.order_calls == []
        # a replayed genuine frame (an old seq) is refused the same way
        second = platform.sessions[-1]
        await platform.request(second, protocol.QUERY_ASSET, {})
        replay = protocol.Channel(SECRET, second.welcome["session"], protocol.TO_BRIDGE)
        await second.ws.send(replay.seal(protocol.PLACE, place(OID), id_="x-2"))  # seq 1 again
        await asyncio.wait_for(second.closed.wait(), WAIT_S)
        assert second.close_code == protocol.PROTOCOL_CLOSE_CODE and xt.broker.order_calls == []
    finally:
        await running.close()


async def test_a_wrong_welcome_signature_stops_the_bridge(xt: SimpleNamespace, tmp_path: Path) -> None:
    impostor = FakePlatform({"desk1": SECRET}, {"desk1": ACCOUNT}, forge_welcome=True)
    await impostor.start()
    try:
        bridge = Bridge(config(tmp_path, impostor.url), xt=xt)
        with pytest.raises(ForgedWelcome):
            await asyncio.wait_for(bridge.run(), WAIT_S)
        assert len(impostor.hellos) == 1  # it did not go on, nor try again
    finally:
        await impostor.stop()


async def test_a_refused_bridge_keeps_retrying_and_is_never_served(xt: SimpleNamespace, tmp_path: Path) -> None:
    other = FakePlatform({"desk1": "another-secret-0123456789"}, {"desk1": ACCOUNT})
    await other.start()
    running = Running(Bridge(config(tmp_path, other.url), xt=xt))
    try:
        await other.until(lambda: len(other.refusals) >= 2)
        assert other.sessions == [] and set(other.refusals) == {"the hello's signature is wrong"}
    finally:
        await running.close()
        await other.stop()


async def test_quotes_are_forwarded_on_their_own_channel(
    platform: FakePlatform, xt: SimpleNamespace, tmp_path: Path
) -> None:
    cfg = config(tmp_path, platform.url, quotes=True, quote_codes=("600000.SH",))
    running = Running(Bridge(cfg, xt=xt, xtdata=xt.xtdata))
    try:
        session = await platform.session("quotes")
        assert platform.hellos[-1]["channel"] in ("trading", "quotes")
        await platform.until(lambda: xt.broker.quote_subs)
        tick = {"time": 1765071000000, "lastPrice": 10.5, "volume": 12, "askPrice": [10.51], "askVol": [4]}
        xt.broker.feed_quotes({"600000.SH": tick, "000002.SZ": tick})
        frame = await platform.push("quotes")
        assert [(q["ts_code"], q["last"], q["ask"][0]) for q in frame["quotes"]] == [
            ("600000.SH", "10.500", ["10.510", 4])
        ]
        reply = await platform.request(session, protocol.SUBSCRIBE, {"codes": ["000002.SZ"]})
        assert reply == {"ok": True, "body": {"codes": ["000002.SZ"]}}
        xt.broker.feed_quotes({"600000.SH": tick, "000002.SZ": tick})
        later = await platform.push("quotes", lambda b: b["quotes"][0]["ts_code"] == "000002.SZ")
        assert len(later["quotes"]) == 1
    finally:
        await running.close()
