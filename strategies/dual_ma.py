"""Dual moving-average crossover (trend following) with equal capital sleeves per symbol, vectorised over the
universe: each day one numpy comparison over every symbol decides the buys and the sells."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator

from shared.strategy import CrossSection, Strategy, StrategyContext, StrategyParams


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
        "simple moving average of the back-adjusted close crosses above the slow one, the strategy orders the "
        "sleeve's value of the symbol; when it crosses below, it closes the position. Orders fill at the next open. "
        "Averages are compared exactly (integer sums of prices in fen, cross-multiplied), so equal averages stay "
        "equal: a crossover is fast > slow today after fast <= slow yesterday, both averages complete on both days."
    )
    Params = DualMAParams
    params: DualMAParams

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        p = self.params
        if bar.index < 1:
            return
        fast_sum = ctx.rolling_sum_fen(p.fast)[-2:]
        slow_sum = ctx.rolling_sum_fen(p.slow)[-2:]
        # fast mean vs slow mean without division: fast_sum / fast vs slow_sum / slow
        fast_scaled = fast_sum * p.slow
        slow_scaled = slow_sum * p.fast
        defined = (slow_sum[0] > 0) & (fast_sum[0] > 0)
        above = fast_scaled[1] > slow_scaled[1]
        below = fast_scaled[1] < slow_scaled[1]
        cross_up = defined & above & (fast_scaled[0] <= slow_scaled[0])
        cross_down = defined & below & (fast_scaled[0] >= slow_scaled[0])
        if cross_up.any():
            sleeve = float(ctx.initial_cash) * (1 - float(p.cash_reserve)) / len(ctx.universe)
            ctx.order_target_value(cross_up, sleeve)
        exits = cross_down & (ctx.positions > 0)
        if exits.any():
            ctx.close_position(exits)


__all__ = ["DualMA", "DualMAParams"]
