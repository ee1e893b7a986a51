"""A bar printed outside its limit band is a data defect the data service's quality checks report (rule
`outside_limits`, when the day's limits are stored), as the backtest engine warns about it (docs/engine.md, "bars
outside their band"): the same ST bar in both places."""

from __future__ import annotations

from datetime import date

import pandas as pd

from services.data.quality import run_quality_checks
from shared.core.market.calendar import sse_trading_days

ST = "600000.SH"


def test_an_open_below_the_stored_limit_down_is_an_outside_limits_finding() -> None:
    # storage units (fen): pre_close 1000, an ST band of 950-1050 stored, the bar opens at 920 and trades 910-940
    bars = pd.DataFrame(
        [
            {"ts_code": ST, "trade_date": date(2024, 1, 2), "open": 1000, "high": 1000, "low": 1000, "close": 1000,
             "pre_close": 1000, "vol": 100_000, "amount": 100_000_000, "adj_factor": 1.0},
            {"ts_code": ST, "trade_date": date(2024, 1, 3), "open": 920, "high": 940, "low": 910, "close": 940,
             "pre_close": 1000, "vol": 100_000, "amount": 92_500_000, "adj_factor": 1.0},
        ]
    )  # fmt: skip
    limits = pd.DataFrame(
        {"ts_code": [ST, ST], "trade_date": [date(2024, 1, 2), date(2024, 1, 3)], "up_limit": [1050, 1050],
         "down_limit": [950, 950]}
    )  # fmt: skip
    report = run_quality_checks(
        bars, calendar=sse_trading_days(date(2024, 1, 1), date(2024, 1, 31)), limits=limits, rules=["outside_limits"]
    )
    assert report.counts == {"outside_limits": 1}
    (finding,) = report.findings
    assert (finding.ts_code, finding.trade_date) == (ST, date(2024, 1, 3))
    assert "low 910 < down_limit 950" in finding.detail
