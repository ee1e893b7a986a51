"""A risk denial is an event as well as a 422: `risk.order.denied`, written to risk's outbox with the decision and
published by its relay, on the real RabbitMQ and on standalone's in-memory bus."""

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.execution.app import create_app as create_execution_app
from services.risk.app import create_app as create_risk_app
from services.risk.store import outbox, risk_decisions
from shared.platform.app import Infra
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.events import Envelope, OrderDenied
from shared.platform.http import ServiceDirectory
from shared.platform.observability import new_id
from shared.platform.settings import Settings
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    FakeDataService,
    event_log,
    fleet,
    headers,
    settle,
    trader,
    until,
)


def _odd_lot_buy() -> dict[str, Any]:
    # 150 shares: not a multiple of the 100-share lot a buy must be.
    return {"client_order_id": f"c-{new_id()[:10]}", "ts_code": "600000.SH", "side": "buy", "order_type": "limit",
            "qty": 150, "price": "10.00"}  # fmt: skip


def _assert_reports(event: Envelope, answer: dict[str, Any], account_id: str, order: dict[str, Any]) -> None:
    denial = event.parsed()
    assert isinstance(denial, OrderDenied) and event.source == "risk"
    assert denial.decision_id == answer["decision"]["decision_id"]
    assert (denial.account_id, denial.client_order_id, denial.ts_code, denial.side, denial.qty, str(denial.price)) == (
        account_id,
        order["client_order_id"],
        "600000.SH",
        "buy",
        150,
        "10.00",
    )
    assert [{"code": r.code, "message": r.message} for r in denial.reasons] == answer["decision"]["reasons"]
    assert [r.code for r in denial.reasons] == ["lot_size"]


async def _risk_rows(app: Any, event: Envelope) -> tuple[bool, list[str], bool]:
    """In risk's database: (the decision the event reports is recorded, the types of its outbox rows with the
    event's id, all of those marked published)."""
    denial = event.parsed()
    assert isinstance(denial, OrderDenied)
    async with app.state.db.engine.connect() as conn:
        decisions = (
            await conn.execute(
                select(func.count())
                .select_from(risk_decisions)
                .where(risk_decisions.c.decision_id == denial.decision_id, risk_decisions.c.approved.is_(False))
            )
        ).scalar_one()
        rows = (await conn.execute(select(outbox.c.type, outbox.c.published_at).where(outbox.c.id == event.id))).all()
    return decisions == 1, [r.type for r in rows], all(r.published_at is not None for r in rows)


@pytest.mark.integration
async def test_a_denial_is_published_on_rabbitmq_with_its_decision(backing: Backing) -> None:
    settings = backing.settings()
    alice = trader()
    async with event_log(settings) as log, fleet(settings) as f:
        order = _odd_lot_buy()
        response = await f.risk.post("/v1/orders", json=order, headers=f.headers(alice))
        assert response.status_code == 422 and response.json()["code"] == "order_rejected"

        def denials() -> list[Envelope]:
            return [e for e in log.events if e.type == "risk.order.denied"]

        await until(denials, what="the denial on RabbitMQ")
        [event] = denials()
        _assert_reports(event, response.json(), alice.account_id, order)
        await until(lambda: _published(f.risk_app, event), what="risk's outbox row marked published")
        assert await _risk_rows(f.risk_app, event) == (True, ["risk.order.denied"], True)
        await settle(f)


async def _published(app: Any, event: Envelope) -> bool:
    return (await _risk_rows(app, event))[2]


async def test_a_denial_reaches_the_memory_bus_in_standalone_mode(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False)
    bus, cache = MemoryBus(), MemoryCache()
    data_transport = httpx.ASGITransport(app=FakeDataService(settings.internal_secret).app)
    execution_app = create_execution_app(
        settings, Infra(settings, bus, cache, ServiceDirectory(settings, {"data": data_transport}), shared=True)
    )
    directory = ServiceDirectory(
        settings, {"data": data_transport, "execution": httpx.ASGITransport(app=execution_app)}
    )
    risk_app = create_risk_app(settings, Infra(settings, bus, cache, directory, shared=True))
    nina = trader()
    async with (
        execution_app.router.lifespan_context(execution_app),
        risk_app.router.lifespan_context(risk_app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=risk_app), base_url="http://risk") as risk,
    ):
        order = _odd_lot_buy()
        response = await risk.post("/v1/orders", json=order, headers=headers(settings, nina))
        assert response.status_code == 422 and response.json()["code"] == "order_rejected"
        await until(lambda: [e for e in bus.published if e.type == "risk.order.denied"], what="the denial published")
        [event] = bus.published
        _assert_reports(event, response.json(), nina.account_id, order)
        await until(lambda: _published(risk_app, event), what="risk's outbox row marked published")
        assert await _risk_rows(risk_app, event) == (True, ["risk.order.denied"], True)
