"""`lianghua strategy ...` against a real standalone platform on the replay market clock, over HTTP: create, a replay
followed to its end (the days and the final equity as the platform's own /performance says), list, and the API's
refusals as exit codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from lianghua.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main
from shared.core.market.calendar import sse_trading_days
from tests.e2e.flow import create_user, login
from tests.e2e.test_standalone import standalone_process

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def replay_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with standalone_process(tmp_path_factory.mktemp("strategy-cli"), LH_MARKET_CLOCK="replay") as platform:
        yield platform


async def _lianghua(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))  # the command is synchronous: off the test's event loop


async def test_create_replay_and_list_from_the_terminal(
    replay_platform: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base, admin_password = replay_platform
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await login(client, base, "admin", admin_password)
        username, password = await create_user(client, admin, "trader")
        trader = await login(client, base, username, password)
        codes = [s["ts_code"] for s in (await client.get(base + "/api/v1/securities", headers=admin.headers)).json()]
    monkeypatch.setenv("LH_URL", base)
    monkeypatch.setenv("LH_USERNAME", username)
    monkeypatch.setenv("LH_PASSWORD", password)
    monkeypatch.delenv("LH_API_KEY", raising=False)
    universe = ",".join(codes[:5])

    create = ["strategy", "create", "--strategy", "dual_ma", "--codes", universe, "--capital", "1000000"]
    assert await _lianghua(*create, "--param", "fast=5", "--param", "slow=20") == EXIT_OK
    made: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert made["state"] == "created" and made["params"]["fast"] == 5 and made["capital"] == "1000000.00"
    instance_id = made["instance_id"]

    assert await _lianghua("strategy", "replay", instance_id, "--start", "2024-01-02", "--end", "2024-03-29") == 0
    out, err = capsys.readouterr()
    async with httpx.AsyncClient(timeout=30) as client:
        performance = (
            await client.get(f"{base}/api/v1/strategy-instances/{instance_id}/performance", headers=trader.headers)
        ).json()
    days = len(sse_trading_days(date(2024, 1, 2), date(2024, 3, 29)))
    assert performance["state"] == "stopped" and len(performance["equity_curve"]) == days
    final = performance["equity_curve"][-1]["equity"]
    assert out.strip() == f"instance {instance_id}: stopped, {days} days, final equity {final} CNY"
    assert err.splitlines()[-1] == f"[{'#' * 30}] 100% {days}/{days} days 2024-03-29"  # stderr is no terminal here
    assert password not in out + err

    assert await _lianghua("strategy", "list", "--state", "stopped") == EXIT_OK
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in listed[1:]] == [[instance_id, "dual_ma", "stopped"]]
    assert listed[1].split()[5] == final

    # The platform's refusals: a parameter the strategy refuses (2, the API's message), an unknown instance (1), a
    # stopped instance started again (1).
    assert await _lianghua(*create, "--param", "fast=30", "--param", "slow=20") == EXIT_BAD_INPUT
    assert "HTTP 422 invalid_request" in (err := capsys.readouterr().err) and "fast (30)" in err
    assert await _lianghua("strategy", "pause", "0" * 32) == EXIT_FAILED
    assert "HTTP 404 instance_not_found" in capsys.readouterr().err
    assert await _lianghua("strategy", "start", instance_id) == EXIT_FAILED
    assert "HTTP 409 illegal_transition" in capsys.readouterr().err
