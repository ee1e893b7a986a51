"""Routes of parameter optimisation (all require the internal token): submit, status and best point, the points
(best first), and the results page (table + heatmap). Mount with `create_service_app(..., routers=[router,
optimisation_router])`; it uses the app's database (`app.state.db`) and bus."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from services.backtest.deps import Caller, Optimisations
from services.backtest.optimize import optimisation_html, result_of, submit_optimisation
from services.backtest.schemas import OptimisationOut, OptimisationRequest
from services.backtest.store import OptimisationRecord, OptimisationStatus, OptimisationStore, PointStatus
from shared.platform.errors import ServiceError
from shared.platform.internal_auth import Principal
from shared.platform.roles import Role
from shared.research.engine.optimize import Objective, OptimisationError, rank

router = APIRouter(prefix="/v1/optimisations", tags=["optimisations"])


async def _visible(store: OptimisationStore, principal: Principal, optimisation_id: str) -> OptimisationRecord:
    record = await store.get(optimisation_id)
    if record is None or (not principal.acts_for_everyone and record.owner != principal.subject):
        raise ServiceError("not_found", f"no optimisation {optimisation_id!r}", status_code=404)
    return record


@router.post("", status_code=202, response_model=OptimisationOut)
async def submit(
    body: OptimisationRequest, request: Request, principal: Caller, store: Optimisations
) -> OptimisationOut:
    """Queue an optimisation. A bad space, objective, constraint or config: 422 `invalid_optimisation` naming it."""
    backtests = getattr(request.app.state, "backtests", None)
    try:
        record = await submit_optimisation(
            store,
            request.app.state.infra.bus,
            body,
            owner=principal.subject,
            optimisation_id=secrets.token_hex(16),
            strategies=getattr(backtests, "strategies", None),
        )
    except (OptimisationError, ValueError) as exc:
        raise ServiceError("invalid_optimisation", str(exc), status_code=422) from exc
    return OptimisationOut.of(record)


@router.get("", response_model=list[OptimisationOut])
async def list_optimisations(
    principal: Caller,
    store: Optimisations,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    owner: Annotated[
        str | None,
        Query(
            min_length=1, max_length=64, description="the optimisations of this user (exact); others' only for an admin"
        ),
    ] = None,
) -> list[OptimisationOut]:
    """Newest first: the caller's own optimisations (an admin's: everyone's, `owner=` narrowing them to one user's;
    for anyone else `owner=` another user finds nothing), as the backtests' list."""
    if not principal.acts_for_everyone:
        if owner is not None and owner != principal.subject:
            return []
        owner = principal.subject
    return [OptimisationOut.of(r) for r in await store.recent(owner=owner, limit=limit, offset=offset)]


@router.get("/{optimisation_id}", response_model=OptimisationOut)
async def get(optimisation_id: str, principal: Caller, store: Optimisations) -> OptimisationOut:
    return OptimisationOut.of(await _visible(store, principal, optimisation_id))


@router.get("/{optimisation_id}/points")
async def points(
    optimisation_id: str,
    principal: Caller,
    store: Optimisations,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Evaluated points, best first (feasible before infeasible, undefined objectives last)."""
    record = await _visible(store, principal, optimisation_id)
    rows = await store.points(optimisation_id)
    done = [result_of(r) for r in rows if r.status is not PointStatus.PENDING]
    ranked = rank(done, Objective(record.objective["metric"], record.objective["direction"]))
    return [r.to_json() for r in ranked[offset : offset + limit]]


@router.get("/{optimisation_id}/report.html", response_class=HTMLResponse)
async def report(optimisation_id: str, principal: Caller, store: Optimisations) -> HTMLResponse:
    record = await _visible(store, principal, optimisation_id)
    rows = await store.points(optimisation_id)
    return HTMLResponse(optimisation_html(record, rows))


@router.post("/{optimisation_id}/cancel", response_model=OptimisationOut)
async def cancel(optimisation_id: str, principal: Caller, store: Optimisations) -> OptimisationOut:
    """Owner or admin: the batches still queued are skipped when they arrive (the batch being evaluated finishes).
    Finished: 409 `optimisation_finished`."""
    record = await _visible(store, principal, optimisation_id)
    if record.owner != principal.subject and not principal.at_least(Role.ADMIN):
        raise ServiceError("forbidden", "only the owner or an admin can cancel an optimisation", status_code=403)
    if not await store.finish(optimisation_id, OptimisationStatus.CANCELLED, error="cancelled"):
        raise ServiceError("optimisation_finished", f"optimisation {optimisation_id!r} has finished", status_code=409)
    return OptimisationOut.of(await _visible(store, principal, optimisation_id))
