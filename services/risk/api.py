"""Risk's routes: thin wrappers over the risk desk. All require the internal token."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from services.risk.deps import Batches, Caller, Desk, Killswitch, RuleSetsDep, Store
from services.risk.metrics import UTILISATION_WINDOW_S
from services.risk.schemas import (
    FINAL_ORIGINAL,
    ConditionalChild,
    DecisionOut,
    HaltAnswer,
    HaltRequest,
    OrderBatchOut,
    OrderBatchRequest,
    OrderRefused,
    OrderRequest,
    PlacedOrder,
    ReplacementOrder,
    RuleSetAnswer,
    RuleSetChange,
    RuleSetClear,
    RuleSetOut,
    RuleSets,
    TradingStates,
    Utilisation,
)
from services.risk.state.keeper import BookKeeper
from services.risk.state.ports import BookUnavailable, OrderEvent
from services.risk.store import Scope
from shared.platform.errors import Forbidden, ServiceError
from shared.platform.internal_auth import Principal

router = APIRouter(prefix="/v1", tags=["risk"])
EXECUTION_SUBJECT = "svc:execution"
log = logging.getLogger(__name__)


@router.post(
    "/orders",
    status_code=201,
    response_model=PlacedOrder,
    responses={
        200: {"model": PlacedOrder, "description": "repeated client_order_id: the existing order"},
        403: {
            "description": "forbidden: a role that may not trade, or strategy_instance_id / paper_fill from anyone but "
            "the strategy service; sleeve_not_allowed: a sleeve on any order but the strategy service's of an instance"
        },
        409: {"model": OrderRefused, "description": "client_order_id already used with different terms"},
        422: {
            "model": OrderRefused,
            "description": "order_rejected (or invalid_request for a malformed body; sleeve_required: an instance's "
            "order without its sleeve; sleeve_mismatch: a sleeve of another instance or symbol; market_type_invalid: "
            "a market type the code's exchange does not take, or one on a limit order; protection_price_required: a "
            "STAR market order without its protection price; time_in_force_unsupported: anything but day — these "
            "three name the field in details.field, nothing recorded)",
        },
        502: {"model": OrderRefused, "description": "execution_refused: execution did not accept the approval"},
        503: {"model": OrderRefused, "description": "risk_unavailable or execution_unavailable (retry)"},
    },
)
async def place_order(order: OrderRequest, principal: Caller, desk: Desk) -> JSONResponse:
    placement = await desk.place(order, principal)
    return JSONResponse(placement.body, status_code=placement.status_code)


@router.post(
    "/order-batches",
    response_model=OrderBatchOut,
    responses={
        403: {"description": "forbidden / sleeve_not_allowed for an item (as for a single order): nothing placed"},
        409: {
            "description": "`batch_id_reused`: the batch_id holds other orders; `batch_in_progress`: another request "
            "is placing this batch (send it again in a moment)"
        },
        422: {
            "description": "`batch_too_large` (more than LH_BATCH_MAX_ORDERS, field `orders`), "
            "`duplicate_client_order_id` (field `orders.<i>.client_order_id`), `invalid_request`, an item's "
            "`sleeve_required` / `sleeve_mismatch`: nothing placed"
        },
    },
)
async def place_order_batch(body: OrderBatchRequest, principal: Caller, batches: Batches) -> dict[str, Any]:
    """Up to LH_BATCH_MAX_ORDERS orders, each decided as a single order (`POST /v1/orders`) and placed in the order
    given; 200 with each item's answer (placed / refused with the reasons / failed: a dependency was down). The
    same batch again is answered the same, placing only the items that failed (docs/order-management.md)."""
    return await batches.place(body, principal)


@router.post(
    "/conditional-children",
    status_code=201,
    response_model=PlacedOrder,
    responses={
        200: {"model": PlacedOrder, "description": "the child was decided and placed before: the same order"},
        403: {"description": "`forbidden`: anyone but execution"},
        422: {"model": OrderRefused, "description": "order_rejected: risk's reasons (or invalid_request)"},
        503: {"model": OrderRefused, "description": "risk_unavailable or execution_unavailable (retry)"},
    },
)
async def place_conditional_child(body: ConditionalChild, principal: Caller, desk: Desk) -> JSONResponse:
    """The child of a conditional order execution holds, which triggered (docs/conditional-orders.md): decided by
    risk as the conditional order's owner, every check of their own order applying, recorded with the conditional
    order's id, and (approved) signed and sent to execution as any order. Its client_order_id is derived from the
    conditional order's id, so a trigger processed twice is one decision replayed and one order."""
    if not (principal.is_service and principal.subject == EXECUTION_SUBJECT):
        raise Forbidden("forbidden", f"{principal.subject} may not place a conditional order's child: execution does")
    order = body.order
    if order.strategy_instance_id is not None or order.sleeve is not None or order.paper_fill is not None:
        raise ServiceError(
            "invalid_request", "a conditional order's child is a person's order: no strategy_instance_id, sleeve or "
            "paper_fill", status_code=422, field="order",
        )  # fmt: skip
    owner = Principal(body.owner, body.owner_role, body.account_id)
    placement = await desk.place(order, owner, parent_id=body.conditional_order_id)
    return JSONResponse(placement.body, status_code=placement.status_code)


