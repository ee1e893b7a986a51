"""Orders a strategy places from on_trade / on_order, outside on_bar, are kept and sent exactly when the backtest
engine fills them: an order placed while a session's fills come in joins the orders of that day's on_bar and goes
out in the next session; one placed after the day's bar was processed (a late event) goes out in the next order
window. They survive the runner taking a newer panel (the real clock, each bar) and a restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest

from services.strategy.book import Plan, TradeFill
from services.strategy.runner import InstanceRun
from services.strategy.trading import Placed
from shared.research.engine import load_bars, run_backtest
from shared.research.strategy import CrossSection, Strategy, StrategyContext
from shared.research.strategy.context import OrderEvent, TradeEvent
from tests.unit.strategy.test_runner_parity import (
    ACCOUNT,
    INSTANCE,
    FillingPath,
    MemoryBooks,
    _config,
    _engine_fills,
    _runner_fills,
)


class FollowsUp(Strategy):
    """Buys a lot of the first stock on the first bar; its fill (on_trade) places a buy of the second stock, and
    that order's end (on_order) a buy of one more lot of the first."""

    name = "follows_up"

    def on_init(self, ctx: StrategyContext) -> None:
        self.traded = 0
        self.heard = 0

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        if ctx.day_index == 0:
            ctx.buy(0, 100)

    def on_trade(self, ctx: StrategyContext, trade: TradeEvent) -> None:
        self.traded += 1
        if self.traded == 1:
            ctx.buy(1, 200)

    def on_order(self, ctx: StrategyContext, event: OrderEvent) -> None:
        self.heard += 1
        if self.heard == 2:  # the second order (the on_trade one) ended
            ctx.buy(0, 100)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from services.data.demo import generate_demo_market
    from shared.platform.settings import Settings

    daily = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    first = sorted(daily["ts_code"].unique())[:2]
    days = sorted(daily["trade_date"].unique())[:6]
    return daily[daily["ts_code"].isin(first) & daily["trade_date"].isin(days)]


def _engine(bars: pd.DataFrame) -> list[tuple[Any, ...]]:
    return _engine_fills(run_backtest(FollowsUp(), bars, _config(bars)))


def test_the_engine_fills_a_follow_up_order_in_the_session_after_the_fill(bars: pd.DataFrame) -> None:
    """What the runner must match: the first buy fills on day 1, the on_trade buy on day 2, the on_order one on
    day 3 (each placed during a day goes out the next)."""
    days = sorted(pd.to_datetime(bars["trade_date"]).dt.date.unique())
    codes = sorted(bars["ts_code"].unique())
    fills = _engine(bars)
    assert [(f[0], f[1], f[2], f[3]) for f in fills] == [
        (days[1].isoformat(), codes[0], "buy", 100),
        (days[2].isoformat(), codes[1], "buy", 200),
        (days[3].isoformat(), codes[0], "buy", 100),
    ]


def test_orders_placed_between_bars_survive_the_next_bar_on_the_real_clock(bars: pd.DataFrame) -> None:
    """The real clock: each bar the run takes a newer panel (`rebind`), then the bar's on_bar; each session's orders
    go out in its window. The orders on_trade and on_order placed in a session are sent in the next one."""

    async def go() -> FillingPath:
        config = _config(bars)
        panel = load_bars(bars, config)
        path = FillingPath()
        run = InstanceRun(INSTANCE, FollowsUp(), panel, config, path, MemoryBooks(), account_id=ACCOUNT)
        path.run = run
        await run.prepare()
        await run.close_bar(0)
        for t in range(1, len(panel.dates)):
            await path.open_session(panel.dates[t])
            await run.trade(run.book.panel_row(t))  # the session's window
            run.rebind(panel, config)  # the bar of day t arrives
            await run.close_bar(t)
        return path

    path = asyncio.run(go())
    assert _runner_fills(path.fills) == _engine(bars)


def test_orders_placed_between_bars_survive_a_restart(bars: pd.DataFrame) -> None:
    """The service restarts after a session whose fills placed orders, before that day's bar: the restarted run
    sends them in the session after that bar, as an uninterrupted run does."""

    async def go() -> FillingPath:
        config = _config(bars)
        panel = load_bars(bars, config)
        books = MemoryBooks()
        path = FillingPath()
        run = InstanceRun(INSTANCE, FollowsUp(), panel, config, path, books, account_id=ACCOUNT)
        path.run = run
        await run.prepare()
        await run.close_bar(0)
        await path.open_session(panel.dates[1])
        await run.trade(run.book.panel_row(1))  # the buy fills; on_trade places the follow-up; the book is stored
        again = InstanceRun(INSTANCE, FollowsUp(), panel, config, path, books, account_id=ACCOUNT)
        path.run = again
        await again.prepare()
        assert isinstance(again.strategy, FollowsUp)
        again.strategy.traded = again.strategy.heard = 1  # what `persist` variables would carry over
        await again.close_bar(1)
        for t in range(2, len(panel.dates)):
            await path.open_session(panel.dates[t])
            await again.trade(again.book.panel_row(t))
            await again.close_bar(t)
        return path

    path = asyncio.run(go())
    assert _runner_fills(path.fills) == _engine(bars)


class RestingPath(FillingPath):
    """Takes every order and fills it, but reports it as resting (submitted, nothing filled yet): the fill's event
    is the test's to deliver."""

    async def place(self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None) -> Placed:
        run, self.run = self.run, None
        self.run = _Deaf()  # type: ignore[assignment]
        try:
            placed = await super().place(plan, instance_id)
        finally:
            self.run = run
        order = self.by_cid[plan.client_order_id]
        order.update(status="submitted", filled_qty=0)
        return Placed(placed.order_id, "submitted", 0, None)

    async def trades(self, instance_id: str) -> list[TradeFill]:
        return []


class _Deaf:
    async def on_fill(self, fill: TradeFill) -> None:
        return None


def test_an_order_placed_after_the_bar_goes_out_in_the_next_window(bars: pd.DataFrame) -> None:
    """A fill whose event comes after the day's bar was processed (the order rested): the order its on_trade places
    is due in the very next session, not one later."""

    async def go() -> InstanceRun:
        config = _config(bars)
        panel = load_bars(bars, config)
        path = RestingPath()
        run = InstanceRun(INSTANCE, FollowsUp(), panel, config, path, MemoryBooks(), account_id=ACCOUNT)
        path.run = run
        await run.prepare()
        await run.close_bar(0)
        await path.open_session(panel.dates[1])
        await run.trade(run.book.panel_row(1))  # the buy rests at execution
        run.rebind(panel, config)
        await run.close_bar(1)  # the bar of day 1 comes before the fill's event
        assert run.book.pending == []
        await run.on_fill(path.fills[0])  # the event arrives: on_trade places the follow-up
        return run

    run = asyncio.run(go())
    codes = run.book.panel.codes
    assert [(codes[i.sym], i.amount) for i in run.book.pending] == [(codes[1], 200)]
