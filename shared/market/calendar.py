"""The SSE trading calendar built in for offline use (demo data, tests). Closures are the exchange's published
holiday notices; the data service stores Tushare's trade_cal and prefers it where it has one."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

# Weekdays on which the SSE was closed, from its annual holiday notices (上交所 休市安排).
SSE_CLOSED_WEEKDAYS: dict[int, tuple[str, ...]] = {
    2022: (
        "2022-01-03", "2022-01-31", "2022-02-01", "2022-02-02", "2022-02-03", "2022-02-04",
        "2022-04-04", "2022-04-05", "2022-05-02", "2022-05-03", "2022-05-04", "2022-06-03",
        "2022-09-12", "2022-10-03", "2022-10-04", "2022-10-05", "2022-10-06", "2022-10-07",
    ),
    2023: (
        "2023-01-02", "2023-01-23", "2023-01-24", "2023-01-25", "2023-01-26", "2023-01-27",
        "2023-04-05", "2023-05-01", "2023-05-02", "2023-05-03", "2023-06-22", "2023-06-23",
        "2023-09-29", "2023-10-02", "2023-10-03", "2023-10-04", "2023-10-05", "2023-10-06",
    ),
    2024: (
        "2024-01-01", "2024-02-09", "2024-02-12", "2024-02-13", "2024-02-14", "2024-02-15",
        "2024-02-16", "2024-04-04", "2024-04-05", "2024-05-01", "2024-05-02", "2024-05-03",
        "2024-06-10", "2024-09-16", "2024-09-17", "2024-10-01", "2024-10-02", "2024-10-03",
        "2024-10-04", "2024-10-07",
    ),
    2025: (
        "2025-01-01", "2025-01-28", "2025-01-29", "2025-01-30", "2025-01-31", "2025-02-03",
        "2025-02-04", "2025-04-04", "2025-05-01", "2025-05-02", "2025-05-05", "2025-06-02",
        "2025-10-01", "2025-10-02", "2025-10-03", "2025-10-06", "2025-10-07", "2025-10-08",
    ),
}  # fmt: skip

FIRST_YEAR = min(SSE_CLOSED_WEEKDAYS)
LAST_YEAR = max(SSE_CLOSED_WEEKDAYS)


@lru_cache(maxsize=1)
def _closed() -> frozenset[date]:
    return frozenset(date.fromisoformat(d) for days in SSE_CLOSED_WEEKDAYS.values() for d in days)


def _check_covered(day: date) -> None:
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ValueError(
            f"the built-in SSE calendar covers {FIRST_YEAR}-{LAST_YEAR}; {day} needs the stored trade calendar"
        )


def is_trading_day(day: date) -> bool:
    _check_covered(day)
    return day.weekday() < 5 and day not in _closed()


def sse_trading_days(start: date, end: date) -> list[date]:
    """Trading days in [start, end], in order."""
    _check_covered(start)
    _check_covered(end)
    days: list[date] = []
    day = start
    while day <= end:
        if day.weekday() < 5 and day not in _closed():
            days.append(day)
        day += timedelta(days=1)
    return days
