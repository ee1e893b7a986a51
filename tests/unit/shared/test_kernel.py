import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import APIRouter
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from shared.core.domain import IllegalTransition, OrderStatus, check_transition
from shared.platform.app import Infra, create_service_app
from shared.platform.approval import OrderTerms, approval_error, sign_approval
from shared.platform.bus import IdempotentHandler, MemoryBus, topic_matches
from shared.platform.bus.metrics import register_bus_metrics
from shared.platform.cache import MemoryCache
from shared.platform.errors import ServiceError
from shared.platform.events import Envelope, OrderUpdated, make_event
from shared.platform.internal_auth import Principal, mint_internal_token, service_headers, verify_internal_token
from shared.platform.observability import correlation_id_var
from shared.platform.settings import Mode, Settings


def test_fleet_mode_refuses_default_secrets() -> None:
    with pytest.raises(ValueError, match="LH_INTERNAL_SECRET"):
        Settings(mode=Mode.FLEET, internal_secret="", jwt_secret="j" * 32, approval_secret="x" * 32)
    with pytest.raises(ValueError, match="LH_APPROVAL_SECRET"):
        Settings(mode=Mode.FLEET, internal_secret="i" * 32, approval_secret="change-me")
    with pytest.raises(ValueError, match="LH_JWT_SECRET"):
        Settings(mode=Mode.FLEET, internal_secret="i" * 32, jwt_secret="secret")
    ok = Settings(mode=Mode.FLEET, internal_secret="i" * 32, jwt_secret="j" * 32, approval_secret="a" * 32)
    assert ok.require_jwt_secret() == "j" * 32 and ok.require_approval_secret() == "a" * 32
    # Services run without the users' key and (all but risk and execution) without the approval key; the gateway
    # and those two refuse to.
    holderless = Settings(mode=Mode.FLEET, internal_secret="i" * 32)
    with pytest.raises(ValueError, match="LH_APPROVAL_SECRET"):
        holderless.require_approval_secret()
    with pytest.raises(ValueError, match="LH_JWT_SECRET"):
        holderless.require_jwt_secret()
    # One key for both users' sessions and the services' tokens is refused where both are held: the gateway.
    same = Settings(mode=Mode.FLEET, internal_secret="s" * 32, jwt_secret="s" * 32)
    with pytest.raises(ValueError, match="must differ"):
        same.require_jwt_secret()
    # Nor may the approval key be one that every process holds: any process could then sign approvals.
    shared_approval = Settings(mode=Mode.FLEET, internal_secret="s" * 32, approval_secret="s" * 32)
    with pytest.raises(ValueError, match="LH_APPROVAL_SECRET must differ"):
        shared_approval.require_approval_secret()


def test_a_user_session_key_cannot_mint_internal_tokens() -> None:
    s = Settings()  # standalone: three generated keys, all different
    assert len({s.internal_secret, s.jwt_secret, s.approval_secret}) == 3
    forged = mint_internal_token(s.jwt_secret, Principal("mallory", "admin"))
    with pytest.raises(ServiceError, match="invalid internal token"):
        verify_internal_token(s.internal_secret, forged)
    assert verify_internal_token(s.internal_secret, mint_internal_token(s.internal_secret, Principal("a", "viewer")))


