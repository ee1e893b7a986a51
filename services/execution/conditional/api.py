"""Execution's conditional-order routes (docs/conditional-orders.md): create one (or an OCO pair, a bracket when it
waits for an entry order to fill), list, get and cancel. Traders create and cancel on their own account, viewers read
their own account's, admins and services see all (admins cancel any)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, field_validator, model_validator

from services.execution.admission import principal_account
from services.execution.conditional.rules import (
    ConditionType,
    Kind,
    OnMissed,
    Status,
    child_type,
    market_type_error,
    trigger_of,
    wrong_side,
)
from services.execution.conditional.store import Conditional, ConditionalStore, StaleMove
from services.execution.conditional.watcher import ConditionalWatcher, DataLivePrices
from services.execution.deps import CurrentPrincipal
from services.execution.store import ExecutionStore
from shared.core.domain import InvalidTsCode, OrderSide, OrderType, parse_ts_code
from shared.core.market.order_types import DEFAULT_MARKET_TYPE, needs_protection
from shared.platform.errors import Conflict, Forbidden, NotFound, ServiceError, Unavailable
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from shared.platform.request_model import IsoAwareDatetime, JsonDecimal, RequestModel, StrictInt
from shared.platform.roles import Role

router = APIRouter(prefix="/v1", tags=["conditional-orders"])

ORDER_ID_PATTERN = r"^[0-9a-f]{32}$"
Price = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2, allow_inf_nan=False)]


class ConditionIn(RequestModel):
    """When a `market` or `limit` conditional order triggers: the price crosses above / below `price` (on the 0.01
    tick), or the market clock reaches `at` (ISO 8601 with its UTC offset)."""

    type: ConditionType
    price: Annotated[JsonDecimal, Field(gt=0, max_digits=12, decimal_places=2, allow_inf_nan=False)] | None = None
    at: IsoAwareDatetime | None = None

    @model_validator(mode="after")
    def _fields(self) -> ConditionIn:
        if self.type is ConditionType.AT_TIME:
            if self.at is None or self.price is not None:
                raise ValueError("an at_time condition takes `at` and no price")
        elif self.price is None or self.at is not None:
            raise ValueError(f"a {self.type.value} condition takes `price` and no `at`")
        return self


class ConditionalOrderIn(RequestModel):
    """A conditional order on the caller's own account: its child (`side` `qty` of `ts_code`, market or limit) is
    submitted through risk when it triggers. `stop` / `stop_limit` name `stop_price` (a sell stop below the last price,
    a buy stop above it; `stop_limit` also `price`, its child's limit); `market` / `limit` name a `condition` (`limit`
    also `price`)."""

    ts_code: str = Field(min_length=1, max_length=32, description="an A-share code, e.g. 600000.SH")
    side: OrderSide
    qty: StrictInt = Field(gt=0, le=10**9)
    kind: Kind
    stop_price: Annotated[JsonDecimal, Field(gt=0, max_digits=12, decimal_places=2, allow_inf_nan=False)] | None = None
    price: Annotated[JsonDecimal, Field(gt=0, max_digits=12, decimal_places=2, allow_inf_nan=False)] | None = Field(
        default=None,
        description="the child's limit price (stop_limit, limit); a STAR market child's protection price (stop, "
        "market: required there, 422 protection_price_required)",
    )
    condition: ConditionIn | None = None
    market_type: str | None = Field(
        default=None,
        max_length=24,
        description="a market child's exchange type (stop, market; default counterparty_best): SH best5_cancel, "
        "best5_limit, counterparty_best, own_best; SZ counterparty_best, own_best, ioc, best5_cancel, fok; BJ as SH. "
        "A type the exchange does not have is 422 market_type_invalid",
    )
    on_missed: OnMissed = Field(
        default=OnMissed.FIRE,
        description="a trigger that came while execution was down: fire once on start (default) or expire",
    )
    after_order_id: str | None = Field(
        default=None, pattern=ORDER_ID_PATTERN, description="armed only once this order of the account has filled"
    )

    @field_validator("ts_code")
    @classmethod
    def _a_share(cls, value: str) -> str:
        try:
            return parse_ts_code(value).ts_code
        except InvalidTsCode as exc:
            raise ValueError(f"{value!r} is not an A-share code like 600000.SH: {exc}") from exc

    @model_validator(mode="after")
    def _kind_fields(self) -> ConditionalOrderIn:
        stop = self.kind in (Kind.STOP, Kind.STOP_LIMIT)
        if stop and (self.stop_price is None or self.condition is not None):
            raise ValueError(f"a {self.kind.value} order takes stop_price and no condition")
        if not stop and (self.condition is None or self.stop_price is not None):
            raise ValueError(f"a {self.kind.value} order takes a condition and no stop_price")
        limit = child_type(self.kind) is OrderType.LIMIT
        if limit and self.price is None:
            raise ValueError(f"a {self.kind.value} order needs price (its child's limit)")
        if not limit and self.price is not None and not needs_protection(self.ts_code, OrderType.MARKET):
            raise ValueError(
                f"a {self.kind.value} order's child is a market order: it takes no price (only on STAR, its "
                "protection price)"
            )
        if limit and self.market_type is not None:
            raise ValueError(f"a {self.kind.value} order's child is a limit order: it takes no market_type")
        return self


class OcoIn(RequestModel):
    """Two conditional orders of which the first to trigger cancels the other (one-cancels-other). With
    `after_order_id` both wait for that order to fill: a bracket (the entry, then a take-profit and a stop)."""

    legs: list[ConditionalOrderIn] = Field(min_length=2, max_length=2)
    after_order_id: str | None = Field(default=None, pattern=ORDER_ID_PATTERN)

    @model_validator(mode="after")
    def _legs(self) -> OcoIn:
        if any(leg.after_order_id is not None for leg in self.legs):
            raise ValueError("name after_order_id on the pair, not on a leg")
        return self


class ReasonOut(BaseModel):
    code: str
    message: str


class ConditionalOut(BaseModel):
    conditional_id: str
    account_id: str
    owner: str
    ts_code: str
    side: str
    qty: int
    kind: str
    order_type: str = Field(description="the child's: market | limit")
    price: str | None
    stop_price: str | None
    condition: str | None
    level: str | None
    at: str | None
    market_type: str | None
    on_missed: str
    after_order_id: str | None
    oco_group: str | None
    status: str = Field(description="waiting | armed | triggered | placed | refused | expired | cancelled")
    version: int
    ref_price: str | None = Field(description="the last price when it was armed (a crossing starts from it)")
    created_at: str
    updated_at: str
    triggered_at: str | None
    trigger_seen: str | None
    trigger_time: str | None
    missed: bool | None
    attempts: int
    child_client_order_id: str | None = Field(description="cond-<conditional_id>")
    child_order_id: str | None
    decision_id: str | None = Field(description="risk's decision on the child")
    reasons: list[ReasonOut] = Field(description="why risk (or execution) refused the child")
    message: str | None


def get_conditional_store(request: Request) -> ConditionalStore:
    store: ConditionalStore = request.app.state.conditional_store
    return store


def get_conditional_watcher(request: Request) -> ConditionalWatcher:
    watcher: ConditionalWatcher = request.app.state.conditional_watcher
    return watcher


Store = Annotated[ConditionalStore, Depends(get_conditional_store)]
Watcher = Annotated[ConditionalWatcher, Depends(get_conditional_watcher)]


def _placer(principal: Principal) -> str:
    if principal.is_service or not principal.at_least(Role.TRADER):
        raise Forbidden(
            "forbidden", f"role {principal.role} may not create conditional orders: traders create them on their own "
            "account"
        )  # fmt: skip
    return principal_account(principal)


def _unprocessable(code: str, message: str, field: str) -> ServiceError:
    return ServiceError(code, message, status_code=422, field=field)


async def _last_price(prices: DataLivePrices, ts_code: str) -> Decimal:
    """The market's last price: the live quote, else the stored last close (no feed quotes it)."""
    try:
        live = await prices.live(ts_code)
        if live is not None:
            return live.price
        close = await prices.last_close(ts_code)
    except ServiceError as exc:
        if exc.status_code == 404 or exc.code in ("unknown_security", "not_found"):
            message = f"the data service knows no security {ts_code}"
            raise _unprocessable("unknown_security", message, "ts_code") from exc
        raise Unavailable(
            "market_data_unavailable", f"execution cannot read the last price of {ts_code}: {exc.code}"
        ) from exc
    if close is None:
        raise _unprocessable("no_price", f"{ts_code} has no price to check the trigger against", "ts_code")
    return close


