"""Paper trading on a replayed market, through the whole platform in one process (standalone, replay market clock):
a trader creates a strategy instance through the gateway and starts it with a replay of the demo market; every order
goes runner -> risk -> execution -> paper broker -> events -> runner. The fills execution records are, to the fen,
the fills `run_backtest` makes of the same strategy on the same bars (with the engine's corporate actions on:
execution and the sleeve book apply them to positions on the demo market's ex-dates as the engine does), and so is
the final equity."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from lianghua.standalone import build_app
from services.data.demo import generate_demo_market
from shared.core.market.calendar import sse_trading_days
from shared.core.market.matching import R_VOLUME_CAP
from shared.platform.settings import Mode, Settings
from shared.research.engine import BacktestConfig, run_backtest
from shared.research.strategy import discover_strategies
from tests.e2e.flow import Session, create_user, login

pytestmark = pytest.mark.e2e
BASE = "http://gateway.test"
CAPITAL = Decimal("1000000.00")


@pytest.fixture(scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[httpx.AsyncClient, Session]]:
    work: Path = tmp_path_factory.mktemp("paper-replay")
    password = secrets.token_urlsafe(12)
    settings = Settings(
        mode=Mode.STANDALONE,
        database_url=f"sqlite+aiosqlite:///{work}/{{service}}.db",
        admin_password=password,
        rate_limit_per_minute=1_000_000,
        market_clock="replay",
        # risk's limit on one order's value is not a rule the engine models: above the capital, it never binds
        max_order_value=CAPITAL * 10,
    )
    host = build_app(settings)
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as client:
            admin = await login(client, BASE, "admin", password)
            yield client, admin


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    # with daily_basic's fields, as the data service serves them to a strategy that reads them (factor)
    return generate_demo_market(Settings(_env_file=None)).bars_with_daily_basic()  # type: ignore[call-arg]


async def _all(client: httpx.AsyncClient, path: str, key: str, s: Session, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    query: dict[str, str] = {**params, "limit": "1000", "oldest_first": "true"}
    while True:
        page = await client.get(path, params=query, headers=s.headers)
        assert page.status_code == 200, page.text
        rows.extend(page.json())
        if len(page.json()) < 1000:
            return rows
        query = {**params, "limit": "1000", "after": rows[-1][key]}


def _fen(value: str) -> int:
    return int(Decimal(value) * 100)


SLOW = pytest.mark.parity  # a thousand orders and more: `make parity`


@pytest.mark.parametrize(
    "strategy",
    [
        "buy_and_hold",
        pytest.param("momentum", marks=SLOW),
        pytest.param("dual_ma", marks=SLOW),
        pytest.param("bollinger", marks=SLOW),
        pytest.param("factor", marks=SLOW),
        pytest.param("pairs", marks=SLOW),
    ],
)
async def test_a_paper_replay_fills_exactly_as_the_backtest(
    platform: tuple[httpx.AsyncClient, Session], demo: pd.DataFrame, strategy: str
) -> None:
    client, admin = platform
    username, password = await create_user(client, admin, "trader")
    trader = await login(client, BASE, username, password)
    codes = sorted(demo["ts_code"].unique())
    params = {"leg_a": codes[0], "leg_b": codes[1]} if strategy == "pairs" else {}
    created = await client.post(
        "/api/v1/strategy-instances",
        json={"strategy": strategy, "params": params, "universe": {"ts_codes": codes}, "capital": str(CAPITAL)},
        headers=trader.headers,
    )
    assert created.status_code == 201, created.text
    iid = created.json()["instance_id"]
    path = f"/api/v1/strategy-instances/{iid}"
    started = await client.post(
        f"{path}/start", json={"replay": {"start": "2023-01-03", "end": "2024-12-31"}}, headers=trader.headers
    )
    assert started.status_code == 200, started.text
    assert started.json()["state"] == "running"

    deadline = time.monotonic() + 600
    while True:
        state = (await client.get(path, headers=trader.headers)).json()
        if state["state"] != "running":
            break
        assert time.monotonic() < deadline, "the replay did not finish in 10 minutes"
        await asyncio.sleep(0.5)
    assert state["state"] == "stopped", state

    trades = await _all(client, "/api/v1/trades", "trade_id", trader, strategy_instance_id=iid)
    seen = [
        (t["traded_at"][:10], t["ts_code"], t["side"], t["qty"], _fen(t["price"]), _fen(t["commission"]),
         _fen(t["stamp_duty"]), _fen(t["transfer_fee"]))
        for t in trades
    ]  # fmt: skip

    days = sorted(pd.to_datetime(demo["trade_date"]).dt.date.unique())
    config = BacktestConfig(
        initial_cash=CAPITAL, corporate_actions=True, calendar=tuple(sse_trading_days(days[0], days[-1]))
    )
    expected = run_backtest(discover_strategies()[strategy](params), demo, config)
    t = expected.trades
    want = [
        (expected.dates[int(t["day"][k])], expected.codes[int(t["sym"][k])], "buy" if t["side"][k] > 0 else "sell",
         int(t["qty"][k]), int(t["price"][k]), int(t["commission"][k]), int(t["stamp_duty"][k]),
         int(t["transfer_fee"][k]))
        for k in range(len(t["qty"]))
    ]  # fmt: skip
    assert len(want) >= 10  # the strategy trades, so the comparison means something
    assert seen == want
    # execution adjusted the instance's part of the account on the ex-dates as the engine adjusted its portfolio (every
    # example strategy holds a stock through one of the demo market's ex-dates: 1 for pairs to 24 for buy_and_hold)
    assert expected.corporate_actions
    adjusted = (await client.get("/api/v1/positions/adjustments", params={"strategy_instance_id": iid},
                                 headers=trader.headers)).json()  # fmt: skip
    assert [(a["ex_date"], a["ts_code"], a["qty_before"], a["qty_after"], a["cash_in_lieu"]) for a in adjusted] == [
        (c["trade_date"], c["ts_code"], c["qty_before"], c["qty_after"], c["cash_in_lieu"])
        for c in expected.corporate_actions
    ]

    performance = (await client.get(f"{path}/performance", headers=trader.headers)).json()
    final = performance["equity_curve"][-1]
    assert _fen(final["equity"]) == int(expected.cash_fen[-1] + expected.market_value_fen[-1])
    assert performance["days"] == len(expected.dates)
    sleeve = (await client.get(f"{path}/sleeve", headers=trader.headers)).json()
    assert _fen(sleeve["cash"]) == int(expected.cash_fen[-1])
    # each day's stored record: the engine's cash and equity of that day, to the fen
    recorded = (await client.get(f"{path}/days", headers=trader.headers)).json()
    assert [(d["trade_date"], _fen(d["cash"]), _fen(d["equity"])) for d in recorded] == [
        (str(day), int(cash), int(cash + mv))
        for day, cash, mv in zip(expected.dates, expected.cash_fen, expected.market_value_fen, strict=True)
    ]


# An instance's own fill rules (its cost model) reach the paper broker with each of its orders: with rules other than
# the platform's (the close, a volume cap), the replay still fills as run_backtest does with the same config.
OWN_RULES = {"fill_price": "close", "volume_cap": "0.0005"}


@SLOW
async def test_an_instance_with_its_own_fill_rules_fills_exactly_as_the_backtest_with_them(
    platform: tuple[httpx.AsyncClient, Session], demo: pd.DataFrame
) -> None:
    client, admin = platform
    username, password = await create_user(client, admin, "trader")
    trader = await login(client, BASE, username, password)
    codes = sorted(demo["ts_code"].unique())[:4]  # a few symbols: cheap enough for `make test`
    created = await client.post(
        "/api/v1/strategy-instances",
        json={"strategy": "momentum", "universe": {"ts_codes": codes}, "capital": str(CAPITAL), "costs": OWN_RULES},
        headers=trader.headers,
    )
    assert created.status_code == 201, created.text
    iid = created.json()["instance_id"]
    path = f"/api/v1/strategy-instances/{iid}"
    started = await client.post(
        f"{path}/start", json={"replay": {"start": "2023-01-03", "end": "2024-12-31"}}, headers=trader.headers
    )
    assert started.status_code == 200, started.text
    deadline = time.monotonic() + 600
    while (state := (await client.get(path, headers=trader.headers)).json())["state"] == "running":
        assert time.monotonic() < deadline, "the replay did not finish in 10 minutes"
        await asyncio.sleep(0.5)
    assert state["state"] == "stopped", state

    orders = await _all(client, "/api/v1/orders", "order_id", trader, strategy_instance_id=iid)
    assert {o["paper_fill"]["fill_price"] for o in orders} == {"close"}
    trades = await _all(client, "/api/v1/trades", "trade_id", trader, strategy_instance_id=iid)
    seen = [
        (t["traded_at"][:10], t["traded_at"][11:16], t["ts_code"], t["side"], t["qty"], _fen(t["price"]),
         _fen(t["commission"]), _fen(t["stamp_duty"]), _fen(t["transfer_fee"]))
        for t in trades
    ]  # fmt: skip

    bars = demo[demo["ts_code"].isin(codes)]
    days = sorted(pd.to_datetime(demo["trade_date"]).dt.date.unique())
    config = BacktestConfig(
        initial_cash=CAPITAL,
        corporate_actions=True,
        calendar=tuple(sse_trading_days(days[0], days[-1])),
        fill_price="close",
        volume_cap=Decimal(OWN_RULES["volume_cap"]),
    )
    expected = run_backtest(discover_strategies()["momentum"](), bars, config)
    t = expected.trades
    want = [
        (expected.dates[int(t["day"][k])], "07:00", expected.codes[int(t["sym"][k])],  # 15:00 Asia/Shanghai: a close
         "buy" if t["side"][k] > 0 else "sell", int(t["qty"][k]), int(t["price"][k]), int(t["commission"][k]),
         int(t["stamp_duty"][k]), int(t["transfer_fee"][k]))
        for k in range(len(t["qty"]))
    ]  # fmt: skip
    assert len(want) >= 10
    assert seen == want
    # the cap bound: the backtest cut orders to their share of the bar's volume (28 of them), and the replay's fills
    # are those cut ones (the runner sizes an order within the cap as the engine does; the broker's cap, the same,
    # then leaves it whole)
    assert int((expected.orders["reason"] == R_VOLUME_CAP).sum()) >= 10
    assert {o["status"] for o in orders} == {"filled"}
    performance = (await client.get(f"{path}/performance", headers=trader.headers)).json()
    final = performance["equity_curve"][-1]
    assert _fen(final["equity"]) == int(expected.cash_fen[-1] + expected.market_value_fen[-1])


class FlakyExecution(httpx.AsyncBaseTransport):
    """Execution's transport as risk reaches it, failing every `every`-th submission request — a single order
    (`POST /v1/orders`) or a batch's (`POST /v1/order-submissions`: a round's orders) — alternately before it reaches
    execution (the connection fails) and after execution stored the orders (the answer is lost)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, every: int) -> None:
        self.inner = inner
        self.every = every
        self.submissions = 0
        self.lost_requests = 0
        self.lost_answers = 0
        self.lost_batches = 0  # of those, a batch's (requests and answers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path in ("/v1/orders", "/v1/order-submissions"):
            self.submissions += 1
            if self.submissions % self.every == 0:
                self.lost_batches += request.url.path == "/v1/order-submissions"
                if (self.submissions // self.every) % 2:
                    self.lost_requests += 1
                    raise httpx.ConnectError("execution is down", request=request)
                response = await self.inner.handle_async_request(request)
                await response.aread()
                self.lost_answers += 1
                raise httpx.ReadError("the answer was lost", request=request)
        return await self.inner.handle_async_request(request)


@SLOW  # two years of replay with failures injected: `make parity` (CI runs it)
async def test_orders_the_path_drops_are_sent_again_and_placed_once(tmp_path: Path, demo: pd.DataFrame) -> None:
    """Execution unreachable for some submissions, and its answer lost for others: the runner sends each such order
    again with the same client_order_id until it is accepted, and execution ends with each order once; the fills are
    still the backtest's."""
    password = secrets.token_urlsafe(12)
    settings = Settings(
        mode=Mode.STANDALONE,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db",
        admin_password=password,
        rate_limit_per_minute=1_000_000,
        market_clock="replay",
        max_order_value=CAPITAL * 10,
    )
    host = build_app(settings)
    transports = host.state.infra.services.transports
    flaky = FlakyExecution(transports["execution"], every=7)
    transports["execution"] = flaky
    transport = httpx.ASGITransport(app=host)
    async with (
        host.router.lifespan_context(host),
        httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as client,
    ):
        admin = await login(client, BASE, "admin", password)
        username, user_password = await create_user(client, admin, "trader")
        trader = await login(client, BASE, username, user_password)
        codes = sorted(demo["ts_code"].unique())
        created = await client.post(
            "/api/v1/strategy-instances",
            json={"strategy": "momentum", "universe": {"ts_codes": codes}, "capital": str(CAPITAL)},
            headers=trader.headers,
        )
        iid = created.json()["instance_id"]
        path = f"/api/v1/strategy-instances/{iid}"
        started = await client.post(
            f"{path}/start", json={"replay": {"start": "2023-01-03", "end": "2024-12-31"}}, headers=trader.headers
        )
        assert started.status_code == 200, started.text
        deadline = time.monotonic() + 600
        while (state := (await client.get(path, headers=trader.headers)).json())["state"] == "running":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)
        assert state["state"] == "stopped", state["error"]
        orders = await _all(client, "/api/v1/orders", "order_id", trader, strategy_instance_id=iid)
        trades = await _all(client, "/api/v1/trades", "trade_id", trader, strategy_instance_id=iid)

    assert flaky.lost_requests >= 5 and flaky.lost_answers >= 5
    assert flaky.lost_batches >= 5  # a round's orders go in batches: whole batches lost, their orders sent again
    ids = [o["client_order_id"] for o in orders]
    assert len(ids) == len(set(ids)), "an order was placed twice"
    assert {o["status"] for o in orders} == {"filled"}, "an order was left in another state"
    days = sorted(pd.to_datetime(demo["trade_date"]).dt.date.unique())
    config = BacktestConfig(
        initial_cash=CAPITAL, corporate_actions=True, calendar=tuple(sse_trading_days(days[0], days[-1]))
    )
    expected = run_backtest(discover_strategies()["momentum"](), demo, config)
    assert len(orders) == len(trades) == len(expected.trades["qty"])
    assert [(t["ts_code"], t["qty"], _fen(t["price"])) for t in trades] == [
        (expected.codes[int(s)], int(q), int(p))
        for s, q, p in zip(expected.trades["sym"], expected.trades["qty"], expected.trades["price"], strict=True)
    ]
