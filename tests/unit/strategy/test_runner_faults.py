"""The runner when the order path misbehaves: risk refuses an order (on_order hears `rejected` with risk's reasons and
the instance carries on), the path stays down for the whole order window (the order is dropped and reported, never
left unknown), the fill events never come (execution's listing has the fills), a strategy raises (that instance
fails; nothing more is sent), execution dies part-way through a real-clock session (the next tick sends the rest, each
order once, and the bar report counts them all). And the service's stop cancels what execution still holds open for
the instance."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pandas as pd
import pytest

from services.strategy.book import Intent, Plan, TradeFill
from services.strategy.runner import InstanceFailed, InstanceRun
from services.strategy.trading import PathUnavailable, Placed, Refused
from shared.core.market.matching import KIND_SHARES
from shared.research.engine import load_bars
from shared.research.strategy import CrossSection, Strategy, StrategyContext
from shared.research.strategy.context import OrderEvent
from tests.unit.strategy.test_runner_parity import ACCOUNT, INSTANCE, FillingPath, MemoryBooks, _config


class BuyEveryDay(Strategy):
    """Buys one lot of the first symbol on every bar and records what on_order tells it."""

    name = "buy_every_day"

    def on_init(self, ctx: StrategyContext) -> None:
        self.heard: list[OrderEvent] = []

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        ctx.buy(0, 100)

    def on_order(self, ctx: StrategyContext, event: OrderEvent) -> None:
        self.heard.append(event)


class RaisesOnThirdBar(BuyEveryDay):
    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        if ctx.day_index == 2:
            raise RuntimeError("bad data")
        super().on_bar(ctx, bar)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from services.data.demo import generate_demo_market
    from shared.platform.settings import Settings

    daily = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    first = sorted(daily["ts_code"].unique())[:2]
    days = sorted(daily["trade_date"].unique())[:6]
    return daily[daily["ts_code"].isin(first) & daily["trade_date"].isin(days)]


def _run(strategy: Strategy, bars: pd.DataFrame, path: Any, **kw: Any) -> InstanceRun:
    config = _config(bars)
    return InstanceRun(
        INSTANCE, strategy, load_bars(bars, config), config, path, MemoryBooks(), account_id=ACCOUNT, **kw
    )


class RefusingPath(FillingPath):
    """Risk refuses every other order with its reasons."""

    async def place(
        self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None
    ) -> Placed | Refused:  # type: ignore[override]
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls % 2 == 0:
            return Refused(
                "order_rejected", "insufficient_strategy_cash: the sleeve has 10.00, the order needs 1,005.10"
            )
        return await super().place(plan, instance_id)


def test_an_order_risk_refuses_is_heard_as_rejected_and_the_instance_carries_on(bars: pd.DataFrame) -> None:
    async def go() -> tuple[BuyEveryDay, FillingPath]:
        path = RefusingPath()
        strategy = BuyEveryDay()
        run = _run(strategy, bars, path)
        path.run = run
        await run.prepare()
        for t in range(len(run.book.panel.dates)):
            await path.open_session(run.book.panel.dates[t])
            await run.session(t)
        return strategy, path

    strategy, path = asyncio.run(go())
    statuses = [(e.status, e.reason.split(":")[0]) for e in strategy.heard]
    # bars 0..4 place an order each, filled on the next day: 1 filled, 2 rejected by risk, 3 filled, ...
    assert statuses == [("filled", ""), ("rejected", "order_rejected"), ("filled", ""), ("rejected", "order_rejected"),
                        ("filled", "")]  # fmt: skip
    assert "insufficient_strategy_cash" in strategy.heard[1].reason
    assert len(path.fills) == 3


class DownPath(FillingPath):
    async def place(
        self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None
    ) -> Placed | Refused:  # type: ignore[override]
        self.tries = getattr(self, "tries", 0) + 1
        raise PathUnavailable("execution_unavailable: the execution service did not answer")


def test_an_order_the_path_never_takes_is_dropped_when_its_window_closes(bars: pd.DataFrame) -> None:
    async def go() -> tuple[BuyEveryDay, DownPath, InstanceRun]:
        path = DownPath()
        strategy = BuyEveryDay()
        run = _run(strategy, bars, path, order_window_s=0.3)
        path.run = run
        await run.prepare()
        await run.session(0)
        await run.session(1)
        return strategy, path, run

    strategy, path, run = asyncio.run(go())
    assert path.tries >= 3  # sent again (same client_order_id) while the window was open
    assert [(e.status, e.reason.split(":")[0]) for e in strategy.heard] == [("rejected", "order_window_closed")]
    # the dropped order is settled (nothing left unknown); only bar 1's order waits, for the next session
    assert run.sent == {}
    assert [i.bar for i in run.book.pending] == [run.book.panel.dates[1].strftime("%Y%m%d")]


class SilentPath(FillingPath):
    """Fills, but the trade.executed events never arrive (the bus is down): only execution's listing has them."""

    async def place(
        self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None
    ) -> Placed | Refused:  # type: ignore[override]
        run, self.run = self.run, None
        try:
            self.run = _NoEvents()  # type: ignore[assignment]
            return await super().place(plan, instance_id)
        finally:
            self.run = run


