"""The data service's REST API (`/v1`, internal token required): securities, daily bars (one symbol, many, the
whole market as Arrow/Parquet, unadjusted or qfq/hfq), a day's cross-section, quotes, the trade calendar, index
bars and constituents. Routes are thin: they validate, ask the store, and shape the answer; prices leave as
decimal strings (JSON) or integers in fen (Arrow/Parquet, unadjusted)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, BinaryIO

from anyio import to_thread
from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from services.data.adjust import Adjust, factor_micro
from services.data.bars_json import adjusted_bars_body, bars_body, cross_section_body, many_bars_body
from services.data.bulk import FORMATS, BulkQuery, bulk_fields
from services.data.deps import Bulk, Cache, Store
from services.data.pinyin import Candidate, search
from services.data.quotes import next_session_quote, reference_data, session_quote
from services.data.schemas import (
    BarsOut,
    CalendarOut,
    ConstituentOut,
    ConstituentsOut,
    IndexBarOut,
    IndexBarsOut,
    LimitDayOut,
    LimitDaysOut,
    SecurityMatchOut,
    SecurityOut,
)
from services.data.store import CALENDAR_EXCHANGE, BarRecord, DataStore, SecurityRecord
from shared.core.domain.codes import Board, InvalidTsCode, SecurityCode, parse_ts_code
from shared.core.domain.money import from_fen
from shared.core.market.order_types import DEFAULT_MARKET_TYPE, QMT_PRICE_TYPES
from shared.core.market.rules import board_lots, limit_prices, price_limit_ratio
from shared.platform.errors import NotFound, ServiceError
from shared.platform.quotes import Quote, ReferenceData
from shared.platform.request_model import TradeDate

router = APIRouter(prefix="/v1", tags=["data"])


MAX_JSON_SYMBOLS = 200  # more symbols than this: use /v1/bars/bulk (Arrow or Parquet)


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
    lot_min, lot_step = board_lots(Board(s.board))
    # The exchange's types in the table's order, the default first (what a ticket preselects).
    takes = list(QMT_PRICE_TYPES.get(s.exchange, {}))
    market_types = sorted(takes, key=lambda t: t != DEFAULT_MARKET_TYPE)
    return SecurityOut(
        ts_code=s.ts_code,
        symbol=s.symbol,
        name=s.name,
        exchange=s.exchange,
        board=Board(s.board),
        is_st=s.is_st,
        list_date=s.list_date,
        delist_date=s.delist_date,
        industry=s.industry,
        area=s.area,
        market=s.market,
        list_status=s.list_status,
        lot_min=lot_min,
        lot_step=lot_step,
        market_types=market_types,
    )


@router.get("/securities", response_model=list[SecurityOut])
async def list_securities(
    store: Store,
    board: Board | None = None,
    is_st: Annotated[bool | None, Query(description="the current name is ST")] = None,
    industry: Annotated[str | None, Query(max_length=32)] = None,
    list_status: Annotated[str | None, Query(pattern="^[LDP]$", description="L listed, D delisted, P paused")] = None,
    listed_on: Annotated[TradeDate | None, Query(description="listed on or before, not delisted by, that day")] = None,
    st_on: Annotated[TradeDate | None, Query(description="under an ST name on that day (from name history)")] = None,
) -> list[SecurityOut]:
    records = await store.list_securities(
        board=board.value if board else None,
        is_st=is_st,
        industry=industry,
        list_status=list_status,
        listed_on=listed_on,
        st_on=True if st_on is not None else None,
        on=st_on,
    )
    return [_security_out(s) for s in records]


SEARCH_LIMIT = 50


@router.get("/securities/search", response_model=list[SecurityMatchOut])
async def search_securities(
    store: Store,
    q: Annotated[str, Query(min_length=1, max_length=20, description="a code, part of a name, or pinyin initials")],
    limit: Annotated[int, Query(ge=1, le=SEARCH_LIMIT)] = 20,
) -> list[SecurityMatchOut]:
    """Securities by code (600000, 600000.SH), name (平安) or pinyin initials (payh: 平安银行; docs/market.md says
    how polyphonic characters are read), best match first: the code itself, a code prefix, a name or initials
    prefix, another reading's prefix, then anything containing the query; ties by code."""
    if not q.strip():
        raise ServiceError("invalid_request", "q: give a code, a name or pinyin initials", status_code=422)
    records = {s.ts_code: s for s in await store.list_securities()}
    found = search(q, (Candidate(s.ts_code, s.symbol, s.name) for s in records.values()), limit)
    return [
        SecurityMatchOut(**_security_out(records[c.ts_code]).model_dump(), pinyin=initials) for c, initials in found
    ]


