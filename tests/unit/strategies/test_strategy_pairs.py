"""The long-only pairs example: a hand-worked scenario (A rich -> hold B, A cheap -> hold A, flat when the spread
reverts), the z-score checked against an independent least-squares fit, parameter and universe errors, and a run over
the demo market."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from pydantic import ValidationError

from shared.research.engine import BacktestConfig, run_backtest
from shared.research.strategy import StrategyError
from strategies.pairs import Pairs
from tests.unit.strategies.scenario import check_books, make_bars, trades

A, B, C = "600000.SH", "600004.SH", "600006.SH"
DAYS = 36
# B cycles 10.0 10.6 10.2 10.8 10.4; A is exactly 2 x B (a perfect fit: no z) except on day 14, where A is 5% rich
# (21.84 instead of 20.80), and day 29, where it is 5% cheap (19.76). With one outlier in a window of L = 10 days,
# today's residual is d(1 - h) and the residuals' sum of squares d^2 (1 - h), h being today's leverage; B is at the
# middle of its cycle on both days (h close to 1/L), so z = +-sqrt(L (1 - h)) = +-3. The next day the outlier is
# yesterday's point and today's residual is about -d / L: z close to -+1/3, inside exit_z = 0.5.
B_PATH = [round(10 + 0.2 * ((3 * t) % 5), 2) for t in range(DAYS)]
A_PATH = [round(2 * b, 2) for b in B_PATH]
A_PATH[14] = 21.84
A_PATH[29] = 19.76
C_PATH = [10.0] * DAYS
PARAMS = {"leg_a": A, "leg_b": B, "lookback": 10, "entry_z": 2.0, "exit_z": 0.5, "capital": 0.5}


def _z_by_polyfit(t: int, lookback: int = 10) -> float:
    """The z-score of day t by a second method: numpy's polyfit for the OLS line, population std of the residuals."""
    la = np.log(A_PATH[t - lookback + 1 : t + 1])
    lb = np.log(B_PATH[t - lookback + 1 : t + 1])
    slope, intercept = np.polyfit(lb, la, 1)
    residuals = la - (intercept + slope * lb)
    return float(residuals[-1] / residuals.std())


def test_the_scenario_has_the_z_scores_described() -> None:
    assert _z_by_polyfit(14) == pytest.approx(3.0, abs=0.05)
    assert _z_by_polyfit(15) == pytest.approx(-1 / 3, abs=0.02)
    assert _z_by_polyfit(29) == pytest.approx(-3.0, abs=0.05)
    assert _z_by_polyfit(30) == pytest.approx(1 / 3, abs=0.02)


def test_holds_the_cheap_leg_while_the_spread_is_wide() -> None:
    # day 14: z = +3 > 2, A is rich: hold B at 50% of equity (100,000): 50,000 / 10.40 (day-15 open) -> 4,800 shares
    # day 15: |z| = 0.33 < 0.5: flat; B sold on day 16 at the open 10.00
    #   cash 100,000 - (49,920.00 + 12.48 + 0.50) + (48,000.00 - 12.00 - 24.00 - 0.48) = 98,030.54
    # day 29: z = -3 < -2, A is cheap: 50% of 98,030.54 = 49,015.27 / 19.76 (day-30 open) -> 2,480 -> 2,400 shares
    # day 30: |z| = 0.33: flat; A sold on day 31 at the open 20.00
    bars = make_bars({A: A_PATH, B: B_PATH, C: C_PATH})
    result = run_backtest(Pairs(PARAMS), bars, BacktestConfig(initial_cash=Decimal("100000")))
    assert trades(result) == [
        (15, B, "buy", 4800, "10.40"),
        (16, B, "sell", 4800, "10.00"),
        (30, A, "buy", 2400, "19.76"),
        (31, A, "sell", 2400, "20.00"),
    ]
    check_books(result)


def test_between_the_thresholds_the_position_is_kept() -> None:
    # with exit_z 0.3 the day after the outlier (|z| = 0.33) sits between exit and entry: B is kept; from day 24 the
    # outlier has left the window, a perfect fit again, which has no z: still kept. A's cheap day 29 switches legs:
    # equity 50,067.02 cash + 4,800 x 10.40 = 99,987.02, half of it 49,993.51 / 19.76 -> 2,530 -> 2,500 shares of A,
    # bought on day 30 after the sale of B at 10.40. Day 30's z = +0.33 is again between the thresholds: A is kept.
    bars = make_bars({A: A_PATH, B: B_PATH, C: C_PATH})
    result = run_backtest(Pairs({**PARAMS, "exit_z": 0.3}), bars, BacktestConfig(initial_cash=Decimal("100000")))
    assert trades(result) == [
        (15, B, "buy", 4800, "10.40"),
        (30, B, "sell", 4800, "10.40"),
        (30, A, "buy", 2500, "19.76"),
    ]
    check_books(result)


def test_nothing_is_decided_while_a_leg_is_suspended() -> None:
    # B has no bar on day 14: the rich day of A passes without a decision; day 15's z is small: no trade at all
    b_path: list[float | None] = list(B_PATH)
    b_path[14] = None
    result = run_backtest(Pairs(PARAMS), make_bars({A: A_PATH[:20], B: b_path[:20]}), BacktestConfig())
    assert trades(result) == []


def test_a_leg_outside_the_universe_is_a_clear_error() -> None:
    with pytest.raises(StrategyError, match=r"leg_b '600004.SH' not in the universe of this run \(2 symbols\)"):
        run_backtest(Pairs(PARAMS), make_bars({A: A_PATH[:12], C: C_PATH[:12]}), BacktestConfig())


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"leg_a": "600000"}, "leg_a"),
        ({"leg_b": "abc.SH"}, "leg_b"),
        ({"lookback": 4}, "lookback"),
        ({"entry_z": 0}, "entry_z"),
        ({"exit_z": -0.1}, "exit_z"),
        ({"capital": 1.5}, "capital"),
        ({"hedge": "ols"}, "hedge"),
    ],
)
def test_param_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Pairs({**PARAMS, **raw})
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"exit_z": 2.0}, r"exit_z \(2.0\) must be below entry_z \(2.0\)"),
        ({"leg_b": A}, r"leg_a and leg_b are the same symbol \(600000.SH\)"),
    ],
)
def test_inconsistent_params_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Pairs({**PARAMS, **raw})


def test_legs_are_required() -> None:
    with pytest.raises(ValidationError) as caught:
        Pairs({})
    assert {e["loc"] for e in caught.value.errors()} == {("leg_a",), ("leg_b",)}


def test_demo_market_run_holds_one_leg_at_a_time(demo_bars) -> None:  # type: ignore[no-untyped-def]
    codes = sorted(demo_bars["ts_code"].unique())
    legs = codes[:2]
    params = {"leg_a": legs[0], "leg_b": legs[1], "lookback": 40, "entry_z": 1.5, "exit_z": 0.25}
    result = run_backtest(Pairs(params), demo_bars, BacktestConfig(initial_cash=Decimal("1000000")))
    check_books(result)
    assert len(result.trades["qty"]) >= 4
    traded = {result.codes[s] for s in result.trades["sym"].tolist()}
    assert traded <= set(legs)
    held = result.positions > 0
    assert held.sum(axis=1).max() == 1  # long-only: never both legs at once
    assert not held[:40].any()  # no decision before a full lookback window
