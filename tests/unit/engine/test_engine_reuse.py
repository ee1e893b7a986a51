"""A panel loaded once serves many runs (a parameter search), and a run reports its progress and can be stopped."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from shared.research.engine import BacktestConfig, load_bars, run_backtest
from strategies.dual_ma import DualMA


def random_market(symbols: int = 4, days: int = 120, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day_list = [date(2024, 1, 1) + timedelta(days=i) for i in range(days)]
    rows = []
    for s in range(symbols):
        close = 1000 + np.cumsum(rng.integers(-20, 21, size=days))
        pre = np.concatenate([[close[0]], close[:-1]])
        for d, c, p in zip(day_list, close, pre, strict=True):
            rows.append(
                (
                    f"60{s:04d}.SH",
                    d.strftime("%Y%m%d"),
                    p / 100,
                    max(c, p) / 100,
                    min(c, p) / 100,
                    c / 100,
                    p / 100,
                    1e5,
                    1e5,
                )
            )
    columns = ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount"]
    return pd.DataFrame(rows, columns=columns)


def test_a_reused_panel_gives_the_same_result_as_loading_each_time() -> None:
    bars = random_market()
    config = BacktestConfig(initial_cash=1_000_000)
    panel = load_bars(bars, config)
    for fast, slow in [(3, 10), (5, 20), (2, 30)]:
        fresh = run_backtest(DualMA({"fast": fast, "slow": slow}), bars, config)
        reused = run_backtest(DualMA({"fast": fast, "slow": slow}), panel, config)
        assert reused.to_json() == fresh.to_json()
    # A run that reuses the panel leaves it as it was: the first point again is still identical.
    again = run_backtest(DualMA({"fast": 3, "slow": 10}), panel, config)
    assert again.to_json() == run_backtest(DualMA({"fast": 3, "slow": 10}), bars, config).to_json()


def test_a_panel_loaded_for_other_dates_is_refused() -> None:
    bars = random_market()
    panel = load_bars(bars, BacktestConfig(end=date(2024, 3, 1)))
    with pytest.raises(ValueError, match="load it again"):
        run_backtest(DualMA(), panel, BacktestConfig())
    # fees are not data: the same panel serves another cost model
    run_backtest(DualMA(), panel, BacktestConfig(end=date(2024, 3, 1), commission_rate=0))


def test_progress_is_reported_every_50_days_and_at_the_end() -> None:
    seen: list[tuple[int, int]] = []
    run_backtest(DualMA(), random_market(days=120), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(50, 120), (100, 120), (120, 120)]


def test_raising_from_progress_stops_the_run() -> None:
    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int) -> None:
        raise Cancelled(f"at {done}")

    with pytest.raises(Cancelled, match="at 50"):
        run_backtest(DualMA(), random_market(days=120), progress=cancel)
