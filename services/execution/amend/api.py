"""Execution's amend routes (docs/order-path.md "Amending an order"): amend an order (cancel-replace), read an amend.
Traders amend their own open limit orders; viewers read their own account's amends, admins and services all."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from services.execution.amend.service import Amender
from services.execution.deps import CurrentPrincipal
from shared.platform.request_model import JsonDecimal, RequestModel, StrictInt

router = APIRouter(prefix="/v1", tags=["execution"])


class AmendIn(RequestModel):
    """The order's new terms: `price` (a limit price on the 0.01 tick), `qty` (the new TOTAL quantity, filled shares
    included: it must exceed what has filled), or both. A term left out keeps the order's."""

    price: Annotated[JsonDecimal, Field(gt=0, max_digits=12, decimal_places=2, allow_inf_nan=False)] | None = Field(
        default=None, description='the new limit price, e.g. "10.05"'
    )
    qty: StrictInt | None = Field(default=None, gt=0, le=10**9, description="the new total quantity, in shares")

    @model_validator(mode="after")
    def _something(self) -> AmendIn:
        if self.price is None and self.qty is None:
            raise ValueError("an amend names price, qty or both")
        return self


class ReasonOut(BaseModel):
    code: str
    message: str


class AmendOut(BaseModel):
    """An amend: the original's cancel, then its replacement (docs/order-path.md "Amending an order")."""

    amend_id: str
    order_id: str = Field(description="the original order")
    account_id: str
    ts_code: str
    side: str
    old_qty: int
    old_price: Decimal
    new_qty: int = Field(description="the new total quantity asked for")
    new_price: Decimal
    status: str = Field(
        description="cancelling (the original's cancel awaits its confirmation) | replacing (confirmed; the "
        "replacement is being decided by risk) | replaced | replacement_refused (the original stays cancelled) | "
        "not_needed (the original filled before its cancel took) | expired (not placed by the session's close) | "
        "cancelled_by_user (the user cancelled the order, or a cancel-all reached it, first: no replacement)"
    )
    filled_qty: int | None = Field(description="what the original had filled when it ended")
    replacement_qty: int | None = Field(description="new_qty - filled_qty: what the replacement is for")
    replacement_client_order_id: str = Field(description="amend-<order_id>: the same order however often attempted")
    replacement_order_id: str | None
    decision_id: str | None = Field(description="risk's decision on the replacement")
    reasons: list[ReasonOut] = Field(description="why the replacement was refused (risk's reasons), or expired")
    message: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


def get_amender(request: Request) -> Amender:
    amender: Amender = request.app.state.amender
    return amender


AmenderDep = Annotated[Amender, Depends(get_amender)]


@router.post(
    "/orders/{order_id}/amend",
    status_code=202,
    response_model=AmendOut,
    responses={
        403: {"description": "`forbidden`: not a trader, or not the order's own account"},
        404: {"description": "`order_not_found`"},
        409: {
            "description": "`order_not_amendable`: the order is final (filled, cancelled, rejected), was amended "
            "already, is a strategy instance's, or is too late to cancel; `amend_in_progress`"
        },
        422: {
            "description": "`order_not_amendable` (a market order), `qty_not_above_filled`, `lot_size`, "
            "`amend_changes_nothing`, `invalid_request`; or risk's refusal of the new terms before the cancel "
            "(its first reason's code, e.g. `price_limit`, `price_tick`, `price_cage`, `exchange_max_qty`, "
            "`insufficient_position`, all of them in `details.reasons`): the field is named; nothing was sent"
        },
        503: {
            "description": "`broker_unavailable`: the broker could not take the cancel; `risk_unavailable`: risk "
            "could not check the new terms; nothing was changed"
        },
    },
)
async def amend_order(order_id: str, body: AmendIn, principal: CurrentPrincipal, amender: AmenderDep) -> JSONResponse:
    """Amend an open limit order's price and/or total quantity as cancel-replace: risk checks the new terms first
    (price limits, tick, price cage, the board's maximum, a sell's shares: 422, nothing cancelled); the original is
    then cancelled and,
    once its cancel is confirmed, a replacement for the new total less what the original filled is decided by risk
    and placed (`replacement_order_id`; the original's `replaced_by`). 202 with the amend: `replaced` when it is done
    already (the paper broker), else follow it with `GET /v1/amends/{amend_id}`. The same request again answers
    the same amend."""
    amend, _created = await amender.request(order_id, body.price, body.qty, principal)
    return JSONResponse(AmendOut.model_validate(amend.as_json()).model_dump(mode="json"), status_code=202)


@router.get("/amends/{amend_id}", response_model=AmendOut, responses={404: {"description": "`amend_not_found`"}})
async def get_amend(amend_id: str, principal: CurrentPrincipal, amender: AmenderDep) -> dict[str, Any]:
    """An amend and what became of it (the caller's own account's; admins and services: any)."""
    return (await amender.get(amend_id, principal)).as_json()
