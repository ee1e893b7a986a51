"""The quote of a security for the next session (`shared.platform.quotes.Quote`): its reference price and limits,
as risk and the paper broker need them. The rules are plain functions; `next_session_quote` gathers the stored
facts they need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from services.data.store import DataStore, SecurityRecord
from shared.core.domain.codes import Board
from shared.core.domain.money import from_fen
from shared.core.market import limit_prices, price_limit_ratio
from shared.platform.quotes import Quote

# New listings have special limit regimes for at most their first five sessions (STAR/ChiNext/main board after
# the registration reforms); from the sixth on a stock is "seasoned" and the rules take listing_day=None.
NEW_LISTING_SESSIONS = 5
# Five sessions never span more than a month, even across the Spring Festival: older listings are seasoned.
RECENT_LISTING = timedelta(days=31)


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


async def _limits(
    store: DataStore, security: SecurityRecord, reference_fen: int, session: date
) -> NextSessionLimits | None:
    open_days = None
    if session - security.list_date <= RECENT_LISTING:
        span = await store.calendar_span()
        if span is not None and span[0] <= security.list_date:
            open_days = await store.count_open_days(security.list_date, session)
    return next_session_limits(
        Board(security.board),
        is_st=security.is_st,
        reference_fen=reference_fen,
        session=session,
        listing_day=listing_day_of(open_days),
    )


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
    limits = None
    if last is not None and not delisted:
        reference = on_session[0].pre_close if on_session else last.close
        limits = await _limits(store, security, reference, session)
    return Quote(
        ts_code=security.ts_code,
        name=security.name,
        board=Board(security.board),
        is_st=security.is_st,
        last_trade_date=last.trade_date if last else None,
        last_close=from_fen(last.close) if last else None,
        next_trade_date=session,
        suspended=not on_session,
        limit_up=limits.limit_up if limits else None,
        limit_down=limits.limit_down if limits else None,
    )


async def next_session_quote(store: DataStore, security: SecurityRecord) -> Quote:
    """The security's position as of the newest session in the store, and its limits for the session after
    (`/v1/quotes/{ts_code}`'s answer)."""
    last = await store.last_bar(security.ts_code)
    as_of = await store.latest_session()
    next_day = await store.next_open_day(as_of) if as_of is not None else None
    limits = None
    delisted = security.delist_date is not None and (as_of is None or security.delist_date <= as_of)
    if last is not None and as_of is not None and not delisted:
        # Beyond the stored calendar the session date is unknown; the day after suffices to pick the rule regime.
        session = next_day or as_of + timedelta(days=1)
        limits = await _limits(store, security, last.close, session)
    return Quote(
        ts_code=security.ts_code,
        name=security.name,
        board=Board(security.board),
        is_st=security.is_st,
        last_trade_date=last.trade_date if last else None,
        last_close=from_fen(last.close) if last else None,
        next_trade_date=next_day,
        suspended=last is None or last.trade_date != as_of,
        limit_up=limits.limit_up if limits else None,
        limit_down=limits.limit_down if limits else None,
    )
