"""End to end, as real processes (fleet mode against MariaDB, Redis and RabbitMQ): execution is killed (`kill -9`)
while a strategy instance's session orders are going out, and the supervisor starts it again. Every order the
instance meant to place ends up at execution exactly once (same client_order_id, one row), none is left unknown (an
order not accepted would be reported dropped once its window closed; this window is open for hours, so none is), the
instance runs on and its sleeve agrees with execution's trades.

The fleet runs on a shifted market clock (LH_MARKET_CLOCK=shifted): 2024-12-31 09:31 Asia/Shanghai when it starts,
inside the `open` order window (09:30-14:57) of the session after the instance's last bar. The demo market is
generated through 2024-12-30 (LH_DEMO_END), so the instance's history ends there and its first session is 2024-12-31:
buy_and_hold's buys (one per symbol) are due at once. No fill or fill price is asserted: acceptance and uniqueness
only."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from lianghua.fleet import DEFAULT_PORTS, Fleet
from services.data.demo import generate_demo_market
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.platform.settings import Settings
from tests.conftest import Backing

pytestmark = pytest.mark.e2e
SH = ZoneInfo("Asia/Shanghai")
CLOCK_AT = datetime(2024, 12, 31, 9, 31, tzinfo=SH)  # inside the `open` window of the 2024-12-31 session
DEMO_END = "2024-12-30"  # the instance's last bar: its first session is 2024-12-31
SCOPE = "kill"
PROCESSES = ("data", "strategy", "execution", "risk")  # the order path; no gateway, backtest or worker needed
TRADER = Principal("kill-trader", "trader", "kill-trader")
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _codes() -> list[str]:
    """Main-board stocks (not ST) that traded on the last bar: each is bought at the first session, one order each."""
    market = generate_demo_market(Settings(_env_file=None, demo_end=DEMO_END))  # type: ignore[call-arg]
    daily = market.daily
    traded = set(daily[daily["trade_date"] == DEMO_END.replace("-", "")]["ts_code"])
    return sorted(
        s.ts_code for s in market.securities if s.board.value == "main" and not s.is_st and s.ts_code in traded
    )


@pytest.fixture
def fleet(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    env = {
        **backing.env(scope=SCOPE),
        "LH_INTERNAL_SECRET": secrets.token_urlsafe(32),
        "LH_APPROVAL_SECRET": secrets.token_urlsafe(32),
        "LH_MARKET_CLOCK": "shifted",
        "LH_MARKET_CLOCK_AT": CLOCK_AT.isoformat(),
        "LH_DEMO_END": DEMO_END,
        "LH_DATA_UPDATE_AT": "",
        "LH_STRATEGY_RELOAD_S": "0",
        "LH_LOG_JSON": "true",
        # The runner's round goes to risk (and on to execution) in batches, each admitted by execution in one
        # transaction: batches of two, so that the kill lands between the batches of one round ("mid-bar").
        "LH_BATCH_MAX_ORDERS": "2",
    }
    fleet = Fleet(
        env=env,
        ports={name: _free_port() for name in DEFAULT_PORTS},
        log_dir=tmp_path_factory.mktemp("fleet-kill"),
        names=PROCESSES,
    )
    supervisor = threading.Thread(target=fleet.supervise, name="fleet-supervisor", daemon=True)
    try:
        fleet.start()
        supervisor.start()
        yield fleet
    finally:
        fleet.stopping.set()
        if supervisor.is_alive():
            supervisor.join()
        fleet.stop()


def _headers(principal: Principal, fleet: Fleet) -> dict[str, str]:
    return {INTERNAL_HEADER: mint_internal_token(fleet.env["LH_INTERNAL_SECRET"], principal)}


async def _until(check: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 60.0) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = await check()
        except httpx.TransportError:
            value = None  # a process being restarted
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _dropped(fleet: Fleet) -> list[str]:
    """The client_order_ids the runner reported dropped (never accepted within the order window)."""
    lines = (fleet.log_dir / "strategy.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [str(e["client_order_id"]) for e in entries if str(e.get("msg", "")).startswith("order dropped")]


async def test_execution_killed_mid_bar_every_order_reaches_it_once_and_none_is_left_unknown(
    fleet: Fleet, backing: Backing
) -> None:
    codes = _codes()
    assert len(codes) >= 20
    capital = Decimal(100_000) * len(codes)
    strategy, execution = fleet.url("strategy"), fleet.url("execution")
    async with httpx.AsyncClient(timeout=20) as client:

        async def orders() -> list[dict[str, Any]]:
            resp = await client.get(
                f"{execution}/v1/orders",
                params={"strategy_instance_id": iid, "limit": "1000", "oldest_first": "true"},
                headers=_headers(TRADER, fleet),
            )
            resp.raise_for_status()
            return list(resp.json())

        created = await client.post(
            f"{strategy}/v1/strategy-instances",
            json={"strategy": "buy_and_hold", "universe": {"ts_codes": codes}, "capital": f"{capital:.2f}",
                  "order_timing": "open"},
            headers=_headers(TRADER, fleet),
        )  # fmt: skip
        assert created.status_code == 201, created.text
        iid = created.json()["instance_id"]
        started = await client.post(f"{strategy}/v1/strategy-instances/{iid}/start", headers=_headers(TRADER, fleet))
        assert started.status_code == 200 and started.json()["state"] == "running", started.text
        # buy_and_hold's first session: one buy per symbol, numbered in the order of its universe (sorted codes)
        intended = {f"{iid}-init-{k}": code for k, code in enumerate(codes)}

        # the runner's next tick sends them (the window is open); kill -9 execution once the first has reached it
        before_kill = await _until(orders, "the instance's first order at execution")
        strategy_pid = fleet.processes["strategy"].pid
        os.kill(fleet.processes["execution"].pid, signal.SIGKILL)
        killed_at = CLOCK_AT + timedelta(seconds=time.time() - float(fleet.env["LH_MARKET_CLOCK_ANCHOR"]))

        # the supervisor starts execution again; the runner goes on with the same client_order_ids
        async def settled() -> list[dict[str, Any]] | None:
            listed = await orders()
            done = {o["client_order_id"] for o in listed} | set(_dropped(fleet))
            return listed if done >= set(intended) else None

        listed = await _until(settled, "every intended order accepted or reported dropped", timeout_s=90)
        dropped = _dropped(fleet)

        # exactly once at execution: the listing and its table, one row per client_order_id
        cids = [o["client_order_id"] for o in listed]
        assert sorted(cids) == sorted(set(cids))
        engine = create_async_engine(backing.database_url(SCOPE).replace("{service}", "execution"))
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT client_order_id, COUNT(*) FROM orders WHERE strategy_instance_id = :iid "
                         "GROUP BY client_order_id"),
                    {"iid": iid},
                )  # fmt: skip
                per_cid = {str(cid): int(n) for cid, n in rows}
        finally:
            await engine.dispose()
        assert per_cid == dict.fromkeys(cids, 1)
        # every intended order is accepted (any status) or reported dropped, never both, nothing else was sent; the
        # window stays open for hours, so none was dropped
        assert set(cids) | set(dropped) == set(intended) and not set(cids) & set(dropped)
        assert dropped == []
        assert {o["client_order_id"]: o["ts_code"] for o in listed} == intended
        assert {o["side"] for o in listed} == {"buy"}
        # the kill came mid-bar: some orders reached the killed process, the rest the restarted one
        assert before_kill
        created_at = [datetime.fromisoformat(o["created_at"]) for o in listed]
        assert any(at < killed_at for at in created_at) and any(at > killed_at for at in created_at)
        assert fleet.restarts == {"execution": 1} and fleet.processes["strategy"].pid == strategy_pid
        for name in PROCESSES:  # each process says at start that its clock is shifted
            assert "the market clock is shifted" in (fleet.log_dir / f"{name}.log").read_text(), name
        # risk decided on the same shifted clock (the session's day, minutes after CLOCK_AT), approving each order
        resp = await client.get(f"{fleet.url('risk')}/v1/decisions", params={"limit": "500"},
                                headers=_headers(TRADER, fleet))  # fmt: skip
        assert resp.status_code == 200, resp.text
        decisions = [d for d in resp.json() if d["strategy_instance_id"] == iid]
        decided_at = [datetime.fromisoformat(d["created_at"]) for d in decisions]
        assert all(CLOCK_AT <= at < CLOCK_AT + timedelta(minutes=10) for at in decided_at), decided_at
        assert {d["client_order_id"] for d in decisions if d["approved"]} == set(intended)

        # the instance runs on, and its sleeve agrees with execution's trades
        instance = (await client.get(f"{strategy}/v1/strategy-instances/{iid}", headers=_headers(TRADER, fleet))).json()
        assert (instance["state"], instance["error"]) == ("running", None)

        async def trades() -> list[dict[str, Any]]:
            resp = await client.get(
                f"{execution}/v1/trades",
                params={"strategy_instance_id": iid, "limit": "1000"},
                headers=_headers(TRADER, fleet),
            )
            resp.raise_for_status()
            return list(resp.json())

        async def agreeing() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
            fills = await trades()
            sleeve = (
                await client.get(f"{strategy}/v1/strategy-instances/{iid}/sleeve", headers=_headers(TRADER, fleet))
            ).json()
            held: dict[str, int] = {}
            for t in fills:
                held[t["ts_code"]] = held.get(t["ts_code"], 0) + int(t["qty"])
            spent = sum((Decimal(t["amount"]) + Decimal(t["fees"]) for t in fills), Decimal(0))
            agrees = {p["ts_code"]: p["qty"] for p in sleeve["positions"]} == held and Decimal(
                sleeve["cash"]
            ) == capital - spent
            return (sleeve, fills) if agrees else None

        await _until(agreeing, "the sleeve to book execution's trades")
        assert all(t["client_order_id"] in intended for t in await trades())
