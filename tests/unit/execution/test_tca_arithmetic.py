"""Transaction cost analysis worked by hand (docs/tca.md): VWAPs, slippage signed as a cost for buys and sells, bps
rounded half-up to 2 places, summaries added in fen and divided once, and the market's interval of an order."""

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

from services.execution.tca import MinuteBarIn, bars_within, interval_of, market_vwap_fen
from shared.core.market.tca import (
    Bar,
    CostSummary,
    OrderCost,
    bps,
    cny_of_fen,
    interval_vwap_fen,
    round_half_up,
    summarise,
    vwap_fen,
)
from shared.platform.clock import EXCHANGE_TZ


def test_round_half_up_goes_away_from_zero_on_a_tie() -> None:
    assert round_half_up(Fraction(1, 8), 2) == Decimal("0.13")  # 0.125
    assert round_half_up(Fraction(-1, 8), 2) == Decimal("-0.13")
    assert round_half_up(Fraction(1, 3), 2) == Decimal("0.33")
    assert round_half_up(Fraction(2, 3), 4) == Decimal("0.6667")
    assert round_half_up(Fraction(0), 2) == Decimal("0.00")


def test_fill_vwap_of_two_fills() -> None:
    # 300 at 10.00 and 200 at 10.05: (3000.00 + 2010.00) / 500 = 10.02
    cost = OrderCost(is_buy=True, filled_qty=500, filled_amount_fen=501000, fees_fen=500, arrival_fen=Fraction(1000))
    assert cost.fill_vwap_fen == Fraction(1002)
    assert cny_of_fen(cost.fill_vwap_fen) == Decimal("10.0200")


def test_a_buy_above_arrival_is_a_positive_cost() -> None:
    # arrival 10.00, 500 filled for 5,010.00 (VWAP 10.02): cost 5,010.00 - 10.00 x 500 = 10.00 CNY
    # bps = 1,000 fen / 500,000 fen x 10,000 = 20.00
    cost = OrderCost(is_buy=True, filled_qty=500, filled_amount_fen=501000, fees_fen=500, arrival_fen=Fraction(1000))
    assert cost.arrival == (Fraction(1000), Fraction(500000))
    assert cost.arrival_bps == Decimal("20.00")
    # fees 5.00 on 5,010.00: 500 / 501,000 x 10,000 = 9.98003... -> 9.98
    assert cost.fees_bps == Decimal("9.98")


def test_a_sell_below_arrival_is_a_positive_cost_and_above_it_negative() -> None:
    # sell 1,000 at VWAP 9.97 against arrival 10.00: received 30.00 less -> +30.00 CNY, 30 / 10,000 x 10,000 = 30.00
    worse = OrderCost(is_buy=False, filled_qty=1000, filled_amount_fen=997000, fees_fen=0, arrival_fen=Fraction(1000))
    assert worse.arrival == (Fraction(3000), Fraction(1000000))
    assert worse.arrival_bps == Decimal("30.00")
    # the same sell at 10.03: 30.00 better -> -30.00 bps
    better = OrderCost(is_buy=False, filled_qty=1000, filled_amount_fen=1003000, fees_fen=0, arrival_fen=Fraction(1000))
    assert better.arrival_bps == Decimal("-30.00")
    # a buy below arrival is negative too: 1,000 at 9.99 against 10.00 -> -10.00 bps
    cheap = OrderCost(is_buy=True, filled_qty=1000, filled_amount_fen=999000, fees_fen=0, arrival_fen=Fraction(1000))
    assert cheap.arrival_bps == Decimal("-10.00")


def test_bps_are_rounded_half_up_to_two_places() -> None:
    # 1 fen over 30,000 fen: 0.3333... bps -> 0.33; 1 over 80,000: 0.125 -> 0.13; -0.125 -> -0.13
    assert bps(1, 30000) == Decimal("0.33")
    assert bps(1, 80000) == Decimal("0.13")
    assert bps(-1, 80000) == Decimal("-0.13")
    assert bps(5, 0) is None
    # a buy of 300 at VWAP 12.3467 (3,704.00 / 300) against arrival 12.34: cost 3,704.00 - 3,702.00 = 2.00 CNY,
    # 200 / 370,200 x 10,000 = 5.40248... -> 5.40
    odd = OrderCost(is_buy=True, filled_qty=300, filled_amount_fen=370400, fees_fen=0, arrival_fen=Fraction(1234))
    assert cny_of_fen(odd.fill_vwap_fen or Fraction(0)) == Decimal("12.3467")
    assert odd.arrival_bps == Decimal("5.40")


def test_no_fills_or_no_arrival_has_no_slippage() -> None:
    unfilled = OrderCost(is_buy=True, filled_qty=0, filled_amount_fen=0, fees_fen=0, arrival_fen=Fraction(1000))
    assert unfilled.arrival is None and unfilled.arrival_bps is None and unfilled.fees_bps is None
    assert unfilled.fill_vwap_fen is None
    no_arrival = OrderCost(is_buy=True, filled_qty=100, filled_amount_fen=100000, fees_fen=500, arrival_fen=None)
    assert no_arrival.arrival_bps is None and no_arrival.fees_bps == Decimal("50.00")


