"""Fleet mode as local processes: each service, the backtest worker and the gateway in its own process against
MariaDB, Redis and RabbitMQ, supervised (a process that dies is restarted with backoff). `make fleet` runs it; the
end-to-end and fault tests start the same `Fleet`."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("lianghua.fleet")


DEFAULT_PORTS = {
    "gateway": 8000,
    "data": 8101,
    "strategy": 8102,
    "backtest": 8103,
    "risk": 8104,
    "execution": 8105,
    "backtest-worker": 8106,
}
MODULES = {
    "data": "services.data",
    "strategy": "services.strategy",
    "backtest": "services.backtest",
    "risk": "services.risk",
    "execution": "services.execution",
    "backtest-worker": "services.backtest.worker",
    "gateway": "gateway",
}
APPROVAL_HOLDERS = ("risk", "execution")
START_ORDER = ("data", "strategy", "backtest", "execution", "risk", "backtest-worker", "gateway")


@dataclass(frozen=True)
class Backoff:
    """Delay before restarting a process that died: `first_s`, doubling with each death in a row, at most `max_s`.
    A process that stayed up `stable_s` or longer before dying starts the count again."""

    first_s: float = 1.0
    max_s: float = 30.0
    stable_s: float = 30.0

    def delay(self, deaths_in_a_row: int) -> float:
        return float(min(self.max_s, self.first_s * 2 ** max(0, deaths_in_a_row - 1)))


@dataclass
class Fleet:
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    log_dir: Path = ROOT / "var" / "log"
    backoff: Backoff = field(default_factory=Backoff)
    # The processes started (in START_ORDER): a test may start only those it needs.
    names: tuple[str, ...] = START_ORDER
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)  # per process, since the fleet started
    _started_at: dict[str, float] = field(default_factory=dict)
    _deaths_in_a_row: dict[str, int] = field(default_factory=dict)
    _restart_due: dict[str, float] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)  # set it to end `supervise()` or `start()`
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def process_env(self, name: str) -> dict[str, str]:
        env = {**os.environ, **self.env}
        env.update(
            LH_MODE="fleet",
            LH_HOST="127.0.0.1",
            LH_PORT=str(self.ports[name]),
            LH_WORKER_METRICS_PORT=str(self.ports["backtest-worker"]),
            LH_DATA_URL=self.url("data"),
            LH_STRATEGY_URL=self.url("strategy"),
            LH_BACKTEST_URL=self.url("backtest"),
            LH_RISK_URL=self.url("risk"),
            LH_EXECUTION_URL=self.url("execution"),
            PYTHONPATH=str(ROOT),
        )
        if name not in APPROVAL_HOLDERS:
            env.pop("LH_APPROVAL_SECRET", None)  # only risk signs approvals and only execution verifies them
        if name != "gateway":
            env.pop("LH_JWT_SECRET", None)  # users' sessions are the gateway's alone
        return env

    def start(self, timeout_s: float = 90.0) -> None:
        refuse_replay_clock(self.process_env("gateway"))
        self.pin_clock_anchor()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            names = [name for name in START_ORDER if name in self.names]
            for name in names:
                self._spawn(name)
                # Data loads the demo market on its first start; the others wait for it through readiness only.
                if name == "data":
                    self._wait_healthy(name, timeout_s)
            for name in names:
                self._wait_healthy(name, timeout_s)
        except BaseException:
            self.stop()
            raise

    def pin_clock_anchor(self) -> None:
        """A shifted market clock (LH_MARKET_CLOCK=shifted) reads LH_MARKET_CLOCK_AT at its anchor. Each process
        would take the moment it read its settings: the fleet gives them all one, now (unless the environment sets
        it), kept for the processes the supervisor restarts, so every process reads the same time."""
        env = {**os.environ, **self.env}
        if env.get("LH_MARKET_CLOCK", "").strip() == "shifted" and not env.get("LH_MARKET_CLOCK_ANCHOR", "").strip():
            self.env["LH_MARKET_CLOCK_ANCHOR"] = repr(time.time())

    def _spawn(self, name: str) -> None:
        out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child process owns it
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own modules
                [sys.executable, "-m", MODULES[name]],
                env=self.process_env(name),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            out.close()
        self.processes[name] = proc
        self._started_at[name] = time.monotonic()
        log.info("process started", extra={"child": name, "pid": proc.pid, "port": self.ports[name]})

    def supervise_once(self) -> None:
        """One pass of the supervisor: note every process that died and schedule its restart after the backoff
        delay; restart those whose delay is over. Never waits, so one dying process does not hold up the others."""
        with self._lock:
            if self.stopping.is_set():
                return
            now = time.monotonic()
            for name, proc in list(self.processes.items()):
                if name in self._restart_due or proc.poll() is None:
                    continue
                up_s = now - self._started_at.get(name, now)
                in_a_row = 1 if up_s >= self.backoff.stable_s else self._deaths_in_a_row.get(name, 0) + 1
                self._deaths_in_a_row[name] = in_a_row
                delay = self.backoff.delay(in_a_row)
                self._restart_due[name] = now + delay
                log.warning(
                    "process exited; restarting it after the delay",
                    extra={
                        "child": name,
                        "exit_code": proc.returncode,
                        "pid": proc.pid,
                        "up_s": round(up_s, 1),
                        "restart_count": self.restarts.get(name, 0) + 1,
                        "delay_s": delay,
                    },
                )
            for name, due in list(self._restart_due.items()):
                if due <= now:
                    del self._restart_due[name]
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    self._spawn(name)

    def supervise(self, interval_s: float = 0.2) -> None:
        """Keep the fleet running until `stopping` is set (the caller then calls `stop()`)."""
        while not self.stopping.wait(interval_s):
            self.supervise_once()

    def _wait_healthy(self, name: str, timeout_s: float) -> None:
        path = "/metrics" if name == "backtest-worker" else "/readyz"
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            if self.stopping.is_set():
                raise InterruptedError(f"the fleet was stopped while {name} was starting")
            proc = self.processes[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir / (name + '.log')}")
            try:
                with urllib.request.urlopen(self.url(name) + path, timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready after {timeout_s:.0f}s ({last_error}); see {self.log_dir}/{name}.log")

    def stop(self) -> None:
        with self._lock:  # a supervisor thread still running restarts nothing from here on
            self.stopping.set()
            self._restart_due.clear()
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.processes:
            log.info("fleet stopped")
        self.processes.clear()


def refuse_replay_clock(env: dict[str, str]) -> None:
    """A replay clock is one process's object (shared/platform/clock.py): processes of a fleet would each follow
    their own. Refused here before any process starts, as each service refuses it itself (`market_clock`). A shifted
    clock is not: the processes share its moment and anchor through their environment (`Fleet.pin_clock_anchor`)."""
    if env.get("LH_MARKET_CLOCK", "real").strip() == "replay":
        raise ValueError(
            "LH_MARKET_CLOCK=replay is not supported in fleet mode: a replay clock is one process's, so run the "
            "replay in standalone mode (`make run` with LH_MARKET_CLOCK=replay)"
        )


def mysql_password_file() -> Path:
    """Where scripts/backing-services.sh keeps the project's MariaDB password (per machine account)."""
    state = os.environ.get("LH_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "lianghua"
    )
    return Path(state) / "mysql-password"


