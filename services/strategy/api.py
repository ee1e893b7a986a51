"""Routes of the strategy service (all require the internal token): the installed strategies and the indicator
catalogue strategies compute with."""

from __future__ import annotations

import math

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Request

from services.strategy.deps import Catalogue
from services.strategy.schemas import (
    IndicatorInfo,
    IndicatorSeries,
    IndicatorSeriesOut,
    IndicatorSeriesRequest,
    StrategyInfo,
)
from shared.core.domain.codes import InvalidTsCode, parse_ts_code
from shared.platform.errors import NotFound, ServiceError, Unavailable
from shared.platform.market_data import BarsUnavailable, MarketData
from shared.research.strategy.indicators import UnknownIndicatorError, compute, indicator_info, list_indicators

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


MAX_SERIES_DAYS = 366 * 30  # a chart's range: thirty years of daily bars at most


def _series(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.astype(np.float64).tolist()]


@router.post(
    "/indicators/series",
    response_model=IndicatorSeriesOut,
    tags=["indicators"],
    responses={
        404: {"description": "`{code: unknown_indicator}`"},
        422: {"description": "`invalid_request` (a bad parameter, range or code)"},
        503: {"description": "`data_unavailable`: the data service did not give the bars"},
    },
)
async def indicator_series(ask: IndicatorSeriesRequest, request: Request) -> IndicatorSeriesOut:
    """Indicators of the catalogue over one security's stored daily bars in [start, end] (unadjusted prices in CNY,
    volume in shares), computed with `shared.research.strategy.indicators.compute` (TA-Lib and the A-share staples)
    for a chart: one value per bar, null in an indicator's warm-up. Each indicator starts at the range's first bar, so
    the recursive ones (EMA, MACD, KDJ...) depend on where the range starts (docs/indicators.md)."""
    try:
        code = parse_ts_code(ask.ts_code).ts_code
    except InvalidTsCode as exc:
        raise ServiceError("invalid_request", f"ts_code: {exc}", status_code=422) from exc
    if ask.start > ask.end:
        raise ServiceError("invalid_request", f"start {ask.start} is after end {ask.end}", status_code=422)
    if (ask.end - ask.start).days > MAX_SERIES_DAYS:
        raise ServiceError("invalid_request", "end: a range of at most thirty years", status_code=422)
    for item in ask.indicators:  # refused before any bar is read
        try:
            indicator_info(item.name)
        except UnknownIndicatorError as exc:
            raise NotFound("unknown_indicator", exc.message, suggestions=exc.suggestions) from exc
    market: MarketData = request.app.state.market
    try:
        table = await market.bars([code], ask.start, ask.end)
    except BarsUnavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, ServiceError) and not isinstance(cause, Unavailable):
            raise ServiceError(cause.code, cause.message, status_code=cause.status_code) from exc
        raise Unavailable("data_unavailable", str(exc)) from exc
    table = table.sort_by("trade_date")
    data = {
        name: table[name].to_numpy().astype(np.float64) / (1.0 if name == "vol" else 100.0)
        for name in ("open", "high", "low", "close", "vol")
    }
    dates = table["trade_date"].to_pylist()

    def run() -> list[IndicatorSeries]:
        out = []
        for item in ask.indicators:
            try:
                outputs = compute(item.name, data, **item.params) if dates else {}
            except ValueError as exc:
                raise ServiceError("invalid_request", f"{item.name}: {exc}", status_code=422) from exc
            info = indicator_info(item.name)
            if not dates:
                outputs = {name: np.array([]) for name in info.outputs}
            out.append(
                IndicatorSeries(name=info.name, params=item.params, outputs={k: _series(v) for k, v in outputs.items()})
            )
        return out

    return IndicatorSeriesOut(ts_code=code, dates=dates, series=await to_thread.run_sync(run))


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
