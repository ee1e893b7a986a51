"""Optimisation fanned out over the real RabbitMQ work queue and MariaDB by two task handlers (two "workers"): the
results equal the library run serially, a redelivered batch counts nothing, infeasible points are flagged."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pandas as pd
import pytest

from bench.engine import synthetic_bars
from services.backtest.optimize import TASK_QUEUE, OptimisationTaskHandler, submit_optimisation
from services.backtest.schemas import OptimisationRequest
from services.backtest.store import OptimisationRecord, OptimisationStore, PointStatus, point_hash
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.bus.amqp import AmqpBus
from shared.platform.cache import create_cache
from shared.platform.db import Database
from shared.platform.http import ServiceDirectory
from shared.research.engine import BacktestConfig, load_bars
from shared.research.engine.optimize import (
    Constraint,
    GeneticSettings,
    Objective,
    ParameterSpace,
    evaluate,
    genetic_search,
    rank,
)
from strategies.dual_ma import DualMA
from tests.conftest import Backing

pytestmark = pytest.mark.integration

TIMEOUT_S = 60
BARS = synthetic_bars(12, 160, 3)
START, END = date(2014, 1, 2), date(2014, 8, 13)  # the 1st and the 160th weekday of 2014
CODES = sorted(set(BARS["ts_code"]))


def load_market(ts_codes: Any, start: date, end: date) -> pd.DataFrame:
    return BARS


@dataclass
class Stack:
    store: OptimisationStore
    probe: AmqpBus
    handlers: list[OptimisationTaskHandler]

    async def finished(self, optimisation_id: str) -> OptimisationRecord:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                record = await self.store.get(optimisation_id)
                assert record is not None
                if record.status.is_final:
                    return record
                await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def stack(backing: Backing) -> AsyncIterator[Stack]:
    settings = backing.settings("opt")
    infras = [
        Infra(
            settings=settings,
            bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source=f"worker-{i}"),
            cache=create_cache(settings.redis_url),
            services=ServiceDirectory(
                settings, transports={"data": httpx.MockTransport(lambda r: httpx.Response(500))}
            ),
        )
        for i in range(2)
    ]
    handlers = [OptimisationTaskHandler(settings, infra, load_market=load_market) for infra in infras]
    probe = AmqpBus(settings.amqp_url, namespace=settings.bus_namespace, source="test-probe")
    db = Database(settings.database_url_for("backtest"))
    await probe.start()
    for infra, handler in zip(infras, handlers, strict=True):
        await infra.start()
        await handler.start()
    await db.connect()
    try:
        yield Stack(OptimisationStore(db), probe, handlers)
    finally:
        for infra, handler in zip(infras, handlers, strict=True):
            await handler.stop()
            await infra.close()
        await probe.close()
        await db.dispose()


def request(**overrides: Any) -> OptimisationRequest:
    body: dict[str, Any] = {
        "strategy": "dual_ma",
        "space": {"fast": [2, 3, 4, 6], "slow": [5, 8, 12]},
        "objective": "sharpe",
        "constraints": ["trade_count <= 200"],
        "ts_codes": CODES,
        "start": START,
        "end": END,
        "config": {"initial_cash": "1000000"},
        "batch_size": 3,
    }
    body.update(overrides)
    return OptimisationRequest.model_validate(body)


CONFIG = BacktestConfig(initial_cash=Decimal("1000000"), start=START, end=END)


async def test_grid_over_the_queue_equals_the_serial_library(stack: Stack) -> None:
    oid = secrets.token_hex(8)
    await submit_optimisation(stack.store, stack.probe, request(), owner="alice", optimisation_id=oid)
    record = await stack.finished(oid)
    assert record.status.value == "succeeded", record.error
    # 4 x 3 = 12 points; (6, 5) breaks fast < slow: skipped, not evaluated
    assert (record.total_points, record.done_points, record.skipped_points) == (11, 11, 1)
    assert sum(h.evaluated for h in stack.handlers) >= 11

    space = ParameterSpace.from_spec(DualMA, {"fast": [2, 3, 4, 6], "slow": [5, 8, 12]})
    points, _ = space.grid()
    serial = evaluate(
        points, load_bars(BARS, CONFIG), CONFIG, DualMA, constraints=[Constraint.parse("trade_count <= 200")]
    )
    stored = {p.key: p for p in await stack.store.points(oid)}
    for expected in serial:
        row = stored[expected.key]
        assert row.status is PointStatus.DONE
        assert row.metrics == expected.metrics
        assert row.feasible == expected.feasible
    flagged = [r for r in serial if not r.feasible]
    assert flagged and all(r.violations == ["trade_count <= 200"] for r in flagged)
    assert all(r.metrics is not None and r.metrics["trade_count"] > 200 for r in flagged)
    assert all(stored[r.key].violations == ["trade_count <= 200"] for r in flagged)
    best = rank(serial, Objective("sharpe"))[0]
    # the constraint matters: the highest Sharpe overall is an infeasible point, ranked after every feasible one
    assert best.feasible and max(serial, key=lambda r: r.objective or 0.0).key != best.key
    assert record.best is not None
    assert record.best["key"] == best.key and record.best["metrics"] == best.metrics

    # the same batch delivered again (a worker died after storing, before acking): nothing changes
    before = sum(h.evaluated for h in stack.handlers)
    keys = sorted(stored)[:3]
    body = {"optimisation_id": oid, "kind": "points", "generation": 0, "points": [point_hash(k) for k in keys]}
    await stack.probe.enqueue(TASK_QUEUE, body, message_id=f"{oid}-0-0")
    await stack.handlers[0].handle(body)  # and once more straight into a handler
    async with asyncio.timeout(TIMEOUT_S):
        while await stack.probe.waiting_jobs(TASK_QUEUE) > 0:  # noqa: ASYNC110 - polling the broker
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    again = await stack.store.get(oid)
    assert again is not None and again.done_points == 11 and again.best == record.best
    assert sum(h.evaluated for h in stack.handlers) == before


async def test_a_redelivered_batch_mid_run_is_counted_once(stack: Stack) -> None:
    oid = secrets.token_hex(8)
    # stored but not queued: the test delivers the batches itself, one of them twice
    silent = _Silent()
    await submit_optimisation(stack.store, silent, request(), owner="bob", optimisation_id=oid)  # type: ignore[arg-type]
    batches = silent.bodies
    assert len(batches) == 4  # 11 points in batches of 3
    await stack.handlers[0].handle(batches[0])
    await stack.handlers[1].handle(batches[0])
    mid = await stack.store.get(oid)
    assert mid is not None and mid.done_points == 3 and mid.status.value == "running"
    for body in batches[1:]:
        await stack.handlers[1].handle(body)
    done = await stack.store.get(oid)
    assert done is not None and done.status.value == "succeeded" and done.done_points == 11


class _Silent:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def enqueue(self, queue: str, body: dict[str, Any], *, message_id: str) -> None:
        self.bodies.append(body)


async def test_genetic_search_over_the_queue_equals_the_library(stack: Stack) -> None:
    ga = {"population": 6, "generations": 4, "budget": 18, "seed": 11}
    spec = {"fast": {"min": 2, "max": 8, "step": 1}, "slow": {"min": 6, "max": 20, "step": 2}}
    oid = secrets.token_hex(8)
    req = request(method="ga", space=spec, ga=ga, constraints=[])
    await submit_optimisation(stack.store, stack.probe, req, owner="carol", optimisation_id=oid)
    record = await stack.finished(oid)
    assert record.status.value == "succeeded", record.error

    panel = load_bars(BARS, CONFIG)
    space = ParameterSpace.from_spec(DualMA, spec)
    serial = genetic_search(
        space, lambda ps: evaluate(ps, panel, CONFIG, DualMA), Objective("sharpe"), GeneticSettings(**ga)
    )
    stored = await stack.store.points(oid)
    assert sorted(p.key for p in stored) == sorted(r.key for r in serial.results)
    assert len(stored) == serial.evaluations <= 18
    assert serial.best is not None and record.best is not None
    assert record.best["key"] == serial.best.key and record.best["metrics"] == serial.best.metrics


@asynccontextmanager
async def api(stack: Stack, backing: Backing) -> AsyncIterator[tuple[httpx.AsyncClient, Callable[..., dict[str, str]]]]:
    """The optimisation routes on a service app of the shared factory, over the stack's database and broker."""
    from fastapi import FastAPI

    from services.backtest.optimize_api import router
    from shared.platform.app import create_service_app
    from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token

    settings = backing.settings("opt")
    infra = Infra(
        settings=settings,
        bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="backtest"),
        cache=create_cache(settings.redis_url),
        services=ServiceDirectory(settings),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = create_service_app("backtest", infra, routers=[router], lifespan=lifespan)
    app.state.db = stack.store.db

    def headers(subject: str, role: str = "trader") -> dict[str, str]:
        return {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal(subject, role))}

    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://b") as client:
        yield client, headers