def local_env() -> dict[str, str]:
    """Defaults for `make fleet` on this machine: the project's MariaDB user (scripts/backing-services.sh made it)
    and secrets generated once into var/fleet-secrets.env, unless the environment sets them."""
    env: dict[str, str] = {}
    if "LH_DATABASE_URL" not in os.environ:
        password = mysql_password_file().read_text().strip()
        env["LH_DATABASE_URL"] = f"mysql+asyncmy://lianghua:{password}@127.0.0.1:3306/lh_{{service}}"
    env.setdefault("LH_REDIS_URL", os.environ.get("LH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    env.setdefault("LH_AMQP_URL", os.environ.get("LH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    generated = {k: secrets.token_urlsafe(32) for k in ("LH_JWT_SECRET", "LH_INTERNAL_SECRET", "LH_APPROVAL_SECRET")}
    generated["LH_ADMIN_PASSWORD"] = secrets.token_urlsafe(12)
    if all(k in os.environ for k in generated):
        return env  # the environment gives every secret: no file
    secrets_file = ROOT / "var" / "fleet-secrets.env"
    kept = secrets_file.read_text().splitlines() if secrets_file.exists() else []
    missing = [k for k in generated if not any(line.startswith(k + "=") for line in kept)]
    if missing:  # a new file, or one written before a key existed (LH_INTERNAL_SECRET): add what it lacks
        secrets_file.parent.mkdir(parents=True, exist_ok=True)
        secrets_file.write_text("\n".join([*kept, *(f"{k}={generated[k]}" for k in missing)]) + "\n")
        secrets_file.chmod(0o600)
    for line in secrets_file.read_text().splitlines():
        key, _, value = line.partition("=")
        if key and key not in os.environ:
            env[key] = value
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lianghua.fleet", description=__doc__)
    parser.add_argument("--log-dir", type=Path, default=ROOT / "var" / "log", help="one log file per process")
    parser.add_argument(
        "--port", action="append", default=[], metavar="NAME=PORT", help="override a default port (repeatable)"
    )
    args = parser.parse_args(argv)
    ports = dict(DEFAULT_PORTS)
    for item in args.port:
        name, _, port = item.partition("=")
        if name not in ports or not port.isdigit():
            parser.error(f"--port {item}: expected one of {', '.join(ports)} = a number")
        ports[name] = int(port)
    from shared.platform.observability import configure_logging

    configure_logging("fleet", os.environ.get("LH_LOG_LEVEL", "INFO"))
    fleet = Fleet(env=local_env(), ports=ports, log_dir=args.log_dir)
    try:
        refuse_replay_clock(fleet.process_env("gateway"))
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc

    def _stop(signum: int, _frame: object) -> None:
        log.info("stopping the fleet", extra={"signal": signal.Signals(signum).name})
        fleet.stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        fleet.start()
        admin_pw = fleet.env.get("LH_ADMIN_PASSWORD")
        print(f"LiangHua fleet is up: {fleet.url('gateway')}  (logs in {fleet.log_dir})", flush=True)
        if admin_pw:
            print(f"admin user: {os.environ.get('LH_ADMIN_USERNAME', 'admin')}  password in var/fleet-secrets.env")
        fleet.supervise()
    except InterruptedError:
        pass  # stopped by a signal before every process was up
    finally:
        fleet.stop()


if __name__ == "__main__":
    main()
