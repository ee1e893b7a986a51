"""The real-time reads (internal token required, like every data route): `GET /v1/quotes/{ts_code}/live` (the
latest quote a real-time feed delivered, and how old it is) and `GET /v1/quotes/{ts_code}/bars?freq=1m` (a day's
closed minute bars). They fail closed: no quote yet, the feed off or the store (Redis) down is a 503 with its own
code, never a quote made up from something else."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import date, datetime
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from services.data.api import _codes_param, _security
from services.data.deps import Store
from services.data.realtime.store import LiveStore
from shared.platform.clock import EXCHANGE_TZ, market_today
from shared.platform.errors import NotFound, ServiceError, Unavailable
from shared.platform.events.schemas import LiveQuote, MinuteBar
from shared.platform.request_model import TradeDate

T = TypeVar("T")

live_router = APIRouter(prefix="/v1", tags=["quotes"])

NO_LIVE_QUOTE = "no_live_quote"
QUOTES_UNAVAILABLE = "quotes_unavailable"
QUOTES_FEED_OFF = "quotes_feed_off"


class LiveQuoteOut(LiveQuote):
    """The latest real-time quote, with its age: `as_of` is the snapshot's exchange time (= `time`), `age_s` the
    seconds from it to the market clock's now when answered."""

    as_of: datetime
    age_s: float


class MinuteBarsOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    ts_code: str
    freq: Literal["1m"]
    day: date
    bars: list[MinuteBar]


LIVE_BULK_MAX = 500  # codes one bulk read may name


class LiveQuotesOut(BaseModel):
    """The latest real-time quotes of several codes (`GET /v1/quotes/live?codes=`): those the feed has quoted, by code,
    and the codes it has not quoted yet (or the data service does not know) in `missing`."""

    quotes: list[LiveQuoteOut]
    missing: list[str]


def _live(request: Request) -> LiveStore:
    if request.app.state.settings.quotes_feed_mode() == "off":
        raise Unavailable(QUOTES_FEED_OFF, "the real-time quotes feed is off here (LH_QUOTES_FEED=off)")
    live: LiveStore = request.app.state.live_store
    return live


async def _read(call: Awaitable[T]) -> T:
    try:
        return await call
    except Exception as exc:
        raise Unavailable(
            QUOTES_UNAVAILABLE, "the real-time quotes store cannot be read now; no quote is given without it"
        ) from exc


@live_router.get(
    "/quotes/live",
    response_model=LiveQuotesOut,
    responses={
        422: {"description": "`invalid_request`: `codes` empty, not stock codes, or more than 500"},
        503: {"description": "`quotes_unavailable` (the store is down), `quotes_feed_off`"},
    },
)
async def get_live_quotes(
    request: Request,
    codes: Annotated[
        str,
        Query(max_length=LIVE_BULK_MAX * 12, description="comma-separated ts_codes, up to 500 (repeats counted once)"),
    ],
) -> LiveQuotesOut:
    """The latest real-time quote of each code, in one read (positions are valued this way: not a request a code).
    A code with no live quote is listed in `missing` rather than failing the read; each quote as
    `/v1/quotes/{ts_code}/live` answers it."""
    live = _live(request)
    wanted = list(dict.fromkeys(_codes_param(codes, "codes")))
    if len(wanted) > LIVE_BULK_MAX:
        raise ServiceError(
            "invalid_request", f"codes: {len(wanted)} codes, at most {LIVE_BULK_MAX} in one read", status_code=422
        )
    raws = await _read(live.quotes(wanted))
    now = request.app.state.infra.clock.now()
    found: list[LiveQuoteOut] = []
    missing: list[str] = []
    for code, raw in zip(wanted, raws, strict=True):
        if raw is None:
            missing.append(code)
            continue
        quote = LiveQuote.model_validate_json(raw)
        age = max((now - quote.time).total_seconds(), 0.0)
        found.append(LiveQuoteOut(**quote.model_dump(), as_of=quote.time, age_s=round(age, 3)))
    return LiveQuotesOut(quotes=found, missing=missing)


@live_router.get(
    "/quotes/{ts_code}/live",
    response_model=LiveQuoteOut,
    responses={
        404: {"description": "`unknown_security`, `no_live_quote` (no feed has quoted it yet)"},
        422: {"description": "`invalid_ts_code`"},
        503: {"description": "`quotes_unavailable` (the store is down), `quotes_feed_off`"},
    },
)
async def get_live_quote(request: Request, store: Store, ts_code: str) -> LiveQuoteOut:
    """The security's latest real-time quote: last, open/high/low, pre_close, the day's volume (shares) and amount,
    five bid and ask levels, the day's limit prices, and its age (`as_of`, `age_s`)."""
    live = _live(request)
    security = await _security(store, ts_code)
    raw = await _read(live.quote(security.ts_code))
    if raw is None:
        # 404, not 503: nothing is wrong with the service, there is no quote of it yet to give
        raise NotFound(
            NO_LIVE_QUOTE,
            f"no real-time feed has quoted {security.ts_code} yet (the feed: "
            f"{request.app.state.settings.quotes_feed_mode()}); the last close is at /v1/quotes/{security.ts_code}",
        )
    quote = LiveQuote.model_validate_json(raw)
    now = request.app.state.infra.clock.now()
    age = max((now - quote.time).total_seconds(), 0.0)
    return LiveQuoteOut(**quote.model_dump(), as_of=quote.time, age_s=round(age, 3))


@live_router.get(
    "/quotes/{ts_code}/bars",
    response_model=MinuteBarsOut,
    responses={
        404: {"description": "`unknown_security`"},
        422: {"description": "`invalid_ts_code`, `invalid_request` (freq other than 1m)"},
        503: {"description": "`quotes_unavailable` (the store is down), `quotes_feed_off`"},
    },
)
async def get_minute_bars(
    request: Request,
    store: Store,
    ts_code: str,
    freq: Annotated[Literal["1m"], Query(description="the bar length: 1m (one minute) only")] = "1m",
    day: Annotated[
        TradeDate | None,
        Query(description="the trading day; default the day of the security's latest quote, else the market's today"),
    ] = None,
) -> MinuteBarsOut:
    """The day's closed 1-minute bars built from the real-time feed, oldest first. `minute` is each bar's start
    (+08:00): 09:30 holds the opening auction, 14:59 the closing one; volume in shares, amount in CNY. The bar being
    built is not among them until its minute closes."""
    live = _live(request)
    security = await _security(store, ts_code)
    if day is None:
        raw = await _read(live.quote(security.ts_code))
        if raw is not None:
            day = datetime.fromisoformat(json.loads(raw)["time"]).astimezone(EXCHANGE_TZ).date()
        else:
            clock = request.app.state.infra.clock
            replayed = clock.session
            day = market_today(clock.now(), replayed())
    rows = await _read(live.bars(day, security.ts_code))
    bars = [MinuteBar.model_validate_json(row) for row in rows]
    return MinuteBarsOut(ts_code=security.ts_code, freq=freq, day=day, bars=bars)
