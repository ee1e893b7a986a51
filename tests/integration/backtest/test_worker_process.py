"""`python -m services.backtest.worker` as a real process: it takes a job from RabbitMQ, reads bars from a data
service over HTTP, stores the result in MariaDB, reports its metrics, and stops cleanly on SIGTERM. With two worker
processes: a worker killed with SIGKILL mid-job loses nothing (the other one runs the job, once), and a poison job
fails with its traceback, is dead-lettered, and the queue goes on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from services.backtest.app import create_app
from shared.core.market.calendar import sse_trading_days
from shared.platform.bus.amqp import AmqpBus
from shared.platform.events import Envelope
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.platform.settings import Settings
from tests.conftest import ROOT, Backing
from tests.integration.backtest.fakes import BARS, STRATEGIES, FakeData, steady_bars
from tests.integration.backtest.test_backtest_flow import _dead_letter

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ThreadedServer:
    """The stand-in data service on a real port, served by uvicorn in a thread."""

    def __init__(self, app: object, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="fake-data", daemon=True)

    def __enter__(self) -> _ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class WorkerProcess:
    settings: Settings
    fake: FakeData
    proc: subprocess.Popen[bytes]
    metrics_url: str
    log_path: Path


def _start_worker(
    backing: Backing, settings: Settings, data_port: int, tmp_path: Path, name: str
) -> tuple[subprocess.Popen[bytes], str, Path]:
    metrics_port = _free_port()
    env = {
        **os.environ,
        **backing.env(),
        "LH_INTERNAL_SECRET": settings.internal_secret,
        "LH_APPROVAL_SECRET": settings.approval_secret,
        "LH_DATA_URL": f"http://127.0.0.1:{data_port}",
        "LH_WORKER_METRICS_PORT": str(metrics_port),
        "LH_LOG_JSON": "true",
        "LH_BACKTEST_CACHE_DIR": str(tmp_path / "bars-cache"),
        "LH_STRATEGY_PACKAGES": "strategies,tests.integration.backtest.strategies_for_tests",
        "PYTHONPATH": str(ROOT),
    }
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.backtest.worker"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    return proc, f"http://127.0.0.1:{metrics_port}/metrics", log_path


def _stop(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    print(log_path.read_text()[-4000:])  # shown by pytest when the test fails


@pytest.fixture
def worker_process(backing: Backing, tmp_path: Path) -> Iterator[WorkerProcess]:
    """The stand-in data service on a real port, and the worker process pointed at it."""
    settings = backing.settings()
    fake = FakeData(settings.internal_secret)
    data_port = _free_port()
    with _ThreadedServer(fake.app(), data_port):
        proc, metrics_url, log_path = _start_worker(backing, settings, data_port, tmp_path, "worker")
        try:
            yield WorkerProcess(settings, fake, proc, metrics_url, log_path)
        finally:
            _stop(proc, log_path)


@dataclass
class Fleet:
    settings: Settings
    fake: FakeData
    workers: list[WorkerProcess]


LONG_DAYS = sse_trading_days(date(2024, 1, 2), date(2024, 6, 28))


@pytest.fixture
def two_workers(backing: Backing, tmp_path: Path) -> Iterator[Fleet]:
    """Two worker processes on the same queue, and a data service with a long series for a slow job."""
    settings = backing.settings()
    fake = FakeData(settings.internal_secret, bars={**BARS, "601398.SH": steady_bars(LONG_DAYS, "5.00")})
    data_port = _free_port()
    with _ThreadedServer(fake.app(), data_port):
        started = [_start_worker(backing, settings, data_port, tmp_path, f"worker-{i}") for i in range(2)]
        workers = [WorkerProcess(settings, fake, proc, url, log) for proc, url, log in started]
        try:
            yield Fleet(settings, fake, workers)
        finally:
            for w in workers:
                _stop(w.proc, w.log_path)


async def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(timeout_s):
        while True:
            assert proc.poll() is None, f"the worker exited with {proc.returncode}"
            try:
                resp = await client.get(url)
                if resp.status_code == 200:
                    return resp
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def test_the_worker_process_runs_a_job_and_stops_on_sigterm(worker_process: WorkerProcess) -> None:
    settings, fake, proc = worker_process.settings, worker_process.fake, worker_process.proc
    app = create_app(settings)
    headers = {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal("erin", "trader"))}
    async with app.router.lifespan_context(app):
        # /metrics answers once the worker consumes from the queue.
        metrics = await _wait_http(worker_process.metrics_url, 60, proc)
        assert "lh_backtest_jobs_total" in metrics.text
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bt") as client:
            body = {"ts_codes": ["000001.SZ", "300750.SZ"], "start": "2024-03-04", "end": "2024-03-07"}
            resp = await client.post("/v1/backtests", json=body, headers=headers)
            assert resp.status_code == 202, resp.text
            backtest_id = resp.json()["backtest_id"]
            async with asyncio.timeout(60):
                while True:
                    assert proc.poll() is None, f"the worker exited with {proc.returncode}"
                    result = (await client.get(f"/v1/backtests/{backtest_id}", headers=headers)).json()
                    if result["status"] in ("succeeded", "failed"):
                        break
                    await asyncio.sleep(0.1)
        assert result["status"] == "succeeded", result["error"]
        assert [p["equity"] for p in result["equity_curve"]][-1] == result["summary"]["final_equity"]
        assert len(result["equity_curve"]) == 4
        assert fake.bulk_calls_for("000001.SZ,300750.SZ") == 1  # one bulk read for the universe

        metrics = await _wait_http(worker_process.metrics_url, 10, proc)
        assert 'lh_backtest_jobs_total{status="succeeded"} 1.0' in metrics.text
        assert "lh_backtest_job_seconds_count 1.0" in metrics.text

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    log_text = await asyncio.to_thread(worker_process.log_path.read_text)
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    succeeded = [entry for entry in lines if entry["msg"] == "backtest succeeded"]
    assert succeeded and succeeded[0]["service"] == "backtest-worker"
    assert succeeded[0]["backtest_id"] == backtest_id
    assert succeeded[0]["correlation_id"]  # carried from the API request through the AMQP headers
    assert any(entry["msg"] == "backtest worker stopping" for entry in lines)


def _log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_a_killed_worker_loses_nothing_and_a_poison_job_does_not_stop_the_queue(two_workers: Fleet) -> None:
    settings, workers = two_workers.settings, two_workers.workers
    app = create_app(settings, strategies=STRATEGIES)
    headers = {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal("erin", "trader"))}
    probe = AmqpBus(settings.amqp_url, namespace=settings.bus_namespace, source="test-probe")
    finished: list[Envelope] = []

    async def collect(event: Envelope) -> None:
        finished.append(event)

    await probe.start()
    await probe.subscribe("backtest-process-probe", ["backtest.finished"], collect, durable=False)
    try:
        async with app.router.lifespan_context(app):
            for w in workers:
                await _wait_http(w.metrics_url, 60, w.proc)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bt") as client:

                async def submit(body: dict[str, Any]) -> str:
                    resp = await client.post("/v1/backtests", json=body, headers=headers)
                    assert resp.status_code == 202, resp.text
                    return str(resp.json()["backtest_id"])

                async def final(backtest_id: str) -> dict[str, Any]:
                    async with asyncio.timeout(60):
                        while True:
                            body = (await client.get(f"/v1/backtests/{backtest_id}", headers=headers)).json()
                            if body["status"] in ("succeeded", "failed", "cancelled"):
                                return dict(body)
                            await asyncio.sleep(0.1)

                # A slow job (about 0.02 s a day over half a year): kill -9 the worker running it, mid-run.
                slow = await submit(
                    {
                        "strategy": "slow",
                        "params": {"sleep_s": 0.02},
                        "ts_codes": ["601398.SH"],
                        "start": "2024-01-02",
                        "end": "2024-06-28",
                        "benchmark": None,
                    }
                )
                async with asyncio.timeout(30):
                    victim = None
                    while victim is None:
                        for w in workers:
                            lines = await asyncio.to_thread(_log_lines, w.log_path)
                            if any(e["msg"] == "backtest running" and e.get("backtest_id") == slow for e in lines):
                                victim = w
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # well into the run (the whole run takes about 2.5 s)
                assert victim.proc.poll() is None, "the job finished before the worker could be killed"
                victim.proc.send_signal(signal.SIGKILL)
                assert await asyncio.to_thread(victim.proc.wait, 10) == -signal.SIGKILL
                survivor = next(w for w in workers if w is not victim)

                result = await final(slow)
                assert result["status"] == "succeeded", result["error"]
                assert result["attempts"] == 2  # started by the killed worker, then by the survivor
                # Bought 100 shares at 5.00 on the first day: 500.00 + commission 5.00 (the minimum) + transfer
                # fee 0.005 -> 0.01 (half-up), so equity stays 1,000,000 - 5.01 at a steady price.
                assert result["summary"]["final_equity"] == "999994.99"
                assert len(result["equity_curve"]) == len(LONG_DAYS)
                trades = (await client.get(f"/v1/backtests/{slow}/trades", headers=headers)).json()
                assert trades["total"] == 1 and trades["trades"][0]["qty"] == 100
                survivor_log = await asyncio.to_thread(_log_lines, survivor.log_path)
                assert [e["backtest_id"] for e in survivor_log if e["msg"] == "backtest succeeded"] == [slow]

                # A poison job fails with its traceback for its owner, goes to the dead letters, and the next job
                # still runs on the surviving worker.
                poison = await submit(
                    {"strategy": "explode", "ts_codes": ["000001.SZ"], "start": "2024-03-04", "end": "2024-03-07"}
                )
                failed = await final(poison)
                assert failed["status"] == "failed"
                assert "Traceback (most recent call last)" in failed["error"]
                assert "RuntimeError: boom on purpose" in failed["error"]
                assert await _dead_letter(settings, poison) is not None
                after = await final(
                    await submit({"ts_codes": ["000001.SZ"], "start": "2024-03-04", "end": "2024-03-07"})
                )
                assert after["status"] == "succeeded", after["error"]

                # Exactly one backtest.finished per job (by event id: relays may publish a row twice, as the same
                # event), and the slow job's says succeeded.
                async with asyncio.timeout(10):
                    while True:
                        if {e.payload["backtest_id"] for e in finished} >= {slow, poison, after["backtest_id"]}:
                            break
                        await asyncio.sleep(0.05)
                slow_events = {e.id: e for e in finished if e.payload["backtest_id"] == slow}
                assert [e.payload["status"] for e in slow_events.values()] == ["succeeded"]
    finally:
        await probe.close()
