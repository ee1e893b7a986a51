"""The container image installs the project non-editably: the wheel must carry migrations and the web UI."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_wheel_contains_migrations_and_web_assets(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    names = set(zipfile.ZipFile(next(tmp_path.glob("lianghua-*.whl"))).namelist())
    for service in ("services/data", "services/backtest", "services/risk", "services/execution", "gateway"):
        assert f"{service}/migrations/env.py" in names
        assert f"{service}/migrations/script.py.mako" in names
        assert any(n.startswith(f"{service}/migrations/versions/0001") for n in names), service
    for asset in ("index.html", "static/app.js", "static/desk.js", "static/vendor/bootstrap/bootstrap.min.css"):
        assert f"gateway/web/{asset}" in names
    assert "strategies/buy_and_hold.py" in names and "lianghua/standalone.py" in names
