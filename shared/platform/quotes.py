"""The data service's quote (`GET /v1/quotes/{ts_code}`) and reference data (`GET /v1/reference`, every security's
quote and more for one session): the schemas the data service answers with, the port (`QuoteSource`) its consumers
(risk, the paper broker) take quotes through, and `ReferenceQuotes`, which implements it with the whole market's
reference data held in memory (no HTTP read per order)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from shared.core.domain.codes import Board
from shared.platform.clock import EXCHANGE_TZ, utcnow
from shared.platform.errors import ServiceError
from shared.platform.events.envelope import Envelope
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers

log = logging.getLogger(__name__)

# A backstop, not the mechanism (the data service's `bars.updated` is): a reference held this long is checked with
# the data service (a conditional request, answered 304 while the data version is unchanged) before its next use, so
# a write no event announced (a CLI import, an event lost with a connection) is seen within it.
REVALIDATE_S = 10.0
# Replayed sessions held beside the latest (a replay moves forward: the current one, and the one before while
# orders placed on it are still being filled).
SESSIONS_KEPT = 2


class Quote(BaseModel):
    """A security as of the newest session in the data service's store, and its limits for the next session (or,
    asked with `session=`, as of the close before that trading day, and its limits that day).

    Every field is required: a quote missing one cannot be trusted (consumers fail closed). Prices in CNY."""

    model_config = ConfigDict(frozen=True)

    ts_code: str
    name: str
    board: Board
    is_st: StrictBool
    last_trade_date: date | None  # None: the security never traded
    last_close: Decimal | None  # None only for a security that never traded (then it is suspended)
    next_trade_date: date | None  # None: beyond the stored calendar
    suspended: StrictBool  # no bar on the newest session in the store (asked with `session=`: no bar on that day)
    limit_up: Decimal | None  # for next_trade_date; None when that session has no limits (or nothing is known)
    limit_down: Decimal | None


class Reference(Quote):
    """A security's reference data for a session (`GET /v1/reference`): its quote, and what risk's rules read beside
    it. The quote's fields are equal to `GET /v1/quotes/{ts_code}`'s for the same session and data version."""

    industry: str | None  # Tushare stock_basic's industry, as given; None: not stored
    # Shares: the mean daily volume over the security's bars in the 20 trading days before next_trade_date (days
    # without a bar, suspended, do not count), rounded down; None: no bar in those days.
    avg_vol_20d: int | None


class ReferenceData(BaseModel):
    """Every security's reference data for one session, at one data version (`GET /v1/reference`)."""

    model_config = ConfigDict(frozen=True)

    data_version: int  # the data service's data version the answer was read at (first: the service reads it back)
    session: date | None  # as asked; None: the latest (the session after the newest stored one)
    next_trade_date: date | None  # the session the limits are for (None: beyond the stored calendar, or no bars)
    securities: tuple[Reference, ...]


LIMITS_UNKNOWN = "limits_unknown"


def limits_unknown(ts_code: str, limits_for: date | None, session: date, previous: date | None = None) -> str | None:
    """Why (the message of code LIMITS_UNKNOWN) a quote's price limits, those of `limits_for` (its
    `next_trade_date`), cannot be used for an order of `session`, or None when they are that session's. Between a
    session's close and its bars being stored, an order is for the next session while the latest quote still has
    the limits of the one that closed (computed from the close before it): checking against those would check
    against another session's limits. `previous`: the trading day before `session`, whose close the limits of
    `session` are computed from, when known."""
    if limits_for == session:
        return None
    known = "no session" if limits_for is None else limits_for.isoformat()
    close = f"the close of {previous.isoformat()}" if previous is not None else "the close before it"
    return (
        f"the price limits of {ts_code} on session {session.isoformat()}, which the order is for, "
        f"are not known until {close} is stored (the data service's latest quote has the limits of {known}); "
        "place it again once those bars are in"
    )


def quote_ahead_of(limits_for: date | None, last_trade_date: date | None, session: date) -> bool:
    """The data service's store already holds `session`'s bars (or later ones): its latest quote is past the session
    an order is for — a shifted clock over stored history (a rehearsal), never the live market. The quote of that
    session (`QuoteSource.quote(ts_code, session)`: as the data stood before it, with its limits) is the one to use."""
    if limits_for is not None:
        return limits_for > session
    return last_trade_date is not None and last_trade_date >= session


