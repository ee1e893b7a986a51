"""Dual moving-average crossover (trend following) with equal capital sleeves per symbol, vectorised over the
universe: each day one numpy comparison over every symbol decides the buys and the sells."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from pydantic import Field, model_validator

from shared.research.strategy import CrossSection, Strategy, StrategyContext, StrategyParams


class DualMAParams(StrategyParams):
    fast: int = Field(default=5, ge=1, le=250, description="bars in the fast simple moving average")
    slow: int = Field(default=20, ge=2, le=500, description="bars in the slow simple moving average")
    cash_reserve: Decimal = Field(
        default=Decimal("0"), ge=0, lt=1, description="fraction of the initial cash never allocated to a sleeve"
    )

    @model_validator(mode="after")
    def _fast_below_slow(self) -> DualMAParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        return self


class DualMA(Strategy):
    name = "dual_ma"
    title = "Dual moving-average crossover"
    description = (
        "Trend following. Each symbol has an equal sleeve of the initial cash (less the reserve). When the fast "
        "simple moving average of the back-adjusted close crosses above the slow one and the symbol is not held, the "
        "strategy buys the sleeve's value of it; when the fast one crosses below the slow one, it closes the "
        "position. Orders fill at the next open. A buy signal never sells: a cross up while holding does nothing. "
        "Averages are compared exactly (integer sums of prices in fen, cross-multiplied), so equal averages stay "
        "equal. A cross is a change of the sign of fast - slow from strictly negative to strictly positive (up) or "
        "back (down); a day with equal averages keeps the sign before it, so -, 0, - is no cross and -, 0, + is a "
        "cross up on the + day."
    )
    Params = DualMAParams
    params: DualMAParams
    persist = ("_side",)

    def warmup_bars(self) -> int:
        return self.params.slow

    def on_init(self, ctx: StrategyContext) -> None:
        # per symbol, the sign of fast - slow on the last day it was not 0 (0: none yet, the averages incomplete)
        self._side = np.zeros(len(ctx.universe), dtype=np.int64)

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        p = self.params
        fast_sum = ctx.rolling_sum_fen(p.fast)[-1]
        slow_sum = ctx.rolling_sum_fen(p.slow)[-1]
        # fast mean vs slow mean without division: fast_sum / fast vs slow_sum / slow, in integers (ties stay ties);
        # a sum is 0 until its window is complete, and the slow window is the longer one
        sign = np.sign(fast_sum * p.slow - slow_sum * p.fast)
        strict = (slow_sum > 0) & (sign != 0)
        cross_up = strict & (sign > 0) & (self._side < 0)
        cross_down = strict & (sign < 0) & (self._side > 0)
        self._side = np.where(strict, sign, self._side)
        held = ctx.positions > 0
        buys = cross_up & ~held
        if buys.any():
            sleeve = float(ctx.initial_cash) * (1 - float(p.cash_reserve)) / len(ctx.universe)
            ctx.order_value(buys, sleeve)  # a positive value: only ever a buy
        exits = cross_down & held
        if exits.any():
            ctx.close_position(exits)


__all__ = ["DualMA", "DualMAParams"]