async def test_the_api_submits_lists_and_renders(stack: Stack, backing: Backing) -> None:
    body = {
        "strategy": "dual_ma",
        "space": {"fast": [2, 3], "slow": [8, 12]},
        "objective": "total_return",
        "constraints": ["max_drawdown <= 0.9"],
        "ts_codes": CODES,
        "start": "2014-01-02",
        "end": "2014-08-13",
        "config": {"initial_cash": "1000000"},
    }
    async with api(stack, backing) as (client, headers):
        bad = await client.post("/v1/optimisations", json={**body, "space": {"slow": [2, 600]}}, headers=headers("dan"))
        assert bad.status_code == 422
        assert bad.json()["code"] == "invalid_optimisation" and "slow: 600 is above" in bad.json()["message"]
        resp = await client.post("/v1/optimisations", json=body, headers=headers("dan"))
        assert resp.status_code == 202, resp.text
        oid = resp.json()["optimisation_id"]
        record = await stack.finished(oid)
        assert record.status.value == "succeeded"
        got = (await client.get(f"/v1/optimisations/{oid}", headers=headers("dan"))).json()
        assert got["done_points"] == 4 and got["best"]["key"] == record.best["key"]  # type: ignore[index]
        assert (await client.get(f"/v1/optimisations/{oid}", headers=headers("eve"))).status_code == 404
        listed = (await client.get(f"/v1/optimisations/{oid}/points", headers=headers("dan"))).json()
        returns = [p["metrics"]["total_return"] for p in listed]
        assert returns == sorted(returns, reverse=True) and listed[0]["key"] == got["best"]["key"]
        page = await client.get(f"/v1/optimisations/{oid}/report.html", headers=headers("dan"))
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert oid in page.text and "total_return" in page.text

        # listed newest first: one's own; an admin's everyone's (owner= narrowing it), nobody else's another's
        mine = (await client.get("/v1/optimisations?limit=5", headers=headers("dan"))).json()
        assert mine[0]["optimisation_id"] == oid and mine[0]["status"] == "succeeded"
        assert {o["owner"] for o in mine} == {"dan"}
        assert (await client.get("/v1/optimisations", headers=headers("opt-nobody"))).json() == []
        assert (await client.get("/v1/optimisations?owner=dan", headers=headers("opt-nobody"))).json() == []
        admin = headers("root", "admin")
        theirs = (await client.get("/v1/optimisations?owner=dan&limit=200", headers=admin)).json()
        assert theirs[0]["optimisation_id"] == oid and {o["owner"] for o in theirs} == {"dan"}
        assert (await client.get("/v1/optimisations?owner=", headers=admin)).status_code == 422


