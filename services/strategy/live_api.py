"""Routes of a strategy instance's trading (all require the internal token): its sleeve — what risk checks its
orders against — and its performance so far."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.strategy.deps import Caller, Instances
from services.strategy.live import Runner
from services.strategy.runner import cny
from services.strategy.schemas import SleeveOut

router = APIRouter(prefix="/v1/strategy-instances", tags=["strategy instances"])


def _runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


@router.get(
    "/{instance_id}/sleeve",
    response_model=SleeveOut,
    responses={404: {"description": "`instance_not_found`"}},
)
async def get_sleeve(instance_id: str, principal: Caller, instances: Instances, request: Request) -> dict[str, Any]:
    """The instance's cash and positions as its own trades made them (T+1 sellable), and what its open buys may still
    spend. Risk reads it for every order the instance sends; a stopped instance shows its last stored state."""
    instance = await instances.visible(principal, instance_id)
    sleeve = await _runner(request).sleeve(instance)
    positions = [
        {
            "ts_code": p["ts_code"],
            "qty": p["qty"],
            "sellable_qty": p["sellable_qty"],
            "cost": cny(p["cost_fen"]),
            "market_value": cny(p["qty"] * p["close_fen"]),
        }
        for p in sleeve["positions"]
    ]
    return {
        "instance_id": instance.instance_id,
        "account_id": instance.account_id,
        "owner": instance.owner,
        "state": instance.state.value,
        "capital": cny(instance.capital_fen),
        "cash": cny(sleeve["cash_fen"]),
        "cash_available": cny(sleeve["cash_available_fen"]),
        "market_value": cny(sleeve["market_value_fen"]),
        "equity": cny(sleeve["cash_fen"] + sleeve["market_value_fen"]),
        "realised_pnl": cny(sleeve["realised_fen"]),
        "unrealised_pnl": cny(sleeve["unrealised_fen"]),
        "fees": cny(sleeve["fees_fen"]),
        "bar_date": sleeve["bar_date"],
        "positions": positions,
    }


@router.get("/{instance_id}/performance", responses={404: {"description": "`instance_not_found`"}})
async def get_performance(instance_id: str, principal: Caller, instances: Instances, request: Request) -> Any:
    """The run so far: the daily equity curve (cash, market value, equity, fees, turnover, realised P&L) and the
    metrics a backtest report gives (shared.research.engine.metrics) over it."""
    instance = await instances.visible(principal, instance_id)
    return await _runner(request).performance(instance)
