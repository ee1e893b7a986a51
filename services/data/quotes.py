"""The quote of a security for the next session (`shared.platform.quotes.Quote`): its reference price and limits,
as risk and the paper broker need them, one security at a time or the whole market's reference data at once. The
rules are plain functions (`quote_of`); `next_session_quote`, `session_quote` and `reference_data` gather the stored
facts they need."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from services.data.store import DataStore, SecurityRecord
from shared.core.domain.codes import Board
from shared.core.domain.money import from_fen, to_fen
from shared.core.market import limit_prices, price_limit_ratio
from shared.platform.quotes import Quote, Reference, ReferenceData

# New listings have special limit regimes for at most their first five sessions (STAR/ChiNext/main board after
# the registration reforms); from the sixth on a stock is "seasoned" and the rules take listing_day=None.
NEW_LISTING_SESSIONS = 5
# Five sessions never span more than a month, even across the Spring Festival: older listings are seasoned.
RECENT_LISTING = timedelta(days=31)
# The reference data's average volume: over the trading days before the session (risk's liquidity rule, issue 13).
AVERAGE_VOLUME_SESSIONS = 20


@dataclass(frozen=True)
class NextSessionLimits:
    limit_up: Decimal
    limit_down: Decimal


def listing_day_of(open_days_since_listing: int | None) -> int | None:
    """`listing_day` for the rules: the session's number counted from the listing day (1 = listing day), or None for
    a seasoned stock or when the stored calendar does not reach back to the listing."""
    if open_days_since_listing is None or open_days_since_listing > NEW_LISTING_SESSIONS:
        return None
    return open_days_since_listing


def next_session_limits(
    board: Board, *, is_st: bool, reference_fen: int, session: date, listing_day: int | None
) -> NextSessionLimits | None:
    """Limit-up and limit-down prices of `session` around the reference price (the last close), or None when that
    session has no limits (a new listing's first days)."""
    ratio = price_limit_ratio(board, session, is_st=is_st, listing_day=listing_day)
    limits = limit_prices(from_fen(reference_fen), ratio)
    if limits is None:
        return None
    return NextSessionLimits(limit_up=limits[0], limit_down=limits[1])


def counts_listing_days(security: SecurityRecord, session: date, calendar_start: date | None) -> bool:
    """Whether `session`'s rule regime needs the security's session number since listing: a listing recent enough
    to be in its first sessions, and a stored calendar reaching back to it (otherwise it is taken as seasoned)."""
    return (
        session - security.list_date <= RECENT_LISTING
        and calendar_start is not None
        and calendar_start <= security.list_date
    )


def quote_of(
    security: SecurityRecord,
    *,
    last_trade_date: date | None,
    last_close_fen: int | None,
    next_trade_date: date | None,
    suspended: bool,
    reference_fen: int | None,
    limits_session: date | None,
    open_days_since_listing: int | None,
    exchange_limits: tuple[int | None, int, int] | None = None,
) -> Quote:
    """The quote from the facts its rules read, gathered one security at a time (`next_session_quote`,
    `session_quote`) or for the whole market at once (`reference_data`): the same function, so the two agree.
    `reference_fen` / `limits_session`: the price the limits are around and the session they are for (either None:
    no limits). `exchange_limits`: the session's stored stk_limit row (pre_close, limit_down, limit_up in fen), the
    exchange's own limits, taken instead of the rule's (exact on an ex-date, where the exchange's reference price is
    below the last close, before that day's bar is stored) unless the security has no reference (delisted)."""
    limits = None
    if exchange_limits is not None and reference_fen is not None and limits_session is not None:
        limits = NextSessionLimits(limit_up=from_fen(exchange_limits[2]), limit_down=from_fen(exchange_limits[1]))
    elif reference_fen is not None and limits_session is not None:
        limits = next_session_limits(
            Board(security.board),
            is_st=security.is_st,
            reference_fen=reference_fen,
            session=limits_session,
            listing_day=listing_day_of(open_days_since_listing),
        )
    return Quote(
        ts_code=security.ts_code,
        name=security.name,
        board=Board(security.board),
        is_st=security.is_st,
        last_trade_date=last_trade_date,
        last_close=from_fen(last_close_fen) if last_close_fen is not None else None,
        next_trade_date=next_trade_date,
        suspended=suspended,
        limit_up=limits.limit_up if limits else None,
        limit_down=limits.limit_down if limits else None,
    )


async def _open_days_since_listing(store: DataStore, security: SecurityRecord, session: date) -> int | None:
    if session - security.list_date > RECENT_LISTING:  # (asked first: most quotes need no calendar read)
        return None
    span = await store.calendar_span()
    if not counts_listing_days(security, session, span[0] if span else None):
        return None
    return await store.count_open_days(security.list_date, session)


async def session_quote(store: DataStore, security: SecurityRecord, session: date) -> Quote:
    """The quote as the data stood before trading day `session` opened (`/v1/quotes/{ts_code}?session=`, for a
    replayed market): last_trade_date / last_close from the symbol's last bar before `session`, next_trade_date =
    `session`, and the limits of `session`. `suspended` is whether the symbol has no bar ON `session` (what a paper
    fill on that session needs to know), not, as in the latest quote, on the newest stored session.

    The limits are around the session bar's pre_close where it has a bar: the exchange's reference price, published
    before the open, which differs from the last close on an ex-rights day (and is what the backtest engine's limits
    use); without a bar, around the last close. The caller checks that `session` is a trading day."""
    last = await store.last_bar_before(security.ts_code, session)
    on_session = await store.bars(security.ts_code, session, session)
    delisted = security.delist_date is not None and security.delist_date <= session
    reference = None
    if last is not None and not delisted:
        reference = on_session[0].pre_close if on_session else last.close
    exchange = (await store.session_limits(session, security.ts_code)).get(security.ts_code)
    return quote_of(
        security,
        last_trade_date=last.trade_date if last else None,
        last_close_fen=last.close if last else None,
        next_trade_date=session,
        suspended=not on_session,
        reference_fen=reference,
        limits_session=session,
        open_days_since_listing=(
            await _open_days_since_listing(store, security, session) if reference is not None else None
        ),
        exchange_limits=exchange,
    )


async def next_session_quote(store: DataStore, security: SecurityRecord) -> Quote:
    """The security's position as of the newest session in the store, and its limits for the session after
    (`/v1/quotes/{ts_code}`'s answer)."""
    last = await store.last_bar(security.ts_code)
    as_of = await store.latest_session()
    next_day = await store.next_open_day(as_of) if as_of is not None else None
    delisted = security.delist_date is not None and (as_of is None or security.delist_date <= as_of)
    session = reference = None
    if last is not None and as_of is not None and not delisted:
        # Beyond the stored calendar the session date is unknown; the day after suffices to pick the rule regime.
        session = next_day or as_of + timedelta(days=1)
        reference = last.close
    exchange = None
    if next_day is not None and reference is not None:  # the next session's limits, if loaded before its open
        exchange = (await store.session_limits(next_day, security.ts_code)).get(security.ts_code)
    return quote_of(
        security,
        last_trade_date=last.trade_date if last else None,
        last_close_fen=last.close if last else None,
        next_trade_date=next_day,
        suspended=last is None or last.trade_date != as_of,
        reference_fen=reference,
        limits_session=session,
        open_days_since_listing=await _open_days_since_listing(store, security, session) if session else None,
        exchange_limits=exchange,
    )


async def reference_data(store: DataStore, session: date | None = None) -> ReferenceData:
    """Every security's reference data (`/v1/reference`): its quote as `next_session_quote` (session None) or
    `session_quote(session)` would give it, by the same rules over facts read for the whole market in a few
    set-based queries, its industry, and its 20-day average volume. Read it inside `store.snapshot()` (one consistent
    view); the caller checks that `session` is a trading day."""
    version = await store.data_version()
    securities = await store.list_securities()
    if session is None:
        as_of = await store.latest_session()
        next_day = await store.next_open_day(as_of) if as_of is not None else None
        last = await store.last_bars()
        on_session: dict[str, int] = {}
        # Beyond the stored calendar the session date is unknown; the day after suffices to pick the rule regime.
        limits_session = (next_day or as_of + timedelta(days=1)) if as_of is not None else None
    else:
        as_of, next_day = None, session
        last = await store.last_bars(before=session)
        on_session = await store.session_pre_closes(session)
        limits_session = session
    open_days_of = (
        await _listing_days_counter(store, securities, limits_session) if limits_session is not None else None
    )
    # the session's limits as the exchange published them, where stored (before its open, by the pre-open load)
    exchange_limits = await store.session_limits(next_day) if next_day is not None else {}
    volumes: dict[str, tuple[int, int]] = {}
    if limits_session is not None:
        window = await store.open_days_before(limits_session, AVERAGE_VOLUME_SESSIONS)
        if window:
            volumes = await store.volume_totals(window[0], window[-1])

    references = []
    for security in securities:
        bar = last.get(security.ts_code)
        if session is None:
            delisted = security.delist_date is not None and (as_of is None or security.delist_date <= as_of)
            suspended = bar is None or bar[0] != as_of
            reference = bar[1] if bar is not None and as_of is not None and not delisted else None
        else:
            delisted = security.delist_date is not None and security.delist_date <= session
            suspended = security.ts_code not in on_session
            reference = None
            if bar is not None and not delisted:
                reference = on_session.get(security.ts_code, bar[1])
        open_days = open_days_of(security) if reference is not None and open_days_of is not None else None
        quote = quote_of(
            security,
            last_trade_date=bar[0] if bar else None,
            last_close_fen=bar[1] if bar else None,
            next_trade_date=next_day,
            suspended=suspended,
            reference_fen=reference,
            limits_session=limits_session,
            open_days_since_listing=open_days,
            exchange_limits=exchange_limits.get(security.ts_code),
        )
        total = volumes.get(security.ts_code)
        references.append(
            Reference(
                **quote.model_dump(),
                industry=security.industry,
                avg_vol_20d=total[0] // total[1] if total else None,
            )
        )
    return ReferenceData(session=session, next_trade_date=next_day, data_version=version, securities=tuple(references))


async def _listing_days_counter(
    store: DataStore, securities: Sequence[SecurityRecord], session: date
) -> Callable[[SecurityRecord], int | None]:
    """`count_open_days(list_date, session)` of each security whose listing is recent enough to be in its first
    sessions (None for the others, as `_open_days_since_listing`), from the calendar read once for all of them."""
    calendar_start: date | None = None
    listing_days: list[date] = []
    if any(session - s.list_date <= RECENT_LISTING for s in securities):
        span = await store.calendar_span()
        calendar_start = span[0] if span else None
        counted = [s.list_date for s in securities if counts_listing_days(s, session, calendar_start)]
        if counted:
            listing_days = await store.open_days(min(counted), session)

    def open_days(security: SecurityRecord) -> int | None:
        if not counts_listing_days(security, session, calendar_start):
            return None
        since = bisect_right(listing_days, session) - bisect_left(listing_days, security.list_date)
        return max(since, 0)

    return open_days


class SessionBand(NamedTuple):
    """A security's price band of one trading day in fen, as the real-time quotes are checked against it:
    `reference` the price its limits are around (None: no stored close to go by), `limit_down` / `limit_up` (None:
    a day without limits, e.g. a new listing's first sessions)."""

    reference: int | None
    limit_down: int | None
    limit_up: int | None


async def session_bands(
    store: DataStore, session: date, securities: Sequence[SecurityRecord] | None = None
) -> dict[str, SessionBand]:
    """Every security's band of trading day `session` from the stored facts, by code, over the whole market in a
    few set-based queries (`securities`: those already read, else read here). Read it inside `store.snapshot()`.
    Never the feed's own pre_close.

    Where the day's stk_limit row is stored (the exchange's own limits, loaded before the open: exact on an ex-date,
    for a new listing with limits, after an ST change), its limits and its pre_close are the band (a row stored
    without pre_close takes the reference below). Else the limits `session_quote(session)` gives, by the same rules
    (`quote_of`): around the session bar's pre_close where it has one, the exchange's reference; else the last close
    before it. None for a delisted security, or one without a stored close nor a row."""
    if securities is None:
        securities = await store.list_securities()
    last = await store.last_bars(before=session)
    on_session = await store.session_pre_closes(session)
    exchange_limits = await store.session_limits(session)
    open_days_of = await _listing_days_counter(store, securities, session)
    bands: dict[str, SessionBand] = {}
    for security in securities:
        code = security.ts_code
        bar = last.get(code)
        delisted = security.delist_date is not None and security.delist_date <= session
        row = exchange_limits.get(code)
        if row is not None and not delisted:
            pre_close, down, up = row
            reference = pre_close if pre_close is not None else on_session.get(code, bar[1] if bar else None)
            if reference is not None:
                bands[code] = SessionBand(reference, down, up)
                continue
        if bar is None or delisted:
            bands[code] = SessionBand(None, None, None)
            continue
        reference = on_session.get(code, bar[1])
        quote = quote_of(
            security,
            last_trade_date=bar[0],
            last_close_fen=bar[1],
            next_trade_date=session,
            suspended=code not in on_session,
            reference_fen=reference,
            limits_session=session,
            open_days_since_listing=open_days_of(security),
        )
        bands[code] = SessionBand(
            reference,
            to_fen(quote.limit_down) if quote.limit_down is not None else None,
            to_fen(quote.limit_up) if quote.limit_up is not None else None,
        )
    return bands
