"""Writes the per-part Grafana dashboards (grafana/dashboards/lianghua-{trading,risk,strategies,data,platform}.json).

The JSON files are what Grafana loads (grafana/provisioning/dashboards/lianghua.yml, folder "LiangHua"); this script
is where they are written from, so the five share one layout, one datasource and the same conventions. Change a
dashboard here, then run

    PYTHONPATH=$PWD python scripts/grafana_dashboards.py

and commit both (tests/unit/ops/test_dashboards.py fails while a file differs from what this script writes). The
overview (lianghua-overview.json) is kept by hand. docs/operations.md, "Dashboards", says what each panel shows."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # grafana/provisioning/datasources/prometheus.yml
SERVICES = "gateway|data|strategy|backtest|backtest-worker|risk|execution|notify"
ORDER_ROUTE = 'job="gateway", handler="/api/v1/orders", method="POST"'  # the order path as a user sends it
HOP_ROUTE = 'job=~"risk|execution", handler="/v1/orders", method="POST"'  # its hops behind the gateway

Json = dict[str, Any]


def target(ref: str, expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> Json:
    out: Json = {
        "refId": ref,
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
    }
    if instant:
        out["instant"] = True
    if table:
        out["format"] = "table"
    return out


def _targets(queries: list[tuple[str, str]], *, instant: bool = False, table: bool = False) -> list[Json]:
    return [
        target(chr(ord("A") + n), expr, legend, instant=instant, table=table)
        for n, (expr, legend) in enumerate(queries)
    ]


def _steps(*steps: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


@dataclass
class Layout:
    """Places panels left to right on Grafana's 24-column grid, a new line when a panel does not fit."""

    panels: list[Json] = field(default_factory=list)
    x: int = 0
    y: int = 0
    line_h: int = 0

    def place(self, panel: Json, w: int, h: int) -> None:
        if self.x + w > 24:
            self.x, self.y, self.line_h = 0, self.y + self.line_h, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.line_h = max(self.line_h, h)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.line_h = 0, self.y + self.line_h, 0
        self.place({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.line_h = 0, self.y + 1, 0

    def timeseries(
        self,
        title: str,
        description: str,
        queries: list[tuple[str, str]],
        *,
        unit: str = "short",
        w: int = 12,
        h: int = 8,
        minimum: float | None = 0,
        stacked: bool = False,
        thresholds: Json | None = None,
    ) -> None:
        defaults: Json = {
            "unit": unit,
            "color": {"mode": "palette-classic"},
            "custom": {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "gradientMode": "none",
                "showPoints": "never",
                "spanNulls": False,
                "axisLabel": "",
                "axisPlacement": "auto",
                "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
                "thresholdsStyle": {"mode": "line" if thresholds else "off"},
            },
        }
        if minimum is not None:
            defaults["min"] = minimum
        if thresholds is not None:
            defaults["thresholds"] = thresholds
        panel = {
            "type": "timeseries",
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {
                "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["mean", "max"]},
                "tooltip": {"mode": "multi", "sort": "desc"},
            },
            "targets": _targets(queries),
        }
        self.place(panel, w, h)

    def stat(
        self,
        title: str,
        description: str,
        queries: list[tuple[str, str]],
        *,
        unit: str = "short",
        decimals: int | None = 0,
        thresholds: Json | None = None,
        mappings: list[Json] | None = None,
        w: int = 6,
        h: int = 4,
    ) -> None:
        defaults: Json = {
            "unit": unit,
            "color": {"mode": "thresholds"},
            "thresholds": thresholds or _steps(("green", None)),
            "mappings": mappings or [],
        }
        if decimals is not None:
            defaults["decimals"] = decimals
        panel = {
            "type": "stat",
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value",
                "graphMode": "none",
                "justifyMode": "auto",
                "orientation": "auto",
                "textMode": "auto",
                "wideLayout": True,
                "showPercentChange": False,
            },
            "targets": _targets(queries, instant=True),
        }
        self.place(panel, w, h)

    def bargauge(
        self,
        title: str,
        description: str,
        queries: list[tuple[str, str]],
        *,
        unit: str,
        maximum: float,
        thresholds: Json,
        w: int = 12,
        h: int = 8,
    ) -> None:
        panel = {
            "type": "bargauge",
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "fieldConfig": {
                "defaults": {
                    "unit": unit,
                    "min": 0,
                    "max": maximum,
                    "color": {"mode": "thresholds"},
                    "thresholds": thresholds,
                },
                "overrides": [],
            },
            "options": {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "orientation": "horizontal",
                "displayMode": "gradient",
                "showUnfilled": True,
                "valueMode": "color",
                "namePlacement": "auto",
                "sizing": "auto",
                "minVizHeight": 16,
                "minVizWidth": 8,
                "maxVizHeight": 300,
            },
            "targets": _targets(queries, instant=True),
        }
        self.place(panel, w, h)

    def table(
        self,
        title: str,
        description: str,
        columns: list[tuple[str, str, str, int | None]],
        *,
        w: int = 24,
        h: int = 8,
        hide: tuple[str, ...] = ("Time", "job", "instance", "__name__"),
    ) -> None:
        """`columns`: (expr, column title, unit, decimals); one row per label set, the queries merged."""
        overrides = []
        for n, (_, name, unit, decimals) in enumerate(columns):
            if not name:
                continue
            properties: list[Json] = [{"id": "displayName", "value": name}, {"id": "unit", "value": unit}]
            if decimals is not None:
                properties.append({"id": "decimals", "value": decimals})
            overrides.append(
                {"matcher": {"id": "byName", "options": f"Value #{chr(ord('A') + n)}"}, "properties": properties}
            )
        if len(columns) == 1 and overrides:  # one query: Grafana names its column "Value", not "Value #A"
            overrides[0]["matcher"]["options"] = "Value"
        panel = {
            "type": "table",
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "fieldConfig": {
                "defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}},
                "overrides": overrides,
            },
            "options": {
                "showHeader": True,
                "cellHeight": "sm",
                "footer": {"show": False, "reducer": ["sum"], "fields": ""},
            },
            "transformations": [
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {"excludeByName": dict.fromkeys(hide, True), "renameByName": {}}},
            ],
            "targets": _targets([(expr, "") for expr, *_ in columns], instant=True, table=True),
        }
        self.place(panel, w, h)


