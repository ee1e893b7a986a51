"""Multi-factor ranking on Tushare daily_basic fields: value (cheap on earnings and on book) and low turnover, each
standardised across the universe, combined with weights, and the top n held equally. Vectorised: per rebalance day a
few numpy reductions over the cross-section.

The daily_basic fields come as extra numeric columns of the bars, under Tushare's names (`pe_ttm`, `pb`,
`turnover_rate`, merged on ts_code and trade_date), read with `ctx.history(name, adjusted=False)`. They are
published after the close, so the values of day t are known when the strategy decides at t's close.

The rule:

- rebalance days: t = 0, rebalance_every, 2 x rebalance_every, ... (t counts the run's trading days from 0);
- factors on day t, oriented so that higher is better:
    value_pe  = 1 / pe_ttm   (earnings yield; a loss-maker, pe_ttm missing or <= 0, has none)
    value_pb  = 1 / pb       (book yield; pb missing or <= 0: none)
    turnover  = -turnover_rate   (low turnover ranks high; missing: none)
  Yields instead of -PE because PE is not monotone in cheapness through zero and explodes near it;
- eligible: a bar today and a value for every factor with a non-zero weight; a factor with weight 0 is not read;
- each factor over the eligible symbols: clipped to its `winsor` and 1 - `winsor` quantiles (linear interpolation),
  then z = (x - mean) / std (population std; z = 0 when every value is equal);
- score = weight_pe x z(value_pe) + weight_pb x z(value_pb) + weight_turnover x z(turnover);
- held: the top_n scores, ties by universe order, each at (1 - cash_reserve) / top_n of equity, filled in whole lots
  at the next open; the rest closed. Suspended holdings and refused orders as in the momentum strategy
  (strategies/momentum.py, `Rotation`).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from shared.research.strategy import CrossSection, Strategy, StrategyContext, StrategyError, StrategyParams
from strategies.momentum import Rotation

FloatArray = npt.NDArray[np.float64]

# weight parameter -> the daily_basic column its factor is computed from (oriented by _oriented)
FACTORS: dict[str, str] = {"weight_pe": "pe_ttm", "weight_pb": "pb", "weight_turnover": "turnover_rate"}


def _oriented(column: str, raw: FloatArray) -> FloatArray:
    """The factor of a daily_basic column, higher = better; NaN where it has no value."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if column in ("pe_ttm", "pb"):
            return np.where(raw > 0, 1.0 / raw, np.nan)
        return -raw


def winsorised_z(values: FloatArray, q: float) -> FloatArray:
    """Cross-sectional z-score of finite `values` after clipping them to their q and 1 - q quantiles."""
    if values.size == 0:
        return values
    if q > 0:
        lo, hi = np.quantile(values, [q, 1 - q])
        values = np.clip(values, lo, hi)
    sd = float(values.std())
    if sd == 0.0:
        return np.zeros_like(values)
    return (values - values.mean()) / sd


class FactorParams(StrategyParams):
    weight_pe: float = Field(default=1.0, ge=0, le=10, description="weight of the earnings yield 1 / pe_ttm")
    weight_pb: float = Field(default=1.0, ge=0, le=10, description="weight of the book yield 1 / pb")
    weight_turnover: float = Field(
        default=0.5, ge=0, le=10, description="weight of low turnover: -turnover_rate (daily, % of float)"
    )
    top_n: int = Field(default=10, ge=1, le=500, description="how many of the best-scored symbols are held")
    rebalance_every: int = Field(default=20, ge=1, le=500, description="trading days between rebalances")
    winsor: float = Field(
        default=0.025, ge=0, lt=0.5, description="each factor is clipped to its winsor and 1 - winsor quantiles"
    )
    cash_reserve: Decimal = Field(
        default=Decimal("0.01"),
        ge=0,
        lt=1,
        description="fraction of equity kept in cash (room for fees and the open moving against the sizing)",
    )

    @model_validator(mode="after")
    def _some_weight(self) -> FactorParams:
        if not any(getattr(self, name) > 0 for name in FACTORS):
            raise ValueError(f"at least one of {', '.join(FACTORS)} must be above 0")
        return self

    def weighted(self) -> list[tuple[str, str, float]]:
        """(parameter, column, weight) of the factors in use."""
        return [(name, column, getattr(self, name)) for name, column in FACTORS.items() if getattr(self, name) > 0]


class Factor(Strategy):
    name = "factor"
    title = "Multi-factor ranking (value, low turnover)"
    description = (
        "Factor investing on daily_basic fields (extra columns pe_ttm, pb, turnover_rate of the bars). Every "
        "`rebalance_every` trading days (first on day 0), each factor is computed for the symbols that trade today "
        "and have every weighted field: earnings yield 1/pe_ttm, book yield 1/pb (loss-makers and negative book have "
        "none) and low turnover -turnover_rate; each is winsorised at the `winsor` quantiles and z-scored across "
        "them, and the weighted sum of the z-scores ranks them. The `top_n` best are held equally, each at "
        "(1 - cash_reserve) / top_n of equity (order_target_percent, next open, whole lots); the rest are closed."
    )
    Params = FactorParams
    persist = ("_rotation.target",)
    bar_fields = tuple(FACTORS.values())
    params: FactorParams

    def on_init(self, ctx: StrategyContext) -> None:
        for name, column, weight in self.params.weighted():
            try:
                self._field(ctx, column)
            except (KeyError, ValueError) as exc:
                raise StrategyError(
                    f"factor: {name} is {weight} but the bars have no numeric {column!r} column "
                    f"(merge Tushare daily_basic into the bars, or set {name} to 0): {exc}"
                ) from exc
        self._rotation = Rotation(len(ctx.universe))

    @staticmethod
    def _field(ctx: StrategyContext, column: str) -> FloatArray:
        return ctx.history(column, adjusted=False)

    def scores(self, ctx: StrategyContext, bar: CrossSection) -> FloatArray:
        """Today's combined score per symbol; NaN where the symbol is not eligible."""
        factors = [
            (weight, _oriented(column, self._field(ctx, column)[-1])) for _, column, weight in self.params.weighted()
        ]
        eligible = bar.has_bar.copy()
        for _, values in factors:
            eligible &= np.isfinite(values)
        score = np.full(len(ctx.universe), np.nan)
        combined = np.zeros(int(eligible.sum()))
        for weight, values in factors:
            combined += weight * winsorised_z(values[eligible], self.params.winsor)
        score[eligible] = combined
        return score

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        p = self.params
        if bar.index % p.rebalance_every:
            self._rotation.sell_dropped(ctx, bar)
            return
        weight = (1 - float(p.cash_reserve)) / p.top_n
        self._rotation.rebalance(ctx, bar, self.scores(ctx, bar), p.top_n, weight)


__all__ = ["FACTORS", "Factor", "FactorParams", "winsorised_z"]
