"""Routes of the backtest service (all require the internal token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.backtest.schemas import BacktestAccepted, BacktestBrief, BacktestDetail, BacktestRequest
from services.backtest.service import BacktestService
from shared.internal_auth import Principal

router = APIRouter(prefix="/v1/backtests", tags=["backtests"])


def _service(request: Request) -> BacktestService:
    service: BacktestService = request.app.state.backtests
    return service


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


@router.post("", status_code=202, response_model=BacktestAccepted)
async def submit_backtest(body: BacktestRequest, request: Request) -> BacktestAccepted:
    record = await _service(request).submit(_principal(request), body)
    return BacktestAccepted(backtest_id=record.backtest_id, status=record.status.value)


@router.get("", response_model=list[BacktestBrief])
async def list_backtests(request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[BacktestBrief]:
    return await _service(request).list(_principal(request), limit)


@router.get("/{backtest_id}", response_model=BacktestDetail)
async def get_backtest(backtest_id: str, request: Request) -> BacktestDetail:
    return await _service(request).get(_principal(request), backtest_id)
