"""`python -m services.backtest.worker` as a real process: it takes a job from RabbitMQ, reads bars from a data
service over HTTP, stores the result in MariaDB, reports its metrics, and stops cleanly on SIGTERM."""

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
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.backtest.app import create_app
from shared.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.settings import Settings
from tests.conftest import ROOT, Backing
from tests.integration.backtest.fakes import FakeData

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


@pytest.fixture
def worker_process(backing: Backing, tmp_path: Path) -> Iterator[WorkerProcess]:
    """The stand-in data service on a real port, and the worker process pointed at it."""
    settings = backing.settings()
    fake = FakeData(settings.jwt_secret)
    data_port, metrics_port = _free_port(), _free_port()
    env = {
        **os.environ,
        **backing.env(),
        "LH_JWT_SECRET": settings.jwt_secret,
        "LH_APPROVAL_SECRET": settings.approval_secret,
        "LH_DATA_URL": f"http://127.0.0.1:{data_port}",
        "LH_WORKER_METRICS_PORT": str(metrics_port),
        "LH_LOG_JSON": "true",
        "PYTHONPATH": str(ROOT),
    }
    log_path = tmp_path / "worker.log"
    with _ThreadedServer(fake.app(), data_port), open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.backtest.worker"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield WorkerProcess(settings, fake, proc, f"http://127.0.0.1:{metrics_port}/metrics", log_path)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            print(log_path.read_text()[-4000:])  # shown by pytest when the test fails


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
    headers = {INTERNAL_HEADER: mint_internal_token(settings.jwt_secret, Principal("erin", "trader"))}
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
        assert fake.calls["000001.SZ"] == 1 and fake.calls["300750.SZ"] == 1

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
