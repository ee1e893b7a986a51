"""Buy and hold: split the capital equally over the universe, buy once at the first open, never sell."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from shared.strategy import Strategy, StrategyContext, StrategyParams


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
        "Splits the initial cash (less the cash reserve) equally over the symbols and buys each at the open of "
        "its first trading day in the range (a symbol suspended or not yet listed on the first day is bought at "
        "the first open it trades), in whole lots, fees included; then holds to the end. Prices are unadjusted: "
        "dividends and splits are not accounted for yet."
    )
    Params = BuyAndHoldParams
    params: BuyAndHoldParams

    def on_init(self, ctx: StrategyContext) -> None:
        params = self.params
        investable = ctx.initial_cash * (1 - params.cash_reserve)
        # weights == "equal": the same budget for every symbol; what a budget cannot buy in whole lots stays cash.
        budget = investable / len(ctx.universe)
        for ts_code in ctx.universe:
            ctx.buy_value(ts_code, budget)
