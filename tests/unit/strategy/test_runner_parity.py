"""The runner against a fake order path that fills every order at its limit price with fees from
shared.core.market.rules.trade_fees (the Decimal route execution uses, not the engine's integer one): a paper replay
of each example strategy over the demo market makes the same fills, to the fen, as run_backtest of the same days;
a redelivered fill changes nothing; a run restarted mid-replay from its stored book carries on to the same end. The
engine's corporate actions are on: the book applies the same ones on the demo market's ex-dates."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from services.data.demo import generate_demo_market
from services.risk.checks import OrderIntent, Sleeve, sleeve_checks, sleeve_state_checks
from services.risk.schemas import CarriedSleeve
from services.strategy.book import DayClose, Plan, TradeFill
from services.strategy.runner import InstanceRun, replay
from services.strategy.trading import Placed
from shared.core.domain import OrderSide, OrderType, from_fen
from shared.core.market.orders import Holding
from shared.core.market.rules import trade_fees
from shared.platform.settings import Settings
from shared.research.engine import BacktestConfig, load_bars, run_backtest
from shared.research.strategy import discover_strategies

INSTANCE = "0" * 31 + "1"
ACCOUNT = "acct-runner"


class MemoryBooks:
    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}
        self.days: dict[tuple[str, date], DayClose] = {}  # the days' table: one record per instance and day
        self.day_writes = 0

    async def load_book(self, instance_id: str) -> dict[str, Any] | None:
        return self.saved.get(instance_id)

    async def save_book(
        self, instance_id: str, bar_date: date | None, book: dict[str, Any], day: DayClose | None = None
    ) -> None:
        import json

        self.saved[instance_id] = json.loads(json.dumps(book))  # what a JSON column would give back
        if day is not None:
            self.days[(instance_id, day.trade_date)] = day
            self.day_writes += 1


class Crash(BaseException):
    """The strategy service's process dies (nothing after it runs)."""


