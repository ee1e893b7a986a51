"""Where a result came from: the code version a run records in its manifest. Platform code (it reads the installed
package's metadata and asks git), kept out of the pure engine: the backtest service and the CLI compute it here and
hand it to `run_backtest(..., code_version=...)`."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path


@cache
def code_version() -> dict[str, str | None]:
    """The package version and, when the code runs from a git checkout, its commit (no time, no dirty flag: the
    same checkout always reports the same version)."""
    try:
        version: str | None = metadata.version("lianghua")
    except metadata.PackageNotFoundError:
        version = None
    commit: str | None = None
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        try:
            out = subprocess.run(  # noqa: S603 - fixed argv, no shell
                ["git", "-C", str(root), "rev-parse", "HEAD"],  # noqa: S607 - git from PATH is the point
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            commit = out.stdout.strip() or None if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"package": version, "git_commit": commit}
