"""An optimisation over a strategy that listens to its orders and fills (`on_order` / `on_trade`): the batch engine
cannot run such a strategy, so the evaluator runs its points one at a time; every point's metrics are those of
`run_backtest` with the same parameters, and the search ranks them as the single runs would."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from pydantic import Field

from shared.research.engine import BacktestConfig, load_bars, run_backtest
from shared.research.engine.batch import listens_to_events
from shared.research.engine.optimize import Evaluator, Objective, ParameterSpace, evaluate, grid_search
from shared.research.strategy import CrossSection, Strategy, StrategyContext, StrategyParams
from shared.research.strategy.context import OrderEvent, TradeEvent
from tests.unit.engine.test_engine_batch import market


class ReactiveParams(StrategyParams):
    lookback: int = Field(default=5, ge=1, le=30, description="closes over which the move is measured")
    cooldown: int = Field(default=3, ge=0, le=30, description="days a symbol is left alone after a fill or refusal")
    fail_on_fill: int = Field(default=0, ge=0, description="raise in on_trade at this fill (0: never)")


class Reactive(Strategy):
    """Holds a symbol whose close rose over `lookback` days and sells it when it fell; a symbol just filled, or
    whose order was refused or cut short, is left alone for `cooldown` days. What it trades therefore depends on the
    order and trade events the engine sends it."""

    name = "reactive"
    Params = ReactiveParams
    params: ReactiveParams

    def on_init(self, ctx: StrategyContext) -> None:
        self.quiet_until = np.zeros(len(ctx.universe), dtype=np.int64)
        self.fills = 0

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        closes = ctx.history_fen("close")
        if len(closes) <= self.params.lookback:
            return
        now, then = closes[-1], closes[-1 - self.params.lookback]
        free = (self.quiet_until <= bar.index) & bar.has_bar & (then > 0)
        held = ctx.positions > 0
        if (buys := free & ~held & (now > then)).any():
            ctx.order_value(buys, ctx.equity * 0.15)
        if (sells := free & held & (now < then)).any():
            ctx.close_position(sells)

    def on_trade(self, ctx: StrategyContext, event: TradeEvent) -> None:
        self.fills += 1
        if self.fills == self.params.fail_on_fill:
            raise RuntimeError(f"fill {self.fills}")
        self.quiet_until[ctx.column(event.ts_code)] = ctx.day_index + self.params.cooldown

    def on_order(self, ctx: StrategyContext, event: OrderEvent) -> None:
        if event.status != "filled":
            self.quiet_until[ctx.column(event.ts_code)] = ctx.day_index + self.params.cooldown


class Deaf(Reactive):
    """The same trading without the event hooks: the batch engine takes it, and it never cools down."""

    name = "deaf"
    on_trade = Strategy.on_trade
    on_order = Strategy.on_order


CONFIG = BacktestConfig(initial_cash=Decimal("500000"))
SPEC = {"lookback": [2, 5, 9], "cooldown": [0, 4, 10]}


@pytest.fixture(scope="module")
def bars() -> Any:
    return market(days=120, seed=11)


def _alone(strategy_cls: type[Strategy], point: dict[str, Any], bars: Any) -> dict[str, Any]:
    return run_backtest(strategy_cls(point), bars, CONFIG).metrics


def test_the_events_decide_what_the_strategy_trades(bars: Any) -> None:
    # Otherwise the comparisons below could not tell a run that delivers the events from one that drops them.
    assert listens_to_events(Reactive()) and not listens_to_events(Deaf())
    points, _ = ParameterSpace.from_spec(Reactive, SPEC).grid()
    assert len(points) == 9
    reactive = [_alone(Reactive, p, bars) for p in points]
    deaf = [_alone(Deaf, p, bars) for p in points]
    assert all(m["trade_count"] > 0 for m in reactive)
    for point, heard, unheard in zip(points, reactive, deaf, strict=True):
        if point["cooldown"] == 0:
            assert heard == unheard  # a cooldown of 0 days changes nothing
        else:
            assert heard != unheard, point


@pytest.mark.parametrize("batch_size", [100, 4, 1])
def test_an_optimisation_over_a_listening_strategy_gives_the_single_runs_results(bars: Any, batch_size: int) -> None:
    panel = load_bars(bars, CONFIG)
    points, _ = ParameterSpace.from_spec(Reactive, SPEC).grid()
    objective = Objective("total_return")
    results = Evaluator(panel, CONFIG, Reactive, objective, batch_size=batch_size)(points)
    assert [r.params for r in results] == points  # in the order asked
    for point, result in zip(points, results, strict=True):
        alone = _alone(Reactive, point, bars)
        assert result.error is None
        assert result.metrics == alone, point
        assert result.objective == alone["total_return"]


def test_the_grid_search_picks_the_point_the_single_runs_rank_first(bars: Any) -> None:
    panel = load_bars(bars, CONFIG)
    space = ParameterSpace.from_spec(Reactive, SPEC)
    objective = Objective("total_return")
    search = grid_search(space, lambda ps: evaluate(ps, panel, CONFIG, Reactive, objective=objective), objective)
    points, _ = space.grid()
    returns = sorted((_alone(Reactive, p, bars)["total_return"] for p in points), reverse=True)
    assert search.evaluations == 9 and search.skipped == 0
    assert [r.objective for r in search.results] == returns
    assert search.best is not None
    assert search.best.metrics == _alone(Reactive, search.best.params, bars)


def test_a_point_that_raises_in_on_trade_fails_alone(bars: Any) -> None:
    panel = load_bars(bars, CONFIG)
    points = [{"lookback": 5, "cooldown": 4}, {"lookback": 5, "cooldown": 4, "fail_on_fill": 3}, {"lookback": 2}]
    results = Evaluator(panel, CONFIG, Reactive, Objective("total_return"), batch_size=100)(points)
    assert results[1].error == "RuntimeError: fill 3" and results[1].metrics is None
    assert results[0].metrics == _alone(Reactive, points[0], bars)
    assert results[2].metrics == _alone(Reactive, points[2], bars)