async def _checked(
    body: ConditionalOrderIn, field_prefix: str, prices: DataLivePrices, market_now: datetime
) -> Decimal | None:
    """The semantic checks (nothing stored when one fails): the market type on its exchange, a time in the future,
    a price trigger on the right side of the last price. The last price (None: a time condition)."""
    code = parse_ts_code(body.ts_code)
    if child_type(body.kind) is OrderType.MARKET:
        error = market_type_error(code.exchange.value, body.market_type or DEFAULT_MARKET_TYPE)
        if error is not None:
            raise _unprocessable(error[0], error[1], f"{field_prefix}market_type")
        if body.price is None and needs_protection(body.ts_code, OrderType.MARKET):
            raise _unprocessable(
                "protection_price_required",
                f"a STAR market child ({body.ts_code}) needs a protection price (price): the most a buy pays, the "
                "least a sell takes",
                f"{field_prefix}price",
            )
    trigger = trigger_of(
        body.kind, body.side, body.stop_price, None if body.condition is None else body.condition.type,
        None if body.condition is None else body.condition.price, None if body.condition is None else body.condition.at,
    )  # fmt: skip
    if trigger.type is ConditionType.AT_TIME:
        assert trigger.at is not None
        if trigger.at <= market_now:
            raise _unprocessable(
                "invalid_trigger_time", f"condition.at {trigger.at.isoformat()} is not after the market's now "
                f"{market_now.isoformat()}", f"{field_prefix}condition.at",
            )  # fmt: skip
        return None
    last = await _last_price(prices, body.ts_code)
    why = wrong_side(trigger, last)
    if why is not None:
        field = "stop_price" if body.stop_price is not None else "condition.price"
        code_name = "invalid_stop_price" if body.stop_price is not None else "invalid_trigger_price"
        raise _unprocessable(code_name, f"{field} {why}", f"{field_prefix}{field}")
    return last


