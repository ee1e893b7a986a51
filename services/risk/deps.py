"""Risk's dependency aliases for its routes: the caller (`Caller`), the risk desk (`Desk`) and its store (`Store`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.risk.desk import RiskDesk
from services.risk.store import RiskStore
from shared.platform.internal_auth import Caller

__all__ = ["Caller", "Desk", "Store", "get_desk", "get_store"]


def get_desk(request: Request) -> RiskDesk:
    desk: RiskDesk = request.app.state.desk
    return desk


def get_store(request: Request) -> RiskStore:
    store: RiskStore = request.app.state.store
    return store


Desk = Annotated[RiskDesk, Depends(get_desk)]
Store = Annotated[RiskStore, Depends(get_store)]
