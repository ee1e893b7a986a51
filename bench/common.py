"""A throwaway fleet for benchmarks: its own MariaDB databases, RabbitMQ namespace and ports, removed after."""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from lianghua.fleet import DEFAULT_PORTS, Fleet

ROOT = Path(__file__).resolve().parents[1]


def _test_env() -> dict[str, str]:
    path = ROOT / "var" / "test.env"
    if not path.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "backing-services.sh")], check=True)
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def bench_fleet(extra_env: dict[str, str] | None = None) -> Iterator[Fleet]:
    env = _test_env()
    run = secrets.token_hex(3)
    mysql = env["LH_TEST_MYSQL_URL"].rstrip("/")
    fleet_env = {
        "LH_DATABASE_URL": f"{mysql}/lhbench_{run}_{{service}}",
        "LH_REDIS_URL": env["LH_TEST_REDIS_URL"].rstrip("/") + "/15",
        "LH_AMQP_URL": env["LH_TEST_AMQP_URL"],
        "LH_BUS_NAMESPACE": f"lhbench.{run}",
        "LH_JWT_SECRET": secrets.token_urlsafe(32),
        "LH_INTERNAL_SECRET": secrets.token_urlsafe(32),
        "LH_APPROVAL_SECRET": secrets.token_urlsafe(32),
        "LH_ADMIN_USERNAME": "admin",
        "LH_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "LH_RATE_LIMIT_PER_MINUTE": "1000000",
        "LH_MAX_ORDER_VALUE": "100000000",
        "LH_LOG_LEVEL": "WARNING",
        # the path measured is the whole one, to the paper broker's fill: at once at the latest close (the demo market
        # has no session left on today's clock for the paper broker following it to match on)
        "LH_PAPER_FILLS": "immediate",
        # ... and in the demo market's next session: on the wall clock an order is for a session the demo data has no
        # price limits for, and is refused (limits_unknown / no_session)
        "LH_MARKET_CLOCK": "shifted",
        "LH_MARKET_CLOCK_AT": "2025-01-02T10:00:00+08:00",
        **(extra_env or {}),
    }
    fleet = Fleet(env=fleet_env, ports={n: _free_port() for n in DEFAULT_PORTS}, log_dir=ROOT / "var" / "bench-logs")
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()
        asyncio.run(_drop(mysql, run))


async def _drop(mysql: str, run: str) -> None:
    engine = create_async_engine(mysql + "/")
    async with engine.begin() as conn:
        for (name,) in (await conn.execute(text("SHOW DATABASES LIKE :p"), {"p": f"lhbench\\_{run}\\_%"})).all():
            await conn.execute(text(f"DROP DATABASE `{name}`"))
    await engine.dispose()


async def trader_session(client: httpx.AsyncClient, fleet: Fleet) -> dict[str, str]:
    base = fleet.url("gateway")
    token = (
        await client.post(
            f"{base}/api/v1/auth/token", data={"username": "admin", "password": fleet.env["LH_ADMIN_PASSWORD"]}
        )
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]
