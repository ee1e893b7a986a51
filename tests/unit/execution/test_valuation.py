"""Positions valued and the account summed up, worked by hand (services/execution/valuation.py): average cost with
fees in, realised P&L on sells (T+1: a session's sells before its buys), unrealised P&L at the price, P&L today from
the reference price, frozen and today's quantities, bonus shares at no cost."""

from datetime import date, datetime
from decimal import Decimal

from services.execution.valuation import (
    LAST_CLOSE,
    LIVE,
    CostedAdjustment,
    CostedTrade,
    Price,
    books,
    codes_to_price,
    summarise,
    value_position,
)
from shared.core.domain import OrderSide
from shared.core.market.orders import Holding
from shared.platform.clock import EXCHANGE_TZ

TODAY = date(2026, 12, 7)  # a Monday
BUY, SELL = OrderSide.BUY, OrderSide.SELL
A, B = "600000.SH", "000001.SZ"


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=EXCHANGE_TZ)


def _trade(code: str, side: OrderSide, qty: int, amount_fen: int, fees_fen: int, at: datetime) -> CostedTrade:
    return CostedTrade(code, side, qty, amount_fen, fees_fen, at)


def _live(price: str, pre_close: str) -> Price:
    return Price(Decimal(price), LIVE, _at(7, 10, 30), Decimal(pre_close))


TRADES = [
    _trade(A, BUY, 1000, 1000000, 500, _at(3, 10)),  # 10.00, fees 5.00: cost 10,005.00
    _trade(A, BUY, 500, 550000, 500, _at(4, 10)),  # 11.00, fees 5.00: cost 15,510.00 for 1,500
    _trade(A, BUY, 100, 121000, 500, _at(7, 9, 45)),  # today, before the sell by the clock: 12.10, fees 5.00
    _trade(A, SELL, 600, 720000, 860, _at(7, 10)),  # today: 12.00, fees 8.60
    _trade(B, BUY, 100, 100000, 500, _at(4, 10)),  # 10.00, fees 5.00
    _trade(B, SELL, 100, 200000, 500, _at(7, 11)),  # today, sold out at 20.00, fees 5.00
]


def test_average_cost_realised_and_today() -> None:
    got = books(TRADES, [], today=TODAY)
    a = got[A]
    # T+1: today's sell of 600 takes out the cost of 600 of the 1,500 held before today (the buy of 09:45 comes
    # after it): 1,551,000 x 600 / 1,500 = 620,400 fen; realised 720,000 - 860 - 620,400 = 98,740 (987.40)
    assert a.realised_fen == 98740
    # left: 930,600 for 900, then the buy: + 121,000 + 500 = 1,052,100 for 1,000
    assert (a.qty, a.cost_fen) == (1000, 1052100)
    assert (a.start_qty, a.today_buy_qty, a.today_sell_qty) == (1500, 100, 600)
    # today's cash: + 720,000 - 860 - 121,000 - 500 = 597,640
    assert a.today_cash_fen == 597640
    b = got[B]
    # 200,000 - 500 - 100,500 = 99,000 realised; nothing held or costed after
    assert (b.qty, b.cost_fen, b.realised_fen, b.start_qty) == (0, 0, 99000, 100)


def test_a_position_at_a_live_price() -> None:
    got = books(TRADES, [], today=TODAY)
    value = value_position(got[A], Holding(ts_code=A, qty=1000, sellable_qty=900), 200, _live("12.20", "11.80"), A)
    assert value.avg_cost == Decimal("10.5210")  # 10,521.00 / 1,000
    assert value.market_value_fen == 1220000  # 1,000 x 12.20
    assert value.unrealised_fen == 1220000 - 1052100  # 1,679.00
    # 1,220,000 - 1,500 x 11.80 + 597,640 = 47,640: by hand, 600 sold 0.20 over the pre_close (120.00) less 8.60
    # fees, 900 held up 0.40 (360.00), 100 bought at 12.10 now 12.20 (10.00) less 5.00 fees = 476.40
    assert value.pnl_today_fen == 47640
    assert (value.qty, value.sellable_qty, value.frozen_qty) == (1000, 900, 200)
    assert (value.today_buy_qty, value.today_sell_qty) == (100, 600)


