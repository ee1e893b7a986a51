"""Smoke test of `make run`: the standalone entry point, one process, SQLite + in-memory bus, same order flow."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.platform.clock import EXCHANGE_TZ
from tests.e2e.flow import create_user, login, place_order_and_see_the_fill, tradable_main_board_stock

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with standalone_process(tmp_path_factory.mktemp("standalone")) as platform:
        yield platform


@contextmanager
def standalone_process(work: Path, **settings: str) -> Iterator[tuple[str, str]]:
    """`lianghua.standalone` in a subprocess with its databases in `work` and the given LH_ settings
    (e.g. LH_MARKET_CLOCK="replay"); yields its base URL and the admin's password once it is ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    password = secrets.token_urlsafe(12)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LH_")},
        "LH_ADMIN_PASSWORD": password,
        "LH_DATABASE_URL": f"sqlite+aiosqlite:///{work}/{{service}}.db",
        "PYTHONPATH": str(ROOT),
        **settings,
    }
    log = open(work / "standalone.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "lianghua.standalone", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError((work / "standalone.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    "standalone did not become ready:\n" + (work / "standalone.log").read_text()[-3000:]
                )
            time.sleep(0.2)
        yield base, password
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def test_standalone_order_flow_and_web_page(standalone: tuple[str, str]) -> None:
    base, password = standalone
    async with httpx.AsyncClient(timeout=20) as client:
        page = await client.get(base + "/")
        assert page.status_code == 200 and "bootstrap" in page.text.lower()
        admin = await login(client, base, "admin", password)
        name, pw = await create_user(client, admin, "trader")
        trader = await login(client, base, name, pw)
        # `make run` replays the demo market, parked at its last session (2024-12-31), and the paper broker matches
        # the desk's orders against the replay feed's quotes (LH_PAPER_FILLS=quotes): a market buy fills against the
        # latest quote's asks, so the test waits for the stock's first quote (the feed starts at the 09:30 open)
        stock = (await tradable_main_board_stock(client, trader))["ts_code"]
        deadline = time.monotonic() + 30
        while (await client.get(f"{base}/api/v1/quotes/{stock}/live", headers=trader.headers)).status_code != 200:
            assert time.monotonic() < deadline, "no live quote from the replay feed"
            await asyncio.sleep(0.2)
        seen = await place_order_and_see_the_fill(client, trader)
        assert seen["quote"]["ts_code"] == stock
        bars = await client.get(
            f"{base}/api/v1/bars",
            params={"ts_code": stock, "start": "2024-12-31", "end": "2024-12-31"},
            headers=trader.headers,
        )
        assert bars.status_code == 200, bars.text
    order = seen["placed"]["order"]
    assert order["status"] == "filled"
    [bar] = bars.json()["bars"]
    # 100 shares take the best ask, a fen above the replayed last price, which stays within the day's low and high
    price = Decimal(seen["fill"]["payload"]["price"])
    assert Decimal(str(bar["low"])) + Decimal("0.01") <= price <= Decimal(str(bar["high"])) + Decimal("0.01")
    traded_at = datetime.fromisoformat(seen["fill"]["payload"]["traded_at"])
    assert (
        datetime(2024, 12, 31, 9, 30, tzinfo=EXCHANGE_TZ) <= traded_at < datetime(2024, 12, 31, 15, tzinfo=EXCHANGE_TZ)
    )
    assert seen["read_back"]["status"] == "filled"


async def _until(client: httpx.AsyncClient, url: str, headers: dict[str, str], done: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = (await client.get(url, headers=headers)).json()
        if body["status"] in done:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_standalone_backtest_report_and_grid_search(standalone: tuple[str, str]) -> None:
    base, password = standalone
    async with httpx.AsyncClient(timeout=30) as client:
        admin = (await login(client, base, "admin", password)).headers
        codes = [s["ts_code"] for s in (await client.get(base + "/api/v1/securities", headers=admin)).json()][:6]
        common = {"ts_codes": codes, "start": "2023-01-03", "end": "2024-12-31"}
        grid = {"strategy": "dual_ma", "space": {"fast": [3, 5], "slow": [10, 20]}, "objective": "sharpe", **common}
        submitted = await client.post(base + "/api/v1/optimisations", json=grid, headers=admin)
        assert submitted.status_code == 202, submitted.text
        opt_id = submitted.json()["optimisation_id"]
        finished = await _until(client, f"{base}/api/v1/optimisations/{opt_id}", admin, {"succeeded", "failed"})
        assert finished["status"] == "succeeded", finished
        assert finished["total_points"] == 4 and finished["done_points"] == 4
        points = (await client.get(f"{base}/api/v1/optimisations/{opt_id}/points", headers=admin)).json()
        sharpes = [p["metrics"]["sharpe"] for p in points]
        assert sharpes == sorted(sharpes, reverse=True)  # best first
        page = await client.get(f"{base}/api/v1/optimisations/{opt_id}/report.html", headers=admin)
        assert page.status_code == 200 and "<script src=" not in page.text

        # A second method: the best point run as an ordinary backtest gives the same Sharpe and total return.
        best = points[0]
        body = {"strategy": "dual_ma", "params": best["params"], "universe": {"ts_codes": codes},
                "start": common["start"], "end": common["end"], "benchmark": None}  # fmt: skip
        accepted = await client.post(base + "/api/v1/backtests", json=body, headers=admin)
        assert accepted.status_code == 202, accepted.text
        bt_id = accepted.json()["backtest_id"]
        result = await _until(client, f"{base}/api/v1/backtests/{bt_id}", admin, {"succeeded", "failed"})
        assert result["status"] == "succeeded", result["error"]
        assert result["summary"]["metrics"]["sharpe"] == best["metrics"]["sharpe"]
        assert result["summary"]["metrics"]["total_return"] == best["metrics"]["total_return"]
        report = await client.get(f"{base}/api/v1/backtests/{bt_id}/report.html", headers=admin)
        assert report.status_code == 200 and result["summary"]["input_sha256"] in report.text
