"""A strategy instance on the real market clock with the paper broker following that clock (LH_PAPER_FILLS=session,
the default): its orders go out in the session's order window and rest there; when the session's bars are in
(`bars.updated`), execution matches them on that session's bar by the backtest engine's rules, and the runner books
those fills before it gives the strategy the session's bar. The whole platform in one process (standalone), on a
clock the test moves over the demo market's last days (it ends on 2024-12-31)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.applications import Starlette

from lianghua.standalone import build_app
from services.data.demo import generate_demo_market
from shared.platform.events import BarsUpdated, make_event
from shared.platform.settings import Mode, Settings
from tests.e2e.flow import Session, create_user, login
from tests.e2e.test_live_runner import _wait
from tests.integration.execution.test_paper_sessions import MovableClock

pytestmark = pytest.mark.e2e
BASE = "http://gateway.test"
SH = ZoneInfo("Asia/Shanghai")


@dataclass
class Platform:
    host: Starlette
    client: httpx.AsyncClient
    admin: Session
    clock: MovableClock

    @property
    def runner(self) -> Any:
        return self.host.state.services["strategy"].state.runner

    async def bars_updated(self, day: date) -> None:
        payload = BarsUpdated(trade_date=day, start_date=day, end_date=day, symbols=60, rows=60)
        await self.host.state.infra.bus.publish(make_event("bars.updated", payload, source="data"))


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    password = secrets.token_urlsafe(12)
    settings = Settings(
        mode=Mode.STANDALONE,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db",
        admin_password=password,
        rate_limit_per_minute=1_000_000,
        paper_fills="session",
    )
    clock = MovableClock("2024-12-27T20:00:00+08:00")
    host = build_app(settings, clock=clock)
    async with (
        host.router.lifespan_context(host),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url=BASE, timeout=60) as client,
    ):
        yield Platform(host, client, await login(client, BASE, "admin", password), clock)


def _demo_bars(codes: list[str], day: str) -> dict[str, Any]:
    """The demo market's own bars (unadjusted, CNY) of `codes` on `day`: the second source the fills are checked
    against."""
    daily = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    rows = daily[(daily["trade_date"] == day.replace("-", "")) & daily["ts_code"].isin(codes)]
    return {r.ts_code: r for r in rows.itertuples()}


async def test_orders_rest_until_their_sessions_bar_and_fill_at_its_open_before_the_next_on_bar(
    platform: Platform,
) -> None:
    username, password = await create_user(platform.client, platform.admin, "trader")
    trader = await login(platform.client, BASE, username, password)
    daily = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    last = daily[daily["trade_date"] == daily["trade_date"].max()]
    codes = sorted(c for c in last["ts_code"] if c.endswith(".SH") and c.startswith("60"))[:3]
    created = await platform.client.post(
        "/api/v1/strategy-instances",
        json={"strategy": "buy_and_hold", "universe": {"ts_codes": codes}, "capital": "300000.00",
              "order_timing": "open_auction"},
        headers=trader.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    iid = created.json()["instance_id"]
    path = f"/api/v1/strategy-instances/{iid}"
    assert (await platform.client.post(f"{path}/start", headers=trader.headers)).status_code == 200

    async def days(n: int) -> Any:
        p = (await platform.client.get(f"{path}/performance", headers=trader.headers)).json()
        return p if p["days"] == n else None

    async def orders() -> list[dict[str, Any]]:
        got = await platform.client.get("/api/v1/orders", params={"strategy_instance_id": iid, "oldest_first": "true"},
                                        headers=trader.headers)  # fmt: skip
        body: list[dict[str, Any]] = got.json()
        return body

    # the 2024-12-30 bar: the instance's first; its orders are for 2024-12-31, sent in its opening auction
    await platform.bars_updated(date(2024, 12, 30))
    await _wait(lambda: days(1), "the 2024-12-30 bar")
    platform.clock.moment = datetime(2024, 12, 31, 9, 16, tzinfo=SH)
    await platform.runner.send_due()
    sent = await orders()
    assert sorted(o["ts_code"] for o in sent) == codes
    assert {o["status"] for o in sent} == {"submitted"}  # resting: the session's bar is not in before it closes
    assert all(o["reason"].startswith("awaiting: ") and "2024-12-31" in o["reason"] for o in sent)

    # after the close the session's bars arrive: execution matches the orders at 2024-12-31's open, and the
    # runner books those fills before it marks that day and runs on_bar
    platform.clock.moment = datetime(2024, 12, 31, 16, 0, tzinfo=SH)
    await platform.bars_updated(date(2024, 12, 31))

    async def settled() -> Any:
        await platform.runner.tick()
        return await days(2)

    perf = await _wait(settled, "the 2024-12-31 bar after its fills")
    bars = _demo_bars(codes, "2024-12-31")
    # each order is a limit buy at the last close (2024-12-30's): it trades at 2024-12-31's open where the open is
    # at or below that limit, and otherwise expires with the session (the demo's 600487.SH opens above it)
    cent = Decimal("0.01")
    limit = {o["ts_code"]: Decimal(o["price"]) for o in sent}
    opens = {c: Decimal(str(bars[c].open)).quantize(cent) for c in codes}
    filled = sorted(c for c in codes if opens[c] <= limit[c])
    assert filled and len(filled) < len(codes)  # the demo market gives both cases
    trades = (await platform.client.get("/api/v1/trades", params={"strategy_instance_id": iid},
                                        headers=trader.headers)).json()  # fmt: skip
    assert sorted(t["ts_code"] for t in trades) == filled, (await orders(), perf["equity_curve"])
    for t in trades:
        assert Decimal(t["price"]) == opens[t["ts_code"]]
        assert t["traded_at"] == "2024-12-31T01:30:00Z"  # 09:30 Shanghai: the session's open
    final = {o["ts_code"]: o for o in await orders()}
    for c in codes:
        if c in filled:
            assert final[c]["status"] == "filled"
        else:
            assert (final[c]["status"], final[c]["filled_qty"]) == ("cancelled", 0)
            assert final[c]["reason"].startswith("expired: ") and "2024-12-31" in final[c]["reason"]

    # the sleeve's mark of 2024-12-31: its cash after the buys and fees, plus the shares at that day's close
    cash = Decimal("300000.00") - sum(Decimal(t["amount"]) + Decimal(t["fees"]) for t in trades)
    value = sum(t["qty"] * Decimal(str(bars[t["ts_code"]].close)).quantize(cent) for t in trades)
    mark = perf["equity_curve"][-1]
    assert mark["date"] == "2024-12-31" and Decimal(mark["equity"]) == cash + value
    assert Decimal(mark["turnover"]) == sum(Decimal(t["amount"]) for t in trades)
    assert Decimal(mark["fees"]) == sum(Decimal(t["fees"]) for t in trades)
    sleeve = (await platform.client.get(f"{path}/sleeve", headers=trader.headers)).json()
    assert Decimal(sleeve["cash"]) == cash