class _NoEvents:
    async def on_fill(self, fill: TradeFill) -> None:
        return None


def test_fills_whose_events_never_come_are_read_from_executions_listing(bars: pd.DataFrame) -> None:
    async def go() -> InstanceRun:
        path = SilentPath()
        run = _run(BuyEveryDay(), bars, path, fill_wait_s=0.05)
        path.run = run
        await run.prepare()
        for t in range(3):
            await run.session(t)
        return run

    run = asyncio.run(go())
    assert int(run.book.positions[0]) == 200  # bars 0 and 1's buys, filled on days 1 and 2
    assert len(run.book.applied_trades) == 2


def test_a_strategy_that_raises_fails_its_instance_and_sends_nothing_more(bars: pd.DataFrame) -> None:
    async def go() -> tuple[FillingPath, InstanceRun]:
        path = FillingPath()
        run = _run(RaisesOnThirdBar(), bars, path)
        path.run = run
        await run.prepare()
        with pytest.raises(InstanceFailed) as failed:
            for t in range(len(run.book.panel.dates)):
                await run.session(t)
        assert "RuntimeError: bad data" in failed.value.trace
        return path, run

    path, run = asyncio.run(go())
    assert path.placed == 2 and run.failed is not None


async def test_stop_cancels_what_execution_holds_open_for_the_instance() -> None:
    from services.strategy.live import Runner

    class OpenOrders(FillingPath):
        def __init__(self) -> None:
            super().__init__()
            self.cancelled: list[str] = []

        async def orders(self, instance_id: str) -> list[dict[str, Any]]:
            return [
                {"order_id": "o1", "client_order_id": "a", "status": "submitted"},
                {"order_id": "o2", "client_order_id": "b", "status": "filled"},
                {"order_id": "o3", "client_order_id": "c", "status": "partially_filled"},
                {"order_id": "o4", "client_order_id": "d", "status": "accepted"},
            ]

        async def cancel(self, order_id: str) -> None:
            self.cancelled.append(order_id)

    path = OpenOrders()
    forgotten: list[str] = []

    class Events:
        def forget(self, instance_id: str) -> None:
            forgotten.append(instance_id)

    runner = Runner(strategies={}, market=lambda: None, path=path, books=MemoryBooks(), sessions=None,
                    events=Events())  # type: ignore[arg-type]  # fmt: skip
    await runner.stop(INSTANCE, cancel_open_orders=False)
    assert path.cancelled == []
    await runner.stop(INSTANCE, cancel_open_orders=True)
    assert path.cancelled == ["o1", "o3", "o4"]
    assert forgotten == [INSTANCE, INSTANCE]  # its series leave the metrics


def test_a_stopped_instances_series_leave_the_metrics() -> None:
    from prometheus_client import CollectorRegistry

    from services.strategy.live import RunSpec
    from services.strategy.reports import InstanceReports, RunMetrics
    from services.strategy.runner import BarReport

    class Store:
        async def emit(self, event: Any) -> None:
            return None

    registry = CollectorRegistry()
    reports = InstanceReports(Store(), RunMetrics(registry))  # type: ignore[arg-type]
    spec = RunSpec(INSTANCE, "dual_ma", {}, "alice", "alice", 100_000_00, {}, {})
    asyncio.run(reports.bar(spec, BarReport(INSTANCE, date(2024, 3, 4), 2, 100_123_45, 0.01, fills=2)))
    labels = {"instance_id": INSTANCE}
    assert registry.get_sample_value("lh_strategy_instance_equity_cny", labels) == 100_123.45
    assert registry.get_sample_value("lh_strategy_instance_pnl_cny", labels) == 123.45
    assert registry.get_sample_value("lh_strategy_instance_fills", labels) == 2
    reports.forget(INSTANCE)
    assert registry.get_sample_value("lh_strategy_instance_equity_cny", labels) is None
    assert registry.get_sample_value("lh_strategy_instance_fills", labels) is None


