"""Positions from trades and open sells, T+1 by the session (its start: the exchange date in Shanghai, or on the real
clock the close of the trading day before it), worked by hand."""

from datetime import UTC, date, datetime

from services.execution.positions import OpenSell, TradeLot, holdings
from shared.core.domain import OrderSide
from shared.core.market.orders import Holding

TODAY = date(2025, 1, 3)  # a Friday; "yesterday" below is Thursday 2025-01-02
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 1, day, hour, minute, tzinfo=UTC)


def _lot(side: OrderSide, qty: int, at: datetime, ts_code: str = "600000.SH") -> TradeLot:
    return TradeLot(ts_code, side, qty, at)


def test_bought_yesterday_and_today_sold_today() -> None:
    # 1,000 bought yesterday (sellable), 500 bought today (not until Monday), 300 sold today out of yesterday's:
    # held 1,000 + 500 - 300 = 1,200; sellable 1,000 - 300 = 700.
    lots = [_lot(BUY, 1000, _at(2, 6)), _lot(BUY, 500, _at(3, 2)), _lot(SELL, 300, _at(3, 3))]
    assert holdings(lots, [], today=TODAY) == [Holding(ts_code="600000.SH", qty=1200, sellable_qty=700)]


def test_bought_today_only_is_held_but_not_sellable() -> None:
    assert holdings([_lot(BUY, 1000, _at(3, 1, 30))], [], today=TODAY) == [
        Holding(ts_code="600000.SH", qty=1000, sellable_qty=0)
    ]


def test_the_day_is_the_exchange_date_in_shanghai() -> None:
    # 2025-01-02 15:59 UTC is 23:59 on the 2nd in Shanghai (yesterday: sellable);
    # 2025-01-02 16:30 UTC is 00:30 on the 3rd in Shanghai (today: not sellable).
    lots = [_lot(BUY, 100, _at(2, 15, 59)), _lot(BUY, 200, _at(2, 16, 30))]
    assert holdings(lots, [], today=TODAY) == [Holding(ts_code="600000.SH", qty=300, sellable_qty=100)]


def test_open_sells_reserve_their_unfilled_shares() -> None:
    # 1,000 from yesterday; a sell of 400 filled 100 so far (the trade) and rests with 300 (reserved); another
    # resting sell of 200: held 1,000 - 100 = 900, sellable 1,000 - 100 - 300 - 200 = 400.
    lots = [_lot(BUY, 1000, _at(2, 6)), _lot(SELL, 100, _at(3, 2))]
    sells = [OpenSell("600000.SH", 300), OpenSell("600000.SH", 200)]
    assert holdings(lots, sells, today=TODAY) == [Holding(ts_code="600000.SH", qty=900, sellable_qty=400)]


def test_reservations_never_make_sellable_negative() -> None:
    lots = [_lot(BUY, 500, _at(2, 6)), _lot(BUY, 500, _at(3, 2))]
    assert holdings(lots, [OpenSell("600000.SH", 500)], today=TODAY) == [
        Holding(ts_code="600000.SH", qty=1000, sellable_qty=0)
    ]


def test_closed_positions_are_left_out_and_codes_are_sorted() -> None:
    lots = [
        _lot(BUY, 500, _at(1, 6), "600000.SH"),
        _lot(SELL, 500, _at(2, 6), "600000.SH"),  # closed
        _lot(BUY, 150, _at(1, 6), "688981.SH"),
        _lot(BUY, 200, _at(2, 6), "000001.SZ"),
    ]
    assert holdings(lots, [], today=TODAY) == [
        Holding(ts_code="000001.SZ", qty=200, sellable_qty=200),
        Holding(ts_code="688981.SH", qty=150, sellable_qty=150),
    ]


def test_no_trades_no_positions() -> None:
    assert holdings([], [], today=TODAY) == []


def test_on_the_real_clock_a_session_begins_after_the_close_before_it() -> None:
    # The session of an order placed after Thursday 2025-01-02's close is Friday's: it began at 15:00 Shanghai on
    # Thursday (07:00 UTC). Bought at that close (a close fill, 15:00:00): Thursday's, sellable on Friday; bought
    # after it (20:00 Thursday: an order of Friday's session, filled at once): Friday's, not sellable until Monday.
    close = datetime(2025, 1, 2, 7, 0, tzinfo=UTC)
    lots = [_lot(BUY, 100, close), _lot(BUY, 200, _at(2, 12))]
    assert holdings(lots, [], today=TODAY, opens_after=close) == [
        Holding(ts_code="600000.SH", qty=300, sellable_qty=100)
    ]
    # by calendar date (a replayed session, or no calendar), both are Thursday's
    assert holdings(lots, [], today=TODAY) == [Holding(ts_code="600000.SH", qty=300, sellable_qty=300)]
