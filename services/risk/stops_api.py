"""Risk's stop routes (docs/risk-stops.md): set a stop on a position of one's own account (traders and admins), list
them (one's own account's; admins and services all), see one with its triggers, cancel an armed one (its owner's
account, or an admin)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, field_validator, model_validator

from services.risk.deps import Caller
from services.risk.stops import Stop, StopKind, StopStatus, StopStore, StopWatcher
from shared.core.domain import InvalidTsCode, parse_ts_code
from shared.platform.clock import utcnow
from shared.platform.errors import Conflict, Forbidden, NotFound, ServiceError, Unavailable
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from shared.platform.quotes import QuoteUnavailable
from shared.platform.request_model import JsonDecimal, RequestModel, StrictInt
from shared.platform.roles import Role

router = APIRouter(prefix="/v1", tags=["risk"])

MAX_TRAIL_PCT = Decimal(50)


class StopRequest(RequestModel):
    """A stop on a position of the caller's own account. `stop_loss` and `take_profit` name `trigger_price` (on the
    0.01 tick; a stop-loss below the last price, a take-profit above it); `trailing` names `trail_pct` (in (0, 50],
    at most 2 decimals) and starts its high-water mark at the last price. `qty`: the shares to sell when it triggers
    (at most the sellable shares then); left out: the whole position then."""

    ts_code: str = Field(min_length=1, max_length=32, description="an A-share code, e.g. 600000.SH")
    kind: Literal["stop_loss", "take_profit", "trailing"]
    trigger_price: JsonDecimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2,
                                              allow_inf_nan=False)  # fmt: skip
    trail_pct: JsonDecimal | None = Field(default=None, gt=0, le=MAX_TRAIL_PCT, max_digits=5, decimal_places=2,
                                          allow_inf_nan=False)  # fmt: skip
    qty: StrictInt | None = Field(default=None, gt=0, le=10**12)

    @field_validator("ts_code")
    @classmethod
    def _a_share(cls, value: str) -> str:
        try:
            return parse_ts_code(value).ts_code
        except InvalidTsCode as exc:
            raise ValueError(f"{value!r} is not an A-share code like 600000.SH: {exc}") from exc

    @model_validator(mode="after")
    def _kind_fields(self) -> StopRequest:
        if self.kind == StopKind.TRAILING:
            if self.trail_pct is None:
                raise ValueError("a trailing stop needs trail_pct")
            if self.trigger_price is not None:
                raise ValueError("a trailing stop takes no trigger_price (its level follows the high-water mark)")
        else:
            if self.trigger_price is None:
                raise ValueError(f"a {self.kind} stop needs trigger_price")
            if self.trail_pct is not None:
                raise ValueError(f"a {self.kind} stop takes no trail_pct")
        return self


class StopOut(BaseModel):
    stop_id: str
    account_id: str
    owner: str
    strategy_instance_id: str | None
    ts_code: str
    kind: str
    trigger_price: str | None = Field(description="stop_loss / take_profit: a decimal string")
    trail_pct: str | None = Field(description="trailing: percent below the high-water mark")
    high_water: str | None = Field(description="trailing: the highest price seen since it was set")
    stop_level: str | None = Field(description="while armed: the price at or beyond which it triggers")
    qty: int | None = Field(description="shares to sell; null: the whole position when it triggers")
    status: str = Field(description="armed | triggered | cancelled | failed")
    created_at: str
    triggered_at: str | None
    trigger_seen: str | None = Field(description="the price that triggered it")
    exit_qty: int | None = Field(description="the shares its exit sells")
    client_order_id: str | None = Field(description="the exit's: stop-<stop_id>")
    order_id: str | None = Field(description="execution's order of the exit, once placed")
    outcome: str | None = Field(description="what became of the exit (null while it is being placed)")
    cancelled_at: str | None


class StopAttemptOut(BaseModel):
    price: str
    stop_level: str
    high_water: str | None
    at: str
    qty: int
    client_order_id: str
    result: str = Field(description="placed | failed | retry")
    http_status: int | None
    code: str | None
    message: str
    order_id: str | None
    decision_id: str | None


class StopDetail(StopOut):
    triggers: list[StopAttemptOut] = Field(description="every trigger and attempt at its exit, oldest first")


def get_stop_store(request: Request) -> StopStore:
    store: StopStore = request.app.state.stop_store
    return store


def get_stop_watcher(request: Request) -> StopWatcher:
    watcher: StopWatcher = request.app.state.stop_watcher
    return watcher


Stops = Annotated[StopStore, Depends(get_stop_store)]
Watcher = Annotated[StopWatcher, Depends(get_stop_watcher)]


def _own_account(principal: Principal) -> str:
    return principal.account_id or principal.subject


def _visible(principal: Principal, stop: Stop | None, stop_id: str) -> Stop:
    if stop is None or not (principal.acts_for_everyone or stop.account_id == _own_account(principal)):
        raise NotFound("stop_not_found", f"no stop {stop_id}")
    return stop


@router.post(
    "/risk/stops",
    status_code=201,
    response_model=StopOut,
    responses={
        403: {"description": "`forbidden`: not a trader (or admin) acting for their own account"},
        422: {"description": "`invalid_request`, `unknown_security`, `no_price`, `invalid_trigger_price`"},
        503: {"description": "`risk_unavailable`: the last price cannot be read"},
    },
)
async def create_stop(body: StopRequest, principal: Caller, store: Stops, watcher: Watcher) -> dict[str, Any]:
    """Arm a stop on a position of the caller's own account. Validated against the last price risk holds: a
    stop-loss's trigger_price must be below it, a take-profit's above it; a trailing stop's high-water mark starts
    at it."""
    if principal.is_service or not principal.at_least(Role.TRADER):
        raise Forbidden("forbidden", f"role {principal.role} may not set stops: traders set them on their own account")
    try:
        last = await watcher.price(body.ts_code)
    except QuoteUnavailable as exc:
        raise Unavailable("risk_unavailable", f"risk cannot read the last price of {body.ts_code}: {exc}") from exc
    if last is None:
        quote_known = await _known(watcher, body.ts_code)
        if not quote_known:
            raise ServiceError("unknown_security", f"the data service knows no security {body.ts_code}",
                               status_code=422)  # fmt: skip
        raise ServiceError("no_price", f"{body.ts_code} has no price to watch (never traded, or suspended)",
                           status_code=422)  # fmt: skip
    if body.kind == StopKind.STOP_LOSS and body.trigger_price is not None and body.trigger_price >= last:
        raise ServiceError("invalid_trigger_price", f"a stop_loss's trigger_price {body.trigger_price} must be below "
                           f"the last price {last} of {body.ts_code}", status_code=422)  # fmt: skip
    if body.kind == StopKind.TAKE_PROFIT and body.trigger_price is not None and body.trigger_price <= last:
        raise ServiceError("invalid_trigger_price", f"a take_profit's trigger_price {body.trigger_price} must be "
                           f"above the last price {last} of {body.ts_code}", status_code=422)  # fmt: skip
    stop = Stop(
        stop_id=new_id(),
        account_id=_own_account(principal),
        owner=principal.subject,
        owner_role=principal.role,
        ts_code=body.ts_code,
        kind=body.kind,
        trigger_price=body.trigger_price,
        trail_pct=body.trail_pct,
        high_water=last if body.kind == StopKind.TRAILING else None,
        qty=body.qty,
        status=StopStatus.ARMED.value,
        created_at=utcnow(),
    )
    await store.create(stop)
    return stop.as_json()


async def _known(watcher: StopWatcher, ts_code: str) -> bool:
    session: date | None = watcher.market_session()
    quote = await (watcher.quotes.quote(ts_code) if session is None else watcher.quotes.quote(ts_code, session))
    return quote is not None


@router.get("/risk/stops", response_model=list[StopOut])
async def list_stops(
    principal: Caller,
    store: Stops,
    status: Literal["armed", "triggered", "cancelled", "failed"] | None = None,
    account_id: str | None = Query(default=None, max_length=64, description="admins: one account's"),
    limit: int = Query(default=50, ge=1, le=500),
) -> list[dict[str, Any]]:
    """Stops, newest first: the caller's own account's (admins and services: all, or `account_id`'s)."""
    if principal.acts_for_everyone:
        account = account_id
    else:
        account = _own_account(principal)
        if account_id is not None and account_id != account:
            raise Forbidden("forbidden", f"{principal.subject} may see only their own account's stops")
    return [s.as_json() for s in await store.listed(account_id=account, status=status, limit=limit)]


@router.get("/risk/stops/{stop_id}", response_model=StopDetail, responses={404: {"description": "stop_not_found"}})
async def get_stop(stop_id: str, principal: Caller, store: Stops) -> dict[str, Any]:
    """One stop with every trigger and attempt at its exit."""
    stop = _visible(principal, await store.get(stop_id), stop_id)
    return {**stop.as_json(), "triggers": [a.as_json() for a in await store.attempts(stop_id)]}


@router.delete(
    "/risk/stops/{stop_id}",
    response_model=StopOut,
    responses={404: {"description": "stop_not_found"}, 409: {"description": "stop_not_armed"}},
)
async def cancel_stop(stop_id: str, principal: Caller, store: Stops) -> dict[str, Any]:
    """Cancel an armed stop (its account's trader, or an admin). A stop that triggered (or was cancelled) is 409."""
    _visible(principal, await store.get(stop_id), stop_id)
    if not (principal.acts_for_everyone or principal.at_least(Role.TRADER)):
        raise Forbidden("forbidden", f"role {principal.role} may not cancel stops")
    if not await store.cancel(stop_id, utcnow()):
        now = await store.get(stop_id)
        status = now.status if now is not None else "unknown"
        raise Conflict("stop_not_armed", f"stop {stop_id} is {status}, not armed: nothing to cancel", status=status)
    cancelled = await store.get(stop_id)
    assert cancelled is not None
    return cancelled.as_json()
