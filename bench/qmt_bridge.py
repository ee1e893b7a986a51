"""Latency added by the QMT bridge hop on loopback: 1,000 limit buys on an account bound to a QMT bridge (gateway ->
risk -> execution -> the bridge program `python -m bridge.qmt` over the gateway's relay -> the fake MiniQMT, which
fills at once -> its callbacks -> bridge -> execution records the fill), interleaved one for one with the same order
on a paper account (LH_PAPER_FILLS=immediate: execution records the fill before it answers), in one fleet. Each
order's time is from the POST to its `order.filled` event on the trader's WebSocket (the same end point for both
paths: the fill recorded and published); the POST's own answer time is reported too (paper: at the fill; QMT: once
the bridge took the order). p50/p99, and the QMT path as a ratio to the paper path. Run: `make bench` or
`python -m bench.qmt_bridge [--orders 1000]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.common import ROOT, bench_fleet, percentile

ORDERS = 1000
WARM_UP = 20
BRIDGE_ID = "bench-qmt"


@dataclass(frozen=True)
class Latency:
    """One path's latencies (ms): p50, p99, mean, max."""

    p50: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Latency:
        ordered = sorted(values)
        return cls(percentile(ordered, 0.5), percentile(ordered, 0.99), statistics.mean(ordered), ordered[-1])


@dataclass(frozen=True)
class Summary:
    paper: Latency
    qmt: Latency

    @property
    def ratio_p50(self) -> float:
        return self.qmt.p50 / self.paper.p50

    @property
    def ratio_p99(self) -> float:
        return self.qmt.p99 / self.paper.p99

    @property
    def added_p50(self) -> float:
        """What the bridge hop adds at the median (ms): the QMT path's p50 less the paper path's."""
        return self.qmt.p50 - self.paper.p50


def summarize(paper_ms: list[float], qmt_ms: list[float]) -> Summary:
    if not paper_ms or len(paper_ms) != len(qmt_ms):
        raise ValueError("the two paths need the same number of orders, at least one")
    return Summary(Latency.of(paper_ms), Latency.of(qmt_ms))


def report(title: str, summary: Summary) -> list[str]:
    p, q = summary.paper, summary.qmt
    return [
        title,
        f"  paper: p50 {p.p50:.2f} ms  p99 {p.p99:.2f} ms  mean {p.mean:.2f} ms  max {p.max:.2f} ms",
        f"  QMT:   p50 {q.p50:.2f} ms  p99 {q.p99:.2f} ms  mean {q.mean:.2f} ms  max {q.max:.2f} ms",
        f"  ratio QMT/paper: p50 {summary.ratio_p50:.2f}x  p99 {summary.ratio_p99:.2f}x  "
        f"(the bridge hop adds {summary.added_p50:.2f} ms at the p50)",
    ]


# --- the run -----------------------------------------------------------------------------------------------------


@contextmanager
def bridge_process(gateway_port: int, account_id: str, secret: str, workdir: Path) -> Iterator[str]:
    """The real bridge program on the fake MiniQMT (auto-fill on); yields the fake's control address."""
    config = workdir / "bridge.toml"
    config.write_text(
        f'userdata_path = "{workdir / "userdata_mini"}"\nsession_id = 1\naccount_id = "{account_id}"\n'
        f'bridge_id = "{BRIDGE_ID}"\nplatform_url = "ws://127.0.0.1:{gateway_port}"\n'
        f'journal_path = "{workdir / "journal.sqlite3"}"\nreconnect_initial_s = 0.2\nreconnect_max_s = 2\n'
    )
    control_file = workdir / "control.txt"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'support' / 'qmt'}",
        "LH_BRIDGE_SECRET": secret,
        "FAKE_XTQUANT_CONTROL": "127.0.0.1:0",
        "FAKE_XTQUANT_CONTROL_FILE": str(control_file),
        "FAKE_XTQUANT_STATE": str(workdir / "miniqmt.json"),
    }
    with open(workdir / "bridge.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge.qmt", "--config", str(config), "--log-level", "WARNING"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not control_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the bridge did not start: see {workdir / 'bridge.log'}")
            time.sleep(0.05)
        yield control_file.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def control(address: str, action: str, body: dict[str, Any]) -> None:
    with httpx.Client(timeout=10) as client:
        client.post(f"http://{address}/{action}", json=body).raise_for_status()


async def user(client: httpx.AsyncClient, base: str, admin: dict[str, str], role: str) -> tuple[str, dict[str, str]]:
    name, password = f"bench-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    created = await client.post(f"{base}/api/v1/users", json={"username": name, "password": password, "role": role},
                                headers=admin)  # fmt: skip
    created.raise_for_status()
    token = (await client.post(f"{base}/api/v1/auth/token", data={"username": name, "password": password})).json()
    return name, {"Authorization": f"Bearer {token['access_token']}"}


async def filled(ws: ClientConnection, order_id: str, pending: dict[str, float], timeout_s: float = 30) -> float:
    """Wait for the order's `order.filled` event; the time it arrived (perf_counter). Events of other orders that
    arrive meanwhile are kept in `pending`."""
    if order_id in pending:
        return pending.pop(order_id)
    async with asyncio.timeout(timeout_s):
        while True:
            event = json.loads(await ws.recv())
            if event.get("type") != "order.filled":
                continue
            arrived = time.perf_counter()
            got = event["payload"]["order_id"]
            if got == order_id:
                return arrived
            pending[got] = arrived