async def _entry(orders: ExecutionStore, order_id: str, account_id: str) -> None:
    stored = await orders.get_order(order_id)
    if stored is None or stored.order.account_id != account_id:
        raise NotFound("order_not_found", f"no order {order_id} of account {account_id} (after_order_id)")
    if stored.order.status.is_final and stored.order.status.value != "filled":
        raise Conflict(
            "order_not_fillable", f"order {order_id} is {stored.order.status.value}: it will not fill (after_order_id)"
        )


def _new(
    body: ConditionalOrderIn, principal: Principal, account_id: str, last: Decimal | None, at: datetime,
    after_order_id: str | None, oco_group: str | None,
) -> Conditional:  # fmt: skip
    condition = body.condition
    return Conditional(
        conditional_id=new_id(),
        account_id=account_id,
        owner=principal.subject,
        owner_role=principal.role,
        ts_code=body.ts_code,
        side=body.side,
        qty=body.qty,
        kind=body.kind,
        price=body.price,
        stop_price=body.stop_price,
        condition=None if condition is None else condition.type,
        level=None if condition is None else condition.price,
        at=None if condition is None else condition.at,
        market_type=(body.market_type or DEFAULT_MARKET_TYPE) if child_type(body.kind) is OrderType.MARKET else None,
        on_missed=body.on_missed,
        after_order_id=after_order_id,
        oco_group=oco_group,
        status=Status.WAITING if after_order_id else Status.ARMED,
        version=1,
        ref_price=None if after_order_id else last,
        created_at=at,
        updated_at=at,
    )


def _services(request: Request) -> tuple[DataLivePrices, ExecutionStore, Any]:
    return request.app.state.conditional_prices, request.app.state.store, request.app.state.conditional_clock


ANSWERS: dict[int | str, dict[str, Any]] = {
    403: {"description": "`forbidden`: not a trader (or admin) acting for their own account"},
    404: {"description": "`order_not_found`: after_order_id names no order of the account"},
    409: {"description": "`order_not_fillable`: after_order_id's order ended without filling"},
    422: {
        "description": "`invalid_request` (the field named), `unknown_security`, `no_price`, `invalid_stop_price` / "
        "`invalid_trigger_price` (the trigger on the wrong side of the last price), `invalid_trigger_time` (not in "
        "the future), `market_type_invalid` (not a type of that exchange), "
        "`protection_price_required` (a STAR market child without `price`)"
    },
    503: {"description": "`market_data_unavailable`: the last price cannot be read"},
}


@router.post("/conditional-orders", status_code=201, response_model=ConditionalOut, responses=ANSWERS)
async def create_conditional(
    body: ConditionalOrderIn, principal: CurrentPrincipal, store: Store, watcher: Watcher, request: Request
) -> dict[str, Any]:
    """Hold a conditional order on the caller's own account (`armed`, or `waiting` for after_order_id to fill)."""
    account_id = _placer(principal)
    prices, orders, clock = _services(request)
    now = clock()
    last = await _checked(body, "", prices, now)
    if body.after_order_id is not None:
        await _entry(orders, body.after_order_id, account_id)
    c = _new(body, principal, account_id, last, now, body.after_order_id, None)
    await store.create([c], now)
    watcher.add(c)
    return c.as_json()


@router.post("/oco-orders", status_code=201, response_model=list[ConditionalOut], responses=ANSWERS)
async def create_oco(
    body: OcoIn, principal: CurrentPrincipal, store: Store, watcher: Watcher, request: Request
) -> list[dict[str, Any]]:
    """Two conditional orders in one OCO group (the first to trigger cancels the other), both stored or neither; with
    after_order_id both wait for that order to fill (a bracket)."""
    account_id = _placer(principal)
    prices, orders, clock = _services(request)
    now = clock()
    lasts = [await _checked(leg, f"legs.{i}.", prices, now) for i, leg in enumerate(body.legs)]
    if body.after_order_id is not None:
        await _entry(orders, body.after_order_id, account_id)
    group = new_id()
    made = [
        _new(leg, principal, account_id, last, now, body.after_order_id, group)
        for leg, last in zip(body.legs, lasts, strict=True)
    ]
    await store.create(made, now)
    for c in made:
        watcher.add(c)
    return [c.as_json() for c in made]


