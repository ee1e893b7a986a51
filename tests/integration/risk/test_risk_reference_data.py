"""Risk checks orders against the data service's reference data held in memory (no quote read per order), never
against stale data: new bars, once announced (`bars.updated` on RabbitMQ), are what the next order is checked
against; a data service that cannot answer fails the order closed (503 risk_unavailable). The real data service
(demo market on MariaDB), risk and execution, each with its own bus connection, as in a fleet."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from services.data.app import create_app as create_data_app
from services.data.events import bars_updated
from services.execution.app import create_app as create_execution_app
from services.risk.app import create_app as create_risk_app
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers
from shared.platform.observability import new_id
from shared.platform.quotes import ReferenceData
from shared.platform.settings import Settings
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import SwitchableTransport, headers, trader, until
from tests.integration.execution.test_paper_sessions import MovableClock

pytestmark = pytest.mark.integration

CENT = Decimal("0.01")


@dataclass
class Platform:
    settings: Settings
    data_app: FastAPI
    data_infra: Infra
    data_transport: SwitchableTransport
    risk_app: FastAPI
    risk: httpx.AsyncClient
    data: httpx.AsyncClient

    async def reference(self) -> ReferenceData:
        return ReferenceData.model_validate_json((await self.data.get("/v1/reference")).content)

    async def announce(self, **kw: Any) -> None:
        """The data service's announcement of an ingest run's bars, and risk has heard it."""
        quotes = self.risk_app.state.quotes
        before = quotes.announcements
        await self.data_infra.bus.publish(bars_updated(**kw))
        await until(lambda: quotes.announcements > before, what="risk hears bars.updated")


@asynccontextmanager
async def platform(backing: Backing, clock: MovableClock | None = None) -> AsyncIterator[Platform]:
    """The platform on a real clock set in the demo market's next session (2025-01-02 10:00 Asia/Shanghai, unless
    `clock` says otherwise): on the wall clock the demo's data is two years old and every order has no session."""
    settings = backing.settings(scope="ref" + secrets.token_hex(3), demo_symbols=20, paper_fills="immediate")
    clock = clock or MovableClock("2025-01-02T10:00:00+08:00")

    def infra(source: str, transports: dict[str, httpx.AsyncBaseTransport]) -> Infra:
        bus = create_bus(settings.amqp_url, namespace=settings.bus_namespace, source=source)
        return Infra(
            settings, bus, create_cache(settings.redis_url), ServiceDirectory(settings, transports), clock=clock
        )

    data_infra = infra("data", {})
    data_app = create_data_app(settings, data_infra)
    data_transport = SwitchableTransport(data_app)
    execution_app = create_execution_app(settings, infra("execution", {"data": data_transport}))
    risk_app = create_risk_app(
        settings, infra("risk", {"data": data_transport, "execution": httpx.ASGITransport(app=execution_app)})
    )
    async with (
        data_app.router.lifespan_context(data_app),
        execution_app.router.lifespan_context(execution_app),
        risk_app.router.lifespan_context(risk_app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=risk_app), base_url="http://risk") as risk,
        httpx.AsyncClient(transport=data_transport, base_url="http://data",
                          headers=service_headers(settings.internal_secret, "test")) as data,
    ):  # fmt: skip
        # Only an announcement (or a new exchange day) moves what is held on: not the backstop, however slow the run.
        risk_app.state.quotes.revalidate_s = execution_app.state.broker.quotes.reference.revalidate_s = 3600.0
        yield Platform(settings, data_app, data_infra, data_transport, risk_app, risk, data)


def _limit_buy(code: str, price: Decimal) -> dict[str, Any]:
    return {"client_order_id": f"c-{new_id()[:10]}", "ts_code": code, "side": "buy", "order_type": "limit",
            "qty": 100, "price": str(price)}  # fmt: skip