AdjustParam = Annotated[Adjust, Query(description="none (default), qfq (forward, anchored) or hfq (backward)")]
AnchorParam = Annotated[TradeDate | None, Query(description="qfq's anchor date; default the range's end")]


def _check_anchor(adjust: Adjust, anchor: date | None) -> None:
    if anchor is not None and adjust is not Adjust.QFQ:
        raise ServiceError("invalid_request", "anchor: only qfq has an anchor date", status_code=422)


@router.get("/bars", response_model=BarsOut, responses={404: {"description": "`unknown_security`"}})
async def get_bars(
    store: Store,
    read_cache: Cache,
    ts_code: Annotated[str, Query(description="e.g. 600000.SH")],
    start: Annotated[TradeDate, Query(description="first trade date, YYYY-MM-DD or YYYYMMDD")],
    end: Annotated[TradeDate, Query(description="last trade date, inclusive")],
    adjust: AdjustParam = Adjust.NONE,
    anchor: AnchorParam = None,
) -> Response:
    """Daily bars of one symbol. Unadjusted prices are 2-decimal CNY strings; qfq/hfq prices 4-decimal ones
    (`price * af_t / af_anchor` and `price * af_t`, exact and rounded half-up)."""
    code = _code(ts_code).ts_code
    _check_range(start, end)
    _check_anchor(adjust, anchor)
    key = f"{code}:{start.isoformat()}:{end.isoformat()}"
    if adjust is not Adjust.NONE:
        key += f":{adjust.value}:{anchor.isoformat() if anchor else ''}"
    cached = await read_cache.get("bars", key)
    if cached is not None:
        return Response(cached, media_type="application/json")
    async with store.snapshot() as reads:
        seen = await reads.data_version()  # first in the session: the version of what the reads below see
        security = await _security(reads, code)
        bars = await reads.bars(security.ts_code, start, end)
        if adjust is Adjust.NONE:
            body = bars_body(security.ts_code, bars)
        else:
            anchor_day = anchor or end
            anchors = await _anchor_micros(reads, [security.ts_code], anchor_day, {security.ts_code: bars})
            body = adjusted_bars_body(security.ts_code, bars, adjust, anchor_day, anchors.get(security.ts_code))
    await read_cache.put("bars", key, body, seen=seen)
    return Response(body, media_type="application/json")


@router.get("/bars/limits", response_model=LimitDaysOut, responses={404: {"description": "`unknown_security`"}})
async def get_limit_days(
    store: Store,
    ts_code: Annotated[str, Query(description="e.g. 600000.SH")],
    start: Annotated[TradeDate, Query(description="first trade date, YYYY-MM-DD or YYYYMMDD")],
    end: Annotated[TradeDate, Query(description="last trade date, inclusive")],
) -> LimitDaysOut:
    """The days in [start, end] the security closed at its limit-up or limit-down price. Each day's limits are the
    board's rules (shared.core.market.rules) around the bar's pre_close (the exchange's reference price) with the
    security's current ST status; a listing's first sessions follow their own rules when the range reaches back to
    the listing. Days without limits (new listings) are never marked."""
    code = _code(ts_code).ts_code
    _check_range(start, end)
    async with store.snapshot() as reads:
        security = await _security(reads, code)
        bars = await reads.bars(security.ts_code, start, end)
    board = Board(security.board)
    from_listing = start <= security.list_date
    days: list[LimitDayOut] = []
    for index, bar in enumerate(bars):
        listing_day = index + 1 if from_listing and index < 5 else None
        ratio = price_limit_ratio(board, bar.trade_date, is_st=security.is_st, listing_day=listing_day)
        limits = limit_prices(from_fen(bar.pre_close), ratio)
        if limits is None:
            continue
        close = from_fen(bar.close)
        hit = "up" if close >= limits[0] else "down" if close <= limits[1] else None
        if hit:
            days.append(
                LimitDayOut(trade_date=bar.trade_date, hit=hit, close=close, limit_up=limits[0], limit_down=limits[1])
            )
    return LimitDaysOut(ts_code=security.ts_code, days=days)


