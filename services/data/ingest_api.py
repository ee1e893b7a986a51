"""The data service's ingestion and quality API (`/v1/ingest/...`, `/v1/quality/...`, internal token required):
start a backfill or the daily update in the background, follow a run's progress, run and read quality reports.
Routes are thin: the work is in services/data/ingest.py.

The routes the gateway holds for admins (starting a run, reading runs, running the checks) check it here too
(`AdminCaller`: a user principal with role admin, or a service on its own; 403 `forbidden` otherwise), so a
token minted for a viewer or trader cannot start them by calling the service directly."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from services.data.deps import IngestorDep, Store
from services.data.ingest import IngestBusy, IngestError, NotATradingDay, quality_report_for_ingest
from services.data.quality import RULES, QualityInputError
from services.data.scheduler import SHANGHAI, parse_run_time
from services.data.schemas import (
    DataStatusOut,
    FeedStatusOut,
    FindingOut,
    LimitsIn,
    RangeIn,
    ReportOut,
    RunOut,
    RunStarted,
)
from services.data.store import DataStore, IngestRun, StoredQualityReport
from shared.platform.errors import Conflict, Forbidden, NotFound, ServiceError
from shared.platform.internal_auth import Caller, Principal

ingest_router = APIRouter(prefix="/v1", tags=["ingest"])


def _admin(principal: Caller) -> Principal:
    """An admin user, or a service acting on its own (the scheduler's jobs): 403 `forbidden` for anyone else."""
    if not principal.acts_for_everyone:
        raise Forbidden("forbidden", f"{principal.subject} may not run or read ingestion: admins only")
    return principal


AdminCaller = Annotated[Principal, Depends(_admin)]


def _range(body: RangeIn) -> None:
    if body.start > body.end:
        raise ServiceError("invalid_range", f"end: {body.end} is before start {body.start}", status_code=422)


def _run_out(run: IngestRun) -> RunOut:
    detail = run.detail
    return RunOut(
        run_id=run.run_id,
        kind=run.kind,
        status=run.status,
        start_date=run.start_date,
        end_date=run.end_date,
        rows=run.rows,
        percent=round(100 * run.progress, 2),
        rows_per_s=detail.get("rows_per_s"),
        current=detail.get("current"),
        error=run.error,
        started_at=run.started_at,
        updated_at=run.updated_at,
        finished_at=run.finished_at,
        quality_report_id=detail.get("quality_report_id"),
        skipped_endpoints=detail.get("skipped_endpoints") or {},
        detail=detail,
    )


@ingest_router.post(
    "/ingest/backfill",
    status_code=202,
    response_model=RunStarted,
    responses={409: {"description": "`ingest_running`: another run is active"}},
)
async def start_backfill(ingestor: IngestorDep, body: RangeIn, _caller: AdminCaller) -> RunStarted:
    """Backfill [start, end] by trade_date in the background: 202 with the run id; 409 while another run is active."""
    _range(body)
    try:
        run_id = await ingestor.start_backfill(body.start, body.end)
    except IngestBusy as exc:
        raise Conflict("ingest_running", str(exc)) from exc
    return RunStarted(run_id=run_id)


@ingest_router.post(
    "/ingest/update",
    status_code=202,
    response_model=RunStarted,
    responses={409: {"description": "`ingest_running`: another run is active"}},
)
async def start_update(ingestor: IngestorDep, _caller: AdminCaller) -> RunStarted:
    """Fetch the trading days missing since the newest stored one, in the background."""
    try:
        run_id = await ingestor.start_update()
    except IngestBusy as exc:
        raise Conflict("ingest_running", str(exc)) from exc
    return RunStarted(run_id=run_id)


@ingest_router.post(
    "/ingest/limits",
    status_code=202,
    response_model=RunStarted,
    responses={
        403: {"description": "`forbidden`: not an admin"},
        409: {"description": "`ingest_running`: another run is active"},
        422: {"description": "`not_a_trading_day`: the day is not an open day of the stored calendar"},
    },
)
async def start_limits(ingestor: IngestorDep, body: LimitsIn, _caller: AdminCaller) -> RunStarted:
    """Load the exchange limits of `trade_date` (Tushare stk_limit: limits and reference price) now, in the
    background, as the pre-open job does: 202 with the run id (follow it at /v1/ingest/runs/{run_id}). The quote
    bands of that day use them from the next round."""
    try:
        run_id = await ingestor.start_limits(body.trade_date)
    except NotATradingDay as exc:
        raise ServiceError("not_a_trading_day", f"trade_date: {exc}", status_code=422) from exc
    except IngestBusy as exc:
        raise Conflict("ingest_running", str(exc)) from exc
    return RunStarted(run_id=run_id)


@ingest_router.get("/ingest/runs", response_model=list[RunOut])
async def list_runs(
    store: Store, _caller: AdminCaller, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[RunOut]:
    return [_run_out(r) for r in await store.list_ingest_runs(limit)]


@ingest_router.get("/ingest/runs/{run_id}", response_model=RunOut, responses={404: {"description": "no such run"}})
async def get_run(store: Store, run_id: str, _caller: AdminCaller) -> RunOut:
    run = await store.get_ingest_run(run_id)
    if run is None:
        raise NotFound("unknown_run", f"no ingest run {run_id}")
    return _run_out(run)


async def latest_out_day(store: DataStore, now: datetime, update_at: str) -> date | None:
    """The stored calendar's newest trading day on or before `now` (Asia/Shanghai) whose update time has passed."""
    local = now.astimezone(SHANGHAI)
    run_time = parse_run_time(update_at)
    last_two = await store.open_days_before(local.date() + timedelta(days=1), 2)
    for day in reversed(last_two):
        if day < local.date() or local.time() >= run_time:
            return day
    return None


@ingest_router.get("/data/status", response_model=DataStatusOut)
async def data_status(request: Request, store: Store, ingestor: IngestorDep) -> DataStatusOut:
    """How far the store is (the newest trading day stored in full against the calendar's newest trading day whose
    data is out, in trading days) and the real-time feed as this data process sees it (docs/data-ingest.md)."""
    state = request.app.state
    settings = state.settings
    update_at = settings.data_update_at or "17:30"
    now = state.infra.clock.now()
    complete = await ingestor.last_update_day()
    latest = await latest_out_day(store, now, update_at)
    lag: int | None = None
    if complete is not None:
        lag = (
            0
            if latest is None or latest <= complete
            else len(await store.open_days(complete + timedelta(days=1), latest))
        )
    metrics = state.quote_metrics
    snapshot = metrics.latest
    age = None if snapshot is None else round(max((now - snapshot).total_seconds(), 0.0), 3)
    return DataStatusOut(
        complete_through=complete,
        latest_trading_day=latest,
        lag_days=lag,
        update_at=update_at,
        feed=FeedStatusOut(
            mode=settings.quotes_feed_mode(),
            latest_snapshot_at=snapshot,
            age_s=age,
            bridges=sorted(b for b, n in metrics.bridges.items() if n > 0),
        ),
    )


@ingest_router.post(
    "/quality/run",
    response_model=ReportOut,
    responses={409: {"description": "`quality_unavailable`: the checks cannot run now (e.g. no bars stored)"}},
)
async def run_quality(
    ingestor: IngestorDep,
    store: Store,
    body: RangeIn,
    _caller: AdminCaller,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 1000,
) -> ReportOut:
    """Check the stored bars of [start, end] now; the report is stored and returned (findings up to `limit`)."""
    _range(body)
    try:
        report_id, _ = await ingestor.quality(body.start, body.end)
    except (QualityInputError, IngestError) as exc:
        raise ServiceError("quality_unavailable", str(exc), status_code=409) from exc
    return await _report_out(store, report_id, limit=limit, offset=0, rule=None)


@ingest_router.get("/quality/reports", response_model=list[ReportOut])
async def list_reports(store: Store, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ReportOut]:
    """The newest reports, without their findings (ask one report for those)."""
    return [_report_meta(r, []) for r in await store.list_quality_reports(limit)]


@ingest_router.get(
    "/quality/reports/{run_id}", response_model=ReportOut, responses={404: {"description": "no such report"}}
)
async def get_report(
    store: Store,
    run_id: str,
    rule: Annotated[str | None, Query(description="only this rule's findings")] = None,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,  # what a database integer holds
) -> ReportOut:
    """One report by its id, or the report of an ingest run by the ingest run's id."""
    if rule is not None and rule not in RULES:
        raise ServiceError("invalid_request", f"rule: unknown rule {rule!r}; known: {', '.join(RULES)}",
                           status_code=422)  # fmt: skip
    if await store.get_quality_report(run_id) is None:
        found = await quality_report_for_ingest(store, run_id)
        if found is None:
            raise NotFound("unknown_report", f"no quality report {run_id} (nor one for an ingest run of that id)")
        run_id = found
    return await _report_out(store, run_id, limit=limit, offset=offset, rule=rule)


async def _report_out(store: DataStore, report_id: str, *, limit: int, offset: int, rule: str | None) -> ReportOut:
    report = await store.get_quality_report(report_id)
    if report is None:
        raise NotFound("unknown_report", f"no quality report {report_id}")
    findings = await store.quality_findings(report_id, rule=rule, limit=limit, offset=offset) if limit else []
    items = [
        FindingOut(rule=f.rule, severity=str(RULES[f.rule].severity) if f.rule in RULES else "unknown",
                   ts_code=f.ts_code, trade_date=f.trade_date, detail=f.detail)
        for f in findings
    ]  # fmt: skip
    return _report_meta(report, items)


def _report_meta(report: StoredQualityReport, items: list[FindingOut]) -> ReportOut:
    return ReportOut(
        run_id=report.run_id,
        created_at=report.created_at,
        ingest_run_id=report.ingest_run_id,
        start_date=report.start_date,
        end_date=report.end_date,
        rules=list(report.rules),
        findings=report.findings if report.total is None else report.total,
        kept=report.findings,
        counts=report.counts,
        kept_by_rule=report.kept,
        max_findings_per_rule=report.max_findings_per_rule,
        rules_skipped=report.rules_skipped,
        items=items,
    )