class RestingPath(FillingPath):
    """Takes orders without filling them (they rest); later the test fills and ends one at the broker without any
    event reaching the runner."""

    def __init__(self) -> None:
        super().__init__()
        self.held: dict[str, dict[str, Any]] = {}

    async def place(
        self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None
    ) -> Placed | Refused:  # type: ignore[override]
        self.held[plan.client_order_id] = {
            "order_id": f"o{len(self.held)}", "client_order_id": plan.client_order_id, "ts_code": plan.ts_code,
            "side": plan.side, "qty": plan.qty, "price": str(plan.price_fen / 100), "status": "submitted",
            "filled_qty": 0, "reason": None,
        }  # fmt: skip
        return Placed(f"o{len(self.held) - 1}", "submitted", 0, None)

    async def orders(self, instance_id: str) -> list[dict[str, Any]]:
        self.reads = getattr(self, "reads", 0) + 1
        return list(self.held.values())


def test_an_order_whose_end_was_never_heard_is_settled_from_executions_record(bars: pd.DataFrame) -> None:
    from services.strategy.live import Runner

    async def go() -> tuple[BuyEveryDay, InstanceRun, int, int]:
        path = RestingPath()
        strategy = BuyEveryDay()
        run = _run(strategy, bars, path, fill_wait_s=0.01)
        path.run = run
        await run.prepare()
        await run.session(0)
        await run.session(1)  # bar 0's buy is sent on day 1 and rests
        [(cid, plan)] = run.sent.items()
        reserved = run.sleeve()["cash_fen"] - run.sleeve()["cash_available_fen"]
        # at the broker it fills and ends; neither the trade.executed nor the order.filled event arrives
        order = path.held[cid]
        order.update(status="filled", filled_qty=plan.qty)
        path.fills.append(TradeFill("t-late", cid, plan.ts_code, "buy", plan.qty, plan.price_fen, 500, 0, 1,
                                    run.book.panel.dates[1]))  # fmt: skip
        runner = Runner(strategies={}, market=lambda: None, path=path, books=MemoryBooks(), sessions=None,
                        events=None)  # type: ignore[arg-type]  # fmt: skip
        runner.runs[INSTANCE] = run
        await runner.tick()
        await runner.tick()  # within RECONCILE_S: no second read
        return strategy, run, reserved, path.reads

    strategy, run, reserved, reads = asyncio.run(go())
    assert reads == 1
    assert reserved > 0  # while it rested, its cash was reserved in the sleeve
    assert run.sent == {}
    assert [(e.status, e.filled_qty) for e in strategy.heard] == [("filled", 100)]
    assert int(run.book.positions[0]) == 100
    assert run.sleeve()["cash_available_fen"] == run.sleeve()["cash_fen"]


class BuysBothAtTheStart(BuyEveryDay):
    """Buys a lot of each of its two symbols at its first session, nothing after."""

    def on_init(self, ctx: StrategyContext) -> None:
        super().on_init(ctx)
        ctx.buy(0, 100)
        ctx.buy(1, 100)

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        return None


