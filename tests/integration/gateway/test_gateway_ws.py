"""`/ws` under uvicorn: events published on the real RabbitMQ reach the sockets of the account they belong to."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.app import create_app
from gateway.security import new_api_key
from shared.platform.app import Infra
from shared.platform.bus import EventBus, create_bus
from shared.platform.cache import create_cache
from shared.platform.events.envelope import Envelope, make_event
from shared.platform.events.schemas import (
    BacktestFinished,
    BacktestProgress,
    LiveQuote,
    OrderUpdated,
    QuoteLevel,
    QuotesSnapshot,
)
from shared.platform.http import ServiceDirectory
from shared.platform.roles import Role

pytestmark = pytest.mark.integration


def order_filled(account_id: str, order_id: str) -> Envelope:
    payload = OrderUpdated(
        order_id=order_id,
        client_order_id="c-" + order_id,
        account_id=account_id,
        ts_code="000001.SZ",
        side="buy",
        order_type="limit",
        qty=300,
        price=Decimal("11.20"),
        status="filled",
        filled_qty=300,
        avg_fill_price=Decimal("11.20"),
        updated_at=datetime(2024, 3, 1, 2, 30, tzinfo=UTC),
    )
    return make_event("order.filled", payload, source="execution")


@pytest.fixture(scope="module")
async def live(gw_settings: Any, serve_app: Any) -> AsyncIterator[dict[str, Any]]:
    """A gateway under uvicorn, an HTTP client for it, and a bus to publish on as the execution service would."""
    infra = Infra(
        settings=gw_settings,
        bus=create_bus(gw_settings.amqp_url, namespace=gw_settings.bus_namespace, source="gateway"),
        cache=create_cache(gw_settings.redis_url),
        services=ServiceDirectory(gw_settings),
        shared=False,
    )
    publisher = create_bus(gw_settings.amqp_url, namespace=gw_settings.bus_namespace, source="execution")
    await publisher.start()
    try:
        app = create_app(gw_settings, infra)
        async with (
            serve_app(app) as hostport,
            httpx.AsyncClient(base_url=f"http://{hostport}") as client,
        ):
            yield {"host": hostport, "client": client, "bus": publisher, "settings": gw_settings, "app": app}
    finally:
        await publisher.close()


async def token_for(live: dict[str, Any], role: str, username: str, *, account_id: str | None = None) -> str:
    client: httpx.AsyncClient = live["client"]
    settings = live["settings"]
    admin_login = {"username": settings.admin_username, "password": settings.admin_password}
    admin = (await client.post("/api/v1/auth/token", data=admin_login)).json()["access_token"]
    body: dict[str, Any] = {"username": username, "password": "password-123", "role": role}
    if account_id:
        body["account_id"] = account_id
    created = await client.post("/api/v1/users", json=body, headers={"Authorization": f"Bearer {admin}"})
    assert created.status_code == 201, created.text
    login = await client.post("/api/v1/auth/token", data={"username": username, "password": "password-123"})
    return str(login.json()["access_token"])


async def open_socket(live: dict[str, Any], query: str) -> ClientConnection:
    ws = await connect(f"ws://{live['host']}/ws?{query}", open_timeout=10)
    hello = json.loads(await ws.recv())
    assert hello["type"] == "ws.connected"
    return ws


async def test_each_user_receives_only_their_accounts_events(live: dict[str, Any]) -> None:
    suffix = datetime.now(UTC).strftime("%H%M%S%f")
    alice_token = await token_for(live, "trader", f"alice-{suffix}", account_id=f"acct-a-{suffix}")
    bob_token = await token_for(live, "viewer", f"bob-{suffix}")
    root_token = await token_for(live, "admin", f"root-{suffix}")
    bus: EventBus = live["bus"]

    alice = await open_socket(live, f"token={alice_token}")
    bob = await open_socket(live, f"token={bob_token}")
    root = await open_socket(live, f"token={root_token}")
    try:
        for_bob = order_filled(f"bob-{suffix}", "o-bob")  # bob's account defaults to his username
        for_alice = order_filled(f"acct-a-{suffix}", "o-alice")
        await bus.publish(for_bob)
        await bus.publish(for_alice)

        # One queue per socket, in publish order: had bob's event reached alice, it would come first.
        got_alice = json.loads(await alice.recv())
        assert got_alice["id"] == for_alice.id
        assert got_alice["type"] == "order.filled"
        assert got_alice["payload"]["account_id"] == f"acct-a-{suffix}"
        assert got_alice["payload"]["avg_fill_price"] == "11.20"
        assert set(got_alice) >= {"id", "type", "occurred_at", "source", "payload"}

        assert json.loads(await bob.recv())["id"] == for_bob.id
        # The admin sees both, in order.
        assert [json.loads(await root.recv())["id"] for _ in range(2)] == [for_bob.id, for_alice.id]

        # A later event of bob's is the next thing bob gets: alice's never reached his socket.
        second_for_bob = order_filled(f"bob-{suffix}", "o-bob-2")
        await bus.publish(second_for_bob)
        assert json.loads(await bob.recv())["id"] == second_for_bob.id
    finally:
        for ws in (alice, bob, root):
            await ws.close()


async def test_api_key_in_the_query_opens_the_stream(live: dict[str, Any]) -> None:
    suffix = datetime.now(UTC).strftime("%H%M%S%f")
    token = await token_for(live, "viewer", f"carol-{suffix}")
    client: httpx.AsyncClient = live["client"]
    created = await client.post("/api/v1/api-keys", json={"name": "ws"}, headers={"Authorization": f"Bearer {token}"})
    api_key = created.json()["api_key"]

    ws = await open_socket(live, f"api_key={api_key}")
    try:
        event = order_filled(f"carol-{suffix}", "o-carol")
        await live["bus"].publish(event)
        assert json.loads(await ws.recv())["id"] == event.id
    finally:
        await ws.close()


async def test_an_api_key_streams_with_its_own_role_and_not_after_it_expires(live: dict[str, Any]) -> None:
    suffix = datetime.now(UTC).strftime("%H%M%S%f")
    boss = f"boss-{suffix}"
    token = await token_for(live, "admin", boss)
    client: httpx.AsyncClient = live["client"]
    auth = {"Authorization": f"Bearer {token}"}
    created = await client.post("/api/v1/api-keys", json={"name": "ws", "role": "viewer"}, headers=auth)
    assert created.status_code == 201, created.text

    # The admin's viewer key sees only the admin's own account, not everyone's as the admin does.
    ws = await open_socket(live, f"api_key={created.json()['api_key']}")
    try:
        someone_elses, own = order_filled(f"other-{suffix}", "o-other"), order_filled(boss, "o-boss")
        await live["bus"].publish(someone_elses)
        await live["bus"].publish(own)
        assert json.loads(await ws.recv())["id"] == own.id
    finally:
        await ws.close()

    key = new_api_key()
    await live["app"].state.store.create_api_key(
        boss, "old", key.key_id, key.secret_hash, role=Role.ADMIN, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    expired = await connect(f"ws://{live['host']}/ws?api_key={key.token}", open_timeout=10)
    with pytest.raises(ConnectionClosed) as closed:
        await expired.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert closed.value.rcvd.reason == "this API key has expired"


@pytest.mark.parametrize("query", ["token=not-a-jwt", "api_key=lh_0123456789abcdef_" + "x" * 43, ""])
async def test_bad_credentials_close_the_socket_with_4401(live: dict[str, Any], query: str) -> None:
    ws = await connect(f"ws://{live['host']}/ws?{query}", open_timeout=10)
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_a_revoked_key_stops_the_stream_and_duplicates_are_dropped(
    live: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.ws

    monkeypatch.setattr(gateway.ws, "REAUTH_INTERVAL_S", 0.2)
    suffix = datetime.now(UTC).strftime("%H%M%S%f")
    token = await token_for(live, "viewer", f"dave-{suffix}")
    client: httpx.AsyncClient = live["client"]
    auth = {"Authorization": f"Bearer {token}"}
    created = (await client.post("/api/v1/api-keys", json={"name": "ws"}, headers=auth)).json()
    ws = await open_socket(live, f"api_key={created['api_key']}")
    try:
        first, second = order_filled(f"dave-{suffix}", "o-d1"), order_filled(f"dave-{suffix}", "o-d2")
        await live["bus"].publish(first)
        await live["bus"].publish(first)  # published twice (at-least-once delivery): shown once
        await live["bus"].publish(second)
        assert [json.loads(await ws.recv())["id"] for _ in range(2)] == [first.id, second.id]
        revoked = await client.delete(f"/api/v1/api-keys/{created['key_id']}", headers=auth)
        assert revoked.status_code == 200, revoked.text
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # anything still queued, then the close
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    finally:
        await ws.close()


async def test_backtest_progress_reaches_only_its_owner(live: dict[str, Any]) -> None:
    suffix = datetime.now(UTC).strftime("%H%M%S%f")
    owner_token = await token_for(live, "trader", f"dora-{suffix}")
    other_token = await token_for(live, "trader", f"ed-{suffix}")
    owner = await open_socket(live, f"token={owner_token}")
    other = await open_socket(live, f"token={other_token}")
    try:
        payload = BacktestProgress(
            backtest_id="bt-x", owner=f"dora-{suffix}", percent=25.0, eta_s=6.0, days_done=50, days=200
        )
        progress = make_event("backtest.progress", payload, source="backtest")
        await live["bus"].publish(progress)
        got = json.loads(await owner.recv())
        assert got["type"] == "backtest.progress"
        assert got["payload"] == {
            "backtest_id": "bt-x", "owner": f"dora-{suffix}", "percent": 25.0, "eta_s": 6.0, "days_done": 50,
            "days": 200,
        }  # fmt: skip
        # ed's next event is his own: dora's progress never reached his socket
        mine = make_event(
            "backtest.finished",
            BacktestFinished(backtest_id="bt-y", owner=f"ed-{suffix}", status="cancelled"),
            source="backtest",
        )
        await live["bus"].publish(mine)
        assert json.loads(await other.recv())["id"] == mine.id
    finally:
        for ws in (owner, other):
            await ws.close()


async def test_handshakes_from_one_address_are_rate_limited_before_any_lookup(
    gw_settings: Any, serve_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rate-limit minute of this test's own (the windows are keyed by time): the module's gateway also handshakes
    # from 127.0.0.1.
    minute = 60.0 * (1_000_000 + secrets.randbelow(10**6))
    monkeypatch.setattr("gateway.auth.time", SimpleNamespace(time=lambda: minute + 1))
    settings = gw_settings.with_overrides(rate_limit_per_minute=3)
    infra = Infra(
        settings=settings,
        bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="gateway"),
        cache=create_cache(settings.redis_url),
        services=ServiceDirectory(settings),
        shared=False,
    )
    app = create_app(settings, infra)
    async with serve_app(app) as hostport:
        store = app.state.store
        lookups = 0
        real_lookup = store.api_key_with_user

        async def counted(key_id: str) -> Any:
            nonlocal lookups
            lookups += 1
            return await real_lookup(key_id)

        store.api_key_with_user = counted
        codes = []
        for _ in range(5):
            ws = await connect(f"ws://{hostport}/ws?api_key={new_api_key().token}", open_timeout=10)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            codes.append(closed.value.rcvd.code)
        assert codes == [4401] * 3 + [4429] * 2
        assert lookups == 3  # the refused handshakes cost no lookup


def quotes_round(*codes: str) -> Envelope:
    at = datetime(2025, 1, 2, 1, 30, 3, tzinfo=UTC)
    quotes = tuple(
        LiveQuote(
            ts_code=code, time=at, last=Decimal("10.05"), open=Decimal("10.02"), high=Decimal("10.05"),
            low=Decimal("9.98"), pre_close=Decimal("10.00"), volume=15_000, amount=Decimal("150450.00"),
            bid=(QuoteLevel(price=Decimal("10.04"), volume=1_200),), ask=(), limit_up=Decimal("11.00"),
            limit_down=Decimal("9.00"), source="bridge",
        )
        for code in codes
    )  # fmt: skip
    return make_event("quotes.snapshot", QuotesSnapshot(as_of=at, source="bridge", quotes=quotes), source="data")


async def test_a_socket_subscribes_to_codes_and_receives_only_their_quotes(live: dict[str, Any]) -> None:
    suffix = datetime.now(UTC).strftime("%H%M%S%f")
    erin_token = await token_for(live, "viewer", f"erin-{suffix}")
    frank_token = await token_for(live, "trader", f"frank-{suffix}")
    erin = await open_socket(live, f"token={erin_token}")
    frank = await open_socket(live, f"token={frank_token}")
    try:
        await erin.send(json.dumps({"op": "subscribe", "codes": ["600000.SH", "000001.SZ"]}))
        assert json.loads(await erin.recv()) == {
            "type": "ws.subscribed",
            "payload": {"codes": ["000001.SZ", "600000.SH"]},
        }
        await frank.send(json.dumps({"op": "subscribe", "codes": ["60000X.SH"]}))
        refused = json.loads(await frank.recv())
        assert refused["type"] == "ws.error" and refused["payload"]["code"] == "invalid_request"
        await frank.send(json.dumps({"op": "subscribe", "codes": [f"{600000 + i}.SH" for i in range(51)]}))
        assert json.loads(await frank.recv())["payload"]["code"] == "too_many_codes"  # LH_QUOTES_WS_MAX_CODES 50
        await frank.send(json.dumps({"op": "subscribe", "codes": ["300750.SZ"]}))
        assert json.loads(await frank.recv())["payload"]["codes"] == ["300750.SZ"]

        market = quotes_round("600000.SH", "300750.SZ", "688001.SH")
        await live["bus"].publish(market)
        got = json.loads(await erin.recv())
        assert (got["id"], got["type"]) == (market.id, "quotes.snapshot")
        assert [(q["ts_code"], q["last"], q["volume"]) for q in got["payload"]["quotes"]] == [
            ("600000.SH", "10.05", 15_000)
        ]
        got = json.loads(await frank.recv())
        assert [q["ts_code"] for q in got["payload"]["quotes"]] == ["300750.SZ"]

        # The order fan-out still works beside it: frank's fill reaches frank, not erin.
        fill = order_filled(f"frank-{suffix}", "o-frank")
        await live["bus"].publish(fill)
        assert json.loads(await frank.recv())["id"] == fill.id
        await erin.send(json.dumps({"op": "unsubscribe", "codes": ["600000.SH", "000001.SZ"]}))
        assert json.loads(await erin.recv())["payload"]["codes"] == []
        await live["bus"].publish(quotes_round("600000.SH"))
        other = order_filled(f"erin-{suffix}", "o-erin")
        await live["bus"].publish(other)
        assert json.loads(await erin.recv())["id"] == other.id  # the quote after unsubscribing never came
    finally:
        for ws in (erin, frank):
            await ws.close()
