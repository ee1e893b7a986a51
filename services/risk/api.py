"""Risk's routes: thin wrappers over the risk desk. All require the internal token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from services.risk.deps import Caller, Desk, Store
from services.risk.schemas import DecisionOut, OrderRefused, OrderRequest, PlacedOrder

router = APIRouter(prefix="/v1", tags=["risk"])


@router.post(
    "/orders",
    status_code=201,
    response_model=PlacedOrder,
    responses={
        200: {"model": PlacedOrder, "description": "repeated client_order_id: the existing order"},
        409: {"model": OrderRefused, "description": "client_order_id already used with different terms"},
        422: {"model": OrderRefused, "description": "order_rejected (or invalid_request for a malformed body)"},
        502: {"model": OrderRefused, "description": "execution_refused: execution did not accept the approval"},
        503: {"model": OrderRefused, "description": "risk_unavailable or execution_unavailable (retry)"},
    },
)
async def place_order(order: OrderRequest, principal: Caller, desk: Desk) -> JSONResponse:
    placement = await desk.place(order, principal)
    return JSONResponse(placement.body, status_code=placement.status_code)


@router.get("/decisions", response_model=list[DecisionOut])
async def list_decisions(
    principal: Caller, store: Store, limit: int = Query(default=50, ge=1, le=500)
) -> list[dict[str, Any]]:
    account = None if principal.acts_for_everyone else (principal.account_id or principal.subject)
    return [d.as_json() for d in await store.recent(account_id=account, limit=limit)]
