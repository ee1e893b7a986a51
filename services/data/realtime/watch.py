"""Which codes the bridge forwards ticks of (docs/quotes.md, "Ticks of the watched codes").

Services tell the data service the codes they care about with `PUT /v1/quotes/watch {"owner", "codes", "ttl_s"}`: a
lease that replaces the owner's codes and lapses unless renewed (an owner that dies stops counting by itself). The
owners are execution (the codes of its open orders and armed conditional orders) and each gateway process (the codes
its browsers subscribed to on /ws): `shared/platform/quote_watch.py` renews on change and every RENEW_S. The process
holding the bridge reads the union of the live leases every second (`tick_codes`) and sends the bridge
`subscribe_ticks` when it changed. The leases are in the live store (Redis in fleet mode), so a PUT on any data
process counts."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from bridge.qmt.protocol import MAX_TICK_CODES
from services.data.realtime.store import LiveStore
from shared.core.domain.codes import InvalidTsCode, parse_ts_code
from shared.platform.errors import ServiceError, Unavailable
from shared.platform.request_model import RequestModel, StrictInt

watch_router = APIRouter(prefix="/v1", tags=["quotes"])

OWNER_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
PRIORITY_PREFIX = "execution"  # owners whose codes go first when the union is over MAX_TICK_CODES: orders and stops


class WatchRequest(RequestModel):
    """An owner's codes to have ticks of: replaces what the owner watched before; `[]` to watch none."""

    owner: Annotated[str, Field(pattern=OWNER_PATTERN, description="who watches: e.g. execution:host:pid")]
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


def _live(request: Request) -> LiveStore:
    live: LiveStore = request.app.state.live_store
    return live


@watch_router.put("/quotes/watch", response_model=WatchOut)
async def put_watch(body: WatchRequest, request: Request) -> WatchOut:
    """Replace `owner`'s watched codes (a lease of `ttl_s` seconds, renewed by the next PUT). 422 `invalid_request`
    naming `codes` for a code not like 600000.SH; 503 `quotes_unavailable` when the store cannot be written."""
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
    try:
        await live.put_watch(body.owner, codes, expires)
        leases = await live.watches(now)
    except Exception as exc:
        raise Unavailable("quotes_unavailable", "the watch cannot be stored now; try again") from exc
    chosen, _ = tick_codes(leases)
    union = {code for owner_codes, _ in leases.values() for code in owner_codes}
    return WatchOut(
        owner=body.owner, codes=codes, expires_at=datetime.fromtimestamp(expires, UTC), watched=len(union),
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
