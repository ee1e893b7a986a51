"""`python -m bridge.qmt` as a process, on the fake MiniQMT (driven through its control server) against the fake
platform: place, fill, quotes, a clean stop on SIGTERM, and a restart that knows the order it placed."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bridge.qmt import protocol
from tests.integration.bridge.fake_platform import WAIT_S, FakePlatform

ROOT = Path(__file__).resolve().parents[3]
SECRET = "process-secret-0123456789"
ACCOUNT = "8880001111"
OID = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"


def _written(path: Path) -> str:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not written")
        time.sleep(0.02)
    return path.read_text()


async def control_address(path: Path) -> str:
    """The fake MiniQMT's control server address, once the bridge process has started it (port 0: a free one)."""
    return await asyncio.to_thread(_written, path)


async def control(address: str, action: str, body: dict[str, Any] | None = None) -> Any:
    def call() -> Any:
        request = urllib.request.Request(
            f"http://{address}/{action}", data=json.dumps(body or {}).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:  # noqa: S310 (http to the fake on loopback)
            return json.loads(response.read())["result"]

    return await asyncio.to_thread(call)


def _log_file(path: Path) -> Any:
    return open(path, "wb")


async def start_bridge(tmp_path: Path, platform: FakePlatform, run: int) -> asyncio.subprocess.Process:
    config = tmp_path / "bridge.toml"
    config.write_text(
        f"""
userdata_path = "{tmp_path / "userdata_mini"}"
session_id = 5
account_id = "{ACCOUNT}"
bridge_id = "desk9"
platform_url = "{platform.url}"
journal_path = "{tmp_path / "journal.sqlite3"}"
quotes = true
quote_codes = ["SH"]
reconnect_initial_s = 0.05
reconnect_max_s = 0.2
"""
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'support' / 'qmt'}",
        "LH_BRIDGE_SECRET": SECRET,
        "FAKE_XTQUANT_CONTROL": "127.0.0.1:0",
        "FAKE_XTQUANT_CONTROL_FILE": str(tmp_path / f"control-{run}.txt"),
        "FAKE_XTQUANT_STATE": str(tmp_path / "miniqmt.json"),
    }
    log = _log_file(tmp_path / f"bridge-{run}.log")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.qmt", "--config", str(config), env=env, stdout=log, stderr=log, cwd=tmp_path
        )
    finally:
        log.close()  # the process has its own copy


async def stop_bridge(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), WAIT_S)


async def test_the_bridge_process_places_fills_forwards_quotes_and_restarts(tmp_path: Path) -> None:
    platform = FakePlatform({"desk9": SECRET}, {"desk9": ACCOUNT})
    await platform.start()
    process = await start_bridge(tmp_path, platform, 1)
    try:
        session = await platform.session("trading")
        await platform.until(lambda: platform.pushes("connection", lambda b: b["qmt"] == "connected"))
        address = await control_address(tmp_path / "control-1.txt")
        assert (await platform.request(session, protocol.SET_TRADING, {"enabled": True, "read_only": False}))["ok"]
        body = {
            "order_id": OID,
            "remark": OID[:24],
            "ts_code": "600519.SH",
            "side": "buy",
            "qty": 100,
            "price_type": 11,
            "price": "1500.000",
            "strategy_name": "p",
        }
        assert (await platform.request(session, protocol.PLACE, body))["body"]["state"] == "placed"
        await platform.push("order", lambda b: b["order_id"] == OID and b["status"] == 50)
        await control(address, "fill", {"remark": OID[:24], "qty": 100, "price": 1499.5})
        trade = await platform.push("trade")
        # 100 * 1499.5 = 149950.00; commission 149950 * 0.00025 = 37.4875 -> 37.49
        assert (trade["order_id"], trade["price"], trade["amount"], trade["commission"]) == (
            OID,
            "1499.500",
            "149950.00",
            "37.49",
        )
        await platform.session("quotes")
        await platform.until(lambda: platform.pushes("connection"))
        tick = {"time": 1765071000000, "lastPrice": 1499.5, "volume": 321}
        await control(address, "quotes", {"data": {"600519.SH": tick, "000001.SZ": tick}})
        quotes = await platform.push("quotes")
        assert [(q["ts_code"], q["volume_lots"]) for q in quotes["quotes"]] == [("600519.SH", 321)]
        # MiniQMT goes away and comes back: the platform hears of both, the bridge builds a new trader and
        # subscribes the quotes again (one subscription, not two)
        connected = len(platform.pushes("connection", lambda b: b["qmt"] == "connected"))
        await control(address, "disconnect", {"down": True})
        await platform.push("connection", lambda b: b["qmt"] == "disconnected")
        await control(address, "up")
        await platform.until(lambda: len(platform.pushes("connection", lambda b: b["qmt"] == "connected")) > connected)
        state = await control(address, "state")
        assert (state["sessions"], state["traders_created"] >= 2, state["quote_subs"]) == (1, True, 1)
        assert await stop_bridge(process) == 0
        log = (tmp_path / "bridge-1.log").read_text()
        assert "bridge stopped" in log and SECRET not in log

        process = await start_bridge(tmp_path, platform, 2)
        second = await platform.session("trading", number=2)
        address = await control_address(tmp_path / "control-2.txt")
        assert (await platform.request(second, protocol.SET_TRADING, {"enabled": True, "read_only": False}))["ok"]
        again = await platform.request(second, protocol.PLACE, body)
        assert again["body"]["state"] == "known"
        assert (again["body"]["order"]["status"], again["body"]["order"]["traded_qty"]) == (56, 100)
        calls = await control(address, "calls")
        assert [c["order_remark"] for c in calls] == [OID[:24]]  # placed once, across the restart
    finally:
        await stop_bridge(process)
        await platform.stop()


async def test_a_bad_config_exits_2_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('session_id = "x"\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.qmt",
        "--config",
        str(config),
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LH_BRIDGE_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), WAIT_S)
    assert process.returncode == 2
    assert b"session_id: must be an integer" in out and SECRET.encode() not in out
