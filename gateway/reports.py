"""Reports opened in a browser tab from the desk, with their charts working.

A report is one self-contained HTML page whose charts are drawn by inline scripts. Shown from a `blob:` URL made by
the desk it inherits the desk's content security policy, which refuses inline scripts and styles: no charts. A plain
link to `/api/v1/backtests/{id}/report.html` carries no `Authorization` header. So the desk asks for a report link
(`POST .../report-link`, authenticated as any API call) and opens it:

- the link names one report and is signed with a key derived from the session secret for this use only (it is not
  a session token and cannot be used as one), with the user and role it reads as (at most: the user's current role
  and account apply when it is opened), for `LINK_TTL_S` seconds;
  reusable in that time (a reload works), useless after it or for any other report;
- the page is served with its own policy: its inline scripts and styles run, nothing else loads (no connections, no
  other origin), and `sandbox` gives it an opaque origin, so its scripts cannot read the desk's stored session or
  call the API as the user; `Referrer-Policy: no-referrer` and `Cache-Control: no-store` keep the link out of
  referrers and caches. The access log records paths, not query strings, so the link is not logged either."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any
from urllib.parse import quote

import jwt
from fastapi import APIRouter, Query, Request, Response

from gateway.auth import CurrentUser, enforce_rate_limit, unauthenticated
from gateway.deps import Viewer
from gateway.proxy import ERRORS, Id, forward_stream
from shared.platform.roles import Role

router = APIRouter()

LINK_TTL_S = 60
AUDIENCE = "lianghua-report-link"
# Where each kind of report is, behind the gateway.
SOURCES = {
    "backtests": ("backtest", "/v1/backtests/{id}/report.html"),
    "optimisations": ("backtest", "/v1/optimisations/{id}/report.html"),
}
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
        "sandbox allow-scripts allow-downloads; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
LINK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": f"`{{url, expires_in}}`: open `url` within {LINK_TTL_S} s"},
    **ERRORS,
}


def _link_key(jwt_secret: str) -> bytes:
    return hmac.new(jwt_secret.encode(), b"lianghua report links", hashlib.sha256).digest()


def make_link(jwt_secret: str, user: CurrentUser, kind: str, report_id: str, *, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "aud": AUDIENCE,
        "sub": user.username,
        "role": user.role.value,
        "acct": user.account_id,
        "kind": kind,
        "rid": report_id,
        "iat": issued,
        "exp": issued + LINK_TTL_S,
    }
    token = jwt.encode(claims, _link_key(jwt_secret), algorithm="HS256")
    return f"/reports/{kind}/{quote(report_id, safe='')}?link={token}"


async def _link_user(request: Request, kind: str, report_id: str, link: str) -> CurrentUser:
    state = request.app.state
    try:
        claims = jwt.decode(
            link,
            _link_key(state.settings.jwt_secret),
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "role", "kind", "rid"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise unauthenticated("this report link has expired: open the report again from the desk") from exc
    except jwt.PyJWTError as exc:
        raise unauthenticated("invalid report link") from exc
    if claims["kind"] != kind or claims["rid"] != report_id:
        raise unauthenticated("this report link is for another report")
    # The user's own bucket (as their API requests), before the lookup: a refused request costs no database.
    await enforce_rate_limit(state.infra.cache, f"user:{claims['sub']}", state.settings.rate_limit_per_minute)
    record = await state.store.get_user(str(claims["sub"]))
    if record is None or record.disabled:
        raise unauthenticated("the user of this report link is disabled or no longer exists")
    # The role and account as the users table says now (a demotion within the link's minute applies), never more
    # than the link was made with (a viewer API key's link reads as a viewer).
    role = min(Role(claims["role"]), record.role, key=lambda r: r.rank)
    return CurrentUser(record.username, role, record.account_id, "link")


async def _report_page(request: Request, kind: str, report_id: str, link: str) -> Response:
    user = await _link_user(request, kind, report_id, link)
    service, path = SOURCES[kind]
    page = await forward_stream(request, user, service, path.format(id=quote(report_id, safe="")), query="")
    if page.media_type and page.media_type.startswith("text/html"):
        page.headers.update(REPORT_HEADERS)
    return page


@router.post("/api/v1/backtests/{backtest_id}/report-link", tags=["backtests"], responses=LINK_RESPONSES)
async def backtest_report_link(request: Request, user: Viewer, backtest_id: Id) -> dict[str, Any]:
    """A link that opens the backtest's HTML report in a browser tab without credentials, for `LINK_TTL_S` (60)
    seconds; the page runs its own scripts (the charts) sandboxed, with nothing else allowed."""
    url = make_link(request.app.state.settings.jwt_secret, user, "backtests", backtest_id)
    return {"url": url, "expires_in": LINK_TTL_S}


@router.post("/api/v1/optimisations/{optimisation_id}/report-link", tags=["optimisations"], responses=LINK_RESPONSES)
async def optimisation_report_link(request: Request, user: Viewer, optimisation_id: Id) -> dict[str, Any]:
    """As for a backtest: a short-lived link to the optimisation's HTML report."""
    url = make_link(request.app.state.settings.jwt_secret, user, "optimisations", optimisation_id)
    return {"url": url, "expires_in": LINK_TTL_S}


@router.get("/reports/backtests/{backtest_id}", include_in_schema=False)
async def backtest_report_page(request: Request, backtest_id: Id, link: Annotated[str, Query()]) -> Response:
    return await _report_page(request, "backtests", backtest_id, link)


@router.get("/reports/optimisations/{optimisation_id}", include_in_schema=False)
async def optimisation_report_page(request: Request, optimisation_id: Id, link: Annotated[str, Query()]) -> Response:
    return await _report_page(request, "optimisations", optimisation_id, link)
