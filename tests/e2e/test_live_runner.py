"""A strategy instance on the real market clock, through the whole platform in one process (standalone): started, it
loads its history (refused, naming the days, when there is less than its warm-up); a complete `bars.updated` gives
it the day's bar; its orders go out in the next session's order window at the last close, through risk and execution,
and its sleeve books the fills; a paused instance takes no bars. The runner's clock is set by the test (the demo
market ends on 2024-12-31)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.applications import Starlette

from lianghua.standalone import build_app
from services.data.demo import generate_demo_market
from shared.platform.errors import Unavailable
from shared.platform.events import BarsUpdated, make_event
from shared.platform.settings import Mode, Settings
from tests.e2e.flow import Session, create_user, login

pytestmark = pytest.mark.e2e
BASE = "http://gateway.test"
SH = ZoneInfo("Asia/Shanghai")


@dataclass
class Live:
    host: Starlette
    client: httpx.AsyncClient
    admin: Session
    now: list[datetime]

    @property
    def runner(self) -> Any:
        return self.host.state.services["strategy"].state.runner

    async def trader(self) -> Session:
        username, password = await create_user(self.client, self.admin, "trader")
        return await login(self.client, BASE, username, password)

    async def bars_updated(self, day: date) -> None:
        payload = BarsUpdated(trade_date=day, start_date=day, end_date=day, symbols=60, rows=60)
        await self.host.state.infra.bus.publish(make_event("bars.updated", payload, source="data"))


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    work: Path = tmp_path_factory.mktemp("live-runner")
    password = secrets.token_urlsafe(12)
    settings = Settings(
        mode=Mode.STANDALONE,
        database_url=f"sqlite+aiosqlite:///{work}/{{service}}.db",
        admin_password=password,
        rate_limit_per_minute=1_000_000,
    )
    now = [datetime(2024, 12, 30, 20, 0, tzinfo=SH).astimezone(UTC)]

    class Clock:
        """The real clock (no replayed session) at the test's moment, for every service: risk places an order in
        the session of that moment and checks it against that session's limits."""

        def now(self) -> datetime:
            return now[0]

        def session(self) -> date | None:
            return None

    host = build_app(settings, clock=Clock())
    host.state.services["strategy"].state.runner.now = lambda: now[0]
    transport = httpx.ASGITransport(app=host)
    async with (
        host.router.lifespan_context(host),
        httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as client,
    ):
        yield Live(host, client, await login(client, BASE, "admin", password), now)


def _codes(n: int) -> list[str]:
    daily = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    last = daily[daily["trade_date"] == daily["trade_date"].max()]
    return sorted(c for c in last["ts_code"] if c.endswith(".SH") and c.startswith("60"))[:n]


