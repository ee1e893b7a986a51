"""The report's numbers, each worked out by hand or by a second method (the metrics module on the same window)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shared.research.engine.metrics import compute_metrics
from shared.research.report import (
    ReportInputError,
    build_report,
    drawdown_series,
    monthly_returns,
    paginate_trades,
    rolling_sharpe,
)

MANIFEST = {"strategy": "dual_ma", "input_sha256": "ab" * 32, "params": {"fast": 5}, "config": {}, "code_version": {}}


def _report(daily: dict[str, list[object]], initial_cash: str = "100.00", **kwargs: object):  # type: ignore[no-untyped-def]
    return build_report(daily, None, metrics={}, summary={"initial_cash": initial_cash}, manifest=MANIFEST, **kwargs)


def test_monthly_returns_compound_the_days_of_each_month_across_a_month_boundary() -> None:
    # Initial cash 100. Daily returns +10%, -10% in January and again in February:
    #   Jan: 1.10 x 0.90 - 1 = -1%; Feb: 1.10 x 0.90 - 1 = -1%; the year: 0.99 x 0.99 - 1 = -1.99%
    #   (and 98.01 / 100 - 1 = -1.99% from the equity directly). Every other month has no day in the run.
    report = _report(
        {
            "trade_date": ["20240130", "20240131", "20240201", "20240202"],
            "equity": ["110.00", "99.00", "108.90", "98.01"],
        }
    )
    table = report.monthly_returns
    assert table.years == [2024]
    assert table.values[0][0] == pytest.approx(-0.01)
    assert table.values[0][1] == pytest.approx(-0.01)
    assert table.values[0][2:] == [None] * 10
    assert table.year_totals == [pytest.approx(-0.0199)]


def test_monthly_returns_across_a_year_boundary_fill_two_rows() -> None:
    # 2023-12-29: 100 -> 102 (+2%); 2024-01-02: 102 -> 96.9 (-5%): one month in each year.
    table = monthly_returns(["2023-12-29", "2024-01-02"], np.array([0.02, -0.05]))
    assert table.years == [2023, 2024]
    assert table.values[0][11] == pytest.approx(0.02)
    assert table.values[1][0] == pytest.approx(-0.05)
    assert table.year_totals == [pytest.approx(0.02), pytest.approx(-0.05)]


def test_drawdown_on_six_values_by_hand() -> None:
    # Initial equity 100 is the first peak, so the loss on day 0 is already under water.
    # equity: 95   105   99.75  110   88    121
    # peak:   100  105   105    110   110   121
    # under:  -5%  0     -5%    0     -20%  0
    equity = np.array([95.0, 105.0, 99.75, 110.0, 88.0, 121.0])
    under = drawdown_series(equity, 100.0)
    assert under.tolist() == pytest.approx([-0.05, 0.0, -0.05, 0.0, -0.2, 0.0])
    # the deepest point is the metrics' max drawdown
    assert -under.min() == pytest.approx(compute_metrics(equity, 100.0).max_drawdown)


def test_rolling_sharpe_matches_numpy_and_the_metrics_on_each_window() -> None:
    returns = np.array([0.01, -0.02, 0.015, 0.0, 0.03, -0.01, 0.005])
    window = 3
    values = rolling_sharpe(returns, window)
    assert values[:2] == [None, None]
    for t in range(window - 1, len(returns)):
        chunk = returns[t - window + 1 : t + 1]
        assert values[t] == pytest.approx(chunk.mean() / chunk.std(ddof=1) * math.sqrt(252))
    # second method: the metrics module's Sharpe of the equity over the window's days
    equity = 1000.0 * np.cumprod(1.0 + returns)
    start = equity[3]  # window ending on day 6 covers days 4..6; its start-of-window equity is day 3's
    assert values[6] == pytest.approx(compute_metrics(equity[4:7], start).sharpe)


def test_rolling_sharpe_with_a_risk_free_rate_and_a_flat_window() -> None:
    returns = np.array([0.0, 0.0, 0.0, 0.02, -0.01])
    rf_d = 1.02 ** (1 / 252) - 1
    values = rolling_sharpe(returns, 3, risk_free_rate=0.02)
    assert values[2] is None  # three flat days: no dispersion, undefined (not a huge number)
    chunk = returns[2:5]
    assert values[4] == pytest.approx((chunk.mean() - rf_d) / chunk.std(ddof=1) * math.sqrt(252))
    with pytest.raises(ReportInputError, match="rolling_window"):
        rolling_sharpe(returns, 1)


def test_rebasing_equity_on_the_initial_cash_and_the_benchmark_on_its_first_close() -> None:
    # Initial cash 1000: equity 1000, 1100, 1050 -> 1.0, 1.1, 1.05; benchmark 3000, 3300, 2700 -> 1.0, 1.1, 0.9.
    # Strings (CNY as stored) and floats are both accepted.
    report = _report(
        {
            "trade_date": ["2024-03-01", "2024-03-04", "2024-03-05"],
            "equity": ["1000.00", "1100.00", 1050.0],
            "market_value": ["0.00", "550.00", "262.50"],
            "benchmark": [3000.0, "3300", 2700],
        },
        initial_cash="1000.00",
    )
    assert report.equity == pytest.approx([1.0, 1.1, 1.05])
    assert report.benchmark == pytest.approx([1.0, 1.1, 0.9])
    assert report.exposure == pytest.approx([0.0, 0.5, 0.25])  # 550 / 1100, 262.50 / 1050
    assert report.daily_returns == pytest.approx([0.0, 0.1, 1050 / 1100 - 1])
    # a first day below the initial cash (fees) starts below 1.0: the curve ends at 1 + total return
    lower = _report({"trade_date": ["2024-03-01"], "equity": ["990.00"]}, initial_cash="1000.00")
    assert lower.equity == pytest.approx([0.99])


def test_metrics_table_has_labels_and_formats() -> None:
    report = build_report(
        {"trade_date": ["2024-01-02"], "equity": [100.0]},
        None,
        metrics={
            "total_return": 0.1234,
            "sharpe": 1.236,
            "max_drawdown_duration": 1234,
            "turnover": 3.1,
            "beta": None,
            "new_metric": 0.5,
        },
        summary={"initial_cash": "100.00", "trades": 12345},
        manifest=MANIFEST,
    )
    shown = {m.key: (m.label, m.display) for m in report.metrics}
    assert shown["total_return"] == ("Total return", "12.34%")
    assert shown["sharpe"] == ("Sharpe ratio", "1.24")
    assert shown["max_drawdown_duration"] == ("Longest drawdown", "1,234 days")
    assert shown["turnover"][1] == "3.10×/yr"
    assert shown["beta"] == ("Beta", "n/a")
    assert shown["new_metric"] == ("New metric", "0.5")
    assert {s.key: s.display for s in report.summary}["trades"] == "12,345"
    assert report.manifest.input_sha256 == "ab" * 32


@pytest.mark.parametrize(
    ("daily", "manifest", "field", "words"),
    [
        ({"trade_date": ["2024-01-02"]}, MANIFEST, "daily", "equity"),
        ({"trade_date": ["2024-01-02", "2024-01-03"], "equity": ["100", "abc"]}, MANIFEST, "daily.equity", "row 1"),
        ({"trade_date": ["2024-01-03", "2024-01-02"], "equity": [1, 2]}, MANIFEST, "daily.trade_date", "row 1"),
        ({"trade_date": ["2024-13-02"], "equity": [1]}, MANIFEST, "daily.trade_date", "row 0"),
        ({"trade_date": ["2024-01-02"], "equity": [0]}, MANIFEST, "daily.equity", "> 0"),
        ({"trade_date": ["2024-01-02"], "equity": [1]}, {"strategy": "x"}, "manifest.input_sha256", "required"),
    ],
)
def test_bad_input_names_the_field(
    daily: dict[str, list[object]], manifest: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ReportInputError, match=words) as caught:
        build_report(daily, None, metrics={}, summary={}, manifest=manifest)
    assert caught.value.field == field


def test_trades_are_all_in_the_json_and_served_by_page() -> None:
    trades = pd.DataFrame(
        {
            "trade_date": ["20240102", "20240103", "20240104"],
            "ts_code": ["600000.SH", "000001.SZ", "600000.SH"],
            "side": ["buy", "buy", "sell"],
            "qty": np.array([100, 200, 100], dtype=np.int64),
            "price": ["10.00", "12.00", "11.00"],
            "realised_pnl": pd.Series([None, None, "94.50"], dtype=object),
        }
    )
    report = build_report(
        {"trade_date": ["2024-01-02"], "equity": [100.0]}, trades, metrics={}, summary={}, manifest=MANIFEST
    )
    assert report.trade_count == 3
    assert report.trades["trade_date"] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert report.trades["qty"] == [100, 200, 100]
    assert report.trades["realised_pnl"] == [None, None, "94.50"]
    page = paginate_trades(report, offset=1, limit=1)
    assert page.total == 3
    assert page.columns["ts_code"] == ["000001.SZ"]
    assert paginate_trades(trades, offset=2, limit=5).columns["side"] == ["sell"]
    with pytest.raises(ReportInputError, match="limit"):
        paginate_trades(report, limit=0)
    dumped = report.model_dump_json()  # valid JSON, no NaN
    assert "NaN" not in dumped
