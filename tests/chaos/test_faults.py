"""Faults under a stream of orders: the fleet (supervised, lianghua/fleet.py) runs against the suite's own MariaDB,
Redis and RabbitMQ node (tests/chaos/servers.py); each test injects one fault while several clients place orders
(retrying the same client_order_id on failure), waits for the fleet to be healthy and ready again by itself, then
reconciles (tests/chaos/orders.py): 0 lost, 0 duplicated, 0 stuck. The figures are printed at the end."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from lianghua.fleet import DEFAULT_PORTS, Fleet
from shared.platform.bus.amqp import AmqpBus
from tests.chaos.conftest import Servers
from tests.chaos.orders import REPORT, REPORT_FOOTER, Auditor, Figures, OrderStream, reconcile
from tests.chaos.servers import free_port
from tests.conftest import Backing, open_backing
from tests.e2e.flow import create_user, login, tradable_main_board_stock

pytestmark = pytest.mark.chaos

CLIENTS = 4


@dataclass
class Chaos:
    servers: Servers
    backing: Backing
    fleet: Fleet
    auditor: Auditor
    ts_code: str = ""
    traders: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    admin: dict[str, str] = field(default_factory=dict)

    @property
    def execution_db(self) -> str:
        return self.backing.database_url("chaos").format(service="execution")


@pytest.fixture(scope="module")
def chaos_fleet(servers: Servers) -> Iterator[tuple[Servers, Backing, Fleet]]:
    env = {
        "LH_TEST_MYSQL_URL": servers.mariadb.url,
        "LH_TEST_REDIS_URL": servers.redis.url,
        "LH_TEST_AMQP_URL": servers.rabbit.url,
        "LH_TEST_RABBITMQ_NODE": servers.rabbit.name,
    }
    with open_backing(env) as backing:
        fleet_env = {
            **backing.env(scope="chaos"),
            "LH_JWT_SECRET": secrets.token_urlsafe(32),
            "LH_INTERNAL_SECRET": secrets.token_urlsafe(32),
            "LH_APPROVAL_SECRET": secrets.token_urlsafe(32),
            "LH_ADMIN_USERNAME": "admin",
            "LH_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "LH_RATE_LIMIT_PER_MINUTE": "100000",
            "LH_LOG_JSON": "true",
            # The demo market ends on 2024-12-31: the fleet trades its next session (on the wall clock an order is
            # for a session the demo data has no limits for, and is refused: limits_unknown / no_session)
            "LH_MARKET_CLOCK": "shifted",
            "LH_MARKET_CLOCK_AT": "2025-01-02T10:00:00+08:00",
        }
        fleet = Fleet(env=fleet_env, ports={n: free_port() for n in DEFAULT_PORTS}, log_dir=servers.base / "fleet")
        fleet.start()
        supervisor = threading.Thread(target=fleet.supervise, name="fleet-supervisor", daemon=True)
        supervisor.start()
        try:
            yield servers, backing, fleet
        finally:
            fleet.stopping.set()
            supervisor.join()
            fleet.stop()
            REPORT_FOOTER.append(f"restarts by the supervisor: {fleet.restarts}")


@pytest.fixture(scope="module")
async def chaos(chaos_fleet: tuple[Servers, Backing, Fleet]) -> AsyncIterator[Chaos]:
    servers, backing, fleet = chaos_fleet
    auditor = Auditor()
    bus = AmqpBus(backing.amqp_url, namespace=backing.env("chaos")["LH_BUS_NAMESPACE"], source="chaos-audit")
    await bus.subscribe("chaos-audit", ["order.*", "trade.*"], auditor.handle)
    ctx = Chaos(servers, backing, fleet, auditor)
    base = fleet.url("gateway")
    async with httpx.AsyncClient(timeout=30) as http:
        admin = await login(http, base, "admin", fleet.env["LH_ADMIN_PASSWORD"])
        ctx.admin = admin.headers
        for _ in range(CLIENTS):
            name, password = await create_user(http, admin, "trader")
            session = await login(http, base, name, password)
            account = (await http.get(f"{base}/api/v1/account", headers=session.headers)).json()
            ctx.traders.append((account["account_id"], session.headers))
        ctx.ts_code = (await tradable_main_board_stock(http, admin))["ts_code"]
    try:
        yield ctx
    finally:
        await bus.close()


async def back_to_normal(fleet: Fleet, timeout_s: float = 180.0) -> float:
    """Seconds until every process answers /healthz and /readyz (the worker its /metrics) with 200 — by itself."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as http, asyncio.timeout(timeout_s):
        while True:
            try:
                answers = [
                    await http.get(fleet.url(name) + path)
                    for name in fleet.processes
                    for path in (("/metrics",) if name == "backtest-worker" else ("/healthz", "/readyz"))
                ]
                if all(a.status_code == 200 for a in answers):
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)


async def not_ready(fleet: Fleet) -> list[str]:
    """The processes whose /readyz does not answer 200 right now (the fault is visible where it should be)."""
    down = []
    async with httpx.AsyncClient(timeout=5) as http:
        for name in fleet.processes:
            if name == "backtest-worker":
                continue
            try:
                ok = (await http.get(fleet.url(name) + "/readyz")).status_code == 200
            except httpx.TransportError:
                ok = False
            if not ok:
                down.append(name)
    return down


async def under_orders(chaos: Chaos, fault: str, inject: Callable[[Figures], Awaitable[None]]) -> Figures:
    """Orders flow; `inject` runs the fault and returns when it is over (the server started again, the process
    killed); then the fleet must come back by itself, orders flow a little longer, and everything is reconciled."""
    stream = OrderStream(
        chaos.fleet.url("gateway"), chaos.traders, chaos.ts_code, prefix=f"{fault}-{secrets.token_hex(2)}"
    )
    stream.start()
    await asyncio.sleep(3)
    figures = Figures(fault)
    await inject(figures)
    figures.recovery_s = await back_to_normal(chaos.fleet)
    await asyncio.sleep(3)
    await stream.stop()
    await reconcile(figures, stream, chaos.execution_db, chaos.auditor)
    REPORT.append(figures)
    return figures


