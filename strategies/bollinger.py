"""Bollinger-band mean reversion with equal capital sleeves per symbol, vectorised over the universe: each day a few
numpy comparisons over every symbol against the causal BBANDS indicator decide the buys and the sells.

The rule, per symbol, on the back-adjusted close C and the bands of the last `period` closes (TA-Lib BBANDS with a
simple moving average and the population standard deviation, i.e. divided by `period`):

    lower_t  = SMA_t - k * STD_t,   middle_t = SMA_t,   upper_t = SMA_t + k * STD_t

- entry on day t: the symbol traded today, holds no shares, its bands are defined on t - 1 and t, and the close
  crosses below the lower band: C_{t-1} >= lower_{t-1} and C_t < lower_t. The strategy then orders the sleeve's
  value (initial cash x (1 - cash_reserve) / number of symbols), filled in whole lots at the next open;
- exit on day t: the symbol traded today, is held, and closes strictly above the exit band (the middle band by
  default, the upper one with exit_band="upper"). Holding began below the lower band, so the first such close is
  the cross back above; testing the level instead of the cross retries an exit the exchange refused (limit-down).

A cross below that happens while the symbol is already held adds nothing: one sleeve per symbol.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from shared.research.strategy import CrossSection, FloatArray, Strategy, StrategyContext, StrategyParams


class BollingerParams(StrategyParams):
    period: int = Field(default=20, ge=2, le=250, description="closes in the moving average and standard deviation")
    k: float = Field(
        default=2.0, gt=0, le=5, description="band width in standard deviations (population std over the period)"
    )
    exit_band: Literal["middle", "upper"] = Field(
        default="middle", description="a position is closed once the close is above this band"
    )
    cash_reserve: Decimal = Field(
        default=Decimal("0"), ge=0, lt=1, description="fraction of the initial cash never allocated to a sleeve"
    )


class Bollinger(Strategy):
    name = "bollinger"
    title = "Bollinger-band mean reversion"
    description = (
        "Mean reversion. Each symbol has an equal sleeve of the initial cash (less the reserve). Bands are the "
        "`period`-day simple moving average of the back-adjusted close plus and minus k population standard "
        "deviations (TA-Lib BBANDS). When the close crosses below the lower band (at or above it yesterday, below "
        "it today) and the symbol is not held, the strategy orders the sleeve's value of it; it closes the position "
        "once the close is above the middle band (or the upper band, by `exit_band`). Orders fill at the next open; "
        "a symbol without a bar today neither enters nor exits that day."
    )
    Params = BollingerParams
    params: BollingerParams

    def _band(self, ctx: StrategyContext, output: str) -> FloatArray:
        p = self.params
        # matype 0: simple moving average; TA-Lib's deviation is the population one
        return ctx.indicator("BBANDS", output=output, timeperiod=p.period, nbdevup=p.k, nbdevdn=p.k, matype=0)

    def warmup_bars(self) -> int:
        return self.params.period

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        p = self.params
        if bar.index < p.period:  # the bands of yesterday and today both need `period` closes
            return
        lower = self._band(ctx, "lowerband")[-2:]
        exit_line = self._band(ctx, f"{p.exit_band}band")[-1]
        close = ctx.history("close")[-2:]
        held = ctx.positions > 0
        # NaN (a symbol not listed long enough) compares False everywhere, so it never signals
        cross_down = (close[0] >= lower[0]) & (close[1] < lower[1])
        entries = cross_down & bar.has_bar & ~held
        if entries.any():
            sleeve = float(ctx.initial_cash) * (1 - float(p.cash_reserve)) / len(ctx.universe)
            ctx.order_target_value(entries, sleeve)
        exits = held & bar.has_bar & (close[1] > exit_line)
        if exits.any():
            ctx.close_position(exits)


__all__ = ["Bollinger", "BollingerParams"]
