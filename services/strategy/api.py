"""Routes of the strategy service (all require the internal token)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from shared.errors import NotFound
from shared.strategy import StrategyInfo

router = APIRouter(prefix="/v1/strategies", tags=["strategies"])


def _catalogue(request: Request) -> dict[str, StrategyInfo]:
    catalogue: dict[str, StrategyInfo] = request.app.state.strategies
    return catalogue


@router.get("", response_model=list[StrategyInfo])
async def list_strategies(request: Request) -> list[StrategyInfo]:
    return list(_catalogue(request).values())


@router.get("/{name}", response_model=StrategyInfo)
async def get_strategy(name: str, request: Request) -> StrategyInfo:
    info = _catalogue(request).get(name)
    if info is None:
        raise NotFound("unknown_strategy", f"there is no strategy named {name!r}")
    return info
