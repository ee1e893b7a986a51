"""The SSE trading calendar built in for offline use (demo data, tests, the scheduler's fallback).

The closures come from a data file, `shared/core/market/data/sse_holidays.csv` (`cal_date,holiday`: every weekday the
exchange was closed, from its annual holiday notices, 上交所 休市安排), so a new year's notice is a new line per
closed weekday and no code change. The years the file covers are the years it lists (a year without a closed weekday
does not happen); weekends are always closed, make-up workdays (调休 on a Saturday or Sunday) included. The data
service stores Tushare's trade_cal (`backfill`, `import-calendar`) and that stored calendar wins wherever it has the
day; this one is the fallback.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from functools import lru_cache
from importlib import resources

HOLIDAYS_FILE = "sse_holidays.csv"


class CalendarFileError(ValueError):
    """The shipped holidays file is malformed (a line that is not a weekday date, a gap of a whole year)."""


def parse_holidays(text: str) -> dict[int, tuple[date, ...]]:
    """`cal_date,holiday` lines (YYYY-MM-DD) -> the closed weekdays per year; refuses weekends, duplicates and gaps
    (a year missing between the first and the last would silently read as 'open every weekday')."""
    by_year: dict[int, list[date]] = {}
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "cal_date" not in reader.fieldnames:
        raise CalendarFileError(f"{HOLIDAYS_FILE}: expected a header line with cal_date")
    for line, row in enumerate(reader, start=2):
        raw = (row.get("cal_date") or "").strip()
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise CalendarFileError(f"{HOLIDAYS_FILE} line {line}: {raw!r} is not a date (YYYY-MM-DD)") from None
        if day.weekday() >= 5:
            raise CalendarFileError(f"{HOLIDAYS_FILE} line {line}: {day} is a weekend day (list closed weekdays)")
        days = by_year.setdefault(day.year, [])
        if day in days:
            raise CalendarFileError(f"{HOLIDAYS_FILE} line {line}: {day} is listed twice")
        days.append(day)
    if not by_year:
        raise CalendarFileError(f"{HOLIDAYS_FILE}: no closed days listed")
    missing = [y for y in range(min(by_year), max(by_year) + 1) if y not in by_year]
    if missing:
        raise CalendarFileError(f"{HOLIDAYS_FILE}: no closed days for {', '.join(map(str, missing))}")
    return {year: tuple(sorted(days)) for year, days in sorted(by_year.items())}


def _load() -> dict[int, tuple[date, ...]]:
    text = resources.files("shared.core.market").joinpath("data", HOLIDAYS_FILE).read_text(encoding="utf-8")
    return parse_holidays(text)


# Weekdays on which the SSE was closed, per year, as the data file lists them.
SSE_CLOSED_WEEKDAYS: dict[int, tuple[date, ...]] = _load()

FIRST_YEAR = min(SSE_CLOSED_WEEKDAYS)
LAST_YEAR = max(SSE_CLOSED_WEEKDAYS)


@lru_cache(maxsize=1)
def _closed() -> frozenset[date]:
    return frozenset(d for days in SSE_CLOSED_WEEKDAYS.values() for d in days)


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
