"""The backtest service and its worker against the real MariaDB and RabbitMQ: a request goes through the API, the
`<ns>.jobs.backtests` queue and the worker (which reads bars from a stand-in data service), and comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aio_pika
import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import update

from services.backtest.app import create_app
from services.backtest.store import BacktestStatus, backtests, metadata, utcnow
from services.backtest.worker import MAX_ATTEMPTS, BacktestWorker
from shared.app import Infra
from shared.bus import create_bus
from shared.bus.amqp import AmqpBus
from shared.cache import create_cache
from shared.events import Envelope
from shared.http import ServiceDirectory
from shared.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.settings import Settings
from tests.conftest import Backing
from tests.integration.backtest.fakes import D1, D2, D3, D4, STRATEGIES, FakeData

pytestmark = pytest.mark.integration

TIMEOUT_S = 30


@dataclass
class Stack:
    settings: Settings
    app: FastAPI
    client: httpx.AsyncClient
    worker: BacktestWorker
    fake: FakeData
    probe: AmqpBus  # a separate connection: enqueues duplicates and watches the events
    events: list[Envelope]

    def headers(self, subject: str = "alice", role: str = "trader") -> dict[str, str]:
        return {INTERNAL_HEADER: mint_internal_token(self.settings.jwt_secret, Principal(subject, role))}

    async def submit(self, body: dict[str, Any], subject: str = "alice") -> str:
        resp = await self.client.post("/v1/backtests", json=body, headers=self.headers(subject))
        assert resp.status_code == 202, resp.text
        assert resp.json()["status"] == "queued"
        return str(resp.json()["backtest_id"])

    async def finished(self, backtest_id: str, subject: str = "alice") -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                resp = await self.client.get(f"/v1/backtests/{backtest_id}", headers=self.headers(subject))
                assert resp.status_code == 200, resp.text
                body: dict[str, Any] = resp.json()
                if body["status"] in ("succeeded", "failed"):
                    return body
                await asyncio.sleep(0.05)

    async def event_for(self, backtest_id: str) -> Envelope:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                for event in self.events:
                    if event.payload["backtest_id"] == backtest_id:
                        return event
                await asyncio.sleep(0.05)

    def jobs(self, status: str) -> float:
        value = self.worker.metrics.registry.get_sample_value("lh_backtest_jobs_total", {"status": status})
        return value or 0.0


@pytest.fixture(scope="module")
async def stack(backing: Backing) -> AsyncIterator[Stack]:
    settings = backing.settings()
    fake = FakeData(settings.jwt_secret)
    app = create_app(settings, strategies=STRATEGIES)
    probe = AmqpBus(settings.amqp_url, namespace=settings.bus_namespace, source="test-probe")
    events: list[Envelope] = []

    async def collect(event: Envelope) -> None:
        events.append(event)

    await probe.start()
    await probe.subscribe("backtest-test-probe", ["backtest.finished"], collect, durable=False)
    worker_infra = Infra(
        settings=settings,
        bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="backtest-worker"),
        cache=create_cache(settings.redis_url),
        services=ServiceDirectory(settings, transports={"data": httpx.ASGITransport(app=fake.app())}),
    )
    async with app.router.lifespan_context(app):
        await worker_infra.start()
        worker = BacktestWorker(settings, worker_infra, strategies=STRATEGIES, fetch_attempts=3, fetch_backoff_s=0.05)
        await worker.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://backtest") as client:
                yield Stack(settings, app, client, worker, fake, probe, events)
        finally:
            await worker.stop()
            await worker_infra.close()
            await probe.close()


async def test_buy_and_hold_runs_on_the_worker_and_matches_the_hand_computation(stack: Stack) -> None:
    body = {
        "strategy": "buy_and_hold",
        "ts_codes": ["000001.SZ", "300750.SZ"],
        "start": "2024-03-01",
        "end": "2024-03-08",
        "initial_cash": "200000",
    }
    backtest_id = await stack.submit(body)
    result = await stack.finished(backtest_id)
    assert result["status"] == "succeeded", result["error"]
    # Budget per symbol: 200,000 / 2 = 100,000.00. The run covers the days with bars, D1 (Mon 4 March) to D4.
    # 000001.SZ at D1's open, 10.50: 100,000 / 1,050 per lot = 95.2 -> 95 lots = 9,500 shares, 99,750.00;
    #   commission 99,750 * 0.025% = 24.9375 -> 24.94; transfer fee 99,750 * 0.001% = 0.9975 -> 1.00
    #   cost 99,775.94; cash 200,000 - 99,775.94 = 100,224.06
    # 300750.SZ (ChiNext, lots of 100) at D1's open, 180.00: 100,000 / 18,000 = 5.55 -> 500 shares, 90,000.00;
    #   commission 22.50; transfer fee 0.90; cost 90,023.40; cash 100,224.06 - 90,023.40 = 10,200.66
    # Equity = 10,200.66 + 9,500 * close(000001) + 500 * close(300750):
    #   D1: 10,200.66 + 100,700 + 91,000 = 201,900.66
    #   D2: 10,200.66 +  98,800 + 92,750 = 201,750.66
    #   D3: 10,200.66 +  96,900 + 92,750 = 199,850.66   (300750.SZ suspended: its D2 close, 185.50)
    #   D4: 10,200.66 + 102,600 + 89,950 = 202,750.66
    assert result["equity_curve"] == [
        {"trade_date": "2024-03-04", "equity": "201900.66"},
        {"trade_date": "2024-03-05", "equity": "201750.66"},
        {"trade_date": "2024-03-06", "equity": "199850.66"},
        {"trade_date": "2024-03-07", "equity": "202750.66"},
    ]
    summary = result["summary"]
    assert summary["final_equity"] == "202750.66"
    assert summary["total_return"] == "0.01375330"  # 2,750.66 / 200,000
    assert summary["fees_paid"] == "49.34"  # 25.94 + 23.40
    assert summary["trading_days"] == 4
    # Drawdown from the D1 peak to D3: 2,050 / 201,900.66
    metrics = summary["metrics"]
    assert metrics["max_drawdown"] == pytest.approx(2050 / 201900.66, rel=1e-12)
    # (1 + 0.0137533) ** (252 / 4) - 1
    assert metrics["annual_return"] == pytest.approx(1.0137533**63 - 1, rel=1e-9)
    assert [(t["ts_code"], t["trade_date"], t["side"], t["qty"], t["price"], t["fees"]) for t in summary["trades"]] == [
        ("000001.SZ", "2024-03-04", "buy", 9500, "10.50", "25.94"),
        ("300750.SZ", "2024-03-04", "buy", 500, "180.00", "23.40"),
    ]
    assert summary["manifest"]["input_sha256"] == summary["input_sha256"] and len(summary["input_sha256"]) == 64
    assert result["params"] == {"weights": "equal", "cash_reserve": "0"}
    assert result["initial_cash"] == "200000.00"
    assert result["start"] == "2024-03-01" and result["end"] == "2024-03-08"
    assert result["owner"] == "alice" and result["attempts"] == 1 and result["error"] is None
    assert result["created_at"] <= result["finished_at"]
    # The worker asked the data service as itself.
    assert set(stack.fake.callers) == {"svc:backtest"}

    event = await stack.event_for(backtest_id)
    assert event.type == "backtest.finished" and event.source == "backtest"
    assert event.payload == {
        "backtest_id": backtest_id,
        "owner": "alice",
        "status": "succeeded",
        "total_return": "0.01375330",
        "error": None,
    }

    listed = (await stack.client.get("/v1/backtests?limit=5", headers=stack.headers())).json()
    assert listed[0]["backtest_id"] == backtest_id
    assert "equity_curve" not in listed[0]


async def test_the_same_job_delivered_twice_runs_once(stack: Stack) -> None:
    skipped_before = stack.jobs("skipped")
    calls_before = stack.fake.calls["600519.SH"]
    backtest_id = await stack.submit({"ts_codes": ["600519.SH"], "start": "2024-03-04", "end": "2024-03-07"})
    await stack.probe.enqueue("backtests", {"backtest_id": backtest_id}, message_id=backtest_id)
    # One worker takes jobs one at a time in queue order: once a job queued after the duplicate is done,
    # the duplicate has been handled too.
    sentinel = await stack.submit({"ts_codes": ["600036.SH"], "start": "2024-03-04", "end": "2024-03-07"})
    assert (await stack.finished(sentinel))["status"] == "succeeded"
    await stack.event_for(sentinel)

    result = await stack.finished(backtest_id)
    assert result["status"] == "succeeded"
    assert result["attempts"] == 1
    assert stack.fake.calls["600519.SH"] - calls_before == 1
    assert stack.jobs("skipped") - skipped_before == 1
    # One finished event. (Delivery is at-least-once: the API's and the worker's outbox relays may both publish
    # the same row, but it is the same event, with the same id, which consumers dedupe.)
    event = await stack.event_for(backtest_id)
    assert {e.id for e in stack.events if e.payload["backtest_id"] == backtest_id} == {event.id}
    # 1,000,000 / 2 ... one symbol: 1,000,000 / 170,000 per lot = 5.88 -> 5 lots = 500 shares at 1,700.00
    assert result["summary"]["trades"][0]["qty"] == 500


async def test_a_poison_job_fails_with_its_traceback_is_dead_lettered_and_the_queue_goes_on(stack: Stack) -> None:
    backtest_id = await stack.submit(
        {"strategy": "explode", "ts_codes": ["000001.SZ"], "start": "2024-03-04", "end": "2024-03-07"}
    )
    result = await stack.finished(backtest_id)
    assert result["status"] == "failed"
    assert "Traceback (most recent call last)" in result["error"]
    assert "RuntimeError: boom on purpose" in result["error"]
    assert "on_bar" in result["error"]
    assert result["equity_curve"] == [] and result["summary"] is None
    event = await stack.event_for(backtest_id)
    assert event.payload["status"] == "failed" and event.payload["error"] == "RuntimeError: boom on purpose"

    dead = await _dead_letter(stack.settings, backtest_id)
    assert dead is not None, "the poison job is not in the dead-letter queue"

    good = await stack.submit({"ts_codes": ["000001.SZ"], "start": "2024-03-04", "end": "2024-03-07"})
    assert (await stack.finished(good))["status"] == "succeeded"


async def _dead_letter(settings: Settings, message_id: str) -> dict[str, Any] | None:
    """Look for the job in `<ns>.dead-letters`, take it off the queue, and leave everything else there."""
    connection = await aio_pika.connect_robust(settings.amqp_url)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                channel = await connection.channel()
                queue = await channel.declare_queue(f"{settings.bus_namespace}.dead-letters", durable=True)
                found = None
                while (message := await queue.get(fail=False)) is not None:
                    if message.message_id == message_id:
                        found = {"body": message.body, "headers": message.headers}
                        await message.ack()
                # Closing the channel returns the messages left unacknowledged to the queue.
                await channel.close()
                if found is not None:
                    return found
                await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def test_a_data_outage_is_retried_and_then_fails_clearly_without_dead_lettering(stack: Stack) -> None:
    body = {"ts_codes": ["600036.SH"], "start": "2024-03-04", "end": "2024-03-07"}
    stack.fake.fail_next["600036.SH"] = 2  # the worker tries 3 times
    recovered = await stack.finished(await stack.submit(body))
    assert recovered["status"] == "succeeded"

    stack.fake.fail_next["600036.SH"] = 3
    failed_id = await stack.submit(body)
    failed = await stack.finished(failed_id)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("data_unavailable: the data service did not give the bars of 600036.SH after 3")
    assert (await stack.event_for(failed_id)).payload["status"] == "failed"

    unknown = await stack.finished(await stack.submit({**body, "ts_codes": ["600004.SH"]}))
    assert unknown["status"] == "failed" and unknown["error"].startswith("data_refused:")
    assert "unknown_security" in unknown["error"]

    empty = await stack.finished(await stack.submit({**body, "start": "2024-04-01", "end": "2024-04-30"}))
    assert empty["status"] == "failed" and empty["error"].startswith("no_data:")
    assert stack.fake.fail_next["600036.SH"] == 0


async def test_a_job_a_crashed_worker_left_running_is_run_again(stack: Stack) -> None:
    store = stack.app.state.backtests.store
    record = await store.create(
        backtest_id="crashed" + "0" * 25,
        owner="alice",
        strategy="buy_and_hold",
        params={},
        ts_codes=["600036.SH"],
        start=D1,
        end=D4,
        initial_cash=Decimal("100000"),
    )
    claimed = await store.claim(record.backtest_id)  # the worker that died had got this far
    assert claimed.status is BacktestStatus.RUNNING
    await stack.worker.handle({"backtest_id": record.backtest_id})  # the broker's redelivery
    result = await stack.finished(record.backtest_id)
    assert result["status"] == "succeeded" and result["attempts"] == 2
    assert [p["trade_date"] for p in result["equity_curve"]] == [d.isoformat() for d in (D1, D2, D3, D4)]


async def _orphan(stack: Stack, backtest_id: str, **values: Any) -> None:
    """A backtest row with no job in the queue (the API died before queueing it), backdated, with `values` set."""
    store = stack.app.state.backtests.store
    await store.create(
        backtest_id=backtest_id,
        owner="alice",
        strategy="buy_and_hold",
        params={},
        ts_codes=["600036.SH"],
        start=D1,
        end=D4,
        initial_cash=Decimal("100000"),
    )
    async with store.db.session() as session:
        await session.execute(
            update(backtests)
            .where(backtests.c.backtest_id == backtest_id)
            .values(created_at=utcnow() - timedelta(hours=1), **values)
        )


async def test_the_sweep_queues_a_backtest_whose_job_was_never_queued(stack: Stack) -> None:
    backtest_id = "orphan" + "0" * 26
    await _orphan(stack, backtest_id)
    assert await stack.worker.sweep() == 1
    result = await stack.finished(backtest_id)
    assert result["status"] == "succeeded" and result["attempts"] == 1, result["error"]
    assert (await stack.event_for(backtest_id)).payload["status"] == "succeeded"
    assert await stack.worker.sweep() == 0  # finished: not queued again


async def test_a_backtest_started_too_many_times_fails_and_is_not_dead_lettered(stack: Stack) -> None:
    backtest_id = "oomkilled" + "0" * 23
    await _orphan(stack, backtest_id, status="running", attempts=MAX_ATTEMPTS, started_at=utcnow())
    calls_before = stack.fake.calls["600036.SH"]
    await stack.worker.handle({"backtest_id": backtest_id})  # the broker's redelivery: acknowledged, not raised
    result = await stack.finished(backtest_id)
    assert result["status"] == "failed" and result["attempts"] == MAX_ATTEMPTS
    assert result["error"] == (
        f"too_many_attempts: the job was started {MAX_ATTEMPTS} times without finishing "
        "(a worker crashed or was killed each time)"
    )
    assert result["summary"] is None and result["equity_curve"] == []
    assert stack.fake.calls["600036.SH"] == calls_before  # not run again
    event = await stack.event_for(backtest_id)
    assert event.payload["status"] == "failed" and event.payload["error"].startswith("too_many_attempts:")


async def test_the_sweep_does_not_run_twice_a_job_already_in_the_queue(stack: Stack) -> None:
    backtest_id = "inqueue" + "0" * 25
    await _orphan(stack, backtest_id)
    skipped_before = stack.jobs("skipped")
    calls_before = stack.fake.calls["600036.SH"]
    # Hold the worker (it takes one job at a time) so the job is still in RabbitMQ when the sweep runs.
    async with stack.worker._busy:
        await stack.probe.enqueue("backtests", {"backtest_id": backtest_id}, message_id=backtest_id)
        assert await stack.worker.sweep() == 1
        assert (await stack.app.state.backtests.store.get(backtest_id)).status is BacktestStatus.QUEUED
    sentinel = await stack.submit({"ts_codes": ["600519.SH"], "start": "2024-03-04", "end": "2024-03-07"})
    assert (await stack.finished(sentinel))["status"] == "succeeded"
    result = await stack.finished(backtest_id)
    assert result["status"] == "succeeded" and result["attempts"] == 1
    assert stack.fake.calls["600036.SH"] - calls_before == 1
    assert stack.jobs("skipped") - skipped_before == 1
    await stack.event_for(backtest_id)
    assert len({e.id for e in stack.events if e.payload["backtest_id"] == backtest_id}) == 1


async def test_the_sweep_leaves_queued_rows_alone_while_jobs_wait_in_the_queue(stack: Stack) -> None:
    """With a backlog, an old `queued` row is waiting its turn: re-queueing it every sweep would multiply messages."""
    backtest_id = "backlog" + "0" * 25
    window = {"ts_codes": ["600519.SH"], "start": "2024-03-04", "end": "2024-03-07"}
    async with stack.worker._busy:  # the worker takes one job at a time: the second submission stays waiting
        first = await stack.submit(window)
        second = await stack.submit(window)
        await _orphan(stack, backtest_id)
        assert await stack.probe.waiting_jobs("backtests") >= 1
        assert await stack.worker.sweep() == 0
    for job in (first, second):
        assert (await stack.finished(job))["status"] == "succeeded"
    assert await stack.probe.waiting_jobs("backtests") == 0
    assert await stack.worker.sweep() == 1  # nothing waits any more: the orphan provably has no message
    assert (await stack.finished(backtest_id))["status"] == "succeeded"


async def test_bad_requests_are_refused_and_nothing_is_stored(stack: Stack) -> None:
    before = len((await stack.client.get("/v1/backtests?limit=500", headers=stack.headers())).json())
    good = {"ts_codes": ["000001.SZ"], "start": "2024-03-04", "end": "2024-03-07"}
    cases: dict[str, tuple[dict[str, Any], int, str, str]] = {
        "param out of range": (
            {**good, "params": {"cash_reserve": 1.5}},
            422,
            "invalid_request",
            "params.cash_reserve",
        ),
        "unknown param": ({**good, "params": {"cash": 1}}, 422, "invalid_request", "params.cash"),
        "unknown strategy": ({**good, "strategy": "nope"}, 404, "unknown_strategy", ""),
        "bad code": ({**good, "ts_codes": ["000300.SH"]}, 422, "invalid_request", "ts_codes"),
        "no codes": ({**good, "ts_codes": []}, 422, "invalid_request", "ts_codes"),
        "too many codes": (
            {**good, "ts_codes": [f"600{i:03d}.SH" for i in range(51)]},
            422,
            "invalid_request",
            "ts_codes",
        ),
        "twice": ({**good, "ts_codes": ["000001.SZ", "000001.sz"]}, 422, "invalid_request", "ts_codes"),
        "backwards": ({**good, "start": "2024-03-07", "end": "2024-03-04"}, 422, "invalid_request", "end"),
        "no cash": ({**good, "initial_cash": 0}, 422, "invalid_request", "initial_cash"),
        "fractions of a fen": ({**good, "initial_cash": "1000.001"}, 422, "invalid_request", "initial_cash"),
    }
    for label, (body, status, code, field) in cases.items():
        resp = await stack.client.post("/v1/backtests", json=body, headers=stack.headers())
        assert resp.status_code == status, (label, resp.text)
        payload = resp.json()
        assert payload["code"] == code, (label, payload)
        if field:
            assert payload["message"].startswith(f"{field}:"), (label, payload)
            assert payload["details"][0]["field"] == field, (label, payload)
    assert (await stack.client.post("/v1/backtests", json=good)).status_code == 401
    assert (await stack.client.get("/v1/backtests")).status_code == 401
    unauthenticated = await stack.client.get("/v1/backtests/x", headers={INTERNAL_HEADER: "not-a-token"})
    assert unauthenticated.status_code == 401 and unauthenticated.json()["code"] == "unauthenticated"
    after = len((await stack.client.get("/v1/backtests?limit=500", headers=stack.headers())).json())
    assert after == before


async def test_users_see_their_own_backtests_and_admins_see_all(stack: Stack) -> None:
    backtest_id = await stack.submit({"ts_codes": ["600036.SH"], "start": "2024-03-04", "end": "2024-03-07"}, "carol")
    await stack.finished(backtest_id, "carol")
    other = await stack.client.get(f"/v1/backtests/{backtest_id}", headers=stack.headers("dave"))
    assert other.status_code == 404 and other.json()["code"] == "backtest_not_found"
    assert backtest_id not in [
        b["backtest_id"] for b in (await stack.client.get("/v1/backtests", headers=stack.headers("dave"))).json()
    ]
    admin = await stack.client.get(f"/v1/backtests/{backtest_id}", headers=stack.headers("root", "admin"))
    assert admin.status_code == 200
    missing = await stack.client.get("/v1/backtests/does-not-exist", headers=stack.headers())
    assert missing.status_code == 404 and missing.json()["code"] == "backtest_not_found"


async def test_the_migrated_schema_matches_the_tables_the_code_uses(stack: Stack) -> None:
    db = stack.app.state.db

    def diff(connection: Any) -> list[Any]:
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_readiness_checks_the_database(stack: Stack) -> None:
    ready = await stack.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok", "cache": "ok"}


def test_dates_of_the_fixture_are_trading_days() -> None:
    from shared.market.calendar import is_trading_day

    assert all(is_trading_day(d) for d in (D1, D2, D3, D4))
    assert (D1.isoweekday(), D4.isoweekday()) == (1, 4)
