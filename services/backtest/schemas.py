"""The REST shapes of the backtest service: what a client sends and what it gets back (backtests and parameter
optimisations)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from shared.platform.request_model import FiniteFloat, JsonDecimal, RequestModel, StrictBool, StrictInt, TradeDate
from shared.platform.universe import INDEX_CODE, MAX_SYMBOLS, CostModel, Universe, normalized_codes
from shared.research.engine.optimize import GeneticSettings

if TYPE_CHECKING:
    from services.backtest.store import OptimisationRecord

DEFAULT_INITIAL_CASH = Decimal("1000000")
DEFAULT_BENCHMARK = "000300.SH"


class OptimisationConfig(CostModel):
    """The settings of an optimisation's backtests: BacktestConfig's fields other than start and end (given at the
    top level), read as strictly as the rest of a request; each left out takes the engine's default."""

    initial_cash: JsonDecimal | None = Field(default=None, gt=0, max_digits=18, decimal_places=2)
    price_limits: StrictBool | None = None
    lots: StrictBool | None = None
    t_plus_one: StrictBool | None = None
    st_codes: list[str] | None = Field(default=None, description="symbols under ST all run long (5% limits)")
    list_dates: dict[str, TradeDate] | None = Field(default=None, description="listing dates, for the IPO days")
    calendar: list[TradeDate] | None = Field(default=None, description="the trading days (default: the bars' days)")
    adjust_history: StrictBool | None = None
    risk_free_rate: FiniteFloat | None = Field(default=None, description="annual, e.g. 0.02")
    var_level: FiniteFloat | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _no_dates(cls, data: object) -> object:
        if isinstance(data, dict) and {"start", "end"} & set(data):
            raise ValueError("give start and end at the top level, not in config")
        return data


MIN_SLEEVES, MAX_SLEEVES = 2, 10


