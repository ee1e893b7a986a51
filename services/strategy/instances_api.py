"""Routes of the strategy instances (all require the internal token): thin wrappers over InstanceService."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from services.strategy.deps import Caller, Instances
from services.strategy.lifecycle import Action, State
from services.strategy.schemas import (
    AllocationOut,
    AuditEntryOut,
    InstanceCreate,
    InstanceOut,
    InstanceState,
    ParamsUpdate,
    ParamsVersionOut,
    StartRequest,
    StopRequest,
)
from services.strategy.store import InstanceRecord
from shared.core.domain import from_fen
from shared.platform.request_model import AccountId

router = APIRouter(prefix="/v1/strategy-instances", tags=["strategy instances"])
# Not under /v1/strategy-instances: "allocation" would read as an instance id there (PATCH and DELETE included).
allocation_router = APIRouter(prefix="/v1", tags=["strategy instances"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "`instance_not_found` (also for an instance that is not yours)"}
}
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"description": "`forbidden`: a viewer, or not your instance"},
    409: {"description": "`illegal_transition`, with `details.from` and `details.to`"},
}


def instance_out(instance: InstanceRecord) -> dict[str, Any]:
    return {
        "instance_id": instance.instance_id,
        "strategy": instance.strategy,
        "owner": instance.owner,
        "account_id": instance.account_id,
        "params": instance.params,
        "params_version": instance.params_version,
        "universe": instance.universe,
        "capital": str(from_fen(instance.capital_fen)),
        "mode": instance.mode,
        "bar_freq": instance.bar_freq,
        "order_timing": instance.order_timing,
        "costs": instance.costs,
        "reload": instance.reload,
        "cancel_open_orders_on_stop": instance.cancel_open_orders_on_stop,
        "state": instance.state.value,
        "error": instance.error,
        "created_at": instance.created_at,
        "updated_at": instance.updated_at,
    }


@router.post(
    "",
    status_code=201,
    response_model=InstanceOut,
    responses={
        403: {"description": "`forbidden`: a viewer, or a trader naming another account"},
        404: {"description": "`unknown_strategy`"},
        422: {
            "description": "`invalid_request` naming the field (`params.fast`, `costs.volume_cap`, ...), "
            "`bar_freq_unavailable`, `empty_universe`, `unknown_securities`, `unknown_account`, "
            "`insufficient_unallocated_cash`"
        },
        503: {"description": "`data_unavailable` or `execution_unavailable`: the checks could not be made"},
    },
)
async def create_instance(request: InstanceCreate, principal: Caller, instances: Instances) -> dict[str, Any]:
    """Create a strategy instance (state `created`: nothing trades until it is started)."""
    return instance_out(await instances.create(principal, request))


@router.get("", response_model=list[InstanceOut])
async def list_instances(
    principal: Caller,
    instances: Instances,
    state: Annotated[InstanceState | None, Query()] = None,
    strategy: Annotated[str | None, Query(max_length=64)] = None,
) -> list[dict[str, Any]]:
    """Newest first: a trader's own instances; every instance for viewers and admins."""
    found = await instances.find(principal, state=None if state is None else State(state), strategy=strategy)
    return [instance_out(i) for i in found]


@allocation_router.get(
    "/strategy-allocation",
    response_model=AllocationOut,
    responses={
        403: {"description": "`forbidden`: a trader or viewer naming another account"},
        422: {"description": "`unknown_account`: execution has no such account"},
        503: {"description": "`execution_unavailable`: the balance could not be read"},
    },
)
async def get_allocation(
    principal: Caller, instances: Instances, account_id: Annotated[AccountId | None, Query()] = None
) -> dict[str, Any]:
    """The account's unallocated cash: its balance less the capital of its instances that are not stopped (what a new
    instance's capital must fit in). Your own account by default; an admin may name any."""
    allocation = await instances.allocation(principal, account_id)
    return {
        "account_id": allocation.account_id,
        "balance": str(from_fen(allocation.balance_fen)),
        "allocated": str(from_fen(allocation.allocated_fen)),
        "unallocated": str(from_fen(allocation.unallocated_fen)),
        "instances": [
            {
                "instance_id": i.instance_id,
                "strategy": i.strategy,
                "state": i.state.value,
                "capital": str(from_fen(i.capital_fen)),
            }
            for i in allocation.instances
        ],
    }


