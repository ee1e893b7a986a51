"""Routes of a strategy instance's trading (all require the internal token): its sleeve — what its orders are checked
against —, its record of each day it closed, and its performance so far."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from services.strategy.deps import Caller, Instances
from services.strategy.live import Runner
from services.strategy.report import gather, render_instance_report
from services.strategy.runner import cny
from services.strategy.schemas import InstanceDayDetailOut, InstanceDayOut, SleeveOut
from services.strategy.store import InstanceDay
from shared.platform.errors import Unavailable
from shared.platform.request_model import TradeDate

router = APIRouter(prefix="/v1/strategy-instances", tags=["strategy instances"])


def _runner(request: Request) -> Runner:
    runner: Runner | None = request.app.state.runner
    if runner is None:  # an app built with another runner (a test's): it serves no sleeves
        raise Unavailable("runner_unavailable", "this strategy service runs no instances")
    return runner


@router.get(
    "/{instance_id}/sleeve",
    response_model=SleeveOut,
    responses={404: {"description": "`instance_not_found`"}},
)
async def get_sleeve(
    instance_id: str,
    principal: Caller,
    instances: Instances,
    request: Request,
    client_order_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="as this order is checked: its own reservation is not counted in cash_available (the "
            "reservations of every other open order, and of the orders before it in the round being sent, are)",
        ),
    ] = None,
    ts_code: Annotated[
        str | None, Query(min_length=1, max_length=32, description="only this symbol's position in `positions`")
    ] = None,
    session: Annotated[
        TradeDate | None,
        Query(
            description="the trading session the order is for: `sellable_qty` is what may be sold in it (T+1: shares "
            "bought before it), default the instance's current session"
        ),
    ] = None,
) -> dict[str, Any]:
    """The instance's cash and positions as its own trades made them (T+1 sellable), and what its open buys (and the
    buys being sent) may still spend; a stopped instance shows its last stored state. For people and tools: risk does
    not read it (each order of the instance carries its sleeve, computed by the runner as it sends the order, the same
    figures as this answers for that order's client_order_id and ts_code)."""
    instance = await instances.visible(principal, instance_id)
    sleeve = await _runner(request).sleeve(instance, client_order_id=client_order_id, ts_code=ts_code, session=session)
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


def day_out(day: InstanceDay, *, positions: bool) -> dict[str, Any]:
    c = day.close
    out: dict[str, Any] = {
        "trade_date": c.trade_date.isoformat(),
        "cash": cny(c.cash_fen),
        "market_value": cny(c.market_value_fen),
        "equity": cny(c.equity_fen),
        "realised_pnl": cny(c.realised_pnl_fen),
        "day_realised_pnl": cny(c.day_realised_pnl_fen),
        "unrealised_pnl": cny(c.unrealised_pnl_fen),
        "fees": cny(c.fees_fen),
        "total_fees": cny(c.total_fees_fen),
        "turnover": cny(c.turnover_fen),
    }
    if positions:
        out["positions"] = [
            {
                "ts_code": p["ts_code"],
                "qty": int(p["qty"]),
                "sellable_qty": int(p["sellable_qty"]),
                "cost": cny(int(p["cost_fen"])),
                "close": cny(int(p["close_fen"])),
                "market_value": cny(int(p["market_value_fen"])),
            }
            for p in c.positions
        ]
    return out


@router.get(
    "/{instance_id}/days",
    response_model=list[InstanceDayOut],
    responses={
        404: {"description": "`instance_not_found`"},
        422: {"description": "`invalid_request` (a date that is not YYYY-MM-DD or YYYYMMDD), `invalid_range`"},
    },
)
async def list_days(
    instance_id: str,
    principal: Caller,
    instances: Instances,
    start: Annotated[TradeDate | None, Query(description="the first trading day, YYYY-MM-DD or YYYYMMDD")] = None,
    end: Annotated[TradeDate | None, Query(description="the last trading day (included)")] = None,
) -> list[dict[str, Any]]:
    """The instance's record of each trading day it closed, oldest first: cash, market value, equity, realised and
    unrealised P&L, fees and turnover at the day's close (the runner writes it when it marks the day, on the real
    clock and in a replay). `/days/{date}` has the day's positions."""
    return [day_out(d, positions=False) for d in await instances.days(principal, instance_id, start, end)]


@router.get(
    "/{instance_id}/days/{trade_date}",
    response_model=InstanceDayDetailOut,
    responses={
        404: {"description": "`instance_not_found`, or `day_not_found`: no record of that day (not traded then)"},
        422: {"description": "`invalid_request`: not a date like 2024-01-02 or 20240102"},
    },
)
async def get_day(instance_id: str, trade_date: TradeDate, principal: Caller, instances: Instances) -> dict[str, Any]:
    """The instance's record of one trading day, with its positions at the close (qty, sellable, cost, close,
    market value)."""
    return day_out(await instances.day(principal, instance_id, trade_date), positions=True)


@router.get("/{instance_id}/performance", responses={404: {"description": "`instance_not_found`"}})
async def get_performance(instance_id: str, principal: Caller, instances: Instances, request: Request) -> Any:
    """The run so far: the daily equity curve (cash, market value, equity, fees, turnover, realised P&L) and the
    metrics a backtest report gives (shared.research.engine.metrics) over it."""
    instance = await instances.visible(principal, instance_id)
    return await _runner(request).performance(instance)


@router.get(
    "/{instance_id}/report.html", response_class=HTMLResponse, responses={404: {"description": "`instance_not_found`"}}
)
async def get_report_html(
    instance_id: str,
    principal: Caller,
    instances: Instances,
    request: Request,
    download: Annotated[bool, Query()] = False,
) -> HTMLResponse:
    """The run so far as one self-contained HTML page (charts work offline): the instance, its equity curve and
    metrics, its positions and its last fills. `download=true` asks the browser to save it as
    `strategy-instance-<id>.html`."""
    instance = await instances.visible(principal, instance_id)
    page = render_instance_report(await gather(instance, _runner(request), instances.universe))
    headers = (
        {"Content-Disposition": f'attachment; filename="strategy-instance-{instance_id}.html"'} if download else None
    )
    return HTMLResponse(content=page, headers=headers)
