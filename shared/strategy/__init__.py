"""The strategy API: the `Strategy` base class, its parameters, the context an engine gives it, and discovery
of the strategies in the `strategies` package."""

from shared.strategy.base import Strategy, StrategyParams
from shared.strategy.context import StrategyContext
from shared.strategy.registry import (
    StrategyDefinitionError,
    StrategyInfo,
    describe,
    describe_all,
    discover_strategies,
    strategies_by_name,
)

__all__ = [
    "Strategy",
    "StrategyContext",
    "StrategyDefinitionError",
    "StrategyInfo",
    "StrategyParams",
    "describe",
    "describe_all",
    "discover_strategies",
    "strategies_by_name",
]