# after /allocation: "allocation" would otherwise be taken for an instance id
@router.get("/{instance_id}", response_model=InstanceOut, responses=NOT_FOUND)
async def get_instance(instance_id: str, principal: Caller, instances: Instances) -> dict[str, Any]:
    return instance_out(await instances.visible(principal, instance_id))


@router.patch(
    "/{instance_id}",
    response_model=InstanceOut,
    responses={
        **ACTION_ERRORS,
        409: {"description": "`instance_not_paused`: pause it first"},
        422: {"description": "`invalid_request` naming the parameter (`params.fast`)"},
    },
)
async def update_params(
    instance_id: str, update: ParamsUpdate, principal: Caller, instances: Instances
) -> dict[str, Any]:
    """New parameters while the instance is paused (or not yet started): a new version, the old ones kept."""
    return instance_out(await instances.update_params(principal, instance_id, update.params))


@router.get("/{instance_id}/versions", response_model=list[ParamsVersionOut], responses=NOT_FOUND)
async def list_versions(instance_id: str, principal: Caller, instances: Instances) -> list[dict[str, Any]]:
    """Every version of the instance's parameters, the first (1) first."""
    return [
        {"version": v.version, "params": v.params, "created_by": v.created_by, "created_at": v.created_at}
        for v in await instances.versions(principal, instance_id)
    ]


@router.get("/{instance_id}/audit", response_model=list[AuditEntryOut], responses=NOT_FOUND)
async def list_audit(instance_id: str, principal: Caller, instances: Instances) -> list[dict[str, Any]]:
    """Every change of the instance, oldest first: who, when, what, and the values before and after."""
    return [
        {"action": a.action, "actor": a.actor, "before": a.before, "after": a.after, "at": a.at}
        for a in await instances.audit(principal, instance_id)
    ]


@router.post(
    "/{instance_id}/start",
    response_model=InstanceOut,
    responses={**ACTION_ERRORS, 422: {"description": "the runner's refusal, e.g. `warmup_incomplete`"}},
)
async def start_instance(
    instance_id: str,
    principal: Caller,
    instances: Instances,
    start: Annotated[StartRequest | None, Body()] = None,
) -> dict[str, Any]:
    """created -> running. With `{"replay": {"start", "end", "days_per_second"}}` (a platform on the replay market
    clock only) the instance plays those days of stored history through the whole order path, then stops."""
    replay = None if start is None else start.replay
    return instance_out(await instances.act(principal, instance_id, Action.START, replay=replay))


@router.post("/{instance_id}/pause", response_model=InstanceOut, responses=ACTION_ERRORS)
async def pause_instance(instance_id: str, principal: Caller, instances: Instances) -> dict[str, Any]:
    """running -> paused: no new orders; open ones stay."""
    return instance_out(await instances.act(principal, instance_id, Action.PAUSE))


@router.post("/{instance_id}/resume", response_model=InstanceOut, responses=ACTION_ERRORS)
async def resume_instance(instance_id: str, principal: Caller, instances: Instances) -> dict[str, Any]:
    """paused -> running (with the parameters' newest version)."""
    return instance_out(await instances.act(principal, instance_id, Action.RESUME))


@router.post("/{instance_id}/stop", response_model=InstanceOut, responses=ACTION_ERRORS)
async def stop_instance(
    instance_id: str,
    principal: Caller,
    instances: Instances,
    stop: Annotated[StopRequest | None, Body()] = None,
) -> dict[str, Any]:
    """created, running, paused or failed -> stopped (final). Its open orders are cancelled unless the body says
    `{"cancel_open_orders": false}` or the instance was created with `cancel_open_orders_on_stop: false`."""
    cancel = None if stop is None else stop.cancel_open_orders
    return instance_out(await instances.act(principal, instance_id, Action.STOP, cancel_open_orders=cancel))


@router.delete(
    "/{instance_id}",
    status_code=204,
    response_class=Response,
    responses={**ACTION_ERRORS, 409: {"description": "`illegal_transition`: only a stopped instance is deleted"}},
)
async def delete_instance(instance_id: str, principal: Caller, instances: Instances) -> Response:
    """Delete a stopped instance (its parameter versions and audit trail are kept)."""
    await instances.delete(principal, instance_id)
    return Response(status_code=204)