def _visible(principal: Principal, c: Conditional | None, conditional_id: str) -> Conditional:
    if c is None or not (principal.acts_for_everyone or c.account_id == principal_account(principal)):
        raise NotFound("conditional_not_found", f"no conditional order {conditional_id}")
    return c


@router.get(
    "/conditional-orders",
    response_model=list[ConditionalOut],
    responses={403: {"description": "`forbidden`: another account named by a person"}},
)
async def list_conditionals(
    principal: CurrentPrincipal,
    store: Store,
    status: Status | None = None,
    account_id: Annotated[str | None, Query(min_length=1, max_length=64, description="admins: one account's")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Conditional orders, newest first: the caller's own account's (admins and services: all, or `account_id`'s)."""
    if principal.acts_for_everyone:
        account = account_id
    else:
        account = principal_account(principal)
        if account_id is not None and account_id != account:
            raise Forbidden("forbidden", f"{principal.subject} may see only their own account's conditional orders")
    return [c.as_json() for c in await store.listed(account, status, limit)]


@router.get(
    "/conditional-orders/{conditional_id}",
    response_model=ConditionalOut,
    responses={404: {"description": "`conditional_not_found`"}},
)
async def get_conditional(conditional_id: str, principal: CurrentPrincipal, store: Store) -> dict[str, Any]:
    return _visible(principal, await store.get(conditional_id), conditional_id).as_json()


@router.post(
    "/conditional-orders/{conditional_id}/cancel",
    response_model=ConditionalOut,
    responses={
        403: {"description": "`forbidden`: a viewer"},
        404: {"description": "`conditional_not_found`"},
        409: {
            "description": "`conditional_not_cancellable`: it triggered already (or ended); `conditional_busy`: it "
            "kept changing while being cancelled (try again)"
        },
    },
)
async def cancel_conditional(
    conditional_id: str, principal: CurrentPrincipal, store: Store, request: Request
) -> dict[str, Any]:
    """Cancel a waiting or armed conditional order (its account's trader, or an admin). One leg of an OCO pair is
    cancelled alone. One that triggered already is 409: its child is an order, cancel that."""
    c = _visible(principal, await store.get(conditional_id), conditional_id)
    if not (principal.acts_for_everyone or principal.at_least(Role.TRADER)):
        raise Forbidden("forbidden", f"role {principal.role} may not cancel conditional orders")
    return (await cancel_held(request, store, c, principal)).as_json()


async def cancel_held(request: Request, store: ConditionalStore, c: Conditional, principal: Principal) -> Conditional:
    """Cancel a waiting or armed conditional order (the caller has been checked): cancelled, and the watcher forgets
    it. 409 `conditional_not_cancellable` when it triggered or ended, `conditional_busy` when it kept changing."""
    clock = request.app.state.conditional_clock
    for _ in range(3):  # a concurrent move (e.g. armed on its entry's fill) changes the version: read again
        if c.status not in (Status.WAITING, Status.ARMED):
            raise Conflict(
                "conditional_not_cancellable",
                f"conditional order {c.conditional_id} is {c.status.value}: nothing to cancel",
                status=c.status.value,
                child_order_id=c.child_order_id,
            )
        try:
            cancelled = await store.move(c, Status.CANCELLED, clock(), message=f"cancelled by {principal.subject}")
        except StaleMove:
            again = await store.get(c.conditional_id)
            assert again is not None
            c = again
            continue
        request.app.state.conditional_watcher.forget(cancelled)
        return cancelled
    raise Conflict("conditional_busy", f"conditional order {c.conditional_id} kept changing: try again")


async def cancel_all_held(
    request: Request, principal: Principal, account_id: str, ts_code: str | None
) -> tuple[list[str], list[dict[str, str]]]:
    """Cancel the account's waiting and armed conditional orders (of `ts_code`): (the ids cancelled, the failures:
    conditional_id, code, message). Part of cancel-all (`POST /v1/orders/cancel-all`)."""
    store = get_conditional_store(request)
    cancelled: list[str] = []
    failed: list[dict[str, str]] = []
    for c in await store.open_of(account_id, ts_code):
        try:
            await cancel_held(request, store, c, principal)
        except ServiceError as exc:
            failed.append({"conditional_id": c.conditional_id, "code": exc.code, "message": exc.message})
        else:
            cancelled.append(c.conditional_id)
    return cancelled, failed
