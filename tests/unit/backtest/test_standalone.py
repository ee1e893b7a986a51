"""The backtest service and an in-process worker as standalone mode runs them: SQLite, the in-memory bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.backtest.app import create_app
from services.backtest.store import results as store_results
from services.backtest.worker import BacktestWorker
from shared.platform.app import Infra
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.platform.settings import Settings
from tests.integration.backtest.fakes import STRATEGIES, FakeData


class _DownBus(MemoryBus):
    async def enqueue(self, queue: str, body: dict[str, Any], *, message_id: str) -> None:
        raise ConnectionError("broker unreachable")


def _settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False)


def _headers(settings: Settings) -> dict[str, str]:
    return {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal("alice", "trader"))}


@pytest.fixture
async def standalone(tmp_path: Path) -> AsyncIterator[tuple[Settings, FastAPI, MemoryBus]]:
    settings = _settings(tmp_path)
    fake = FakeData(settings.internal_secret)
    bus = MemoryBus()
    infra = Infra(
        settings=settings,
        bus=bus,
        cache=MemoryCache(),
        services=ServiceDirectory(settings, {"data": httpx.ASGITransport(app=fake.app())}),
        shared=True,
    )
    app = create_app(settings, infra, strategies=STRATEGIES)
    async with app.router.lifespan_context(app):
        worker = BacktestWorker(settings, infra, strategies=STRATEGIES, cache_dir=tmp_path / "bars-cache")
        await worker.start()
        try:
            yield settings, app, bus
        finally:
            await worker.stop()
            await bus.close()


async def eventually(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait for something another task does (the outbox relay publishing, here)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def _finished(client: httpx.AsyncClient, backtest_id: str, headers: dict[str, str]) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            body: dict[str, Any] = (await client.get(f"/v1/backtests/{backtest_id}", headers=headers)).json()
            if body["status"] in ("succeeded", "failed"):
                return body
            await asyncio.sleep(0.02)


async def test_standalone_runs_a_backtest_in_process(
    standalone: tuple[Settings, FastAPI, MemoryBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, app, bus = standalone
    # Small chunks, so that each artifact spans several rows and is put back together in order.
    monkeypatch.setattr(store_results, "ARTIFACT_CHUNK_BYTES", 256)
    headers = _headers(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://backtest") as client:
        body = {
            "ts_codes": ["000001.SZ", "300750.SZ"],
            "start": "2024-03-04",
            "end": "2024-03-07",
            "initial_cash": 200000,
        }
        resp = await client.post("/v1/backtests", json=body, headers=headers)
        assert resp.status_code == 202
        result = await _finished(client, resp.json()["backtest_id"], headers)
        # The same numbers as the MariaDB test (tests/integration/backtest): money is exact on SQLite too.
        assert result["status"] == "succeeded", result["error"]
        assert result["initial_cash"] == "200000.00"
        assert [p["equity"] for p in result["equity_curve"]] == ["201900.66", "201750.66", "199850.66", "202750.66"]
        trades = (await client.get(f"/v1/backtests/{result['backtest_id']}/trades", headers=headers)).json()
        assert [(t["ts_code"], t["qty"], t["price"]) for t in trades["trades"]] == [
            ("000001.SZ", 9500, "10.50"),
            ("300750.SZ", 500, "180.00"),
        ]
        daily = await app.state.backtests.store.daily_frame(result["backtest_id"])
        assert daily["equity"].tolist() == [20190066, 20175066, 19985066, 20275066]

        poison = await client.post("/v1/backtests", json={**body, "strategy": "explode"}, headers=headers)
        failed = await _finished(client, poison.json()["backtest_id"], headers)
        assert failed["status"] == "failed" and "boom on purpose" in failed["error"]
        # The row is failed before the handler re-raises and the bus dead-letters the job: wait for the latter.
        await eventually(lambda: bus.dead_letters == [{"backtest_id": poison.json()["backtest_id"]}])
    await eventually(lambda: len([e for e in bus.published if e.type == "backtest.finished"]) == 2)
    statuses = [e.payload["status"] for e in bus.published if e.type == "backtest.finished"]
    assert statuses == ["succeeded", "failed"]


async def test_a_request_the_queue_cannot_take_is_recorded_failed_and_answered_503(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    bus = _DownBus()
    infra = Infra(settings=settings, bus=bus, cache=MemoryCache(), services=ServiceDirectory(settings))
    app = create_app(settings, infra)
    headers = _headers(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://backtest") as client,
    ):
        body = {"ts_codes": ["000001.SZ"], "start": "2024-03-04", "end": "2024-03-07"}
        resp = await client.post("/v1/backtests", json=body, headers=headers)
        assert resp.status_code == 503
        assert resp.json()["code"] == "queue_unavailable"
        listed = (await client.get("/v1/backtests", headers=headers)).json()
        assert len(listed) == 1
        assert listed[0]["status"] == "failed"
        assert listed[0]["error"].startswith("queue_unavailable:") and "broker unreachable" in listed[0]["error"]
        assert listed[0]["backtest_id"] in resp.json()["message"]
        await eventually(lambda: bool(bus.published))
        assert bus.published[0].payload["status"] == "failed"


async def test_the_sweep_requeues_lost_jobs_and_fails_a_job_started_too_often(tmp_path: Path) -> None:
    """Standalone mode's in-memory queue does not survive a restart: rows left queued, or running under a worker
    that died, are only ever picked up again by the sweep."""
    from datetime import date, timedelta
    from decimal import Decimal

    from sqlalchemy import update

    from services.backtest.store import BacktestStatus, BacktestStore, backtests
    from services.backtest.worker import MAX_ATTEMPTS
    from shared.platform.clock import utcnow
    from shared.platform.db import Database

    settings = _settings(tmp_path)
    fake = FakeData(settings.internal_secret)
    bus = MemoryBus()
    infra = Infra(
        settings=settings,
        bus=bus,
        cache=MemoryCache(),
        services=ServiceDirectory(settings, {"data": httpx.ASGITransport(app=fake.app())}),
        shared=True,
    )
    db = Database(settings.database_url_for("backtest"))
    await db.connect()
    store = BacktestStore(db)
    await store.migrate()

    async def create(backtest_id: str) -> None:
        await store.create(
            backtest_id=backtest_id,
            owner="alice",
            strategy="buy_and_hold",
            params={},
            ts_codes=["600036.SH"],
            start=date(2024, 3, 4),
            end=date(2024, 3, 7),
            initial_cash=Decimal("100000"),
        )

    # Left by the previous process: one row queued (its job was lost), one running under a worker that was killed
    # for the third time.
    await create("lostqueued")
    await create("killedthrice")
    async with db.session() as session:
        await session.execute(
            update(backtests)
            .where(backtests.c.backtest_id == "killedthrice")
            .values(status="running", attempts=MAX_ATTEMPTS, started_at=utcnow() - timedelta(hours=1))
        )

    worker = BacktestWorker(
        settings, infra, db=db, strategies=STRATEGIES, sweep_interval_s=0.05, stale_queued_s=0.0, stale_running_s=60
    )
    await worker.start()
    try:
        async with asyncio.timeout(10):
            while True:
                lost, killed = await store.get("lostqueued"), await store.get("killedthrice")
                assert lost is not None and killed is not None
                if lost.status.is_final and killed.status.is_final:
                    break
                await asyncio.sleep(0.02)
    finally:
        await worker.stop()
        await bus.close()
    assert lost.status is BacktestStatus.SUCCEEDED and lost.attempts == 1, lost.error
    assert killed.status is BacktestStatus.FAILED and killed.attempts == MAX_ATTEMPTS
    assert killed.error == (
        f"too_many_attempts: the job was started {MAX_ATTEMPTS} times without finishing "
        "(a worker crashed or was killed each time)"
    )
    assert worker._sweeper is None and bus.dead_letters == []
    statuses = {e.payload["backtest_id"]: e.payload["status"] for e in bus.published if e.type == "backtest.finished"}
    assert statuses == {"lostqueued": "succeeded", "killedthrice": "failed"}
    await db.dispose()
