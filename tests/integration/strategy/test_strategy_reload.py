"""Hot reload through the platform (standalone, on the real MariaDB, replay market clock): a strategy file in a folder
of LH_STRATEGY_DIRS runs as a `reload: auto` paper instance replaying the demo market through risk and execution;
while it runs, the file is changed three times — a syntax error, then a version whose params refuse the instance's,
then a good one. The first two leave the old code trading and publish `strategy.code.rejected`; the third is taken
between bars: the orders change from that bar on, the count the strategy stored came over, and the sleeve's cash
and shares are those of every fill, before and after."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from lianghua.standalone import build_app
from services.data.demo import generate_demo_market
from services.strategy.store import outbox
from shared.platform.events import Envelope
from shared.platform.settings import Mode
from shared.research.engine import BacktestConfig, load_bars
from tests.conftest import Backing
from tests.e2e.flow import Session, create_user, login
from tests.unit.strategy.test_strategy_reload import TICKER_BROKEN, TICKER_V1, TICKER_V2, TICKER_V3

pytestmark = pytest.mark.integration
BASE = "http://gateway.test"
CAPITAL = Decimal("1000000.00")
DAYS = 40


async def until(check: Callable[[], Any], *, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def write(path: Path, text: str, n: int) -> None:
    path.write_text(text)
    stamp = time.time_ns() + n * 1_000_000_000  # a new stamp even within one clock tick of the last write
    os.utime(path, ns=(stamp, stamp))


async def test_a_changed_strategy_file_is_taken_between_bars_by_a_running_auto_instance(
    backing: Backing, tmp_path: Path
) -> None:
    folder = tmp_path / "my_strategies"
    folder.mkdir()
    path = folder / "ticker.py"
    write(path, TICKER_V1, 0)
    settings = backing.settings(
        scope=f"rl{secrets.token_hex(3)}",
        mode=Mode.STANDALONE,
        market_clock="replay",
        strategy_dirs=str(folder),
        strategy_reload_s=0.05,
        demo_symbols=10,
        rate_limit_per_minute=1_000_000,
    )
    market = generate_demo_market(settings)
    days = market.trade_days[:DAYS]
    frame = market.daily[pd.to_datetime(market.daily["trade_date"]).dt.date.isin(days)]
    panel = load_bars(frame, BacktestConfig(initial_cash=CAPITAL, calendar=tuple(days)))
    # a stock that trades every one of those days below its limit-up, so every order the strategy makes fills
    ok = panel.has_bar.all(axis=0) & (panel.open < panel.up_limit).all(axis=0)
    code = panel.codes[int(np.flatnonzero(ok)[0])]

    host = build_app(settings)
    strategy_app = host.state.services["strategy"]
    async with (
        host.router.lifespan_context(host),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url=BASE, timeout=60) as client,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=strategy_app), base_url="http://strategy") as service,
    ):
        admin = await login(client, BASE, "admin", settings.admin_password)
        username, password = await create_user(client, admin, "trader")
        trader: Session = await login(client, BASE, username, password)

        async def events(kind: str) -> list[Any]:
            async with strategy_app.state.db.engine.connect() as conn:
                rows = (await conn.execute(select(outbox.c.body).order_by(outbox.c.created_at, outbox.c.id))).all()
            found = [Envelope.model_validate_json(r.body) for r in rows]
            return [e.parsed() for e in found if e.type == kind]

        listed = await client.get("/api/v1/strategies/ticker", headers=trader.headers)
        assert listed.status_code == 200 and listed.json()["title"] == "Ticker v1", listed.text  # from the folder
        created = await client.post(
            "/api/v1/strategy-instances",
            json={"strategy": "ticker", "universe": {"ts_codes": [code]}, "capital": str(CAPITAL), "reload": "auto"},
            headers=trader.headers,
        )
        assert created.status_code == 201, created.text
        iid = created.json()["instance_id"]
        at = f"/api/v1/strategy-instances/{iid}"

        async def days_done() -> int:
            progress = (await client.get(f"{at}/performance", headers=trader.headers)).json()["progress"]
            return int(progress["days_done"]) if progress else 0

        # at 5 days a second, the replay lasts 8 s: the three changes are dealt with while it plays
        replay = {"start": days[0].isoformat(), "end": days[-1].isoformat(), "days_per_second": 5}
        answer = await client.post(f"{at}/start", json={"replay": replay}, headers=trader.headers)
        assert answer.status_code == 200, answer.text
        await until(lambda: _at_least(days_done, 3), what="three bars")

        # 1. a syntax error: the file is refused, nothing changes
        write(path, TICKER_BROKEN, 1)
        [broken] = await until(lambda: events("strategy.code.rejected"), what="the refused file")
        assert (broken.strategy, broken.instance_id, broken.owner, broken.file) == (None, None, None, str(path))
        assert broken.error.startswith("SyntaxError: expected ':' (line "), broken.error

        # 2. it imports, but its params refuse the instance's lot of 100: the instance keeps its code
        write(path, TICKER_V3, 2)
        rejected = await until(lambda: _when(events("strategy.code.rejected"), 2), what="the refused params")
        kept = rejected[1]
        assert (kept.strategy, kept.instance_id, kept.owner, kept.file) == ("ticker", iid, username, str(path))
        assert kept.error == "params.lot: Input should be greater than or equal to 500"

        before_reload = await days_done()
        await until(lambda: _at_least(days_done, before_reload + 3), what="three more bars")  # v1 trades on

        # 3. a good version: taken between two bars
        write(path, TICKER_V2, 3)
        [reloaded] = await until(lambda: events("strategy.instance.reloaded"), what="the reload")
        assert reloaded.instance_id == iid and reloaded.state == "running"
        assert await days_done() < DAYS, "the replay ended before the reload: the test proves nothing"
        await until(
            lambda: _state_is(client, at, trader, "stopped"), what="the end of the replay", timeout_s=60
        )  # fmt: skip

        trades = (
            await client.get(
                "/api/v1/trades",
                params={"strategy_instance_id": iid, "limit": "1000", "oldest_first": "true"},
                headers=trader.headers,
            )
        ).json()
        qty = [t["qty"] for t in trades]
        k = qty.index(next(q for q in qty if q != 100))
        assert k >= before_reload + 3, (k, before_reload)  # v1 ran on after the two refused versions
        assert qty == [100] * k + [100 * (k + 1)] + [200] * (DAYS - 2 - k)

        sleeve = (await client.get(f"{at}/sleeve", headers=trader.headers)).json()
        assert [(p["ts_code"], p["qty"]) for p in sleeve["positions"]] == [(code, sum(qty))]
        spent = sum(
            Decimal(t["price"]) * t["qty"] + Decimal(t["commission"]) + Decimal(t["stamp_duty"])
            + Decimal(t["transfer_fee"])
            for t in trades
        )  # fmt: skip
        assert Decimal(sleeve["cash"]) == CAPITAL - spent

        audit = (await client.get(f"{at}/audit", headers=trader.headers)).json()
        [entry] = [a for a in audit if a["action"] == "reloaded"]
        assert entry["actor"] == "svc:strategy"
        assert entry["after"]["file"] == str(path)
        assert entry["after"]["sha256"] == hashlib.sha256(TICKER_V2.encode()).hexdigest()
        described = (await client.get("/api/v1/strategies/ticker", headers=trader.headers)).json()
        assert described["title"] == "Ticker v2"  # new instances get the new class

        metrics = (await service.get("/metrics")).text
        assert 'lh_strategy_code_reload_failures_total{reason="file"} 1.0' in metrics
        assert 'lh_strategy_code_reload_failures_total{reason="instance"} 1.0' in metrics
        assert "lh_strategy_code_reloads_total 1.0" in metrics


async def _at_least(value: Callable[[], Any], least: int) -> bool:
    return int(await value()) >= least


async def _when(found: Any, count: int) -> list[Any] | None:
    items = await found
    return items if len(items) >= count else None


async def _state_is(client: httpx.AsyncClient, at: str, s: Session, state: str) -> bool:
    return bool((await client.get(at, headers=s.headers)).json()["state"] == state)
