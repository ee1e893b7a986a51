"""A strategy that raises (a poison job) and one that is slow (to kill or cancel a job mid-run)."""

from __future__ import annotations

import time

from pydantic import Field

from shared.research.strategy import CrossSection, Strategy, StrategyContext, StrategyParams


class Explode(Strategy):
    """A strategy with a bug: it raises on its first bar."""

    name = "explode"
    title = "Explodes"
    description = "Raises on the first bar, to test how the worker treats a failing strategy."

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        raise RuntimeError("boom on purpose")


class Slow(Strategy):
    """Buys one lot of the first symbol on the first day, then sleeps on every bar."""

    name = "slow"
    title = "Slow"
    description = "Sleeps `sleep_s` on every bar, so that a test can act while it runs."

    class Params(StrategyParams):
        sleep_s: float = Field(default=0.02, ge=0, le=1)

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        if ctx.positions.sum() == 0 and bar.has_bar[0]:
            ctx.buy(ctx.universe[0], 100)
        time.sleep(self.params.sleep_s)
