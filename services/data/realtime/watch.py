"""Which codes the bridge forwards ticks of (docs/quotes.md, "Ticks of the watched codes").

Services tell the data service the codes they care about with `PUT /v1/quotes/watch {"owner", "codes", "ttl_s"}`: a
lease that replaces the owner's codes and lapses unless renewed (an owner that dies stops counting by itself). The
owners are execution (the codes of its open orders and armed conditional orders) and each gateway process (the codes
its browsers subscribed to on /ws): `shared/platform/quote_watch.py` renews on change and every RENEW_S. The process
holding the bridge reads the union of the live leases every second (`tick_codes`) and sends the bridge
`subscribe_ticks` when it changed. The leases are in the live store (Redis in fleet mode), so a PUT on any data
process counts.

Only the two owners' services may PUT (a service token of svc:execution or svc:gateway; anyone else 403), and the
stored owner is `<service>:<body owner>` from the authenticated subject: the body's owner is only a suffix within
the caller's own name, so no caller can replace another service's lease or claim execution's priority. A service
holds at most MAX_OWNERS_PER_SERVICE live leases (409 `too_many_watch_owners` beyond)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from bridge.qmt.protocol import MAX_TICK_CODES
from services.data.realtime.store import LiveStore
from shared.core.domain.codes import InvalidTsCode, parse_ts_code
from shared.platform.errors import Conflict, Forbidden, ServiceError, Unavailable
from shared.platform.internal_auth import Caller, Principal
from shared.platform.request_model import RequestModel, StrictInt

watch_router = APIRouter(prefix="/v1", tags=["quotes"])

OWNER_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# The services that may hold leases, by their authenticated subject, and the name their owners are stored under.
WATCHERS = {"svc:execution": "execution", "svc:gateway": "gateway"}
# Owners whose codes go first when the union is over MAX_TICK_CODES (orders and stops): only svc:execution's PUTs
# store owners under this prefix, so the priority follows the authenticated subject, not a name a caller picks.
PRIORITY_PREFIX = "execution:"
MAX_OWNERS_PER_SERVICE = 64  # live leases one service may hold (one per process: far more than a fleet has)


class WatchRequest(RequestModel):
    """An owner's codes to have ticks of: replaces what the owner watched before; `[]` to watch none."""

    owner: Annotated[
        str,
        Field(
            pattern=OWNER_PATTERN,
            description="which of the caller's processes watches, e.g. host:pid; stored as <service>:<owner> (a "
            "leading '<service>:' of the caller's own service is not repeated)",
        ),
    ]
    codes: Annotated[list[str], Field(max_length=MAX_TICK_CODES, description=f"ts_codes, at most {MAX_TICK_CODES}")]
    ttl_s: Annotated[StrictInt, Field(ge=10, le=600, description="seconds the lease holds unless renewed")] = 90


class WatchOut(BaseModel):
    owner: str
    codes: list[str]
    expires_at: datetime
    watched: int  # codes in the union of every live lease
    ticked: int  # of which the bridge is asked for (at most MAX_TICK_CODES)


class WatchesOut(BaseModel):
    codes: list[str]  # what the bridge is asked for: the union, at most MAX_TICK_CODES
    dropped: int  # codes of the union over the limit (not asked for)
    owners: dict[str, list[str]]


def tick_codes(leases: dict[str, tuple[list[str], float]]) -> tuple[list[str], int]:
    """The codes to ask the bridge ticks of (sorted) and how many of the union were left out: execution's owners
    first, then the others by name, each owner's codes in its order, at most MAX_TICK_CODES."""
    chosen: dict[str, None] = {}
    union: set[str] = set()
    for owner in sorted(leases, key=lambda o: (not o.startswith(PRIORITY_PREFIX), o)):
        for code in leases[owner][0]:
            union.add(code)
            if len(chosen) < MAX_TICK_CODES:
                chosen.setdefault(code)
    return sorted(chosen), len(union) - len(chosen)


def stored_owner(principal: Principal, owner: str) -> str:
    """The lease's owner for `owner` sent by `principal`: under the caller's service name (403 `forbidden` for a
    caller that is not one of WATCHERS: a user's token, or another service)."""
    service = WATCHERS.get(principal.subject) if principal.is_service else None
    if service is None:
        raise Forbidden("forbidden", f"{principal.subject} may not lease watched codes: execution and gateway only")
    suffix = owner.removeprefix(f"{service}:")
    return f"{service}:{suffix or owner}"


def _live(request: Request) -> LiveStore:
    live: LiveStore = request.app.state.live_store
    return live


@watch_router.put("/quotes/watch", response_model=WatchOut)
async def put_watch(body: WatchRequest, request: Request, principal: Caller) -> WatchOut:
    """Replace the caller's `owner`'s watched codes (a lease of `ttl_s` seconds, renewed by the next PUT), stored as
    `<service>:<owner>`. 403 `forbidden` unless the caller is svc:execution or svc:gateway; 422 `invalid_request`
    naming `codes` for a code not like 600000.SH; 409 `too_many_watch_owners` for a new owner of a service holding
    MAX_OWNERS_PER_SERVICE live leases; 503 `quotes_unavailable` when the store cannot be written."""
    owner = stored_owner(principal, body.owner)
    codes: list[str] = []
    for code in body.codes:
        try:
            codes.append(parse_ts_code(code).ts_code)
        except InvalidTsCode as exc:
            raise ServiceError("invalid_request", f"codes: {exc}", status_code=422) from exc
    codes = sorted(set(codes))
    now = time.time()
    expires = now + body.ttl_s
    live = _live(request)
    service = owner.split(":", 1)[0] + ":"
    try:
        leases = await live.watches(now)
    except Exception as exc:
        raise Unavailable("quotes_unavailable", "the watch cannot be stored now; try again") from exc
    held = sum(1 for other in leases if other.startswith(service) and other != owner)
    if held >= MAX_OWNERS_PER_SERVICE:
        raise Conflict(
            "too_many_watch_owners",
            f"owner: {service[:-1]} already holds {held} live leases (at most {MAX_OWNERS_PER_SERVICE}); "
            "renew one of them or let one lapse",
        )
    try:
        await live.put_watch(owner, codes, expires)
    except Exception as exc:
        raise Unavailable("quotes_unavailable", "the watch cannot be stored now; try again") from exc
    leases[owner] = (codes, expires)
    chosen, _ = tick_codes(leases)
    union = {code for owner_codes, _ in leases.values() for code in owner_codes}
    return WatchOut(
        owner=owner, codes=codes, expires_at=datetime.fromtimestamp(expires, UTC), watched=len(union),
        ticked=len(chosen),
    )  # fmt: skip


@watch_router.get("/quotes/watch", response_model=WatchesOut)
async def get_watches(request: Request) -> WatchesOut:
    """The live leases and the codes the bridge is asked ticks of."""
    try:
        leases = await _live(request).watches(time.time())
    except Exception as exc:
        raise Unavailable("quotes_unavailable", "the watch cannot be read now") from exc
    chosen, dropped = tick_codes(leases)
    return WatchesOut(codes=chosen, dropped=dropped, owners={o: codes for o, (codes, _) in sorted(leases.items())})