def test_the_account_summary_counts_closed_and_sold_out_codes() -> None:
    got = books(TRADES, [], today=TODAY)
    assert codes_to_price(got) == [B, A]  # B: sold out today, still in P&L today
    prices = {A: _live("12.20", "11.80"), B: _live("20.10", "19.50")}
    summary = summarise(got, prices)
    assert summary.realised_fen == 98740 + 99000
    assert summary.market_value_fen == 1220000
    assert summary.unrealised_fen == 167900
    # B today: 0 - 100 x 19.50 + (200,000 - 500) = 4,500 (sold 0.50 over the pre_close, less 5.00 fees)
    assert summary.pnl_today_fen == 47640 + 4500
    missing = summarise(got, {A: prices[A]})
    assert missing.unpriced == [B]
    assert missing.market_value_fen is None and missing.pnl_today_fen is None
    assert missing.realised_fen == 197740


def test_at_the_last_close_nothing_moved_today_but_the_trades() -> None:
    trades = [_trade(A, BUY, 1000, 1000000, 500, _at(3, 10)), _trade(A, BUY, 100, 110000, 500, _at(7, 10))]
    got = books(trades, [], today=TODAY)
    close = Price(Decimal("10.50"), LAST_CLOSE, _at(4, 15), Decimal("10.50"))
    value = value_position(got[A], Holding(ts_code=A, qty=1100, sellable_qty=1000), 0, close, A)
    # 1,100 x 10.50 - 1,000 x 10.50 - (110,000 + 500) = 105,000 - 110,500 = -5,500: the buy at 11.00 marked at 10.50
    assert value.pnl_today_fen == -5500
    assert value.market_value_fen == 1155000 and value.unrealised_fen == 1155000 - 1000500 - 110500


def test_a_sell_rounds_the_cost_taken_out_half_up_and_keeps_the_rest_exact() -> None:
    trades = [
        _trade(A, BUY, 1000, 1000001, 500, _at(3, 10)),  # cost 1,000,501
        _trade(A, SELL, 333, 400000, 500, _at(4, 10)),
    ]
    got = books(trades, [], today=TODAY)[A]
    # 1,000,501 x 333 / 1,000 = 333,166.833 -> 333,167; left 667,334 for 667
    assert got.cost_fen == 1000501 - 333167
    assert got.realised_fen == 400000 - 500 - 333167
    sold_out = books([*trades, _trade(A, SELL, 667, 700000, 500, _at(7, 10))], [], today=TODAY)[A]
    assert (sold_out.qty, sold_out.cost_fen) == (0, 0)  # the last sell takes out what is left, to the fen
    assert sold_out.realised_fen == (400000 - 500 - 333167) + (700000 - 500 - 667334)


def test_bonus_shares_come_at_no_cost_and_cash_in_lieu_is_realised() -> None:
    trades = [_trade(A, BUY, 1000, 1000000, 500, _at(3, 10)), _trade(A, SELL, 500, 600000, 500, _at(7, 10))]
    # ex-date today: 10 for 10, 1,000 -> 2,000, and 3.00 cash in lieu; before today's sell (its session's start)
    adjustments = [CostedAdjustment(A, TODAY, 1000, 300)]
    got = books(trades, adjustments, today=TODAY)[A]
    # the sell takes out 1,000,500 x 500 / 2,000 = 250,125; realised 600,000 - 500 - 250,125 + 300 = 349,675
    assert got.start_qty == 2000
    assert (got.qty, got.cost_fen, got.realised_fen) == (1500, 1000500 - 250125, 349675)
    value = value_position(got, Holding(ts_code=A, qty=1500, sellable_qty=1500), 0, None, A)
    assert value.avg_cost == Decimal("5.0025")  # 750,375 / 1,500 = 500.25 fen
    assert value.market_value_fen is None and value.unrealised_fen is None and value.pnl_today_fen is None
