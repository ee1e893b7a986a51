"""The data service's real-time quotes through its bridge endpoint, under uvicorn on the real Redis and RabbitMQ: a
fake QMT bridge (websockets + bridge.qmt.protocol, as the bridge program speaks it) connects to /v1/bridge/quotes,
sends snapshots, and GET /v1/quotes/{code}/live answers them; bars.1m events carry the hand-worked bars; a forged
frame closes the socket, an unknown bridge is refused, and with Redis down the reads fail closed."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pandas as pd
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge.qmt import protocol
from services.data.app import create_app
from services.data.store import DataStore
from shared.platform.bus import create_bus
from shared.platform.clock import EXCHANGE_TZ, utcnow
from shared.platform.events.envelope import Envelope
from shared.platform.events.schemas import BarsMinute, QuotesSnapshot
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token, service_headers
from tests.integration.gateway.conftest import served

pytestmark = pytest.mark.integration

DAY = date(2025, 1, 2)  # the session after the demo market's last: the feed's "today"
BRIDGE_ID = "bridge-test"
SECRET = "bridge-secret-" + secrets.token_hex(8)


def at(hms: str) -> str:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(DAY.year, DAY.month, DAY.day, h, m, s, tzinfo=EXCHANGE_TZ).isoformat()


def snapshot(code: str, t: str, last: str, lots: int, amount: str, **kw: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "ts_code": code, "time": at(t), "last": last, "open": "10.02", "high": "10.05", "low": "9.98",
        "pre_close": "10.00", "amount": amount, "volume_lots": lots,
        "bid": [["9.99", 10], ["9.98", 20], ["9.97", 0], ["0", 0], ["0", 0]],
        "ask": [["10.00", 3], ["10.01", 4], ["0", 0], ["0", 0], ["0", 0]],
    }  # fmt: skip
    raw.update(kw)
    return raw


@pytest.fixture(scope="module")
async def service(backing: Any) -> AsyncIterator[dict[str, Any]]:
    settings = backing.settings(
        scope="rtquotes",
        demo_symbols=20,
        quotes_feed="bridge",
        qmt_bridge_secrets=f"{BRIDGE_ID}={SECRET},other-bridge=another-secret-value",
        quotes_bridges=BRIDGE_ID,  # other-bridge is known (its secret is) but may not feed quotes
        # The test's snapshots run from 09:30 to 09:45 while the clock stands at 09:29 (below): none is "future".
        quotes_max_skew_s=3600,
        # The market clock just before the session opens: the bar timer closes no minute of the test's own.
        market_clock="shifted",
        market_clock_at=datetime(DAY.year, DAY.month, DAY.day, 9, 29, tzinfo=EXCHANGE_TZ),
    )
    heard: list[Envelope] = []

    async def hear(event: Envelope) -> None:
        heard.append(event)

    listener = create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="test")
    await listener.start()
    await listener.subscribe("rt-test", ["quotes.snapshot", "bars.1m"], hear, durable=False)
    app = create_app(settings)
    try:
        async with (
            served(app) as hostport,
            httpx.AsyncClient(
                base_url=f"http://{hostport}", headers=service_headers(settings.internal_secret, "test")
            ) as client,
        ):
            securities = (await client.get("/v1/securities", params={"board": "main", "is_st": "false"})).json()
            codes = [s["ts_code"] for s in securities]
            await closed_at_ten(app.state.store, codes)
            yield {
                "host": hostport, "client": client, "heard": heard, "codes": codes, "app": app,
                "as": lambda service: service_headers(settings.internal_secret, service),
            }  # fmt: skip
    finally:
        await listener.close()


async def closed_at_ten(store: DataStore, codes: list[str]) -> None:
    """The demo market's last session (2024-12-31) with every code closing at 10.00: the day's band the snapshots
    of DAY are checked against is 9.00 .. 11.00 (main board, +-10%), the prices of the tests below."""
    frame = pd.DataFrame(
        {
            "ts_code": codes, "trade_date": ["20241231"] * len(codes), "open": [10.0] * len(codes),
            "high": [10.0] * len(codes), "low": [10.0] * len(codes), "close": [10.0] * len(codes),
            "pre_close": [10.0] * len(codes), "change": [0.0] * len(codes), "pct_chg": [0.0] * len(codes),
            "vol": [1000.0] * len(codes), "amount": [1000.0] * len(codes), "adj_factor": [1.0] * len(codes),
        }
    )  # fmt: skip
    await store.upsert_daily_bars(frame)


async def open_bridge(host: str, bridge_id: str = BRIDGE_ID, secret: str = SECRET) -> tuple[ClientConnection, Any]:
    """Connect as the bridge program does; the socket and the first message after the hello."""
    ws = await connect(f"ws://{host}/v1/bridge/quotes", open_timeout=10, max_size=None)
    challenge = json.loads(await ws.recv())
    assert challenge["type"] == "challenge"
    hello = protocol.hello(
        secret, bridge_id=bridge_id, account_id="acct-1", channel="quotes", server_nonce=challenge["nonce"],
        now=utcnow(),
    )  # fmt: skip
    await ws.send(json.dumps(hello))
    answer = json.loads(await ws.recv())
    return ws, (hello, answer)


async def authenticated(host: str) -> tuple[ClientConnection, protocol.Channel]:
    ws, (hello, welcome) = await open_bridge(host)
    assert welcome["type"] == "welcome"
    assert protocol.check_welcome(SECRET, welcome, bridge_id=BRIDGE_ID, nonce=hello["nonce"])
    channel = protocol.Channel(secret=SECRET, session=welcome["session"], outgoing=protocol.TO_PLATFORM)
    type_, id_, body = channel.open(await ws.recv())
    assert (type_, body) == (protocol.SUBSCRIBE, {"codes": ["*"]})  # the whole market, by default
    await ws.send(channel.seal(protocol.REPLY, protocol.ok({"codes": ["*"]}), id_=id_))
    return ws, channel


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polling what another connection delivers
            await asyncio.sleep(0.05)


async def test_snapshots_from_a_bridge_are_served_live_and_build_bars(service: dict[str, Any]) -> None:
    client: httpx.AsyncClient = service["client"]
    code, other = service["codes"][:2]
    before = await client.get(f"/v1/quotes/{code}/live")
    assert before.status_code == 404 and before.json()["code"] == "no_live_quote"

    ws, channel = await authenticated(service["host"])
    try:
        rounds = [
            [snapshot(code, "09:30:03", "10.05", 150, "150450.00"), snapshot(other, "09:30:03", "10.00", 5, "5000.00")],
            [snapshot(code, "09:30:50", "9.98", 180, "180390.00"), snapshot("600001.SH", "09:30:50", "10.00", 1, "1000.00")],
            [snapshot(code, "09:31:01", "10.00", 200, "200390.00", ask=[["10.001", 1]])],  # off the tick: dropped
            [snapshot(code, "09:31:02", "10.00", 200, "200390.00")],
        ]  # fmt: skip
        for quotes in rounds:
            await ws.send(channel.seal(protocol.QUOTES, {"quotes": quotes}))

        async def latest() -> dict[str, Any]:
            return dict((await client.get(f"/v1/quotes/{code}/live")).json())

        got: dict[str, Any] = {}

        async def arrived() -> None:
            for _ in range(200):
                got.update(await latest())
                if got.get("time") == at("09:31:02"):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"the last snapshot never arrived: {got}")

        await arrived()
    finally:
        await ws.close()
    # The snapshot of 09:31:02 as it was sent, in exact units: 200 lots are 20,000 shares.
    assert (got["last"], got["volume"], got["amount"], got["pre_close"]) == ("10.00", 20_000, "200390.00", "10.00")
    assert got["bid"] == [{"price": "9.99", "volume": 1000}, {"price": "9.98", "volume": 2000}]
    assert got["ask"] == [{"price": "10.00", "volume": 300}, {"price": "10.01", "volume": 400}]
    assert (got["limit_up"], got["limit_down"]) == ("11.00", "9.00")  # main board, pre_close 10.00: +-10%
    assert got["as_of"] == got["time"] and got["age_s"] >= 0 and got["source"] == "bridge"

    heard: list[Envelope] = service["heard"]
    await until(lambda: any(e.type == "bars.1m" for e in heard))
    [bars_event] = [e for e in heard if e.type == "bars.1m"]
    payload = bars_event.parsed()
    assert isinstance(payload, BarsMinute)
    [bar] = [b for b in payload.bars if b.ts_code == code]
    # The 09:30 bar, closed by the 09:31:02 snapshot: O 10.05 H 10.05 L 9.98 C 9.98; 18,000 shares; 180,390.00 CNY.
    assert (bar.minute.isoformat(), bar.open, bar.high, bar.low, bar.close, bar.volume, bar.amount) == (
        at("09:30:00"), Decimal("10.05"), Decimal("10.05"), Decimal("9.98"), Decimal("9.98"), 18_000,
        Decimal("180390.00"),
    )  # fmt: skip
    snapshots = [e.parsed() for e in heard if e.type == "quotes.snapshot"]
    assert all(isinstance(s, QuotesSnapshot) for s in snapshots)
    # One event per round that had a good quote: the round of the off-tick snapshot alone published nothing.
    assert [[q.ts_code for q in s.quotes] for s in snapshots] == [[code, other], [code], [code]]  # type: ignore[attr-defined]

    bars = (await client.get(f"/v1/quotes/{code}/bars", params={"freq": "1m"})).json()
    assert bars["day"] == DAY.isoformat() and [b["minute"] for b in bars["bars"]] == [at("09:30:00")]
    assert (bars["bars"][0]["volume"], bars["bars"][0]["amount"]) == (18_000, "180390.00")
    assert (await client.get(f"/v1/quotes/{code}/bars", params={"freq": "5m"})).status_code == 422

    metrics = (await client.get("/metrics")).text
    assert 'lh_quotes_rejected_total{reason="unknown_code"} 1.0' in metrics
    assert 'lh_quotes_rejected_total{reason="off_tick"} 1.0' in metrics
    assert 'lh_quotes_received_total{source="bridge"} 6.0' in metrics
    assert "lh_quotes_snapshot_age_seconds" in metrics


async def test_unknown_and_malformed_codes_on_the_read(service: dict[str, Any]) -> None:
    client: httpx.AsyncClient = service["client"]
    unknown = await client.get("/v1/quotes/600001.SH/live")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_security"
    bad = await client.get("/v1/quotes/60000X.SH/live")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_ts_code"


async def test_several_codes_live_in_one_read(service: dict[str, Any]) -> None:
    client: httpx.AsyncClient = service["client"]
    first, second, unquoted = service["codes"][4:7]
    ws, channel = await authenticated(service["host"])
    try:
        quotes = [
            snapshot(first, "09:35:00", "10.03", 10, "10030.00"),
            snapshot(second, "09:35:00", "9.99", 2, "1998.00"),
        ]
        await ws.send(channel.seal(protocol.QUOTES, {"quotes": quotes}))
        for _ in range(200):
            if (await client.get(f"/v1/quotes/{second}/live")).status_code == 200:
                break
            await asyncio.sleep(0.05)
    finally:
        await ws.close()
    answer = await client.get("/v1/quotes/live", params={"codes": f"{second},{unquoted},{first},{first}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # by code, each once, as the single read answers it; the code no feed quoted is listed as missing
    assert [(q["ts_code"], q["last"], q["time"]) for q in body["quotes"]] == sorted(
        [(first, "10.03", at("09:35:00")), (second, "9.99", at("09:35:00"))]
    )
    assert body["missing"] == [unquoted]
    single = (await client.get(f"/v1/quotes/{first}/live")).json()
    bulk_first = next(q for q in body["quotes"] if q["ts_code"] == first)
    assert {k: v for k, v in bulk_first.items() if k != "age_s"} == {k: v for k, v in single.items() if k != "age_s"}


@pytest.mark.parametrize(
    ("codes", "says"),
    [("", "codes: give at least one code"), ("600000.SH,60000X.SH", "codes: "), (None, "codes")],
)
async def test_a_bad_bulk_read_is_refused_naming_codes(service: dict[str, Any], codes: str | None, says: str) -> None:
    params = {} if codes is None else {"codes": codes}
    answer = await service["client"].get("/v1/quotes/live", params=params)
    assert answer.status_code == 422 and answer.json()["code"] in ("invalid_request", "validation_error"), answer.text
    assert says in answer.text


async def test_a_bulk_read_of_over_500_codes_is_refused(service: dict[str, Any]) -> None:
    codes = ",".join(f"{600000 + i:06d}.SH" for i in range(501))
    answer = await service["client"].get("/v1/quotes/live", params={"codes": codes})
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_request", answer.text
    assert "codes: 501 codes, at most 500" in answer.json()["message"]


async def test_a_forged_frame_closes_the_connection(service: dict[str, Any]) -> None:
    client: httpx.AsyncClient = service["client"]
    code = service["codes"][2]
    ws, channel = await authenticated(service["host"])
    text = channel.seal(protocol.QUOTES, {"quotes": [snapshot(code, "09:30:10", "10.01", 1, "1001.00")]})
    head, body = text.split("\n", 1)
    assert '"last":"10.01"' in body
    await ws.send(head + "\n" + body.replace('"last":"10.01"', '"last":"10.02"'))  # changed after signing
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert ws.close_code == protocol.PROTOCOL_CLOSE_CODE
    # Nothing of it was stored.
    assert (await client.get(f"/v1/quotes/{code}/live")).json()["code"] == "no_live_quote"


async def test_a_replayed_frame_closes_the_connection(service: dict[str, Any]) -> None:
    code = service["codes"][3]
    ws, channel = await authenticated(service["host"])
    text = channel.seal(protocol.QUOTES, {"quotes": [snapshot(code, "09:30:10", "10.01", 1, "1001.00")]})
    await ws.send(text)
    await ws.send(text)  # the same seq again
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert ws.close_code == protocol.PROTOCOL_CLOSE_CODE


@pytest.mark.parametrize(
    ("bridge_id", "secret", "code"),
    [("nobody", SECRET, "unknown_bridge"), (BRIDGE_ID, "not-the-secret-at-all", "bad_hello")],
    ids=["unknown-bridge", "wrong-secret"],  # fixed ids: the secret is random per run, and xdist's workers compare ids
)
async def test_an_unknown_bridge_or_a_wrong_secret_is_refused(
    service: dict[str, Any], bridge_id: str, secret: str, code: str
) -> None:
    ws, (_, answer) = await open_bridge(service["host"], bridge_id, secret)
    assert answer == {"type": "refused", "code": code, "message": answer["message"]}
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == protocol.REFUSED_CLOSE_CODE
    metrics = (await service["client"].get("/metrics")).text
    assert f'lh_quotes_bridge_refused_total{{code="{code}"}} 1.0' in metrics


async def test_with_redis_down_the_reads_fail_closed(backing: Any) -> None:
    settings = backing.settings(
        scope="rtquotes", redis_url="redis://127.0.0.1:1/0", demo_symbols=20, quotes_feed="bridge"
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://data",
            headers=service_headers(settings.internal_secret, "test"),
        ) as client,
    ):
        code = (await client.get("/v1/securities", params={"board": "main"})).json()[0]["ts_code"]
        live = await client.get(f"/v1/quotes/{code}/live")
        bars = await client.get(f"/v1/quotes/{code}/bars")
        bulk = await client.get("/v1/quotes/live", params={"codes": code})
    assert live.status_code == 503 and live.json()["code"] == "quotes_unavailable"
    assert bulk.status_code == 503 and bulk.json()["code"] == "quotes_unavailable"
    assert bars.status_code == 503 and bars.json()["code"] == "quotes_unavailable"


async def test_the_bridge_programs_quote_feed_reaches_the_live_quote(service: dict[str, Any]) -> None:
    """The bridge program's own pieces (bridge/qmt: its platform link and quote feed, on the fake xtdata of
    tests/support/qmt) against the data service: the subscription the data service sends reaches xtdata, and a
    whole-market push (a stock, an index, a fund) becomes the stock's live quote."""
    from bridge.qmt.platform import PlatformLink
    from bridge.qmt.quotes import QuoteFeed
    from tests.support.qmt.loader import fake_xtquant

    client: httpx.AsyncClient = service["client"]
    code = service["codes"][4]
    with fake_xtquant() as xt:
        link = PlatformLink(
            url=f"ws://{service['host']}/v1/bridge/quotes", channel="quotes", bridge_id=BRIDGE_ID,
            account_id="acct-1", secret=SECRET, handler=None,  # type: ignore[arg-type]
            reconnect_initial_s=0.05, reconnect_max_s=0.2,
        )  # fmt: skip
        feed = QuoteFeed((), link.push, xt.xtdata)
        link.handler = feed.handle
        feed.attach(asyncio.get_running_loop())
        task = asyncio.create_task(link.run())
        try:
            await until(lambda: bool(xt.broker.quote_subs))  # the data service's subscribe ["*"]: the whole market
            assert feed.codes == ["*"]
            tick = {
                "time": int(datetime.fromisoformat(at("09:45:00")).timestamp() * 1000), "lastPrice": 10.12,
                "open": 10.0, "high": 10.2, "low": 9.9, "lastClose": 10.0, "amount": 1012000.0, "volume": 1000,
                "bidPrice": [10.11, 10.1, 0.0, 0.0, 0.0], "bidVol": [3, 4, 0, 0, 0],
                "askPrice": [10.12, 10.13, 10.14, 0.0, 0.0], "askVol": [5, 6, 7, 0, 0],
            }  # fmt: skip
            xt.broker.feed_quotes({code: tick, "000001.SH": tick, "510300.SH": tick})
            got: dict[str, Any] = {}
            async with asyncio.timeout(10):
                while got.get("time") != at("09:45:00"):
                    got = (await client.get(f"/v1/quotes/{code}/live")).json()
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert (got["last"], got["open"], got["high"], got["low"], got["pre_close"]) == (
        "10.12", "10.00", "10.20", "9.90", "10.00",
    )  # fmt: skip
    assert (got["volume"], got["amount"]) == (100_000, "1012000.00")  # 1,000 lots
    assert got["bid"] == [{"price": "10.11", "volume": 300}, {"price": "10.10", "volume": 400}]
    assert [a["price"] for a in got["ask"]] == ["10.12", "10.13", "10.14"]
    metrics = (await client.get("/metrics")).text
    assert 'lh_quotes_rejected_total{reason="not_a_stock"}' not in metrics  # the index and the fund: left alone


