"""The data service's quote (`GET /v1/quotes/{ts_code}`): the one schema the data service answers with, and the
one client its consumers (risk, the paper broker) read it with, and the port (`QuoteSource`) they take it through."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from shared.core.domain.codes import Board
from shared.platform.errors import ServiceError
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers


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


class QuoteUnavailable(Exception):
    """The data service could not say what the caller needs (down, refusing, or answering something that is not a
    quote): the caller cannot decide and fails closed."""


class QuoteSource(Protocol):
    """Where a consumer gets quotes: `DataServiceQuotes` in the services, a stub in tests."""

    async def quote(self, ts_code: str, session: date | None = None) -> Quote | None:
        """The quote, or None for a security the data service does not know. `session`: as the data stood before
        that trading day (a replayed market's session); None: the latest. Raises QuoteUnavailable."""


class DataServiceQuotes:
    """Quotes from the data service (`GET /v1/quotes/{ts_code}`), asked as the service `caller` (service token),
    parsed into `Quote`."""

    def __init__(self, services: ServiceDirectory, internal_secret: str, caller: str) -> None:
        self.services = services
        self.internal_secret = internal_secret
        self.caller = caller

    async def quote(self, ts_code: str, session: date | None = None) -> Quote | None:
        """The quote, or None for a security the data service does not know. `session`: as the data stood before
        that trading day; None: the latest. Raises QuoteUnavailable (also for a `session` that is not a trading
        day: the caller's clock and the data service's calendar disagree)."""
        client = self.services.client("data")
        headers = service_headers(self.internal_secret, self.caller)
        asked = {} if session is None else {"params": {"session": session.isoformat()}}
        try:
            body = await client.get_json(f"/v1/quotes/{ts_code}", headers=headers, **asked)
        except ServiceError as exc:
            if exc.status_code == 404:
                return None
            raise QuoteUnavailable(f"the data service answered {exc.code}: {exc.message}") from exc
        except ValueError as exc:
            raise QuoteUnavailable("the data service answered without JSON") from exc
        try:
            return Quote.model_validate(body)
        except ValidationError as exc:
            raise QuoteUnavailable(f"the data service's quote for {ts_code} is malformed: {exc.errors()[0]}") from exc