def _tick(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


async def test_the_next_order_after_announced_bars_is_checked_against_the_new_limits(backing: Backing) -> None:
    clock = MovableClock("2025-01-02T10:00:00+08:00")
    async with platform(backing, clock) as p:
        before = await p.reference()
        row = next(r for r in before.securities if r.board == "main" and not r.is_st and not r.suspended)
        assert row.last_close is not None and row.limit_up is not None and before.next_trade_date is not None
        # Main board: 10% around the last close (rounded half-up), worked out here independently of the service.
        assert row.limit_up == _tick(row.last_close * Decimal("1.1"))
        above = row.limit_up + CENT
        alice = trader()

        # Statements the data service runs while orders are checked: none once the reference data is held.
        statements: list[str] = []
        engine = p.data_app.state.db.engine.sync_engine
        listen = (engine, "before_cursor_execute", lambda *args: statements.append(str(args[2])))
        first = await p.risk.post("/v1/orders", json=_limit_buy(row.ts_code, above), headers=headers(p.settings, alice))
        assert first.status_code == 422, first.text
        assert [r["code"] for r in first.json()["decision"]["reasons"]] == ["price_limit"]
        event.listen(*listen)
        try:
            for _ in range(10):
                again = await p.risk.post(
                    "/v1/orders", json=_limit_buy(row.ts_code, above), headers=headers(p.settings, alice)
                )
                assert again.status_code == 422
        finally:
            event.remove(*listen)
        # (the outbox relay's periodic look for events to publish is no order's)
        assert [text for text in statements if "FROM outbox" not in text] == []

        # The session's bar arrives: a close 5% up. Stored, but not yet announced: what risk holds stays.
        new_close = _tick(row.last_close * Decimal("1.05"))
        day = before.next_trade_date
        fen = int(new_close * 100)
        bar = {"ts_code": row.ts_code, "trade_date": day, "open": fen, "high": fen, "low": fen, "close": fen,
               "pre_close": int(row.last_close * 100), "vol": 10_000, "amount": fen * 10_000,
               "adj_factor": Decimal(1)}  # fmt: skip
        await p.data_app.state.store.load([], [], [bar])
        # The evening of that session: an order now is for the next one, whose limits come from the new close.
        clock.set(f"{day.isoformat()}T20:00:00+08:00")
        # Announced (as the ingest run that stored it does): the next order is checked against the new limits.
        await p.announce(start=day, end=day, symbols=1, rows=1)
        new_up = _tick(new_close * Decimal("1.1"))
        assert new_up >= above
        placed = await p.risk.post(
            "/v1/orders", json=_limit_buy(row.ts_code, above), headers=headers(p.settings, alice)
        )
        assert placed.status_code == 201, placed.text
        # Filled at the new last close (the paper broker's reference data moved on too).
        assert (placed.json()["order"]["status"], placed.json()["order"]["avg_fill_price"]) == (
            "filled",
            str(new_close),
        )
        over = await p.risk.post(
            "/v1/orders", json=_limit_buy(row.ts_code, new_up + CENT), headers=headers(p.settings, alice)
        )
        assert over.status_code == 422
        message = over.json()["decision"]["reasons"][0]["message"]
        after = await p.reference()
        assert after.next_trade_date is not None and after.next_trade_date > day
        assert f"limit-up price {new_up} of the session on {after.next_trade_date}" in message
        assert after.data_version > before.data_version


async def test_a_data_service_that_cannot_answer_fails_orders_closed(backing: Backing) -> None:
    async with platform(backing) as p:
        row = next(r for r in (await p.reference()).securities if r.board == "main" and not r.suspended)
        assert row.last_close is not None
        bob = trader()
        order = _limit_buy(row.ts_code, row.last_close)
        p.data_transport.down = True  # nothing held yet, and nothing to load it from
        down = await p.risk.post("/v1/orders", json=order, headers=headers(p.settings, bob))
        assert (down.status_code, down.json()["code"]) == (503, "risk_unavailable")
        assert [r["code"] for r in down.json()["decision"]["reasons"]] == ["risk_unavailable"]

        p.data_transport.down = False
        placed = await p.risk.post("/v1/orders", json=_limit_buy(row.ts_code, row.last_close),
                                   headers=headers(p.settings, bob))  # fmt: skip
        assert placed.status_code == 201, placed.text
        # New data announced while the data service is down: the copy held is not used for the next order.
        p.data_transport.down = True
        day = row.last_trade_date
        assert day is not None
        await p.announce(start=day - timedelta(days=1), end=day, symbols=1, rows=1)
        stale = await p.risk.post("/v1/orders", json=_limit_buy(row.ts_code, row.last_close),
                                  headers=headers(p.settings, bob))  # fmt: skip
        assert (stale.status_code, stale.json()["code"]) == (503, "risk_unavailable")
        p.data_transport.down = False
        again = {**_limit_buy(row.ts_code, row.last_close), "qty": 200}  # (the same 100 again: a duplicate)
        back = await p.risk.post("/v1/orders", json=again, headers=headers(p.settings, bob))
        assert back.status_code == 201, back.text


async def test_a_correction_of_the_stored_bars_is_used_once_announced_and_not_before(backing: Backing) -> None:
    # The clock stays put (no new exchange day, no new session) and the backstop is an hour: only the announcement
    # can move what risk holds.
    async with platform(backing) as p:
        before = await p.reference()
        row = next(r for r in before.securities if r.board == "main" and not r.is_st and not r.suspended)
        assert row.last_close is not None and row.limit_up is not None and row.last_trade_date is not None
        # 2024-12-31's close corrected 5% up: the session's limit-up becomes 1.1 x the new close, worked out here.
        corrected = _tick(row.last_close * Decimal("1.05"))
        new_up = _tick(corrected * Decimal("1.1"))
        price = row.limit_up + CENT
        assert price <= new_up
        dana = trader()
        first = await p.risk.post("/v1/orders", json=_limit_buy(row.ts_code, price), headers=headers(p.settings, dana))
        assert first.status_code == 422, first.text  # above today's limit-up: refused (and risk now holds the data)
        fen = int(corrected * 100)
        bar = {"ts_code": row.ts_code, "trade_date": row.last_trade_date, "open": fen, "high": fen, "low": fen,
               "close": fen, "pre_close": fen, "vol": 10_000, "amount": fen * 10_000, "adj_factor": Decimal(1)}  # fmt: skip
        await p.data_app.state.store.load([], [], [bar])
        held = await p.risk.post("/v1/orders", json=_limit_buy(row.ts_code, price), headers=headers(p.settings, dana))
        assert held.status_code == 422, held.text  # stored, not announced: the copy held still says the old limit
        assert [r["code"] for r in held.json()["decision"]["reasons"]] == ["price_limit"]
        await p.announce(start=row.last_trade_date, end=row.last_trade_date, symbols=1, rows=1)
        placed = await p.risk.post("/v1/orders", json=_limit_buy(row.ts_code, price), headers=headers(p.settings, dana))
        assert placed.status_code == 201, placed.text