def variable(name: str, label: str, metric: str, label_name: str, description: str) -> Json:
    """A multi-value template variable over one label's values (All = any value, including none)."""
    query = f"label_values({metric}, {label_name})"
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,  # on time range change
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
    }


def dashboard(uid: str, title: str, description: str, layout: Layout, variables: list[Json]) -> Json:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        # every LiangHua dashboard (tag lianghua) in a menu at the top
        "links": [
            {
                "title": "LiangHua",
                "type": "dashboards",
                "tags": ["lianghua"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "panels": layout.panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["lianghua"],
        "templating": {"list": variables},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "Asia/Shanghai",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


COUNT_RED = _steps(("green", None), ("red", 1))
COUNT_ORANGE = _steps(("green", None), ("orange", 1))
UP_DOWN = [
    {
        "type": "value",
        "options": {
            "0": {"text": "down", "color": "red", "index": 0},
            "1": {"text": "up", "color": "green", "index": 1},
        },
    }
]


def trading() -> Json:
    inst = 'instance=~"$instance"'
    p = Layout()
    p.row("Orders")
    p.stat(
        "Orders accepted",
        "Orders execution accepted (risk-approved) in the time range.",
        [(f'sum(increase(lh_orders_total{{status="accepted", {inst}}}[$__range]))', "")],
    )
    p.stat(
        "Fills",
        "Trades (broker fills) execution recorded in the time range.",
        [(f"sum(increase(lh_trades_total{{{inst}}}[$__range]))", "")],
    )
    p.stat(
        "Rejected by the broker",
        "Orders the broker rejected (status rejected) in the time range.",
        [(f'sum(increase(lh_orders_total{{status="rejected", {inst}}}[$__range]))', "")],
        thresholds=COUNT_ORANGE,
    )
    p.stat(
        "Refused by risk",
        "Orders risk turned down in the time range: rejected by a check or rule, or refused "
        "because risk could not decide (it fails closed).",
        [('sum(increase(lh_risk_decisions_total{outcome=~"rejected|error"}[$__range]))', "")],
        thresholds=COUNT_ORANGE,
    )
    p.timeseries(
        "Orders per minute by status",
        "Order state changes per minute, by the status entered "
        "(accepted, submitted, partially_filled, filled, cancelled, rejected, unknown).",
        [(f"sum by (status) (rate(lh_orders_total{{{inst}}}[5m])) * 60", "{{status}}")],
        unit="short",
    )
    p.timeseries(
        "Fills per minute",
        "Trades (fills) recorded per minute, per execution process.",
        [(f"sum by (instance) (rate(lh_trades_total{{{inst}}}[5m])) * 60", "{{instance}}")],
    )
    p.timeseries(
        "Rejects by reason (per minute)",
        "Why orders did not trade: risk's refusals by reason code (a "
        "check's, e.g. insufficient_cash, or a rule's, e.g. position_pct; an order refused for two reasons "
        "counts under each), risk unable to decide, execution refusing a submission (no valid approval, or "
        "the account cannot afford it), and broker rejections.",
        [
            ("sum by (code) (rate(lh_risk_denials_total[5m])) * 60", "risk: {{code}}"),
            ('sum(rate(lh_risk_decisions_total{outcome="error"}[5m])) * 60', "risk could not decide"),
            (f"sum(rate(lh_execution_refused_total{{{inst}}}[5m])) * 60", "execution refused"),
            (f'sum(rate(lh_orders_total{{status="rejected", {inst}}}[5m])) * 60', "broker rejected"),
        ],
        stacked=True,
    )
    p.table(
        "Risk refusals by reason in the time range",
        "Each reason code risk refused orders for, and how often, most frequent first.",
        [("sort_desc(sum by (code) (increase(lh_risk_denials_total[$__range])) > 0)", "refusals", "short", 0)],
        w=12,
    )
    p.row("Order-path latency")
    p.timeseries(
        "Order placement latency p50 / p99 (gateway)",
        "Time from the gateway receiving POST "
        "/api/v1/orders to its answer: risk's checks, execution's booking and the broker's acceptance "
        "included. The alert LianghuaOrderPathSlow fires above 0.5 s at p99.",
        [
            (
                f"histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{{{ORDER_ROUTE}}}"
                "[5m])))",
                "p50",
            ),
            (
                f"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{ORDER_ROUTE}}}"
                "[5m])))",
                "p99",
            ),
        ],
        unit="s",
        thresholds=_steps(("green", None), ("red", 0.5)),
    )
    p.timeseries(
        "Latency per hop p50 / p99 (risk, execution)",
        "The same order's time in risk (POST /v1/orders: "
        "checks, decision, forwarding to execution) and in execution (POST /v1/orders: booking and "
        "sending to the broker).",
        [
            (
                f"histogram_quantile(0.5, sum by (job, le) (rate(http_request_duration_seconds_bucket{{{HOP_ROUTE}}}"
                "[5m])))",
                "{{job}} p50",
            ),
            (
                f"histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket"
                f"{{{HOP_ROUTE}}}[5m])))",
                "{{job}} p99",
            ),
        ],
        unit="s",
    )
    p.timeseries(
        "Order placements by answer",
        "POST /api/v1/orders per minute at the gateway, by status class "
        "(2xx placed, 4xx refused: bad input or risk, 5xx: a service failed).",
        [(f"sum by (status) (rate(http_requests_total{{{ORDER_ROUTE}}}[5m])) * 60", "{{status}}")],
        stacked=True,
    )
    p.row("Per strategy instance")
    sid = 'instance_id=~"$strategy_instance"'
    p.timeseries(
        "Orders sent per strategy instance",
        "Orders each running instance sent since the strategy "
        "service started (an instance's series goes when it stops).",
        [(f"lh_strategy_instance_orders_sent{{{sid}}}", "{{instance_id}}")],
    )
    p.timeseries(
        "Fills per strategy instance",
        "Fills each running instance has booked since it began.",
        [(f"lh_strategy_instance_fills{{{sid}}}", "{{instance_id}}")],
    )
    p.row("QMT bridge and the broker")
    bridge = 'bridge_id=~"$bridge"'
    p.stat(
        "QMT bridge links",
        "Per bridge: up while the bridge has a live authenticated link to execution. A "
        "bridge bound to an account and down is LianghuaBrokerBridgeDisconnected.",
        [(f"max by (bridge_id) (lh_broker_bridge_connected{{{bridge}}})", "{{bridge_id}}")],
        thresholds=_steps(("red", None), ("green", 1)),
        mappings=UP_DOWN,
        w=8,
    )
    p.stat(
        "Bridges bound to an account",
        "Bridges an admin chose as some account's broker.",
        [(f"sum(lh_broker_bridge_bound{{{bridge}}})", "")],
        w=4,
    )
    p.stat(
        "Orders of unknown outcome",
        "Orders sent to a QMT bridge with no answer yet (a timeout or a "
        "disconnect): settled by querying the broker, never sent again.",
        [("sum(lh_broker_orders_unknown)", "")],
        thresholds=COUNT_ORANGE,
        w=6,
    )
    p.stat(
        "Reconciliation differences",
        "Position and cash differences the reconciliations with the broker found in the time range (0 expected).",
        [(f"sum(increase(lh_broker_reconciliation_differences_total{{{bridge}}}[$__range]))", "")],
        thresholds=COUNT_RED,
        w=6,
    )
    p.timeseries(
        "Bridge link and binding",
        "1 while linked (connected) and while bound to an account, per bridge.",
        [
            (f"max by (bridge_id) (lh_broker_bridge_connected{{{bridge}}})", "{{bridge_id}} connected"),
            (f"max by (bridge_id) (lh_broker_bridge_bound{{{bridge}}})", "{{bridge_id}} bound"),
        ],
        minimum=0,
    )
    p.timeseries(
        "Broker reconciliation differences and disagreements",
        "Differences found by reconciliations, and "
        "broker reports for orders already final with another outcome (never applied), per 15 minutes.",
        [
            (
                f"sum by (bridge_id) (increase(lh_broker_reconciliation_differences_total{{{bridge}}}[15m]))",
                "{{bridge_id}} differences",
            ),
            (
                f"sum by (bridge_id) (increase(lh_broker_reports_after_final_total{{{bridge}}}[15m]))",
                "{{bridge_id}} reports after final",
            ),
        ],
    )
    p.timeseries(
        "Bridge connections refused",
        "Connections refused (unknown bridge, bad signature, account "
        "mismatch) or closed for a bad frame, by reason, per 15 minutes.",
        [("sum by (reason) (increase(lh_broker_bridge_refused_total[15m]))", "{{reason}}")],
        w=24,
    )
    variables = [
        variable(
            "instance",
            "execution process",
            "lh_orders_total",
            "instance",
            "The execution processes (Prometheus's instance label) whose orders and fills are shown.",
        ),
        variable(
            "strategy_instance",
            "strategy instance",
            "lh_strategy_instance_orders_sent",
            "instance_id",
            "Strategy instances whose orders and fills are shown.",
        ),
        variable("bridge", "QMT bridge", "lh_broker_bridge_connected", "bridge_id", "QMT bridges shown."),
    ]
    return dashboard(
        "lianghua-trading",
        "LiangHua trading",
        "Orders by status, fills, rejects by reason, "
        "order-path latency, per strategy instance, the QMT bridge and broker reconciliation.",
        p,
        variables,
    )


def risk() -> Json:
    rule = 'rule=~"$rule"'
    p = Layout()
    p.row("Decisions")
    p.stat(
        "Decisions",
        "Orders risk decided on in the time range.",
        [("sum(increase(lh_risk_decisions_total[$__range]))", "")],
        w=4,
    )
    p.stat(
        "Refused",
        "Orders a check or rule refused in the time range.",
        [('sum(increase(lh_risk_decisions_total{outcome="rejected"}[$__range]))', "")],
        thresholds=COUNT_ORANGE,
        w=5,
    )
    p.stat(
        "Could not decide",
        "Orders refused because risk could not check them (market data, books or its "
        "database unavailable; it fails closed) in the time range.",
        [('sum(increase(lh_risk_decisions_total{outcome="error"}[$__range]))', "")],
        thresholds=COUNT_RED,
        w=5,
    )
    p.stat(
        "Scopes halted",
        "Scopes (global, accounts, strategy instances) halted now: nothing new trades there.",
        [('sum(lh_risk_trading_states{state="halted"})', "")],
        thresholds=COUNT_RED,
        w=5,
    )
    p.stat(
        "Scopes reducing",
        "Scopes where only orders that reduce a position pass.",
        [('sum(lh_risk_trading_states{state="reducing"})', "")],
        thresholds=COUNT_ORANGE,
        w=5,
    )
    p.timeseries(
        "Decisions per minute by outcome",
        "approved, rejected (a check or rule said no), error (risk could not decide).",
        [("sum by (outcome) (rate(lh_risk_decisions_total[5m])) * 60", "{{outcome}}")],
        stacked=True,
    )
    p.timeseries(
        "Denials by rule (per minute)",
        "Reasons risk refused orders for, by code: a check's "
        "(insufficient_cash, price_limit, trading_halted, ...) or a rule's finding (position_pct, "
        "order_rate_second, blacklisted, ...). An order refused for two reasons counts under each.",
        [("sum by (code) (rate(lh_risk_denials_total[5m])) * 60", "{{code}}")],
        stacked=True,
    )
    p.row("Limits")
    p.bargauge(
        "Limit utilisation (largest of the accounts' last orders)",
        "For each limit rule and code: the largest share of the limit among "
        "the last order risk checked for each account in the past 15 minutes (100%: at the limit; above: that order "
        "was refused). A limit no order touched for 15 minutes is not shown. Which account: the risk alerts and "
        "decisions. Warnings start at the rule's warn_at_pct.",
        [(f"max by (rule, code) (lh_risk_limit_utilisation_ratio{{{rule}}})", "{{rule}} {{code}}")],
        unit="percentunit",
        maximum=1.0,
        thresholds=_steps(("green", None), ("orange", 0.8), ("red", 1)),
        h=10,
    )
    p.timeseries(
        "Limit utilisation over time",
        "The same shares over time, per limit (gaps: no order touched it for 15 minutes).",
        [(f"max by (rule, code) (lh_risk_limit_utilisation_ratio{{{rule}}})", "{{code}}")],
        unit="percentunit",
        thresholds=_steps(("green", None), ("red", 1)),
        h=10,
    )
    p.row("Trading states, stops and alerts")
    p.timeseries(
        "Trading states",
        "Scopes not trading normally, by scope (global, account, instance) and state "
        "(reducing, halted), from risk's table every 15 s.",
        [("max by (scope, state) (lh_risk_trading_states)", "{{scope}} {{state}}")],
        stacked=True,
    )
    p.timeseries(
        "Stops triggered",
        "Stops (stop-loss, take-profit, trailing) that triggered and had their exit "
        "attempted, by kind, per 15 minutes.",
        [("sum by (kind) (increase(lh_risk_stops_triggered_total[15m]))", "{{kind}}")],
        stacked=True,
    )
    p.timeseries(
        "Risk alerts",
        "risk.alert events per 15 minutes: warning (an order came near a limit), critical (an "
        "account in breach). They reach people through Alertmanager (docs/operations.md).",
        [("sum by (severity) (increase(lh_risk_alerts_total[15m]))", "{{severity}}")],
        stacked=True,
    )
    p.timeseries(
        "Books against execution's records",
        "Differences between risk's hot books and execution's records "
        "that reconciliation found and repaired (per 15 minutes, by what), and seconds since the last "
        "reconciliation (LianghuaRiskReconciliationStalled above 600 s).",
        [
            ("sum by (what) (increase(lh_risk_state_drift_total[15m]))", "{{what}} drift"),
            ("time() - max(lh_risk_state_reconciled_timestamp_seconds)", "seconds since reconciled"),
        ],
    )
    variables = [
        variable(
            "rule",
            "rule",
            "lh_risk_limit_utilisation_ratio",
            "rule",
            "Limit rules whose utilisation is shown.",
        )
    ]
    return dashboard(
        "lianghua-risk",
        "LiangHua risk",
        "Risk decisions, denials by rule, limit utilisation, "
        "trading states (kill switch), stops triggered and risk alerts.",
        p,
        variables,
    )


def strategies() -> Json:
    sid = 'instance_id=~"$instance_id"'
    p = Layout()
    p.row("Instances")
    p.stat(
        "Instances by state",
        "Strategy instances in each state (from the strategy service's table).",
        [("sum by (state) (lh_strategy_instances)", "{{state}}")],
        w=12,
    )
    p.stat(
        "Failures",
        "Instances that failed (the strategy raised) in the time range.",
        [("sum(increase(lh_strategy_instance_failures_total[$__range]))", "")],
        thresholds=COUNT_RED,
    )
    p.stat(
        "Code reloads refused",
        "Changed strategy code not taken in the time range (the file did not import, or "
        "an instance's params no longer validate): the instances kept their code.",
        [("sum(increase(lh_strategy_code_reload_failures_total[$__range]))", "")],
        thresholds=COUNT_ORANGE,
    )
    p.table(
        "Instances now",
        "One row per running instance: equity after its last bar, P&L (equity less capital), "
        "realised and unrealised P&L, fills, orders sent since the service started, and how many days its "
        "last bar is behind the newest day the data service holds in full (0: up to date).",
        [
            (f"lh_strategy_instance_equity_cny{{{sid}}}", "equity", "currencyCNY", 2),
            (f"lh_strategy_instance_pnl_cny{{{sid}}}", "P&L", "currencyCNY", 2),
            (f"lh_strategy_instance_realised_pnl_cny{{{sid}}}", "realised P&L", "currencyCNY", 2),
            (f"lh_strategy_instance_unrealised_pnl_cny{{{sid}}}", "unrealised P&L", "currencyCNY", 2),
            (f"lh_strategy_instance_fills{{{sid}}}", "fills", "short", 0),
            (f"lh_strategy_instance_orders_sent{{{sid}}}", "orders sent", "short", 0),
            (
                "(scalar(max(lh_data_complete_through_timestamp_seconds)) - "
                f"lh_strategy_instance_last_bar_timestamp_seconds{{{sid}}}) / 86400",
                "days behind the data",
                "short",
                0,
            ),
        ],
    )
    p.table(
        "Instance states",
        "Each instance's state now (its series at 1).",
        [(f"lh_strategy_instance_state{{{sid}}} == 1", "", "short", 0)],
        h=6,
        hide=("Time", "job", "instance", "__name__", "Value"),
    )
    p.row("Money")
    p.timeseries(
        "Equity per instance",
        "Each instance's equity (cash and market value of its sleeve) after its last bar.",
        [(f"lh_strategy_instance_equity_cny{{{sid}}}", "{{instance_id}}")],
        unit="currencyCNY",
        minimum=None,
    )
    p.timeseries(
        "P&L per instance",
        "Equity less the capital it was given.",
        [(f"lh_strategy_instance_pnl_cny{{{sid}}}", "{{instance_id}}")],
        unit="currencyCNY",
        minimum=None,
    )
    p.timeseries(
        "Realised and unrealised P&L",
        "Realised since it began (sells less fees less their cost); "
        "unrealised at its last bar's close (market value less cost).",
        [
            (f"lh_strategy_instance_realised_pnl_cny{{{sid}}}", "{{instance_id}} realised"),
            (f"lh_strategy_instance_unrealised_pnl_cny{{{sid}}}", "{{instance_id}} unrealised"),
        ],
        unit="currencyCNY",
        minimum=None,
        w=24,
    )
    p.row("Bars and failures")
    p.timeseries(
        "Bar lag",
        "Seconds since the trading day (00:00 UTC) of each instance's last bar (a daily instance "
        "is normally 8 h to 3.5 days behind: bars arrive after the close; weekends and holidays add days), "
        "and the same for the newest day the data service holds in full.",
        [
            (f"time() - lh_strategy_instance_last_bar_timestamp_seconds{{{sid}}}", "{{instance_id}}"),
            ("time() - (max(lh_data_complete_through_timestamp_seconds) > 0)", "data complete through"),
        ],
        unit="s",
    )
    p.timeseries(
        "Bar processing time",
        "Time to process one bar, orders included: p50, p95 and the mean.",
        [
            ("histogram_quantile(0.5, sum by (le) (rate(lh_strategy_instance_bar_seconds_bucket[1h])))", "p50"),
            ("histogram_quantile(0.95, sum by (le) (rate(lh_strategy_instance_bar_seconds_bucket[1h])))", "p95"),
            (
                "sum(rate(lh_strategy_instance_bar_seconds_sum[1h])) / "
                "sum(rate(lh_strategy_instance_bar_seconds_count[1h]))",
                "mean",
            ),
        ],
        unit="s",
    )
    p.timeseries(
        "Failures and code reloads",
        "Per hour: instances that failed, code reloads refused by reason "
        "(file, instance) and instances that took changed code.",
        [
            ("sum(increase(lh_strategy_instance_failures_total[1h]))", "failed instances"),
            ("sum by (reason) (increase(lh_strategy_code_reload_failures_total[1h]))", "reload refused: {{reason}}"),
            ("sum(increase(lh_strategy_code_reloads_total[1h]))", "reloaded"),
        ],
        w=24,
    )
    variables = [
        variable(
            "instance_id",
            "strategy instance",
            "lh_strategy_instance_equity_cny",
            "instance_id",
            "Strategy instances shown.",
        )
    ]
    return dashboard(
        "lianghua-strategies",
        "LiangHua strategies",
        "Per strategy instance: equity, P&L, bar lag, state; failures and code reloads.",
        p,
        variables,
    )


def data() -> Json:
    kind = 'kind=~"$kind"'
    p = Layout()
    p.row("Ingest")
    p.stat(
        "Update lag",
        "Trading days whose data is out (after the update time) but not stored in full (0 "
        "expected; LianghuaMarketDataBehind after 2 h).",
        [("max(lh_data_update_lag_days)", "")],
        unit="d",
        thresholds=COUNT_ORANGE,
    )
    p.stat(
        "Complete through",
        "The newest trading day stored in full (00:00 Asia/Shanghai).",
        [("max(lh_data_complete_through_timestamp_seconds) * 1000", "")],
        unit="dateTimeAsLocalNoDateIfToday",
        decimals=None,
    )
    p.stat(
        "Quality errors",
        "Error findings of the newest quality report (docs/data-quality.md).",
        [('max(lh_data_quality_findings{severity="error"})', "")],
        thresholds=COUNT_RED,
    )
    p.stat(
        "Failed runs",
        "Ingest runs that failed or were interrupted in the time range.",
        [(f'sum(increase(lh_data_ingest_runs_total{{status=~"failed|interrupted", {kind}}}[$__range]))', "")],
        thresholds=COUNT_RED,
    )
    p.timeseries(
        "Ingest runs",
        "Runs finished per hour by kind (backfill, update, import) and status.",
        [(f"sum by (kind, status) (increase(lh_data_ingest_runs_total{{{kind}}}[1h]))", "{{kind}} {{status}}")],
        stacked=True,
    )
    p.timeseries(
        "Rows written",
        "Rows written by ingest runs per second, by table.",
        [("sum by (table) (rate(lh_data_ingest_rows_total[5m]))", "{{table}}")],
        unit="rowsps",
        stacked=True,
    )
    p.timeseries(
        "Update lag",
        "Trading days out but not stored in full, and days since the newest day stored in full.",
        [
            ("max(lh_data_update_lag_days)", "days out, not stored"),
            ("(time() - (max(lh_data_complete_through_timestamp_seconds) > 0)) / 86400", "days since complete-through"),
        ],
        unit="short",
    )
    p.timeseries(
        "Since the last successful run",
        "Seconds since the last successful run of each kind ended.",
        [
            (
                "time() - max by (kind) "
                f'(lh_data_ingest_last_finished_timestamp_seconds{{status="succeeded", {kind}}} > 0)',
                "{{kind}}",
            )
        ],
        unit="s",
    )
    p.timeseries(
        "Quality findings",
        "Findings of the newest quality report, by severity.",
        [("max by (severity) (lh_data_quality_findings)", "{{severity}}")],
    )
    p.timeseries(
        "Optional endpoints skipped",
        "Ingest runs that did without an endpoint the provider token may not use, per hour.",
        [("sum by (api) (increase(lh_data_ingest_skipped_endpoints_total[1h]))", "{{api}}")],
    )
    p.row("Real-time feed")
    p.stat(
        "Feed freshness",
        "Seconds since the newest snapshot a data process received (the freshest process). "
        "Outside trading hours it grows; empty: no snapshot yet.",
        [("min(lh_quotes_snapshot_age_seconds)", "")],
        unit="s",
        decimals=1,
        thresholds=_steps(("green", None), ("orange", 10), ("red", 60)),
    )
    p.stat(
        "Snapshots received",
        "Snapshots (one per code) the feeds delivered in the time range.",
        [("sum(increase(lh_quotes_received_total[$__range]))", "")],
    )
    p.stat(
        "Snapshots refused",
        "Snapshots dropped (never stored) in the time range, all reasons.",
        [("sum(increase(lh_quotes_rejected_total[$__range]))", "")],
        thresholds=COUNT_ORANGE,
    )
    p.stat(
        "Quote bridges refused",
        "Bridge connections refused on the quotes channel in the time range.",
        [("sum(increase(lh_quotes_bridge_refused_total[$__range]))", "")],
        thresholds=COUNT_ORANGE,
    )
    p.timeseries(
        "Feed freshness per process",
        "Seconds since the newest snapshot each data process received.",
        [("lh_quotes_snapshot_age_seconds", "{{instance}}")],
        unit="s",
    )
    p.timeseries(
        "Snapshots received",
        "Snapshots per second, by source.",
        [("sum by (source) (rate(lh_quotes_received_total[5m]))", "{{source}}")],
        unit="ops",
    )
    p.timeseries(
        "Quotes refused by reason",
        "Snapshots dropped per minute, by reason (malformed, stale, off_tick, "
        "outside_limits, other_day, ...: docs/quotes.md).",
        [("sum by (reason) (rate(lh_quotes_rejected_total[5m])) * 60", "{{reason}}")],
        stacked=True,
    )
    p.timeseries(
        "Quote bridge connections refused",
        "Per 15 minutes, by code.",
        [("sum by (code) (increase(lh_quotes_bridge_refused_total[15m]))", "{{code}}")],
    )
    variables = [
        variable(
            "kind", "ingest kind", "lh_data_ingest_runs_total", "kind", "Ingest kinds shown (backfill, update, import)."
        )
    ]
    return dashboard(
        "lianghua-data",
        "LiangHua data",
        "Market data: ingest runs, rows, update lag, quality findings, real-time feed freshness and quotes refused.",
        p,
        variables,
    )


def platform() -> Json:
    job = 'job=~"$job"'
    p = Layout()
    p.row("Services")
    p.stat(
        "LiangHua processes up",
        "Processes Prometheus can scrape, out of 8 (seven services and the backtest worker).",
        [(f'sum(up{{job=~"{SERVICES}"}})', "")],
        thresholds=_steps(("red", None), ("orange", 1), ("green", 8)),
    )
    p.stat(
        "MariaDB",
        "mysqld_exporter could query MariaDB at its last scrape.",
        [("min(mysql_up)", "")],
        thresholds=_steps(("red", None), ("green", 1)),
        mappings=UP_DOWN,
    )
    p.stat(
        "Redis",
        "redis_exporter could reach Redis at its last scrape.",
        [("min(redis_up)", "")],
        thresholds=_steps(("red", None), ("green", 1)),
        mappings=UP_DOWN,
    )
    p.stat(
        "RabbitMQ",
        "Prometheus could scrape RabbitMQ's prometheus plugin.",
        [('min(up{job="rabbitmq"})', "")],
        thresholds=_steps(("red", None), ("green", 1)),
        mappings=UP_DOWN,
    )
    p.timeseries(
        "Request rate per service",
        "HTTP requests per second each service handled (all routes).",
        [(f"sum by (job) (rate(http_requests_total{{{job}}}[5m]))", "{{job}}")],
        unit="reqps",
    )
    p.timeseries(
        "Error rate per service (5xx share)",
        "Share of each service's requests answered 5xx (LianghuaHighErrorRate above 5%).",
        [
            (
                f'sum by (job) (rate(http_requests_total{{status="5xx", {job}}}[5m])) / sum by (job) '
                f"(rate(http_requests_total{{{job}}}[5m]))",
                "{{job}}",
            )
        ],
        unit="percentunit",
        thresholds=_steps(("green", None), ("red", 0.05)),
    )
    p.timeseries(
        "Latency p50 / p99 per service",
        "HTTP request duration per service, all routes.",
        [
            (
                f"histogram_quantile(0.5, sum by (job, le) (rate(http_request_duration_seconds_bucket{{{job}}}[5m])))",
                "{{job}} p50",
            ),
            (
                f"histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket{{{job}}}[5m])))",
                "{{job}} p99",
            ),
        ],
        unit="s",
    )
    p.timeseries(
        "Event-loop lag p99 per service",
        "How late each service's event loop wakes a task (probed every 0.5 s): a blocked loop answers everything late.",
        [
            (
                f"histogram_quantile(0.99, sum by (job, le) (rate(lh_event_loop_lag_seconds_bucket{{{job}}}[5m])))",
                "{{job}} p99",
            ),
            (
                f"max by (job) (rate(lh_event_loop_lag_seconds_sum{{{job}}}[5m]) / "
                f"rate(lh_event_loop_lag_seconds_count{{{job}}}[5m]))",
                "{{job}} mean",
            ),
        ],
        unit="s",
    )
    p.row("Database")
    p.timeseries(
        "DB pool connections in use",
        "Connections each service has checked out of its pool, the "
        "overflow beyond the pool's size, and the size (10 connections, 10 overflow at most).",
        [
            (f'sum by (job) (lh_db_pool_connections{{state="checked_out", {job}}})', "{{job}} in use"),
            (f'sum by (job) (lh_db_pool_connections{{state="overflow", {job}}})', "{{job}} overflow"),
            (f"max(lh_db_pool_size{{{job}}})", "pool size"),
        ],
    )
    p.timeseries(
        "DB transaction retries",
        "Units of work run again after a transient database error, per minute, by service and reason.",
        [(f"sum by (job, reason) (rate(lh_db_transaction_retries_total{{{job}}}[5m])) * 60", "{{job}} {{reason}}")],
    )
    p.timeseries(
        "MariaDB connections",
        "Connections open to MariaDB (threads_connected), those running a query, "
        "and max_connections (mysqld_exporter).",
        [
            ("max(mysql_global_status_threads_connected)", "connected"),
            ("max(mysql_global_status_threads_running)", "running"),
            ("max(mysql_global_variables_max_connections)", "max_connections"),
        ],
    )
    p.timeseries(
        "Redis clients and memory",
        "Clients connected to Redis and connections it refused (maxclients) per 15 minutes (redis_exporter).",
        [
            ("max(redis_connected_clients)", "connected clients"),
            ("sum(increase(redis_rejected_connections_total[15m]))", "refused connections"),
        ],
    )
    p.row("RabbitMQ")
    p.timeseries(
        "Queue depth",
        "Messages ready for delivery per queue (RabbitMQ's prometheus plugin, per object); "
        "LianghuaRabbitMQBacklog above 1,000 for 10 minutes.",
        [('sum by (queue) (rabbitmq_queue_messages_ready{queue!~".*dead-letters"})', "{{queue}}")],
    )
    p.timeseries(
        "Dead letters",
        "Messages in the dead-letter queues (events a consumer could not read or handle): LianghuaDeadLetters above 0.",
        [
            ('sum by (queue) (rabbitmq_queue_messages_ready{queue=~".*dead-letters"})', "{{queue}}"),
            (
                "sum by (job, consumer) (increase(lh_bus_events_rejected_total[15m]))",
                "{{job}} {{consumer}} unreadable (15 min)",
            ),
        ],
        thresholds=_steps(("green", None), ("red", 1)),
    )
    p.timeseries(
        "Unacknowledged messages and consumers",
        "Messages delivered to consumers and not yet acknowledged, "
        "and the consumers per queue (0: nobody is reading it).",
        [
            ('sum by (queue) (rabbitmq_queue_messages_unacked{queue!~".*dead-letters"})', "{{queue}} unacked"),
            ('sum by (queue) (rabbitmq_queue_consumers{queue!~".*dead-letters"})', "{{queue}} consumers"),
        ],
        w=24,
    )
    p.row("Notifications")
    p.timeseries(
        "Alertmanager notifications failed",
        "Notifications Alertmanager could not deliver, per 15 "
        "minutes, by integration (email, webhook), beside those it sent.",
        [
            ("sum by (integration) (increase(alertmanager_notifications_failed_total[15m]))", "{{integration}} failed"),
            ("sum by (integration) (increase(alertmanager_notifications_total[15m]))", "{{integration}} sent"),
        ],
    )
    p.timeseries(
        "Robot messages failed (notify)",
        "DingTalk and WeCom robot sends that failed (retried), by robot "
        "and reason, and business alerts notify could not post to Alertmanager, per 15 minutes.",
        [
            ("sum by (robot, reason) (increase(lh_notify_robot_send_failures_total[15m]))", "{{robot}} {{reason}}"),
            ("sum(increase(lh_notify_alertmanager_post_failures_total[15m]))", "posts to Alertmanager failed"),
            ("sum by (robot) (lh_notify_pending_notifications)", "{{robot}} pending"),
        ],
    )
    variables = [variable("job", "service", "http_requests_total", "job", "Services shown.")]
    return dashboard(
        "lianghua-platform",
        "LiangHua platform",
        "Request rate, errors and latency per service, "
        "event-loop lag, database pools, RabbitMQ queues and dead letters, MariaDB and Redis, and "
        "notifications that failed.",
        p,
        variables,
    )


DASHBOARDS = {
    "lianghua-trading.json": trading,
    "lianghua-risk.json": risk,
    "lianghua-strategies.json": strategies,
    "lianghua-data.json": data,
    "lianghua-platform.json": platform,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date (run scripts/grafana_dashboards.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
