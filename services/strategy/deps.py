"""The strategy service's dependency aliases for its routes: the caller (`Caller`), the installed strategies,
described once at start-up (`Catalogue`), and the strategy instances (`Instances`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.strategy.instances import InstanceService
from services.strategy.schemas import StrategyInfo
from shared.platform.internal_auth import Caller

__all__ = ["Caller", "Catalogue", "Instances", "get_catalogue", "get_instances"]


def get_catalogue(request: Request) -> dict[str, StrategyInfo]:
    catalogue: dict[str, StrategyInfo] = request.app.state.strategies
    return catalogue


def get_instances(request: Request) -> InstanceService:
    instances: InstanceService = request.app.state.instances
    return instances


Catalogue = Annotated[dict[str, StrategyInfo], Depends(get_catalogue)]
Instances = Annotated[InstanceService, Depends(get_instances)]
