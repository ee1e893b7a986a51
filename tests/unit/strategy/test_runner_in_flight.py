"""A round's orders sent several at a time (`orders_in_flight`): each carries to risk the sleeve the orders before it
in the round left — they are reserved from before they are sent, and the order itself is not — so a round the sleeve
cannot pay in full gets exactly the answers it gets one order at a time, and no two orders spend the same cash. Here
a path plays risk: it reads the sleeve each order carries with risk's request model and runs risk's own sleeve check
on it (services.risk.checks.sleeve_checks: the cost of a buy against its `cash_available`), with a resting buy from
the day before holding most of the cash."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest

from services.risk.checks import OrderIntent, Sleeve, sleeve_checks
from services.risk.schemas import CarriedSleeve
from services.strategy.book import Plan
from services.strategy.runner import InstanceRun
from services.strategy.trading import Placed, Refused
from shared.core.domain import OrderSide, OrderType, from_fen, to_fen
from shared.research.engine import load_bars
from shared.research.strategy import CrossSection, Strategy, StrategyContext
from shared.research.strategy.context import OrderEvent
from tests.unit.strategy.test_runner_parity import ACCOUNT, INSTANCE, FillingPath, MemoryBooks, _config


class RestThenBuySix(Strategy):
    """Bar 0: a buy of 700,000 CNY of symbol 0 (it rests: never filled). Bar 1: 90,000 CNY of each of symbols 1-6.
    The account starts with 1,000,000: after the resting buy's reservation about 299,800 is left, which pays three
    of the six (each at most 90,000 + 27 of fees), not a fourth (at least 85,000: a lot costs under 5,000 here)."""

    name = "rest_then_buy_six"

    def on_init(self, ctx: StrategyContext) -> None:
        self.heard: list[OrderEvent] = []

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        if ctx.day_index == 0:
            ctx.order_value(0, 700_000)
        elif ctx.day_index == 1:
            for j in range(1, 7):
                ctx.order_value(j, 90_000)

    def on_order(self, ctx: StrategyContext, event: OrderEvent) -> None:
        self.heard.append(event)


class SleeveCheckingPath(FillingPath):
    """Symbol 0's order rests; every other buy is checked as risk does against the sleeve it carries, after letting
    the other orders in flight reach the same point, then filled."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.most_inside = 0
        self.seen_available: dict[str, int] = {}
        self.costs: dict[str, int] = {}  # what each buy costs at its limit, with fees

    async def place(
        self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None
    ) -> Placed | Refused:  # type: ignore[override]
        assert self.run is not None
        carried = CarriedSleeve.model_validate(sleeve)  # as risk reads it: computed when the order was sent
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            amount = np.array([plan.qty * plan.price_fen], dtype=np.int64)
            fees = self.run.book.fees
            cost = int(amount[0] + fees.commission(amount)[0] + fees.transfer(amount)[0])
            self.costs[plan.ts_code] = cost
            for _ in range(5):
                await asyncio.sleep(0)  # the other workers send theirs meanwhile
            if plan.ts_code == self.run.book.panel.codes[0]:
                self.by_cid[plan.client_order_id] = {"order_id": "rest", "status": "submitted", "filled_qty": 0}
                return Placed("rest", "submitted", 0, None)
            assert (carried.instance_id, carried.account_id, carried.state) == (INSTANCE, ACCOUNT, "running")
            assert carried.position is None  # nothing of these symbols held yet
            self.seen_available[plan.ts_code] = to_fen(carried.cash_available)
            intent = OrderIntent(plan.ts_code, OrderSide.BUY, OrderType.LIMIT, plan.qty, from_fen(plan.price_fen))
            checked = Sleeve(instance_id=carried.instance_id, account_id=carried.account_id, state=carried.state,
                             cash_available=carried.cash_available)  # fmt: skip
            reasons = sleeve_checks(intent, None, checked, trade_date=self.session)
            assert bool(reasons) == (cost > to_fen(carried.cash_available))  # the path's arithmetic is risk's
            if reasons:
                return Refused("order_rejected", "; ".join(f"{r.code}: {r.message}" for r in reasons))
            return await super().place(plan, instance_id, sleeve=sleeve)
        finally:
            self.inside -= 1


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from services.data.demo import generate_demo_market
    from shared.platform.settings import Settings

    daily = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    first = sorted(daily["ts_code"].unique())[:7]
    days = sorted(daily["trade_date"].unique())[:3]
    return daily[daily["ts_code"].isin(first) & daily["trade_date"].isin(days)]


def _play(bars: pd.DataFrame, orders_in_flight: int) -> tuple[RestThenBuySix, SleeveCheckingPath, InstanceRun]:
    async def go() -> tuple[RestThenBuySix, SleeveCheckingPath, InstanceRun]:
        path = SleeveCheckingPath()
        strategy = RestThenBuySix()
        config = _config(bars)
        run = InstanceRun(INSTANCE, strategy, load_bars(bars, config), config, path, MemoryBooks(), account_id=ACCOUNT,
                          orders_in_flight=orders_in_flight)  # fmt: skip
        path.run = run
        await run.prepare()
        for t in range(3):
            await run.session(t)
        return strategy, path, run

    return asyncio.run(go())


@pytest.mark.parametrize("orders_in_flight", [1, 4])
def test_a_round_the_sleeve_cannot_pay_gets_the_answers_of_one_order_at_a_time(
    bars: pd.DataFrame, orders_in_flight: int
) -> None:
    strategy, path, run = _play(bars, orders_in_flight)
    assert path.most_inside == orders_in_flight
    codes = run.book.panel.codes
    heard = [(e.ts_code, e.status) for e in strategy.heard]
    # in the round's order: the first three filled, the others refused by the sleeve check; symbol 0 still rests
    assert heard == [(codes[1], "filled"), (codes[2], "filled"), (codes[3], "filled"),
                     (codes[4], "rejected"), (codes[5], "rejected"), (codes[6], "rejected")]  # fmt: skip
    assert [int(q) for q in run.book.positions[:7]] == [0, *[int(q) for q in run.book.positions[1:4]], 0, 0, 0]
    assert all(run.book.positions[1:4] > 0)
    # what each order saw: the cash less the resting buy and the orders before it in the round (the refused
    # fourth no longer reserves anything once refused: the fifth and sixth see at most what the first three left)
    (rest,) = run.sent.values()
    left = run.book.initial_cash_fen - path.costs[rest.ts_code]
    for j in range(1, 5):
        assert path.seen_available[codes[j]] == left
        left -= path.costs[codes[j]]
    after_three = run.book.initial_cash_fen - path.costs[rest.ts_code] - sum(path.costs[codes[j]] for j in (1, 2, 3))
    assert all(path.seen_available[codes[j]] <= after_three for j in (5, 6))
    assert run.book.cash_fen >= path.costs[rest.ts_code]  # the resting buy can still be paid
