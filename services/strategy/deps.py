"""The strategy service's dependency aliases for its routes: the caller (`Caller`) and the installed strategies,
described once at start-up (`Catalogue`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.strategy.schemas import StrategyInfo
from shared.platform.internal_auth import Caller

__all__ = ["Caller", "Catalogue", "get_catalogue"]


def get_catalogue(request: Request) -> dict[str, StrategyInfo]:
    catalogue: dict[str, StrategyInfo] = request.app.state.strategies
    return catalogue


Catalogue = Annotated[dict[str, StrategyInfo], Depends(get_catalogue)]