GA_SPACE = {"fast": {"min": 2, "max": 8, "step": 1}, "slow": {"min": 6, "max": 20, "step": 2}}
WALK_FORWARD = {"in_sample": 60, "out_of_sample": 20}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"method": "ga", "ga": {"populaton": 30}}, "ga.populaton"),  # a typo: not silently the default
        ({"method": "ga", "ga": {"population": "30"}}, "ga.population"),  # a string for a number
        ({"method": "ga", "ga": {"population": 30.0}}, "ga.population"),
        ({"method": "ga", "ga": {"mutation_rate": "0.2"}}, "ga.mutation_rate"),
        ({"method": "ga", "ga": {"mutation_rate": float("nan")}}, "ga.mutation_rate"),
        ({"method": "ga", "ga": {"population": 4, "elite": 4}}, "ga"),
        # walk-forward stored its ga unchecked, for the worker to fail on later
        ({"method": "walkforward", "walk_forward": {**WALK_FORWARD, "search": "ga"}, "ga": {"population": "30"}},
         "ga.population"),
        ({"config": {"initial_cash": "1000000", "risk_free_rate": float("nan")}}, "config.risk_free_rate"),
        ({"config": {"initial_cash": "1000000", "risk_free_rate": float("inf")}}, "config.risk_free_rate"),
        ({"config": {"initial_cash": "1000000", "risk_free_rate": "0.02"}}, "config.risk_free_rate"),
        ({"config": {"initial_cash": 1e400}}, "config.initial_cash"),
        ({"config": {"commission_rate": "NaN"}}, "config.commission_rate"),
        ({"config": {"lots": "false"}}, "config.lots"),
        ({"config": {"intial_cash": "1000000"}}, "config.intial_cash"),
    ],
)  # fmt: skip
async def test_a_bad_ga_or_config_is_a_422_naming_the_field_and_stores_nothing(
    stack: Stack, backing: Backing, changes: dict[str, Any], field: str
) -> None:
    from sqlalchemy import func, select

    from services.backtest.store import optimisations

    owner = f"frank-{secrets.token_hex(4)}"
    body = {
        "strategy": "dual_ma",
        "space": GA_SPACE,
        "ts_codes": CODES,
        "start": "2014-01-02",
        "end": "2014-08-13",
        **changes,
    }
    async with api(stack, backing) as (client, headers):
        # Python's json writes NaN and Infinity, which json.loads (and so FastAPI) reads back as floats.
        content = json.dumps(body)
        resp = await client.post(
            "/v1/optimisations", content=content, headers={**headers(owner), "content-type": "application/json"}
        )
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_request"
    assert resp.json()["details"][0]["field"] == field
    assert resp.json()["message"].startswith(f"{field}: ")
    async with stack.store.db.session() as s:
        stored = await s.scalar(select(func.count()).select_from(optimisations).where(optimisations.c.owner == owner))
    assert stored == 0


