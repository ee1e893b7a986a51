"""Test fixtures. Integration and end-to-end tests use the real MariaDB, Redis and RabbitMQ, each run with its
own databases (`lhtest_<run>_<service>`), its own RabbitMQ vhost and its own Redis database number.

URLs come from LH_TEST_MYSQL_URL / LH_TEST_REDIS_URL / LH_TEST_AMQP_URL, else from var/test.env (written by
scripts/backing-services.sh, which `make test` runs), else from testcontainers when a Docker daemon answers.

The run's vhost is made on the RabbitMQ node LH_TEST_AMQP_URL names (see `create_run_vhost`): through its
management HTTP API when that answers (LH_TEST_RABBITMQ_API, default http://<host>:15672), else with
`rabbitmqctl -n $LH_TEST_RABBITMQ_NODE` (default: the local default node), in both cases only after checking that
the node listens on the URL's port; if neither is possible the run uses the URL's own vhost, kept apart from other
runs by its bus namespace alone, and says so in a warning."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.platform.settings import Mode, Settings

ROOT = Path(__file__).resolve().parents[1]

# The paper broker's fills on the real clock (LH_PAPER_FILLS): the order-path tests are about the path (admission,
# idempotency, cash, events, faults), so their paper broker fills at once at the latest close, in this process and in
# the fleets it starts. The paper broker on the market clock (the default, "session") is tested by the tests that ask
# for it: tests/integration/execution/test_paper_sessions.py and tests/e2e/test_live_runner.py.
os.environ.setdefault("LH_PAPER_FILLS", "immediate")


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


def _rabbitmqctl(node: str | None, *args: str, tool: str = "rabbitmqctl") -> subprocess.CompletedProcess[str] | None:
    if shutil.which(tool) is None:
        return None
    argv = [tool, "-q", *(["-n", node] if node else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@dataclass(frozen=True)
class RunVhost:
    amqp_url: str  # what the run connects to
    made_by: str  # "management API at ...", "rabbitmqctl -n ...", or "" when the URL's own vhost is used
    delete: Callable[[], None] | None = None


def create_run_vhost(base_url: str, vhost: str, env: dict[str, str]) -> RunVhost:
    """Create `vhost` (with full permissions for the URL's user) on the node `base_url` names, and say how."""
    url = urlsplit(base_url)
    user, password = unquote(url.username or "guest"), unquote(url.password or "guest")
    port = url.port or 5672
    with_vhost = base_url.rstrip("/") + "/" + quote(vhost, safe="")

    api = env.get("LH_TEST_RABBITMQ_API") or f"http://{url.hostname}:15672"
    try:
        with httpx.Client(base_url=api, auth=(user, password), timeout=5) as http:
            overview = http.get("/api/overview")
            listens = overview.status_code == 200 and any(
                item.get("protocol") == "amqp" and int(item.get("port", 0)) == port
                for item in overview.json().get("listeners", [])
            )
            if listens:
                path = quote(vhost, safe="")
                http.put(f"/api/vhosts/{path}").raise_for_status()
                perms = {"configure": ".*", "write": ".*", "read": ".*"}
                http.put(f"/api/permissions/{path}/{quote(user, safe='')}", json=perms).raise_for_status()

                def delete_by_api() -> None:
                    with httpx.Client(base_url=api, auth=(user, password), timeout=10) as c:
                        c.delete(f"/api/vhosts/{path}")

                return RunVhost(with_vhost, f"management API at {api}", delete_by_api)
    except (httpx.HTTPError, ValueError):
        pass  # no management API there: try the CLI

    node = env.get("LH_TEST_RABBITMQ_NODE")
    local = url.hostname in ("127.0.0.1", "localhost", "::1")
    if node or local:  # the default node is only ever the local one
        listeners = _rabbitmqctl(node, "listeners", tool="rabbitmq-diagnostics")
        ports = {int(p) for p in re.findall(r"port: (\d+), protocol: amqp\b", listeners.stdout)} if listeners else set()
        made = port in ports and all(
            (r := _rabbitmqctl(node, *cmd)) is not None and r.returncode == 0
            for cmd in (("add_vhost", vhost), ("set_permissions", "-p", vhost, user, ".*", ".*", ".*"))
        )
        if made:

            def delete_by_cli() -> None:
                _rabbitmqctl(node, "delete_vhost", vhost)

            how = f"rabbitmqctl -n {node}" if node else "rabbitmqctl (default node)"
            return RunVhost(with_vhost, how, delete_by_cli)
    warnings.warn(
        f"could not create a RabbitMQ vhost on the node {url.hostname}:{port} names (no management API at {api}, "
        "and no node there that rabbitmqctl reaches: set LH_TEST_RABBITMQ_NODE or LH_TEST_RABBITMQ_API); "
        "this run uses the URL's own vhost, kept apart from other runs by its bus namespace only",
        stacklevel=2,
    )
    return RunVhost(base_url, "")


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
    try:
        with open_backing(env) as backing:
            yield backing
    finally:
        for container in containers:
            container.stop()  # type: ignore[attr-defined]


@contextmanager
def open_backing(env: dict[str, str]) -> Iterator[Backing]:
    """This run's databases, vhost and Redis database on the servers `env`'s LH_TEST_* URLs name; removed after."""
    run_id = secrets.token_hex(4)
    vhost = create_run_vhost(env["LH_TEST_AMQP_URL"], f"lhtest-{run_id}", env)
    # A Redis database of the run's own, 1-15 at random; pytest-xdist's workers (make test runs two) take
    # neighbouring ones from a start their run shares, so that the two never share one (a run flushes its database)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    if worker[2:].isdigit() and run:
        start = int(hashlib.sha256(run.encode()).hexdigest(), 16) % 15
        redis_db = 1 + (start + int(worker[2:])) % 15
    else:
        redis_db = 1 + secrets.randbelow(15)
    backing = Backing(
        run_id=run_id,
        mysql_url=env["LH_TEST_MYSQL_URL"].rstrip("/"),
        redis_url=env["LH_TEST_REDIS_URL"].rstrip("/") + f"/{redis_db}",
        amqp_url=vhost.amqp_url,
        namespace=f"lhtest.{run_id}",
    )
    try:
        yield backing
    finally:
        asyncio.run(_drop_databases(backing))
        if vhost.delete is not None:
            vhost.delete()


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
