"""The strategy service's response models. It answers with the strategy API's own descriptions (the same models
the backtest service and the strategy authors use, so their OpenAPI names stay `StrategyInfo` and `IndicatorInfo`),
and its errors are the platform's `{code, message}` body; it takes no request bodies."""

from __future__ import annotations

from shared.research.strategy import StrategyInfo
from shared.research.strategy.indicators import IndicatorInfo

__all__ = ["IndicatorInfo", "StrategyInfo"]
