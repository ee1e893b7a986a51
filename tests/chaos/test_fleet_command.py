"""`make fleet` as an operator runs it (`python -m lianghua.fleet`), against the suite's own servers: a process
killed with SIGKILL is restarted and the supervisor says so in a JSON line; SIGTERM stops every process and the
supervisor exits 0."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lianghua.fleet import DEFAULT_PORTS, ROOT
from tests.chaos.conftest import Servers
from tests.chaos.servers import free_port
from tests.conftest import open_backing

pytestmark = pytest.mark.chaos


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_fleet_restarts_a_killed_process_and_stops_on_sigterm(servers: Servers) -> None:
    env_in = {
        "LH_TEST_MYSQL_URL": servers.mariadb.url,
        "LH_TEST_REDIS_URL": servers.redis.url,
        "LH_TEST_AMQP_URL": servers.rabbit.url,
        "LH_TEST_RABBITMQ_NODE": servers.rabbit.name,
    }
    with open_backing(env_in) as backing:
        env = {
            **os.environ,
            **backing.env(scope="cmd"),
            "LH_JWT_SECRET": secrets.token_urlsafe(32),
            "LH_INTERNAL_SECRET": secrets.token_urlsafe(32),
            "LH_APPROVAL_SECRET": secrets.token_urlsafe(32),
            "LH_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        }
        ports = {name: free_port() for name in DEFAULT_PORTS}
        log_dir = servers.base / "fleet-command"
        log_dir.mkdir()
        argv = [sys.executable, "-m", "lianghua.fleet", "--log-dir", str(log_dir)]
        argv += [arg for name, port in ports.items() for arg in ("--port", f"{name}={port}")]
        out, err = log_dir / "supervisor.out", log_dir / "supervisor.log"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            supervisor = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=stdout, stderr=stderr)
        try:
            _wait(lambda: "fleet is up" in out.read_text() or supervisor.poll() is not None, "the fleet to start")
            assert supervisor.poll() is None, err.read_text()[-3000:]
            started = {e["child"]: e["pid"] for e in _lines(err) if e["msg"] == "process started"}
            assert set(started) == set(DEFAULT_PORTS)

            os.kill(started["strategy"], signal.SIGKILL)

            def restarted() -> bool:
                pids = [e["pid"] for e in _lines(err) if e["msg"] == "process started" and e["child"] == "strategy"]
                if len(pids) < 2:
                    return False
                try:
                    url = f"http://127.0.0.1:{ports['strategy']}/healthz"
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        return bool(resp.status == 200)
                except OSError:
                    return False

            _wait(restarted, "strategy to be restarted and healthy")
            [exited] = [e for e in _lines(err) if e["msg"].startswith("process exited")]
            assert (exited["service"], exited["child"], exited["exit_code"]) == ("fleet", "strategy", -9)
            assert (exited["restart_count"], exited["delay_s"]) == (1, 1.0)
            now = {e["child"]: e["pid"] for e in _lines(err) if e["msg"] == "process started"}
            assert {n: p for n, p in now.items() if n != "strategy"} == {
                n: p for n, p in started.items() if n != "strategy"
            }
            assert all(_alive(pid) for pid in now.values())

            supervisor.send_signal(signal.SIGTERM)
            assert supervisor.wait(timeout=60) == 0
            assert not [name for name, pid in now.items() if _alive(pid)]
            messages = [e["msg"] for e in _lines(err)]
            assert messages[-2:] == ["stopping the fleet", "fleet stopped"]
        finally:
            if supervisor.poll() is None:
                supervisor.kill()
                supervisor.wait()