class FillingPath:
    """Fills every order in full at its limit price, on the replayed session; keeps what a broker would."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.crash_at = crash_at
        self.run: InstanceRun | None = None
        self.session = date(1970, 1, 1)
        self.by_cid: dict[str, dict[str, Any]] = {}
        self.fills: list[TradeFill] = []
        self.placed = 0
        self.sleeves: list[CarriedSleeve] = []  # the sleeve each order carried, as risk reads it
        self.carried: list[tuple[Plan, CarriedSleeve, date]] = []  # with its order and the session it was sent in

    async def open_session(self, day: date, *, rewind: bool = False) -> None:
        self.session = day

    async def place(self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None) -> Placed:
        if sleeve is not None:  # what risk would get: its request model reads it, and it is for this order
            carried = CarriedSleeve.model_validate(sleeve)
            assert (carried.instance_id, carried.account_id) == (instance_id, ACCOUNT)
            assert carried.position is None or carried.position.ts_code == plan.ts_code
            self.sleeves.append(carried)
            self.carried.append((plan, carried, self.session))
        if plan.client_order_id in self.by_cid:  # a retried client_order_id: the same order, never a new one
            o = self.by_cid[plan.client_order_id]
            return Placed(o["order_id"], o["status"], o["filled_qty"], None)
        self.placed += 1
        amount = from_fen(plan.qty * plan.price_fen)
        fees = trade_fees(amount, is_sell=plan.side == "sell", trade_date=self.session)
        fill = TradeFill(
            trade_id=f"t{len(self.fills)}",
            client_order_id=plan.client_order_id,
            ts_code=plan.ts_code,
            side=plan.side,
            qty=plan.qty,
            price_fen=plan.price_fen,
            commission_fen=int(fees.commission * 100),
            stamp_duty_fen=int(fees.stamp_duty * 100),
            transfer_fee_fen=int(fees.transfer_fee * 100),
            trade_date=self.session,
        )
        self.fills.append(fill)
        order = {
            "order_id": f"o{self.placed}",
            "client_order_id": plan.client_order_id,
            "ts_code": plan.ts_code,
            "side": plan.side,
            "qty": plan.qty,
            "price": str(Decimal(plan.price_fen) / 100),
            "status": "filled",
            "filled_qty": plan.qty,
        }
        self.by_cid[plan.client_order_id] = order
        if self.placed == self.crash_at:
            raise Crash  # execution holds the order and its fill; the runner never hears the answer
        assert self.run is not None
        await self.run.on_fill(fill)  # the trade.executed event
        await self.run.on_fill(fill)  # ... delivered twice
        return Placed(order["order_id"], "filled", plan.qty, None)

    async def orders(self, instance_id: str) -> list[dict[str, Any]]:
        return list(self.by_cid.values())

    async def trades(self, instance_id: str) -> list[TradeFill]:
        return list(self.fills)

    async def cancel(self, order_id: str) -> None:
        raise AssertionError("nothing rests on this path")


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    # the bars with daily_basic's fields merged in (the factor example ranks on pe_ttm and pb)
    return generate_demo_market(Settings(_env_file=None)).bars_with_daily_basic()  # type: ignore[call-arg]


def _params(name: str, frame: pd.DataFrame) -> dict[str, Any]:
    if name != "pairs":
        return {}
    codes = sorted(frame["ts_code"].unique())
    return {"leg_a": codes[0], "leg_b": codes[1]}


def _config(frame: pd.DataFrame) -> BacktestConfig:
    days = sorted(pd.to_datetime(frame["trade_date"]).dt.date.unique())
    # corporate actions on (the engine's default): the demo market's ex-dates adjust held positions in both
    return BacktestConfig(initial_cash=Decimal("1000000"), corporate_actions=True, calendar=tuple(days))


def _engine_fills(result: Any) -> list[tuple[Any, ...]]:
    t = result.trades
    return [
        (result.dates[int(t["day"][k])], result.codes[int(t["sym"][k])], "buy" if t["side"][k] > 0 else "sell",
         int(t["qty"][k]), int(t["price"][k]), int(t["commission"][k]), int(t["stamp_duty"][k]),
         int(t["transfer_fee"][k]))
        for k in range(len(t["qty"]))
    ]  # fmt: skip


def _sleeve_reasons(plan: Plan, carried: CarriedSleeve, session: date) -> list[str]:
    """Risk's checks of an instance's order against the sleeve it carried (services/risk/checks.py)."""
    position = carried.position
    held = [] if position is None else [Holding(ts_code=position.ts_code, qty=position.qty,
                                                sellable_qty=position.sellable_qty)]  # fmt: skip
    sleeve = Sleeve(instance_id=carried.instance_id, account_id=carried.account_id, state=carried.state,
                    cash_available=carried.cash_available, positions=held)  # fmt: skip
    side = OrderSide.BUY if plan.side == "buy" else OrderSide.SELL
    intent = OrderIntent(plan.ts_code, side, OrderType.LIMIT, plan.qty, from_fen(plan.price_fen))
    reasons = sleeve_state_checks(sleeve) + sleeve_checks(intent, None, sleeve, trade_date=session)
    return [f"{plan.client_order_id}: {r.code}: {r.message}" for r in reasons]


def _runner_fills(fills: list[TradeFill]) -> list[tuple[Any, ...]]:
    return [
        (f.trade_date.isoformat(), f.ts_code, f.side, f.qty, f.price_fen, f.commission_fen, f.stamp_duty_fen,
         f.transfer_fee_fen)
        for f in fills
    ]  # fmt: skip


async def _replay(
    strategy_cls: Any,
    frame: pd.DataFrame,
    config: BacktestConfig,
    *,
    stop_after: int | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[InstanceRun, FillingPath]:
    panel = load_bars(frame, config)
    books = MemoryBooks()
    path = FillingPath()
    run = InstanceRun(INSTANCE, strategy_cls(params or {}), panel, config, path, books, account_id=ACCOUNT)
    path.run = run
    await run.prepare()
    if stop_after is None:
        await replay(run, path.open_session)
        return run, path
    stop = asyncio.Event()
    days = 0

    async def count(_: Any) -> None:
        nonlocal days
        days += 1
        if days == stop_after:
            stop.set()

    await replay(run, path.open_session, on_bar=count, stop=stop)
    # a restart: a new process, a new strategy object, the stored book, the same broker
    again = InstanceRun(INSTANCE, strategy_cls(params or {}), panel, config, path, books, account_id=ACCOUNT)
    path.run = again
    await again.prepare()
    await replay(again, path.open_session)
    return again, path


STRATEGIES = sorted(discover_strategies())


@pytest.mark.parametrize("name", STRATEGIES)
def test_paper_replay_fills_as_the_backtest(market: pd.DataFrame, name: str) -> None:
    cls = discover_strategies()[name]
    config = _config(market)
    params = _params(name, market)
    expected = run_backtest(cls(params), market, config)
    run, path = asyncio.run(_replay(cls, market, config, params=params))

    assert _runner_fills(path.fills) == _engine_fills(expected)
    assert len(path.fills) >= 10, "the strategy must trade for the comparison to mean something"
    # every order carried its sleeve, and risk's sleeve checks pass every one of them (the backtest fills them all)
    assert len(path.carried) == path.placed
    assert [_sleeve_reasons(*sent) for sent in path.carried] == [[] for _ in path.carried]
    final_equity = run.book.cash_fen + run.book.market_value_fen()
    assert final_equity == int(expected.cash_fen[-1] + expected.market_value_fen[-1])
    assert [r.cash_fen for r in run.book.history] == expected.cash_fen.tolist()
    # the book applied the engine's corporate actions, share for share and fen for fen
    assert run.book.actions == expected.corporate_actions
    assert expected.corporate_actions, "an ex-date must meet a held position for that to mean something"


def test_restart_mid_replay_ends_as_an_uninterrupted_run(market: pd.DataFrame) -> None:
    cls = discover_strategies()["dual_ma"]
    config = _config(market)
    whole, whole_path = asyncio.run(_replay(cls, market, config))
    restarted, path = asyncio.run(_replay(cls, market, config, stop_after=200))

    assert _runner_fills(path.fills) == _runner_fills(whole_path.fills)
    assert restarted.book.cash_fen == whole.book.cash_fen
    assert np.array_equal(restarted.book.positions, whole.book.positions)
    # the corporate actions on both sides of the restart, each once
    assert restarted.book.actions == whole.book.actions
    assert {a["trade_date"] for a in whole.book.actions} & {d.isoformat() for d in restarted.book.panel.dates[:200]}
    assert {a["trade_date"] for a in whole.book.actions} & {d.isoformat() for d in restarted.book.panel.dates[200:]}


@pytest.mark.parametrize("crash_at", [1, 25, 26])
def test_a_crash_between_an_order_and_its_answer_sends_nothing_twice(market: pd.DataFrame, crash_at: int) -> None:
    """The process dies after execution took an order (and filled it) but before the runner heard: the restarted
    runner runs the bar again, finds the order by its client_order_id and books its fill; the whole run places each
    order once and ends exactly as an uninterrupted one."""
    cls = discover_strategies()["dual_ma"]
    config = _config(market)
    whole, whole_path = asyncio.run(_replay(cls, market, config))

    async def crash_then_resume() -> tuple[InstanceRun, FillingPath, int]:
        panel = load_bars(market, config)
        books = MemoryBooks()
        path = FillingPath(crash_at=crash_at)
        run = InstanceRun(INSTANCE, cls(), panel, config, path, books, account_id=ACCOUNT)
        path.run = run
        await run.prepare()
        with pytest.raises(Crash):
            await replay(run, path.open_session)
        crashed_on = path.session
        again = InstanceRun(INSTANCE, cls(), panel, config, path, books, account_id=ACCOUNT)
        path.run = again
        await again.prepare()
        await replay(again, path.open_session)
        return again, path, crashed_on.toordinal()

    again, path, _ = asyncio.run(crash_then_resume())
    assert path.placed == whole_path.placed  # no order placed twice
    assert _runner_fills(path.fills) == _runner_fills(whole_path.fills)
    assert again.book.cash_fen == whole.book.cash_fen
    assert np.array_equal(again.book.positions, whole.book.positions)
