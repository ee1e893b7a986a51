"""The strategy API: a `Strategy` subclass names itself, declares its parameters as a pydantic model, and
reacts to the lifecycle hooks an engine calls. The same class runs in a backtest now and, once the engine
grows, in paper and live trading."""

from __future__ import annotations

import numbers
import types
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from shared.research.strategy.context import CrossSection, OrderEvent, StrategyContext, TradeEvent


def _plain_types(annotation: Any) -> set[type]:
    """The classes an annotation admits (`int | None` -> {int, NoneType}); empty for anything else."""
    if get_origin(annotation) in (Union, types.UnionType):
        return {t for arg in get_args(annotation) for t in _plain_types(arg)}
    return {annotation} if isinstance(annotation, type) else set()


class StrategyParams(BaseModel):
    """Base of every strategy's `Params`. Unknown keys are refused, so a typo in a parameter name is an
    error the user sees instead of a default silently used. Numbers are read strictly, as request bodies are
    (shared/platform/request_model.py): an `int` parameter takes an integer only (not `true`, `"5"`, `5.0` or `1e3`),
    a `bool`
    only true/false, a `float` or `Decimal` a number (a Decimal also a decimal string like "0.05"), never a bool."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        kinds = _plain_types(field.annotation) if field is not None else set()
        if value is None or not kinds & {int, float, bool, Decimal}:
            return value
        if bool in kinds:
            if not isinstance(value, bool):
                raise ValueError(f"{value!r} is not true or false")
            return value
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        if int in kinds and not kinds & {float, Decimal}:
            # numpy integers (an optimiser's grid) are whole numbers too; floats, even 5.0, and text are not
            if not isinstance(value, numbers.Integral):
                raise ValueError(f"{value!r} is not an integer")
            return value
        if isinstance(value, str) and Decimal not in kinds:
            raise ValueError(f"{value[:40]!r} is not a number")
        return value


class Strategy:
    """Base class of every strategy.

    Class attributes:
      `name`        the id used in API calls (`^[a-z][a-z0-9_]*$`), e.g. "buy_and_hold"
      `title`       a short human title
      `description` what the strategy does and the assumptions it makes
      `Params`      a `StrategyParams` subclass; its JSON schema is the strategy's parameter schema
      `persist`     the attributes (dotted paths allowed, e.g. "_rotation.target") a live or paper run stores after
                    every bar and every round of fills and puts back when the instance resumes after a restart: the
                    state the strategy keeps between bars (numpy arrays or JSON values). Default none: a strategy whose
                    decisions depend only on the context (history, positions) needs nothing.
      `bar_fields`  the Tushare daily_basic fields (e.g. "pe_ttm", "pb", "turnover_rate") it reads as extra columns of
                    the bars with `ctx.history(name, adjusted=False)`; the backtest service fetches these with the
                    bars (and only these: a whole market of every field would not fit in memory). Default none.

    Lifecycle, as an engine drives it (all hooks are synchronous and must not do I/O):
      1. `on_init(ctx)`  once, before the first bar; no history is visible yet. Orders placed here fill on the
         first day.
      2. `on_bar(ctx, bar)` once per trading day, after the day's bars are known, with the day's cross-section
         over the whole universe (`bar.has_bar` False for the symbols that did not trade). The strategy sees the
         day's close, so its orders fill on a later bar: a backtest never trades at a price the strategy could
         not have traded at.
      3. `on_order(ctx, event)` when an order is settled (filled, partly filled, cancelled, rejected), and
         `on_trade(ctx, event)` for each fill; the engine calls them only when a strategy overrides them, so
         strategies that do not listen pay nothing.
      4. `on_stop(ctx)`  once, after the last bar.

    Strategies should be vectorised over the universe: read `ctx.history(...)` / `ctx.indicator(...)` as
    days x symbols arrays and place orders for many symbols with one call (see strategies/dual_ma.py).

    An exception raised from a hook fails the run.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    bar_fields: ClassVar[tuple[str, ...]] = ()
    persist: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: StrategyParams | Mapping[str, Any] | None = None) -> None:
        if params is None or isinstance(params, Mapping):
            params = self.parse_params(params)
        elif not isinstance(params, self.Params):
            raise TypeError(f"{type(self).__name__} takes {self.Params.__name__}, not {type(params).__name__}")
        self.params = params

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any] | None) -> StrategyParams:
        """Validate raw parameters (e.g. from a request); raises pydantic.ValidationError naming the field."""
        return cls.Params.model_validate(dict(raw or {}))

    @classmethod
    def parameter_schema(cls) -> dict[str, Any]:
        return cls.Params.model_json_schema()

    def warmup_bars(self) -> int:
        """How many bars of history the strategy reads before its decisions mean anything (its longest lookback).
        A live or paper instance loads at least this many trading days before its first bar and refuses to start,
        naming the missing days, when the data service has fewer. Default 0: none."""
        return 0

    def on_init(self, ctx: StrategyContext) -> None:
        """Called once before the first bar."""

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        """Called once per trading day with the day's cross-section."""

    def on_order(self, ctx: StrategyContext, event: OrderEvent) -> None:
        """Called when an order is settled."""

    def on_trade(self, ctx: StrategyContext, event: TradeEvent) -> None:
        """Called for each fill."""

    def on_stop(self, ctx: StrategyContext) -> None:
        """Called once after the last bar."""
