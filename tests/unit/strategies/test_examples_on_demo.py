"""Every example strategy, with its default parameters, runs over the demo market (services.data.demo: its bars with
the daily_basic fields merged in, as a user would give them to the engine) and trades, keeping the books."""

from __future__ import annotations

import pandas as pd
import pytest

from services.data.demo import DAILY_BASIC_COLUMNS, DemoMarket, generate_demo_market
from shared.platform.settings import Settings
from shared.research.engine import BacktestConfig, run_backtest
from shared.research.strategy.registry import discover_strategies
from tests.unit.strategies.scenario import check_books

EXAMPLES = discover_strategies()


def test_the_examples_are_the_documented_ones() -> None:
    assert set(EXAMPLES) == {"buy_and_hold", "dual_ma", "bollinger", "momentum", "pairs", "factor"}


def test_the_demo_market_has_the_daily_basic_fields_the_examples_read(demo_market: DemoMarket) -> None:
    basic = demo_market.daily_basic
    assert len(basic) == len(demo_market.daily)
    assert (basic["ts_code"].to_numpy() == demo_market.daily["ts_code"].to_numpy()).all()
    assert (basic["trade_date"].to_numpy() == demo_market.daily["trade_date"].to_numpy()).all()
    # plausible: positive where given, loss-makers without a pe_ttm (as Tushare leaves it empty), and turnover as
    # Tushare defines it, the day's volume over the float in percent
    pe = basic["pe_ttm"]
    assert 0 < pe.isna().mean() < 0.5 and (pe.dropna() > 0).all()
    assert (basic["pb"] > 0).all() and (basic["turnover_rate"] > 0).all()
    shares = demo_market.daily["vol"] * 100
    turnover = shares / (basic["float_share"] * 10_000) * 100
    assert ((turnover - basic["turnover_rate"]).abs() <= 5e-5).all()
    assert {"pe_ttm", "pb", "turnover_rate"} <= set(demo_market.bars_with_daily_basic().columns)


def test_the_daily_basic_fields_are_deterministic_and_leave_the_bars_as_they_were() -> None:
    small = Settings(demo_symbols=12)
    one, two = generate_demo_market(small), generate_demo_market(small)
    pd.testing.assert_frame_equal(one.daily_basic, two.daily_basic, check_exact=True)
    assert list(one.daily_basic.columns) == list(DAILY_BASIC_COLUMNS)
    pd.testing.assert_frame_equal(one.bars_with_daily_basic()[list(one.daily.columns)], one.daily, check_exact=True)


def _defaults(name: str, bars: pd.DataFrame) -> dict[str, object]:
    if name == "pairs":  # the one example with required parameters: the pair (no default can know the market)
        codes = sorted(bars["ts_code"].unique())
        return {"leg_a": codes[0], "leg_b": codes[1]}
    return {}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_runs_with_its_defaults_on_the_demo_market_and_trades(name: str, demo_market: DemoMarket) -> None:
    bars = demo_market.bars_with_daily_basic()
    result = run_backtest(EXAMPLES[name](_defaults(name, bars)), bars, BacktestConfig())
    assert len(result.trades["qty"]) > 0
    check_books(result)
