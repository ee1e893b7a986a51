from datetime import date
from decimal import Decimal

import pytest

from shared.core.domain import Board
from shared.core.market import (
    buy_qty_error,
    is_trading_day,
    limit_prices,
    price_limit_ratio,
    sell_qty_error,
    sse_trading_days,
    stamp_duty_rate,
    trade_fees,
)

D = Decimal
DAY = date(2024, 3, 1)


@pytest.mark.parametrize(
    ("board", "is_st", "pre_close", "up", "down"),
    [
        (Board.MAIN, False, D("10.00"), D("11.00"), D("9.00")),
        (Board.MAIN, True, D("10.00"), D("10.50"), D("9.50")),
        # 12.35 * 1.1 = 13.585 -> 13.59 (half up); 12.35 * 0.9 = 11.115 -> 11.12
        (Board.MAIN, False, D("12.35"), D("13.59"), D("11.12")),
        (Board.STAR, False, D("50.00"), D("60.00"), D("40.00")),
        (Board.CHINEXT, True, D("8.88"), D("10.66"), D("7.10")),  # 10.656 -> 10.66, 7.104 -> 7.10
        (Board.BSE, False, D("20.00"), D("26.00"), D("14.00")),
    ],
)
def test_limit_prices(board: Board, is_st: bool, pre_close: Decimal, up: Decimal, down: Decimal) -> None:
    assert limit_prices(pre_close, price_limit_ratio(board, DAY, is_st=is_st)) == (up, down)


def test_chinext_was_10_percent_before_the_reform() -> None:
    assert price_limit_ratio(Board.CHINEXT, date(2020, 8, 21)) == (D("0.10"), D("0.10"))
    assert price_limit_ratio(Board.CHINEXT, date(2020, 8, 24)) == (D("0.20"), D("0.20"))
    assert price_limit_ratio(Board.CHINEXT, date(2019, 6, 3), listing_day=1) == (D("0.44"), D("0.36"))
    assert price_limit_ratio(Board.CHINEXT, date(2019, 6, 4), listing_day=2) == (D("0.10"), D("0.10"))


def test_new_listings_trade_without_limits() -> None:
    assert price_limit_ratio(Board.STAR, DAY, listing_day=5) is None
    assert price_limit_ratio(Board.STAR, DAY, listing_day=6) == (D("0.20"), D("0.20"))
    assert price_limit_ratio(Board.MAIN, date(2023, 4, 10), listing_day=1) is None
    assert price_limit_ratio(Board.MAIN, date(2022, 6, 1), listing_day=1) == (D("0.44"), D("0.36"))
    assert price_limit_ratio(Board.BSE, DAY, listing_day=1) is None
    assert limit_prices(D("10.00"), None) is None


def test_lots() -> None:
    assert buy_qty_error(Board.MAIN, 100) is None
    assert buy_qty_error(Board.MAIN, 150) is not None
    assert buy_qty_error(Board.MAIN, 0) is not None
    assert buy_qty_error(Board.STAR, 199) is not None
    assert buy_qty_error(Board.STAR, 201) is None
    assert buy_qty_error(Board.BSE, 101) is None
    # Odd lots only when selling the whole position
    assert sell_qty_error(Board.MAIN, 50, position_qty=150) is not None
    assert sell_qty_error(Board.MAIN, 150, position_qty=150) is None
    assert sell_qty_error(Board.MAIN, 100, position_qty=150) is None
    assert sell_qty_error(Board.MAIN, 200, position_qty=150) is not None


def test_stamp_duty_switches_on_2023_08_28() -> None:
    assert stamp_duty_rate(date(2023, 8, 25)) == D("0.001")
    assert stamp_duty_rate(date(2023, 8, 28)) == D("0.0005")


def test_fees_by_hand() -> None:
    # Buy 1,000 shares at 10.00 = 10,000 CNY: commission 10,000 * 0.025% = 2.50 -> minimum 5.00;
    # transfer fee 10,000 * 0.001% = 0.10; no stamp duty on buys.
    buy = trade_fees(D("10000"), is_sell=False, trade_date=DAY)
    assert (buy.commission, buy.stamp_duty, buy.transfer_fee, buy.total) == (D("5"), D("0"), D("0.10"), D("5.10"))
    # Sell 100,000 CNY on 2023-08-25: commission 25.00, stamp duty 0.1% = 100.00, transfer 1.00.
    sell = trade_fees(D("100000"), is_sell=True, trade_date=date(2023, 8, 25))
    assert (sell.commission, sell.stamp_duty, sell.transfer_fee) == (D("25.00"), D("100.00"), D("1.00"))
    # Half-fen amount: 12,345 CNY sold on 2024-03-01: stamp 0.05% = 6.1725 -> 6.17; transfer 0.12345 -> 0.12;
    # commission 3.08625 -> minimum 5.00.
    odd = trade_fees(D("12345"), is_sell=True, trade_date=DAY)
    assert (odd.commission, odd.stamp_duty, odd.transfer_fee) == (D("5.00"), D("6.17"), D("0.12"))
    # Exactly half a fen rounds up: 9,010 * 0.05% = 4.505 -> 4.51.
    assert trade_fees(D("9010"), is_sell=True, trade_date=DAY).stamp_duty == D("4.51")


def test_calendar_is_the_exchange_calendar_not_weekdays() -> None:
    assert not is_trading_day(date(2024, 2, 9))  # a Friday: Spring Festival closure
    assert not is_trading_day(date(2024, 10, 7))  # a Monday in the National Day week
    assert is_trading_day(date(2024, 10, 8))
    assert not is_trading_day(date(2024, 2, 4))  # Sunday (make-up workday, but the exchange stays closed)
    # 2023 and 2024 each had 242 trading days (SSE annual statistics).
    assert len(sse_trading_days(date(2023, 1, 1), date(2023, 12, 31))) == 242
    assert len(sse_trading_days(date(2024, 1, 1), date(2024, 12, 31))) == 242
    with pytest.raises(ValueError):
        is_trading_day(date(2030, 1, 2))


def test_no_price_limits_before_1996_12_16() -> None:
    # The 10% daily limit started on 1996-12-16 on both exchanges; on 1996-12-13 (a Friday) there was none.
    assert price_limit_ratio(Board.MAIN, date(1995, 6, 1)) is None
    assert price_limit_ratio(Board.MAIN, date(1996, 12, 13), is_st=True) is None
    assert price_limit_ratio(Board.MAIN, date(1996, 12, 16)) == (D("0.10"), D("0.10"))
    assert limit_prices(D("10.00"), price_limit_ratio(Board.MAIN, date(1996, 12, 13))) is None
