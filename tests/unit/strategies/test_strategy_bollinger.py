"""The Bollinger mean-reversion example: a hand-worked scenario (entry on the cross below the lower band, exit on the
middle or the upper band, fills at the next open in lots), parameter errors, and a run over the demo market."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.research.engine import BacktestConfig, run_backtest
from strategies.bollinger import Bollinger
from tests.unit.strategies.scenario import check_books, make_bars, trades

A, B = "600000.SH", "600004.SH"
# period 5, k 1.5 (population std over the last 5 closes):
#   day 5 window 10.1 10.0 10.1 10.0 10.1: mean 10.06, std 0.049, lower 9.99 -> close 10.10 is above
#   day 6 window 10.0 10.1 10.0 10.1 9.5:  mean 9.94, std sqrt(0.252 / 5) = 0.2245, lower 9.603 -> 9.50 is below:
#         A crosses below; order the sleeve (200,000 / 2 symbols = 100,000), filled on day 7 at the open 9.60
#   day 7 window 10.1 10.0 10.1 9.5 9.7:   middle 9.88 -> close 9.70 below: hold
#   day 8 window 10.0 10.1 9.5 9.7 9.8:    middle 9.82 -> close 9.80 below: hold
#   day 9 window 10.1 9.5 9.7 9.8 9.9:     middle 9.80 -> close 9.90 above: exit, sold on day 10 at the open 10.00;
#         upper 9.80 + 1.5 x 0.2 = 10.10 -> still below the upper band
#   day 10 window 9.5 9.7 9.8 9.9 10.4:    upper 9.86 + 1.5 x sqrt(0.452 / 5) = 10.311 -> close 10.40 above the
#         upper band: with exit_band="upper" the sale is on day 11 at the open 10.50
# B alternates 10.00 / 10.10: its close never leaves the bands (lower 9.99 at the lowest).
CLOSES: dict[str, list[float | None]] = {
    A: [10.0, 10.1, 10.0, 10.1, 10.0, 10.1, 9.5, 9.7, 9.8, 9.9, 10.4, 10.5],
    B: [10.0, 10.1] * 6,
}
OPENS = {A: {7: 9.6, 10: 10.0, 11: 10.5}}
CONFIG = BacktestConfig(initial_cash=Decimal("200000"))


def test_buys_the_cross_below_the_lower_band_and_sells_above_the_middle() -> None:
    result = run_backtest(Bollinger({"period": 5, "k": 1.5}), make_bars(CLOSES, OPENS), CONFIG)
    # 100,000 / 9.60 = 10,416.7 shares -> 10,400 in lots of 100
    assert trades(result) == [(7, A, "buy", 10400, "9.60"), (10, A, "sell", 10400, "10.00")]
    # buy 99,840.00 + commission 24.96 + transfer 1.00; sell 104,000.00 - commission 26.00 - stamp duty 52.00
    # (0.05% in 2024) - transfer 1.04: 200,000 - 99,865.96 + 103,920.96
    assert result.cash_fen[-1] == 20_405_500
    check_books(result)


def test_exit_on_the_upper_band() -> None:
    result = run_backtest(Bollinger({"period": 5, "k": 1.5, "exit_band": "upper"}), make_bars(CLOSES, OPENS), CONFIG)
    assert trades(result) == [(7, A, "buy", 10400, "9.60"), (11, A, "sell", 10400, "10.50")]
    check_books(result)


def test_a_suspended_day_is_no_signal_day() -> None:
    # A is suspended on day 6, the day it would have crossed: its close repeats 10.10 and nothing is decided. It trades
    # again on day 7 at 9.70: window 10.1 10.0 10.1 10.1 9.7, mean 10.00, std sqrt(0.12 / 5) = 0.155, lower 9.768, and
    # yesterday's 10.10 was above its lower band: the cross is on day 7, bought on day 8 at the open 9.70
    # (100,000 / 9.70 = 10,309 -> 10,300). Middle on day 8: 9.94 > 9.80; day 9: 9.92 > 9.90; day 10: 9.98 < 10.40:
    # exit, sold on day 11 at the open (the previous close, 10.40).
    closes: dict[str, list[float | None]] = {A: [*CLOSES[A][:6], None, *CLOSES[A][7:]], B: CLOSES[B]}
    result = run_backtest(Bollinger({"period": 5, "k": 1.5}), make_bars(closes), CONFIG)
    assert trades(result) == [(8, A, "buy", 10300, "9.70"), (11, A, "sell", 10300, "10.40")]
    check_books(result)


def test_cash_reserve_shrinks_the_sleeve() -> None:
    # sleeve 200,000 x 0.9 / 2 = 90,000: 90,000 / 9.60 = 9,375 -> 9,300 shares
    result = run_backtest(Bollinger({"period": 5, "k": 1.5, "cash_reserve": "0.1"}), make_bars(CLOSES, OPENS), CONFIG)
    assert trades(result)[0] == (7, A, "buy", 9300, "9.60")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"period": 1}, "period"),
        ({"period": 20.5}, "period"),
        ({"k": 0}, "k"),
        ({"k": 6}, "k"),
        ({"exit_band": "lower"}, "exit_band"),
        ({"cash_reserve": 1}, "cash_reserve"),
        ({"perod": 5}, "perod"),
    ],
)
def test_param_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Bollinger(raw)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_demo_market_run_keeps_the_books(demo_bars) -> None:  # type: ignore[no-untyped-def]
    config = BacktestConfig(initial_cash=Decimal("6000000"))
    result = run_backtest(Bollinger(), demo_bars, config)
    check_books(result)
    assert len(result.trades["qty"]) > 20  # the demo market is choppy enough for mean reversion to trade
    sleeve_fen = 6_000_000 * 100 // len(result.codes)
    buys = result.trades["side"] > 0
    # one sleeve per symbol: a buy never spends more than a sleeve, and is never added to a position
    assert (result.trades["amount"][buys] <= sleeve_fen).all()
    held_before = result.positions[result.trades["day"][buys] - 1, result.trades["sym"][buys]]
    assert (held_before == 0).all()
    assert result.metrics["total_return"] is not None
