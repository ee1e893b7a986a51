"""A strategy that ranks on Tushare daily_basic fields (the `factor` example) run through the backtest service, its
worker and the real data service (demo market, MariaDB): the worker fetches the fields the strategy declares with
the bars from the bulk endpoint, and the run equals one of the engine directly on the demo generator's bars with
its daily_basic merged in (a second method: no service, no store, no unit conversion in between). An optimisation
of it, over the same worker's bulk loader, equals the library's grid on the generator's bars."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.backtest.app import create_app as create_backtest_app
from services.backtest.optimize import OptimisationTaskHandler, bulk_market_loader, submit_optimisation
from services.backtest.schemas import OptimisationRequest
from services.backtest.store import PointStatus
from services.backtest.worker import BacktestWorker
from services.data.app import create_app as create_data_app
from services.data.bulk import bulk_directory
from services.data.demo import DemoMarket, generate_demo_market
from shared.core.market.calendar import sse_trading_days
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.platform.settings import Settings
from shared.research.engine import BacktestConfig, load_bars, run_backtest
from shared.research.engine.optimize import ParameterSpace, evaluate
from shared.research.strategy import discover_strategies
from strategies.factor import Factor
from tests.conftest import Backing

pytestmark = pytest.mark.integration

TIMEOUT_S = 60
START, END = date(2023, 1, 3), date(2024, 12, 31)  # the demo market's whole window
CASH = "1000000"


@dataclass
class Stack:
    settings: Settings
    client: httpx.AsyncClient
    market: DemoMarket  # generated here, independently of the data service's own load
    optimiser: OptimisationTaskHandler
    infra: Infra

    def headers(self) -> dict[str, str]:
        return {INTERNAL_HEADER: mint_internal_token(self.settings.internal_secret, Principal("alice", "trader"))}

    async def run(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self.client.post("/v1/backtests", json=body, headers=self.headers())
        assert resp.status_code == 202, resp.text
        backtest_id = resp.json()["backtest_id"]
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                got = await self.client.get(f"/v1/backtests/{backtest_id}", headers=self.headers())
                result: dict[str, Any] = got.json()
                if result["status"] in ("succeeded", "failed", "cancelled"):
                    return result
                await asyncio.sleep(0.05)

    async def trades(self, backtest_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = await self.client.get(
                f"/v1/backtests/{backtest_id}/trades",
                params={"limit": 500, "offset": len(out)},
                headers=self.headers(),
            )
            assert page.status_code == 200, page.text
            out += page.json()["trades"]
            if len(out) >= page.json()["total"]:
                return out


@pytest.fixture(scope="module")
async def stack(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = backing.settings(scope="dbasic", demo_symbols=40)
    data_app = create_data_app(settings)  # the demo provider: loads the demo market, daily_basic too, at start-up
    app = create_backtest_app(settings, strategies=discover_strategies())
    worker_infra = Infra(
        settings=settings,
        bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="backtest-worker"),
        cache=create_cache(settings.redis_url),
        services=ServiceDirectory(settings, transports={"data": httpx.ASGITransport(app=data_app)}),
    )
    async with data_app.router.lifespan_context(data_app), app.router.lifespan_context(app):
        await worker_infra.start()
        worker = BacktestWorker(
            settings,
            worker_infra,
            strategies=discover_strategies(),
            cache_dir=tmp_path_factory.mktemp("bars-cache"),
            fetch_attempts=2,
            fetch_backoff_s=0.05,
        )
        await worker.start()
        optimiser = OptimisationTaskHandler(
            settings,
            worker_infra,
            strategies=discover_strategies(),
            load_market=bulk_market_loader(worker.market_data()),
        )
        await optimiser.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://backtest") as client:
                yield Stack(settings, client, generate_demo_market(settings), optimiser, worker_infra)
        finally:
            await optimiser.stop()
            await worker.stop()
            await worker_infra.close()
    shutil.rmtree(bulk_directory(settings), ignore_errors=True)


async def test_factor_with_its_defaults_runs_through_the_service_on_the_demo_market(stack: Stack) -> None:
    codes = sorted(stack.market.daily["ts_code"].unique())
    body = {"strategy": "factor", "ts_codes": codes, "start": START.isoformat(), "end": END.isoformat(),
            "initial_cash": CASH}  # fmt: skip
    result = await stack.run(body)
    assert result["status"] == "succeeded", result["error"]
    trades = await stack.trades(result["backtest_id"])
    assert trades, "the factor example placed no trade"

    # The second method: the engine on the generator's own frame (Tushare units, daily_basic merged in), no service.
    direct = run_backtest(
        Factor(),
        stack.market.bars_with_daily_basic(),
        BacktestConfig(initial_cash=Decimal(CASH), start=START, end=END, calendar=tuple(sse_trading_days(START, END))),
    )
    expected = direct.trades_frame()
    assert [(t["trade_date"], t["ts_code"], t["side"], t["qty"], t["price"], t["fees"]) for t in trades] == list(
        zip(
            expected["trade_date"], expected["ts_code"], expected["side"], expected["qty"].tolist(),
            expected["price"], expected["fees"], strict=True,
        )
    )  # fmt: skip
    assert result["summary"]["final_equity"] == direct.final_equity
    assert len({t["ts_code"] for t in trades}) > 10  # it rotated: more names than the 10 it holds at a time


async def test_an_optimisation_of_factor_reads_the_fields_through_the_bulk_loader(stack: Stack) -> None:
    codes = sorted(stack.market.daily["ts_code"].unique())
    space = {"top_n": [5, 10], "weight_turnover": [0.0, 0.5]}
    request = OptimisationRequest.model_validate(
        {"strategy": "factor", "space": space, "objective": "sharpe", "ts_codes": codes, "start": START, "end": END,
         "config": {"initial_cash": CASH}, "batch_size": 2}
    )  # fmt: skip
    oid = "factor-" + secrets.token_hex(6)
    await submit_optimisation(stack.optimiser.store, stack.infra.bus, request, owner="alice", optimisation_id=oid)
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            record = await stack.optimiser.store.get(oid)
            assert record is not None
            if record.status.is_final:
                break
            await asyncio.sleep(0.05)
    assert record.status.value == "succeeded", record.error
    config = BacktestConfig(initial_cash=Decimal(CASH), start=START, end=END)
    points, _ = ParameterSpace.from_spec(Factor, space).grid()
    serial = evaluate(points, load_bars(stack.market.bars_with_daily_basic(), config), config, Factor)
    stored = {p.key: p for p in await stack.optimiser.store.points(oid)}
    assert len(stored) == len(serial) == 4
    for expected in serial:
        row = stored[expected.key]
        assert row.status is PointStatus.DONE and row.error is None
        assert row.metrics == expected.metrics and expected.metrics["trade_count"] > 0