async def quotes_of(
    source: QuoteSource, ts_codes: Iterable[str], session: date | None = None
) -> dict[str, Quote | None]:
    """Each code's quote, None where it is not known or cannot be read: from one look at the held data for a source
    that has `quotes` (`ReferenceQuotes`: the whole market in memory), else one `quote` a code (a stub). What a
    holding is valued at when a whole account is (risk's rules, for every order)."""
    codes = list(ts_codes)
    many = getattr(source, "quotes", None)
    if many is not None:
        try:
            found: dict[str, Quote | None] = await many(codes, session)
            return found
        except QuoteUnavailable:
            return dict.fromkeys(codes)
    quotes: dict[str, Quote | None] = {}
    for code in codes:
        try:
            quotes[code] = await (source.quote(code) if session is None else source.quote(code, session))
        except QuoteUnavailable:
            quotes[code] = None
    return quotes


class QuoteUnavailable(Exception):
    """The data service could not say what the caller needs (down, refusing, or answering something that is not a
    quote): the caller cannot decide and fails closed."""


class QuoteSource(Protocol):
    """Where a consumer gets quotes: `ReferenceQuotes` in the services, a stub in tests."""

    async def quote(self, ts_code: str, session: date | None = None) -> Quote | None:
        """The quote, or None for a security the data service does not know. `session`: as the data stood before
        that trading day (a replayed market's session); None: the latest. Raises QuoteUnavailable."""


def exchange_today(now: Callable[[], datetime] = utcnow) -> Callable[[], date]:
    """The exchange date (Asia/Shanghai) of a clock's `now()`: what the latest reference data is held for."""

    def today() -> date:
        return now().astimezone(EXCHANGE_TZ).date()

    return today


@dataclass(frozen=True)
class _Held:
    """One session's reference data as held: by code, with the ETag (data version) it was read or last confirmed
    at, when (monotonic seconds), on which exchange day (the latest's), and after how many announcements."""

    data: ReferenceData
    by_code: dict[str, Reference]
    tag: str
    checked_at: float
    day: date | None
    announcements: int


