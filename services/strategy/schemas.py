"""The strategy service's request and response models. The catalogue answers with the strategy API's own
descriptions (the same models the backtest service and the strategy authors use, so their OpenAPI names stay
`StrategyInfo` and `IndicatorInfo`); strategy instances have the bodies below. Errors are the platform's
`{code, message}` body."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt, model_validator

from shared.platform.request_model import AccountId, FiniteFloat, JsonDecimal, RequestModel, StrictBool, TradeDate
from shared.platform.universe import CostModel, Universe
from shared.research.strategy import StrategyInfo
from shared.research.strategy.indicators import IndicatorInfo

__all__ = [
    "AuditEntryOut",
    "IndicatorInfo",
    "InstanceCreate",
    "InstanceOut",
    "ParamsUpdate",
    "ParamsVersionOut",
    "StopRequest",
    "StrategyInfo",
]

Mode = Literal["paper", "live"]
BarFreq = Literal["1d", "1m"]
OrderTiming = Literal["open_auction", "open"]
Reload = Literal["auto", "manual"]
InstanceState = Literal["created", "running", "paused", "stopped", "failed"]


class InstanceCreate(RequestModel):
    """A strategy instance: a strategy with its parameters, trading a universe on an account with a capital budget."""

    strategy: str = Field(min_length=1, max_length=64, description="an installed strategy's name, e.g. dual_ma")
    params: dict[str, Any] = Field(
        default_factory=dict, description="the strategy's parameters (GET /v1/strategies/{name}); defaults fill in"
    )
    universe: Universe
    account_id: AccountId | None = Field(
        default=None, description="the account it trades (default: yours; only an admin names another)"
    )
    capital: JsonDecimal = Field(
        gt=0,
        max_digits=18,
        decimal_places=2,
        allow_inf_nan=False,
        description="the instance's budget, CNY, whole fen; at most the account's unallocated cash",
        examples=["100000.00"],
    )
    mode: Mode = "paper"
    bar_freq: BarFreq = Field(default="1d", description="1d (daily bars); 1m is not available yet")
    order_timing: OrderTiming = Field(
        default="open",
        description="when a bar's orders are sent on the next trading day: open_auction (09:15-09:20) or open",
    )
    costs: CostModel = Field(default_factory=CostModel, description="fees and fill rules of its paper fills")
    reload: Reload = Field(default="manual", description="auto: take a changed strategy file between bars")
    cancel_open_orders_on_stop: StrictBool = Field(
        default=True, description="stopping cancels the instance's open orders (a stop may say otherwise)"
    )


class ParamsUpdate(RequestModel):
    """New parameters (all of them; defaults fill in what is left out): a new version, only while paused."""

    params: dict[str, Any]


class ReplaySpec(RequestModel):
    """Play the instance over stored history on this platform's replay market clock (LH_MARKET_CLOCK=replay)."""

    start: TradeDate = Field(description="the first replayed trading day")
    end: TradeDate = Field(description="the last replayed trading day")
    days_per_second: FiniteFloat | None = Field(
        default=None, ge=0.01, le=10_000, allow_inf_nan=False, description="pace; null: as fast as the path goes"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReplaySpec:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class StartRequest(RequestModel):
    replay: ReplaySpec | None = Field(default=None, description="replay history instead of trading the real clock")


class SleevePosition(BaseModel):
    ts_code: str
    qty: int
    sellable_qty: int
    cost: str = Field(description="CNY: what the shares held cost, fees included")
    market_value: str = Field(description="CNY at the last close the instance has seen")


class SleeveOut(BaseModel):
    """The instance's part of its account: what the instance's orders are checked against (each order carries its
    own copy to risk, computed as it is sent)."""

    instance_id: str
    account_id: str
    owner: str
    state: str
    capital: str
    cash: str = Field(description="CNY: capital + sells - buys - fees")
    cash_available: str = Field(description="CNY: cash less what the instance's open buys may still spend")
    market_value: str
    equity: str
    realised_pnl: str
    unrealised_pnl: str
    fees: str
    bar_date: str | None = Field(description="the last bar the instance has processed")
    positions: list[SleevePosition]


class DayPosition(BaseModel):
    ts_code: str
    qty: int
    sellable_qty: int = Field(description="sellable that day (T+1: not the shares bought that day)")
    cost: str = Field(description="CNY: what the shares held cost, fees included")
    close: str = Field(description="CNY: the day's close")
    market_value: str = Field(description="CNY: qty x close")


class InstanceDayOut(BaseModel):
    """An instance's sleeve at a day's close, as the runner recorded it when it marked the day."""

    trade_date: str
    cash: str = Field(description="CNY: capital + sells - buys - fees, at the close")
    market_value: str = Field(description="CNY: the positions at the day's close")
    equity: str = Field(description="CNY: cash + market value")
    realised_pnl: str = Field(description="CNY, since the instance began: sells' proceeds less fees less their cost")
    day_realised_pnl: str = Field(description="CNY: the realised P&L of that day's sells")
    unrealised_pnl: str = Field(description="CNY: market value less the cost of what is held")
    fees: str = Field(description="CNY: that day's fees")
    total_fees: str = Field(description="CNY: fees since the instance began")
    turnover: str = Field(description="CNY: that day's traded amount, buys and sells")


class InstanceDayDetailOut(InstanceDayOut):
    positions: list[DayPosition]


class AllocatedInstance(BaseModel):
    instance_id: str
    strategy: str
    state: str
    capital: str = Field(description="CNY")


class AllocationOut(BaseModel):
    """An account's cash as its strategy instances share it."""

    account_id: str
    balance: str = Field(description="CNY: the account's cash balance (execution's)")
    allocated: str = Field(description="CNY: the capital of the account's instances that are not stopped")
    unallocated: str = Field(description="CNY: balance - allocated; what a new instance's capital may take")
    instances: list[AllocatedInstance] = Field(description="the instances that hold the allocated capital")


class StopRequest(RequestModel):
    cancel_open_orders: StrictBool | None = Field(
        default=None, description="cancel the instance's open orders (default: the instance's own setting)"
    )


class InstanceOut(BaseModel):
    instance_id: str = Field(description="32 hex characters: the strategy_instance_id of its orders")
    strategy: str
    owner: str
    account_id: str
    params: dict[str, Any]
    params_version: int
    universe: dict[str, Any]
    capital: str = Field(description="CNY, a decimal string")
    mode: Mode
    bar_freq: BarFreq
    order_timing: OrderTiming
    costs: dict[str, Any]
    reload: Reload
    cancel_open_orders_on_stop: bool
    state: InstanceState
    error: str | None = Field(description="a failed instance's traceback")
    created_at: datetime
    updated_at: datetime


class ParamsVersionOut(BaseModel):
    version: int
    params: dict[str, Any]
    created_by: str
    created_at: datetime


class AuditEntryOut(BaseModel):
    action: str = Field(
        description="created, started, paused, resumed, stopped, failed, reloaded, params_updated or deleted"
    )
    actor: str = Field(description="the username, or svc:strategy for the runner")
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime


class IndicatorAsk(RequestModel):
    name: str = Field(min_length=1, max_length=32, description="a catalogue name, e.g. MACD, BBANDS, KDJ_CN")
    params: dict[str, StrictInt | FiniteFloat] = Field(
        default_factory=dict, max_length=8, description="the indicator's parameters by name; left out: defaults"
    )


class IndicatorSeriesRequest(RequestModel):
    """Indicators over one security's stored daily bars (unadjusted, in CNY), for a chart."""

    ts_code: str = Field(min_length=9, max_length=9, description="e.g. 600000.SH")
    start: TradeDate
    end: TradeDate
    indicators: list[IndicatorAsk] = Field(min_length=1, max_length=8)


class IndicatorSeries(BaseModel):
    name: str
    params: dict[str, int | float]
    outputs: dict[str, list[float | None]] = Field(description="each as long as `dates`; null in the warm-up")


class IndicatorSeriesOut(BaseModel):
    ts_code: str
    dates: list[date]
    series: list[IndicatorSeries]
