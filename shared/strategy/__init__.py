"""The strategy API: the `Strategy` base class, its parameters, the context an engine gives it, and discovery
of the strategies in the `strategies` package."""

from shared.strategy.base import Strategy, StrategyParams
from shared.strategy.context import CrossSection, OrderEvent, StrategyContext, StrategyError, TradeEvent
from shared.strategy.registry import (
    StrategyDefinitionError,
    StrategyInfo,
    describe,
    describe_all,
    discover_strategies,
    strategies_by_name,
)

__all__ = [
    "CrossSection",
    "OrderEvent",
    "Strategy",
    "StrategyContext",
    "StrategyDefinitionError",
    "StrategyError",
    "StrategyInfo",
    "StrategyParams",
    "TradeEvent",
    "describe",
    "describe_all",
    "discover_strategies",
    "strategies_by_name",
]
