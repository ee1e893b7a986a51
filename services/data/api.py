"""The data service's REST API (`/v1`, internal token required): securities, daily bars, quotes, trade calendar.
Routes are thin: they validate, ask the store, and shape the answer; prices leave as decimal strings."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, BeforeValidator

from services.data.bars_json import bars_body
from services.data.cache import ReadCache
from services.data.quotes import Quote, next_session_quote
from services.data.store import CALENDAR_EXCHANGE, DataStore, SecurityRecord
from shared.domain.codes import Board, InvalidTsCode, SecurityCode, parse_ts_code
from shared.domain.money import from_fen
from shared.errors import NotFound, ServiceError

router = APIRouter(prefix="/v1", tags=["data"])

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COMPACT_DATE = re.compile(r"^\d{8}$")


def _trade_date(value: object) -> date:
    """Dates as traders type them: 2024-01-02 or Tushare's 20240102; nothing else (no timestamps)."""
    if isinstance(value, date):
        return value
    text = value.strip() if isinstance(value, str) else ""
    try:
        if _ISO_DATE.match(text):
            return date.fromisoformat(text)
        if _COMPACT_DATE.match(text):
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        pass
    raise ValueError(f"{value!r} is not a date like 2024-01-02 or 20240102")


TradeDate = Annotated[date, BeforeValidator(_trade_date)]


class SecurityOut(BaseModel):
    ts_code: str
    symbol: str
    name: str
    exchange: str
    board: Board
    is_st: bool
    list_date: date


class BarOut(BaseModel):
    """Unadjusted daily bar: prices and amount in CNY (2 decimals), vol in shares."""

    trade_date: date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    pre_close: Decimal
    vol: int
    amount: Decimal
    adj_factor: Decimal


class BarsOut(BaseModel):
    ts_code: str
    bars: list[BarOut]


class QuoteOut(BaseModel):
    ts_code: str
    name: str
    board: Board
    is_st: bool
    last_trade_date: date | None
    last_close: Decimal | None
    next_trade_date: date | None
    suspended: bool  # no bar on the newest session in the store
    limit_up: Decimal | None  # for next_trade_date; None when that session has no limits (or nothing is known)
    limit_down: Decimal | None


class CalendarOut(BaseModel):
    exchange: str
    start: date
    end: date
    trading_days: list[date]


def _store(request: Request) -> DataStore:
    store: DataStore = request.app.state.store
    return store


def _code(ts_code: str) -> SecurityCode:
    try:
        return parse_ts_code(ts_code)
    except InvalidTsCode as exc:
        raise ServiceError("invalid_ts_code", str(exc), status_code=422) from exc


async def _security(store: DataStore, ts_code: str) -> SecurityRecord:
    code = _code(ts_code)
    security = await store.get_security(code.ts_code)
    if security is None:
        raise NotFound("unknown_security", f"no security {code.ts_code} in the store")
    return security


def _check_range(start: date, end: date) -> None:
    if start > end:
        raise ServiceError("invalid_range", f"start {start} is after end {end}", status_code=422)


def _security_out(s: SecurityRecord) -> SecurityOut:
    return SecurityOut(
        ts_code=s.ts_code,
        symbol=s.symbol,
        name=s.name,
        exchange=s.exchange,
        board=Board(s.board),
        is_st=s.is_st,
        list_date=s.list_date,
    )


@router.get("/securities", response_model=list[SecurityOut])
async def list_securities(request: Request, board: Board | None = None, is_st: bool | None = None) -> list[SecurityOut]:
    records = await _store(request).list_securities(board=board.value if board else None, is_st=is_st)
    return [_security_out(s) for s in records]


@router.get("/bars", response_model=BarsOut)
async def get_bars(
    request: Request,
    ts_code: Annotated[str, Query(description="e.g. 600000.SH")],
    start: Annotated[TradeDate, Query(description="first trade date, YYYY-MM-DD or YYYYMMDD")],
    end: Annotated[TradeDate, Query(description="last trade date, inclusive")],
) -> Response:
    code = _code(ts_code).ts_code
    _check_range(start, end)
    read_cache: ReadCache = request.app.state.read_cache
    key = f"{code}:{start.isoformat()}:{end.isoformat()}"
    cached = await read_cache.get("bars", key)
    if cached is not None:
        return Response(cached, media_type="application/json")
    store = _store(request)
    security = await _security(store, code)
    body = bars_body(security.ts_code, await store.bars(security.ts_code, start, end))
    await read_cache.put("bars", key, body)
    return Response(body, media_type="application/json")


@router.get("/quotes/{ts_code}", response_model=QuoteOut)
async def get_quote(request: Request, ts_code: str) -> Response:
    code = _code(ts_code).ts_code
    read_cache: ReadCache = request.app.state.read_cache
    cached = await read_cache.get("quote", code)
    if cached is not None:
        return Response(cached, media_type="application/json")
    async with _store(request).snapshot() as store:
        quote = await next_session_quote(store, await _security(store, code))
    body = _quote_out(quote).model_dump_json()
    await read_cache.put("quote", code, body)
    return Response(body, media_type="application/json")


def _quote_out(quote: Quote) -> QuoteOut:
    security = quote.security
    return QuoteOut(
        ts_code=security.ts_code,
        name=security.name,
        board=Board(security.board),
        is_st=security.is_st,
        last_trade_date=quote.last_trade_date,
        last_close=from_fen(quote.last_close_fen) if quote.last_close_fen is not None else None,
        next_trade_date=quote.next_trade_date,
        suspended=quote.suspended,
        limit_up=quote.limits.limit_up if quote.limits else None,
        limit_down=quote.limits.limit_down if quote.limits else None,
    )


@router.get("/calendar", response_model=CalendarOut)
async def get_calendar(
    request: Request,
    start: Annotated[TradeDate, Query(description="YYYY-MM-DD or YYYYMMDD")],
    end: Annotated[TradeDate, Query(description="inclusive")],
) -> CalendarOut:
    _check_range(start, end)
    days = await _store(request).open_days(start, end)
    return CalendarOut(exchange=CALENDAR_EXCHANGE, start=start, end=end, trading_days=days)