async def _anchor_micros(
    store: DataStore, codes: list[str], anchor: date, bars: dict[str, list[BarRecord]]
) -> dict[str, int]:
    """Each symbol's factor on the anchor date; a symbol with none by then (an anchor before its first bar) anchors
    at its first stored bar, whatever the range asked: the rule of the bulk reads too (bulk._anchor_by_symbol)."""
    found = await store.anchor_factors(codes, anchor)
    out = {code: factor_micro(value) for code, value in found.items()}
    lacking = [code for code, series in bars.items() if code not in out and series]
    for code, value in (await store.first_bar_factors(lacking)).items():
        out[code] = factor_micro(value)
    return out


def _codes_param(text: str, name: str = "ts_codes") -> list[str]:
    codes: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            codes.append(parse_ts_code(part.strip()).ts_code)
        except InvalidTsCode as exc:
            raise ServiceError("invalid_request", f"{name}: {exc}", status_code=422) from exc
    if not codes:
        raise ServiceError("invalid_request", f"{name}: give at least one code", status_code=422)
    return sorted(set(codes))


@router.get("/bars/many")
async def get_many_bars(
    store: Store,
    read_cache: Cache,
    ts_codes: Annotated[str, Query(description="comma-separated, e.g. 600000.SH,000001.SZ (at most 200)")],
    start: Annotated[TradeDate, Query(description="first trade date")],
    end: Annotated[TradeDate, Query(description="last trade date, inclusive")],
    adjust: AdjustParam = Adjust.NONE,
    anchor: AnchorParam = None,
) -> Response:
    """Bars of several symbols: `{start, end, adjust, [anchor], series: [{ts_code, bars}]}` (bars as /v1/bars).
    Unknown codes come back with no bars."""
    codes = _codes_param(ts_codes)
    if len(codes) > MAX_JSON_SYMBOLS:
        raise ServiceError(
            "invalid_request",
            f"ts_codes: at most {MAX_JSON_SYMBOLS} symbols as JSON; use /v1/bars/bulk for more",
            status_code=422,
        )
    _check_range(start, end)
    _check_anchor(adjust, anchor)
    key = f"many:{','.join(codes)}:{start}:{end}:{adjust.value}:{anchor or ''}"
    cached = await read_cache.get("bars", key)
    if cached is not None:
        return Response(cached, media_type="application/json")
    async with store.snapshot() as reads:
        seen = await reads.data_version()
        series = await reads.bars_of(codes, start, end)
        anchor_day = anchor or end
        anchors = await _anchor_micros(reads, codes, anchor_day, series) if adjust is Adjust.QFQ else {}
    body = many_bars_body(series, adjust, anchor_day, anchors, start, end)
    await read_cache.put("bars", key, body, seen=seen)
    return Response(body, media_type="application/json")


_SEND_CHUNK = 1 << 20  # hundreds of MB: 1 MB sends instead of Starlette's 64 KB


