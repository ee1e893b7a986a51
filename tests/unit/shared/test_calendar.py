"""The built-in SSE calendar: read from its data file, through 2026 (the last year the exchanges have published)."""

from __future__ import annotations

from datetime import date

import pytest

from shared.core.market.calendar import (
    FIRST_YEAR,
    LAST_YEAR,
    CalendarFileError,
    is_trading_day,
    parse_holidays,
    sse_trading_days,
)


def test_2026_is_covered_with_the_state_council_holidays() -> None:
    assert (FIRST_YEAR, LAST_YEAR) == (2022, 2026)
    # 国办发明电 2025-11-04, weekdays only (the exchange is closed on weekends, make-up workdays included):
    # New Year Jan 1-3 -> Thu 1, Fri 2; Spring Festival Feb 15-23 -> Mon 16 .. Fri 20, Mon 23; Qingming Apr 4-6 ->
    # Mon 6; Labour Day May 1-5 -> Fri 1, Mon 4, Tue 5; Dragon Boat Jun 19-21 -> Fri 19; Mid-Autumn Sep 25-27 ->
    # Fri 25; National Day Oct 1-7 -> Thu 1, Fri 2, Mon 5 .. Wed 7. 19 closed weekdays.
    # 2026 starts on a Thursday and has 365 days: 52 whole weeks (260 weekdays) + Thu 31 Dec = 261 weekdays.
    assert len(sse_trading_days(date(2026, 1, 1), date(2026, 12, 31))) == 261 - 19 == 242
    closed = [date(2026, 1, 1), date(2026, 2, 16), date(2026, 2, 23), date(2026, 4, 6), date(2026, 5, 5),
              date(2026, 6, 19), date(2026, 9, 25), date(2026, 10, 7)]  # fmt: skip
    assert not any(is_trading_day(d) for d in closed)
    assert not is_trading_day(date(2026, 2, 14))  # a Saturday make-up workday: the exchange stays closed
    assert not is_trading_day(date(2026, 10, 10))  # likewise
    opened = [date(2026, 1, 5), date(2026, 2, 13), date(2026, 2, 24), date(2026, 4, 7), date(2026, 5, 6),
              date(2026, 9, 28), date(2026, 10, 8), date(2026, 12, 4), date(2026, 12, 31)]  # fmt: skip
    assert all(is_trading_day(d) for d in opened)
    # 2025 (243, SSE statistics) still as before the move to the data file.
    assert len(sse_trading_days(date(2025, 1, 1), date(2025, 12, 31))) == 243
    with pytest.raises(ValueError, match="covers 2022-2026"):
        is_trading_day(date(2027, 1, 4))


def test_the_holidays_file_is_checked_when_read() -> None:
    assert parse_holidays("cal_date,holiday\n2027-01-01,New Year's Day\n") == {2027: (date(2027, 1, 1),)}
    with pytest.raises(CalendarFileError, match="line 2: 2027-01-02 is a weekend day"):
        parse_holidays("cal_date,holiday\n2027-01-02,x\n")
    with pytest.raises(CalendarFileError, match="line 3: '2027-13-01' is not a date"):
        parse_holidays("cal_date,holiday\n2027-01-01,x\n2027-13-01,x\n")
    with pytest.raises(CalendarFileError, match="no closed days for 2028"):
        parse_holidays("cal_date,holiday\n2027-01-01,x\n2029-01-01,x\n")
    with pytest.raises(CalendarFileError, match="listed twice"):
        parse_holidays("cal_date,holiday\n2027-01-01,x\n2027-01-01,x\n")
