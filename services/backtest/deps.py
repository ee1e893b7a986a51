"""The backtest service's dependency aliases for its routes: the caller (`Caller`), the backtests (`Backtests`, the
service over its store and bus) and the optimisations' store (`Optimisations`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.backtest.service import BacktestService
from services.backtest.store import OptimisationStore
from shared.platform.internal_auth import Caller

__all__ = ["Backtests", "Caller", "Optimisations", "get_backtests", "get_optimisations"]


def get_backtests(request: Request) -> BacktestService:
    service: BacktestService = request.app.state.backtests
    return service


def get_optimisations(request: Request) -> OptimisationStore:
    return OptimisationStore(request.app.state.db)


Backtests = Annotated[BacktestService, Depends(get_backtests)]
Optimisations = Annotated[OptimisationStore, Depends(get_optimisations)]
