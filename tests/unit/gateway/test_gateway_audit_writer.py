"""The audit log's writer without a database (a store that fails on demand), and the lists of paths the audit
middleware treats apart (read-only POSTs, requests served even when the backlog is full) against the real routes."""

from __future__ import annotations

import asyncio
import re
import time

from prometheus_client import CollectorRegistry

from gateway import reports
from gateway.audit import ALWAYS_ALLOWED, READ_ONLY_POSTS, AuditLog
from gateway.routes import ROUTES
from gateway.store import AuditEntry
from shared.platform.clock import utcnow


class FailingStore:
    """Refuses every write while `down`; records when each attempt came."""

    def __init__(self) -> None:
        self.down = True
        self.attempts: list[float] = []
        self.written: list[AuditEntry] = []

    async def insert_audit(self, entries: list[AuditEntry]) -> None:
        self.attempts.append(time.monotonic())
        if self.down:
            raise ConnectionError("database down")
        self.written.extend(entries)


def entry(n: int) -> AuditEntry:
    return AuditEntry(utcnow(), "u", "jwt", None, "POST", f"/api/v1/orders/o-{n}/cancel", f"o-{n}", 200, f"r{n}")


async def drained(audit: AuditLog, *, within_s: float) -> None:
    """Return once nothing waits, or after `within_s`."""
    deadline = time.monotonic() + within_s
    for _ in range(int(within_s / 0.005)):
        if not audit.pending or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.005)


async def test_a_database_outage_is_retried_at_the_backoff_pace_however_many_requests_arrive() -> None:
    store = FailingStore()
    registry = CollectorRegistry()
    # After a failure the writer waits max(2 x 30 s, 0.5 s) capped at 60 s: the next attempt is a minute away, far
    # beyond this test, so any further attempt can only be a request waking the writer.
    audit = AuditLog(store, batch_size=2, flush_interval_s=30.0, max_backoff_s=60.0, registry=registry)  # type: ignore[arg-type]
    audit.start()
    try:
        audit.record(entry(0))
        audit.record(entry(1))  # a full batch wakes the writer: its attempt fails
        for _ in range(2000):
            if store.attempts:
                break
            await asyncio.sleep(0.005)
        assert len(store.attempts) == 1
        # 200 more requests, each finding more than batch_size waiting: none wakes the writer while it backs off.
        for n in range(2, 202):
            audit.record(entry(n))
            await asyncio.sleep(0.001)
        assert len(store.attempts) == 1  # before the fix: one attempt per request
        assert len(audit.pending) == 202  # nothing dropped meanwhile
        assert registry.get_sample_value("lh_gateway_audit_write_failures_total") == 1

        # Back: everything is written, in order.
        store.down = False
        await audit.flush()
        assert not audit.pending and [e.resource_id for e in store.written] == [f"o-{i}" for i in range(202)]
    finally:
        await audit.stop()


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    store = FailingStore()
    store.down = False
    # An interval of a minute: a write within the 10 s this test waits can only be the full batch's wake-up.
    audit = AuditLog(store, batch_size=2, flush_interval_s=60.0, max_backoff_s=0.5, registry=CollectorRegistry())  # type: ignore[arg-type]
    audit.start()
    try:
        audit.record(entry(0))
        audit.record(entry(1))
        await drained(audit, within_s=10.0)
        assert not audit.pending and [e.resource_id for e in store.written] == ["o-0", "o-1"]
    finally:
        await audit.stop()


def _example_paths(method: str) -> set[str]:
    """Every public path the gateway answers for `method`, its parameters filled in."""
    paths = {r.public_path for r in ROUTES if r.method == method}
    paths |= {r.path for r in reports.router.routes if method in getattr(r, "methods", ())}  # type: ignore[attr-defined]
    return {re.sub(r"{\w+}", "x-1", p) for p in paths}


def test_the_read_only_posts_are_the_routes_that_change_nothing() -> None:
    posts = _example_paths("POST")
    skipped = {p for p in posts if any(pattern.fullmatch(p) for pattern in READ_ONLY_POSTS)}
    assert skipped == {
        "/api/v1/indicators/series",
        "/api/v1/backtests/x-1/report-link",
        "/api/v1/optimisations/x-1/report-link",
    }


def test_the_requests_served_with_a_full_backlog_are_the_cancels_and_the_kill_switch() -> None:
    posts = _example_paths("POST")
    served = {p for p in posts if any(pattern.fullmatch(p) for pattern in ALWAYS_ALLOWED)}
    assert served == {
        "/api/v1/orders/x-1/cancel",
        "/api/v1/orders/cancel-all",
        "/api/v1/conditional-orders/x-1/cancel",
        "/api/v1/risk/halt",
    }