async def _wait(check: Any, what: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_a_real_clock_instance_trades_its_next_session(live: Live) -> None:
    trader = await live.trader()
    codes = _codes(3)
    created = await live.client.post(
        "/api/v1/strategy-instances",
        json={"strategy": "buy_and_hold", "universe": {"ts_codes": codes}, "capital": "300000.00"},
        headers=trader.headers,
    )
    assert created.status_code == 201, created.text
    path = f"/api/v1/strategy-instances/{created.json()['instance_id']}"
    iid = created.json()["instance_id"]
    started = await live.client.post(f"{path}/start", headers=trader.headers)
    assert started.status_code == 200 and started.json()["state"] == "running", started.text

    # history through 2024-12-30 (the clock's day): the strategy has not traded a bar yet
    perf = (await live.client.get(f"{path}/performance", headers=trader.headers)).json()
    assert perf["days"] == 0 and perf["progress"]["bar_date"] == "2024-12-30"

    # the 2024-12-31 bar arrives: the instance takes it (and only once, however often it is announced)
    await live.bars_updated(date(2024, 12, 31))
    await live.bars_updated(date(2024, 12, 31))

    async def marked() -> Any:
        p = (await live.client.get(f"{path}/performance", headers=trader.headers)).json()
        return p if p["days"] == 1 else None

    perf = await _wait(marked, "the 2024-12-31 bar")
    assert perf["equity_curve"][0]["date"] == "2024-12-31" and perf["equity_curve"][0]["equity"] == "300000.00"
    # the day's record, stored when the day was marked: nothing traded yet
    [day] = (await live.client.get(f"{path}/days", headers=trader.headers)).json()
    assert (day["trade_date"], day["cash"], day["equity"], day["turnover"]) == (
        "2024-12-31", "300000.00", "300000.00", "0.00"
    )  # fmt: skip
    assert (await live.client.get(f"{path}/days/20241231", headers=trader.headers)).json()["positions"] == []

    # before the next session's window nothing is sent; inside it (09:30, 2025-01-02) the orders go out
    live.now[0] = datetime(2025, 1, 2, 9, 10, tzinfo=SH).astimezone(UTC)
    await live.runner.send_due()
    orders = (await live.client.get("/api/v1/orders", params={"strategy_instance_id": iid},
                                    headers=trader.headers)).json()  # fmt: skip
    assert orders == []
    live.now[0] = datetime(2025, 1, 2, 9, 31, tzinfo=SH).astimezone(UTC)
    await live.runner.send_due()
    await live.runner.send_due()  # a second pass in the same window sends nothing more
    orders = (await live.client.get("/api/v1/orders", params={"strategy_instance_id": iid, "oldest_first": "true"},
                                    headers=trader.headers)).json()  # fmt: skip
    assert sorted(o["ts_code"] for o in orders) == codes  # placed at one moment of the test's clock: in any order
    assert {o["status"] for o in orders} == {"filled"}
    assert all(o["client_order_id"].startswith(f"{iid}-init-") for o in orders)

    # the sleeve: each symbol a third of the capital at the last close, in whole lots, fees paid from its cash
    sleeve = (await live.client.get(f"{path}/sleeve", headers=trader.headers)).json()
    trades = (await live.client.get("/api/v1/trades", params={"strategy_instance_id": iid},
                                    headers=trader.headers)).json()  # fmt: skip
    spent = sum(Decimal(t["amount"]) + Decimal(t["fees"]) for t in trades)
    assert Decimal(sleeve["cash"]) == Decimal("300000.00") - spent
    assert sorted((p["ts_code"], p["qty"]) for p in sleeve["positions"]) == sorted(
        (t["ts_code"], t["qty"]) for t in trades
    )
    # order_value(100,000 CNY) at the reference price (the 2024-12-31 close, which the paper broker fills at):
    # the whole lots it buys; the last buy may be a lot short (the fees come out of the cash first)
    lots = {t["ts_code"]: int(Decimal("100000") / Decimal(t["price"])) // 100 * 100 for t in trades}
    by_code = {t["ts_code"]: t["qty"] for t in trades}
    assert [by_code[c] for c in codes[:2]] == [lots[c] for c in codes[:2]]
    assert by_code[codes[2]] in (lots[codes[2]], lots[codes[2]] - 100)


async def test_a_paused_instance_takes_no_bar(live: Live) -> None:
    live.now[0] = datetime(2024, 12, 30, 20, 0, tzinfo=SH).astimezone(UTC)
    trader = await live.trader()
    paths = []
    for _ in range(2):
        created = await live.client.post(
            "/api/v1/strategy-instances",
            json={"strategy": "buy_and_hold", "universe": {"ts_codes": _codes(2)}, "capital": "100000.00"},
            headers=trader.headers,
        )
        path = f"/api/v1/strategy-instances/{created.json()['instance_id']}"
        assert (await live.client.post(f"{path}/start", headers=trader.headers)).status_code == 200
        paths.append(path)
    running, paused = paths
    assert (await live.client.post(f"{paused}/pause", headers=trader.headers)).json()["state"] == "paused"
    assert live.runner.runs[paused.rsplit("/", 1)[1]].state == "paused"  # what its orders would carry
    await live.bars_updated(date(2024, 12, 31))

    async def taken() -> Any:
        return (await live.client.get(f"{running}/performance", headers=trader.headers)).json()["days"] == 1

    await _wait(taken, "the running instance's bar")
    assert (await live.client.get(f"{paused}/performance", headers=trader.headers)).json()["days"] == 0


async def test_a_start_with_less_history_than_the_warmup_is_refused_naming_the_days(live: Live) -> None:
    trader = await live.trader()
    created = await live.client.post(
        "/api/v1/strategy-instances",
        json={"strategy": "dual_ma", "params": {"fast": 5, "slow": 500}, "universe": {"ts_codes": _codes(1)},
              "capital": "100000.00"},
        headers=trader.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    path = f"/api/v1/strategy-instances/{created.json()['instance_id']}"
    refused = await live.client.post(f"{path}/start", headers=trader.headers)
    assert refused.status_code == 422 and refused.json()["code"] == "warmup_incomplete"
    assert "500 trading days" in refused.json()["message"] and "2023-01-03" in refused.json()["message"]
    assert (await live.client.get(path, headers=trader.headers)).json()["state"] == "created"


async def test_parameters_changed_while_paused_run_after_resume_keeping_the_book(live: Live) -> None:
    live.now[0] = datetime(2024, 12, 30, 20, 0, tzinfo=SH).astimezone(UTC)
    trader = await live.trader()
    created = await live.client.post(
        "/api/v1/strategy-instances",
        json={"strategy": "buy_and_hold", "universe": {"ts_codes": _codes(2)}, "capital": "100000.00"},
        headers=trader.headers,
    )
    iid = created.json()["instance_id"]
    path = f"/api/v1/strategy-instances/{iid}"
    assert (await live.client.post(f"{path}/start", headers=trader.headers)).status_code == 200
    before = live.runner.runs[iid]
    pending = [(i.sym, i.amount) for i in before.book.pending]  # on_init's buys, waiting for the next session
    assert (await live.client.post(f"{path}/pause", headers=trader.headers)).json()["state"] == "paused"
    patched = await live.client.patch(path, json={"params": {"cash_reserve": "0.5"}}, headers=trader.headers)
    assert patched.status_code == 200, patched.text
    assert (await live.client.post(f"{path}/resume", headers=trader.headers)).json()["state"] == "running"
    run = live.runner.runs[iid]
    assert run.state == "running"
    assert run.strategy.params.cash_reserve == Decimal("0.5")
    # the book is the one it had: the orders already placed stay as they were (the new on_init places none)
    assert [(i.sym, i.amount) for i in run.book.pending] == pending


async def test_an_instances_orders_carry_their_sleeve_and_risk_never_asks_the_strategy_service(live: Live) -> None:
    """The sleeve comes with each order (the runner computes it as it sends): with the strategy service's sleeve
    endpoint broken the instance's orders still go through risk, and the decisions record the sleeves they carried.
    A person sending a sleeve through the gateway is refused."""
    live.now[0] = datetime(2024, 12, 30, 20, 0, tzinfo=SH).astimezone(UTC)
    trader = await live.trader()
    account_id = (await live.client.get("/api/v1/account", headers=trader.headers)).json()["account_id"]
    codes = _codes(2)
    created = await live.client.post(
        "/api/v1/strategy-instances",
        json={"strategy": "buy_and_hold", "universe": {"ts_codes": codes}, "capital": "200000.00"},
        headers=trader.headers,
    )
    iid = created.json()["instance_id"]
    path = f"/api/v1/strategy-instances/{iid}"
    assert (await live.client.post(f"{path}/start", headers=trader.headers)).status_code == 200
    assert live.runner.runs[iid].state == "running"  # the start is recorded: its orders carry it

    # a person's order with a sleeve (a generous one of their own instance), through the gateway: refused
    sleeve = {"instance_id": iid, "account_id": account_id, "state": "running", "cash_available": "99999999.00",
              "position": None}  # fmt: skip
    order = {"client_order_id": f"own-{secrets.token_hex(4)}", "ts_code": codes[0], "side": "buy",
             "order_type": "limit", "qty": 100, "price": "10.00"}  # fmt: skip
    refused = await live.client.post("/api/v1/orders", json={**order, "sleeve": sleeve}, headers=trader.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "sleeve_not_allowed"), refused.text
    named = {**order, "sleeve": sleeve, "strategy_instance_id": iid}
    refused = await live.client.post("/api/v1/orders", json=named, headers=trader.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), refused.text

    await live.bars_updated(date(2024, 12, 31))

    async def marked() -> Any:
        return (await live.client.get(f"{path}/performance", headers=trader.headers)).json()["days"] == 1

    await _wait(marked, "the 2024-12-31 bar")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise Unavailable("sleeve_unavailable", "the sleeve endpoint is down (test)")

    live.runner.sleeve = broken  # the strategy service cannot answer a sleeve now
    try:
        down = await live.client.get(f"{path}/sleeve", headers=trader.headers)
        assert (down.status_code, down.json()["code"]) == (503, "sleeve_unavailable"), down.text
        live.now[0] = datetime(2025, 1, 2, 9, 31, tzinfo=SH).astimezone(UTC)
        await live.runner.send_due()
    finally:
        del live.runner.sleeve
    orders = (await live.client.get("/api/v1/orders", params={"strategy_instance_id": iid},
                                    headers=trader.headers)).json()  # fmt: skip
    assert sorted(o["ts_code"] for o in orders) == codes and {o["status"] for o in orders} == {"filled"}
    decisions = [d for d in (await live.client.get("/api/v1/decisions", headers=trader.headers)).json()
                 if d["strategy_instance_id"] == iid]  # fmt: skip
    assert len(decisions) == 2 and all(d["approved"] for d in decisions)
    carried = [d["rule_check"]["sleeve"] for d in decisions]
    assert {(s["instance_id"], s["account_id"], s["state"], s["position"]) for s in carried} == {
        (iid, account_id, "running", None)
    }
    assert {s["session"] for s in carried} == {"2025-01-02"}
    # each buy saw the capital less what the other buy reserved before it (one at a time: the first sees it all)
    assert max(Decimal(s["cash_available"]) for s in carried) == Decimal("200000.00")