async def test_a_tick_outside_the_days_band_is_dropped_and_the_next_good_one_taken(service: dict[str, Any]) -> None:
    client: httpx.AsyncClient = service["client"]
    code = service["codes"][7]  # stored close 10.00: the band is 9.00 .. 11.00
    ws, channel = await authenticated(service["host"])
    try:
        bad = snapshot(code, "09:40:00", "11.01", 10, "11010.00", high="11.01")  # a fen above the limit-up
        good = snapshot(code, "09:40:03", "10.50", 11, "11515.00", high="10.50")
        await ws.send(channel.seal(protocol.QUOTES, {"quotes": [bad]}))
        await ws.send(channel.seal(protocol.QUOTES, {"quotes": [good]}))
        got: dict[str, Any] = {}
        async with asyncio.timeout(10):
            while got.get("time") != at("09:40:03"):
                got = (await client.get(f"/v1/quotes/{code}/live")).json()
                await asyncio.sleep(0.05)
    finally:
        await ws.close()
    assert (got["last"], got["volume"], got["limit_up"], got["limit_down"]) == ("10.50", 1_100, "11.00", "9.00")
    heard: list[Envelope] = service["heard"]
    published = [q for e in heard if e.type == "quotes.snapshot" for q in e.payload["quotes"] if q["ts_code"] == code]
    assert [q["last"] for q in published] == ["10.50"]  # the bad tick was never published
    metrics = (await client.get("/metrics")).text
    assert 'lh_quotes_rejected_total{reason="outside_limits"} 1.0' in metrics


