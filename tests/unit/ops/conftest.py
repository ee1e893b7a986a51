"""Fixtures for the deployment checks: Prometheus's promtool and the parsed compose file."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]

PROMTOOL_INSTALL = (
    "promtool is not on PATH. It comes with Prometheus; on Debian/Ubuntu install it with\n"
    "    apt-get update && apt-get install -y --no-install-recommends prometheus\n"
    "(the package's service need not run: only /usr/bin/promtool is used)."
)

Promtool = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def promtool() -> Promtool:
    """Runs promtool in the repository root. Never skipped: the Prometheus files are only known to be valid once
    promtool says so, so a machine without it fails these tests with the install command."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(PROMTOOL_INSTALL, pytrace=False)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([path, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)

    return run


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    assert isinstance(data.get("services"), dict), "docker-compose.yml has no services"
    return data