@router.post(
    "/replacement-orders",
    status_code=201,
    response_model=PlacedOrder,
    responses={
        200: {
            "model": PlacedOrder,
            "description": "the replacement was decided and placed before: the same order; with `check_only`: "
            "`{checked: true, reasons: []}`, the new terms pass the checks that need no reservation",
        },
        403: {"description": "`forbidden`: anyone but execution"},
        422: {
            "model": OrderRefused,
            "description": "order_rejected: risk's reasons (or invalid_request); with `check_only` each reason "
            "names its `field` (`price` or `qty`) and nothing was recorded",
        },
        503: {"model": OrderRefused, "description": "risk_unavailable or execution_unavailable (retry)"},
    },
)
async def place_replacement(body: ReplacementOrder, principal: Caller, desk: Desk, request: Request) -> JSONResponse:
    """The replacement of an order amended as cancel-replace (docs/order-path.md "Amending an order"), asked by
    execution once the original's cancel is confirmed: decided by risk as the amend's owner, every check of their
    own order applying, recorded with `rule_check.replaces_order_id`, and (approved) signed and sent to execution as
    any order. Its client_order_id is derived from the original's id: an attempt made again is one decision replayed
    and one order. The original as it ended is counted final in the account's book first. With `check_only` (asked
    before the original is cancelled) only the checks that need no reservation run and nothing is recorded."""
    if not (principal.is_service and principal.subject == EXECUTION_SUBJECT):
        raise Forbidden("forbidden", f"{principal.subject} may not place an amend's replacement: execution does")
    order = body.order
    if order.strategy_instance_id is not None or order.sleeve is not None or order.paper_fill is not None:
        raise ServiceError(
            "invalid_request", "an amend's replacement is a person's order: no strategy_instance_id, sleeve or "
            "paper_fill", status_code=422, field="order",
        )  # fmt: skip
    o = body.original
    owner = Principal(body.owner, body.owner_role, body.account_id)
    if body.check_only:
        # the amend's new terms, before the original is cancelled: nothing recorded, reserved or placed
        unfilled = o.qty - o.filled_qty if o.status not in FINAL_ORIGINAL and o.side is order.side else 0
        own = unfilled if o.ts_code == order.ts_code else 0
        checked = await desk.precheck(order, owner, own_unfilled=own)
        return JSONResponse(checked.body, status_code=checked.status_code)
    keeper: BookKeeper = request.app.state.keeper
    try:
        # execution's record of the original (final): applied as its order event would be (idempotent, only ever
        # forward), so the book does not still hold its reservation if the event is a moment behind
        await keeper.book.apply(OrderEvent(account_id=body.account_id, client_order_id=o.client_order_id,
                                           ts_code=o.ts_code, side=o.side, qty=o.qty, status=o.status,
                                           filled_qty=o.filled_qty))  # fmt: skip
    except BookUnavailable as exc:  # the decision below reads the book and fails closed
        log.warning("risk could not note an amended order's end", extra={"error": str(exc)})
    placement = await desk.place(order, owner, replaces_order_id=body.replaces_order_id)
    return JSONResponse(placement.body, status_code=placement.status_code)


@router.get("/decisions", response_model=list[DecisionOut])
async def list_decisions(
    principal: Caller, store: Store, limit: int = Query(default=50, ge=1, le=500)
) -> list[dict[str, Any]]:
    account = None if principal.acts_for_everyone else (principal.account_id or principal.subject)
    return [d.as_json() for d in await store.recent(account_id=account, limit=limit)]


@router.post(
    "/risk/halt",
    response_model=HaltAnswer,
    responses={403: {"description": "`forbidden`: not an admin"}, 422: {"description": "`invalid_request`"}},
)
async def set_trading_state(body: HaltRequest, principal: Caller, switch: Killswitch) -> dict[str, Any]:
    """The kill switch (admins): set a scope's trading state (halted, reducing, or active to resume), recorded with
    who and why and published as `risk.trading_state.changed`; with `cancel_open_orders` every open order of the
    scope is cancelled too. Setting the state a scope has already changes nothing (`changed` false)."""
    return await switch.set(body, principal)


@router.get("/risk/trading-states", response_model=TradingStates)
async def list_trading_states(
    principal: Caller,
    store: Store,
    scope: Scope | None = None,
    key: str = Query(default="", max_length=64, description="with scope: the account_id or instance_id"),
    limit: int = Query(default=50, ge=1, le=500),
) -> dict[str, Any]:
    """The scopes not active (admins and services: all; anyone else: global's and their own account's), and with
    `scope` (and `key`) that scope's changes, newest first."""
    own = None if principal.acts_for_everyone else {principal.account_id or principal.subject}
    answer: dict[str, Any] = {"states": [s.as_json() for s in await store.trading_states(visible_accounts=own)]}
    if scope is not None:
        key = "" if scope is Scope.GLOBAL else key
        if own is not None and not (scope is Scope.GLOBAL or (scope is Scope.ACCOUNT and key in own)):
            raise Forbidden("forbidden", f"{principal.subject} may see only global's and their own account's history")
        answer["history"] = [c.as_json() for c in await store.trading_state_history(scope, key, limit=limit)]
    return answer


