"""Routes of the backtest service (all require the internal token)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from services.backtest.deps import Backtests, Caller
from services.backtest.schemas import (
    BacktestAccepted,
    BacktestBrief,
    BacktestDetail,
    BacktestRequest,
    BacktestTca,
    TradesPage,
)
from services.backtest.store import BacktestStatus
from shared.research.report import render_html

router = APIRouter(prefix="/v1/backtests", tags=["backtests"])
NOT_FOUND = {"description": "`backtest_not_found` (or no trades / report data stored)"}
NOT_SUCCEEDED = {"description": "the backtest has not succeeded (yet)"}
MAX_OFFSET = 2**62  # an OFFSET a database integer holds (beyond it: 422, not a driver's overflow)


@router.post("", status_code=202, response_model=BacktestAccepted)
async def submit_backtest(body: BacktestRequest, principal: Caller, backtests: Backtests) -> BacktestAccepted:
    """Queue a backtest: `strategy` + `params`, or `sleeves` (2 to 10 strategies or parameter sets side by side on
    the same data, with weights of the initial cash; one job). Bad parameters, costs or universe: 422 naming the
    field (`params.fast: ...`, `sleeves.1.params.fast: ...`); an unknown strategy: 422 `unknown_strategy`."""
    record = await backtests.submit(principal, body)
    return BacktestAccepted(backtest_id=record.backtest_id, status=record.status.value)


@router.get("", response_model=list[BacktestBrief])
async def list_backtests(
    principal: Caller,
    backtests: Backtests,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    strategy: Annotated[
        str | None,
        Query(max_length=64, description="the run's strategy or one of its sleeves' (the exact name)"),
    ] = None,
    status: BacktestStatus | None = None,
    q: Annotated[
        str | None,
        Query(max_length=128, description="in the id, name, strategy (a sleeve's too), benchmark or universe"),
    ] = None,
    created_from: Annotated[datetime | None, Query(description="created at or after (ISO; naive = UTC)")] = None,
    created_to: Annotated[datetime | None, Query(description="created before (ISO; naive = UTC)")] = None,
    owner: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="the runs of this user (exact); others' only for an admin"),
    ] = None,
) -> list[BacktestBrief]:
    """Newest first: the caller's own backtests (an admin's: everyone's, `owner=` narrowing them to one user's; for
    anyone else `owner=` another user finds nothing). Paged by `limit` and `offset`. A run with several strategies is
    found by `strategy=` and `q` through any of its sleeves' strategies as well as by `portfolio`."""
    return await backtests.list(
        principal,
        limit=limit,
        offset=offset,
        owner=owner,
        strategy=strategy,
        status=status,
        q=q,
        created_from=created_from,
        created_to=created_to,
    )


@router.get("/{backtest_id}", response_model=BacktestDetail, responses={404: NOT_FOUND})
async def get_backtest(backtest_id: str, principal: Caller, backtests: Backtests) -> BacktestDetail:
    return await backtests.get(principal, backtest_id)


@router.post(
    "/{backtest_id}/cancel",
    response_model=BacktestBrief,
    responses={404: NOT_FOUND, 409: {"description": "`backtest_finished`: it finished already"}},
)
async def cancel_backtest(backtest_id: str, principal: Caller, backtests: Backtests) -> BacktestBrief:
    """Owner or admin. Queued: cancelled at once. Running: `cancel_requested` is set and the worker stops the run
    within about a second (status `cancelled`, a `backtest.finished` event). Finished: 409 `backtest_finished`."""
    return await backtests.cancel(principal, backtest_id)


@router.get("/{backtest_id}/trades", response_model=TradesPage, responses={404: NOT_FOUND, 409: NOT_SUCCEEDED})
async def get_trades(
    backtest_id: str,
    principal: Caller,
    backtests: Backtests,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> TradesPage:
    """The trades of a succeeded backtest in execution order (sells first within a day), a page at a time."""
    return await backtests.trades(principal, backtest_id, limit=limit, offset=offset)


@router.get(
    "/{backtest_id}/tca",
    response_model=BacktestTca,
    responses={404: {"description": "`backtest_not_found`; `no_tca_data` (run before decisions were stored)"},
               409: NOT_SUCCEEDED},
)  # fmt: skip
async def get_tca(
    backtest_id: str,
    principal: Caller,
    backtests: Backtests,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> BacktestTca:
    """The backtest's transaction cost analysis (docs/tca.md, "Backtests"), as execution's for live orders: each
    order's fills against its arrival price, here the close of the day the strategy decided on (a page of orders),
    and every order by the decision's day and in all. Set beside `GET /api/v1/tca/summary` of the strategy instance
    running it live: the gap between the backtest's modelled costs and the market's."""
    return await backtests.tca(principal, backtest_id, limit=limit, offset=offset)


@router.get("/{backtest_id}/report", responses={404: NOT_FOUND, 409: NOT_SUCCEEDED})
async def get_report(backtest_id: str, principal: Caller, backtests: Backtests) -> Response:
    """The report data for the web UI (shared.research.report.ReportData as JSON), without the trade list: page through
    `/trades` for it. 409 `backtest_not_succeeded` until the run has succeeded."""
    report = await backtests.report(principal, backtest_id)
    body = report.model_dump_json(exclude={"trades"})
    return Response(content=body, media_type="application/json")


@router.get("/{backtest_id}/report.html", response_class=HTMLResponse, responses={404: NOT_FOUND, 409: NOT_SUCCEEDED})
async def get_report_html(
    backtest_id: str, principal: Caller, backtests: Backtests, download: Annotated[bool, Query()] = False
) -> HTMLResponse:
    """The report as one self-contained HTML page (charts work offline). `download=true` asks the browser to save
    it as `backtest-<id>.html`."""
    report = await backtests.report(principal, backtest_id)
    headers = {"Content-Disposition": f'attachment; filename="backtest-{backtest_id}.html"'} if download else None
    return HTMLResponse(content=render_html(report), headers=headers)