class SleeveRequest(RequestModel):
    """One strategy of a run with several: its parameters (validated against its schema), its share of the initial
    cash (give a weight for every sleeve, adding up to 1, or for none: equal shares) and a label for the report."""

    strategy: str = Field(max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    weight: JsonDecimal | None = Field(default=None, gt=0, le=1, description="e.g. 0.5; all given or none")
    label: str | None = Field(
        default=None, min_length=1, max_length=64, description="default: the strategy's name (#n when repeated)"
    )


class BacktestRequest(RequestModel):
    strategy: str = Field(default="buy_and_hold", max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    sleeves: list[SleeveRequest] | None = Field(
        default=None,
        min_length=MIN_SLEEVES,
        max_length=MAX_SLEEVES,
        description="instead of strategy + params: several strategies (or parameter sets) side by side on the same "
        "data, and their combined portfolio",
    )
    name: str | None = Field(default=None, max_length=128, description="a label to find the run by")
    universe: Universe | None = None
    ts_codes: list[str] | None = Field(
        default=None, min_length=1, max_length=MAX_SYMBOLS, description="shorthand for universe.ts_codes"
    )
    start: TradeDate
    end: TradeDate
    initial_cash: JsonDecimal = Field(default=DEFAULT_INITIAL_CASH, gt=0, max_digits=18, decimal_places=2)
    costs: CostModel = Field(default_factory=CostModel)
    benchmark: str | None = Field(
        default=DEFAULT_BENCHMARK,
        pattern=INDEX_CODE,
        description="an index code; null for none. Left out: 000300.SH when the data service has it, else none",
    )

    @field_validator("ts_codes")
    @classmethod
    def _known_codes(cls, codes: list[str] | None) -> list[str] | None:
        return None if codes is None else normalized_codes(codes)

    @field_validator("end")
    @classmethod
    def _end_not_before_start(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is not None and end < start:
            raise ValueError(f"end {end} is before start {start}")
        return end

    @property
    def benchmark_required(self) -> bool:
        """An index asked for by name must be there; the default one is used only when the data service has it."""
        return "benchmark" in self.model_fields_set and self.benchmark is not None


class BacktestAccepted(BaseModel):
    backtest_id: str
    status: str


class EquityPoint(BaseModel):
    trade_date: date
    equity: Decimal


class BacktestBrief(BaseModel):
    backtest_id: str
    status: str
    owner: str
    name: str | None
    strategy: str
    params: dict[str, Any]
    universe: dict[str, Any] | None  # as asked: {ts_codes} | {index} | {filter}
    ts_codes: list[str]  # the symbols run (an index or filter is resolved when the run starts)
    costs: dict[str, Any]
    benchmark: str | None
    cancel_requested: bool
    start: date
    end: date
    initial_cash: Decimal
    summary: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BacktestDetail(BacktestBrief):
    equity_curve: list[EquityPoint]


class TradeRow(BaseModel):
    trade_date: date
    ts_code: str
    side: str
    qty: int
    price: Decimal
    amount: Decimal
    commission: Decimal
    stamp_duty: Decimal
    transfer_fee: Decimal
    fees: Decimal
    realised_pnl: Decimal | None
    order_id: int  # per sleeve in a run with several strategies
    sleeve: str | None = None  # the sleeve's label, in a run with several strategies


class TcaGroup(BaseModel):
    """Orders' costs added up in fen and divided once (notional-weighted bps, 2 places half-up), as execution's
    `GET /v1/tca/summary` groups them."""

    key: str | None = Field(description="the decision's day (YYYY-MM-DD); null: over every order")
    orders: int
    filled_amount: Decimal
    fees: Decimal
    fees_bps: Decimal | None
    arrival_orders: int
    slippage_vs_arrival: Decimal
    slippage_vs_arrival_bps: Decimal | None


class BacktestOrderTca(BaseModel):
    """One order of a backtest against its decision's close (docs/tca.md, "Backtests"): slippage is a cost, positive
    when the fills were worse (a buy paid more, a sell got less); VWAP to 4 places, bps to 2, half-up."""

    sleeve: str | None = None
    order_id: int
    ts_code: str
    side: str
    decision_date: date | None = Field(description="the day the strategy decided on (null: before the first day)")
    arrival_price: Decimal | None = Field(description="the decision day's close of the symbol")
    first_fill_date: date
    last_fill_date: date
    filled_qty: int
    filled_amount: Decimal
    fill_vwap: Decimal
    fees: Decimal
    fees_bps: Decimal | None
    slippage_vs_arrival: Decimal | None
    slippage_vs_arrival_bps: Decimal | None


class BacktestTca(BaseModel):
    backtest_id: str
    total_orders: int
    limit: int
    offset: int
    orders: list[BacktestOrderTca] = Field(description="the page of orders, in the order of their first trade")
    by_day: list[TcaGroup] = Field(description="every order, by the decision's day")
    total: TcaGroup


class TradesPage(BaseModel):
    backtest_id: str
    total: int
    limit: int
    offset: int
    trades: list[TradeRow]


# --- parameter optimisation ---------------------------------------------------------------------------------


class WalkForwardSpec(RequestModel):
    in_sample: StrictInt = Field(ge=1)
    out_of_sample: StrictInt = Field(ge=1)
    step: StrictInt | None = Field(default=None, ge=1)
    anchored: StrictBool = False
    search: Literal["grid", "ga"] = "grid"


class GeneticSpec(RequestModel):
    """A genetic search's settings (`GeneticSettings`, whose defaults these are), read strictly: a misspelt name,
    `"30"` for 30 or a rate out of [0, 1] is a 422 naming the field, not a failure later in a worker."""

    population: StrictInt = Field(default=GeneticSettings.population, ge=2)
    generations: StrictInt = Field(default=GeneticSettings.generations, ge=1)
    budget: StrictInt = Field(default=GeneticSettings.budget, ge=1, description="distinct points evaluated at most")
    tournament: StrictInt = Field(default=GeneticSettings.tournament, ge=1)
    crossover_rate: FiniteFloat = Field(default=GeneticSettings.crossover_rate, ge=0, le=1)
    mutation_rate: FiniteFloat = Field(default=GeneticSettings.mutation_rate, ge=0, le=1, description="per gene")
    elite: StrictInt = Field(default=GeneticSettings.elite, ge=0)
    seed: StrictInt = GeneticSettings.seed

    @model_validator(mode="after")
    def _elite_below_population(self) -> GeneticSpec:
        if self.elite >= self.population:
            raise ValueError(f"elite {self.elite} must be below population {self.population}")
        return self

    def settings(self) -> GeneticSettings:
        return GeneticSettings(**self.model_dump())


class OptimisationRequest(RequestModel):
    """What a user asks for. Bad input is an OptimisationError / ValidationError naming the field."""

    strategy: str
    method: Literal["grid", "ga", "walkforward"] = "grid"
    space: dict[str, Any]
    fixed: dict[str, Any] = Field(default_factory=dict)
    objective: str = "sharpe"
    direction: Literal["maximize", "minimize"] = "maximize"
    constraints: list[str] = Field(default_factory=list)
    ga: GeneticSpec = Field(default_factory=GeneticSpec)
    walk_forward: WalkForwardSpec | None = None
    ts_codes: list[str] = Field(min_length=1)
    start: TradeDate
    end: TradeDate
    config: OptimisationConfig = Field(default_factory=OptimisationConfig)
    batch_size: StrictInt | None = Field(default=None, ge=1, le=1000)  # None: chosen from the number of points

    @model_validator(mode="after")
    def _check(self) -> OptimisationRequest:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if self.method == "walkforward" and self.walk_forward is None:
            raise ValueError("walk_forward: required for method walkforward")
        return self


class OptimisationOut(BaseModel):
    optimisation_id: str
    owner: str
    strategy: str
    method: str
    status: str
    objective: dict[str, Any]
    constraints: list[str]
    space: dict[str, Any]
    total_points: int
    done_points: int
    skipped_points: int
    generation: int
    best: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None

    @classmethod
    def of(cls, r: OptimisationRecord) -> OptimisationOut:
        return cls(
            optimisation_id=r.optimisation_id,
            owner=r.owner,
            strategy=r.strategy,
            method=r.method,
            status=r.status.value,
            objective=r.objective,
            constraints=r.constraints,
            space=r.space,
            total_points=r.total_points,
            done_points=r.done_points,
            skipped_points=r.skipped_points,
            generation=r.generation,
            best=r.best,
            result=r.result,
            error=r.error,
        )