class DiesAfterItsFirstAnswer(FillingPath):
    """Execution takes the first order (filled) and is killed before its trade event goes out: from then on, until it
    is `back`, nothing reaches it, nor its listings."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.died = False

    async def place(
        self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None
    ) -> Placed | Refused:  # type: ignore[override]
        if self.died:
            return await super().place(plan, instance_id)
        if self.down:
            raise PathUnavailable("execution_unavailable: the execution service did not answer")
        run, self.run = self.run, _NoEvents()  # type: ignore[assignment]
        try:
            answer = await super().place(plan, instance_id)
        finally:
            self.run = run
        self.down = self.died = True
        return answer

    async def trades(self, instance_id: str) -> list[TradeFill]:
        if self.down:
            raise PathUnavailable("execution did not answer")
        return await super().trades(instance_id)

    async def orders(self, instance_id: str) -> list[dict[str, Any]]:
        if self.down:
            raise PathUnavailable("execution did not answer")
        return await super().orders(instance_id)


def test_execution_dying_mid_session_each_order_is_sent_once_and_counted_once(bars: pd.DataFrame) -> None:
    """Real clock: the session's orders stop at an order whose fill cannot be read (execution died after answering);
    the next tick sends the rest, the same ids. The orders sent before the failure still count in the bar report."""
    from datetime import UTC, datetime, timedelta

    from services.strategy.live import Runner

    async def go() -> tuple[DiesAfterItsFirstAnswer, InstanceRun, list[int]]:
        path = DiesAfterItsFirstAnswer()
        run = _run(BuysBothAtTheStart(), bars, path, fill_wait_s=0.01)
        path.run = run
        await run.prepare()
        book = run.book  # a real-clock start (go_live): the history is the warm-up
        book.t = len(book.panel.dates) - 1
        book.open_session(book.panel.dates[-1])
        book.bar_done = True
        runner = Runner(strategies={}, market=lambda: None, path=path, books=MemoryBooks(), sessions=None,
                        events=None)  # type: ignore[arg-type]  # fmt: skip
        runner.runs[INSTANCE] = run
        runner.locks[INSTANCE] = asyncio.Lock()
        session, closes = date(2030, 1, 2), datetime.now(UTC) + timedelta(hours=1)
        counted = []
        await runner._guarded(INSTANCE, runner._send_session(INSTANCE, run, session, closes), "send orders")
        counted.append(runner.sent_orders.get(INSTANCE, 0))
        path.down = False  # execution is back: the next tick sends what was not sent
        await runner._guarded(INSTANCE, runner._send_session(INSTANCE, run, session, closes), "send orders")
        counted.append(runner.sent_orders.get(INSTANCE, 0))
        await run.reconcile()  # the first order's fill, from execution's listing
        return path, run, counted

    path, run, counted = asyncio.run(go())
    assert sorted(path.by_cid) == [f"{INSTANCE}-init-0", f"{INSTANCE}-init-1"]
    assert path.placed == 2  # each once
    assert counted == [1, 2]  # the bar report counts the order sent before the failure
    assert run.book.sent_session == date(2030, 1, 2) and run.book.pending == []
    assert [int(q) for q in run.book.positions] == [100, 100] and run.sent == {}


def test_the_sleeve_does_not_offer_the_shares_its_resting_sells_already_sell(bars: pd.DataFrame) -> None:
    async def go() -> tuple[InstanceRun, str]:
        strategy = BuyEveryDay()
        run = _run(strategy, bars, FillingPath(), fill_wait_s=0.01)
        run.path.run = run  # type: ignore[attr-defined]
        await run.prepare()
        for t in range(4):  # a lot bought on each of days 1-3 (each bar's buy fills at the next session)
            await run.session(t)
        code = run.book.panel.codes[0]
        # a sell of 200 of them rests at the broker (sent, not filled)
        sell = Plan(Intent(-1, 0, KIND_SHARES, 200, "x", 0), f"{INSTANCE}-x-0", code, "sell", 200, 1000, 0)
        run.sent[sell.client_order_id] = sell
        return run, code

    run, code = asyncio.run(go())
    [held] = run.book.holdings(code)
    assert held["sellable_qty"] == 300  # three lots, the newest bought on an earlier session than today's
    [offered] = run.sleeve(ts_code=code)["positions"]
    assert (offered["qty"], offered["sellable_qty"]) == (300, 100)  # 300 sellable less the 200 the sell rests for
    # the resting sell itself, asked about, still sees them (its own check)
    [own] = run.sleeve(client_order_id=f"{INSTANCE}-x-0", ts_code=code)["positions"]
    assert own["sellable_qty"] == 300


def test_the_sleeve_answers_the_sellable_shares_of_the_session_the_order_is_for(bars: pd.DataFrame) -> None:
    """On the real clock an order placed after a session's close is for the next session: the shares the sleeve
    bought in its own session are sellable in that one (T+1), not in its own."""

    async def go() -> InstanceRun:
        run = _run(BuyEveryDay(), bars, FillingPath(), fill_wait_s=0.01)
        await run.prepare()
        run.book.begin_day(2)
        return run

    run = asyncio.run(go())
    book = run.book
    code = book.panel.codes[1]
    day, before, after = book.panel.dates[2], book.panel.dates[1], book.panel.dates[3]
    # 300 bought on the session before the book's, 200 in the book's own session
    for trade_id, qty, on in (("t-1", 300, before), ("t-2", 200, day)):
        assert book.apply(TradeFill(trade_id, f"{INSTANCE}-b-{trade_id}", code, "buy", qty, 1000, 500, 0, 2, on))
    assert book.session_day == day
    [own] = run.sleeve(ts_code=code)["positions"]
    assert (own["qty"], own["sellable_qty"]) == (500, 300)  # in the book's session: the 200 bought in it are not
    [same] = run.sleeve(ts_code=code, session=day)["positions"]
    assert same["sellable_qty"] == 300
    [next_session] = run.sleeve(ts_code=code, session=after)["positions"]
    assert (next_session["qty"], next_session["sellable_qty"]) == (500, 500)  # all of them, the next session
