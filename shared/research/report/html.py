"""HTML pages of backtest reports and optimisation results: one self-contained file each (the charting library, the
styles and the data inlined, no network needed), deterministic (same input, same bytes), safe to open when a
strategy name, a parameter or a code holds markup: every text from the run is HTML-escaped, and chart data travels
as JSON inside ``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped, read by a fixed script.

The pieces are public so that other page types use the same machinery: ``render_page`` wraps sections in the page
shell, ``section``, ``table_html``, ``line_chart_html`` and ``heatmap_html`` build the sections.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from shared.research.report.data import _METRIC_LABELS, Manifest, ReportData, ReportInputError, format_value

__all__ = [
    "ECHARTS_VERSION",
    "HTML_TRADE_ROWS",
    "heatmap_html",
    "line_chart_html",
    "render_html",
    "render_optimisation_html",
    "render_page",
    "section",
    "table_html",
]

ECHARTS_VERSION = "5.6.0"
HTML_TRADE_ROWS = 500  # trades embedded in a page: the first and the last half of this; the JSON has them all
HTML_OPTIMISATION_ROWS = 2_000
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DIGITS = 6  # decimals kept for chart data (a curve rebased to 1.0 moves by far more than 1e-6 per pixel)


@cache
def _asset(*path: str) -> str:
    return resources.files("shared.research.report").joinpath(*path).read_text(encoding="utf-8")


def esc(value: Any) -> str:
    """Text as HTML (quotes included, so it is safe in attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> element or open a comment: <, > and & become \\u escapes, which JSON.parse
    reads back as the same characters (and so do the line separators JavaScript once treated as newlines)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _round(values: Iterable[float | None]) -> list[float | None]:
    return [None if v is None else round(v, _DIGITS) for v in values]


# --- building blocks -------------------------------------------------------------------------------------------------
def render_page(title: str, sections: Sequence[str], *, subtitle: str | None = None, kind: str = "report") -> str:
    """The page shell around ``sections`` (trusted HTML from the helpers here); ``title`` and ``subtitle`` are
    plain text and are escaped."""
    page = Template(_asset("templates", "page.html"))
    # The library goes in last and is never scanned for placeholders: substitute() does not re-read inserted text.
    return page.substitute(
        kind=esc(kind),
        title=esc(title),
        subtitle=f"<p>{esc(subtitle)}</p>" if subtitle else "",
        css=_asset("templates", "report.css"),
        body="\n".join(sections),
        echarts_version=ECHARTS_VERSION,
        echarts=_asset("vendor", "echarts.min.js"),
        charts_js=_asset("templates", "charts.js"),
    )


def section(heading: str, *fragments: str, note: str | None = None, anchor: str | None = None) -> str:
    """A titled section; ``heading`` and ``note`` are text (escaped), ``fragments`` trusted HTML."""
    ident = f' id="{esc(anchor)}"' if anchor else ""
    note_html = f'<p class="note">{esc(note)}</p>' if note else ""
    return f"<section{ident}>\n<h2>{esc(heading)}</h2>\n{note_html}\n" + "\n".join(fragments) + "\n</section>"


def table_html(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Iterable[str] = (),
    signed: Iterable[str] = (),
    gap_after: int | None = None,
    gap_text: str = "",
    scroll: bool = False,
) -> str:
    """A table of text cells, all escaped. ``numeric`` columns align right; ``signed`` ones are coloured by sign
    (red gain, green loss, as on A-share screens). With ``gap_after``, a row saying ``gap_text`` follows that many
    rows (to mark the trades left out between the first and the last ones)."""
    numeric_set, signed_set = set(numeric) | set(signed), set(signed)
    head = "".join(f'<th class="num">{esc(c)}</th>' if c in numeric_set else f"<th>{esc(c)}</th>" for c in columns)
    body: list[str] = []
    for i, row in enumerate(rows):
        if gap_after is not None and i == gap_after:
            body.append(f'<tr class="gap"><td colspan="{len(columns)}">{esc(gap_text)}</td></tr>')
        cells = []
        for name, value in zip(columns, row, strict=True):
            classes = []
            if name in numeric_set:
                classes.append("num")
            if name in signed_set and isinstance(value, str) and value not in ("", "n/a"):
                classes.append("neg" if value.startswith("-") else "pos" if value.strip("0.%,") else "")
            attr = f' class="{" ".join(c for c in classes if c)}"' if classes else ""
            cells.append(f"<td{attr}>{esc('' if value is None else value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"
    return f'<div class="scroll">{table}</div>' if scroll else table


def _chart(spec: Mapping[str, Any], tall: bool = False) -> str:
    cls = "chart tall" if tall else "chart"
    return f'<div class="{cls}"></div><script type="application/json">{_json_for_script(spec)}</script>'


def line_chart_html(
    x: Sequence[str],
    series: Sequence[Mapping[str, Any]],
    *,
    value_format: str = "ratio",
    zero_based: bool = False,
    group: str | None = "timeline",
) -> str:
    """A line (or, with ``area: True`` in a series, area) chart over ``x``. Each series: ``name``, ``data`` (one
    value or None per x), optional ``color``, ``area``. Charts of one ``group`` zoom together."""
    spec = {
        "type": "line",
        "x": list(x),
        "format": value_format,
        "zero": zero_based,
        "group": group,
        "series": [{**s, "data": _round(s["data"])} for s in series],
    }
    return _chart(spec)


def heatmap_html(
    matrix: Sequence[Sequence[float | None]],
    x_labels: Sequence[Any],
    y_labels: Sequence[Any],
    title: str | None = None,
    *,
    value_format: str = "ratio",
    x_name: str = "",
    y_name: str = "",
    labels: bool = True,
) -> str:
    """A heatmap of ``matrix[i][j]`` at (``x_labels[j]``, ``y_labels[i]``); None leaves a cell empty. Diverging
    colours (red above zero, green below, centred on 0) when the values have both signs, else one blue scale.
    ``title`` (text) is put above it when given. Returns an HTML fragment for ``render_page``."""
    if len(matrix) != len(y_labels):
        raise ReportInputError("matrix", f"has {len(matrix)} rows for {len(y_labels)} y labels")
    cells: list[list[Any]] = []
    for i, row in enumerate(matrix):
        if len(row) != len(x_labels):
            raise ReportInputError("matrix", f"row {i} has {len(row)} values for {len(x_labels)} x labels")
        for j, value in enumerate(row):
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            cells.append([j, i, round(float(value), _DIGITS)])
    values = [c[2] for c in cells]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    diverging = lo < 0.0 < hi
    if diverging:
        lo, hi = -max(-lo, hi), max(-lo, hi)
    elif lo == hi:
        lo, hi = lo - 1.0, hi + 1.0
    spec = {
        "type": "heatmap",
        "x": [str(v) for v in x_labels],
        "y": [str(v) for v in y_labels],
        "x_name": x_name,
        "y_name": y_name,
        "cells": cells,
        "format": value_format,
        "diverging": diverging,
        "vmin": lo,
        "vmax": hi,
        "labels": labels and len(cells) <= 600,  # beyond that the numbers do not fit in the cells
        "height": max(260, min(900, 28 * len(y_labels) + 140)),
        "group": None,
    }
    heading = f"<h3>{esc(title)}</h3>" if title else ""
    return heading + _chart(spec)


# --- the backtest report ---------------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return format_value("percent", value)


def _pre_json(data: Any) -> str:
    return f"<pre>{esc(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str))}</pre>"


def _manifest_section(manifest: Manifest) -> str:
    code = manifest.code_version
    rows = [
        ("Strategy", manifest.strategy),
        ("Inputs SHA-256", manifest.input_sha256),
        ("Package version", code.get("package") or "unknown"),
        ("Git commit", code.get("git_commit") or "unknown"),
    ]
    rows += [(str(k), json.dumps(v, ensure_ascii=False, default=str)) for k, v in sorted(manifest.extra.items())]
    return section(
        "Run manifest",
        table_html(("Item", "Value"), rows),
        "<h3>Parameters</h3>",
        _pre_json(manifest.params),
        "<h3>Engine configuration</h3>",
        _pre_json(manifest.config),
        note="What identifies the run: the same inputs hash, parameters, configuration and code give the same result.",
        anchor="manifest",
    )


def _trades_section(report: ReportData) -> str:
    columns = list(report.trades)
    total = report.trade_count
    half = HTML_TRADE_ROWS // 2
    if total > HTML_TRADE_ROWS:
        picks = [*range(half), *range(total - half, total)]
        note = (
            f"{total:,} trades; this page shows the first {half:,} and the last {half:,}. "
            "The report JSON and the run's trades table have them all."
        )
        gap: tuple[int | None, str] = (half, f"… {total - 2 * half:,} trades not shown …")
    else:
        picks = list(range(total))
        note = f"{total:,} trades." if total else "No trades."
        gap = (None, "")
    rows = [[report.trades[c][i] for c in columns] for i in picks]
    numeric = {"qty", "price", "amount", "commission", "stamp_duty", "transfer_fee", "fees", "order_id"}
    table = table_html(
        columns, rows, numeric=numeric, signed={"realised_pnl"}, gap_after=gap[0], gap_text=gap[1], scroll=True
    )
    return section("Trades", table if total else "", note=note, anchor="trades")


def _monthly_section(report: ReportData) -> str:
    table = report.monthly_returns
    years = [str(y) for y in table.years]
    heat = heatmap_html(table.values, _MONTHS, years, value_format="percent", x_name="month", y_name="year")
    rows = [
        [y, *(_pct(v) if v is not None else "" for v in values), _pct(total)]
        for y, values, total in zip(years, table.values, table.year_totals, strict=True)
    ]
    columns = ["Year", *_MONTHS, "Year total"]
    grid = table_html(columns, rows, signed=columns[1:])
    return section(
        "Monthly returns",
        heat,
        grid,
        note="Daily returns compounded within each month and each year (a partial first or last year covers the "
        "run's days only). Red is a gain, green a loss, as on A-share screens.",
        anchor="monthly",
    )


# Sleeve curves: distinct from each other and from the combined curve (near black) and the benchmark (grey).
_SLEEVE_COLOURS = ("#2f6fb2", "#d35400", "#8e44ad", "#16a085", "#c0392b", "#b7950b", "#2c3e50", "#e84393", "#6d4c41")


def _side_by_side_section(report: ReportData) -> str:
    side = report.side_by_side
    assert side is not None
    curves: list[dict[str, Any]] = [
        {"name": row.label, "data": row.equity, "color": _SLEEVE_COLOURS[i % len(_SLEEVE_COLOURS)]}
        for i, row in enumerate(side.sleeves)
    ]
    curves.append({"name": side.combined.label, "data": side.combined.equity, "color": "#111111"})
    metric_labels = [m.label for m in side.combined.metrics]
    columns = ["Sleeve", "Strategy", "Parameters", "Weight", "Initial capital", "Final equity", *metric_labels, "Fills"]
    rows = []
    for row in [*side.sleeves, side.combined]:
        params = json.dumps(row.params, ensure_ascii=False, sort_keys=True, default=str) if row.params else ""
        rows.append(
            [
                row.label,
                row.strategy,
                params,
                _pct(row.weight),
                f"{row.initial_equity:,.2f}",
                f"{row.final_equity:,.2f}",
                *(m.display for m in row.metrics),
                "" if row.fills is None else f"{row.fills:,}",
            ]
        )
    signed = {m.label for m in side.combined.metrics if m.key in ("total_return", "annual_return")}
    numeric = {"Weight", "Initial capital", "Final equity", "Fills", *metric_labels}
    return section(
        "Side by side",
        line_chart_html(report.dates, curves, value_format="growth"),
        table_html(columns, rows, numeric=numeric, signed=signed, scroll=True),
        note="Each sleeve ran on the same data as an independent sub-account with its weight of the initial cash "
        "(no rebalancing between sleeves); its curve is its equity over its own initial capital. The combined account "
        "is their sum, and the rest of this report is about it.",
        anchor="side-by-side",
    )


def render_html(report: ReportData) -> str:
    """The backtest report as one self-contained HTML page (see docs/reports.md)."""
    dates = report.dates
    name = "Strategy" if report.side_by_side is None else "Combined"
    curves: list[dict[str, Any]] = [{"name": name, "data": report.equity, "color": "#2f6fb2"}]
    if report.benchmark is not None:
        curves.append({"name": "Benchmark", "data": report.benchmark, "color": "#8e8e8e"})
    equity_note = "Growth of 1 CNY: equity over the initial cash"
    equity_note += (
        "; the benchmark's close over its first-day close." if report.benchmark is not None else " (no benchmark)."
    )
    sections = [
        section(
            "Summary",
            '<div class="grid2">',
            table_html(("Item", "Value"), [(r.label, r.display) for r in report.summary], numeric={"Value"}),
            table_html(
                ("Metric", "Value"),
                [(m.label, m.display) for m in report.metrics],
                numeric={"Value"},
            ),
            "</div>",
            note="Metrics as defined in docs/metrics.md (annualised with 252 trading days; losses as positive "
            "numbers).",
            anchor="metrics",
        ),
        *([_side_by_side_section(report)] if report.side_by_side is not None else []),
        section(
            "Equity against the benchmark",
            line_chart_html(dates, curves, value_format="growth"),
            note=equity_note,
            anchor="equity",
        ),
        section(
            "Drawdown (underwater)",
            line_chart_html(
                dates,
                [{"name": "Drawdown", "data": report.drawdown, "color": "#1e8449", "area": True}],
                value_format="percent",
                zero_based=True,
            ),
            note="Equity below its running peak (the initial cash is the first peak); the lowest point is the max "
            "drawdown of the metrics table.",
            anchor="drawdown",
        ),
        _monthly_section(report),
        section(
            f"Rolling Sharpe ratio ({report.rolling_window} trading days)",
            line_chart_html(
                dates,
                [{"name": "Rolling Sharpe", "data": report.rolling_sharpe, "color": "#7d3c98"}],
                value_format="ratio",
            ),
            note=f"Sharpe of the {report.rolling_window} days ending on each day, annualised with sqrt(252), risk-free "
            f"rate {report.risk_free_rate:.2%} a year; empty until the window is full.",
            anchor="rolling-sharpe",
        ),
    ]
    if report.exposure is not None:
        sections.append(
            section(
                "Exposure",
                line_chart_html(
                    dates,
                    [{"name": "Exposure", "data": report.exposure, "color": "#b9770e", "area": True}],
                    value_format="percent",
                    zero_based=True,
                ),
                note="Market value of the positions over equity at each close.",
                anchor="exposure",
            )
        )
    sections += [_trades_section(report), _manifest_section(report.manifest)]
    subtitle = f"{dates[0]} to {dates[-1]} · {len(dates):,} trading days · inputs {report.manifest.input_sha256[:12]}"
    return render_page(report.title, sections, subtitle=subtitle, kind="backtest report")


# --- optimisation results ------------------------------------------------------------------------------------------
def _flatten(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ReportInputError(f"rows[{index}]", f"must be a mapping, got {type(row).__name__}")
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("params", "metrics") and isinstance(value, Mapping):
            flat.update({str(k): v for k, v in value.items()})
        else:
            flat[str(key)] = value
    return flat


def _sort_labels(values: Iterable[Any]) -> list[Any]:
    unique = list(dict.fromkeys(v for v in values if v is not None))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in unique):
        return sorted(unique)
    return sorted(unique, key=str)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def render_optimisation_html(
    rows: Sequence[Mapping[str, Any]],
    x_param: str,
    y_param: str,
    objective: str,
    manifest: Mapping[str, Any],
    *,
    maximise: bool = True,
    title: str | None = None,
) -> str:
    """A page of optimisation results: a heatmap of ``objective`` over ``x_param`` x ``y_param`` (a cell holds the
    best value over the other parameters' values) and the table of every row, best first.

    A row is a mapping of parameter and metric values, flat or with ``params`` / ``metrics`` sub-mappings (they are
    merged). A row whose objective is None (a failed or infeasible point) is listed last and leaves its cell empty.
    ``manifest`` (strategy, data hash, search settings, ...) is shown as a table."""
    flat = [_flatten(r, i) for i, r in enumerate(rows)]
    for name, label in ((x_param, "x_param"), (y_param, "y_param"), (objective, "objective")):
        if flat and not any(name in r for r in flat):
            raise ReportInputError(label, f"{name!r} is in no row")
    if not isinstance(manifest, Mapping):
        raise ReportInputError("manifest", f"must be a mapping, got {type(manifest).__name__}")

    def score(row: dict[str, Any]) -> float | None:
        value = row.get(objective)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        return float(value)

    better = max if maximise else min
    xs, ys = _sort_labels(r.get(x_param) for r in flat), _sort_labels(r.get(y_param) for r in flat)
    x_index, y_index = {v: j for j, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    matrix: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    for row in flat:
        value = score(row)
        x, y = row.get(x_param), row.get(y_param)
        if value is None or x is None or y is None:
            continue
        current = matrix[y_index[y]][x_index[x]]
        matrix[y_index[y]][x_index[x]] = value if current is None else better(current, value)

    kind = _METRIC_LABELS.get(objective, ("", "ratio"))[1]
    value_format = "percent" if kind == "percent" else "ratio"
    scored = [r for r in flat if score(r) is not None]
    failed = [r for r in flat if score(r) is None]
    scored.sort(key=lambda r: score(r) or 0.0, reverse=maximise)
    ordered = scored + failed
    columns = list(dict.fromkeys([x_param, y_param, objective, *(k for r in flat for k in r)]))
    shown = ordered[:HTML_OPTIMISATION_ROWS]
    table_rows = [[_cell(r.get(c)) for c in columns] for r in shown]
    numeric = {c for c in columns if any(isinstance(r.get(c), int | float) for r in shown)}
    direction = "highest" if maximise else "lowest"
    note = f"{len(flat):,} points, {len(failed):,} without a value; sorted by {objective}, {direction} first."
    if len(ordered) > HTML_OPTIMISATION_ROWS:
        note += f" This page lists the first {HTML_OPTIMISATION_ROWS:,}."
    best = scored[0] if scored else None
    heat_note = (
        f"Each cell: the {direction} {objective} over the other parameters' values for that {x_param} and {y_param}."
    )
    manifest_rows = [(str(k), _cell(v)) for k, v in manifest.items()]
    sections = [
        section(
            "Best point",
            table_html(("Item", "Value"), [(c, _cell(best.get(c))) for c in columns] if best else []),
            note="The best row of the table." if best else "No point has a value.",
        ),
        section(
            f"{objective} over {x_param} and {y_param}",
            heatmap_html(matrix, xs, ys, value_format=value_format, x_name=x_param, y_name=y_param),
            note=heat_note,
            anchor="heatmap",
        ),
        section("All points", table_html(columns, table_rows, numeric=numeric, scroll=True), note=note, anchor="rows"),
        section("Run manifest", table_html(("Item", "Value"), manifest_rows), anchor="manifest"),
    ]
    strategy = manifest.get("strategy")
    page_title = title or f"Optimisation of {strategy or 'a strategy'}: {objective}"
    return render_page(page_title, sections, subtitle=f"{x_param} x {y_param}", kind="optimisation report")
