"""The alerts page's API (docs/operations.md, "The alerts page"): the active alerts, silences (acknowledging an alert
is silencing it) and the history of what fired and resolved.

Active alerts and silences are Alertmanager's, read and changed through its API v2 at LH_ALERTMANAGER_URL: the
platform keeps no copy and re-implements nothing (dedup, grouping, silences, inhibition stay Alertmanager's). Who may
do what, checked here in the gateway:

- Reading is scoped by account, failing closed (gateway/store.py, alert_scope). Business alerts carry an `account`
  label (services/notify/business.py) and name the account or owner in their summaries: an admin sees every alert; a
  viewer or trader sees an alert (active, in the history, and the silences) only when its account (the `account`
  label, or the `key` of a `scope=account` alert) is their own, or, without one, when its `owner` label (a
  strategy's author) is their username, or when it is platform-wide: none of the labels `account`, `owner`,
  `instance_id`, `bridge_id`, nor a `scope` other than `global` (a service down). Anything else (an instance's halt
  before any of its orders was decided, which names no account; a bridge's alert without an account) is an admin's
  alone. An alert's `silenced_by` and `inhibited_by` name only
  the silences and alerts the reader may see.
- Silencing: an admin silences anything (any `matchers`, or an alert by its `fingerprint`). A trader names an active
  alert by its `fingerprint` only; the gateway builds the matchers from that alert's complete label set (so the
  silence holds that alert, or one of the same account with all its labels and more, and by `account=<theirs>`
  among them never another account's). An alert they may not see is 404 `alert_not_found`, as an unknown one (no
  telling that it exists); one they see without an account (platform-wide, or only their own by `owner`) is 403
  `platform_alert`. The author is the logged-in user, never a name sent in the body. A trader expires the silences
  they created, an admin anyone's.

Alertmanager keeps no history of resolved alerts, so Alertmanager posts every notification (firing and resolved, on
a `continue: true` route, prometheus/alertmanager.yml; none while a silence holds the alert: a silence mutes this
receiver too) to `POST /api/v1/alerts/webhook` with the bearer token it
presents to the notify service; the gateway keeps each transition once in its own database (gateway/store.py,
`alert_events`), where the page reads it in pages."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import BaseModel, Field, field_validator, model_validator

from gateway.auth import CurrentUser
from gateway.deps import Store, Trader, Viewer
from gateway.store import SCOPING_LABELS, AlertTransition, HistoryScope, alert_scope
from shared.platform.alertmanager import WebhookNotification
from shared.platform.errors import Forbidden, NotFound, ServiceError, Unavailable
from shared.platform.request_model import RequestModel, StrictInt
from shared.platform.roles import Role

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

MAX_SILENCE_MINUTES = 7 * 24 * 60  # a week: longer is a rule to change, not an alert to acknowledge
MAX_COMMENT = 500
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # Prometheus's label names
SILENCE_ID = r"^[0-9a-fA-F-]{1,64}$"  # Alertmanager's silence ids are UUIDs
FINGERPRINT = r"^[0-9a-fA-F]{1,64}$"  # Alertmanager's fingerprints are 16 hex digits
HISTORY_PAGE_MAX = 200
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


# --- bodies and answers ---------------------------------------------------------------------------------------------


class SilenceCreate(RequestModel):
    """Silence for `duration_minutes`, with a comment saying why, either the active alert `fingerprint` (the silence's
    matchers are that alert's complete label set, each `name=value`) or, admins only, whatever alert has all of the
    labels `matchers` (Alertmanager silences every alert that has them, whatever other labels it has: `severity=
    critical` alone would silence every critical alert). Exactly one of the two. The author is the logged-in user."""

    fingerprint: str | None = Field(default=None, pattern=FINGERPRINT)
    matchers: dict[str, str] | None = Field(default=None, min_length=1, max_length=30)
    duration_minutes: StrictInt = Field(ge=1, le=MAX_SILENCE_MINUTES)
    comment: str = Field(max_length=MAX_COMMENT)

    @field_validator("matchers")
    @classmethod
    def _label_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, label in (value or {}).items():
            if not LABEL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a label name (letters, digits and _, not starting with a digit)")
            if not label or len(label) > 1024:
                raise ValueError(f"the value of {name!r} must be 1 to 1024 characters")
        return value

    @field_validator("comment")
    @classmethod
    def _comment(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("say why the alert is silenced")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> SilenceCreate:
        if (self.fingerprint is None) == (self.matchers is None):
            raise ValueError("name the alert to silence: either its fingerprint or (admins) matchers, not both")
        return self


class AlertOut(BaseModel):
    fingerprint: str
    alertname: str
    severity: str
    summary: str
    description: str
    runbook_url: str
    labels: dict[str, str]
    starts_at: datetime
    state: str  # active | suppressed (silenced or inhibited) | unprocessed
    silenced_by: list[str]
    inhibited_by: list[str]


class Matcher(BaseModel):
    name: str
    value: str
    is_regex: bool
    is_equal: bool


class SilenceOut(BaseModel):
    id: str
    state: str  # active | pending | expired
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str


class HistoryEntry(BaseModel):
    id: int
    fingerprint: str
    status: str  # firing | resolved
    alertname: str
    severity: str
    summary: str
    labels: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    received_at: datetime


class HistoryPage(BaseModel):
    items: list[HistoryEntry]
    next_before_id: int | None  # pass as before_id for the next (older) page; None: this is the last


class WebhookAccepted(BaseModel):
    alerts: int
    recorded: int  # transitions not kept before


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not authenticated: `{code: unauthenticated}`"},
    403: {
        "description": "the role is too low (`forbidden`), the silence is another user's (`not_your_silence`), a "
        "trader named an alert they see that is of no account (`platform_alert`), or "
        "sent `matchers` (`matchers_admin_only`)"
    },
    404: {"description": "`alert_not_found`: no active alert you can see has that fingerprint"},
    503: {
        "description": "`alertmanager_not_configured` (LH_ALERTMANAGER_URL is empty, as in standalone `make run`) "
        "or `alertmanager_unavailable` (it did not answer)"
    },
}


# --- Alertmanager's API ---------------------------------------------------------------------------------------------


class AlertmanagerApi:
    """Alertmanager's API v2, with its failures as the platform's errors (503 when it cannot answer)."""

    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url or "http://alertmanager.invalid", timeout=timeout_s)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not self.base_url:
            raise Unavailable(
                "alertmanager_not_configured",
                "no Alertmanager is configured (LH_ALERTMANAGER_URL): alerts are not available in this deployment",
            )
        try:
            response = await self.http.request(method, f"/api/v2{path}", **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable("alertmanager_unavailable", f"Alertmanager did not answer: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise Unavailable("alertmanager_unavailable", f"Alertmanager failed with HTTP {response.status_code}")
        return response

    @staticmethod
    def refused(response: httpx.Response) -> ServiceError:
        # What the gateway built was refused: a bug here or an Alertmanager of another version, not the user's doing.
        log.error("Alertmanager refused a request", extra={"status": response.status_code, "body": response.text[:300]})
        return ServiceError(
            "alertmanager_refused",
            f"Alertmanager refused the request (HTTP {response.status_code}): {response.text[:200]}",
            status_code=502,
        )

    async def alerts(self) -> list[dict[str, Any]]:
        params = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
        response = await self.call("GET", "/alerts", params=params)
        if response.status_code != 200:
            raise self.refused(response)
        return list(response.json())

    async def silences(self) -> list[dict[str, Any]]:
        response = await self.call("GET", "/silences")
        if response.status_code != 200:
            raise self.refused(response)
        return list(response.json())

    async def silence(self, silence_id: str) -> dict[str, Any]:
        response = await self.call("GET", f"/silence/{silence_id}")
        if response.status_code == 404:
            raise NotFound("silence_not_found", f"Alertmanager has no silence {silence_id!r}")
        if response.status_code != 200:
            raise self.refused(response)
        return dict(response.json())

    async def create_silence(self, body: dict[str, Any]) -> str:
        response = await self.call("POST", "/silences", json=body)
        if response.status_code != 200:
            raise self.refused(response)
        return str(response.json()["silenceID"])

    async def expire_silence(self, silence_id: str) -> None:
        response = await self.call("DELETE", f"/silence/{silence_id}")
        if response.status_code == 404:
            raise NotFound("silence_not_found", f"Alertmanager has no silence {silence_id!r}")
        if response.status_code != 200:
            raise self.refused(response)


def _api(request: Request) -> AlertmanagerApi:
    api: AlertmanagerApi = request.app.state.alertmanager
    return api


def _alert(raw: dict[str, Any]) -> AlertOut:
    labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
    annotations = raw.get("annotations") or {}
    state = raw.get("status") or {}
    return AlertOut(
        fingerprint=str(raw.get("fingerprint", "")),
        alertname=labels.get("alertname", ""),
        severity=labels.get("severity", ""),
        summary=str(annotations.get("summary", "")),
        description=str(annotations.get("description", "")),
        runbook_url=str(annotations.get("runbook_url", "")),
        labels=labels,
        starts_at=raw["startsAt"],
        state=str(state.get("state", "")),
        silenced_by=list(state.get("silencedBy") or []),
        inhibited_by=list(state.get("inhibitedBy") or []),
    )


def _silence(raw: dict[str, Any]) -> SilenceOut:
    return SilenceOut(
        id=str(raw["id"]),
        state=str((raw.get("status") or {}).get("state", "")),
        matchers=[
            Matcher(
                name=str(m["name"]),
                value=str(m["value"]),
                is_regex=bool(m.get("isRegex", False)),
                is_equal=bool(m.get("isEqual", True)),
            )
            for m in raw.get("matchers") or []
        ],
        starts_at=raw["startsAt"],
        ends_at=raw["endsAt"],
        created_by=str(raw.get("createdBy", "")),
        comment=str(raw.get("comment", "")),
    )


# --- who sees and silences what -------------------------------------------------------------------------------------


def may_see(user: CurrentUser, labels: dict[str, str]) -> bool:
    """An admin sees every alert; anyone else an alert of their own account, of no account whose `owner` is them, and
    the platform-wide ones (a service down): nothing else (fails closed; gateway/store.py, alert_scope)."""
    if user.role is Role.ADMIN:
        return True
    scope = alert_scope(labels)
    if scope.account:
        return scope.account == user.account_id
    if scope.owner:
        return scope.owner == user.username
    return scope.platform


SILENCE_SCOPE_LABELS = frozenset((*SCOPING_LABELS, "scope", "key"))


def _may_see_silence(user: CurrentUser, silence: SilenceOut) -> bool:
    """A silence is shown as the alerts it holds would be: by its matchers (`name=value`) of the labels that scope an
    alert (may_see); one that matches those labels otherwise (a regex, a negation) only to admins. Its author always
    sees it."""
    if user.role is Role.ADMIN or silence.created_by == user.username:
        return True
    exact: dict[str, str] = {}
    for m in silence.matchers:
        if m.name in SILENCE_SCOPE_LABELS:
            if m.is_regex or not m.is_equal:
                return False
            exact[m.name] = m.value
    return may_see(user, exact)


def _not_found(fingerprint: str | None) -> NotFound:
    return NotFound("alert_not_found", f"no active alert has the fingerprint {fingerprint!r}")


def _may_silence(user: CurrentUser, alert: AlertOut) -> None:
    """A trader silences an alert of their own account. One they may not see answers as an unknown one would (404):
    whether another account's alert exists is not theirs to learn."""
    if user.role is Role.ADMIN:
        return
    if not may_see(user, alert.labels):
        raise _not_found(alert.fingerprint)
    if not alert_scope(alert.labels).account:
        raise Forbidden(
            "platform_alert",
            f"alert {alert.fingerprint} ({alert.alertname}) belongs to no account: only an admin can silence it",
        )


# --- the routes -----------------------------------------------------------------------------------------------------


@router.get("", response_model=list[AlertOut], responses=ERRORS)
async def list_alerts(request: Request, user: Viewer) -> list[AlertOut]:
    """The alerts Alertmanager holds now that you may see (an admin all; others those of their own account and the
    platform-wide ones), silenced and inhibited ones included (their `state` is `suppressed`, with the silences or
    alerts that suppress them, as far as you may see those): critical first, then the newest."""
    api = _api(request)
    every = list(map(_alert, await api.alerts()))
    alerts = [a for a in every if may_see(user, a.labels)]
    if user.role is not Role.ADMIN:
        # what suppresses an alert is named only as far as the reader may see it
        seen = {a.fingerprint for a in alerts}
        silences: set[str] = set()
        if any(a.silenced_by for a in alerts):
            silences = {s.id for s in map(_silence, await api.silences()) if _may_see_silence(user, s)}
        alerts = [
            a.model_copy(
                update={
                    "silenced_by": [i for i in a.silenced_by if i in silences],
                    "inhibited_by": [f for f in a.inhibited_by if f in seen],
                }
            )
            for a in alerts
        ]
    alerts.sort(key=lambda a: -a.starts_at.timestamp())
    alerts.sort(key=lambda a: SEVERITY_ORDER.get(a.severity, len(SEVERITY_ORDER)))
    return alerts


@router.get("/silences", response_model=list[SilenceOut], responses=ERRORS)
async def list_silences(
    request: Request, user: Viewer, include_expired: Annotated[bool, Query()] = False
) -> list[SilenceOut]:
    """Alertmanager's silences you may see (as for alerts, by their `account` matcher; your own always): active and
    pending ones (and expired ones, which it keeps a few days, on request), those ending soonest first."""
    silences = [s for s in map(_silence, await _api(request).silences()) if _may_see_silence(user, s)]
    if not include_expired:
        silences = [s for s in silences if s.state != "expired"]
    silences.sort(key=lambda s: (s.state == "expired", s.ends_at))
    return silences


@router.post("/silences", response_model=SilenceOut, status_code=status.HTTP_201_CREATED, responses=ERRORS)
async def create_silence(request: Request, body: SilenceCreate, user: Trader) -> SilenceOut:
    """Acknowledge an alert from now for `duration_minutes`: name it by `fingerprint` (the silence matches its
    complete label set; a trader only an alert of their own account) or, an admin, give `matchers`. The silence's
    author is you."""
    api = _api(request)
    if body.matchers is not None:
        if user.role is not Role.ADMIN:
            raise Forbidden(
                "matchers_admin_only",
                "only an admin silences by matchers: name the alert of your account to silence by its fingerprint",
            )
        labels = body.matchers
    else:
        alert = next((a for a in map(_alert, await api.alerts()) if a.fingerprint == body.fingerprint), None)
        if alert is None:
            raise _not_found(body.fingerprint)
        _may_silence(user, alert)
        labels = alert.labels
    now = datetime.now(UTC)
    silence_id = await api.create_silence(
        {
            "matchers": [
                {"name": name, "value": value, "isRegex": False, "isEqual": True}
                for name, value in sorted(labels.items())
            ],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=body.duration_minutes)).isoformat(),
            "createdBy": user.username,
            "comment": body.comment,
        }
    )
    log.info("silence created", extra={"silence_id": silence_id, "by": user.username, "matchers": labels})
    return _silence(await api.silence(silence_id))


