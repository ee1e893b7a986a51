"""MariaDB, Redis and a RabbitMQ node of the fault suite's own: started from the Debian packages' binaries on free
ports with their data in a temporary directory, so that a fault test can stop and start them. The machine's own
servers (3306, 6379, 5672 and the `rabbit@localhost` node) are never touched."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RABBITMQ_NODE = "lhchaos@localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not up after {timeout_s:.0f}s")


def _as_user(path: Path, user: str) -> None:
    """Directories a server drops privileges into must belong to its user when we are root."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for p in [path, *path.rglob("*")]:
            os.chown(p, entry.pw_uid, entry.pw_gid)


@dataclass
class RabbitNode:
    """A RabbitMQ node named `lhchaos@localhost` with its own AMQP and distribution ports and Mnesia directory.
    `rabbitmq-server` (Debian's wrapper) runs it as the rabbitmq user, so `rabbitmqctl -n lhchaos@localhost`
    reaches it with that user's Erlang cookie, as it reaches the machine's node."""

    base: Path
    name: str = RABBITMQ_NODE
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"amqp://lhchaos:{self.password}@127.0.0.1:{self.port}"

    password: str = field(default_factory=lambda: secrets.token_hex(12))
    management_port: int | None = None  # with a port: the management plugin (HTTP API) on it

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),  # not the machine's /etc one
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.name, *args], capture_output=True, text=True, timeout=120, check=check
        )

    def start(self, timeout_s: float = 90.0) -> None:
        first = not (self.base / "mnesia").exists()
        if first:
            for sub in ("mnesia", "log"):
                (self.base / sub).mkdir(parents=True, exist_ok=True)
            conf = f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            if self.management_port is None:
                (self.base / "enabled_plugins").write_text("[].\n")
            else:
                (self.base / "enabled_plugins").write_text("[rabbitmq_management].\n")
                conf += f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
            (self.base / "rabbitmq.conf").write_text(conf)
            (self.base / "rabbitmq-env.conf").write_text("")
            _as_user(self.base, "rabbitmq")
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env(), check=True, timeout=60)
        deadline = time.monotonic() + timeout_s
        # The node registers with epmd a moment after -detached returns; await_startup fails until then.
        while self.ctl("await_startup", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"RabbitMQ node {self.name} not up; see {self.base / 'log'}")
            time.sleep(0.5)
        wait_for(lambda: port_open(self.port), f"RabbitMQ on {self.port}", timeout_s)
        if first:
            self.ctl("add_user", "lhchaos", self.password)
            self.ctl("set_user_tags", "lhchaos", "administrator")
            self.ctl("set_permissions", "-p", "/", "lhchaos", ".*", ".*", ".*")

    def stop(self) -> None:
        self.ctl("stop", check=False)


@dataclass
class MariaDB:
    """`mariadb-install-db` into a temporary datadir, then `mariadbd` on its own port and socket."""

    base: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://lhchaos:{self.password}@127.0.0.1:{self.port}"

    def _server_argv(self) -> list[str]:
        return [
            "mariadbd",
            "--no-defaults",
            f"--datadir={self.base / 'data'}",
            f"--socket={self.base / 'mysqld.sock'}",
            f"--pid-file={self.base / 'mysqld.pid'}",
            f"--log-error={self.base / 'error.log'}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--max-connections=500",
            *(["--user=root"] if os.geteuid() == 0 else []),
        ]

    def start(self, timeout_s: float = 90.0) -> None:
        first = not (self.base / "data").exists()
        if first:
            self.base.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={self.base / 'data'}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    *(["--user=root"] if os.geteuid() == 0 else []),
                ],
                capture_output=True,
                check=True,
                timeout=180,
            )
        self.proc = subprocess.Popen(self._server_argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), f"MariaDB on {self.port}", timeout_s)
        if first:
            sql = (
                f"CREATE USER 'lhchaos'@'%' IDENTIFIED BY '{self.password}'; "  # generated hex, no quoting needed
                "GRANT ALL PRIVILEGES ON *.* TO 'lhchaos'@'%'; FLUSH PRIVILEGES;"
            )
            subprocess.run(
                ["mariadb", "--no-defaults", "-uroot", f"--socket={self.base / 'mysqld.sock'}", "-e", sql],
                check=True,
                capture_output=True,
                timeout=60,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Redis:
    base: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen([*argv, "--dir", str(self.base)], stdout=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), f"Redis on {self.port}", timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


def binaries_missing() -> list[str]:
    wanted = ("mariadb-install-db", "mariadbd", "mariadb", "redis-server", "rabbitmq-server", "rabbitmqctl")
    return [name for name in wanted if shutil.which(name) is None]
