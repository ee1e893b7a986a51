"""The data service's trade calendar (`GET /v1/calendar`) as its consumers read it: `DataServiceCalendar` (execution's
day orders and paper broker, risk), and `OrderSessions`, the session an order placed now belongs to (`order_session`
in shared.platform.clock) from trading days it keeps in memory, for the order path, which asks on every order."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from shared.platform.clock import EXCHANGE_TZ, OrderSession, order_session_after
from shared.platform.errors import ServiceError
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers


class CalendarUnavailable(Exception):
    """The trade calendar could not be read: nothing is decided on a guess."""


class TradingCalendar(Protocol):
    async def trading_days(self, start: date, end: date) -> list[date]:
        """Trading days in [start, end], in order. Raises CalendarUnavailable."""


class BarsCalendar(TradingCalendar, Protocol):
    async def complete_through(self) -> date | None:
        """The newest trading day whose bars the data service holds in full (None: never recorded). Raises
        CalendarUnavailable."""


class DataServiceCalendar:
    """Trading days from the data service's `GET /v1/calendar?start=&end=`, asked as the service `caller`."""

    def __init__(self, services: ServiceDirectory, internal_secret: str, caller: str = "execution") -> None:
        self.services = services
        self.internal_secret = internal_secret
        self.caller = caller

    async def _calendar(self, start: date, end: date) -> dict[str, Any]:
        """The data service's calendar answer for [start, end]. Raises CalendarUnavailable."""
        client = self.services.client("data")
        try:
            body = await client.get_json(
                "/v1/calendar",
                params={"start": start.isoformat(), "end": end.isoformat()},
                headers=service_headers(self.internal_secret, self.caller),
            )
        except ServiceError as exc:
            raise CalendarUnavailable(f"the data service answered {exc.code}: {exc.message}") from exc
        except ValueError as exc:
            raise CalendarUnavailable("the data service answered the calendar without JSON") from exc
        if not isinstance(body, dict):
            raise CalendarUnavailable("the data service's calendar is not an object")
        return body

    async def trading_days(self, start: date, end: date) -> list[date]:
        body = await self._calendar(start, end)
        try:
            return sorted(date.fromisoformat(str(d)) for d in body["trading_days"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CalendarUnavailable(f"the data service's calendar is malformed: {exc!r}") from exc

    async def complete_through(self) -> date | None:
        today = date.today()
        value = (await self._calendar(today, today)).get("complete_through")
        try:
            return None if value is None else date.fromisoformat(str(value))
        except ValueError as exc:
            raise CalendarUnavailable(f"the data service's calendar is malformed: {exc!r}") from exc


SESSIONS_BEHIND = timedelta(days=30)  # the trading days kept before today (the session before the order's: T+1)
SESSIONS_AHEAD = timedelta(days=30)  # ... and after it (the longest closure, Spring Festival, is 9 days)


class OrderSessions:
    """The session an order placed at a moment belongs to, from the trading days around today (Asia/Shanghai) kept in
    memory: read once a day (when a moment of a later exchange date is asked about) and again when the moment falls
    beyond them (a miss). A read that fails is answered from the days kept when they answer the question;
    else CalendarUnavailable (nothing is decided on a guess)."""

    def __init__(self, calendar: TradingCalendar) -> None:
        self.calendar = calendar
        self._days: list[date] | None = None
        self._read_for: date | None = None  # the exchange date the days were read on
        self._lock = asyncio.Lock()
        self.reads = 0  # calendar reads made (tests, and the hot path's cost)

    async def _read(self, today: date, seen: list[date] | None) -> list[date]:
        """Read the days around `today`, unless another caller did since this one saw `seen`."""
        async with self._lock:
            if self._days is not None and self._days is not seen and self._read_for == today:
                return self._days
            days = await self.calendar.trading_days(today - SESSIONS_BEHIND, today + SESSIONS_AHEAD)
            self.reads += 1
            self._days, self._read_for = days, today
            return days

    async def days_around(self, at: datetime) -> list[date]:
        """The trading days kept around `at`'s exchange date (SESSIONS_BEHIND before it to SESSIONS_AHEAD after it),
        read as `session_of` reads them. Raises CalendarUnavailable."""
        await self.session_of(at)
        return list(self._days or ())

    async def session_of(self, at: datetime) -> OrderSession | None:
        """The session of an order placed at `at` (`order_session`) and its T+1 boundary; None when the calendar has
        no trading day within SESSIONS_AHEAD of it. Raises CalendarUnavailable when the calendar cannot be read and
        the days kept do not answer."""
        today = at.astimezone(EXCHANGE_TZ).date()
        kept = self._days
        if kept is not None and self._read_for is not None and today <= self._read_for:
            # read today (or an earlier moment: a resubmitted order's own time): answered from the days kept
            found = order_session_after(at, kept)
            if found is not None and found.previous is not None:
                return found
            # a miss: read again (the calendar may have been imported since)
        try:
            days = await self._read(today, kept)
        except CalendarUnavailable:
            if kept is not None:
                found = order_session_after(at, kept)
                if found is not None and any(d < found.day for d in kept):
                    return found  # yesterday's days still answer it: the session and the one before it are there
            raise
        return order_session_after(at, days)
