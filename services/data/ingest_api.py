"""The data service's ingestion and quality API (`/v1/ingest/...`, `/v1/quality/...`, internal token required):
start a backfill or the daily update in the background, follow a run's progress, run and read quality reports.
Routes are thin: the work is in services/data/ingest.py."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from services.data.ingest import IngestBusy, IngestError, Ingestor, quality_report_for_ingest
from services.data.quality import RULES, QualityInputError
from services.data.store import DataStore, IngestRun, StoredQualityReport
from shared.platform.errors import Conflict, NotFound, ServiceError
from shared.platform.request_model import RequestModel, TradeDate

ingest_router = APIRouter(prefix="/v1", tags=["ingest"])


class RangeIn(RequestModel):
    start: TradeDate
    end: TradeDate


class RunStarted(BaseModel):
    run_id: str
    status: str = "running"


class RunOut(BaseModel):
    run_id: str
    kind: str
    status: str  # running, succeeded, failed, interrupted
    start_date: date | None
    end_date: date | None
    rows: int  # rows written so far, every table
    percent: float
    rows_per_s: float | None
    current: str | None  # the last day (or file) done
    error: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    quality_report_id: str | None
    # Optional endpoints the run did without (the provider token may not use them) -> why; see docs/data-ingest.md.
    skipped_endpoints: dict[str, str]
    detail: dict[str, Any]


class FindingOut(BaseModel):
    rule: str
    severity: str
    ts_code: str | None
    trade_date: date | None
    detail: str


class ReportOut(BaseModel):
    run_id: str
    created_at: datetime
    ingest_run_id: str | None
    start_date: date | None
    end_date: date | None
    rules: list[str]
    # All findings of the run. Each rule keeps at most `max_findings_per_rule` of its findings as examples:
    # `kept` of them are stored (`kept_by_rule` per rule) while `counts` has every rule's true total. Reports
    # stored before the totals were kept know only their examples: `counts` is null and `findings` == `kept`.
    findings: int
    kept: int
    counts: dict[str, int] | None = None
    kept_by_rule: dict[str, int] | None = None
    max_findings_per_rule: int | None = None
    rules_skipped: dict[str, str] | None = None
    items: list[FindingOut]


def _ingestor(request: Request) -> Ingestor:
    ingestor: Ingestor = request.app.state.ingestor
    return ingestor


def _store(request: Request) -> DataStore:
    store: DataStore = request.app.state.store
    return store


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
async def start_backfill(request: Request, body: RangeIn) -> RunStarted:
    """Backfill [start, end] by trade_date in the background: 202 with the run id; 409 while another run is active."""
    _range(body)
    try:
        run_id = await _ingestor(request).start_backfill(body.start, body.end)
    except IngestBusy as exc:
        raise Conflict("ingest_running", str(exc)) from exc
    return RunStarted(run_id=run_id)


@ingest_router.post(
    "/ingest/update",
    status_code=202,
    response_model=RunStarted,
    responses={409: {"description": "`ingest_running`: another run is active"}},
)
async def start_update(request: Request) -> RunStarted:
    """Fetch the trading days missing since the newest stored one, in the background."""
    try:
        run_id = await _ingestor(request).start_update()
    except IngestBusy as exc:
        raise Conflict("ingest_running", str(exc)) from exc
    return RunStarted(run_id=run_id)


@ingest_router.get("/ingest/runs", response_model=list[RunOut])
async def list_runs(request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[RunOut]:
    return [_run_out(r) for r in await _store(request).list_ingest_runs(limit)]


@ingest_router.get("/ingest/runs/{run_id}", response_model=RunOut, responses={404: {"description": "no such run"}})
async def get_run(request: Request, run_id: str) -> RunOut:
    run = await _store(request).get_ingest_run(run_id)
    if run is None:
        raise NotFound("unknown_run", f"no ingest run {run_id}")
    return _run_out(run)


@ingest_router.post(
    "/quality/run",
    response_model=ReportOut,
    responses={409: {"description": "`quality_unavailable`: the checks cannot run now (e.g. no bars stored)"}},
)
async def run_quality(
    request: Request, body: RangeIn, limit: Annotated[int, Query(ge=0, le=10_000)] = 1000
) -> ReportOut:
    """Check the stored bars of [start, end] now; the report is stored and returned (findings up to `limit`)."""
    _range(body)
    try:
        report_id, _ = await _ingestor(request).quality(body.start, body.end)
    except (QualityInputError, IngestError) as exc:
        raise ServiceError("quality_unavailable", str(exc), status_code=409) from exc
    return await _report_out(_store(request), report_id, limit=limit, offset=0, rule=None)


@ingest_router.get("/quality/reports", response_model=list[ReportOut])
async def list_reports(request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ReportOut]:
    """The newest reports, without their findings (ask one report for those)."""
    return [_report_meta(r, []) for r in await _store(request).list_quality_reports(limit)]


@ingest_router.get(
    "/quality/reports/{run_id}", response_model=ReportOut, responses={404: {"description": "no such report"}}
)
async def get_report(
    request: Request,
    run_id: str,
    rule: Annotated[str | None, Query(description="only this rule's findings")] = None,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,  # what a database integer holds
) -> ReportOut:
    """One report by its id, or the report of an ingest run by the ingest run's id."""
    if rule is not None and rule not in RULES:
        raise ServiceError("invalid_request", f"rule: unknown rule {rule!r}; known: {', '.join(RULES)}",
                           status_code=422)  # fmt: skip
    store = _store(request)
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