def assert_clean(figures: Figures) -> None:
    assert figures.accepted > 0, figures.line()
    assert figures.sent == figures.accepted + figures.refused, figures.line()
    assert figures.clean, (figures.line(), figures.notes[:20])
    # A failure the client retried was a 503 naming what is unavailable (or the connection itself), never a bare
    # 500 or a 502: a client can tell "try again" from "broken".
    unclear = [c for c in figures.retry_causes if not re.fullmatch(r"503 [a-z_]+|[A-Za-z]+(Error|Timeout)", c)]
    assert unclear == [], figures.line()


async def test_rabbitmq_stopped_27_s_then_started(chaos: Chaos) -> None:
    rabbit = chaos.servers.rabbit

    async def inject(figures: Figures) -> None:
        await asyncio.to_thread(rabbit.stop)
        stopped = time.monotonic()
        await asyncio.sleep(5)
        figures.during = await not_ready(chaos.fleet)
        await asyncio.sleep(27 - (time.monotonic() - stopped))
        await asyncio.to_thread(rabbit.start)

    figures = await under_orders(chaos, "rabbitmq-stopped-27s", inject)
    assert_clean(figures)
    assert figures.during, "with RabbitMQ stopped some process should say it is not ready"


async def test_execution_process_killed(chaos: Chaos) -> None:
    async def inject(figures: Figures) -> None:
        os.kill(chaos.fleet.processes["execution"].pid, signal.SIGKILL)

    assert_clean(await under_orders(chaos, "execution-sigkill", inject))
    assert chaos.fleet.restarts.get("execution", 0) >= 1


async def test_risk_process_killed(chaos: Chaos) -> None:
    async def inject(figures: Figures) -> None:
        os.kill(chaos.fleet.processes["risk"].pid, signal.SIGKILL)

    assert_clean(await under_orders(chaos, "risk-sigkill", inject))
    assert chaos.fleet.restarts.get("risk", 0) >= 1


async def test_mariadb_stopped_15_s_then_started(chaos: Chaos) -> None:
    mariadb = chaos.servers.mariadb

    async def inject(figures: Figures) -> None:
        await asyncio.to_thread(mariadb.stop)
        stopped = time.monotonic()
        await asyncio.sleep(3)
        figures.during = await not_ready(chaos.fleet)
        await asyncio.sleep(15 - (time.monotonic() - stopped))
        await asyncio.to_thread(mariadb.start)

    figures = await under_orders(chaos, "mariadb-stopped-15s", inject)
    assert_clean(figures)
    assert figures.during, "with MariaDB stopped some process should say it is not ready"


async def test_backtest_worker_killed_mid_job(chaos: Chaos) -> None:
    """The worker is SIGKILLed while it runs a backtest (ten dual MA sleeves on every demo stock, two years): the
    broker gives the unacknowledged job to the restarted worker, which runs it again to the end; the jobs queued
    behind it run too."""
    base = chaos.fleet.url("gateway")
    submitted: list[str] = []
    killed: dict[str, object] = {}

    async def inject(figures: Figures) -> None:
        async with httpx.AsyncClient(base_url=base, headers=chaos.admin, timeout=30) as http:
            securities = (await http.get("/api/v1/securities")).json()
            codes = [s["ts_code"] for s in securities][:60]
            heavy = {
                "name": "chaos-heavy",
                "sleeves": [{"strategy": "dual_ma", "params": {"fast": f, "slow": 4 * f}} for f in range(2, 12)],
                "ts_codes": codes,
                "start": "2023-01-03",
                "end": "2024-12-31",
            }
            light = {"strategy": "buy_and_hold", "ts_codes": codes[:5], "start": "2024-01-02", "end": "2024-06-28"}
            for body in (heavy, light, light):
                resp = await http.post("/api/v1/backtests", json=body)
                assert resp.status_code == 202, resp.text
                submitted.append(resp.json()["backtest_id"])
            async with asyncio.timeout(120):
                while True:
                    if (await http.get(f"/api/v1/backtests/{submitted[0]}")).json()["status"] == "running":
                        break
                    await asyncio.sleep(0.05)
            os.kill(chaos.fleet.processes["backtest-worker"].pid, signal.SIGKILL)
            killed["status"] = (await http.get(f"/api/v1/backtests/{submitted[0]}")).json()["status"]

    figures = await under_orders(chaos, "backtest-worker-sigkill", inject)
    async with httpx.AsyncClient(base_url=base, headers=chaos.admin, timeout=30) as http, asyncio.timeout(300):
        while True:
            results = [(await http.get(f"/api/v1/backtests/{b}")).json() for b in submitted]
            if all(r["status"] in ("succeeded", "failed", "cancelled") for r in results):
                break
            await asyncio.sleep(1)
    figures.notes[:0] = [
        f"backtests: {len(results)} submitted, "
        f"{sum(r['status'] == 'succeeded' for r in results)} succeeded; the killed one was {killed['status']} "
        f"when killed and ran {results[0]['attempts']} times"
    ]
    assert_clean(figures)
    assert killed["status"] == "running"  # the kill came before the job could finish
    assert [r["status"] for r in results] == ["succeeded"] * 3, [r.get("error") for r in results]
    assert results[0]["attempts"] == 2  # started, killed, redelivered and run to the end
    assert all(r["attempts"] == 1 for r in results[1:])
    assert chaos.fleet.restarts.get("backtest-worker", 0) >= 1
