"""The settings of one backtest run: money, fills, the A-share rules to enforce, fees and metrics. A pydantic model
so the service and the CLI validate the same way and a run's config is hashed from one canonical JSON form."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.core.market.matching import FillRules
from shared.core.market.rules import FeeSchedule


class BacktestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_cash: Decimal = Field(default=Decimal("1000000"), gt=0, description="CNY; fractions of a fen refused")
    start: date | None = Field(default=None, description="first day simulated (default: the first bar's day)")
    end: date | None = Field(default=None, description="last day simulated (default: the last bar's day)")
    calendar: tuple[date, ...] | None = Field(
        default=None,
        description="the trading days; every bar must fall on one. Default: the days that have at least one bar "
        "(a day on which every symbol was suspended is then invisible).",
    )

    # fills
    fill_price: Literal["open", "close", "vwap"] = Field(
        default="open", description="the price on the bar after the decision: open, close, or amount / vol"
    )
    slippage: Literal["none", "bps", "ticks"] = "none"
    slippage_amount: Decimal = Field(default=Decimal(0), ge=0, description="basis points or ticks (0.01 CNY)")
    volume_cap: Decimal | None = Field(
        default=None, gt=0, le=1, description="most a fill may take, as a fraction of the bar's volume"
    )
    suspended_orders: Literal["wait", "cancel"] = Field(
        default="wait", description="an order for a symbol without a bar on its fill day waits or is cancelled"
    )

    # corporate actions: held positions follow the adj_factor's bonus shares and dividends on ex-dates (as a broker
    # credits them); False leaves positions as they are, as the platform's paper broker does today, so a backtest
    # can show what a paper run would have done (the live/paper parity test uses it)
    corporate_actions: bool = True

    # A-share rules (all on by default; turning them off is for studies and the equivalence test)
    price_limits: bool = True
    lots: bool = True
    t_plus_one: bool = True
    st_codes: frozenset[str] = Field(default=frozenset(), description="symbols under ST all run long (5% limits)")
    list_dates: dict[str, date] = Field(
        default_factory=dict, description="listing dates, for the IPO days without limits (optional)"
    )

    # fees (FeeSchedule semantics; defaults are shared.core.market.rules.FeeSchedule's)
    commission_rate: Decimal = Field(default=FeeSchedule.commission_rate, ge=0, lt=1)
    min_commission: Decimal = Field(default=FeeSchedule.min_commission, ge=0)
    transfer_fee_rate: Decimal = Field(default=FeeSchedule.transfer_fee_rate, ge=0, lt=1)
    stamp_duty: bool = Field(default=True, description="sell-side stamp duty by date (0.1%, 0.05% from 2023-08-28)")

    # history and metrics
    adjust_history: bool = Field(default=True, description="history and indicators on back-adjusted (hfq) prices")
    risk_free_rate: float = Field(default=0.0, allow_inf_nan=False, description="annual, for Sharpe/Sortino/alpha")
    var_level: float = Field(default=0.95, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> BacktestConfig:
        if self.initial_cash != self.initial_cash.quantize(Decimal("0.01")):
            raise ValueError("initial_cash has fractions of a fen")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if self.slippage == "ticks" and self.slippage_amount != int(self.slippage_amount):
            raise ValueError("slippage_amount must be a whole number of ticks")
        if self.slippage == "none" and self.slippage_amount != 0:
            raise ValueError("slippage_amount is set but slippage is 'none'")
        if self.min_commission != self.min_commission.quantize(Decimal("0.01")):
            raise ValueError("min_commission has fractions of a fen")
        return self

    def fee_schedule(self) -> FeeSchedule:
        return FeeSchedule(
            commission_rate=self.commission_rate,
            min_commission=self.min_commission,
            transfer_fee_rate=self.transfer_fee_rate,
        )

    def fill_rules(self) -> FillRules:
        """What decides a fill in this run, as the matching (`shared.core.market.matching`) takes it."""
        return FillRules(
            fill_price=self.fill_price,
            slippage=self.slippage,
            slippage_amount=self.slippage_amount,
            volume_cap=self.volume_cap,
            price_limits=self.price_limits,
            lots=self.lots,
            t_plus_one=self.t_plus_one,
            suspended_orders=self.suspended_orders,
        )
