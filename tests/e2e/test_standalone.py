"""Smoke test of `make run`: the standalone entry point, one process, SQLite + in-memory bus, same order flow."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.e2e.flow import create_user, login, place_order_and_see_the_fill

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    work = tmp_path_factory.mktemp("standalone")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    password = secrets.token_urlsafe(12)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LH_")},
        "LH_ADMIN_PASSWORD": password,
        "LH_DATABASE_URL": f"sqlite+aiosqlite:///{work}/{{service}}.db",
        "PYTHONPATH": str(ROOT),
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
        seen = await place_order_and_see_the_fill(client, trader)
    order = seen["placed"]["order"]
    assert order["status"] == "filled"
    assert Decimal(seen["fill"]["payload"]["price"]) == Decimal(seen["quote"]["last_close"])
    assert seen["read_back"]["status"] == "filled"