async def one(
    client: httpx.AsyncClient, base: str, headers: dict[str, str], ws: ClientConnection, body: dict[str, Any],
    pending: dict[str, float],
) -> tuple[float, float, str]:  # fmt: skip
    """(ms to the POST's answer, ms to the fill's event, the answer's status)."""
    t0 = time.perf_counter()
    resp = await client.post(f"{base}/api/v1/orders", json={**body, "client_order_id": f"b-{secrets.token_hex(6)}"},
                             headers=headers)  # fmt: skip
    answered = time.perf_counter()
    if resp.status_code != 201:
        raise SystemExit(f"an order failed: {resp.status_code} {resp.text}")
    order = resp.json()["order"]
    arrived = await filled(ws, order["order_id"], pending)
    return (answered - t0) * 1000, (arrived - t0) * 1000, order["status"]


async def run(fleet: Any, secret: str, orders: int) -> None:
    base = fleet.url("gateway")
    async with httpx.AsyncClient(timeout=30) as client:
        login = {"username": "admin", "password": fleet.env["LH_ADMIN_PASSWORD"]}
        token = (await client.post(f"{base}/api/v1/auth/token", data=login)).json()
        admin = {"Authorization": f"Bearer {token['access_token']}"}
        _, paper = await user(client, base, admin, "trader")
        qmt_account, qmt = await user(client, base, admin, "trader")
        bound = await client.put(f"{base}/api/v1/accounts/{qmt_account}/broker",
                                 json={"broker": "qmt", "bridge_id": BRIDGE_ID}, headers=admin)  # fmt: skip
        bound.raise_for_status()
        switch = {"enabled": True, "read_only": False, "reason": "benchmark"}
        switched = await client.post(f"{base}/api/v1/bridges/{BRIDGE_ID}/trading", json=switch, headers=admin)
        switched.raise_for_status()
        securities = (await client.get(f"{base}/api/v1/securities", headers=admin)).json()
        code = next(s["ts_code"] for s in securities if s["board"] == "main" and not s["is_st"])
        quote = (await client.get(f"{base}/api/v1/quotes/{code}", headers=admin)).json()
        body = {"ts_code": code, "side": "buy", "order_type": "limit", "qty": 100, "price": quote["last_close"]}
        with tempfile.TemporaryDirectory() as tmp, bridge_process(fleet.ports["gateway"], qmt_account, secret,
                                                                  Path(tmp)) as address:  # fmt: skip
            control(address, "behave", {"auto_fill": True})
            deadline = time.monotonic() + 60
            while True:
                listed = (await client.get(f"{base}/api/v1/bridges", headers=admin)).json()
                state = next(b for b in listed if b["bridge_id"] == BRIDGE_ID)
                if state["connected"] and state["qmt"] == "connected":
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the bridge did not connect: {state}")
                await asyncio.sleep(0.2)
            ws_url = base.replace("http://", "ws://") + "/ws?token="
            async with connect(ws_url + paper["Authorization"][7:]) as paper_ws, \
                    connect(ws_url + qmt["Authorization"][7:]) as qmt_ws:  # fmt: skip
                paper_pending: dict[str, float] = {}
                qmt_pending: dict[str, float] = {}
                answers: dict[str, list[float]] = {"paper": [], "qmt": []}
                fills: dict[str, list[float]] = {"paper": [], "qmt": []}
                for i in range(orders + WARM_UP):
                    p_answer, p_fill, p_status = await one(client, base, paper, paper_ws, body, paper_pending)
                    q_answer, q_fill, q_status = await one(client, base, qmt, qmt_ws, body, qmt_pending)
                    if p_status != "filled" or q_status not in ("submitted", "filled"):
                        raise SystemExit(f"order {i}: paper {p_status}, QMT {q_status}")
                    if i >= WARM_UP:
                        answers["paper"].append(p_answer)
                        answers["qmt"].append(q_answer)
                        fills["paper"].append(p_fill)
                        fills["qmt"].append(q_fill)
    print(f"QMT bridge hop, {orders} limit buys on a QMT account interleaved with {orders} on a paper account "
          f"(fleet mode, loopback; the bridge program on the fake MiniQMT, filling at once):")  # fmt: skip
    for line in report("POST to the order's order.filled event on the trader's WebSocket:",
                       summarize(fills["paper"], fills["qmt"])):  # fmt: skip
        print(line)
    for line in report("POST to its answer (paper: filled; QMT: submitted, the bridge took it):",
                       summarize(answers["paper"], answers["qmt"])):  # fmt: skip
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=ORDERS)
    args = parser.parse_args()
    secret = secrets.token_urlsafe(24)
    with bench_fleet({"LH_QMT_BRIDGE_SECRETS": f"{BRIDGE_ID}={secret}"}) as fleet:
        asyncio.run(run(fleet, secret, args.orders))


if __name__ == "__main__":
    main()
