"""Buy and hold: split the capital equally over the universe, buy once at the first open, never sell."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import numpy as np
from pydantic import Field

from shared.research.strategy import Strategy, StrategyContext, StrategyParams


class BuyAndHoldParams(StrategyParams):
    weights: Literal["equal"] = Field(
        default="equal",
        description="How the capital is split over the symbols. Only 'equal' exists so far.",
    )
    cash_reserve: Decimal = Field(
        default=Decimal("0"),
        ge=0,
        lt=1,
        description="Fraction of the initial cash kept uninvested, e.g. 0.1 keeps 10% in cash.",
    )


class BuyAndHold(Strategy):
    name = "buy_and_hold"
    title = "Buy and hold"
    description = (
        "Splits the initial cash (less the cash reserve) equally over the symbols and buys each at the first open "
        "it trades (a symbol suspended or not yet listed on the first day is bought at its first open after), in "
        "whole lots; then holds to the end. Fees come out of the cash, so the last buys may shrink by a lot. "
        "Held shares follow corporate actions through the adj factor (dividends reinvested)."
    )
    Params = BuyAndHoldParams
    params: BuyAndHoldParams

    def on_init(self, ctx: StrategyContext) -> None:
        # weights == "equal": the same budget for every symbol; what a budget cannot buy in whole lots stays cash.
        investable = ctx.initial_cash * (1 - float(self.params.cash_reserve))
        budget = investable / len(ctx.universe)
        ctx.order_value(np.ones(len(ctx.universe), dtype=np.bool_), budget)