class ReferenceQuotes:
    """Quotes from the data service's reference data (`GET /v1/reference`), the whole market held in memory per
    session: loaded in one call at the first order of a session, then read without any request. Held per (session,
    data version): dropped (confirmed with a conditional request, or loaded again) when the data service announces new
    data (`bars.updated`: `announced`), when the exchange day of the clock changes (the latest's), and at the latest
    REVALIDATE_S after it was last confirmed. When it cannot be loaded or confirmed, QuoteUnavailable: the caller
    fails closed. Each process holds its own copy."""

    def __init__(
        self,
        services: ServiceDirectory,
        internal_secret: str,
        caller: str,
        *,
        today: Callable[[], date] | None = None,
        revalidate_s: float = REVALIDATE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = services
        self.internal_secret = internal_secret
        self.caller = caller
        self.today = today or exchange_today()
        self.revalidate_s = revalidate_s
        self.monotonic = monotonic
        self._held: dict[date | None, _Held] = {}
        self._locks: dict[date | None, asyncio.Lock] = {}
        self._failures: dict[date | None, tuple[float, QuoteUnavailable]] = {}  # the last failed load, by session
        self._announcements = 0  # bars.updated events heard: a reference validated before the last one is stale
        self.loads = 0  # answers read in full (200), for tests and metrics
        self.confirmations = 0  # answers confirmed unchanged (304)

    async def quote(self, ts_code: str, session: date | None = None) -> Quote | None:
        """The quote (a `Reference`), or None for a security the data service does not know. `session`: as the data
        stood before that trading day (a replayed market's session); None: the latest. Raises QuoteUnavailable."""
        return await self.reference(ts_code, session)

    async def reference(self, ts_code: str, session: date | None = None) -> Reference | None:
        """As `quote`, with the fields only the reference data has (industry, average volume)."""
        held = self._current(session) or await self._refresh(session)
        return held.by_code.get(ts_code)

    async def quotes(self, ts_codes: Iterable[str], session: date | None = None) -> dict[str, Quote | None]:
        """Each code's quote (None: not known), read from one look at the data held. Raises QuoteUnavailable."""
        held = self._current(session) or await self._refresh(session)
        return {code: held.by_code.get(code) for code in ts_codes}

    async def reference_data(self, session: date | None = None) -> ReferenceData:
        """The whole market's reference data for `session` (None: the latest), current. Raises QuoteUnavailable."""
        held = self._current(session) or await self._refresh(session)
        return held.data

    @property
    def announcements(self) -> int:
        """How many announcements of new data this holder has heard."""
        return self._announcements

    def invalidate(self) -> None:
        """New data was announced: every reference held is confirmed or loaded again before its next use."""
        self._announcements += 1

    async def announced(self, event: Envelope) -> None:
        """A handler for the data service's `bars.updated` (subscribe it with a queue of this process's own)."""
        log.info("reference data announced as changed", extra={"event_id": event.id, "caller": self.caller})
        self.invalidate()

    def _current(self, session: date | None) -> _Held | None:
        held = self._held.get(session)
        if held is None or held.announcements != self._announcements:
            return None
        if self.monotonic() - held.checked_at >= self.revalidate_s:
            return None
        if session is None and held.day != self.today():
            return None
        return held

    async def _refresh(self, session: date | None) -> _Held:
        # One request at a time per session: a burst of orders after an announcement waits for one answer.
        lock = self._locks.setdefault(session, asyncio.Lock())
        waited_since = self.monotonic()
        async with lock:
            held = self._current(session)
            if held is not None:
                return held
            # A load that failed while this order waited for it fails this order too: an outage answers a burst
            # of orders at once rather than one request timeout after another.
            failed = self._failures.get(session)
            if failed is not None and failed[0] > waited_since:
                raise QuoteUnavailable(str(failed[1]))
            announcements = self._announcements  # one heard while this request runs makes its answer stale
            checked_at = self.monotonic()
            day = self.today() if session is None else None
            previous = self._held.get(session)
            try:
                data = await self._load(session, previous.tag if previous is not None else None)
            except QuoteUnavailable as exc:
                self._failures[session] = (self.monotonic(), exc)
                raise
            self._failures.pop(session, None)
            if data is None:
                assert previous is not None
                self.confirmations += 1
                held = _Held(previous.data, previous.by_code, previous.tag, checked_at, day, announcements)
            else:
                self.loads += 1
                by_code = {row.ts_code: row for row in data.securities}
                held = _Held(data, by_code, f'"v{data.data_version}"', checked_at, day, announcements)
                log.info(
                    "reference data loaded",
                    extra={"caller": self.caller, "session": str(session), "version": data.data_version,
                           "securities": len(by_code)},
                )  # fmt: skip
            self._held[session] = held
            self._forget_old_sessions(session)
            return held

    def _forget_old_sessions(self, current: date | None) -> None:
        sessions = sorted(d for d in self._held if d is not None)
        for old in sessions[: max(len(sessions) - SESSIONS_KEPT, 0)]:
            if old != current:
                del self._held[old]
                self._locks.pop(old, None)
                self._failures.pop(old, None)

    async def _load(self, session: date | None, tag: str | None) -> ReferenceData | None:
        """The reference data of `session`, or None when `tag` is still current (304)."""
        headers = service_headers(self.internal_secret, self.caller)
        if tag is not None:
            headers["If-None-Match"] = tag
        params = {} if session is None else {"session": session.isoformat()}
        try:
            response = await self.services.client("data").request(
                "GET", "/v1/reference", headers=headers, params=params
            )
        except ServiceError as exc:
            raise QuoteUnavailable(f"the data service answered {exc.code}: {exc.message}") from exc
        if response.status_code == 304 and tag is not None:
            return None
        if response.status_code != 200:
            raise QuoteUnavailable(
                f"the data service's reference data{'' if session is None else ' of ' + session.isoformat()} "
                f"answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            data = ReferenceData.model_validate_json(response.content)
        except ValidationError as exc:
            raise QuoteUnavailable(f"the data service's reference data is malformed: {exc.errors()[0]}") from exc
        if data.session != session:
            raise QuoteUnavailable(f"the data service answered the reference data of {data.session}, not {session}")
        return data
