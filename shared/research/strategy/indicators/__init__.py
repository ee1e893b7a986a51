"""Technical indicators for strategies: every TA-Lib function by name through one catalogue, the A-share staples
TA-Lib lacks (KDJ, MACD as Chinese software shows it, N-day momentum, rolling z-score), and exact moving-average
crossovers on prices in integer fen. Definitions: docs/indicators.md."""

from shared.research.strategy.indicators.ashare import kdj, macd_cn, momentum, rolling_zscore
from shared.research.strategy.indicators.catalogue import (
    IndicatorInfo,
    ParameterChoice,
    ParameterInfo,
    UnknownIndicatorError,
    compute,
    indicator_info,
    list_indicators,
    lookback,
)
from shared.research.strategy.indicators.exact import crossover, crossunder, sma_fen_sums

__all__ = [
    "IndicatorInfo",
    "ParameterChoice",
    "ParameterInfo",
    "UnknownIndicatorError",
    "compute",
    "crossover",
    "crossunder",
    "indicator_info",
    "kdj",
    "list_indicators",
    "lookback",
    "macd_cn",
    "momentum",
    "rolling_zscore",
    "sma_fen_sums",
]
