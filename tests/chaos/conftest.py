"""The fault suite's own servers (tests/chaos/servers.py), started once per `make chaos` run and removed after."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.orders import REPORT, REPORT_FOOTER
from tests.chaos.servers import MariaDB, RabbitNode, Redis, binaries_missing


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    terminalreporter.section("chaos figures")
    for figures in REPORT:
        terminalreporter.write_line(figures.line())
        for note in figures.notes[:10]:
            terminalreporter.write_line("    " + note)
    for line in REPORT_FOOTER:
        terminalreporter.write_line(line)


@dataclass
class Servers:
    base: Path
    mariadb: MariaDB
    redis: Redis
    rabbit: RabbitNode


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    missing = binaries_missing()
    if missing:
        pytest.fail(
            f"the fault suite needs the Debian packages mariadb-server, redis-server, rabbitmq-server: {missing}"
        )
    # Not pytest's tmp_path: its parent is private to root, and the RabbitMQ node runs as the rabbitmq user.
    base = Path(tempfile.mkdtemp(prefix="lhchaos-"))
    base.chmod(0o755)
    servers = Servers(base, MariaDB(base / "mariadb"), Redis(base / "redis"), RabbitNode(base / "rabbitmq"))
    try:
        servers.rabbit.start()
        servers.mariadb.start()
        servers.redis.start()
        yield servers
    finally:
        servers.rabbit.stop()
        servers.mariadb.stop()
        servers.redis.stop()
        shutil.rmtree(base, ignore_errors=True)
