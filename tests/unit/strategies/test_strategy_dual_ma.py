"""The dual moving-average example: hand-worked scenarios of the crossover rule with exact ties (a tie carries the
sign before it), a buy signal that never sells, and parameter errors.

With fast = 1 and slow = 3 the fast average is the close C_t and the slow one (C_t + C_t-1 + C_t-2) / 3, so the
sign of fast - slow is the sign of D_t = 2 C_t - C_t-1 - C_t-2 (in fen, exact); it is defined from day 2."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.research.engine import BacktestConfig, run_backtest
from strategies.dual_ma import DualMA
from tests.unit.strategies.scenario import check_books, make_bars, trades

A = "600000.SH"
PARAMS = {"fast": 1, "slow": 3}
CONFIG = BacktestConfig(initial_cash=Decimal("100000"))  # one symbol: its sleeve is the whole 100,000

# day  C_t-2  C_t-1  C_t   D_t   sign  side before  what happens
#  2   1000   1000   980   -40    -        none      the averages are complete: the side is -, no cross
#  3   1000    980   990     0    0         -        a tie: the side stays -
#  4    980    990   974   -22    -         -        -, 0, -: no cross
#  5    990    974   982     0    0         -        tie
#  6    974    982  1008   +60    +         -        -, 0, +: a cross up; flat: buy, filled day 7 at the open 10.08
#  7    982   1008  1036   +82    +         +
#  8   1008   1036  1022     0    0         +        tie
#  9   1036   1022  1049   +40    +         +        +, 0, +: no cross (the old rule saw one and, holding, re-targeted
#                                                    the sleeve at the next open 10.49: 100,000 / 10.49 = 9,532 shares,
#                                                    so it sold 300 of the 9,900 on a buy signal)
# 10   1022   1049   975  -121    -         +        a cross down: close, sold day 11 at the open 9.75
# 11   1049    975  1012     0    0         -        tie
# 12    975   1012   972   -43    -         -        -, 0, -: no cross (flat anyway)
# 13   1012    972   992     0    0         -        tie
# 14    972    992  1022   +80    +         -        -, 0, +: a cross up; buy, filled day 15 at the open 10.22
# 15    992   1022  1017   +20    +         +
TIES = [10.00, 10.00, 9.80, 9.90, 9.74, 9.82, 10.08, 10.36, 10.22, 10.49, 9.75, 10.12, 9.72, 9.92, 10.22, 10.17]


def test_a_tie_carries_the_sign_before_it() -> None:
    result = run_backtest(DualMA(PARAMS), make_bars({A: TIES}), CONFIG)
    # day 7: 100,000 / 10.08 = 9,920.6 -> 9,900 shares: 99,792.00 + commission 24.95 + transfer 1.00 = 99,817.95
    # day 11: 9,900 x 9.75 = 96,525.00 - commission 24.13 - stamp duty 48.26 - transfer 0.97 = 96,451.64
    #   cash 100,000 - 99,817.95 + 96,451.64 = 96,633.69
    # day 15: the sleeve (100,000 / 10.22 = 9,784 -> 9,700) costs more than the cash: cut to 9,400 shares,
    #   96,068.00 + commission 24.02 + transfer 0.96 = 96,092.98, leaving 540.71
    assert trades(result) == [
        (7, A, "buy", 9900, "10.08"),
        (11, A, "sell", 9900, "9.75"),
        (15, A, "buy", 9400, "10.22"),
    ]
    assert result.cash_fen[-1] == 54_071
    check_books(result)


# A cross down whose sale is refused at the limit-down leaves the position held when the next cross up comes: that buy
# signal must not trade (the old rule re-targeted the sleeve and sold the excess).
# day  C_t-2  C_t-1  C_t   D_t   sign
#  2   1000   1000   980   -40    -
#  3   1000    980  1000   +20    +    cross up: buy on day 4 at the open 10.00 (100,000 / 10.00 = 10,000 shares cost
#                                      100,026.00 with fees: cut by the cash to 9,900)
#  4    980   1000  1090  +200    +
#  5   1000   1090  1190  +290    +
#  6   1090   1190  1290  +300    +
#  7   1190   1290  1200   -80    -    cross down: close on day 8; day 8 opens at 10.80, the limit-down of 12.00: refused
#  8   1290   1200  1100  -290    -
#  9   1200   1100  1210  +120    +    cross up while holding 9,900: nothing (the old rule sold 9,900 - 100,000 / 12.10
#                                      = 1,636 -> 1,600 shares on day 10)
# 10   1100   1210  1220  +130    +
HELD = [10.00, 10.00, 9.80, 10.00, 10.90, 11.90, 12.90, 12.00, 11.00, 12.10, 12.20]


def test_a_cross_up_while_holding_never_sells() -> None:
    result = run_backtest(DualMA(PARAMS), make_bars({A: HELD}, {A: {8: 10.80}}), CONFIG)
    assert trades(result) == [(4, A, "buy", 9900, "10.00")]
    orders = result.orders_frame()
    assert list(orders["status"]) == ["partially_filled", "cancelled"]
    assert orders["reason"].iloc[1].startswith("limit-down")
    assert list(result.positions[:, 0]) == [0] * 4 + [9900] * 7
    check_books(result)


def test_the_side_starts_over_with_each_run() -> None:
    strategy = DualMA(PARAMS)
    first = run_backtest(strategy, make_bars({A: TIES}), CONFIG)
    again = run_backtest(strategy, make_bars({A: TIES}), CONFIG)
    assert trades(again) == trades(first)


@pytest.mark.parametrize(
    ("raw", "field"), [({"fast": 0}, "fast"), ({"slow": 1}, "slow"), ({"cash_reserve": 1}, "cash_reserve")]
)
def test_param_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DualMA(raw)
    assert field in str(info.value)


def test_fast_must_be_shorter_than_slow() -> None:
    with pytest.raises(ValidationError, match="fast"):
        DualMA({"fast": 20, "slow": 20})
