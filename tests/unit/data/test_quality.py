"""Data-quality checks: a clean frame gives no findings; each hand-made defect gives exactly the findings worked out
by hand (rule, ts_code, date); the input is never changed.

The base market, in storage units (prices in fen), over Spring Festival 2024 (SSE closed 02-09..02-18):
  600000.SH (main board, 10% limit)  closes 1000 1010 1005 1020 1030 1025, first pre_close 995
  300750.SZ (ChiNext, 20% limit)     closes 20000 20100 19900 20300 20500 20400, first pre_close 19800
on 02-05, 02-06, 02-07, 02-08, 02-19, 02-20; open = pre_close, high = max(open, close) + 5, low = min(...) - 5.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from services.data.demo import generate_demo_market
from services.data.loader import daily_bar_rows
from services.data.quality import (
    RULES,
    QualityInputError,
    QualityReport,
    QualityThresholds,
    Severity,
    run_quality_checks,
)
from shared.core.market.calendar import sse_trading_days
from shared.platform.settings import Settings

DAYS = [date(2024, 2, 5), date(2024, 2, 6), date(2024, 2, 7), date(2024, 2, 8), date(2024, 2, 19), date(2024, 2, 20)]
CALENDAR = sse_trading_days(date(2024, 2, 1), date(2024, 2, 29))
PF, CATL = "600000.SH", "300750.SZ"


def symbol_bars(code: str, first_pre: int, closes: list[int], days: list[date] = DAYS) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    pre = first_pre
    for day, close in zip(days, closes, strict=True):
        rows.append(
            {
                "ts_code": code,
                "trade_date": day,
                "open": pre,
                "high": max(pre, close) + 5,
                "low": min(pre, close) - 5,
                "close": close,
                "pre_close": pre,
                "vol": 100_000,
                "amount": 100_000 * close,
                "adj_factor": 1.0,
            }
        )
        pre = close
    return rows


def market() -> pd.DataFrame:
    return pd.DataFrame(
        symbol_bars(PF, 995, [1000, 1010, 1005, 1020, 1030, 1025])
        + symbol_bars(CATL, 19800, [20000, 20100, 19900, 20300, 20500, 20400])
    )


def at(frame: pd.DataFrame, code: str, day: date) -> pd.Index:
    rows = frame.index[(frame["ts_code"] == code) & (frame["trade_date"] == day)]
    assert len(rows) == 1
    return rows


def check(frame: pd.DataFrame, **kwargs: object) -> QualityReport:
    kwargs.setdefault("calendar", CALENDAR)
    return run_quality_checks(frame, **kwargs)  # type: ignore[arg-type]


def hits(report: QualityReport) -> list[tuple[str, str, date]]:
    return [(f.rule, f.ts_code, f.trade_date) for f in report.findings]


def only(report: QualityReport, **expected: int) -> None:
    """Every rule that ran has 0 findings except those named, which have exactly the given counts."""
    assert report.counts == {rule: expected.get(rule, 0) for rule in report.rules_run}


def test_clean_market_has_no_findings() -> None:
    report = check(market())
    assert report.ok and report.findings == ()
    assert report.rules_run == tuple(r for r in RULES if r != "outside_limits")
    assert report.rules_skipped == {"outside_limits": "needs limits"}
    assert report.rows_checked == 12
    assert (report.first_date, report.last_date) == (date(2024, 2, 5), date(2024, 2, 20))


def test_any_row_order_and_input_untouched() -> None:
    frame = market().sample(frac=1.0, random_state=7)
    frame.loc[at(frame, PF, date(2024, 2, 8)), "high"] = 1015  # close 1020 > high
    before = frame.copy()
    report = check(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert hits(report) == [("ohlc_inconsistent", PF, date(2024, 2, 8))]
    assert report.findings[0].severity is Severity.ERROR
    assert report.findings[0].detail == "open 1005 high 1015 low 1000 close 1020 (fen)"


@pytest.mark.parametrize("identical", [True, False])
def test_duplicate_rows(identical: bool) -> None:
    frame = market()
    extra = frame.loc[at(frame, PF, date(2024, 2, 6))].copy()
    if not identical:
        extra["vol"] = 5
    frame = pd.concat([frame, extra], ignore_index=True)
    report = check(frame)
    only(report, duplicate_row=1)
    (finding,) = report.findings
    assert (finding.rule, finding.ts_code, finding.trade_date) == ("duplicate_row", PF, date(2024, 2, 6))
    assert finding.detail == ("2 rows (identical)" if identical else "2 rows (differing values)")


def test_bad_prices_missing_zero_and_text() -> None:
    frame = market().astype({"close": object})
    frame.loc[at(frame, PF, date(2024, 2, 7)), "pre_close"] = 0
    frame.loc[at(frame, CATL, date(2024, 2, 19)), "close"] = "20500 CNY"
    report = check(frame)
    only(report, bad_price=2)
    assert hits(report) == [("bad_price", CATL, date(2024, 2, 19)), ("bad_price", PF, date(2024, 2, 7))]
    assert report.findings[0].detail == "close missing or not a number"
    assert report.findings[1].detail == "pre_close 0 not above 0"


def test_bad_volume_and_zero_volume() -> None:
    frame = market()
    frame.loc[at(frame, PF, date(2024, 2, 7)), "vol"] = -100
    frame.loc[at(frame, CATL, date(2024, 2, 6)), ["vol", "amount"]] = 0
    report = check(frame)
    only(report, bad_volume=1, zero_volume=1)
    assert hits(report) == [("bad_volume", PF, date(2024, 2, 7)), ("zero_volume", CATL, date(2024, 2, 6))]
    # A suspended day may carry a zero-volume row.
    suspended = pd.DataFrame({"ts_code": [CATL], "trade_date": [date(2024, 2, 6)]})
    only(check(frame, suspensions=suspended), bad_volume=1)


def test_bad_adj_factor() -> None:
    frame = market()
    frame.loc[at(frame, CATL, date(2024, 2, 8)), "adj_factor"] = np.nan
    report = check(frame)
    only(report, bad_adj_factor=1)
    assert hits(report) == [("bad_adj_factor", CATL, date(2024, 2, 8))]


def test_bar_on_a_holiday() -> None:
    frame = market()
    # Saturday 2024-02-10, in the Spring Festival closure; the bar itself is continuous with its neighbours.
    holiday = symbol_bars(PF, 1020, [1020], [date(2024, 2, 10)])
    frame = pd.concat([frame, pd.DataFrame(holiday)], ignore_index=True)
    report = check(frame)
    only(report, non_trading_day=1)
    assert hits(report) == [("non_trading_day", PF, date(2024, 2, 10))]
    assert "2024-02-10 (Sat)" in report.findings[0].detail


def test_close_outside_the_limit_prices() -> None:
    frame = market()
    # Exchange limit prices: pre_close * (1 +/- ratio), rounded half-up to the fen (worked out for each row).
    limits = pd.DataFrame(
        {
            "ts_code": frame["ts_code"],
            "trade_date": frame["trade_date"],
            "up_limit": [1095, 1100, 1111, 1106, 1122, 1133, 23760, 24000, 24120, 23880, 24360, 24600],
            "down_limit": [896, 900, 909, 905, 918, 927, 15840, 16000, 16080, 15920, 16240, 16400],
        }
    )
    only(check(frame, limits=limits))
    limits.loc[(limits["ts_code"] == CATL) & (limits["trade_date"] == date(2024, 2, 19)), "up_limit"] = 20400
    report = check(frame, limits=limits)
    only(report, outside_limits=1)
    assert hits(report) == [("outside_limits", CATL, date(2024, 2, 19))]
    assert report.findings[0].detail == "close 20500 > up_limit 20400; high 20505 > up_limit 20400"
    # A day without a limit row (e.g. a new listing's first days) is not checked.
    only(check(frame, limits=limits.iloc[:6]))


def test_pre_close_must_continue_the_previous_close() -> None:
    frame = market()
    frame.loc[at(frame, PF, date(2024, 2, 19)), ["pre_close", "open"]] = 1019  # 02-08 closed at 1020
    report = check(frame)
    only(report, pre_close_gap=1)
    assert hits(report) == [("pre_close_gap", PF, date(2024, 2, 19))]
    assert report.findings[0].detail == (
        "pre_close 1019 but close on 2024-02-08 was 1020 and adj_factor is unchanged (1)"
    )
    assert report.findings[0].severity is Severity.WARNING


def ex_dividend(pre_close: int, factor: float) -> pd.DataFrame:
    """CATL pays 3.00 CNY cash, ex-date 02-19: reference price (20300 - 300) / 1 = 20000 fen, and the backward
    factor steps by prev_close / reference = 20300 / 20000 = 1.015 from that day on."""
    frame = market()
    ex = at(frame, CATL, date(2024, 2, 19))
    frame.loc[ex, ["pre_close", "open"]] = pre_close
    frame.loc[ex, "low"] = min(pre_close, 20500) - 5
    later = (frame["ts_code"] == CATL) & (frame["trade_date"] >= date(2024, 2, 19))
    frame.loc[later, "adj_factor"] = factor
    return frame


def test_ex_rights_day_pre_close_follows_the_adj_factor() -> None:
    only(check(ex_dividend(20000, 1.015)))
    # Factor stepped but pre_close still the old close: the reference price is missing.
    report = check(ex_dividend(20300, 1.015))
    only(report, pre_close_gap=1)
    assert hits(report) == [("pre_close_gap", CATL, date(2024, 2, 19))]
    assert report.findings[0].detail == (
        "pre_close 20300 but close on 2024-02-08 was 20300; adj_factor 1 -> 1.015 implies about 20000.0"
    )
    # Reference price applied but no factor change: adjusted prices would jump.
    only(check(ex_dividend(20000, 1.0)), pre_close_gap=1)
    # 100 fen off the reference: beyond rounding (0.5 fen) plus the factors' 3-decimal precision (about 20 fen).
    only(check(ex_dividend(20100, 1.015)), pre_close_gap=1)


def test_missing_bars_and_suspensions() -> None:
    frame = market()
    gone = at(frame, PF, date(2024, 2, 7))
    frame = frame.drop(gone)
    report = check(frame)
    # 02-07 has no bar; and 02-08's pre_close (1005, the close of the missing day) no longer continues 02-06's 1010.
    only(report, missing_bar=1, pre_close_gap=1)
    assert hits(report) == [("pre_close_gap", PF, date(2024, 2, 8)), ("missing_bar", PF, date(2024, 2, 7))]
    # Suspended on 02-07: the next session's pre_close is the last close before the suspension.
    frame.loc[at(frame, PF, date(2024, 2, 8)), ["pre_close", "open"]] = 1010
    suspended = pd.DataFrame({"ts_code": [PF, PF], "trade_date": ["20240207", "20240208"], "suspend_type": ["S", "R"]})
    only(check(frame, suspensions=suspended))


def test_missing_bars_follow_listing_and_delisting_dates() -> None:
    frame = market()
    frame = frame.drop(at(frame, PF, date(2024, 2, 20)))  # PF's bars stop a day early
    securities = pd.DataFrame(
        {
            "ts_code": [PF, CATL, "601988.SH", "688981.SH", "600001.SH"],
            "list_date": [date(1999, 11, 10), date(2018, 6, 11), date(2006, 7, 5), date(2024, 2, 7), date(1998, 1, 1)],
            # CATL "delisted" on 02-20: its 02-20 bar is outside the window, not missing; 600001.SH left in 2023.
            "delist_date": [None, date(2024, 2, 20), None, None, date(2023, 5, 1)],
        }
    )
    report = check(frame, securities=securities)
    # PF: 02-20. 601988.SH (no bars at all): all 6 open days of the checked range 02-05..02-20.
    # 688981.SH (listed 02-07, no bars): 02-07, 02-08, 02-19, 02-20. 600001.SH: delisted before the range.
    expected = [(PF, date(2024, 2, 20))]
    expected += [("601988.SH", d) for d in DAYS]
    expected += [("688981.SH", d) for d in DAYS[2:]]
    only(report, missing_bar=len(expected))
    assert [(c, d) for _, c, d in hits(report)] == expected


def test_missing_bars_over_a_given_range_whatever_bars_are_checked_with_them() -> None:
    # Only PF's bars up to 02-08 are checked, with CATL (listed, no bars given); the range is 02-05..02-20 (6 days).
    frame = market()
    frame = frame[(frame["ts_code"] == PF) & (frame["trade_date"] <= date(2024, 2, 8))]
    securities = pd.DataFrame({"ts_code": [PF, CATL], "list_date": [date(1999, 11, 10), date(2018, 6, 11)]})
    report = check(frame, securities=securities, rules=["missing_bar"], checked_range=(DAYS[0], DAYS[-1]))
    assert [(c, d) for _, c, d in hits(report)] == [(CATL, d) for d in DAYS] + [(PF, d) for d in DAYS[4:]]
    # Without it the range is the bars' own span (02-05..02-08).
    report = check(frame, securities=securities, rules=["missing_bar"])
    assert [(c, d) for _, c, d in hits(report)] == [(CATL, d) for d in DAYS[:4]]
    with pytest.raises(QualityInputError, match="checked_range"):
        check(frame, checked_range=(date(2024, 1, 1), DAYS[-1]))  # before the calendar (02-01..)


def test_return_outliers_by_board_and_listing_exemption() -> None:
    frame = market()
    # PF 02-20: 1030 -> 1150 is +11.65%, beyond the main board's 10% (+1 point tolerance).
    frame.loc[at(frame, PF, date(2024, 2, 20)), ["close", "high"]] = [1150, 1155]
    # CATL 02-20: 20500 -> 23500 is +14.6%, within ChiNext's 20%.
    frame.loc[at(frame, CATL, date(2024, 2, 20)), ["close", "high"]] = [23500, 23505]
    # PF 02-06 closes at its high, +10.9% (1000 -> 1109): inside 10% + 1 point.
    frame.loc[at(frame, PF, date(2024, 2, 6)), ["close", "high"]] = [1109, 1109]
    frame.loc[at(frame, PF, date(2024, 2, 7)), ["pre_close", "open", "high"]] = [1109, 1109, 1114]
    report = check(frame)
    only(report, return_outlier=1)
    assert hits(report) == [("return_outlier", PF, date(2024, 2, 20))]
    assert report.findings[0].detail == ("close +11.65%, high +12.14%, low -0.97% from pre_close 1030; board limit 10%")


@pytest.mark.parametrize(("year", "found"), [(1995, 0), (1997, 1)])
def test_no_return_outlier_before_price_limits_existed(year: int, found: int) -> None:
    # A 600000.SH moving +30% (1000 -> 1300) on its second day: no daily limit before 1996-12-16, the 10% limit after.
    days = [date(year, 3, 6), date(year, 3, 7)] if year == 1995 else [date(year, 3, 4), date(year, 3, 5)]
    frame = pd.DataFrame(symbol_bars(PF, 1000, [1000, 1300], days))
    report = check(frame, calendar=days, rules=["return_outlier"])
    assert report.counts == {"return_outlier": found}
    assert [(f.ts_code, f.trade_date) for f in report.findings] == [(PF, days[1])] * found


def test_new_listings_have_no_limit_for_five_days() -> None:
    frame = market()
    # A 600000.SH listed on 02-05: +30% on day 1 (02-05) and day 5 (02-19) is allowed; day 6 (02-20) is not.
    for day, pre, close in (
        (date(2024, 2, 5), 995, 1300),
        (date(2024, 2, 19), 1020, 1330),
        (date(2024, 2, 20), 1330, 1729),
    ):
        frame.loc[at(frame, PF, day), ["pre_close", "open", "close", "high", "low"]] = [
            pre,
            pre,
            close,
            close + 5,
            pre - 5,
        ]
    # Day 2 (02-06) opens at 1300 and falls to 1010 (-22.7% at the low 1005), also allowed.
    frame.loc[at(frame, PF, date(2024, 2, 6)), ["pre_close", "open", "high", "low"]] = [1300, 1300, 1305, 1005]
    securities = pd.DataFrame({"ts_code": [PF, CATL], "list_date": [date(2024, 2, 5), date(2018, 6, 11)]})
    report = check(frame, securities=securities)
    only(report, return_outlier=1)
    assert hits(report) == [("return_outlier", PF, date(2024, 2, 20))]
    # Without listing dates every big move is suspect: 02-05, 02-06, 02-19 and 02-20.
    report = check(frame, rules=["return_outlier"])
    assert [f.trade_date for f in report.findings] == [DAYS[0], DAYS[1], DAYS[4], DAYS[5]]


def test_invalid_code_is_reported_once_per_symbol() -> None:
    frame = market()
    frame["ts_code"] = frame["ts_code"].replace({CATL: "000300.SH"})  # an index code among stocks
    report = check(frame)
    only(report, invalid_ts_code=1)
    assert hits(report) == [("invalid_ts_code", "000300.SH", date(2024, 2, 5))]
    assert report.findings[0].detail == "'000300.SH' is not a stock code (6 rows)"


def test_findings_are_capped_per_rule_but_counted_in_full() -> None:
    frame = market()
    frame.loc[frame["ts_code"] == PF, "vol"] = 0
    frame.loc[at(frame, CATL, date(2024, 2, 6)), "high"] = 1
    report = check(frame, thresholds=QualityThresholds(max_findings_per_rule=2))
    assert report.counts["zero_volume"] == 6
    assert hits(report) == [
        ("ohlc_inconsistent", CATL, date(2024, 2, 6)),
        ("zero_volume", PF, date(2024, 2, 5)),
        ("zero_volume", PF, date(2024, 2, 6)),
    ]
    assert report.truncated() == {"zero_volume": 4}
    stored = json.loads(json.dumps(report.to_dict()))
    assert stored["counts"]["zero_volume"] == 6 and stored["truncated"] == {"zero_volume": 4}
    assert stored["by_severity"] == {"error": 1, "warning": 6}
    assert stored["findings"][1] == {
        "rule": "zero_volume",
        "severity": "warning",
        "ts_code": PF,
        "trade_date": "2024-02-05",
        "detail": "vol 0 and not suspended",
    }


def test_other_input_forms_give_the_same_answers() -> None:
    frame = market()
    frame.loc[at(frame, PF, date(2024, 2, 8)), "high"] = 1015
    expected = [("ohlc_inconsistent", PF, date(2024, 2, 8))]
    as_text = frame.assign(trade_date=[d.strftime("%Y%m%d") for d in frame["trade_date"]])
    as_datetime64 = frame.assign(trade_date=pd.to_datetime(frame["trade_date"]))
    as_decimal = frame.astype(object).assign(
        close=[Decimal(int(v)) for v in frame["close"]], adj_factor=[Decimal("1.000000")] * len(frame)
    )
    for variant in (as_text, as_datetime64, as_decimal):
        assert hits(check(variant)) == expected
    separate = frame.drop(columns="adj_factor")
    factors = frame[["ts_code", "trade_date", "adj_factor"]]
    report = check(separate, adj_factors=factors)
    assert hits(report) == expected and "pre_close_gap" in report.rules_run
    report = check(separate)
    assert report.rules_skipped == {
        "bad_adj_factor": "needs adj factors",
        "outside_limits": "needs limits",
        "pre_close_gap": "needs adj factors",
    }


def test_rule_selection() -> None:
    frame = market()
    frame.loc[at(frame, PF, date(2024, 2, 8)), "high"] = 1015
    frame.loc[at(frame, PF, date(2024, 2, 7)), "vol"] = 0
    report = check(frame, rules=["zero_volume"])
    assert report.rules_run == ("zero_volume",) and hits(report) == [("zero_volume", PF, date(2024, 2, 7))]
    with pytest.raises(QualityInputError, match=r"unknown rule.*ohlc"):
        check(frame, rules=["ohlc"])


def test_unusable_inputs_are_refused_with_the_reason() -> None:
    frame = market()
    with pytest.raises(QualityInputError, match=r"bars lacks column.*vol"):
        check(frame.drop(columns="vol"))
    with pytest.raises(QualityInputError, match=r"calendar covers 2024-02-01\.\.2024-02-07"):
        check(frame, calendar=sse_trading_days(date(2024, 2, 1), date(2024, 2, 7)))
    with pytest.raises(QualityInputError, match="calendar is empty"):
        check(frame, calendar=[])
    with pytest.raises(QualityInputError, match="given twice"):
        check(frame, adj_factors=frame[["ts_code", "trade_date", "adj_factor"]])
    with pytest.raises(QualityInputError, match=r"bars\.trade_date"):
        check(frame.assign(trade_date="yesterday"))
    with pytest.raises(ValueError, match="max_findings_per_rule"):
        QualityThresholds(max_findings_per_rule=-1)


def test_empty_bars() -> None:
    report = check(market().iloc[:0])
    assert report.ok and report.rows_checked == 0 and report.first_date is None


def test_the_demo_market_is_clean_and_its_suspensions_are_the_only_gaps() -> None:
    """A second opinion: the demo generator follows the exchange's rules (limits, ex-rights reference prices,
    suspensions, listings and delistings), so its market has no defects, and without the suspension list
    exactly its suspended days show up as missing bars."""
    market_ = generate_demo_market(Settings(demo_symbols=30))
    bars = pd.DataFrame(daily_bar_rows(market_.daily))
    securities = pd.DataFrame(
        [{"ts_code": s.ts_code, "list_date": s.list_date, "delist_date": s.delist_date} for s in market_.securities]
    )
    halted = {(h.ts_code, d) for h in market_.suspensions for d in market_.trade_days if h.first_day <= d <= h.last_day}
    suspensions = pd.DataFrame(sorted(halted), columns=["ts_code", "trade_date"])
    assert len(halted) > 0
    only(check(bars, calendar=market_.trade_days, securities=securities, suspensions=suspensions))
    report = check(bars, calendar=market_.trade_days, securities=securities, rules=["missing_bar"])
    assert {(f.ts_code, f.trade_date) for f in report.findings} == halted


def test_report_from_checks_the_first_day_against_the_day_before_and_reports_only_from_it() -> None:
    # The checks of a one-day update of 02-19, with 02-08 (the open day before) given as context.
    frame = market()
    frame = frame[frame["trade_date"].isin([date(2024, 2, 8), date(2024, 2, 19)])].reset_index(drop=True)
    frame.loc[at(frame, PF, date(2024, 2, 19)), ["pre_close", "open"]] = 1019  # 02-08 closed at 1020
    # A defect on the context day is not this report's: 02-08's CATL high below its close.
    frame.loc[at(frame, CATL, date(2024, 2, 8)), "high"] = 20000
    listed = pd.DataFrame(
        {"ts_code": [PF, CATL, "600010.SH"], "list_date": ["20000101"] * 3, "delist_date": [None] * 3}
    )
    report = check(frame, securities=listed, report_from=date(2024, 2, 19))
    # By hand: PF's pre_close break on 02-19, and 600010.SH (listed, no bar, no suspension) missing on 02-19 only.
    only(report, pre_close_gap=1, missing_bar=1)
    assert sorted(hits(report)) == [
        ("missing_bar", "600010.SH", date(2024, 2, 19)),
        ("pre_close_gap", PF, date(2024, 2, 19)),
    ]
    assert (report.rows_checked, report.first_date, report.last_date) == (2, date(2024, 2, 19), date(2024, 2, 19))
    # Without the context day the break cannot be seen: what the checks of the update saw before.
    alone = frame[frame["trade_date"] == date(2024, 2, 19)]
    only(check(alone, securities=listed, report_from=date(2024, 2, 19)), missing_bar=1)