@router.get(
    "/risk/utilisation",
    response_model=Utilisation,
    responses={403: {"description": "`forbidden`: another's account"}},
)
async def limit_utilisation(
    principal: Caller,
    desk: Desk,
    account_id: str | None = Query(default=None, min_length=1, max_length=64, description="one account's only"),
) -> dict[str, Any]:
    """Each limit's share (used / limit, as a percentage) at the last order of the account this risk process checked
    against it within the past 15 minutes: what `lh_risk_limit_utilisation_ratio` is the largest of, per account.
    Admins and services: every account (or `account_id`'s); anyone else: their own account only."""
    own = principal.account_id or principal.subject
    if not principal.acts_for_everyone and account_id is not None and account_id != own:
        raise Forbidden("forbidden", f"{principal.subject} may see only their own account's utilisation")
    wanted = {account_id} if account_id is not None else (None if principal.acts_for_everyone else {own})
    measured = desk.metrics.limit_utilisation.of_accounts(wanted)
    return {
        "window_s": int(UTILISATION_WINDOW_S),
        "accounts": [
            {
                "account_id": account,
                "limits": [
                    {
                        "rule": rule,
                        "code": code,
                        "pct": str((share * 100).quantize(Decimal("0.01"))),
                        "measured_at": at.isoformat(),
                    }
                    for rule, code, share, at in limits
                ],
            }
            for account, limits in sorted(measured.items())
        ],
    }


# --- rule sets (docs/risk-rules.md "Managing rule sets") -------------------------------------------------------------

RULE_CHANGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": RuleSetAnswer, "description": "the body was the level's current one: nothing recorded"},
    403: {"description": "`forbidden`: not an admin"},
    422: {"description": "`invalid_request`: the field named (e.g. `rules.position_limit.max_pct_of_equity`)"},
}


@router.get(
    "/risk/rules",
    response_model=RuleSets,
    responses={403: {"description": "`forbidden`: another's account or instance"}},
)
async def list_rule_sets(
    principal: Caller,
    rule_sets: RuleSetsDep,
    account_id: str | None = Query(default=None, min_length=1, max_length=64, description="effective for it"),
    instance_id: str | None = Query(default=None, min_length=1, max_length=64, description="effective for it"),
) -> dict[str, Any]:
    """Every level's current rule set the caller may see (admins and services: all; anyone else: global's, their own
    account's and its strategy instances' that risk knows), and `effective`: the settings every rule runs with for
    `account_id` (anyone but an admin: their own by default) and `instance_id`, the strictest of the levels, with
    the version of each level they came from."""
    return await rule_sets.visible(principal, account_id, instance_id)


@router.put(
    "/risk/rules/{scope}",
    status_code=201,
    response_model=RuleSetAnswer,
    responses=RULE_CHANGE_ANSWERS,
)
async def put_rule_set(scope: Scope, body: RuleSetChange, principal: Caller, rule_sets: RuleSetsDep) -> JSONResponse:
    """Set a level's rule set (admins): a new version (201), recorded with who and why and published as
    `risk.rules.changed`. The same rules as the current version record nothing (200, `changed` false)."""
    answer = await rule_sets.put(scope, body.key, body.rules, body.reason, principal)
    return JSONResponse(answer, status_code=201 if answer["changed"] else 200)


@router.delete(
    "/risk/rules/{scope}",
    status_code=201,
    response_model=RuleSetAnswer,
    responses={**RULE_CHANGE_ANSWERS, 404: {"description": "`rule_set_not_found`: the level never had one"}},
)
async def clear_rule_set(scope: Scope, body: RuleSetClear, principal: Caller, rule_sets: RuleSetsDep) -> JSONResponse:
    """Clear a level (admins): a new version with a null body (201), so that only the other levels apply; recorded
    and published like a change. A level cleared already records nothing (200, `changed` false)."""
    answer = await rule_sets.clear(scope, body.key, body.reason, principal)
    return JSONResponse(answer, status_code=201 if answer["changed"] else 200)


@router.get(
    "/risk/rules/{scope}/history",
    response_model=list[RuleSetOut],
    responses={403: {"description": "`forbidden`: another's account or instance"}},
)
async def rule_set_history(
    scope: Scope,
    principal: Caller,
    rule_sets: RuleSetsDep,
    key: str = Query(default="", max_length=64, description="the account_id or instance_id; none for global"),
    limit: int = Query(default=50, ge=1, le=500),
) -> list[dict[str, Any]]:
    """A level's versions, newest first."""
    return await rule_sets.history(principal, scope, key, limit)
