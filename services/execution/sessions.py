"""Day orders: A-share orders live for one trading day. An order belongs to the session it was placed for (the
day it was placed, or the next trading day when placed after the close or on a closed day); what rests of it when
that session closes (15:00 Asia/Shanghai) expires. The trading days come from the data service's trade calendar."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any, Protocol

from services.execution.events import EXCHANGE_TZ
from shared.platform.errors import ServiceError
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers

SESSION_CLOSE = time(15, 0)  # SSE/SZSE continuous trading and the closing call end at 15:00


class CalendarUnavailable(Exception):
    """The trade calendar could not be read: no order is expired on a guess."""


class TradingCalendar(Protocol):
    async def trading_days(self, start: date, end: date) -> list[date]:
        """Trading days in [start, end], in order. Raises CalendarUnavailable."""


def session_close(day: date) -> datetime:
    return datetime.combine(day, SESSION_CLOSE, tzinfo=EXCHANGE_TZ)


def last_close(trading_days: Iterable[date], now: datetime) -> date | None:
    """The latest trading day whose session had closed by `now`, or None."""
    closed = [d for d in trading_days if session_close(d) <= now]
    return max(closed) if closed else None


def expiry_reason(day: date) -> str:
    return f"expired: a day order still open at the close of {day.isoformat()} (15:00 Asia/Shanghai)"


class BarsCalendar(TradingCalendar, Protocol):
    async def complete_through(self) -> date | None:
        """The newest trading day whose bars the data service holds in full (None: never recorded). Raises
        CalendarUnavailable."""


class DataServiceCalendar:
    """Trading days from the data service's `GET /v1/calendar?start=&end=`, as execution itself."""

    def __init__(self, services: ServiceDirectory, internal_secret: str) -> None:
        self.services = services
        self.internal_secret = internal_secret

    async def _calendar(self, start: date, end: date) -> dict[str, Any]:
        """The data service's calendar answer for [start, end]. Raises CalendarUnavailable."""
        client = self.services.client("data")
        try:
            body = await client.get_json(
                "/v1/calendar",
                params={"start": start.isoformat(), "end": end.isoformat()},
                headers=service_headers(self.internal_secret, "execution"),
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
