"""Test fixtures. Integration and end-to-end tests use the real MariaDB, Redis and RabbitMQ, each run with its
own databases (`lhtest_<run>_<service>`), its own RabbitMQ vhost and its own Redis database number.

URLs come from LH_TEST_MYSQL_URL / LH_TEST_REDIS_URL / LH_TEST_AMQP_URL, else from var/test.env (written by
scripts/backing-services.sh, which `make test` runs), else from testcontainers when a Docker daemon answers."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import Mode, Settings

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Backing:
    run_id: str
    mysql_url: str  # server URL without a database
    redis_url: str  # with this run's database number
    amqp_url: str  # with this run's vhost
    namespace: str

    def database_url(self, scope: str = "") -> str:
        """`scope` separates the databases of tests that run the same service differently (e.g. the e2e fleet)."""
        prefix = f"lhtest_{self.run_id}_{scope + '_' if scope else ''}"
        return f"{self.mysql_url}/{prefix}{{service}}"

    def settings(self, scope: str = "", **overrides: object) -> Settings:
        values: dict[str, object] = {
            "mode": Mode.FLEET,
            "database_url": self.database_url(scope),
            "redis_url": self.redis_url,
            "amqp_url": self.amqp_url,
            "bus_namespace": f"{self.namespace}.{scope}" if scope else self.namespace,
            "jwt_secret": "test-jwt-" + secrets.token_hex(16),
            "internal_secret": "test-internal-" + secrets.token_hex(16),
            "approval_secret": "test-approval-" + secrets.token_hex(16),
            "admin_username": "admin",
            "admin_password": "admin-" + secrets.token_hex(8),
            "log_json": False,
        }
        values.update(overrides)
        return Settings.model_validate(values)

    def env(self, scope: str = "") -> dict[str, str]:
        """Environment for fleet processes started by a test."""
        return {
            "LH_MODE": "fleet",
            "LH_DATABASE_URL": self.database_url(scope),
            "LH_REDIS_URL": self.redis_url,
            "LH_AMQP_URL": self.amqp_url,
            "LH_BUS_NAMESPACE": f"{self.namespace}.{scope}" if scope else self.namespace,
        }


def _read_env_file() -> dict[str, str]:
    path = ROOT / "var" / "test.env"
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0


def _rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="session")
def backing() -> Iterator[Backing]:
    env = {**_read_env_file(), **{k: v for k, v in os.environ.items() if k.startswith("LH_TEST_")}}
    containers: list[object] = []
    if not all(k in env for k in ("LH_TEST_MYSQL_URL", "LH_TEST_REDIS_URL", "LH_TEST_AMQP_URL")):
        if not _docker_answers():
            pytest.fail(
                "integration tests need MariaDB, Redis and RabbitMQ: run scripts/backing-services.sh "
                "(make test does) or set LH_TEST_MYSQL_URL, LH_TEST_REDIS_URL and LH_TEST_AMQP_URL"
            )
        env.update(_start_containers(containers))

    run_id = secrets.token_hex(4)
    vhost = f"lhtest-{run_id}"
    amqp = make_url(env["LH_TEST_AMQP_URL"].replace("amqp://", "mysql://", 1))  # only to parse user/host
    if _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl(
        "set_permissions", "-p", vhost, amqp.username or "guest", ".*", ".*", ".*"
    ):
        amqp_url = env["LH_TEST_AMQP_URL"].rstrip("/") + f"/{vhost}"
    else:
        vhost = ""
        amqp_url = env["LH_TEST_AMQP_URL"]
    redis_db = 1 + secrets.randbelow(15)
    backing = Backing(
        run_id=run_id,
        mysql_url=env["LH_TEST_MYSQL_URL"].rstrip("/"),
        redis_url=env["LH_TEST_REDIS_URL"].rstrip("/") + f"/{redis_db}",
        amqp_url=amqp_url,
        namespace=f"lhtest.{run_id}",
    )
    try:
        yield backing
    finally:
        asyncio.run(_drop_databases(backing))
        if vhost:
            _rabbitmqctl("delete_vhost", vhost)
        for container in containers:
            container.stop()  # type: ignore[attr-defined]


async def _drop_databases(backing: Backing) -> None:
    engine = create_async_engine(backing.mysql_url + "/")
    try:
        async with engine.begin() as conn:
            rows = await conn.execute(text("SHOW DATABASES LIKE :p"), {"p": f"lhtest\\_{backing.run_id}\\_%"})
            for (name,) in rows:
                if name.startswith(f"lhtest_{backing.run_id}_") and name.replace("_", "").isalnum():
                    await conn.execute(text(f"DROP DATABASE `{name}`"))
    finally:
        await engine.dispose()


def _start_containers(containers: list[object]) -> dict[str, str]:
    from testcontainers.mysql import MySqlContainer
    from testcontainers.rabbitmq import RabbitMqContainer
    from testcontainers.redis import RedisContainer

    mysql = MySqlContainer("mariadb:10.11", username="lianghua", password=secrets.token_hex(12))
    redis = RedisContainer("redis:7")
    rabbit = RabbitMqContainer("rabbitmq:3.13")
    for c in (mysql, redis, rabbit):
        c.start()
        containers.append(c)
    return {
        "LH_TEST_MYSQL_URL": (
            f"mysql+asyncmy://lianghua:{mysql.password}@{mysql.get_container_host_ip()}:{mysql.get_exposed_port(3306)}"
        ),
        "LH_TEST_REDIS_URL": f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}",
        "LH_TEST_AMQP_URL": (f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}"),
    }


@pytest.fixture(scope="session")
async def flushed_redis(backing: Backing) -> AsyncIterator[str]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(backing.redis_url)
    await client.flushdb()
    await client.aclose()
    yield backing.redis_url
