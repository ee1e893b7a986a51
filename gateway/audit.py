"""The gateway's audit log: every state-changing request (POST, PUT, PATCH, DELETE) through the gateway, its own routes
and the forwarded ones, recorded with who made it (username, and how: session or API key), when, the method, the
path, the resource id from the path, the answer's status and the request id. Never the body (passwords, keys).

Not recorded: the POSTs that only read (`READ_ONLY_POSTS`: a chart's indicator series, a report link), and requests
refused before anyone was authenticated (a missing or bad credential, a failed log-in, an unknown path, a rate
limit before the user is known): anyone can send those as fast as they like, so they are counted by status in
`lh_gateway_audit_unauthenticated_refusals_total` instead of growing the table and the backlog.

Off the request path: `AuditMiddleware` hands each entry to `AuditLog`, which keeps it in memory and writes batches
in the background (one INSERT for up to `batch_size` entries), so an order waits for no audit write.

Never lost while the process lives: an entry leaves memory only once its batch is committed. When the database is
down the writer tries again with a backoff (up to `max_backoff_s`) and the entries wait; `lh_gateway_audit_pending`
shows how many. Once `max_pending` wait, the gateway refuses state-changing requests (503 `audit_unavailable`)
instead of doing what it could not record: it fails closed, as the users table being down would refuse log-ins.
Except for the requests that make things safer (`ALWAYS_ALLOWED`: cancelling orders, the kill switch's halt, not its
resume): those pass, and their entry is written to the log as one ERROR line (`audit entry not written`) instead of
being queued, since a trader must be able to cancel and an admin to halt while the audit database is down.
At shutdown it writes what waits for up to `stop_grace_s`; entries it still could not write are logged, each as one
ERROR line with every field (`audit entry not written`), so the log store holds them. A process killed outright
loses at most the entries of its last `flush_interval_s` (the access log still has each request with its id)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.store import AuditEntry, GatewayStore
from shared.platform.clock import utcnow
from shared.platform.observability import CORRELATION_HEADER, REQUEST_ID_HEADER

log = logging.getLogger(__name__)

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_PATH = 512
MAX_RESOURCE_ID = 200
_SEGMENT = r"[^/]+"
# POSTs that change nothing (a body too big or too structured for a query string): not recorded, never refused.
READ_ONLY_POSTS = (
    re.compile(r"/api/v1/indicators/series"),
    re.compile(rf"/api/v1/(?:backtests|optimisations)/{_SEGMENT}/report-link"),
)
# Requests that stop trading or take orders off the market: served even when the backlog is full (entry logged).
ALWAYS_ALLOWED = (
    re.compile(rf"/api/v1/orders/{_SEGMENT}/cancel"),
    re.compile(r"/api/v1/orders/cancel-all"),
    re.compile(rf"/api/v1/conditional-orders/{_SEGMENT}/cancel"),
    re.compile(r"/api/v1/risk/halt"),
)
# The kill switch's path also resumes trading (state "active") or reduces it: with the backlog full only a halt
# passes, read from the body (small: a scope, a key, a state and a reason), which is then replayed to the route.
HALT_PATH = "/api/v1/risk/halt"
MAX_HALT_BODY = 16 * 1024


def _matches(patterns: tuple[re.Pattern[str], ...], path: str) -> bool:
    return any(p.fullmatch(path) for p in patterns)


class AuditLog:
    def __init__(
        self,
        store: GatewayStore,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        max_pending: int = 50_000,
        max_backoff_s: float = 5.0,
        stop_grace_s: float = 5.0,
        retention_days: int = 400,
        purge_batch_size: int = 5_000,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.max_backoff_s = max_backoff_s
        self.stop_grace_s = stop_grace_s
        self.retention_days = retention_days
        self.purge_batch_size = purge_batch_size
        self.pending: deque[AuditEntry] = deque()
        self._wake = asyncio.Event()
        self._backing_off = False  # the last write failed: wait out the backoff, whatever arrives meanwhile
        self._writing = asyncio.Lock()  # one batch in flight: the loop and flush() never write the same entries
        self._task: asyncio.Task[None] | None = None
        registry = registry if registry is not None else CollectorRegistry()
        self.pending_gauge = Gauge("lh_gateway_audit_pending", "audit entries waiting to be written", registry=registry)
        self.pending_gauge.set_function(lambda: len(self.pending))
        self.failures = Counter(
            "lh_gateway_audit_write_failures", "audit batch writes that failed (retried)", registry=registry
        )
        self.refused = Counter(
            "lh_gateway_audit_refused_requests",
            "state-changing requests refused because the audit backlog was full",
            registry=registry,
        )
        self.logged_only = Counter(
            "lh_gateway_audit_logged_only",
            "cancels and halts served while the backlog was full, their entry written to the log instead",
            registry=registry,
        )
        self.unauthenticated = Counter(
            "lh_gateway_audit_unauthenticated_refusals",
            "state-changing requests refused before authentication (not recorded in the audit log), by status",
            ["status"],
            registry=registry,
        )

    @property
    def accepting(self) -> bool:
        return len(self.pending) < self.max_pending

    def record(self, entry: AuditEntry) -> None:
        self.pending.append(entry)
        if len(self.pending) >= self.batch_size and not self._backing_off:
            self._wake.set()  # while backing off, the writer's timer alone decides: no retry per request

    async def _write_batch(self) -> int:
        """Write the oldest waiting entries (at most batch_size); they leave memory only once committed."""
        async with self._writing:
            batch = [self.pending[i] for i in range(min(self.batch_size, len(self.pending)))]
            if not batch:
                return 0
            await self.store.insert_audit(batch)
            for _ in batch:
                self.pending.popleft()
            return len(batch)

    async def flush(self) -> None:
        """Write everything waiting now; raises the database's error if a batch cannot be written."""
        while self.pending:
            await self._write_batch()

    async def _run(self) -> None:
        backoff = self.flush_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                self.failures.inc()
                self._backing_off = True
                self._wake.clear()  # set by the requests during the failed attempt: no retry at once
                backoff = min(max(backoff * 2, 0.5), self.max_backoff_s)
                log.warning(
                    "audit entries not written yet; trying again",
                    extra={"pending": len(self.pending), "retry_in_s": backoff, "error": type(exc).__name__},
                )
            else:
                self._backing_off = False
                backoff = self.flush_interval_s

    async def purge_expired(self) -> int:
        """Delete the entries older than `retention_days`, in batches (the retention task's function)."""
        cutoff = utcnow() - timedelta(days=self.retention_days)
        deleted = await self.store.delete_audit_before(cutoff, batch_size=self.purge_batch_size)
        if deleted:
            log.info("audit entries past their retention deleted", extra={"deleted": deleted, "before": str(cutoff)})
        return deleted

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        deadline = time.monotonic() + self.stop_grace_s
        while self.pending and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self.flush(), timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                self.failures.inc()
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        while self.pending:
            log_instead(self.pending.popleft())


