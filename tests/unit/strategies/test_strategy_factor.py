"""The multi-factor example: the winsorised z-score by hand, a hand-worked ranking on daily_basic columns (value on
earnings and book, a loss-maker left out), the missing-column and parameter errors, and a run over the demo market
with synthetic daily_basic fields.

The strategy reads the daily_basic fields as extra numeric columns of the bars (`ctx.history("pe_ttm",
adjusted=False)`); the engine runs below need that engine support."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from shared.research.engine import BacktestConfig, run_backtest
from shared.research.strategy import StrategyError
from strategies.factor import Factor, winsorised_z
from tests.unit.strategies.scenario import check_books, make_bars, trades

S1, S2, S3, S4 = "600000.SH", "600004.SH", "600006.SH", "600007.SH"
NAN = math.nan


def test_winsorised_z_by_hand() -> None:
    # quantiles 0.25 / 0.75 of 1 2 3 4 100 (linear) are 2 and 4: clipped 2 2 3 4 4, mean 3, std sqrt(4 / 5)
    z = winsorised_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), 0.25)
    s = 1 / math.sqrt(0.8)
    assert z == pytest.approx([-s, -s, 0.0, s, s])
    # without clipping the outlier dominates: mean 22, std sqrt((21^2 + 20^2 + 19^2 + 18^2 + 78^2) / 5)
    sd = math.sqrt((21**2 + 20**2 + 19**2 + 18**2 + 78**2) / 5)
    assert winsorised_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), 0.0) == pytest.approx(
        [-21 / sd, -20 / sd, -19 / sd, -18 / sd, 78 / sd]
    )
    assert winsorised_z(np.array([5.0, 5.0, 5.0]), 0.1).tolist() == [0.0, 0.0, 0.0]


def _daily_basic_bars() -> pd.DataFrame:
    # prices constant (S1 10, S2 8, S3 20, S4 10); daily_basic changes on day 3.
    # days 0-2: pe_ttm 10 / 20 / 5 / loss (NaN), pb 1 / 2 / 4 / 0.5
    #   S4 has no earnings yield: not eligible. Over S1..S3:
    #   earnings yield 0.10 0.05 0.20: mean 0.1167, std 0.0624 -> z -0.27 -1.07 +1.34
    #   book yield     1.00 0.50 0.25: mean 0.5833, std 0.3118 -> z +1.34 -0.27 -1.07
    #   score (weights 1, 1)           S1 +1.07, S2 -1.34, S3 +0.27 -> hold S1, S3
    # days 3-5: S2 cheapens to pe_ttm 4, pb 0.8
    #   earnings yield 0.10 0.25 0.20: mean 0.1833, std 0.0624 -> z -1.34 +1.07 +0.27
    #   book yield     1.00 1.25 0.25: mean 0.8333, std 0.4249 -> z +0.39 +0.98 -1.37
    #   score                          S1 -0.94, S2 +2.05, S3 -1.11 -> hold S2, S1
    closes = {S1: [10.0] * 6, S2: [8.0] * 6, S3: [20.0] * 6, S4: [10.0] * 6}
    pe = {S1: [10.0] * 6, S2: [20.0] * 3 + [4.0] * 3, S3: [5.0] * 6, S4: [NAN] * 6}
    pb = {S1: [1.0] * 6, S2: [2.0] * 3 + [0.8] * 3, S3: [4.0] * 6, S4: [0.5] * 6}
    return make_bars(closes, extra={"pe_ttm": pe, "pb": pb})


def test_ranks_on_value_and_rotates_when_the_factors_change() -> None:
    # top 2 at (1 - 0.04) / 2 = 48% of equity, rebalanced on days 0 and 3, filled at the next open:
    #   day 1: S1 48,000 / 10 = 4,800 shares, S3 48,000 / 20 = 2,400 (each 48,000.00 + 12.00 + 0.48): cash 3,975.04
    #   day 3: equity 99,975.04, 48% = 47,988.02. S1 kept: 4,798 shares targeted, 2 fewer than held: below a lot.
    #   day 4: S3 sold at 20.00 (48,000.00 - 12.00 - stamp 24.00 - 0.48), S2 bought: 47,988.02 / 8 = 5,998 -> 5,900
    params = {"weight_pe": 1, "weight_pb": 1, "weight_turnover": 0, "top_n": 2, "rebalance_every": 3, "winsor": 0}
    result = run_backtest(
        Factor({**params, "cash_reserve": "0.04"}), _daily_basic_bars(), BacktestConfig(initial_cash=Decimal("100000"))
    )
    assert trades(result) == [
        (1, S1, "buy", 4800, "10.00"),
        (1, S3, "buy", 2400, "20.00"),
        (4, S3, "sell", 2400, "20.00"),
        (4, S2, "buy", 5900, "8.00"),
    ]
    # 3,975.04 + 47,963.52 - (47,200.00 + 11.80 + 0.47)
    assert result.cash_fen[-1] == 472_629
    check_books(result)


def test_a_weighted_column_missing_from_the_bars_is_a_clear_error() -> None:
    params = {"weight_pe": 1, "weight_pb": 0, "weight_turnover": 0.5}
    with pytest.raises(StrategyError, match=r"weight_turnover is 0.5 but the bars have no numeric 'turnover_rate'"):
        run_backtest(Factor(params), _daily_basic_bars(), BacktestConfig())


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"weight_pe": -1}, "weight_pe"),
        ({"weight_pb": 11}, "weight_pb"),
        ({"weight_turnover": "high"}, "weight_turnover"),
        ({"top_n": 0}, "top_n"),
        ({"rebalance_every": 0}, "rebalance_every"),
        ({"winsor": 0.5}, "winsor"),
        ({"cash_reserve": -0.1}, "cash_reserve"),
        ({"weight_roe": 1}, "weight_roe"),
    ],
)
def test_param_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Factor(raw)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_all_weights_zero_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one of weight_pe, weight_pb, weight_turnover must be above 0"):
        Factor({"weight_pe": 0, "weight_pb": 0, "weight_turnover": 0})


def _with_daily_basic(daily: pd.DataFrame) -> pd.DataFrame:
    """Synthetic daily_basic fields for the demo bars: per symbol a fixed EPS (a quarter of them loss-makers, whose
    pe_ttm Tushare leaves empty), book value per share and float; pe_ttm, pb and turnover_rate follow the close and the
    volume as Tushare defines them (price / EPS, price / BPS, volume / float shares x 100)."""
    rng = np.random.default_rng(7)
    codes = sorted(daily["ts_code"].unique())
    eps = dict(zip(codes, rng.normal(0.6, 0.8, len(codes)), strict=True))
    bps = dict(zip(codes, rng.uniform(2.0, 12.0, len(codes)), strict=True))
    shares = daily.groupby("ts_code")["vol"].median() * 100 * rng.uniform(20, 200, len(codes))
    frame = daily.copy()
    e = frame["ts_code"].map(eps)
    frame["pe_ttm"] = np.where(e > 0, frame["close"] / e, np.nan).round(4)
    frame["pb"] = (frame["close"] / frame["ts_code"].map(bps)).round(4)
    frame["turnover_rate"] = (frame["vol"] * 100 / frame["ts_code"].map(shares) * 100).round(4)
    return frame


def test_demo_market_run_holds_at_most_top_n_and_no_loss_maker(demo_bars) -> None:  # type: ignore[no-untyped-def]
    bars = _with_daily_basic(demo_bars)
    params = {"top_n": 8, "rebalance_every": 20}
    result = run_backtest(Factor(params), bars, BacktestConfig(initial_cash=Decimal("2000000")))
    check_books(result)
    held = (result.positions > 0).sum(axis=1)
    assert held.max() == 8
    buys = result.trades["side"] > 0
    assert buys.sum() >= 8
    # every buy follows a rebalance day (0, 20, 40, ...) on which the symbol had a positive pe_ttm
    decided = result.trades["day"][buys] - 1
    assert set((decided % 20).tolist()) == {0}
    pe = bars.pivot(index="trade_date", columns="ts_code", values="pe_ttm").reindex(columns=list(result.codes))
    assert (pe.to_numpy()[decided, result.trades["sym"][buys]] > 0).all()