async def test_a_known_bridge_not_allowed_to_feed_quotes_is_refused(service: dict[str, Any]) -> None:
    """other-bridge holds a secret here (LH_QMT_BRIDGE_SECRETS) and signs its hello right, but LH_QUOTES_BRIDGES
    names only bridge-test: refused before any frame, 4403 `quotes_not_allowed`."""
    ws, (_, answer) = await open_bridge(service["host"], "other-bridge", "another-secret-value")
    assert answer == {"type": "refused", "code": "quotes_not_allowed", "message": answer["message"]}
    assert "LH_QUOTES_BRIDGES" in answer["message"]
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert (ws.close_code, ws.close_reason) == (protocol.REFUSED_CLOSE_CODE, "quotes_not_allowed")
    metrics = (await service["client"].get("/metrics")).text
    assert 'lh_quotes_bridge_refused_total{code="quotes_not_allowed"} 1.0' in metrics


async def test_without_lh_quotes_bridges_no_bridge_may_feed_quotes(
    backing: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = backing.settings(
        scope="rtquotes", demo_symbols=20, quotes_feed="bridge", qmt_bridge_secrets=f"{BRIDGE_ID}={SECRET}"
    )  # quotes_bridges left at its default: none
    assert settings.quotes_bridges == ""
    app = create_app(settings)
    with caplog.at_level("WARNING", logger="services.data.realtime.bridge"):
        async with served(app) as hostport:
            ws, (_, answer) = await open_bridge(hostport)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
    assert answer["type"] == "refused" and answer["code"] == "quotes_not_allowed"
    assert ws.close_code == protocol.REFUSED_CLOSE_CODE
    [line] = [r for r in caplog.records if r.getMessage() == "quotes bridge refused"]
    assert (line.code, line.bridge_id) == ("quotes_not_allowed", BRIDGE_ID)  # type: ignore[attr-defined]
    assert SECRET not in caplog.text  # the secret is never logged


# --- ticks of the watched codes (subscribe_ticks) ------------------------------------------------------------------


def xt_tick(hms: str, last: float, lots: int, amount: float) -> dict[str, Any]:
    """An xtdata record (a tick, or one code of a whole-market push) at `hms` of DAY, within the 9.00 .. 11.00 band."""
    return {
        "time": int(datetime.fromisoformat(at(hms)).timestamp() * 1000), "lastPrice": last, "open": 10.0,
        "high": 10.3, "low": 9.9, "lastClose": 10.0, "amount": amount, "volume": lots,
        "bidPrice": [last - 0.01, 0.0, 0.0, 0.0, 0.0], "bidVol": [3, 0, 0, 0, 0],
        "askPrice": [last, 0.0, 0.0, 0.0, 0.0], "askVol": [5, 0, 0, 0, 0],
    }  # fmt: skip


async def live_time(client: httpx.AsyncClient, code: str) -> str | None:
    answer = (await client.get(f"/v1/quotes/{code}/live")).json()
    return answer.get("time")


async def live_at(client: httpx.AsyncClient, code: str, hms: str) -> dict[str, Any]:
    """The code's live quote once it is the one of `hms` (waited for, up to 10 s)."""
    async with asyncio.timeout(10):
        while True:
            answer: dict[str, Any] = (await client.get(f"/v1/quotes/{code}/live")).json()
            if answer.get("time") == at(hms):
                return answer
            await asyncio.sleep(0.05)


async def test_watched_codes_ticks_go_live_stop_when_unwatched_and_resubscribe_after_a_reconnect(
    service: dict[str, Any],
) -> None:
    """The bridge program's quote feed on the fake xtdata against the data service: the codes a service watches
    (PUT /v1/quotes/watch) are subscribed tick by tick at xtdata; a tick is live before the next whole-market push;
    a code no longer watched is unsubscribed and its ticks stop; after the bridge reconnects (MiniQMT restarted and
    the platform link re-made) the codes are subscribed again and their ticks flow."""
    from bridge.qmt.platform import PlatformLink
    from bridge.qmt.quotes import QuoteFeed
    from tests.support.qmt.loader import fake_xtquant

    client: httpx.AsyncClient = service["client"]
    execution = service["as"]("execution")
    a, b = service["codes"][8:10]  # quoted by no other test here
    watched = await client.put(
        "/v1/quotes/watch", json={"owner": "execution:test:1", "codes": [b, a]}, headers=execution
    )
    assert watched.status_code == 200, watched.text
    assert (watched.json()["codes"], watched.json()["ticked"]) == (sorted([a, b]), 2)

    def start_link(feed: QuoteFeed) -> asyncio.Task[None]:
        link = PlatformLink(
            url=f"ws://{service['host']}/v1/bridge/quotes", channel="quotes", bridge_id=BRIDGE_ID,
            account_id="acct-1", secret=SECRET, handler=feed.handle,
            on_welcome=lambda welcome: feed.resubscribe(), reconnect_initial_s=0.05, reconnect_max_s=0.2,
        )  # fmt: skip
        feed.push = link.push
        return asyncio.create_task(link.run())

    with fake_xtquant() as xt:
        feed = QuoteFeed((), lambda t, body: None, xt.xtdata)
        feed.attach(asyncio.get_running_loop())
        task = start_link(feed)
        try:
            await until(lambda: xt.broker.tick_codes() == sorted([a, b]) and bool(xt.broker.quote_subs))
            # a whole-market push of 09:50:00, then a tick of a at 09:50:03 and nothing else: live at once
            xt.broker.feed_quotes({a: xt_tick("09:50:00", 10.10, 100, 101000.0), b: xt_tick("09:50:00", 10.20, 50,
                                   51000.0)})  # fmt: skip
            await live_at(client, b, "09:50:00")
            xt.broker.feed_ticks({a: xt_tick("09:50:03", 10.12, 120, 121240.0)})
            got = await live_at(client, a, "09:50:03")
            # 120 lots = 12,000 shares; 101000 + 20 lots at 10.12 (20,240) = 121,240.00
            assert (got["last"], got["volume"], got["amount"]) == ("10.12", 12_000, "121240.00")
            # the whole-market push of 09:50:00 arriving again late changes nothing (and is not refused)
            xt.broker.feed_quotes({a: xt_tick("09:50:02", 10.11, 110, 111110.0)})

            # b no longer watched: unsubscribed at xtdata; its ticks stop while a's still come
            assert (
                await client.put(
                    "/v1/quotes/watch", json={"owner": "execution:test:1", "codes": [a]}, headers=execution
                )
            ).status_code == 200
            await until(lambda: xt.broker.tick_codes() == [a])
            xt.broker.feed_ticks({a: xt_tick("09:50:06", 10.13, 130, 131370.0), b: xt_tick("09:50:06", 10.25, 60,
                                  61250.0)})  # fmt: skip
            await live_at(client, a, "09:50:06")
            assert await live_time(client, b) == at("09:50:00")

            # MiniQMT restarts (its subscriptions gone) and the bridge's platform link is re-made: subscribed again
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            xt.broker.restart()
            assert xt.broker.tick_codes() == []
            task = start_link(feed)
            await until(lambda: xt.broker.tick_codes() == [a])
            xt.broker.feed_ticks({a: xt_tick("09:50:09", 10.14, 140, 141510.0)})
            await live_at(client, a, "09:50:09")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.put("/v1/quotes/watch", json={"owner": "execution:test:1", "codes": []}, headers=execution)
    metrics = (await client.get("/metrics")).text
    assert 'lh_quotes_rejected_total{reason="stale"} 0.0' in metrics  # the late push superseded, not refused


async def test_the_watch_refuses_bad_input_and_lists_the_leases(service: dict[str, Any]) -> None:
    client: httpx.AsyncClient = service["client"]
    gateway = service["as"]("gateway")
    code = service["codes"][6]  # watched only, never quoted
    for body, says in (
        ({"owner": "gw:1", "codes": ["600000"]}, "codes"),
        ({"owner": "gw:1", "codes": [code], "extra": True}, "extra"),
        ({"owner": "gw 1", "codes": [code]}, "owner"),
        ({"owner": "gw:1", "codes": [code] * 301}, "codes"),
    ):
        answer = await client.put("/v1/quotes/watch", json=body, headers=gateway)
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_request", answer.text
        assert says in answer.text
    assert "gateway:gw:1" not in (await client.get("/v1/quotes/watch")).json()["owners"]  # nothing stored
    put = await client.put("/v1/quotes/watch", json={"owner": "gw:1", "codes": [code], "ttl_s": 10}, headers=gateway)
    assert put.json()["owner"] == "gateway:gw:1"  # under the caller's service name
    listed = (await client.get("/v1/quotes/watch")).json()
    assert listed["owners"]["gateway:gw:1"] == [code] and code in listed["codes"]
    # 11 s on, the 10 s lease has lapsed (read in Redis as of then): dropped from the store
    live = service["app"].state.live_store
    assert "gateway:gw:1" not in await live.watches(time.time() + 11)
    assert "gateway:gw:1" not in (await client.get("/v1/quotes/watch")).json()["owners"]
    await client.put("/v1/quotes/watch", json={"owner": "gw:1", "codes": []}, headers=gateway)
    assert code not in (await client.get("/v1/quotes/watch")).json()["codes"]


async def test_only_execution_and_the_gateway_lease_codes_each_under_its_own_name(service: dict[str, Any]) -> None:
    """A user's token (even an admin's), another service or no token cannot PUT a lease; the owner a service sends
    is stored under its own name, so the gateway cannot replace execution's lease nor take its priority."""
    client: httpx.AsyncClient = service["client"]
    secret = service["app"].state.settings.internal_secret
    first = service["codes"][6]  # watched only, never quoted
    admin = {INTERNAL_HEADER: mint_internal_token(secret, Principal("alice", "admin"))}
    svc_named_user = {INTERNAL_HEADER: mint_internal_token(secret, Principal("svc:execution", "admin"))}
    body = {"owner": "execution:auth:1", "codes": [first]}
    for headers, status, code in (
        (admin, 403, "forbidden"),
        (svc_named_user, 403, "forbidden"),  # a user's role under a service's name is still a user
        (service["as"]("strategy"), 403, "forbidden"),
        (service["as"]("risk"), 403, "forbidden"),
        ({INTERNAL_HEADER: ""}, 401, "unauthenticated"),
    ):
        refused = await client.put("/v1/quotes/watch", json=body, headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (status, code), headers
    owners = (await client.get("/v1/quotes/watch")).json()["owners"]
    assert not [owner for owner in owners if "auth:1" in owner]  # nothing stored

    execution, gateway = service["as"]("execution"), service["as"]("gateway")
    try:
        held = await client.put("/v1/quotes/watch", json=body, headers=execution)
        assert (held.status_code, held.json()["owner"]) == (200, "execution:auth:1")
        # the gateway naming execution's owner to blank it gets a lease of its own; execution's stays as it was
        claimed = await client.put("/v1/quotes/watch", json={"owner": "execution:auth:1", "codes": []}, headers=gateway)
        assert (claimed.status_code, claimed.json()["owner"]) == (200, "gateway:execution:auth:1")
        owners = (await client.get("/v1/quotes/watch")).json()["owners"]
        assert owners["execution:auth:1"] == [first] and owners["gateway:execution:auth:1"] == []
    finally:
        await client.put("/v1/quotes/watch", json={"owner": "auth:1", "codes": []}, headers=execution)
        await client.put("/v1/quotes/watch", json={"owner": "execution:auth:1", "codes": []}, headers=gateway)


async def test_a_service_holds_a_bounded_number_of_leases(
    service: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over MAX_OWNERS_PER_SERVICE (64; 2 more than the gateway holds now, here) a new owner is 409; renewing a
    held one is not a new owner; the limit is per service."""
    from services.data.realtime import watch

    client: httpx.AsyncClient = service["client"]
    gateway = service["as"]("gateway")
    code = service["codes"][6]  # watched only, never quoted
    leases = await client.get("/v1/quotes/watch")
    held = len([o for o in leases.json()["owners"] if o.startswith("gateway:")])  # other tests' lapsing leases
    monkeypatch.setattr(watch, "MAX_OWNERS_PER_SERVICE", held + 2)
    try:
        for owner in ("cap:1", "cap:2"):
            assert (await client.put("/v1/quotes/watch", json={"owner": owner, "codes": [code]},
                                     headers=gateway)).status_code == 200  # fmt: skip
        third = await client.put("/v1/quotes/watch", json={"owner": "cap:3", "codes": [code]}, headers=gateway)
        assert (third.status_code, third.json()["code"]) == (409, "too_many_watch_owners")
        assert "gateway:cap:3" not in (await client.get("/v1/quotes/watch")).json()["owners"]
        # renewing one held is not a new owner: still 200; execution's count is its own
        assert (await client.put("/v1/quotes/watch", json={"owner": "cap:2", "codes": []},
                                 headers=gateway)).status_code == 200  # fmt: skip
        assert (await client.put("/v1/quotes/watch", json={"owner": "cap:1", "codes": [code]},
                                 headers=service["as"]("execution"))).status_code == 200  # fmt: skip
    finally:
        for owner in ("cap:1", "cap:2"):
            await client.put("/v1/quotes/watch", json={"owner": owner, "codes": [], "ttl_s": 10}, headers=gateway)
        await client.put("/v1/quotes/watch", json={"owner": "cap:1", "codes": [], "ttl_s": 10},
                         headers=service["as"]("execution"))  # fmt: skip


async def test_the_data_status_names_the_bridges_connected_now(service: dict[str, Any]) -> None:
    # GET /v1/data/status (docs/data-ingest.md): the feed's mode and the quote bridges connected to this process
    client: httpx.AsyncClient = service["client"]

    async def bridges() -> list[str]:
        answer = await client.get("/v1/data/status")
        assert answer.status_code == 200, answer.text
        feed = answer.json()["feed"]
        assert feed["mode"] == "bridge"
        return list(feed["bridges"])

    async def until_bridges(wanted: list[str]) -> None:
        async with asyncio.timeout(10):
            while await bridges() != wanted:  # noqa: ASYNC110 - polling what the service sees of another connection
                await asyncio.sleep(0.05)

    await until_bridges([])  # an earlier test's connection is gone once the service has seen it close
    ws, _channel = await authenticated(service["host"])
    try:
        await until_bridges([BRIDGE_ID])
        # a bridge that may not feed quotes is refused and never listed
        refused, (_, answer) = await open_bridge(service["host"], "other-bridge", "another-secret-value")
        await refused.close()
        assert answer["type"] == "refused" and await bridges() == [BRIDGE_ID]
    finally:
        await ws.close()
    await until_bridges([])
