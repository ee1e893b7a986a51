"""Pairs trading on the z-score of a spread, long-only (A-share retail accounts cannot short): when the two legs drift
apart, hold the one that is cheap relative to the other and go flat when the spread comes back. Only two symbols
trade, so the daily work is one least-squares fit over `lookback` days of two series.

The rule, on the back-adjusted closes A and B of leg_a and leg_b, each day t once both have `lookback` days of
history:

- hedge ratio: ordinary least squares of log A on log B with an intercept over the last `lookback` days (t included),
  log A_s = alpha + beta x log B_s + e_s, refitted every day (rolling, so only the past enters);
- z-score: z_t = e_t / sd(e), the residual of today over the population standard deviation of the window's residuals
  (their mean is 0 by construction of OLS). A window in which log B does not move, or whose residuals are all 0 to
  1e-9, has no z: nothing is decided that day;
- z_t > entry_z: A is rich against B, so B is the cheap leg: hold B (target `capital` of equity) and not A;
- z_t < -entry_z: A is the cheap leg: hold A and not B;
- |z_t| < exit_z: the spread has reverted: hold neither;
- otherwise (exit_z <= |z_t| <= entry_z): keep what is held.

Decisions need a bar on day t for both legs; orders fill at the next open, the sell of the other leg first. A leg
already held is not resized. The short side of the textbook trade is left out, so the strategy carries the cheap
leg's market risk and earns only that leg's share of the reversion.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator, model_validator

from shared.research.strategy import (
    CrossSection,
    InvalidTsCode,
    Strategy,
    StrategyContext,
    StrategyError,
    StrategyParams,
    parse_ts_code,
)

FLAT_RESIDUALS = 1e-9  # log units: a fit this tight is a constant ratio, not a spread with a distribution


class PairsParams(StrategyParams):
    leg_a: str = Field(description="ts_code of the first leg (the regressand: log A on log B)")
    leg_b: str = Field(description="ts_code of the second leg (the regressor)")
    lookback: int = Field(default=60, ge=5, le=1000, description="trading days in the rolling OLS fit and z-score")
    entry_z: float = Field(default=2.0, gt=0, le=10, description="|z| above which the cheap leg is bought")
    exit_z: float = Field(default=0.5, ge=0, le=10, description="|z| below which every position is closed")
    capital: float = Field(
        default=0.95, gt=0, le=1, description="fraction of equity held in the cheap leg (the rest covers fees)"
    )

    @field_validator("leg_a", "leg_b")
    @classmethod
    def _ts_code(cls, value: str) -> str:
        try:
            return parse_ts_code(value).ts_code
        except InvalidTsCode as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _consistent(self) -> PairsParams:
        if self.leg_a == self.leg_b:
            raise ValueError(f"leg_a and leg_b are the same symbol ({self.leg_a})")
        if self.exit_z >= self.entry_z:
            raise ValueError(f"exit_z ({self.exit_z}) must be below entry_z ({self.entry_z})")
        return self


class Pairs(Strategy):
    name = "pairs"
    title = "Pairs: spread z-score, long-only"
    description = (
        "Statistical arbitrage on two co-moving symbols, long-only because most A-share accounts cannot short. "
        "Each day, log A is regressed on log B (back-adjusted closes) over the last `lookback` days; z is today's "
        "residual over the residuals' standard deviation. Above entry_z, A is rich: the strategy holds B (the cheap "
        "leg) at `capital` of equity and not A; below -entry_z it holds A and not B; when |z| falls below exit_z it "
        "holds neither; in between it keeps what it holds. Both legs must trade that day; orders fill at the next "
        "open. Without the short leg the position carries the cheap leg's market risk."
    )
    Params = PairsParams
    params: PairsParams

    def warmup_bars(self) -> int:
        return self.params.lookback

    def on_init(self, ctx: StrategyContext) -> None:
        missing = [f"{name} {code!r}" for name, code in self._legs() if code not in ctx.universe]
        if missing:
            raise StrategyError(
                f"pairs: {' and '.join(missing)} not in the universe of this run ({len(ctx.universe)} symbols); "
                "the bars must include both legs"
            )
        self._a = ctx.column(self.params.leg_a)
        self._b = ctx.column(self.params.leg_b)

    def _legs(self) -> tuple[tuple[str, str], tuple[str, str]]:
        return (("leg_a", self.params.leg_a), ("leg_b", self.params.leg_b))

    def zscore(self, ctx: StrategyContext) -> float | None:
        """Today's z of the spread, or None when the window is incomplete or degenerate."""
        n = self.params.lookback
        close = ctx.history("close")
        if close.shape[0] < n:
            return None
        window = close[-n:][:, [self._a, self._b]]
        if not np.isfinite(window).all():  # a leg listed less than `lookback` days ago
            return None
        log_a, log_b = np.log(window[:, 0]), np.log(window[:, 1])
        xb = log_b - log_b.mean()
        sxx = float(xb @ xb)
        if sxx <= 0.0:
            return None
        beta = float(xb @ (log_a - log_a.mean())) / sxx
        residuals = (log_a - log_a.mean()) - beta * xb
        sd = float(np.sqrt(residuals @ residuals / n))
        if sd < FLAT_RESIDUALS:
            return None
        return float(residuals[-1]) / sd

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        a, b, p = self._a, self._b, self.params
        if not (bar.has_bar[a] and bar.has_bar[b]):
            return
        z = self.zscore(ctx)
        if z is None:
            return
        if abs(z) < p.exit_z:
            want: int | None = None
        elif z > p.entry_z:
            want = b
        elif z < -p.entry_z:
            want = a
        else:
            return  # between the thresholds: keep what is held
        for leg in (a, b):
            if leg != want and ctx.position(leg) > 0:
                ctx.close_position(leg)
        if want is not None and ctx.position(want) == 0:
            ctx.order_target_percent(want, p.capital)


__all__ = ["Pairs", "PairsParams"]
