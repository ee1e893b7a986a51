"""The HTML report of a strategy instance's run so far (paper or live): the instance, its daily equity curve and the
metrics a backtest report gives over it, its positions, and its last fills. One self-contained page built from the
backtest report's pieces (shared.research.report: the page shell, tables and charts, the vendored chart library, no
network), so every text from the instance — a parameter value, a symbol, an error — is escaped as it is there."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from services.strategy.book import TradeFill
from services.strategy.live import Runner
from services.strategy.ports import UniverseSource
from services.strategy.store import InstanceRecord
from services.strategy.trading import PathUnavailable
from shared.core.domain import from_fen
from shared.platform.errors import ServiceError
from shared.platform.universe import Universe
from shared.research.report import line_chart_html, metric_rows, render_page, section, table_html

log = logging.getLogger(__name__)

REPORT_FILLS = 200  # the newest fills a page shows; execution's GET /v1/trades?strategy_instance_id= has them all
_CURVE_COLUMNS = ("Date", "Cash", "Market value", "Equity", "Turnover", "Fees", "Realised P&L")
_FILL_COLUMNS = ("Date", "Symbol", "Side", "Qty", "Price", "Commission", "Stamp duty", "Transfer fee", "Order", "Trade")


@dataclass(frozen=True)
class ReportInputs:
    """What the page shows, as read from the runner, the data service and execution."""

    instance: InstanceRecord
    performance: Mapping[str, Any]  # Runner.performance
    sleeve: Mapping[str, Any]  # Runner.sleeve (amounts in fen)
    fills: Sequence[TradeFill] | None  # every fill of the instance, oldest first; None: execution did not answer
    fills_error: str | None = None
    universe_size: int | None = None  # None: the data service did not answer


async def gather(instance: InstanceRecord, runner: Runner, universe: UniverseSource) -> ReportInputs:
    """Reads what the page needs. Execution or the data service not answering leaves their part out with a note
    (the rest of the report is the strategy service's own)."""
    performance = await runner.performance(instance)
    sleeve = await runner.sleeve(instance)
    fills: list[TradeFill] | None
    fills_error = None
    try:
        fills = await runner.path.trades(instance.instance_id)
    except PathUnavailable as exc:
        fills, fills_error = None, str(exc)
    size: int | None
    try:
        size = len(await universe.resolve(Universe.model_validate(instance.universe)))
    except (ServiceError, ValidationError):
        log.warning(
            "could not resolve an instance's universe for its report", extra={"instance_id": instance.instance_id}
        )
        size = None
    return ReportInputs(instance, performance, sleeve, fills, fills_error, size)


def _cny(fen: int) -> str:
    return f"{from_fen(fen):,}"


def _grouped(text: str) -> str:
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, frac = digits.partition(".")
    return f"{sign}{int(whole):,}.{frac}"


def _instance_section(inputs: ReportInputs) -> str:
    i = inputs.instance
    try:
        label = Universe.model_validate(i.universe).label()
    except ValidationError:
        label = json.dumps(i.universe, ensure_ascii=False, sort_keys=True)
    size = "unknown (the data service did not answer)" if inputs.universe_size is None else f"{inputs.universe_size:,}"
    rows: list[tuple[str, str]] = [
        ("Instance", i.instance_id),
        ("Strategy", i.strategy),
        ("Parameters", json.dumps(i.params, ensure_ascii=False, sort_keys=True)),
        ("Parameters version", str(i.params_version)),
        ("Universe", label),
        ("Stocks in the universe today", size),
        ("Account", i.account_id),
        ("Owner", i.owner),
        ("Mode", i.mode),
        ("State", i.state.value),
        ("Capital (CNY)", _cny(i.capital_fen)),
        ("Order timing", i.order_timing),
        ("Created", i.created_at.isoformat()),
    ]
    if i.error:
        rows.append(("Error", i.error.strip().splitlines()[-1]))
    return section("Instance", table_html(("Item", "Value"), rows), anchor="instance")


def _summary_section(inputs: ReportInputs) -> str:
    s = inputs.sleeve
    sleeve_rows = [
        ("Cash (CNY)", _cny(s["cash_fen"])),
        ("Market value (CNY)", _cny(s["market_value_fen"])),
        ("Equity (CNY)", _cny(s["cash_fen"] + s["market_value_fen"])),
        ("Realised P&L (CNY)", _cny(s["realised_fen"])),
        ("Unrealised P&L (CNY)", _cny(s["unrealised_fen"])),
        ("Fees paid (CNY)", _cny(s["fees_fen"])),
        ("Last bar", s["bar_date"] or "none yet"),
    ]
    metrics = inputs.performance.get("metrics")
    fragments = ['<div class="grid2">', table_html(("Item", "Value"), sleeve_rows, numeric={"Value"})]
    if metrics:
        rows = [(m.label, m.display) for m in metric_rows(metrics)]
        fragments.append(table_html(("Metric", "Value"), rows, numeric={"Value"}))
    fragments.append("</div>")
    note = (
        "The sleeve as the instance's own fills made it; metrics as a backtest report defines them "
        "(docs/metrics.md), over the instance's daily equity from its capital."
        if metrics
        else "No trading day yet: the metrics come with the first bar the instance trades on."
    )
    return section("Summary", *fragments, note=note, anchor="metrics")


def _equity_section(inputs: ReportInputs) -> str:
    curve = inputs.performance.get("equity_curve") or []
    if not curve:
        return section("Equity", note="No trading day yet.", anchor="equity")
    dates = [str(day["date"]) for day in curve]
    chart = line_chart_html(
        dates,
        [
            {"name": "Equity", "data": [float(day["equity"]) for day in curve], "color": "#2f6fb2"},
            {"name": "Cash", "data": [float(day["cash"]) for day in curve], "color": "#8e8e8e"},
            {"name": "Market value", "data": [float(day["market_value"]) for day in curve], "color": "#b9770e"},
        ],
        value_format="ratio",
    )
    rows = [
        [day["date"], *(_grouped(str(day[k])) for k in ("cash", "market_value", "equity", "turnover", "fees",
                                                       "realised_pnl"))]
        for day in reversed(curve)
    ]  # fmt: skip
    table = table_html(_CURVE_COLUMNS, rows, numeric=_CURVE_COLUMNS[1:], signed={"Realised P&L"}, scroll=True)
    return section(
        "Equity",
        chart,
        table,
        note=f"CNY at each close, {len(curve):,} trading days (newest first in the table): cash, the positions at "
        "that close, and the day's turnover, fees and realised P&L.",
        anchor="equity",
    )


def _positions_section(inputs: ReportInputs) -> str:
    positions = inputs.sleeve.get("positions") or []
    columns = ("Symbol", "Qty", "Sellable", "Cost (CNY)", "Market value (CNY)")
    rows = [
        [
            p["ts_code"],
            f"{p['qty']:,}",
            f"{p['sellable_qty']:,}",
            _cny(p["cost_fen"]),
            _cny(p["qty"] * p["close_fen"]) if p["close_fen"] else "n/a",
        ]
        for p in positions
    ]
    note = (
        f"{len(rows):,} position(s). Sellable: bought before today (T+1). Market value at the last close the "
        "instance has seen (n/a: not priced while it is not running)."
        if rows
        else "No positions."
    )
    table = table_html(columns, rows, numeric=columns[1:]) if rows else ""
    return section("Positions", table, note=note, anchor="positions")


def _fills_section(inputs: ReportInputs) -> str:
    if inputs.fills is None:
        return section(
            "Fills",
            note=f"Execution could not be read, so the fills are not shown: {inputs.fills_error}",
            anchor="fills",
        )
    total = len(inputs.fills)
    shown = inputs.fills[-REPORT_FILLS:]
    rows = [
        [
            f.trade_date.isoformat(),
            f.ts_code,
            f.side,
            f"{f.qty:,}",
            _cny(f.price_fen),
            _cny(f.commission_fen),
            _cny(f.stamp_duty_fen),
            _cny(f.transfer_fee_fen),
            f.client_order_id,
            f.trade_id,
        ]
        for f in reversed(shown)
    ]
    if total > len(shown):
        note = (
            f"{total:,} fills; the newest {len(shown):,} here, newest first. "
            "GET /api/v1/trades?strategy_instance_id= has them all."
        )
    else:
        note = f"{total:,} fill(s), newest first." if total else "No fills yet."
    numeric = ("Qty", "Price", "Commission", "Stamp duty", "Transfer fee")
    table = table_html(_FILL_COLUMNS, rows, numeric=numeric, scroll=True) if rows else ""
    return section("Fills", table, note=note, anchor="fills")


def render_instance_report(inputs: ReportInputs) -> str:
    """The page (same inputs, same bytes)."""
    i = inputs.instance
    curve = inputs.performance.get("equity_curve") or []
    span = f"{curve[0]['date']} to {curve[-1]['date']} · {len(curve):,} trading days" if curve else "no trading day yet"
    sections = [
        _instance_section(inputs),
        _summary_section(inputs),
        _equity_section(inputs),
        _positions_section(inputs),
        _fills_section(inputs),
    ]
    title = f"{i.strategy} · {i.mode} instance {i.instance_id[:8]}"
    return render_page(title, sections, subtitle=f"{i.state.value} · {span}", kind="strategy instance report")


__all__ = ["REPORT_FILLS", "ReportInputs", "gather", "render_instance_report"]