def _open_file_response(file: BinaryIO, media_type: str, filename: str, headers: dict[str, str]) -> Response:
    """Stream an already open file (a FileResponse opens its path only when sending, by which time a concurrent
    build may have pruned it), closing it when done."""
    size = os.fstat(file.fileno()).st_size

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await to_thread.run_sync(file.read, _SEND_CHUNK):
                yield chunk
        finally:
            file.close()

    return StreamingResponse(
        chunks(),
        media_type=media_type,
        headers={**headers, "Content-Length": str(size), "Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/bars/bulk",
    responses={200: {"content": {FORMATS["arrow"]: {}, FORMATS["parquet"]: {}}, "description": "Arrow or Parquet"}},
)
async def get_bulk_bars(
    bulk: Bulk,
    format: Annotated[str, Query(pattern="^(arrow|parquet)$", description="arrow (IPC stream) or parquet")] = "arrow",
    start: Annotated[TradeDate | None, Query(description="first trade date; default the first stored")] = None,
    end: Annotated[TradeDate | None, Query(description="last trade date; default the last stored")] = None,
    ts_codes: Annotated[str | None, Query(description="comma-separated; default the whole market")] = None,
    adjust: AdjustParam = Adjust.NONE,
    anchor: AnchorParam = None,
    fields: Annotated[
        str | None,
        Query(description="comma-separated daily_basic fields to add (pe_ttm, pb, turnover_rate, ...); default none"),
    ] = None,
) -> Response:
    """Bars of many symbols (default the whole market) as one Arrow IPC stream or Parquet file, for bulk
    consumers. Columns: ts_code, trade_date, open, high, low, close, pre_close (int64 fen unadjusted, float64 CNY
    with 4 decimals for qfq/hfq), vol (int64 shares), amount (int64 fen), adj_factor (float64), then the daily_basic
    `fields` asked for (ratios float64 as Tushare gives them; share counts int64 shares; market values int64 fen;
    null where there is none). Answers are cached on disk per data version (header `X-LH-Data-Version`)."""
    if start is not None and end is not None:
        _check_range(start, end)
    _check_anchor(adjust, anchor)
    codes = tuple(_codes_param(ts_codes)) if ts_codes is not None else None
    try:
        extra = bulk_fields([part.strip() for part in (fields or "").split(",") if part.strip()])
    except ValueError as exc:
        raise ServiceError("invalid_request", f"fields: {exc}", status_code=422) from exc
    query = BulkQuery(format=format, start=start, end=end, ts_codes=codes, adjust=adjust, anchor=anchor, fields=extra)
    file, version = await bulk.open_answer(query)
    return _open_file_response(file, FORMATS[format], f"bars-v{version}.{format}", {"X-LH-Data-Version": str(version)})


@router.get("/cross-section")
async def get_cross_section(
    store: Store, read_cache: Cache, trade_date: Annotated[TradeDate, Query(description="the trading day")]
) -> Response:
    """Every stock's bar on one day, with that day's limit prices where stored:
    `{trade_date, bars: [{ts_code, open, ..., adj_factor, up_limit, down_limit}]}`."""
    key = f"day:{trade_date.isoformat()}"
    cached = await read_cache.get("bars", key)
    if cached is not None:
        return Response(cached, media_type="application/json")
    async with store.snapshot() as reads:
        seen = await reads.data_version()
        body = cross_section_body(trade_date, await reads.cross_section(trade_date))
    await read_cache.put("bars", key, body, seen=seen)
    return Response(body, media_type="application/json")


def _index_code(ts_code: str) -> str:
    code = ts_code.strip().upper()
    if not re.match(r"^\d{6}\.(SH|SZ|BJ|CSI|SI)$", code):
        raise ServiceError(
            "invalid_request", f"ts_code: {ts_code!r} is not an index code like 000300.SH", status_code=422
        )
    return code


@router.get(
    "/indexes/{ts_code}/constituents",
    response_model=ConstituentsOut,
    responses={404: {"description": "`unknown_index`"}},
)
async def get_index_constituents(
    store: Store, ts_code: str, trade_date: Annotated[TradeDate, Query(description="the day asked about")]
) -> ConstituentsOut:
    code = _index_code(ts_code)
    day, rows = await store.index_constituents(code, trade_date)
    if day is None and not await store.known_index(code):
        raise NotFound("unknown_index", f"no index {code} in the store")
    return ConstituentsOut(
        index_code=code,
        on=trade_date,
        weights_date=day,
        constituents=[ConstituentOut(con_code=c, weight=w) for c, w in rows],
    )


@router.get("/indexes/{ts_code}/bars", response_model=IndexBarsOut, responses={404: {"description": "`unknown_index`"}})
async def get_index_bars(
    store: Store,
    ts_code: str,
    start: Annotated[TradeDate, Query(description="first trade date")],
    end: Annotated[TradeDate, Query(description="last trade date, inclusive")],
) -> IndexBarsOut:
    code = _index_code(ts_code)
    _check_range(start, end)
    rows = await store.index_bar_rows(code, start, end)
    if not rows and not await store.known_index(code):
        raise NotFound("unknown_index", f"no index {code} in the store")
    return IndexBarsOut(
        ts_code=code,
        bars=[
            IndexBarOut(
                trade_date=r["trade_date"], open=r["open"], high=r["high"], low=r["low"], close=r["close"],
                pre_close=r["pre_close"], vol=r["vol"], amount=from_fen(r["amount"]),
            )
            for r in rows
        ],
    )  # fmt: skip


@router.get(
    "/quotes/{ts_code}",
    response_model=Quote,
    responses={
        404: {"description": "`unknown_security`"},
        422: {"description": "`invalid_ts_code`; `not_a_trading_day` (`session` is not one in the stored calendar)"},
    },
)
async def get_quote(
    store: Store,
    read_cache: Cache,
    ts_code: str,
    session: Annotated[
        TradeDate | None,
        Query(
            description="a trading day: the quote as the data stood before it opened (a replayed market's session): "
            "the last close before it, its limits, and `suspended` = no bar on that day. Default: the latest quote"
        ),
    ] = None,
) -> Response:
    """The security's last close and its limits for the next session (by default the one after the newest stored
    session; with `session`, that trading day)."""
    code = _code(ts_code).ts_code
    key = code if session is None else f"{code}:{session.isoformat()}"
    cached = await read_cache.get("quote", key)
    if cached is not None:
        return Response(cached, media_type="application/json")
    async with store.snapshot() as reads:
        seen = await reads.data_version()
        security = await _security(reads, code)
        if session is None:
            quote = await next_session_quote(reads, security)
        else:
            if not await reads.open_days(session, session):
                raise ServiceError(
                    "not_a_trading_day",
                    f"session: {session.isoformat()} is not a trading day in the stored calendar",
                    status_code=422,
                )
            quote = await session_quote(reads, security, session)
    body = quote.model_dump_json()
    await read_cache.put("quote", key, body, seen=seen)
    return Response(body, media_type="application/json")


def _version_tag(version: int) -> str:
    return f'"v{version}"'


@router.get(
    "/reference",
    response_model=ReferenceData,
    responses={
        304: {"description": "`If-None-Match` names the current data version: what the caller holds is current"},
        422: {"description": "`not_a_trading_day` (`session` is not one in the stored calendar)"},
    },
)
async def get_reference(
    store: Store,
    read_cache: Cache,
    session: Annotated[
        TradeDate | None,
        Query(
            description="a trading day: every security as the data stood before it opened (as "
            "`/v1/quotes/{ts_code}?session=`). Default: the latest (the session after the newest stored one)"
        ),
    ] = None,
    if_none_match: Annotated[str | None, Header(description="an ETag this endpoint gave (the data version)")] = None,
) -> Response:
    """Every security's reference data for a session in one answer, for risk and the paper broker to hold in memory:
    per security the fields of `/v1/quotes/{ts_code}` (equal to its answer for the same session), its industry and
    its 20-day average volume, with the data version read (`data_version`, header `ETag`). Asked again with
    `If-None-Match: <ETag>`, it answers 304 while the data version is unchanged (one small read)."""
    current = await store.data_version()
    if if_none_match is not None and if_none_match == _version_tag(current):
        return Response(status_code=304, headers={"ETag": if_none_match})
    key = "latest" if session is None else session.isoformat()
    cached = await read_cache.get("reference", key)
    cached_version = _leading_version(cached) if cached is not None else None
    # A cached answer of an older version is never served: an invalidation that raced the answer's caching (or
    # failed) must not hand risk the data it just heard was replaced.
    if cached is not None and cached_version is not None and cached_version == current:
        return Response(cached, media_type="application/json", headers=_reference_headers(cached_version))
    async with store.snapshot() as reads:
        if session is not None and not await reads.open_days(session, session):
            raise ServiceError(
                "not_a_trading_day",
                f"session: {session.isoformat()} is not a trading day in the stored calendar",
                status_code=422,
            )
        data = await reference_data(reads, session)
    body = data.model_dump_json()
    await read_cache.put("reference", key, body, seen=data.data_version)
    return Response(body, media_type="application/json", headers=_reference_headers(data.data_version))


def _leading_version(body: bytes) -> int | None:
    """The data version a cached answer was read at: its first field (not the whole answer parsed for it)."""
    found = re.match(rb'\{"data_version":(\d+),', body)
    return int(found.group(1)) if found else None


def _reference_headers(version: int) -> dict[str, str]:
    return {"ETag": _version_tag(version), "X-LH-Data-Version": str(version)}


@router.get("/calendar", response_model=CalendarOut)
async def get_calendar(
    store: Store,
    start: Annotated[TradeDate, Query(description="YYYY-MM-DD or YYYYMMDD")],
    end: Annotated[TradeDate, Query(description="inclusive")],
) -> CalendarOut:
    _check_range(start, end)
    days = await store.open_days(start, end)
    return CalendarOut(
        exchange=CALENDAR_EXCHANGE,
        start=start,
        end=end,
        trading_days=days,
        complete_through=await store.complete_through(),
    )
