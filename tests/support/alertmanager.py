"""A real Alertmanager process for the tests that need one (tests/integration/notify, the gateway's alerts API, the
alerts page's browser test): its own port and data directory, no cluster."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.chaos.servers import free_port

ALERTMANAGER_INSTALL = (
    "alertmanager is not on PATH. On Debian/Ubuntu: apt-get install -y --no-install-recommends prometheus-alertmanager "
    "(its binary is /usr/bin/prometheus-alertmanager; amtool comes with it)."
)


class Alertmanager:
    def __init__(self, config: Path, data_dir: Path) -> None:
        binary = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")
        if binary is None:
            pytest.fail(ALERTMANAGER_INSTALL, pytrace=False)
        self.binary = binary
        self.config = config
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "alertmanager.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 (starts it and returns: nothing blocks)
                [self.binary, f"--config.file={self.config}", f"--storage.path={self.data_dir}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                 f"--web.external-url={self.url}", "--log.level=info"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{self.url}/-/ready", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        deadline = time.monotonic() + 30
        while not await ready():
            assert self.proc.poll() is None, f"alertmanager exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "alertmanager not ready in 30 s"
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 10)
        self.proc = None