def log_instead(entry: AuditEntry) -> None:
    """The fallback record of an entry the database did not get: one ERROR line with every field."""
    fields = entry.row() | {"at": entry.at.isoformat()}
    log.error("audit entry not written", extra={"audit": json.dumps(fields)})


def _header(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    wanted = name.lower().encode()
    return next((v.decode("latin-1") for k, v in headers if k.lower() == wanted), None)


class AuditMiddleware:
    """Records each state-changing HTTP request in `audit` once it is answered (or failed). Outermost, so it sees
    the request id the correlation middleware answers with, refusals by the body limit, and the user the route's
    authentication put in the request state."""

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in AUDITED_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if scope["method"] == "POST" and _matches(READ_ONLY_POSTS, path):
            await self.app(scope, receive, send)
            return
        queue = self.audit.accepting
        if not queue and not _matches(ALWAYS_ALLOWED, path):
            self.audit.refused.inc()
            await _refuse(send)
            return
        if not queue and path == HALT_PATH:
            body = await _read_body(receive, MAX_HALT_BODY)
            if body is None or not _is_halt(body):  # a resume, a reduce, or a body that is no halt: refused
                self.audit.refused.inc()
                await _refuse(send)
                return
            receive = _replay(body, receive)
        status = 500  # unless an answer starts: an exception escaped
        request_id: str | None = _header(scope.get("headers", []), CORRELATION_HEADER) or _header(
            scope.get("headers", []), REQUEST_ID_HEADER
        )

        async def send_recording(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                request_id = _header(list(message.get("headers", [])), CORRELATION_HEADER) or request_id
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            entry = _entry(scope, status, request_id)
            if entry.username is None and status >= 400:
                self.audit.unauthenticated.labels(status=str(status)).inc()
            elif queue:
                self.audit.record(entry)
            else:
                self.audit.logged_only.inc()
                log_instead(entry)


def _entry(scope: Scope, status: int, request_id: str | None) -> AuditEntry:
    user: Any = (scope.get("state") or {}).get("user")
    params = scope.get("path_params") or {}
    resource = "/".join(str(v) for v in params.values()) or None
    path = scope.get("path", "")
    return AuditEntry(
        at=utcnow(),
        username=getattr(user, "username", None),
        via=getattr(user, "via", None),
        key_id=getattr(user, "key_id", None),
        method=scope["method"],
        path=path if len(path) <= MAX_PATH else path[: MAX_PATH - 3] + "...",
        resource_id=resource[:MAX_RESOURCE_ID] if resource else None,
        status=status,
        request_id=(request_id or "")[:64],
    )


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request's whole body, or None past `limit` bytes or when the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _is_halt(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("state") == "halted"


def _replay(body: bytes, then: Receive) -> Receive:
    """The body read already, once; then the connection's own messages (a disconnect when the client goes)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


async def _refuse(send: Send) -> None:
    body = json.dumps(
        {
            "code": "audit_unavailable",
            "message": "the gateway cannot record changes in its audit log now (its database is unavailable); "
            "nothing was done: try again later",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"application/json"), (b"retry-after", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": body})