@router.delete("/silences/{silence_id}", response_model=SilenceOut, responses=ERRORS)
async def expire_silence(
    request: Request, silence_id: Annotated[str, Path(pattern=SILENCE_ID)], user: Trader
) -> SilenceOut:
    """End a silence now: its alerts notify again. A trader ends the silences they created; an admin anyone's."""
    api = _api(request)
    silence = _silence(await api.silence(silence_id))
    _may_expire(user, silence)
    if silence.state == "expired":
        raise ServiceError("silence_expired", f"silence {silence_id} has already ended", status_code=409)
    await api.expire_silence(silence_id)
    log.info("silence expired", extra={"silence_id": silence_id, "by": user.username})
    return _silence(await api.silence(silence_id))


def _may_expire(user: CurrentUser, silence: SilenceOut) -> None:
    if user.role is not Role.ADMIN and silence.created_by != user.username:
        raise Forbidden(
            "not_your_silence",
            f"silence {silence.id} was created by {silence.created_by}: only they or an admin can end it",
        )


@router.get("/history", response_model=HistoryPage, responses=ERRORS)
async def alert_history(
    store: Store,
    user: Viewer,
    limit: Annotated[int, Query(ge=1, le=HISTORY_PAGE_MAX)] = 50,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> HistoryPage:
    """What fired and resolved that you may see (as for the active alerts), newest first, `limit` at a time (then
    `before_id` = the last page's `next_before_id`)."""
    scope = None if user.role is Role.ADMIN else HistoryScope(account=user.account_id, username=user.username)
    rows = await store.alert_history(limit=limit + 1, before_id=before_id, scope=scope)
    more = len(rows) > limit
    rows = rows[:limit]
    return HistoryPage(
        items=[HistoryEntry(**_entry(t)) for t in rows],
        next_before_id=rows[-1].id if more and rows else None,
    )


def _entry(t: AlertTransition) -> dict[str, Any]:
    return {
        "id": t.id,
        "fingerprint": t.fingerprint,
        "status": t.status,
        "alertname": t.alertname,
        "severity": t.severity,
        "summary": t.summary,
        "labels": t.labels,
        "starts_at": t.starts_at,
        "ends_at": t.ends_at,
        "received_at": t.received_at,
    }


def _webhook_token(request: Request) -> None:
    expected: str = request.app.state.settings.notify_webhook_token
    if not expected:
        raise Unavailable(
            "alert_history_not_configured", "LH_NOTIFY_WEBHOOK_TOKEN is not set: the gateway keeps no alert history"
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise ServiceError("unauthenticated", "send Alertmanager's bearer token (Authorization: Bearer ...)",
                           status_code=401)  # fmt: skip


# The token is checked (a dependency) before the body is read: a caller without it learns nothing from a 422.
@router.post(
    "/webhook", response_model=WebhookAccepted, include_in_schema=False, dependencies=[Depends(_webhook_token)]
)
async def alertmanager_webhook(notification: WebhookNotification, store: Store) -> WebhookAccepted:
    """Alertmanager's webhook (receiver `alert-history`): every firing and resolved alert, kept once each. Not a
    user's route: Alertmanager presents LH_NOTIFY_WEBHOOK_TOKEN."""
    received = datetime.now(UTC)
    transitions = [
        AlertTransition(
            fingerprint=alert.fingerprint or _fingerprint(alert.labels),
            status=alert.status,
            alertname=alert.labels.get("alertname", "")[:200],
            severity=alert.labels.get("severity", "")[:32],
            labels=alert.labels,
            summary=alert.annotations.get("summary", "")[:1000],
            starts_at=alert.startsAt,
            ends_at=alert.endsAt if alert.status == "resolved" else None,
            received_at=received,
        )
        for alert in notification.alerts
    ]
    recorded = await store.record_alert_transitions(transitions)
    return WebhookAccepted(alerts=len(transitions), recorded=recorded)


def _fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager always sends one; an older one without: the labels' own hash stands in."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
