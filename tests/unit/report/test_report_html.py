"""The HTML pages: self-contained (the library inline, nothing fetched), escaped, well-formed, with every section
of a real engine run, the trade list capped, and small enough for a large run."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.research.engine import BacktestConfig, run_backtest
from shared.research.report import (
    HTML_TRADE_ROWS,
    ReportInputError,
    build_report,
    heatmap_html,
    render_html,
    render_optimisation_html,
    report_from_result,
)
from strategies.dual_ma import DualMA

INJECTION = "</script><script>alert(1)</script>"
SHA = "0123456789abcdef" * 4


class Page(HTMLParser):
    """Records tags, attributes, script bodies and section ids; fails on nothing, so we assert on what it saw."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self._buffer: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script, self._buffer = dict(attrs), []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._buffer)))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._buffer.append(data)
        else:
            self.text.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


def synthetic_bars(days: int = 90) -> pd.DataFrame:
    """Two SH main-board stocks whose closes swing in slow waves, so a 3/8 dual MA crosses several times."""
    dates = pd.bdate_range("2024-01-02", periods=days).strftime("%Y%m%d")
    rows = []
    for k, code in enumerate(("600000.SH", "600001.SH")):
        closes = np.round(10.0 + 1.5 * np.sin(np.arange(days) / (4.0 + 2 * k)), 2)
        previous = np.concatenate(([closes[0]], closes[:-1]))
        for day, close, pre in zip(dates, closes, previous, strict=True):
            rows.append(
                {
                    "ts_code": code,
                    "trade_date": day,
                    "open": pre,
                    "high": max(pre, close),
                    "low": min(pre, close),
                    "close": close,
                    "pre_close": pre,
                    "vol": 10_000.0,
                    "amount": 10_000.0 * close / 10,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def engine_run() -> Any:
    bars = synthetic_bars()
    bench = bars.groupby("trade_date")["close"].mean() * 300  # an index level per day
    result = run_backtest(DualMA({"fast": 3, "slow": 8}), bars, BacktestConfig(initial_cash=200_000))
    return result, bench


def test_a_real_engine_run_renders_every_section(engine_run: Any) -> None:
    result, bench = engine_run
    report = report_from_result(result, bench, rolling_window=20)
    trades = result.trades_frame()
    assert report.trade_count == len(trades) > 0
    # second method: the curves agree with the engine's own metrics
    assert report.equity[-1] == pytest.approx(1.0 + result.metrics["total_return"])
    assert -min(report.drawdown) == pytest.approx(result.metrics["max_drawdown"])
    assert report.benchmark is not None and report.benchmark[0] == 1.0
    page = render_html(report)
    seen = parse(page)
    ids = {attrs.get("id") for _, attrs in seen.tags}
    for anchor in ("metrics", "equity", "drawdown", "monthly", "rolling-sharpe", "exposure", "trades", "manifest"):
        assert anchor in ids, anchor
    text = " ".join(seen.text)
    assert result.input_sha256 in text
    assert f"{len(trades):,} trades." in text
    assert "Sharpe ratio" in text and "Max drawdown" in text
    # one chart per time series section and the monthly heatmap: 5 specs, each valid JSON
    specs = [json.loads(body) for attrs, body in seen.scripts if attrs.get("type") == "application/json"]
    assert sorted(s["type"] for s in specs) == ["heatmap", "line", "line", "line", "line"]
    assert render_html(report) == page  # deterministic: no timestamp, same bytes


def test_the_page_is_self_contained(engine_run: Any) -> None:
    page = render_html(report_from_result(engine_run[0]))
    library = resources.files("shared.research.report").joinpath("vendor", "echarts.min.js").read_text(encoding="utf-8")
    assert library in page  # inlined, byte for byte
    seen = parse(page)
    for tag, attrs in seen.tags:
        assert "src" not in attrs and "href" not in attrs, (tag, attrs)  # nothing loaded from anywhere
        assert tag not in ("link", "iframe", "img")
    assert all(not attrs.get("src") for attrs, _ in seen.scripts)


def test_user_text_is_escaped_everywhere() -> None:
    daily = {"trade_date": ["2024-01-02", "2024-01-03"], "equity": ["100.00", "101.00"]}
    trades = pd.DataFrame(
        {"trade_date": ["2024-01-02"], "ts_code": ["<b>600000.SH</b>"], "side": ["buy"], "qty": [100], "price": ["1"]}
    )
    report = build_report(
        daily,
        trades,
        metrics={},
        summary={"strategy": INJECTION, "initial_cash": "100.00"},
        manifest={
            "strategy": INJECTION,
            "input_sha256": SHA,
            "params": {"name": '<img src=x onerror="alert(1)">'},
            "job": "</pre><script>alert(2)</script>",
        },
        title=INJECTION,
    )
    page = render_html(report)
    assert INJECTION not in page
    library = resources.files("shared.research.report").joinpath("vendor", "echarts.min.js").read_text(encoding="utf-8")
    ours = page.replace(library, "")  # the library itself builds <img> elements in its own code
    assert "<img" not in ours and "<b>600000" not in ours and "alert(2)</script>" not in ours
    seen = parse(page)
    # the only scripts are the library, the chart code and the JSON chart specs
    kinds = [attrs.get("type") for attrs, _ in seen.scripts]
    assert kinds.count(None) == 2 and set(kinds) == {None, "application/json"}
    text = " ".join(seen.text)
    assert INJECTION in text  # shown to the reader as text
    assert "<b>600000.SH</b>" in text


def test_optimisation_page_heatmap_holds_the_best_value_per_cell() -> None:
    # fast x slow with a third parameter; the cell keeps the highest Sharpe over cash_reserve.
    rows = [
        {"params": {"fast": 5, "slow": 20, "cash_reserve": 0.0}, "metrics": {"sharpe": 0.5, "max_drawdown": 0.1}},
        {"params": {"fast": 5, "slow": 20, "cash_reserve": 0.1}, "metrics": {"sharpe": 0.9, "max_drawdown": 0.1}},
        {"params": {"fast": 10, "slow": 20, "cash_reserve": 0.0}, "metrics": {"sharpe": -0.3, "max_drawdown": 0.2}},
        {"params": {"fast": 5, "slow": 60, "cash_reserve": 0.0}, "metrics": {"sharpe": 1.2, "max_drawdown": 0.3}},
        {"params": {"fast": 10, "slow": 60, "cash_reserve": 0.0}, "metrics": {"sharpe": None, "max_drawdown": None}},
        {"params": {"fast": 5, "slow": INJECTION, "cash_reserve": 0.0}, "metrics": {"sharpe": 0.1}},
    ]
    page = render_optimisation_html(rows, "fast", "slow", "sharpe", {"strategy": "dual_ma", "grid": INJECTION})
    assert INJECTION not in page
    seen = parse(page)
    (spec,) = [json.loads(b) for a, b in seen.scripts if a.get("type") == "application/json"]
    assert spec["x"] == ["5", "10"]
    assert spec["y"] == ["20", "60", INJECTION]  # numbers first... sorted as text when mixed
    cells = {(spec["x"][x], spec["y"][y]): v for x, y, v in spec["cells"]}
    assert cells == {("5", "20"): 0.9, ("10", "20"): -0.3, ("5", "60"): 1.2, ("5", INJECTION): 0.1}
    assert spec["diverging"] is True and spec["vmin"] == -1.2 and spec["vmax"] == 1.2
    # table: best first, the point without a value last
    body = page.split('id="rows"')[1]
    assert body.index("1.2") < body.index("0.9") < body.index("-0.3")
    assert "6 points, 1 without a value" in " ".join(seen.text)


def test_heatmap_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ReportInputError, match="row 1 has 1 values for 2 x labels"):
        heatmap_html([[1.0, 2.0], [3.0]], ["a", "b"], ["r1", "r2"], "t")


def _large_report(days: int, trades: int) -> Any:
    dates = pd.bdate_range("2014-01-02", periods=days)
    rng = np.random.default_rng(7)
    equity = 1_000_000 * np.cumprod(1 + rng.normal(0.0003, 0.01, days))
    daily = pd.DataFrame(
        {
            "trade_date": dates.strftime("%Y-%m-%d"),
            "equity": [f"{v:.2f}" for v in equity],
            "market_value": [f"{v * 0.6:.2f}" for v in equity],
            "benchmark": 3000 * np.cumprod(1 + rng.normal(0, 0.01, days)),
        }
    )
    n = trades
    frame = pd.DataFrame(
        {
            "trade_date": np.repeat(dates.strftime("%Y%m%d"), math.ceil(n / days))[:n],
            "ts_code": [f"{600000 + i % 500:06d}.SH" for i in range(n)],
            "side": np.where(np.arange(n) % 2, "sell", "buy"),
            "qty": np.full(n, 1000),
            "price": ["12.34"] * n,
            "amount": ["12340.00"] * n,
            "commission": ["5.00"] * n,
            "stamp_duty": ["0.00"] * n,
            "transfer_fee": ["0.12"] * n,
            "fees": ["5.12"] * n,
            "realised_pnl": ["-12.30"] * n,
            "order_id": np.arange(n),
        }
    )
    return build_report(
        daily,
        frame,
        metrics={},
        summary={"initial_cash": "1000000.00"},
        manifest={"strategy": "s", "input_sha256": SHA},
    )


def test_trade_list_is_capped_with_a_count_and_a_big_run_stays_small() -> None:
    report = _large_report(2_500, 80_000)
    assert report.trade_count == 80_000 and len(report.trades["order_id"]) == 80_000  # the JSON keeps them all
    page = render_html(report)
    half = HTML_TRADE_ROWS // 2
    text = " ".join(parse(page).text)
    assert f"80,000 trades; this page shows the first {half:,} and the last {half:,}" in text
    assert f"{80_000 - HTML_TRADE_ROWS:,} trades not shown" in text
    trade_rows = page.split('id="trades"')[1].split("<tbody>")[1].split("</tbody>")[0].count("<tr>")
    assert trade_rows == HTML_TRADE_ROWS
    assert len(page.encode()) < 3_000_000  # the library is ~1 MB of it
