"""The session an order placed at a moment belongs to (`shared.platform.clock.order_session`: the first trading day
whose 15:00 close, Asia/Shanghai, is after it), its T+1 boundary, and `OrderSessions`, which keeps the calendar's
trading days in memory for the order path. The trading days are written out by hand (SSE 2024: National Day closed
2024-10-01 to 2024-10-07, a Tuesday to a Monday; weekends closed)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.platform.calendar import CalendarUnavailable, OrderSessions
from shared.platform.clock import OrderSession, order_session, order_session_after, session_close

SH = ZoneInfo("Asia/Shanghai")
# 2024-02-29 (Thu) to 2024-03-05 (Tue): the weekend 03-02/03-03 is closed
MARCH = [date(2024, 2, 29), date(2024, 3, 1), date(2024, 3, 4), date(2024, 3, 5)]
# around National Day 2024: Monday 09-30 is the last session before it, Tuesday 10-08 the first after it
HOLIDAY = [date(2024, 9, 27), date(2024, 9, 30), date(2024, 10, 8), date(2024, 10, 9)]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


@pytest.mark.parametrize(
    ("moment", "days", "expected"),
    [
        ("2024-03-04T14:59:59", MARCH, date(2024, 3, 4)),  # during the session: that session
        ("2024-03-04T14:59:59.999999", MARCH, date(2024, 3, 4)),
        ("2024-03-04T15:00:00", MARCH, date(2024, 3, 5)),  # from the close on: the next trading day
        ("2024-03-04T08:00:00", MARCH, date(2024, 3, 4)),  # before the open: that day's session
        ("2024-03-01T20:00:00", MARCH, date(2024, 3, 4)),  # a Friday evening: the Monday
        ("2024-03-02T11:00:00", MARCH, date(2024, 3, 4)),  # a Saturday: the Monday
        ("2024-03-03T23:59:59", MARCH, date(2024, 3, 4)),
        ("2024-09-30T15:00:00", HOLIDAY, date(2024, 10, 8)),  # the day before a holiday, after its close
        ("2024-09-30T14:00:00", HOLIDAY, date(2024, 9, 30)),
        ("2024-10-03T10:00:00", HOLIDAY, date(2024, 10, 8)),  # during the holiday
        ("2024-03-05T15:00:00", MARCH, None),  # no trading day ahead in the days known
        ("2024-03-04T10:00:00", [], None),
        ("2024-03-02T11:00:00", list(reversed(MARCH)), date(2024, 3, 4)),  # the days in any order
    ],
)
def test_an_order_belongs_to_the_first_session_whose_close_is_after_it(
    moment: str, days: list[date], expected: date | None
) -> None:
    assert order_session(at(moment), days) == expected
    # the same instant in another zone is the same order
    assert order_session(at(moment).astimezone(ZoneInfo("UTC")), days) == expected


def test_the_t_plus_1_boundary_is_the_close_of_the_trading_day_before_the_session() -> None:
    # a Saturday order is for Monday 03-04; shares traded after Friday 03-01's 15:00 close are Monday's own
    assert order_session_after(at("2024-03-02T11:00:00"), MARCH) == OrderSession(
        date(2024, 3, 4), datetime(2024, 3, 1, 15, 0, tzinfo=SH), date(2024, 3, 1)
    )
    # after Monday's close: Tuesday's session, which began after Monday's close
    assert order_session_after(at("2024-03-04T15:00:00"), MARCH) == OrderSession(
        date(2024, 3, 5), datetime(2024, 3, 4, 15, 0, tzinfo=SH), date(2024, 3, 4)
    )
    # the first day known has no day before it: its own midnight, a microsecond before
    first = order_session_after(at("2024-02-29T10:00:00"), MARCH)
    assert first == OrderSession(date(2024, 2, 29), datetime(2024, 2, 29, tzinfo=SH) - timedelta(microseconds=1))
    assert order_session_after(at("2024-03-05T16:00:00"), MARCH) is None
    assert session_close(date(2024, 3, 4)) == datetime(2024, 3, 4, 15, 0, tzinfo=SH)


class Calendar:
    """A trade calendar that counts its reads and can fail."""

    def __init__(self, days: list[date]) -> None:
        self.days = days
        self.reads: list[tuple[date, date]] = []
        self.down = False

    async def trading_days(self, start: date, end: date) -> list[date]:
        if self.down:
            raise CalendarUnavailable("the data service answered 503 (test)")
        self.reads.append((start, end))
        return [d for d in self.days if start <= d <= end]


async def test_the_days_are_read_once_a_day_and_again_on_a_miss() -> None:
    calendar = Calendar(MARCH)
    sessions = OrderSessions(calendar)
    first = await sessions.session_of(at("2024-03-01T10:00:00"))
    assert first is not None and first.day == date(2024, 3, 1)
    again = await sessions.session_of(at("2024-03-01T20:00:00"))  # same day: no read
    assert again is not None and (again.day, again.previous) == (date(2024, 3, 4), date(2024, 3, 1))
    assert calendar.reads == [(date(2024, 1, 31), date(2024, 3, 31))]
    await sessions.session_of(at("2024-03-02T10:00:00"))  # a new day: read again
    assert len(calendar.reads) == 2
    # after the last day known: a miss is read again (the calendar may have been imported since)
    calendar.days = [*MARCH, date(2024, 3, 6)]
    late = await sessions.session_of(at("2024-03-02T10:00:00").replace(day=5, hour=16))
    assert late is not None and late.day == date(2024, 3, 6)
    assert len(calendar.reads) == 3


async def test_without_the_calendar_the_days_kept_answer_or_it_fails_closed() -> None:
    calendar = Calendar(MARCH)
    sessions = OrderSessions(calendar)
    calendar.down = True
    with pytest.raises(CalendarUnavailable):  # nothing kept: no guess
        await sessions.session_of(at("2024-03-01T10:00:00"))
    calendar.down = False
    assert (await sessions.session_of(at("2024-03-01T10:00:00"))) is not None
    calendar.down = True
    # the next day the read fails, but the days kept hold the session and the one before it
    kept = await sessions.session_of(at("2024-03-02T10:00:00"))
    assert kept is not None and (kept.day, kept.previous) == (date(2024, 3, 4), date(2024, 3, 1))
    # beyond them it cannot tell
    with pytest.raises(CalendarUnavailable):
        await sessions.session_of(at("2024-03-05T16:00:00"))
