"""What the strategy-instance benchmarks share: a generated market on the real SSE calendar, the whole platform in
one process (standalone; SQLite files or MariaDB databases for the services), the market loaded into its data
service, and a trader's session."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import httpx
import pandas as pd
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from bench.common import _test_env
from services.data.demo import BulkMarket, generate_bulk_market
from services.data.loader import calendar_rows
from services.data.store import DataStore
from shared.core.market.calendar import sse_trading_days
from shared.platform.db import Database
from shared.platform.settings import Mode, Settings

BASE = "http://gateway.test"
# MariaDB's notes on the migrations (named primary keys, databases that exist), which asyncmy logs, are not the
# benchmark's output
logging.getLogger("asyncmy").setLevel(logging.ERROR)
CALENDAR_SPAN = (date(2022, 1, 1), date(2025, 12, 31))  # the built-in SSE calendar's years


def sse_market(symbols: int, first: date, last: date, *, seed: int = 20240101) -> BulkMarket:
    """`generate_bulk_market` over the SSE trading days in [first, last] instead of its weekday calendar (a replay
    and the real-clock runner walk the exchange's calendar): the same bars, their dates relabelled in order."""
    days = sse_trading_days(first, last)
    market = generate_bulk_market(symbols, len(days), seed=seed, start=first)
    daily = market.daily
    daily["trade_date"] = daily["trade_date"].cat.rename_categories([d.strftime("%Y%m%d") for d in days])
    return BulkMarket(market.securities, daily, days)


def engine_bars(market: BulkMarket) -> pd.DataFrame:
    """The market as `run_backtest` takes it (Tushare layout, plain string columns)."""
    frame = market.daily.copy()
    frame["ts_code"] = frame["ts_code"].astype(str)
    frame["trade_date"] = frame["trade_date"].astype(str)
    return frame


async def load_into_data_service(database_url: str, market: BulkMarket, *, bars: pd.DataFrame | None = None) -> int:
    """Securities, the SSE calendar and the bars (`bars`: only these rows) into the data service's database (its
    caches key on the data version the upsert bumps). Returns the bar rows written."""
    db = Database(database_url)
    await db.connect()
    try:
        store = DataStore(db)
        await store.upsert_securities(market.securities)
        calendar = pd.DataFrame(calendar_rows(*CALENDAR_SPAN))
        calendar["cal_date"] = [d.strftime("%Y%m%d") for d in calendar["cal_date"]]
        calendar["is_open"] = calendar["is_open"].astype(int)
        await store.upsert_trade_calendar(calendar)
        return await store.upsert_daily_bars(market.daily if bars is None else bars)
    finally:
        await db.dispose()


@dataclass
class Platform:
    host: Starlette
    settings: Settings
    client: httpx.AsyncClient
    admin_headers: dict[str, str]

    def data_url(self) -> str:
        return self.settings.database_url_for("data")


@asynccontextmanager
async def platform(
    work: Path, db: str, market_clock: Literal["real", "replay"], **overrides: Any
) -> AsyncIterator[Platform]:
    """The standalone platform (every service in this process behind the gateway, the in-memory bus). `db`:
    "sqlite" (files under `work`, as `make run`) or "mariadb" (a database per service on the test MariaDB, dropped
    after: the fleet's storage, in one process)."""
    from lianghua.standalone import build_app

    password = secrets.token_urlsafe(12)
    run = secrets.token_hex(3)
    mysql = _test_env()["LH_TEST_MYSQL_URL"].rstrip("/") if db == "mariadb" else ""
    url = f"{mysql}/lhbench_{run}_{{service}}" if db == "mariadb" else f"sqlite+aiosqlite:///{work}/{{service}}.db"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        mode=Mode.STANDALONE,
        database_url=url,
        admin_password=password,
        rate_limit_per_minute=1_000_000,
        max_order_value=Decimal("100000000"),
        market_clock=market_clock,
        load_demo_data=False,
        **overrides,
    )
    host = build_app(settings)
    try:
        async with host.router.lifespan_context(host):
            transport = httpx.ASGITransport(app=host)
            async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=600) as client:
                token = await client.post("/api/v1/auth/token", data={"username": "admin", "password": password})
                token.raise_for_status()
                headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
                yield Platform(host, settings, client, headers)
    finally:
        if db == "mariadb":
            await _drop(mysql, run)
            # the data service's on-disk snapshot of the dropped database (services/data/bulk.py names it)
            for directory in (Path(tempfile.gettempdir()) / "lianghua-data").glob(f"*-lhbench_{run}_data-*"):
                shutil.rmtree(directory, ignore_errors=True)


async def _drop(mysql: str, run: str) -> None:
    engine = create_async_engine(mysql + "/")
    async with engine.begin() as conn:
        for (name,) in (await conn.execute(text("SHOW DATABASES LIKE :p"), {"p": f"lhbench\\_{run}\\_%"})).all():
            await conn.execute(text(f"DROP DATABASE `{name}`"))
    await engine.dispose()


async def trader(p: Platform) -> dict[str, str]:
    """A new trader's headers (a trader trades on their own paper account, opened with its opening cash)."""
    username, password = f"bench-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    made = await p.client.post(
        "/api/v1/users", json={"username": username, "password": password, "role": "trader"}, headers=p.admin_headers
    )
    made.raise_for_status()
    token = await p.client.post("/api/v1/auth/token", data={"username": username, "password": password})
    token.raise_for_status()
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def create_instance(p: Platform, headers: dict[str, str], body: dict[str, Any]) -> str:
    created = await p.client.post("/api/v1/strategy-instances", json=body, headers=headers)
    if created.status_code != 201:
        raise RuntimeError(f"create: {created.status_code} {created.text}")
    return str(created.json()["instance_id"])


async def count_rows(p: Platform, headers: dict[str, str], path: str, key: str, instance_id: str) -> list[Any]:
    """Every order (or trade) execution holds for the instance, paged."""
    rows: list[Any] = []
    query = {"strategy_instance_id": instance_id, "limit": "1000", "oldest_first": "true"}
    while True:
        page = await p.client.get(path, params=query, headers=headers)
        page.raise_for_status()
        rows.extend(page.json())
        if len(page.json()) < 1000:
            return rows
        query = {**query, "after": rows[-1][key]}


async def wait_state(
    p: Platform, headers: dict[str, str], instance_id: str, *, poll_s: float = 0.5, progress_every_s: float = 0.0
) -> dict[str, Any]:
    """Until the instance is no longer running; with `progress_every_s`, its replay's progress printed that often."""
    path = f"/api/v1/strategy-instances/{instance_id}"
    began = last = time.perf_counter()
    while True:
        state = (await p.client.get(path, headers=headers)).json()
        if state["state"] != "running":
            return dict(state)
        if progress_every_s and time.perf_counter() - last >= progress_every_s:
            last = time.perf_counter()
            progress = (await p.client.get(f"{path}/performance", headers=headers)).json().get("progress") or {}
            print(f"    {last - began:7.1f} s: day {progress.get('days_done')} of {progress.get('days')} "
                  f"({progress.get('bar_date')}), {progress.get('orders_sent')} orders", flush=True)  # fmt: skip
        await asyncio.sleep(poll_s)
