"""Routes of the strategy service (all require the internal token): the installed strategies and the indicator
catalogue strategies compute with."""

from __future__ import annotations

from fastapi import APIRouter

from services.strategy.deps import Catalogue
from services.strategy.schemas import IndicatorInfo, StrategyInfo
from shared.platform.errors import NotFound
from shared.research.strategy.indicators import UnknownIndicatorError, indicator_info, list_indicators

# One router under /v1 so that the app factory's `routers=[router]` puts every route behind the internal token.
router = APIRouter(prefix="/v1")


@router.get("/strategies", response_model=list[StrategyInfo], tags=["strategies"])
async def list_strategies(catalogue: Catalogue) -> list[StrategyInfo]:
    return list(catalogue.values())


@router.get(
    "/strategies/{name}",
    response_model=StrategyInfo,
    tags=["strategies"],
    responses={404: {"description": "`{code: unknown_strategy}`"}},
)
async def get_strategy(name: str, catalogue: Catalogue) -> StrategyInfo:
    info = catalogue.get(name)
    if info is None:
        raise NotFound("unknown_strategy", f"there is no strategy named {name!r}")
    return info


@router.get("/indicators", response_model=list[IndicatorInfo], tags=["indicators"])
async def get_indicators() -> list[IndicatorInfo]:
    """Every indicator `shared.research.strategy.indicators.compute` knows: the TA-Lib functions and the A-share
    staples,
    with inputs, parameters (types, defaults) and outputs."""
    return list_indicators()


@router.get(
    "/indicators/{name}",
    response_model=IndicatorInfo,
    tags=["indicators"],
    responses={404: {"description": "`{code: unknown_indicator}`, the message naming the closest names"}},
)
async def get_indicator(name: str) -> IndicatorInfo:
    """One indicator by name (case-insensitive: `sma` is SMA)."""
    try:
        return indicator_info(name)
    except UnknownIndicatorError as exc:
        raise NotFound("unknown_indicator", exc.message, suggestions=exc.suggestions) from exc
