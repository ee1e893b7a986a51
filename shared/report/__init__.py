"""Backtest reports: the data (`build_report`, `report_from_result` -> `ReportData`, JSON for the web UI) and one
self-contained HTML page per run (`render_html`), plus the optimisation results page (`render_optimisation_html`)
built from the same pieces. Pure and I/O-free; see docs/reports.md."""

from shared.report.data import (
    REPORT_FORMAT,
    Manifest,
    MetricRow,
    MonthlyReturns,
    ReportData,
    ReportInputError,
    SummaryRow,
    TradePage,
    build_report,
    drawdown_series,
    monthly_returns,
    paginate_trades,
    report_from_result,
    rolling_sharpe,
)
from shared.report.html import (
    ECHARTS_VERSION,
    HTML_TRADE_ROWS,
    heatmap_html,
    line_chart_html,
    render_html,
    render_optimisation_html,
    render_page,
    section,
    table_html,
)

__all__ = [
    "ECHARTS_VERSION",
    "HTML_TRADE_ROWS",
    "REPORT_FORMAT",
    "Manifest",
    "MetricRow",
    "MonthlyReturns",
    "ReportData",
    "ReportInputError",
    "SummaryRow",
    "TradePage",
    "build_report",
    "drawdown_series",
    "heatmap_html",
    "line_chart_html",
    "monthly_returns",
    "paginate_trades",
    "render_html",
    "render_optimisation_html",
    "render_page",
    "report_from_result",
    "rolling_sharpe",
    "section",
    "table_html",
]
