"""Stored quality reports: a run's summary (rules, true totals per rule) and the findings kept as examples."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from services.data.quality import tally_findings
from services.data.store.base import BATCH_ROWS, StoreBase
from services.data.store.tables import quality_findings, quality_reports
from shared.platform.clock import utcnow


@dataclass(frozen=True)
class QualityFinding:
    """One defect a quality rule found: which stock, which day, which rule, and what exactly."""

    rule: str
    detail: str
    ts_code: str | None = None
    trade_date: date | None = None


@dataclass(frozen=True)
class StoredQualityReport:
    run_id: str
    created_at: datetime
    ingest_run_id: str | None
    start_date: date | None
    end_date: date | None
    rules: list[str]
    findings: int  # findings stored (examples, capped per rule)
    # None for reports stored before the totals were kept (migration 0004).
    total: int | None = None  # findings found
    counts: dict[str, int] | None = None  # rule -> findings found
    kept: dict[str, int] | None = None  # rule -> findings stored
    max_findings_per_rule: int | None = None
    rules_skipped: dict[str, str] | None = None


def _quality_report(row: Any) -> StoredQualityReport:
    return StoredQualityReport(
        run_id=row["run_id"], created_at=row["created_at"], ingest_run_id=row["ingest_run_id"],
        start_date=row["start_date"], end_date=row["end_date"], rules=json.loads(row["rules"]),
        findings=int(row["findings"]), total=None if row["total"] is None else int(row["total"]),
        counts=_json_or_none(row["counts"]), kept=_json_or_none(row["kept"]),
        max_findings_per_rule=row["max_findings_per_rule"], rules_skipped=_json_or_none(row["rules_skipped"]),
    )  # fmt: skip


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class QualityReportStore(StoreBase):
    """`quality_reports` and their `quality_findings`."""

    async def save_quality_report(
        self,
        rules: Sequence[str],
        findings: Sequence[QualityFinding],
        *,
        ingest_run_id: str | None = None,
        start: date | None = None,
        end: date | None = None,
        counts: Mapping[str, int] | None = None,
        max_findings_per_rule: int | None = None,
        rules_skipped: Mapping[str, str] | None = None,
    ) -> str:
        """Store one quality run and its findings in one transaction; returns the report's run id.

        `findings` are the examples kept; `counts` (rule -> findings found) the true totals when the findings were
        capped per rule (default: the findings given are all there were). A rule's count is never below the number
        of its findings kept."""
        found, kept = tally_findings(rules, [f.rule for f in findings], counts)
        run_id = str(uuid.uuid4())
        async for attempt in self.db.transaction():
            async with attempt as session:
                await session.execute(
                    quality_reports.insert().values(
                        run_id=run_id, created_at=utcnow(), ingest_run_id=ingest_run_id, start_date=start,
                        end_date=end, rules=json.dumps(list(rules)), findings=len(findings), total=sum(found.values()),
                        counts=json.dumps(found), kept=json.dumps(kept), max_findings_per_rule=max_findings_per_rule,
                        rules_skipped=json.dumps(dict(rules_skipped or {})),
                    )
                )  # fmt: skip
                rows = [
                    {
                        "run_id": run_id,
                        "ts_code": f.ts_code,
                        "trade_date": f.trade_date,
                        "rule": f.rule,
                        "detail": f.detail,
                    }
                    for f in findings
                ]
                for start_at in range(0, len(rows), BATCH_ROWS):
                    await session.execute(quality_findings.insert(), rows[start_at : start_at + BATCH_ROWS])
        return run_id

    async def get_quality_report(self, run_id: str) -> StoredQualityReport | None:
        query = select(quality_reports).where(quality_reports.c.run_id == run_id)
        async with self._session() as session:
            row = (await session.execute(query)).mappings().first()
        return None if row is None else _quality_report(row)

    async def list_quality_reports(self, limit: int = 50) -> list[StoredQualityReport]:
        query = select(quality_reports).order_by(quality_reports.c.created_at.desc()).limit(limit)
        async with self._session() as session:
            return [_quality_report(row) for row in (await session.execute(query)).mappings().all()]

    async def quality_findings(
        self, run_id: str, *, rule: str | None = None, limit: int = 1000, offset: int = 0
    ) -> list[QualityFinding]:
        query = select(quality_findings).where(quality_findings.c.run_id == run_id)
        if rule is not None:
            query = query.where(quality_findings.c.rule == rule)
        query = query.order_by(quality_findings.c.id).limit(limit).offset(offset)
        async with self._session() as session:
            rows = (await session.execute(query)).mappings().all()
        return [QualityFinding(r["rule"], r["detail"], r["ts_code"], r["trade_date"]) for r in rows]

    async def report_for_ingest(self, ingest_run_id: str) -> str | None:
        """The id of the newest quality report stored for an ingest run, if any."""
        query = (
            select(quality_reports.c.run_id)
            .where(quality_reports.c.ingest_run_id == ingest_run_id)
            .order_by(quality_reports.c.created_at.desc())
            .limit(1)
        )
        async for attempt in self.db.transaction():  # retried, as the ingestion read it
            async with attempt as session:
                found: str | None = await session.scalar(query)
        return found
