"""The strategy API: a `Strategy` subclass names itself, declares its parameters as a pydantic model, and
reacts to the lifecycle hooks an engine calls. The same class runs in a backtest now and, once the engine
grows, in paper and live trading."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from shared.domain.models import Bar
from shared.strategy.context import StrategyContext


class StrategyParams(BaseModel):
    """Base of every strategy's `Params`. Unknown keys are refused, so a typo in a parameter name is an
    error the user sees instead of a default silently used."""

    model_config = ConfigDict(extra="forbid")


class Strategy:
    """Base class of every strategy.

    Class attributes:
      `name`        the id used in API calls (`^[a-z][a-z0-9_]*$`), e.g. "buy_and_hold"
      `title`       a short human title
      `description` what the strategy does and the assumptions it makes
      `Params`      a `StrategyParams` subclass; its JSON schema is the strategy's parameter schema

    Lifecycle, as an engine drives it (all hooks are synchronous and must not do I/O):
      1. `on_init(ctx)`  once, before the first bar; orders placed here fill at the first open.
      2. `on_bar(ctx, bars)` once per trading day, after that day's bars are known, with the bars of the
         symbols that traded that day (suspended symbols are absent). The strategy sees the day's close,
         so orders placed here fill at a later open: a backtest never trades on prices it could not have
         known.
      3. `on_stop(ctx)`  once, after the last bar.

    An exception raised from a hook fails the run; the engine records the traceback.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: StrategyParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any] | None) -> StrategyParams:
        """Validate raw parameters (e.g. from a request); raises pydantic.ValidationError naming the field."""
        return cls.Params.model_validate(dict(raw or {}))

    @classmethod
    def parameter_schema(cls) -> dict[str, Any]:
        return cls.Params.model_json_schema()

    def on_init(self, ctx: StrategyContext) -> None:
        """Called once before the first bar."""

    def on_bar(self, ctx: StrategyContext, bars: Mapping[str, Bar]) -> None:
        """Called once per trading day with the bars of the symbols that traded, keyed by ts_code."""

    def on_stop(self, ctx: StrategyContext) -> None:
        """Called once after the last bar."""
