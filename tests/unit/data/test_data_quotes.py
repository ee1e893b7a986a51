"""Next-session limits of a quote, checked against limits worked out by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from services.data.quotes import listing_day_of, next_session_limits
from shared.core.domain.codes import Board

SESSION = date(2025, 1, 2)


def test_seasoned_limits_by_board() -> None:
    # 28.97 x 1.05 = 30.4185 -> 30.42; x 0.95 = 27.5215 -> 27.52
    st = next_session_limits(Board.MAIN, is_st=True, reference_fen=2897, session=SESSION, listing_day=None)
    assert st is not None and (st.limit_up, st.limit_down) == (Decimal("30.42"), Decimal("27.52"))
    # 10.05 x 1.1 = 11.055 -> 11.06 (half-up); x 0.9 = 9.045 -> 9.05
    main = next_session_limits(Board.MAIN, is_st=False, reference_fen=1005, session=SESSION, listing_day=None)
    assert main is not None and (main.limit_up, main.limit_down) == (Decimal("11.06"), Decimal("9.05"))
    # ChiNext, ST or not: 20%. 29.33 x 1.2 = 35.196 -> 35.20; x 0.8 = 23.464 -> 23.46
    gem = next_session_limits(Board.CHINEXT, is_st=True, reference_fen=2933, session=SESSION, listing_day=None)
    assert gem is not None and (gem.limit_up, gem.limit_down) == (Decimal("35.20"), Decimal("23.46"))
    # BSE 30%: 3.46 x 1.3 = 4.498 -> 4.50; x 0.7 = 2.422 -> 2.42
    bse = next_session_limits(Board.BSE, is_st=False, reference_fen=346, session=SESSION, listing_day=None)
    assert bse is not None and (bse.limit_up, bse.limit_down) == (Decimal("4.50"), Decimal("2.42"))


def test_a_limit_down_price_is_at_least_one_fen() -> None:
    cheap = next_session_limits(Board.MAIN, is_st=True, reference_fen=1, session=SESSION, listing_day=None)
    assert cheap is not None and cheap.limit_down == Decimal("0.01")


def test_new_listings_have_no_limits_in_their_first_days() -> None:
    assert listing_day_of(None) is None
    assert listing_day_of(3) == 3
    assert listing_day_of(6) is None  # seasoned from the sixth session
    assert next_session_limits(Board.STAR, is_st=False, reference_fen=5000, session=SESSION, listing_day=3) is None
    assert next_session_limits(Board.BSE, is_st=False, reference_fen=5000, session=SESSION, listing_day=2) is not None
