"""The record the runner keeps of each day an instance closes (cash, market value, equity, realised and unrealised
P&L, fees, turnover, positions), worked out by hand for a buy and a sell of one lot; the same record when a bar is
run again (a crash), on the real clock as in a replay; and the per-instance state and P&L metrics."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from services.strategy.book import DayClose
from services.strategy.lifecycle import State
from services.strategy.metrics import InstanceMetrics
from services.strategy.runner import InstanceRun
from shared.research.engine import load_bars
from shared.research.strategy import CrossSection, Strategy, StrategyContext
from tests.unit.strategy.test_runner_parity import ACCOUNT, INSTANCE, FillingPath, MemoryBooks, _config


class OneRoundTrip(Strategy):
    """Buys 100 shares of the first stock on the first bar and sells them on the third."""

    name = "one_round_trip"

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        if ctx.day_index == 0:
            ctx.buy(0, 100)
        elif ctx.day_index == 2:
            ctx.sell(0, 100)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from services.data.demo import generate_demo_market
    from shared.platform.settings import Settings

    daily = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    first = sorted(daily["ts_code"].unique())[:2]
    days = sorted(daily["trade_date"].unique())[:5]
    return daily[daily["ts_code"].isin(first) & daily["trade_date"].isin(days)]


def _days(books: MemoryBooks) -> list[DayClose]:
    return [books.days[k] for k in sorted(books.days)]


def test_the_demo_prices_the_figures_below_are_worked_from(bars: pd.DataFrame) -> None:
    stock = bars[bars["ts_code"] == "000212.SZ"].sort_values("trade_date")
    assert stock["trade_date"].tolist() == ["20230103", "20230104", "20230105", "20230106", "20230109"]
    assert stock["open"].tolist()[1:4] == [40.48, 39.07, 39.05]
    assert stock["close"].tolist()[1:4] == [39.66, 39.45, 39.66]


def _replay(bars: pd.DataFrame, books: MemoryBooks, *, again: int | None = None) -> None:
    async def go() -> None:
        config = _config(bars)
        path = FillingPath()
        run = InstanceRun(INSTANCE, OneRoundTrip(), load_bars(bars, config), config, path, books, account_id=ACCOUNT)
        path.run = run
        await run.prepare()
        for t in range(len(run.book.panel.dates)):
            await path.open_session(run.book.panel.dates[t])
            await run.session(t)
            if t == again:  # the bar is marked again (a restart runs it again): the same record, once
                await run.close_bar(t)

    asyncio.run(go())


EXPECTED = [
    # capital 1,000,000.00; nothing traded on the first day
    DayClose(date(2023, 1, 3), 100_000_000, 0, 0, 0, 0, 0, 0, 0, []),
    # bought 100 at the open 40.48 = 4,048.00; commission 5.00 (the minimum; 0.025% is 1.01), transfer fee
    # 0.001% = 0.04: cash 1,000,000.00 - 4,048.00 - 5.04 = 995,946.96; cost 4,053.04; close 39.66: market value
    # 3,966.00, unrealised 3,966.00 - 4,053.04 = -87.04; bought today: nothing sellable yet (T+1)
    DayClose(date(2023, 1, 4), 99_594_696, 396_600, 0, 0, -8_704, 504, 504, 404_800,
             [{"ts_code": "000212.SZ", "qty": 100, "sellable_qty": 0, "cost_fen": 405_304, "close_fen": 3_966,
               "market_value_fen": 396_600}]),
    # no trade; close 39.45: market value 3,945.00, unrealised -108.04; sellable now
    DayClose(date(2023, 1, 5), 99_594_696, 394_500, 0, 0, -10_804, 0, 504, 0,
             [{"ts_code": "000212.SZ", "qty": 100, "sellable_qty": 100, "cost_fen": 405_304, "close_fen": 3_945,
               "market_value_fen": 394_500}]),
    # sold 100 at the open 39.05 = 3,905.00; commission 5.00, stamp duty 0.1% = 3.905 -> 3.91 (half up), transfer
    # 0.04: fees 8.95; cash 995,946.96 + 3,905.00 - 8.95 = 999,843.01; realised 3,905.00 - 8.95 - 4,053.04 = -156.99
    DayClose(date(2023, 1, 6), 99_984_301, 0, -15_699, -15_699, 0, 895, 1_399, 390_500, []),
    DayClose(date(2023, 1, 9), 99_984_301, 0, -15_699, 0, 0, 0, 1_399, 0, []),
]  # fmt: skip


def test_each_closed_day_is_recorded_with_its_figures(bars: pd.DataFrame) -> None:
    books = MemoryBooks()
    _replay(bars, books)
    assert _days(books) == EXPECTED
    # equity = cash + market value: 1,000,000.00 less the fees 13.99 less the price lost 143.00
    assert [d.equity_fen for d in _days(books)][-1] == 100_000_000 - 1_399 - 14_300


def test_a_bar_marked_again_replaces_its_record(bars: pd.DataFrame) -> None:
    books = MemoryBooks()
    _replay(bars, books, again=1)
    assert _days(books) == EXPECTED
    assert books.day_writes == len(EXPECTED) + 1


def test_the_real_clock_records_each_bar_it_is_given(bars: pd.DataFrame) -> None:
    """On the real clock the session's orders go out in its window and the bar comes later (a new panel each time):
    the same records as the replay."""

    async def go() -> MemoryBooks:
        config = _config(bars)
        panel = load_bars(bars, config)
        books = MemoryBooks()
        path = FillingPath()
        run = InstanceRun(INSTANCE, OneRoundTrip(), panel, config, path, books, account_id=ACCOUNT)
        path.run = run
        await run.prepare()
        await run.close_bar(0)
        for t in range(1, len(panel.dates)):
            await path.open_session(panel.dates[t])
            await run.trade(run.book.panel_row(t))
            run.rebind(panel, config)
            await run.close_bar(t)
        return books

    assert _days(asyncio.run(go())) == EXPECTED


def test_each_instance_has_one_state_series_at_1_and_its_series_go_when_it_is_deleted() -> None:
    registry = CollectorRegistry()
    metrics = InstanceMetrics(registry)
    metrics.states({"a": State.RUNNING, "b": State.PAUSED})
    value = registry.get_sample_value
    assert [value("lh_strategy_instance_state", {"instance_id": "a", "state": s.value}) for s in State] == [
        1.0 if s is State.RUNNING else 0.0 for s in State
    ]
    metrics.states({"a": State.STOPPED})  # a stopped; b deleted
    assert value("lh_strategy_instance_state", {"instance_id": "a", "state": "stopped"}) == 1.0
    assert value("lh_strategy_instance_state", {"instance_id": "a", "state": "running"}) == 0.0
    assert all(value("lh_strategy_instance_state", {"instance_id": "b", "state": s.value}) is None for s in State)


def test_a_bars_report_sets_the_realised_and_unrealised_pnl() -> None:
    from services.strategy.live import RunSpec
    from services.strategy.reports import InstanceReports, RunMetrics
    from services.strategy.runner import BarReport

    class Store:
        async def emit(self, event: Any) -> None:
            return None

    registry = CollectorRegistry()
    reports = InstanceReports(Store(), RunMetrics(registry))  # type: ignore[arg-type]
    spec = RunSpec(INSTANCE, "one_round_trip", {}, "alice", "alice", 100_000_000, {}, {})
    report = BarReport(INSTANCE, date(2023, 1, 5), 0, 99_989_196, 0.01, 1, 0, -10_804)
    asyncio.run(reports.bar(spec, report))
    labels = {"instance_id": INSTANCE}
    assert registry.get_sample_value("lh_strategy_instance_realised_pnl_cny", labels) == 0.0
    assert registry.get_sample_value("lh_strategy_instance_unrealised_pnl_cny", labels) == -108.04
    assert registry.get_sample_value("lh_strategy_instance_pnl_cny", labels) == -108.04  # equity less capital
    reports.forget(INSTANCE)
    assert registry.get_sample_value("lh_strategy_instance_unrealised_pnl_cny", labels) is None
    assert registry.get_sample_value("lh_strategy_instance_realised_pnl_cny", labels) is None