async def test_walk_forward_as_a_task_equals_the_library(stack: Stack) -> None:
    from shared.research.engine.optimize import walk_forward

    spec = {"fast": [2, 4], "slow": [6, 12]}
    oid = secrets.token_hex(8)
    req = request(
        method="walkforward",
        space=spec,
        constraints=[],
        objective="total_return",
        walk_forward={"in_sample": 60, "out_of_sample": 30},
    )
    await submit_optimisation(stack.store, stack.probe, req, owner="frank", optimisation_id=oid)
    record = await stack.finished(oid)
    assert record.status.value == "succeeded", record.error
    expected = walk_forward(
        BARS,
        CONFIG,
        ParameterSpace.from_spec(DualMA, spec),
        Objective("total_return"),
        in_sample=60,
        out_of_sample=30,
    )
    assert record.result is not None
    assert record.result["windows"] == expected.windows
    assert record.result["metrics"] == expected.metrics and record.result["unused_days"] == 10

    from html.parser import HTMLParser

    from services.backtest.optimize import optimisation_html

    page = optimisation_html(record, [])
    HTMLParser().feed(page)
    assert "Out-of-sample equity" in page and 'id="windows"' in page
    for window in expected.windows:  # every window's out-of-sample dates are in the table
        assert f"{window['out_of_sample'][0]} .. {window['out_of_sample'][1]}" in page


async def test_migration_0003_matches_the_tables_the_code_uses(stack: Stack) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from services.backtest.store import optimisation_metadata as metadata

    def diff(connection: Any) -> list[Any]:
        def ours(_: Any, name: str | None, type_: str, *__: Any) -> bool:
            return type_ != "table" or name in metadata.tables

        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": ours})
        return list(compare_metadata(context, metadata))

    async with stack.store.db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_a_cancelled_optimisation_skips_its_queued_batches(stack: Stack) -> None:
    from services.backtest.store import OptimisationStatus

    oid = secrets.token_hex(8)
    silent = _Silent()
    await submit_optimisation(stack.store, silent, request(), owner="gina", optimisation_id=oid)  # type: ignore[arg-type]
    await stack.handlers[0].handle(silent.bodies[0])
    assert await stack.store.finish(oid, OptimisationStatus.CANCELLED, error="cancelled")
    before = stack.handlers[0].evaluated
    for body in silent.bodies[1:]:
        await stack.handlers[0].handle(body)
    record = await stack.store.get(oid)
    assert record is not None and record.status is OptimisationStatus.CANCELLED and record.done_points == 3
    assert stack.handlers[0].evaluated == before


async def test_the_sweep_requeues_a_lost_walk_forward_but_never_one_a_worker_is_running(stack: Stack) -> None:
    from shared.platform.bus import MemoryBus
    from shared.platform.cache import MemoryCache

    class RecordingBus(MemoryBus):
        def __init__(self) -> None:
            super().__init__()
            self.enqueued: list[str] = []

        async def enqueue(self, queue: str, body: dict[str, Any], *, message_id: str) -> None:
            self.enqueued.append(message_id)  # and dropped: as if the broker lost it

        async def waiting_jobs(self, queue: str) -> int:
            return 0

    settings = stack.handlers[0].settings
    bus = RecordingBus()
    infra = Infra(settings=settings, bus=bus, cache=MemoryCache(), services=ServiceDirectory(settings, {}))
    sweeper = OptimisationTaskHandler(settings, infra, db=stack.store.db, load_market=load_market, stale_s=0)
    walk = {"method": "walkforward", "walk_forward": {"in_sample": 60, "out_of_sample": 30}}
    lost, running = secrets.token_hex(8), secrets.token_hex(8)
    await submit_optimisation(stack.store, bus, request(**walk), owner="gina", optimisation_id=lost)
    await submit_optimisation(stack.store, bus, request(**walk), owner="gina", optimisation_id=running)
    await stack.store.mark_running(running)  # a worker has its task (unacknowledged until it finishes)
    bus.enqueued.clear()
    await asyncio.sleep(0.05)
    await sweeper.sweep()
    assert bus.enqueued == [lost]
