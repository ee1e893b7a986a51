"""Which trading day's close has passed: the day orders placed before it expire (Asia/Shanghai, 15:00)."""

from datetime import UTC, date, datetime

from services.execution.sessions import expiry_reason, last_close
from shared.core.market.calendar import sse_trading_days
from shared.platform.clock import session_close

# 2024-12-30 (Mon), 2024-12-31 (Tue); 2025-01-01 is a holiday; 2025-01-02 (Thu), 2025-01-03 (Fri).
DAYS = sse_trading_days(date(2024, 12, 30), date(2025, 1, 3))


def test_the_session_closes_at_15_00_in_shanghai() -> None:
    assert [date(2024, 12, 30), date(2024, 12, 31), date(2025, 1, 2), date(2025, 1, 3)] == DAYS
    assert session_close(date(2025, 1, 2)) == datetime(2025, 1, 2, 7, 0, tzinfo=UTC)


def test_the_last_close_that_has_passed() -> None:
    assert last_close(DAYS, datetime(2025, 1, 2, 6, 59, 59, tzinfo=UTC)) == date(2024, 12, 31)  # 14:59:59
    assert last_close(DAYS, datetime(2025, 1, 2, 7, 0, tzinfo=UTC)) == date(2025, 1, 2)  # 15:00
    # The holiday, 16:00 in Shanghai: the last close is still the 31st's.
    assert last_close(DAYS, datetime(2025, 1, 1, 8, 0, tzinfo=UTC)) == date(2024, 12, 31)
    # Saturday 2025-01-04, 00:30 in Shanghai (still Friday in UTC): Friday's close.
    assert last_close(DAYS, datetime(2025, 1, 3, 16, 30, tzinfo=UTC)) == date(2025, 1, 3)
    assert last_close(DAYS, datetime(2024, 12, 30, 6, 0, tzinfo=UTC)) is None  # before the first close
    assert last_close([], datetime(2025, 1, 2, 8, 0, tzinfo=UTC)) is None


def test_the_reason_names_the_session() -> None:
    assert expiry_reason(date(2025, 1, 2)) == (
        "expired: a day order still open at the close of 2025-01-02 (15:00 Asia/Shanghai)"
    )
