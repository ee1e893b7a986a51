"""Day orders: A-share orders live for one trading day. An order belongs to the session it was placed for (the
day it was placed, or the next trading day when placed after the close or on a closed day); what rests of it when
that session closes (15:00 Asia/Shanghai) expires. The trading days come from the data service's trade calendar."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from shared.platform.clock import session_close

__all__ = ["expiry_reason", "last_close"]


def last_close(trading_days: Iterable[date], now: datetime) -> date | None:
    """The latest trading day whose session had closed by `now`, or None."""
    closed = [d for d in trading_days if session_close(d) <= now]
    return max(closed) if closed else None


def expiry_reason(day: date) -> str:
    return f"expired: a day order still open at the close of {day.isoformat()} (15:00 Asia/Shanghai)"
