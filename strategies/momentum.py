"""Cross-sectional momentum rotation: every `rebalance_every` trading days, rank the universe by its N-day return and
hold the top k equally weighted. Vectorised: one ranking (an argsort over the cross-section) per rebalance day.

Also home of `Rotation`, the top-k bookkeeping shared with the factor strategy (strategies/factor.py): which names to
hold after a ranking, the sells and target orders that get there, and the retry of sells the exchange refused.

The rule, on the back-adjusted close C (days x symbols, NaN before a symbol's first bar):

- rebalance days: t = lookback, lookback + rebalance_every, lookback + 2 x rebalance_every, ... (t counts the run's
  trading days from 0), the first day on which an N-day return exists;
- score on day t: R = C_{t-skip} / C_{t-lookback} - 1, for a symbol that has a bar today and was listed on day
  t - lookback (a complete N-day history; suspended days inside it count at the last close);
- held: the k best scores (ties broken by universe order), each targeted at (1 - cash_reserve) / k of today's equity
  with order_target_percent, filled in whole lots at the next open (sells first, so their proceeds pay the buys);
  every other holding is closed;
- a holding without a bar on a rebalance day (suspended) cannot be ranked or traded: it keeps its place and takes one
  of the k slots, so the strategy never buys more names than it has slots for;
- a close the exchange refused (limit-down at the open) is ordered again every day until it fills, so the book
  returns to at most k names as soon as the market allows; a refused buy waits for the next rebalance.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from shared.research.strategy import CrossSection, Strategy, StrategyContext, StrategyParams

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class Rotation:
    """Top-k holdings for ranking strategies. `target` is the set of names the strategy means to hold (a bool mask
    over the universe), kept between rebalances so refused sells can be retried."""

    def __init__(self, size: int) -> None:
        self.target: BoolArray = np.zeros(size, dtype=np.bool_)

    def rebalance(self, ctx: StrategyContext, bar: CrossSection, score: FloatArray, k: int, weight: float) -> None:
        """Hold the `k` best finite scores among the symbols with a bar today, each at `weight` of equity.

        Held symbols without a bar today keep their place and take a slot; all other holdings are closed."""
        held = ctx.positions > 0
        stuck = held & ~bar.has_bar
        slots = max(k - int(stuck.sum()), 0)
        candidates = np.flatnonzero(np.isfinite(score) & bar.has_bar)
        # stable sort of the negated scores: best first, ties in universe order
        ranked = candidates[np.argsort(-score[candidates], kind="stable")]
        chosen = ranked[:slots]
        target = stuck.copy()
        target[chosen] = True
        self.target = target
        self.sell_dropped(ctx, bar)
        if len(chosen):
            ctx.order_target_percent(chosen, weight)

    def sell_dropped(self, ctx: StrategyContext, bar: CrossSection) -> None:
        """Close every holding outside the target that can trade today (on other days its order would wait)."""
        dropped = (ctx.positions > 0) & ~self.target & bar.has_bar
        if dropped.any():
            ctx.close_position(dropped)


class MomentumParams(StrategyParams):
    lookback: int = Field(default=20, ge=1, le=500, description="N: the return is measured over N trading days")
    skip: int = Field(
        default=0, ge=0, le=250, description="most recent days left out of the return (e.g. 1 skips the last day)"
    )
    top_k: int = Field(default=5, ge=1, le=500, description="how many of the best-ranked symbols are held")
    rebalance_every: int = Field(default=20, ge=1, le=500, description="trading days between rebalances")
    cash_reserve: Decimal = Field(
        default=Decimal("0.01"),
        ge=0,
        lt=1,
        description="fraction of equity kept in cash (room for fees and the open moving against the sizing)",
    )

    @model_validator(mode="after")
    def _skip_inside_lookback(self) -> MomentumParams:
        if self.skip >= self.lookback:
            raise ValueError(f"skip ({self.skip}) must be shorter than lookback ({self.lookback})")
        return self


class Momentum(Strategy):
    name = "momentum"
    title = "Cross-sectional momentum rotation (top k)"
    description = (
        "Momentum. Every `rebalance_every` trading days (first on day `lookback`), ranks the symbols that trade "
        "today and have a complete `lookback`-day history by their return over it on the back-adjusted close, "
        "leaving out the most recent `skip` days: C[t-skip] / C[t-lookback] - 1. Holds the `top_k` best equally, "
        "each at (1 - cash_reserve) / top_k of equity (order_target_percent, filled in whole lots at the next "
        "open), and closes the rest. A holding suspended on a rebalance day keeps its slot; a close refused at "
        "limit-down is retried daily, a refused buy waits for the next rebalance."
    )
    Params = MomentumParams
    persist = ("_rotation.target",)
    params: MomentumParams

    def warmup_bars(self) -> int:
        return self.params.lookback + 1

    def on_init(self, ctx: StrategyContext) -> None:
        self._rotation = Rotation(len(ctx.universe))

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        p = self.params
        t = bar.index
        if t < p.lookback or (t - p.lookback) % p.rebalance_every:
            self._rotation.sell_dropped(ctx, bar)
            return
        close = ctx.history("close")
        with np.errstate(invalid="ignore", divide="ignore"):
            score = close[t - p.skip] / close[t - p.lookback] - 1.0
        weight = (1 - float(p.cash_reserve)) / p.top_k
        self._rotation.rebalance(ctx, bar, score, p.top_k, weight)


__all__ = ["Momentum", "MomentumParams", "Rotation"]
