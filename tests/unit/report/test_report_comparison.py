"""The side-by-side part of a report: several strategies (sleeves) next to each other and to the combined account."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from shared.research.engine import BacktestConfig, run_backtest
from shared.research.engine.portfolio import Sleeve, run_portfolio
from shared.research.report import (
    ReportInputError,
    build_report,
    render_html,
    report_from_portfolio,
    report_from_result,
)
from strategies.buy_and_hold import BuyAndHold
from tests.unit.engine.support import bars

FRAME = bars([("600000.SH", "20240102", 10.00, 10.00), ("600000.SH", "20240103", 10.50, 11.00)])


def _two_sleeves(small_label: str = "small") -> Any:
    return run_portfolio(
        [Sleeve(BuyAndHold(), weight="0.25", label=small_label), Sleeve(BuyAndHold(), weight="0.75", label="large")],
        FRAME,
        BacktestConfig(initial_cash=100_000),
    )


def test_each_sleeve_is_rebased_on_its_own_capital_next_to_the_combined_account() -> None:
    report = report_from_portfolio(_two_sleeves())
    side = report.side_by_side
    assert side is not None
    small, large = side.sleeves
    # small: 25,000.00 buys 2,400 shares for 24,006.24 (fees in), cash 993.76: equity 24,993.76 then 27,393.76
    # large: 75,000.00 buys 7,400 shares for 74,019.24, cash 980.76: equity 74,980.76 then 82,380.76
    assert (small.label, small.weight, small.initial_equity) == ("small", 0.25, 25_000.0)
    assert small.equity == pytest.approx([24_993.76 / 25_000, 27_393.76 / 25_000], abs=1e-12)
    assert large.equity == pytest.approx([74_980.76 / 75_000, 82_380.76 / 75_000], abs=1e-12)
    assert (small.final_equity, large.final_equity) == (27_393.76, 82_380.76)
    combined = side.combined
    assert combined.label == "Combined" and combined.weight == 1.0 and combined.initial_equity == 100_000.0
    assert combined.equity == pytest.approx([99_974.52 / 100_000, 109_774.52 / 100_000], abs=1e-12)
    assert report.equity == combined.equity
    small_metrics = {m.key: m for m in small.metrics}
    assert small_metrics["total_return"].value == pytest.approx(2_393.76 / 25_000, rel=1e-12)
    assert small_metrics["total_return"].display == "9.58%"
    assert small_metrics["max_drawdown"].value == pytest.approx(6.24 / 25_000, rel=1e-9)  # day 1's fees
    assert small_metrics["trade_count"].value == 0  # no closing trade
    assert [m.key for m in combined.metrics] == [
        "total_return", "annual_return", "volatility", "max_drawdown", "sharpe", "trade_count",
    ]  # fmt: skip
    assert (small.fills, large.fills, combined.fills) == (1, 1, 2)
    assert report.manifest.strategy == "portfolio"
    assert [s["label"] for s in report.manifest.params["sleeves"]] == ["small", "large"]
    assert report.trades["sleeve"] == ["small", "large"]
    # the JSON carries the same
    dumped = report.model_dump(mode="json")
    assert [s["label"] for s in dumped["side_by_side"]["sleeves"]] == ["small", "large"]


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.ids.extend(v for k, v in attrs if k == "id" and v)
        self._in_cell = tag == "td"

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_cell = False


def test_the_page_has_a_side_by_side_section_after_the_summary_and_a_single_run_has_none() -> None:
    page = render_html(report_from_portfolio(_two_sleeves()))
    parsed = _Sections()
    parsed.feed(page)
    assert parsed.ids[:3] == ["metrics", "side-by-side", "equity"]
    for text in ("small", "large", "Combined", "25,000.00", "27,393.76", "109,774.52", "9.58%", "25.00%", "75.00%"):
        assert text in parsed.cells, text
    single = render_html(report_from_result(run_backtest(BuyAndHold(), FRAME, BacktestConfig(initial_cash=100_000))))
    plain = _Sections()
    plain.feed(single)
    assert "side-by-side" not in plain.ids and "Side by side" not in single


def test_a_sleeve_label_with_markup_is_shown_as_text() -> None:
    page = render_html(report_from_portfolio(_two_sleeves("</script><b>x</b>")))
    assert "<b>x</b>" not in page
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in page


def _inputs() -> dict[str, Any]:
    daily = {"trade_date": ["2024-01-02", "2024-01-03"], "equity": [100.0, 110.0]}
    sleeve = {"label": "a", "strategy": "s", "params": {}, "weight": 0.5, "initial_cash": "50.00",
              "equity": [50.0, 55.0], "metrics": {}, "trades": 1}  # fmt: skip
    return {
        "daily": daily,
        "sleeves": [sleeve, {**sleeve, "label": "b"}],
        "summary": {"initial_cash": "100.00"},
        "manifest": {"strategy": "portfolio", "input_sha256": "ab" * 32},
    }


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"equity": [50.0]}, "sleeves[1].equity", "one value per trading day (2), got 1"),
        ({"equity": [50.0, "x"]}, "sleeves[1].equity", "row 1"),
        ({"label": "a"}, "sleeves[1].label", "'a' is the label of sleeves[0] too"),
        ({"label": ""}, "sleeves[1].label", "non-blank"),
        ({"weight": 0}, "sleeves[1].weight", "must be > 0"),
        ({"initial_cash": "lots"}, "sleeves[1].initial_cash", "not a number"),
        ({"params": [1]}, "sleeves[1].params", "must be a mapping"),
        ({"trades": 1.5}, "sleeves[1].trades", "must be an int"),
    ],
)
def test_bad_sleeves_are_refused_naming_the_field(change: dict[str, Any], field: str, reason: str) -> None:
    inputs = _inputs()
    inputs["sleeves"][1] = {**inputs["sleeves"][1], **change}
    with pytest.raises(ReportInputError) as caught:
        build_report(
            inputs["daily"], None, metrics={}, summary=inputs["summary"], manifest=inputs["manifest"],
            sleeves=inputs["sleeves"],
        )  # fmt: skip
    assert caught.value.field == field and reason in caught.value.reason, str(caught.value)
    # a well-formed pair builds
    good = _inputs()
    report = build_report(good["daily"], None, metrics={}, summary=good["summary"], manifest=good["manifest"],
                          sleeves=good["sleeves"])  # fmt: skip
    assert report.side_by_side is not None and report.side_by_side.sleeves[1].equity == [1.0, 1.1]