def test_standalone_generates_secrets_and_settings_come_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LH_MAX_ORDER_VALUE", "12345.67")
    s = Settings()
    assert s.mode is Mode.STANDALONE and len(s.jwt_secret) >= 32 and s.jwt_secret != s.approval_secret
    assert s.max_order_value == Decimal("12345.67")
    assert s.database_url_for("risk").endswith("/risk.db")


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("order.*", "order.filled", True),
        ("order.*", "order.filled.late", False),
        ("order.#", "order.filled.late", True),
        ("#", "trade.executed", True),
        ("*.executed", "trade.executed", True),
        ("order.*", "trade.executed", False),
        ("order.#", "order", True),
    ],
)
def test_topic_matching(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def _terms(**kw: object) -> OrderTerms:
    base: dict[str, object] = dict(
        client_order_id="c1", account_id="alice", ts_code="600000.SH", side="buy", order_type="limit", qty=100
    )
    base["price"] = Decimal("10.00")
    base.update(kw)
    return OrderTerms.model_validate(base)


def test_approval_covers_every_order_field() -> None:
    secret = "s" * 32
    approval = sign_approval(secret, _terms(), "d1")
    assert approval_error(secret, _terms(), approval, max_age_s=60) is None
    assert approval_error(secret, _terms(price=Decimal("10.0")), approval, max_age_s=60) is None  # same price
    for tampered in (_terms(qty=1000), _terms(price=Decimal("9.99")), _terms(side="sell"), _terms(account_id="bob")):
        assert approval_error(secret, tampered, approval, max_age_s=60) is not None
    assert approval_error("other" * 8, _terms(), approval, max_age_s=60) is not None
    assert approval_error(secret, _terms(), None, max_age_s=60) == "no risk approval attached"
    old = sign_approval(secret, _terms(), "d1", issued_at=datetime.now(UTC) - timedelta(seconds=120))
    assert "old" in (approval_error(secret, _terms(), old, max_age_s=60) or "")


def test_internal_token_round_trip_and_rejection() -> None:
    token = mint_internal_token("k" * 32, Principal("alice", "trader", "acct-1"))
    assert verify_internal_token("k" * 32, token) == Principal("alice", "trader", "acct-1")
    with pytest.raises(Exception, match="invalid internal token"):
        verify_internal_token("x" * 32, token)
    # A token without an expiry would be valid for ever: refused even when correctly signed.
    import jwt

    forever = jwt.encode({"sub": "alice", "role": "trader", "aud": "lianghua-internal"}, "k" * 32, algorithm="HS256")
    with pytest.raises(Exception, match="exp"):
        verify_internal_token("k" * 32, forever)


def test_order_state_machine() -> None:
    check_transition(OrderStatus.ACCEPTED, OrderStatus.SUBMITTED)
    check_transition(OrderStatus.SUBMITTED, OrderStatus.FILLED)
    with pytest.raises(IllegalTransition):
        check_transition(OrderStatus.FILLED, OrderStatus.CANCELLED)
    with pytest.raises(IllegalTransition):
        check_transition(OrderStatus.ACCEPTED, OrderStatus.FILLED)


def _order_event() -> Envelope:
    now = datetime.now(UTC)
    payload = OrderUpdated(
        order_id="o1", client_order_id="c1", account_id="a", ts_code="600000.SH", side="buy", order_type="market",
        qty=100, price=None, status="filled", filled_qty=100, avg_fill_price=Decimal("10.01"), updated_at=now,
    )  # fmt: skip
    return make_event("order.filled", payload, source="test")


def test_events_are_typed_and_carry_the_correlation_id() -> None:
    token = correlation_id_var.set("cid-123")
    try:
        event = _order_event()
    finally:
        correlation_id_var.reset(token)
    assert event.correlation_id == "cid-123" and event.payload["avg_fill_price"] == "10.01"

    class Other(BaseModel):
        x: int

    with pytest.raises(TypeError):
        make_event("order.filled", Other(x=1), source="test")
    with pytest.raises(ValueError):
        make_event("order.exploded", Other(x=1), source="test")


async def test_memory_bus_delivers_by_topic_and_consumers_are_idempotent() -> None:
    bus, cache = MemoryBus(), MemoryCache()
    got: list[str] = []

    async def handler(event: Envelope) -> None:
        got.append(event.id)

    await bus.subscribe("t", ["order.*"], IdempotentHandler(cache, "t", handler))
    event = _order_event()
    await bus.publish(event)
    await bus.publish(event)  # the same event twice (a redelivery)
    await bus.publish(Envelope(type="trade.executed", source="t", payload={}))
    await asyncio.sleep(0.05)
    await bus.close()
    assert got == [event.id]


async def test_memory_bus_hands_handlers_typed_payloads_and_dead_letters_what_does_not_parse() -> None:
    bus = MemoryBus()
    registry = CollectorRegistry()
    register_bus_metrics(bus, registry)
    handled: list[object] = []

    async def handler(event: Envelope) -> None:
        handled.append(event.parsed())

    await bus.subscribe("orders", ["order.*"], handler)
    # No qty, and a fill price that is no number: the handler never sees it.
    broken = Envelope(type="order.filled", source="t", payload={"order_id": "o9", "avg_fill_price": "n/a"})
    unknown = Envelope(type="order.exploded", source="t", payload={})
    event = _order_event()
    for e in (broken, unknown, event):
        await bus.publish(e)
    await asyncio.sleep(0.05)
    await bus.close()
    assert len(handled) == 1
    order = handled[0]
    assert isinstance(order, OrderUpdated)
    assert (order.order_id, order.filled_qty, order.avg_fill_price) == ("o1", 100, Decimal("10.01"))
    assert bus.dead_letters == [broken, unknown]
    assert registry.get_sample_value("lh_bus_events_rejected_total", {"consumer": "orders"}) == 2


def test_events_and_their_payloads_are_immutable() -> None:
    event = _order_event()
    order = event.parsed()
    assert isinstance(order, OrderUpdated)
    with pytest.raises(ValidationError):
        order.status = "cancelled"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        event.type = "order.cancelled"  # type: ignore[misc]
    assert (event.type, order.status) == ("order.filled", "filled")


async def test_memory_cache_window_and_nx() -> None:
    cache = MemoryCache()
    assert [await cache.incr_window("k", 60) for _ in range(3)] == [1, 2, 3]
    assert await cache.set("a", "1", nx=True) is True
    assert await cache.set("a", "2", nx=True) is False
    assert await cache.get("a") == b"1"
    assert await cache.delete_prefix("a") == 1


async def test_app_factory_gives_ops_routes_auth_and_json_errors() -> None:
    settings = Settings()
    router = APIRouter()

    class Body(BaseModel):
        qty: int

    @router.post("/v1/things")
    async def create(body: Body) -> dict[str, int]:
        return {"qty": body.qty}

    app = create_service_app("t", Infra.from_settings(settings, "t"), routers=[router])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).json()["status"] == "ok"
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {"bus": "ok", "cache": "ok"}
            denied = await client.post("/v1/things", json={"qty": 1})
            assert denied.status_code == 401 and denied.json()["code"] == "unauthenticated"
            headers = {**service_headers(settings.internal_secret, "test"), "X-Correlation-ID": "abc"}
            bad = await client.post("/v1/things", json={"qty": "many"}, headers=headers)
            assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
            assert bad.json()["message"].startswith("qty:")
            assert bad.headers["X-Correlation-ID"] == "abc"
            good = await client.post("/v1/things", json={"qty": 3}, headers=headers)
            assert good.json() == {"qty": 3}
            metrics = (await client.get("/metrics")).text
            assert 'http_requests_total{handler="/v1/things",method="POST",status="2xx"} 1.0' in metrics
            assert "openapi" in (await client.get("/openapi.json")).text