def test_interval_vwap_of_minute_bars_takes_fractions_of_a_fen() -> None:
    # 1,000 shares for 10,000.00 and 3,000 for 30,150.505 (a feed's amount): 40,150.505 / 4,000 = 10.03762625
    bars = [Bar(1000, Fraction(1000000)), Bar(3000, Fraction(3015050.5))]
    got = interval_vwap_fen(bars)
    assert got == Fraction(40150505, 40000)  # fen a share: 1,003.762625
    assert cny_of_fen(got or Fraction(0)) == Decimal("10.0376")
    assert interval_vwap_fen([Bar(0, Fraction(0))]) is None
    assert vwap_fen(0, 0) is None


def test_slippage_against_the_interval_vwap() -> None:
    # a buy of 1,000 at VWAP 10.05 while the market traded at 10.03762625: cost 10,050.00 - 10,037.62625 = 12.37375
    # CNY, bps = 1,237.375 / 1,003,762.625 x 10,000 = 12.3273... -> 12.33
    cost = OrderCost(is_buy=True, filled_qty=1000, filled_amount_fen=1005000, fees_fen=0, arrival_fen=None,
                     interval_vwap_fen=Fraction(40150505, 40000))  # fmt: skip
    assert cost.interval is not None
    assert cny_of_fen(cost.interval[0], 2) == Decimal("12.37")
    assert cost.interval_bps == Decimal("12.33")


def test_a_summary_weights_by_notional_and_divides_once() -> None:
    # order A: buy 1,000, arrival 10.00, VWAP 10.02 -> +20.00 CNY on 10,000.00 (20 bps), fees 5.00 on 10,020.00
    # order B: sell 100, arrival 50.00, VWAP 49.50 -> +50.00 CNY on 5,000.00 (100 bps), fees 5.00 on 4,950.00
    # together: 70.00 / 15,000.00 x 10,000 = 46.666... -> 46.67 (not the mean of 20 and 100, 60)
    # fees: 10.00 / 14,970.00 x 10,000 = 6.680026... -> 6.68
    a = OrderCost(is_buy=True, filled_qty=1000, filled_amount_fen=1002000, fees_fen=500, arrival_fen=Fraction(1000))
    b = OrderCost(is_buy=False, filled_qty=100, filled_amount_fen=495000, fees_fen=500, arrival_fen=Fraction(5000))
    c = OrderCost(is_buy=True, filled_qty=100, filled_amount_fen=100000, fees_fen=500, arrival_fen=None)
    total = CostSummary().add(a).add(b)
    assert (a.arrival_bps, b.arrival_bps) == (Decimal("20.00"), Decimal("100.00"))
    assert total.arrival_bps == Decimal("46.67")
    assert total.fees_bps == Decimal("6.68")
    groups = summarise([("2026-12-04", a), ("2026-12-03", b), ("2026-12-04", c)])
    assert list(groups) == ["2026-12-03", "2026-12-04"]
    day = groups["2026-12-04"]
    # c has no arrival: counted in the fills and fees, not in the arrival figures
    assert (day.orders, day.filled_orders, day.arrival_orders) == (2, 2, 1)
    assert day.arrival_bps == Decimal("20.00")
    assert day.fees_fen == 1000 and day.filled_amount_fen == 1102000


def _sh(hour: int, minute: int, second: int = 0, day: int = 7) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=EXCHANGE_TZ)


def _bar(hour: int, minute: int, volume: int, amount: str) -> MinuteBarIn:
    return MinuteBarIn(_sh(hour, minute), volume, Decimal(amount))


def test_the_interval_runs_from_creation_to_the_last_fill_by_minute() -> None:
    bars = [_bar(9, 30, 100, "1000"), _bar(10, 0, 200, "2020"), _bar(10, 1, 300, "3060"), _bar(10, 2, 400, "4000")]
    # created 10:00:30 (UTC 02:00:30), last fill 10:01:59: the 10:00 and 10:01 bars
    interval = interval_of(_sh(10, 0, 30).astimezone(UTC), _sh(10, 1, 59))
    assert interval.day == date(2026, 12, 7)
    inside = bars_within(bars, interval)
    assert [b.minute.minute for b in inside] == [0, 1]
    # (2,020 + 3,060) / (200 + 300) = 10.16
    assert market_vwap_fen(inside) == Fraction(1016)


def test_an_order_created_before_the_open_takes_the_opening_bar_and_one_from_an_earlier_day_the_whole_day() -> None:
    bars = [_bar(9, 30, 100, "1000"), _bar(9, 31, 100, "1010"), _bar(14, 59, 100, "1100")]
    early = interval_of(_sh(9, 20), _sh(9, 30, 5))
    assert [b.minute.minute for b in bars_within(bars, early)] == [30]
    # created the evening before (rested for the session), filled at 15:00: the whole day
    overnight = interval_of(_sh(20, 0, day=6), _sh(15, 0))
    assert overnight.start == datetime(2026, 12, 7, tzinfo=EXCHANGE_TZ)
    assert len(bars_within(bars, overnight)) == 3
    assert market_vwap_fen(bars_within(bars, overnight)) == Fraction(311000, 300)
