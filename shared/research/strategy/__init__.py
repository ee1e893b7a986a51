"""The strategy API: the `Strategy` base class, its parameters, the context an engine gives it, and discovery
of the strategies in the `strategies` package."""

from shared.core.domain.codes import InvalidTsCode, parse_ts_code
from shared.research.strategy.base import Strategy, StrategyParams
from shared.research.strategy.context import (
    CrossSection,
    FloatArray,
    OrderEvent,
    StrategyContext,
    StrategyError,
    TradeEvent,
)
from shared.research.strategy.registry import (
    StrategyDefinitionError,
    StrategyInfo,
    describe,
    describe_all,
    discover_strategies,
    strategies_by_name,
)

# Strategies import only this package (an import contract in .importlinter): what they need of the kernel is
# re-exported here, e.g. reading a ts_code.
__all__ = [
    "CrossSection",
    "FloatArray",
    "InvalidTsCode",
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
    "parse_ts_code",
    "strategies_by_name",
]
