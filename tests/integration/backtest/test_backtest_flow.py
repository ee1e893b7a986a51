"""The backtest service and its worker against the real MariaDB and RabbitMQ: a request goes through the API, the
`<ns>.jobs.backtests` queue and the worker (which reads bars from a stand-in data service), and comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
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
from services.backtest.store import BacktestStatus, backtests, metadata
from services.backtest.worker import MAX_ATTEMPTS, BacktestWorker
from shared.core.market.calendar import sse_trading_days
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.bus.amqp import AmqpBus
from shared.platform.cache import create_cache
from shared.platform.clock import utcnow
from shared.platform.events import Envelope
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.platform.settings import Settings
from tests.conftest import Backing
from tests.integration.backtest.fakes import BARS, D1, D2, D3, D4, STRATEGIES, FakeData, steady_bars

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
        return {INTERNAL_HEADER: mint_internal_token(self.settings.internal_secret, Principal(subject, role))}

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
                if body["status"] in ("succeeded", "failed", "cancelled"):
                    return body
                await asyncio.sleep(0.05)

    finished_or_cancelled = finished

    async def event_for(self, backtest_id: str, event_type: str = "backtest.finished") -> Envelope:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                for event in self.events:
                    if event.type == event_type and event.payload["backtest_id"] == backtest_id:
                        return event
                await asyncio.sleep(0.05)

    def jobs(self, status: str) -> float:
        value = self.worker.metrics.registry.get_sample_value("lh_backtest_jobs_total", {"status": status})
        return value or 0.0


LONG_DAYS = sse_trading_days(date(2024, 1, 2), date(2024, 6, 28))


@pytest.fixture(scope="module")
async def stack(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = backing.settings()
    fake = FakeData(settings.internal_secret, bars={**BARS, "601398.SH": steady_bars(LONG_DAYS, "5.00")})
    app = create_app(settings, strategies=STRATEGIES)
    probe = AmqpBus(settings.amqp_url, namespace=settings.bus_namespace, source="test-probe")
    events: list[Envelope] = []

    async def collect(event: Envelope) -> None:
        events.append(event)

    await probe.start()
    await probe.subscribe("backtest-test-probe", ["backtest.*"], collect, durable=False)
    worker_infra = Infra(
        settings=settings,
        bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="backtest-worker"),
        cache=create_cache(settings.redis_url),
        services=ServiceDirectory(settings, transports={"data": httpx.ASGITransport(app=fake.app())}),
    )
    async with app.router.lifespan_context(app):
        await worker_infra.start()
        worker = BacktestWorker(
            settings,
            worker_infra,
            strategies=STRATEGIES,
            fetch_attempts=3,
            fetch_backoff_s=0.05,
            cache_dir=tmp_path_factory.mktemp("bars-cache"),
            cancel_poll_s=0.05,
        )
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
    trades = (await stack.client.get(f"/v1/backtests/{backtest_id}/trades", headers=stack.headers())).json()
    assert trades["total"] == 2
    assert [(t["ts_code"], t["trade_date"], t["side"], t["qty"], t["price"], t["fees"]) for t in trades["trades"]] == [
        ("000001.SZ", "2024-03-04", "buy", 9500, "10.50", "25.94"),
        ("300750.SZ", "2024-03-04", "buy", 500, "180.00", "23.40"),
    ]
    # Cost analysis: both orders were placed before the first day (buy and hold's), so there is no decision close
    # to set them against; their fills and fees stand (fees 25.94 on 99,750.00: 2.6005 -> 2.60 bps).
    tca = (await stack.client.get(f"/v1/backtests/{backtest_id}/tca", headers=stack.headers())).json()
    assert tca["total_orders"] == 2
    assert [(o["ts_code"], o["decision_date"], o["arrival_price"], o["fill_vwap"], o["fees"], o["fees_bps"],
             o["slippage_vs_arrival_bps"]) for o in tca["orders"]] == [
        ("000001.SZ", None, None, "10.5000", "25.94", "2.60", None),
        ("300750.SZ", None, None, "180.0000", "23.40", "2.60", None),
    ]  # fmt: skip
    assert [(g["key"], g["orders"], g["fees"]) for g in tca["by_day"]] == [("2024-03-04", 2, "49.34")]
    assert (tca["total"]["filled_amount"], tca["total"]["slippage_vs_arrival_bps"]) == ("189750.00", None)
    missing = await stack.client.get("/v1/backtests/no-such-backtest/tca", headers=stack.headers())
    assert (missing.status_code, missing.json()["code"]) == (404, "backtest_not_found")
    second = await stack.client.get(f"/v1/backtests/{backtest_id}/trades?limit=1&offset=1", headers=stack.headers())
    assert [t["ts_code"] for t in second.json()["trades"]] == ["300750.SZ"] and second.json()["total"] == 2
    # The daily series the report reads: equity in fen, the benchmark (000300.SH by default), exposure, holdings.
    store = stack.worker.store
    daily = await store.daily_frame(backtest_id)
    assert daily is not None
    assert daily["equity"].tolist() == [20190066, 20175066, 19985066, 20275066]
    assert (daily["cash"] + daily["market_value"]).tolist() == daily["equity"].tolist()
    assert daily["cash"].tolist() == [1020066] * 4
    assert daily["benchmark"].tolist() == [3500.0, 3535.0, 3510.0, 3600.0]
    assert daily["exposure"].tolist()[0] == pytest.approx(191700 / 201900.66, rel=1e-12)
    assert daily["holdings"].tolist() == [2, 2, 2, 2]
    unfilled = await store.unfilled_frame(backtest_id)
    assert unfilled is not None and len(unfilled) == 0 and summary["unfilled_orders"] == 0
    assert summary["benchmark"] == "000300.SH" and summary["metrics"]["beta"] is not None
    assert summary["manifest"]["input_sha256"] == summary["input_sha256"] and len(summary["input_sha256"]) == 64
    assert summary["manifest"]["params"] == {"weights": "equal", "cash_reserve": "0"}
    assert summary["manifest"]["code_version"]["package"]
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


async def test_a_succeeded_backtest_has_a_report_as_json_and_as_one_html_page(stack: Stack) -> None:
    body = {
        "strategy": "buy_and_hold",
        "ts_codes": ["000001.SZ", "300750.SZ"],
        "start": "2024-03-01",
        "end": "2024-03-08",
        "initial_cash": "200000",
        "name": "report <b>check</b>",
    }
    backtest_id = await stack.submit(body)
    assert (await stack.finished(backtest_id))["status"] == "succeeded"
    response = await stack.client.get(f"/v1/backtests/{backtest_id}/report", headers=stack.headers())
    assert response.status_code == 200, response.text
    report = response.json()
    # The equity of the hand computation above over the initial 200,000.00.
    assert report["dates"] == ["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"]
    assert report["equity"] == pytest.approx([1.0095033, 1.0087533, 0.9992533, 1.0137533], abs=1e-12)
    # Underwater from the D1 peak: D3 is 199,850.66 / 201,900.66 - 1.
    assert min(report["drawdown"]) == pytest.approx(199850.66 / 201900.66 - 1, abs=1e-12)
    assert report["trade_count"] == 2 and "trades" not in report
    summary = (await stack.client.get(f"/v1/backtests/{backtest_id}", headers=stack.headers())).json()["summary"]
    assert report["manifest"]["input_sha256"] == summary["input_sha256"]

    page = await stack.client.get(f"/v1/backtests/{backtest_id}/report.html?download=true", headers=stack.headers())
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-disposition"] == f'attachment; filename="backtest-{backtest_id}.html"'
    assert summary["input_sha256"] in page.text
    assert "<b>check</b>" not in page.text and "&lt;b&gt;check&lt;/b&gt;" in page.text
    assert "<script src=" not in page.text  # the chart library is inline: the page works offline


async def test_only_a_succeeded_backtest_has_a_report(stack: Stack) -> None:
    backtest_id = await stack.submit(
        {"strategy": "explode", "ts_codes": ["000001.SZ"], "start": "2024-03-04", "end": "2024-03-07"}
    )
    assert (await stack.finished(backtest_id))["status"] == "failed"
    response = await stack.client.get(f"/v1/backtests/{backtest_id}/report", headers=stack.headers())
    assert response.status_code == 409 and response.json()["code"] == "backtest_not_succeeded"
    missing = await stack.client.get("/v1/backtests/no-such-id/report.html", headers=stack.headers())
    assert missing.status_code == 404


async def test_the_same_job_delivered_twice_runs_once(stack: Stack) -> None:
    skipped_before = stack.jobs("skipped")
    calls_before = stack.fake.bulk_calls_for("600519.SH")
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
    assert stack.fake.bulk_calls_for("600519.SH") - calls_before == 1
    assert stack.jobs("skipped") - skipped_before == 1
    # One finished event. (Delivery is at-least-once: the API's and the worker's outbox relays may both publish
    # the same row, but it is the same event, with the same id, which consumers dedupe.)
    event = await stack.event_for(backtest_id)
    finished = {e.id for e in stack.events if e.type == "backtest.finished" and e.payload["backtest_id"] == backtest_id}
    assert finished == {event.id}
    # 1,000,000 / 2 ... one symbol: 1,000,000 / 170,000 per lot = 5.88 -> 5 lots = 500 shares at 1,700.00
    trades = (await stack.client.get(f"/v1/backtests/{backtest_id}/trades", headers=stack.headers())).json()
    assert [t["qty"] for t in trades["trades"]] == [500]


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
    stack.fake.fail_next = 2  # the worker tries 3 times
    recovered = await stack.finished(await stack.submit(body))
    assert recovered["status"] == "succeeded"

    stack.fake.fail_next = 3
    failed_id = await stack.submit(body)
    failed = await stack.finished(failed_id)
    assert failed["status"] == "failed"
    assert failed["error"].startswith(
        "data_unavailable: the data service did not give the bars of 1 symbol(s) from 2024-03-04 to 2024-03-07 "
        "after 3 attempts"
    )
    assert (await stack.event_for(failed_id)).payload["status"] == "failed"

    unknown = await stack.finished(await stack.submit({**body, "ts_codes": ["600004.SH"]}))
    assert unknown["status"] == "failed" and unknown["error"].startswith("no_data:")
    assert "600004.SH" in unknown["error"]
    by_index = {"universe": {"index": "000905.SH"}, "start": "2024-03-04", "end": "2024-03-07"}
    refused = await stack.finished(await stack.submit(by_index))
    assert refused["status"] == "failed" and refused["error"].startswith("data_refused:")
    assert "unknown_index" in refused["error"]

    empty = await stack.finished(await stack.submit({**body, "start": "2024-04-01", "end": "2024-04-30"}))
    assert empty["status"] == "failed" and empty["error"].startswith("no_data:")
    assert stack.fake.fail_next == 0


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


async def test_a_long_backtest_with_a_live_heartbeat_is_not_taken_for_a_lost_one(stack: Stack) -> None:
    store = stack.app.state.backtests.store
    long_ago = utcnow() - timedelta(hours=2)
    # Started two hours ago: one worker still renews its heartbeat, the other worker died an hour ago.
    await _orphan(stack, "alive" + "0" * 27, status="running", attempts=1, started_at=long_ago)
    await _orphan(stack, "dead" + "0" * 28, status="running", attempts=1, started_at=long_ago)
    assert await store.heartbeat("alive" + "0" * 27)
    async with store.db.session() as session:
        await session.execute(
            update(backtests)
            .where(backtests.c.backtest_id == "dead" + "0" * 28)
            .values(heartbeat_at=utcnow() - timedelta(hours=1))
        )
    stale = await store.stale(queued_for_s=120, running_for_s=300)
    assert "dead" + "0" * 28 in stale and "alive" + "0" * 27 not in stale
    assert not await store.heartbeat("crashed" + "0" * 25)  # finished or unknown rows take no heartbeat
    async with store.db.session() as session:  # leave nothing for the other tests' sweeps
        await session.execute(
            update(backtests)
            .where(backtests.c.backtest_id.in_(["alive" + "0" * 27, "dead" + "0" * 28]))
            .values(status="cancelled")
        )


async def test_a_backtest_started_too_many_times_fails_and_is_not_dead_lettered(stack: Stack) -> None:
    backtest_id = "oomkilled" + "0" * 23
    await _orphan(stack, backtest_id, status="running", attempts=MAX_ATTEMPTS, started_at=utcnow())
    calls_before = stack.fake.bulk_calls_for("600036.SH")
    await stack.worker.handle({"backtest_id": backtest_id})  # the broker's redelivery: acknowledged, not raised
    result = await stack.finished(backtest_id)
    assert result["status"] == "failed" and result["attempts"] == MAX_ATTEMPTS
    assert result["error"] == (
        f"too_many_attempts: the job was started {MAX_ATTEMPTS} times without finishing "
        "(a worker crashed or was killed each time)"
    )
    assert result["summary"] is None and result["equity_curve"] == []
    assert stack.fake.bulk_calls_for("600036.SH") == calls_before  # not run again
    event = await stack.event_for(backtest_id)
    assert event.payload["status"] == "failed" and event.payload["error"].startswith("too_many_attempts:")


async def test_the_sweep_does_not_run_twice_a_job_already_in_the_queue(stack: Stack) -> None:
    backtest_id = "inqueue" + "0" * 25
    await _orphan(stack, backtest_id)
    skipped_before = stack.jobs("skipped")
    calls_before = stack.fake.bulk_calls_for("600036.SH")
    # Hold the worker (it takes one job at a time) so the job is still in RabbitMQ when the sweep runs.
    async with stack.worker._busy:
        await stack.probe.enqueue("backtests", {"backtest_id": backtest_id}, message_id=backtest_id)
        assert await stack.worker.sweep() == 1
        assert (await stack.app.state.backtests.store.get(backtest_id)).status is BacktestStatus.QUEUED
    sentinel = await stack.submit({"ts_codes": ["600519.SH"], "start": "2024-03-04", "end": "2024-03-07"})
    assert (await stack.finished(sentinel))["status"] == "succeeded"
    result = await stack.finished(backtest_id)
    assert result["status"] == "succeeded" and result["attempts"] == 1
    assert stack.fake.bulk_calls_for("600036.SH") - calls_before == 1
    assert stack.jobs("skipped") - skipped_before == 1
    await stack.event_for(backtest_id)
    assert (
        len({e.id for e in stack.events if e.type == "backtest.finished" and e.payload["backtest_id"] == backtest_id})
        == 1
    )


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
        "unknown strategy": ({**good, "strategy": "nope"}, 422, "unknown_strategy", "strategy"),
        "bad code": ({**good, "ts_codes": ["000300.SH"]}, 422, "invalid_request", "ts_codes"),
        "no codes": ({**good, "ts_codes": []}, 422, "invalid_request", "ts_codes"),
        "too many codes": (
            {**good, "ts_codes": [f"{600000 + i}.SH" for i in range(5001)]},
            422,
            "invalid_request",
            "ts_codes",
        ),
        "twice": ({**good, "ts_codes": ["000001.SZ", "000001.sz"]}, 422, "invalid_request", "ts_codes"),
        "backwards": ({**good, "start": "2024-03-07", "end": "2024-03-04"}, 422, "invalid_request", "end"),
        "no cash": ({**good, "initial_cash": 0}, 422, "invalid_request", "initial_cash"),
        "fractions of a fen": ({**good, "initial_cash": "1000.001"}, 422, "invalid_request", "initial_cash"),
        # Read strictly (shared/platform/request_model.py): no unknown field, no timestamp for a date, no boolean or inexact
        # number for an amount, no string for a boolean.
        "unknown field": ({**good, "stop_loss": "0.1"}, 422, "invalid_request", "stop_loss"),
        "a date as a number": ({**good, "start": 20240304}, 422, "invalid_request", "start"),
        "cash as true": ({**good, "initial_cash": True}, 422, "invalid_request", "initial_cash"),
        "cash beyond a float": ({**good, "initial_cash": 1234567.123456789}, 422, "invalid_request", "initial_cash"),
        "cost as a word": ({**good, "costs": {"stamp_duty": "no"}}, 422, "invalid_request", "costs.stamp_duty"),
    }
    for label, (body, status, code, field) in cases.items():
        resp = await stack.client.post("/v1/backtests", json=body, headers=stack.headers())
        assert resp.status_code == status, (label, resp.text)
        payload = resp.json()
        assert payload["code"] == code, (label, payload)
        if field:
            assert payload["message"].startswith(f"{field}:"), (label, payload)
            if code == "invalid_request":
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
        # Only the tables this module's metadata owns: the optimiser's (migration 0003) have their own metadata.
        def ours(_: Any, name: str | None, type_: str, *__: Any) -> bool:
            return type_ != "table" or name in metadata.tables or name == "alembic_version"

        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": ours})
        return [d for d in compare_metadata(context, metadata) if _table_of(d) in (None, *metadata.tables)]

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


def _table_of(change: Any) -> str | None:
    """The table a schema difference is about (index and table changes carry it; column changes name it)."""
    item = change[0] if isinstance(change, list) else change
    obj = item[1] if len(item) > 1 else None
    table = getattr(obj, "table", None)
    if table is not None:
        return str(table.name)
    if hasattr(obj, "name") and item[0] in ("add_table", "remove_table"):
        return str(obj.name)
    return str(item[2]) if len(item) > 2 and isinstance(item[2], str) else None


async def test_readiness_checks_the_database(stack: Stack) -> None:
    ready = await stack.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok", "cache": "ok"}


def test_dates_of_the_fixture_are_trading_days() -> None:
    from shared.core.market.calendar import is_trading_day

    assert all(is_trading_day(d) for d in (D1, D2, D3, D4))
    assert (D1.isoweekday(), D4.isoweekday()) == (1, 4)


# --- jobs: universes, costs, benchmark, progress, cancel, search, the bars cache --------------------------------------


async def test_an_index_universe_is_its_constituents_on_the_start_date(stack: Stack) -> None:
    body = {"universe": {"index": "000300.sh"}, "start": "2024-03-04", "end": "2024-03-07", "benchmark": None}
    result = await stack.finished(await stack.submit(body))
    assert result["status"] == "succeeded", result["error"]
    # Published 2024-03-01: 600519.SH, 000001.SZ and 000300.SH (an index, not a stock: left out)
    assert result["ts_codes"] == ["000001.SZ", "600519.SH"]
    assert result["universe"] == {"index": "000300.SH", "label": "index 000300.SH"}
    assert result["benchmark"] is None and result["summary"]["benchmark"] is None
    assert result["summary"]["symbols"] == 2

    before = await stack.finished(await stack.submit({**body, "start": "2024-02-29"}))
    assert before["status"] == "failed" and before["error"].startswith("no_constituents:")


async def test_a_filter_universe_lists_the_boards_stocks_without_st(stack: Stack) -> None:
    body = {
        "universe": {"filter": {"board": "main", "exclude_st": True}},
        "start": "2024-03-04",
        "end": "2024-03-07",
    }
    result = await stack.finished(await stack.submit(body))
    assert result["status"] == "succeeded", result["error"]
    # main board: 000001.SZ, 600519.SH, 600036.SH; 600036.SH is under an ST name on the start date
    assert result["ts_codes"] == ["000001.SZ", "600519.SH"]
    banks = await stack.finished(await stack.submit({**body, "universe": {"filter": {"industry": "银行"}}}))
    assert banks["ts_codes"] == ["000001.SZ", "600036.SH"]


async def test_the_cost_model_reaches_the_engine(stack: Stack) -> None:
    body = {
        "ts_codes": ["600519.SH"],
        "start": "2024-03-04",
        "end": "2024-03-07",
        "costs": {"commission_rate": "0.001", "min_commission": "0", "fill_price": "close"},
    }
    result = await stack.finished(await stack.submit(body))
    assert result["status"] == "succeeded", result["error"]
    # Ordered before the first bar, filled at D1's close 1,710.00: 1,000,000 / 171,000 per lot -> 500 shares,
    # 855,000.00; commission 0.1% = 855.00, transfer fee 0.001% = 8.55; cash 1,000,000 - 855,863.55 = 144,136.45;
    # equity at every close (1,710.00) 144,136.45 + 855,000 = 999,136.45.
    assert result["summary"]["fees_paid"] == "863.55"
    assert result["summary"]["final_equity"] == "999136.45"
    assert result["costs"] == {"commission_rate": "0.001", "min_commission": "0", "fill_price": "close"}
    assert result["summary"]["manifest"]["config"]["fill_price"] == "close"


async def test_bad_universes_costs_and_params_are_refused_naming_the_field(stack: Stack) -> None:
    good = {"universe": {"ts_codes": ["000001.SZ"]}, "start": "2024-03-04", "end": "2024-03-07"}
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "two universes": ({**good, "universe": {"ts_codes": ["000001.SZ"], "index": "000300.SH"}}, "universe"),
        "no universe": ({k: v for k, v in good.items() if k != "universe"}, "universe"),
        "universe and ts_codes": ({**good, "ts_codes": ["000001.SZ"]}, "ts_codes"),
        "bad index": ({**good, "universe": {"index": "hs300"}}, "universe.index"),
        "bad board": ({**good, "universe": {"filter": {"board": "nasdaq"}}}, "universe.filter.board"),
        "bad code": ({**good, "universe": {"ts_codes": ["123"]}}, "universe.ts_codes"),
        "volume cap": ({**good, "costs": {"volume_cap": "2"}}, "costs.volume_cap"),
        "unknown cost": ({**good, "costs": {"commision_rate": "0.001"}}, "costs.commision_rate"),
        "slippage without kind": ({**good, "costs": {"slippage_amount": "5"}}, "costs"),
        "dual_ma fast": ({**good, "strategy": "dual_ma", "params": {"fast": 0}}, "params.fast"),
        "bad benchmark": ({**good, "benchmark": "csi300"}, "benchmark"),
    }
    app_strategies = stack.app.state.backtests.strategies
    if "dual_ma" not in app_strategies:
        del cases["dual_ma fast"]
    for label, (body, field) in cases.items():
        resp = await stack.client.post("/v1/backtests", json=body, headers=stack.headers())
        assert resp.status_code == 422, (label, resp.text)
        assert resp.json()["code"] == "invalid_request", (label, resp.text)
        assert resp.json()["message"].startswith(f"{field}:"), (label, resp.text)


async def test_an_asked_benchmark_must_exist_and_the_default_one_is_optional(stack: Stack) -> None:
    body = {"ts_codes": ["000001.SZ"], "start": "2024-03-04", "end": "2024-03-07"}
    asked = await stack.finished(await stack.submit({**body, "benchmark": "000905.SH"}))
    assert asked["status"] == "failed" and asked["error"].startswith("no_benchmark:")
    stack.fake.has_benchmark = False
    try:
        default = await stack.finished(await stack.submit(body))
    finally:
        stack.fake.has_benchmark = True
    assert default["status"] == "succeeded", default["error"]
    assert default["summary"]["benchmark"] is None and default["summary"]["metrics"]["beta"] is None


async def test_a_running_backtest_reports_progress_and_can_be_cancelled(stack: Stack) -> None:
    body = {
        "strategy": "slow",
        "params": {"sleep_s": 0.02},
        "ts_codes": ["601398.SH"],
        "start": "2024-01-02",
        "end": "2024-06-28",
        "benchmark": None,
    }
    backtest_id = await stack.submit(body)
    progress = await stack.event_for(backtest_id, "backtest.progress")
    days = len(LONG_DAYS)
    # The engine reports every 50 days: the first report is 50 of the half-year's trading days.
    assert progress.payload["days"] == days and progress.payload["days_done"] == 50
    assert progress.payload["percent"] == round(100 * 50 / days, 1)
    assert progress.payload["owner"] == "alice" and progress.payload["eta_s"] > 0

    other = await stack.client.post(f"/v1/backtests/{backtest_id}/cancel", headers=stack.headers("mallory"))
    assert other.status_code == 404  # not hers to see, let alone cancel
    resp = await stack.client.post(f"/v1/backtests/{backtest_id}/cancel", headers=stack.headers())
    assert resp.status_code == 200, resp.text
    assert resp.json()["cancel_requested"] is True
    result = await stack.finished_or_cancelled(backtest_id)
    assert result["status"] == "cancelled" and result["summary"] is None and result["equity_curve"] == []
    event = await stack.event_for(backtest_id)
    assert event.payload["status"] == "cancelled" and event.payload["owner"] == "alice"

    again = await stack.client.post(f"/v1/backtests/{backtest_id}/cancel", headers=stack.headers())
    assert again.status_code == 409 and again.json()["code"] == "backtest_finished"


async def test_a_queued_backtest_is_cancelled_at_once_and_its_job_then_does_nothing(stack: Stack) -> None:
    store = stack.app.state.backtests.store
    record = await store.create(
        backtest_id="queued" + "1" * 26,
        owner="alice",
        strategy="buy_and_hold",
        params={},
        ts_codes=["600036.SH"],
        start=D1,
        end=D4,
        initial_cash=Decimal("100000"),
    )
    admin_record = await store.create(
        backtest_id="queued" + "2" * 26,
        owner="bob",
        strategy="buy_and_hold",
        params={},
        ts_codes=["600036.SH"],
        start=D1,
        end=D4,
        initial_cash=Decimal("100000"),
    )
    resp = await stack.client.post(f"/v1/backtests/{record.backtest_id}/cancel", headers=stack.headers())
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert (await stack.event_for(record.backtest_id)).payload["status"] == "cancelled"
    by_admin = await stack.client.post(
        f"/v1/backtests/{admin_record.backtest_id}/cancel", headers=stack.headers("root", "admin")
    )
    assert by_admin.status_code == 200 and by_admin.json()["status"] == "cancelled"

    skipped = stack.jobs("skipped")
    await stack.probe.enqueue("backtests", {"backtest_id": record.backtest_id}, message_id=record.backtest_id)
    sentinel = await stack.submit({"ts_codes": ["600036.SH"], "start": "2024-03-04", "end": "2024-03-07"})
    await stack.finished(sentinel)
    assert stack.jobs("skipped") - skipped == 1
    assert (await store.get(record.backtest_id)).status is BacktestStatus.CANCELLED


async def test_past_runs_are_listed_and_searched(stack: Stack) -> None:
    who = "searcher"
    base = {"start": "2024-03-04", "end": "2024-03-07"}
    alpha = await stack.submit({**base, "name": "Alpha 50%_run", "ts_codes": ["600519.SH"]}, who)
    boom = await stack.submit({**base, "name": "beta", "strategy": "explode", "ts_codes": ["000001.SZ"]}, who)
    index = await stack.submit({**base, "universe": {"index": "000300.SH"}}, who)
    outcomes = [await stack.finished(backtest_id, who) for backtest_id in (alpha, boom, index)]
    assert [o["status"] for o in outcomes] == ["succeeded", "failed", "succeeded"], [o["error"] for o in outcomes]

    async def ids(query: str, subject: str = who, role: str = "trader") -> list[str]:
        resp = await stack.client.get(f"/v1/backtests?{query}", headers=stack.headers(subject, role))
        assert resp.status_code == 200, resp.text
        return [b["backtest_id"] for b in resp.json()]

    assert await ids("") == [index, boom, alpha]  # newest first
    assert await ids("limit=1&offset=1") == [boom]
    assert await ids("strategy=explode") == [boom]
    assert await ids("status=failed") == [boom]
    assert await ids("status=succeeded") == [index, alpha]
    assert await ids("q=alpha") == [alpha]  # case-insensitive, in the name
    assert await ids("q=50%25_") == [alpha]  # % and _ are plain characters
    assert await ids("q=600519") == [index, alpha]  # in the resolved symbols
    assert await ids("q=index 000300") == [index]  # in the universe's label
    assert await ids("q=000300.sh") == [index, boom, alpha]  # the default benchmark of all three
    assert await ids(f"q={boom[:8]}") == [boom]
    assert await ids("created_from=2999-01-01T00:00:00Z") == []
    assert await ids("created_to=2000-01-01T00:00:00") == []
    assert await ids("") != [] and await ids("", "someone-else") == []
    assert set(await ids(f"q={alpha}", "root", "admin")) == {alpha}
    bad = await stack.client.get("/v1/backtests?status=nope", headers=stack.headers(who))
    assert bad.status_code == 422 and bad.json()["message"].startswith("status:")


async def test_bars_are_cached_per_data_version(stack: Stack) -> None:
    cache = stack.worker.cache_dir
    body = {"ts_codes": ["300750.SZ", "600036.SH"], "start": "2024-03-04", "end": "2024-03-06", "benchmark": None}
    before = set(await asyncio.to_thread(cache.glob, "bars-v*.arrow"))
    first = await stack.finished(await stack.submit(body))
    second = await stack.finished(await stack.submit(body))
    assert first["summary"]["final_equity"] == second["summary"]["final_equity"]
    added = set(await asyncio.to_thread(cache.glob, "bars-v*.arrow")) - before
    assert len(added) == 1 and next(iter(added)).name.startswith("bars-v1-")
    assert stack.fake.bulk_calls_for("300750.SZ,600036.SH") == 2  # asked twice, read once: the header says v1
    stack.fake.version = 2
    try:
        await stack.finished(await stack.submit(body))
    finally:
        stack.fake.version = 1
    newer = set(await asyncio.to_thread(cache.glob, "bars-v*.arrow")) - before - added
    assert len(newer) == 1 and next(iter(newer)).name.startswith("bars-v2-")
