"""The Grafana dashboards and the alert rules query only metrics that LiangHua's processes really expose.

Every metric name used in a dashboard target, a dashboard's template variable or an alert rule must appear in the
/metrics output of at least one LiangHua app (each built in standalone mode and given a few requests, so the http_*
series exist) or in the backtest worker's registry, or be one of the standard exporters' series listed below; the
queries must parse (promtool); the provisioning must point at the compose services; each per-part dashboard shows
what issue 16 asks of it and is what scripts/grafana_dashboards.py writes."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
ALERTS = ROOT / "prometheus" / "alerts.yml"
DATASOURCE_UID = "prometheus"

HTTP_APPS = {  # process -> module with create_app(settings, infra)
    "gateway": "gateway.app",
    "data": "services.data.app",
    "strategy": "services.strategy.app",
    "backtest": "services.backtest.app",
    "risk": "services.risk.app",
    "execution": "services.execution.app",
    "notify": "services.notify.app",
}
WORKER_MODULE = "services.backtest.worker"
# Series Prometheus writes itself for every scrape target: no app exposes them.
PROMETHEUS_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}
# Series of the standard exporters of the backing services, and of Alertmanager, that the alert rules and the
# dashboards may use: not LiangHua's to expose, so listed here by hand, each as the exporter documents it
# (docs/operations.md, "Metrics the rules read"). A rule or panel using any other name from them fails the tests
# below until it is added here, from the exporter's documentation.
EXPORTER_SERIES = {
    # prom/mysqld-exporter: 1 when it could query MariaDB at the scrape
    "mysql_up",
    # prom/mysqld-exporter's global status and variables collectors (on by default; SHOW GLOBAL STATUS / VARIABLES
    # need no grant): Threads_connected, Threads_running, max_connections
    "mysql_global_status_threads_connected",
    "mysql_global_status_threads_running",
    "mysql_global_variables_max_connections",
    # oliver006/redis_exporter: 1 when it could reach Redis at the scrape
    "redis_up",
    # oliver006/redis_exporter, from INFO clients / stats: connected_clients, rejected_connections
    "redis_connected_clients",
    "redis_rejected_connections_total",
    # RabbitMQ's rabbitmq_prometheus plugin, /metrics/per-object: per queue (vhost, queue labels)
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_queue_messages",
    "rabbitmq_queue_consumers",
    # Alertmanager's own metrics (integration label: email, webhook, ...)
    "alertmanager_notifications_total",
    "alertmanager_notifications_failed_total",
}
# What each per-service panel (request rate, errors, latency) needs from every HTTP process.
HTTP_SERIES = {"http_requests_total", "http_request_duration_seconds_bucket"}


# --- PromQL: which metric names does an expression select? ---------------------------------------------------

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)        # Grafana: $__range, ${__rate_interval}, $job
    | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[A-Za-z0-9]*)  # 0.99, 1e3, 5m, 1h30m
    | (?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<operator>=~|!~|!=|==|<=|>=|[-+*/%^<>=@(){}\[\],:])
    | (?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}  # followed by a list of label names


def promql_tokens(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenize PromQL at {expr[pos : pos + 20]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("space", "comment"):
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


def _closing(tokens: list[tuple[str, str]], start: int, close: str) -> int:
    for i in range(start, len(tokens)):
        if tokens[i][1] == close:
            return i
    raise ValueError(f"unbalanced PromQL: no {close!r} after token {start}")


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression: identifiers that are not functions or aggregations (followed
    by `(` or by/without), keywords, label names (inside `{}` and grouping lists) or durations (inside `[]`);
    plus `{__name__="..."}` selectors."""
    tokens = promql_tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1].lower() if i + 1 < len(tokens) else ""
        if text == "{":
            end = _closing(tokens, i, "}")
            matchers = tokens[i + 1 : end]
            for j in range(len(matchers) - 2):
                if matchers[j][1] == "__name__" and matchers[j + 1][1] == "=" and matchers[j + 2][0] == "string":
                    names.add(matchers[j + 2][1][1:-1])
            i = end + 1
        elif text == "[":
            i = _closing(tokens, i, "]") + 1
        elif kind == "identifier" and text.lower() in _GROUPING and following == "(":
            i = _closing(tokens, i + 1, ")") + 1
        elif kind == "identifier" and (text.lower() in _KEYWORDS or following in ("(", "by", "without")):
            i += 1
        else:
            if kind == "identifier":
                names.add(text)
            i += 1
    return names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum by (job) (rate(http_requests_total[1m]))", {"http_requests_total"}),
        (
            'histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket{job=~"a|b"}[5m])))',
            {"http_request_duration_seconds_bucket"},
        ),
        (
            'sum by(job)(rate(x_total{status="5xx"}[5m])) / sum(rate(x_total[5m])) or sum(rate(y[5m])) * 0',
            {"x_total", "y"},
        ),
        ('sum(increase(lh_orders_total{status="accepted"}[$__range]))', {"lh_orders_total"}),
        ('up{job=~"gateway|data"} == 0', {"up"}),
        ("rate(a[5m] offset 1h) > bool 0", {"a"}),
        ("sum(a) without (instance) / on (job) group_left (team) b", {"a", "b"}),
        ('{__name__="foo_total", job="x"}', {"foo_total"}),
        ('label_replace(a, "dst", "$1", "src", "(.*)")', {"a"}),
        ("max_over_time(a:recorded[1h:5m]) > Inf", {"a:recorded"}),
        ("topk by (job) (5, c)", {"c"}),
        ("sum(rate(lh_trades_total[${__rate_interval}])) * 60", {"lh_trades_total"}),
        (
            'sort_desc(sum by (code) (increase(lh_risk_denials_total{job=~"$job"}[$__range])) > 0)',
            {"lh_risk_denials_total"},
        ),
        (
            '(scalar(max(lh_data_complete_through_timestamp_seconds)) - x{instance_id=~"$instance_id"}) / 86400',
            {"lh_data_complete_through_timestamp_seconds", "x"},
        ),
        ("time() - (max(a) > 0)", {"a"}),
    ],
)
def test_metric_names_finds_the_metrics_of_an_expression(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


# --- what the dashboards and alert rules query ------------------------------------------------------------------


def load_dashboard(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a JSON object"
    return data


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels, including those nested in collapsed rows."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every Prometheus query in the dashboard."""
    out = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                out.append(
                    (f"panel {panel.get('id')} {panel.get('title')!r} target {target.get('refId')}", target["expr"])
                )
    return out


# label_values(metric, label) or label_values(label): what a template variable of type query lists.
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<metric>[^,]+?)\s*,\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$"
)


def dashboard_variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    variables = dashboard.get("templating", {}).get("list", [])
    assert isinstance(variables, list)
    return variables


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query")
    return str(query.get("query", "") if isinstance(query, dict) else query or "")


def variable_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, series selector) of each template variable listing a label's values: its metric must exist too."""
    out = []
    for variable in dashboard_variables(dashboard):
        match = _LABEL_VALUES.match(variable_query(variable))
        assert match, f"variable {variable.get('name')}: only label_values(metric, label) queries are used"
        assert match.group("metric"), f"variable {variable.get('name')}: name the metric in label_values"
        out.append((f"variable {variable['name']}", match.group("metric")))
    return out


def concrete_expr(expr: str, variables: set[str]) -> str:
    """The query Prometheus receives: Grafana's built-in variables as a dashboard would fill them, and each template
    variable as its "All" value, `.*` (they are only used as regex matchers: `label=~"$var"`)."""
    out = _GRAFANA_VARIABLES.sub(lambda m: "300" if m.group(1).endswith(("_s", "_ms")) else "5m", expr)
    for name in variables:
        out = re.sub(r"=~\"\$(?:\{" + name + r"\}|" + name + r"\b)\"", '=~".*"', out)
    return out


def alert_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [
        (f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def test_the_overview_dashboard_exists() -> None:
    assert ROOT / "grafana" / "dashboards" / "lianghua-overview.json" in DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_a_grafana_dashboard_model(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard.get("uid") and len(dashboard["uid"]) <= 40, "a stable uid (at most 40 characters)"
    assert dashboard.get("title")
    assert dashboard.get("id") is None, "provisioned dashboards carry no database id"
    assert isinstance(dashboard.get("schemaVersion"), int) and dashboard["schemaVersion"] >= 36
    panels = dashboard_panels(dashboard)
    assert panels, "the dashboard has no panels"
    ids = [p.get("id") for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), f"panel ids must be unique: {ids}"
    for panel in panels:
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        assert panel.get("type") in {"timeseries", "stat", "row", "gauge", "bargauge", "table", "text"}, where
        assert panel.get("title"), where
        grid = panel.get("gridPos", {})
        assert {"h", "w", "x", "y"} <= set(grid), f"{where}: gridPos needs h, w, x, y"
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, f"{where}: outside the 24 columns"
        if panel["type"] in ("row", "text"):
            continue
        assert panel.get("datasource") == {"type": "prometheus", "uid": DATASOURCE_UID}, where
        targets = panel.get("targets", [])
        assert targets, f"{where}: no queries"
        ref_ids = [t.get("refId") for t in targets]
        assert len(ref_ids) == len(set(ref_ids)) and all(ref_ids), f"{where}: refIds must be set and unique"
        for target in targets:
            assert target.get("datasource", {}).get("uid", DATASOURCE_UID) == DATASOURCE_UID, where
            assert target.get("expr", "").strip(), f"{where}: target {target.get('refId')} has no expr"
    # Panels must not overlap on the grid (Grafana would shuffle them).
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard.get("panels", []):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"panels {other!r} and {panel['title']!r} overlap"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_query_selects_a_metric(path: Path) -> None:
    empty = [where for where, expr in dashboard_exprs(load_dashboard(path)) if not metric_names(expr)]
    assert not empty, f"queries selecting no metric (or a tokenizer gap): {empty}"


# Grafana fills these in before a query reaches Prometheus.
_GRAFANA_VARIABLES = re.compile(r"\$\{?(__range_ms|__range_s|__range|__rate_interval|__interval_ms|__interval)\b\}?")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_are_valid_promql(path: Path, promtool: Any, tmp_path: Path) -> None:
    dashboard = load_dashboard(path)
    names = {v["name"] for v in dashboard_variables(dashboard)}
    rules = []
    for n, (where, expr) in enumerate(dashboard_exprs(dashboard) + variable_exprs(dashboard)):
        concrete = concrete_expr(expr, names)
        assert "$" not in concrete, f'{where}: unknown Grafana variable, or one not used as =~"$var", in {expr!r}'
        rules.append({"record": f"lianghua:dashboard_query:{n}", "expr": concrete, "labels": {"where": where}})
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": path.stem, "rules": rules}]}), encoding="utf-8")
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, f"promtool rejects a query of {path.name}:\n{result.stdout}{result.stderr}"


def test_grafana_datasource_is_the_compose_prometheus(compose: dict[str, Any]) -> None:
    provisioning = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioning["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]


def test_grafana_loads_the_dashboards_folder_that_compose_mounts(compose: dict[str, Any]) -> None:
    provisioning = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/lianghua.yml").read_text())
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    mounts = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    assert mounts.get(provider["options"]["path"]) == "./grafana/dashboards"
    assert mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning"


# --- what the apps expose ---------------------------------------------------------------------------------------


@dataclass
class Exposed:
    """Metric names each process exposes (as PromQL selects them), and why a process could not be inspected."""

    by_process: dict[str, set[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def all_names(self) -> set[str]:
        return set().union(*self.by_process.values()) if self.by_process else set()

    def explain(self) -> str:
        lines = [f"  {process}: {error}" for process, error in self.errors.items()]
        return ("\nprocesses that could not be inspected:\n" + "\n".join(lines)) if lines else ""


def series_names(families: Iterable[Any]) -> set[str]:
    """The series names PromQL can select from these metric families. A family with labels but no observation yet
    has no samples, only its TYPE line, so the names follow from the type: a counter `x` is `x_total`, a histogram
    `x` is `x_bucket`, `x_sum` and `x_count`, a summary `x` is `x`, `x_sum` and `x_count`."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("", "_sum", "_count"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples if isinstance(sample, Sample))
    return names


def exposition_names(text: str) -> set[str]:
    return series_names(text_string_to_metric_families(text))


async def _scrape_app(name: str, module_name: str, settings: Any) -> set[str]:
    from shared.platform.app import Infra
    from shared.platform.internal_auth import service_headers

    module = importlib.import_module(module_name)
    if name == "notify":  # its own settings: it refuses to start without the token Alertmanager presents
        from services.notify.settings import NotifySettings

        notify = NotifySettings(webhook_token="ops-test-token-0123456789")
        app = module.create_app(settings, Infra.from_settings(settings, name), notify)
    else:
        app = module.create_app(settings, Infra.from_settings(settings, name))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        # The instrumentator only writes http_* series for requests to instrumented routes (/healthz, /readyz and
        # /metrics are excluded), so make some: the schema, and one API route with and without credentials.
        schema = await http.get("/openapi.json")
        assert schema.status_code == 200, f"GET /openapi.json answered {schema.status_code}"
        api_routes = [
            path
            for path, operations in schema.json().get("paths", {}).items()
            if "get" in operations and "{" not in path and "/v1/" in path
        ]
        for path in sorted(api_routes)[:1]:
            await http.get(path)
            await http.get(path, headers=service_headers(settings.internal_secret, "ops-test"))
            if name == "notify":
                await http.get(path, headers={"Authorization": "Bearer ops-test-token-0123456789"})
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200, f"GET /metrics answered {metrics.status_code}"
        return exposition_names(metrics.text)


def _worker_names(settings: Any) -> set[str]:
    """The worker serves its metrics from the registry it hands its BacktestWorker (see run_worker in
    services/backtest/worker.py): build one the same way, without starting it, and read that registry."""
    from shared.platform.app import Infra

    module = importlib.import_module(WORKER_MODULE)
    registry = CollectorRegistry()
    module.BacktestWorker(settings, Infra.from_settings(settings, "backtest-worker"), registry=registry)
    return exposition_names(generate_latest(registry).decode())


@pytest.fixture(scope="module")
async def exposed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Exposed]:
    from shared.platform.settings import Settings

    db_dir = tmp_path_factory.mktemp("ops-metrics")
    settings = Settings(
        mode="standalone",
        database_url=f"sqlite+aiosqlite:///{db_dir}/{{service}}.db",
        redis_url="memory://",
        amqp_url="memory://",
        load_demo_data=False,
        log_json=False,
    )
    result = Exposed()
    for name, module_name in HTTP_APPS.items():
        try:
            result.by_process[name] = await _scrape_app(name, module_name, settings)
        except Exception as exc:  # reported by the tests that need this process's metrics
            result.errors[name] = f"{type(exc).__name__}: {exc}"[:500]
    try:
        result.by_process["backtest-worker"] = _worker_names(settings)
    except Exception as exc:
        result.errors["backtest-worker"] = f"{type(exc).__name__}: {exc}"[:500]
    yield result


def _unexposed(exprs: list[tuple[str, str]], exposed: Exposed, *, exporters: bool = False) -> list[str]:
    available = exposed.all_names() | PROMETHEUS_SERIES | (EXPORTER_SERIES if exporters else set())
    return [
        f"{where}: {sorted(missing)} in {expr!r}"
        for where, expr in exprs
        if (missing := metric_names(expr) - available)
    ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_metrics_are_exposed_by_the_apps(path: Path, exposed: Exposed) -> None:
    dashboard = load_dashboard(path)
    missing = _unexposed(dashboard_exprs(dashboard) + variable_exprs(dashboard), exposed, exporters=True)
    assert not missing, "metrics no LiangHua process exposes:\n  " + "\n  ".join(missing) + exposed.explain()


def test_alert_rule_metrics_are_exposed_by_the_apps(exposed: Exposed) -> None:
    missing = _unexposed(alert_exprs(), exposed, exporters=True)
    assert not missing, "metrics no LiangHua process exposes:\n  " + "\n  ".join(missing) + exposed.explain()


@pytest.mark.parametrize("process", sorted(HTTP_APPS))
def test_every_http_process_exposes_the_per_service_request_metrics(process: str, exposed: Exposed) -> None:
    assert process in exposed.by_process, f"{process} could not be inspected: {exposed.errors.get(process)}"
    missing = HTTP_SERIES - exposed.by_process[process]
    assert not missing, f"{process}'s /metrics lacks {sorted(missing)} (the per-service panels and alerts use them)"


# --- the strategy instances row -------------------------------------------------------------------------------

# The strategy service's series (services/strategy/metrics.py and reports.py) and what the row shows of them.
STRATEGY_SERIES = {
    "lh_strategy_instances",  # by state
    "lh_strategy_instance_failures_total",
    "lh_strategy_instance_equity_cny",
    "lh_strategy_instance_orders_sent",
    "lh_strategy_instance_last_bar_timestamp_seconds",  # seconds behind the last bar = time() - this
    "lh_strategy_instance_bar_seconds_bucket",
    "lh_strategy_instance_fills",
    "lh_strategy_instance_pnl_cny",  # equity less capital
    "lh_strategy_instance_realised_pnl_cny",
    "lh_strategy_instance_unrealised_pnl_cny",
    "lh_strategy_instance_state",  # 1 for each instance's state
}
PER_INSTANCE = {
    "lh_strategy_instance_equity_cny",
    "lh_strategy_instance_orders_sent",
    "lh_strategy_instance_last_bar_timestamp_seconds",
    "lh_strategy_instance_fills",
    "lh_strategy_instance_pnl_cny",
    "lh_strategy_instance_realised_pnl_cny",
    "lh_strategy_instance_unrealised_pnl_cny",
    "lh_strategy_instance_state",
}
_AGGREGATIONS = {"sum", "max", "min", "avg", "count", "topk", "bottomk", "quantile", "group", "scalar"}


def test_the_overview_has_a_strategy_instances_row_with_each_instances_figures() -> None:
    panels = load_dashboard(ROOT / "grafana" / "dashboards" / "lianghua-overview.json")["panels"]
    rows = [i for i, p in enumerate(panels) if p["type"] == "row"]
    starts = [i for i in rows if panels[i]["title"] == "Strategy instances"]
    assert len(starts) == 1, "one row titled 'Strategy instances'"
    following = [i for i in rows if i > starts[0]]
    row = panels[starts[0] + 1 : following[0] if following else len(panels)]
    exprs = [t["expr"] for p in row for t in p.get("targets", [])]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used >= STRATEGY_SERIES, f"the row does not show {sorted(STRATEGY_SERIES - used)}"
    assert any("time()" in e and "lh_strategy_instance_last_bar_timestamp_seconds" in e for e in exprs), (
        "seconds behind the last bar is time() minus the last bar's timestamp"
    )
    # Equity, orders and the lag are shown per instance: some query keeps instance_id (aggregates nothing).
    for series in PER_INSTANCE:
        unaggregated = [
            e for e in exprs
            if series in metric_names(e)
            and not {text.lower() for _, text in promql_tokens(e)} & _AGGREGATIONS
        ]  # fmt: skip
        assert unaggregated, f"no query shows {series} per instance"


def test_the_strategy_row_shows_each_instances_state_as_the_state_series_at_1() -> None:
    panels = dashboard_panels(load_dashboard(ROOT / "grafana" / "dashboards" / "lianghua-overview.json"))
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    # one series per instance and state, 1 for the state it is in: "== 1" keeps one row per instance
    assert any(re.fullmatch(r"lh_strategy_instance_state\s*==\s*1", e) for e in exprs), exprs


# --- the per-part dashboards (issue 16 §2) ------------------------------------------------------------------------

DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
# What each part's dashboard must show, as the series its queries select: the brief's list, panel by panel.
PARTS: dict[str, dict[str, set[str]]] = {
    "lianghua-trading": {
        "orders per minute by status": {"lh_orders_total"},
        "fills": {"lh_trades_total"},
        "rejects by reason": {"lh_risk_denials_total", "lh_execution_refused_total"},
        "order-path latency": {"http_request_duration_seconds_bucket"},
        "by strategy instance": {"lh_strategy_instance_orders_sent", "lh_strategy_instance_fills"},
        "QMT bridge links": {"lh_broker_bridge_connected", "lh_broker_bridge_bound"},
        "broker reconciliation differences": {"lh_broker_reconciliation_differences_total"},
    },
    "lianghua-risk": {
        "decisions": {"lh_risk_decisions_total"},
        "denials by rule": {"lh_risk_denials_total"},
        "limit utilisation": {"lh_risk_limit_utilisation_ratio"},
        "trading states": {"lh_risk_trading_states"},
        "stops triggered": {"lh_risk_stops_triggered_total"},
        "risk alerts": {"lh_risk_alerts_total"},
    },
    "lianghua-strategies": {
        "equity": {"lh_strategy_instance_equity_cny"},
        "P&L": {"lh_strategy_instance_pnl_cny", "lh_strategy_instance_realised_pnl_cny",
                "lh_strategy_instance_unrealised_pnl_cny"},
        "bar lag": {"lh_strategy_instance_last_bar_timestamp_seconds"},
        "failures": {"lh_strategy_instance_failures_total", "lh_strategy_instances"},
    },
    "lianghua-data": {
        "ingest runs": {"lh_data_ingest_runs_total"},
        "rows": {"lh_data_ingest_rows_total"},
        "update lag": {"lh_data_update_lag_days"},
        "quality findings": {"lh_data_quality_findings"},
        "feed freshness": {"lh_quotes_snapshot_age_seconds"},
        "quotes refused by reason": {"lh_quotes_rejected_total"},
    },
    "lianghua-platform": {
        "request rate and errors": {"http_requests_total"},
        "latency": {"http_request_duration_seconds_bucket"},
        "event-loop lag": {"lh_event_loop_lag_seconds_bucket"},
        "DB pool": {"lh_db_pool_connections", "lh_db_pool_size"},
        "RabbitMQ queue depth and dead letters": {"rabbitmq_queue_messages_ready"},
        "MariaDB": {"mysql_up", "mysql_global_status_threads_connected"},
        "Redis": {"redis_up", "redis_connected_clients"},
        "notifications failed": {"alertmanager_notifications_failed_total", "lh_notify_robot_send_failures_total"},
    },
}  # fmt: skip


def _by_uid() -> dict[str, dict[str, Any]]:
    return {load_dashboard(path)["uid"]: load_dashboard(path) for path in DASHBOARDS}


def test_dashboard_uids_are_unique_and_each_part_has_one() -> None:
    uids = [load_dashboard(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids)), f"two dashboards share a uid: {sorted(uids)}"
    assert set(uids) == {"lianghua-overview", *PARTS}
    for path in DASHBOARDS:  # the file is named after the uid, so a link or a bookmark finds it
        assert path.stem == load_dashboard(path)["uid"]


@pytest.mark.parametrize("uid", sorted(PARTS))
def test_each_part_dashboard_shows_what_the_issue_asks(uid: str) -> None:
    dashboard = _by_uid()[uid]
    selected = set().union(*(metric_names(expr) for _, expr in dashboard_exprs(dashboard)))
    missing = {item: sorted(series - selected) for item, series in PARTS[uid].items() if series - selected}
    assert not missing, f"{uid} does not show: {missing}"
    assert dashboard["tags"] == ["lianghua"], "the tag the dashboards' link menu lists them by"


def _quantiles_of(exprs: list[str], histogram: str, route: str) -> set[str]:
    found = set()
    for expr in exprs:
        match = re.match(r"histogram_quantile\((0\.\d+),", expr)
        if match and histogram in metric_names(expr) and route in expr and re.search(r"by \((\w+, )?le\)", expr):
            found.add(match.group(1))
    return found


def test_trading_shows_order_path_latency_p50_and_p99_from_the_gateways_histogram() -> None:
    exprs = [expr for _, expr in dashboard_exprs(_by_uid()["lianghua-trading"])]
    route = 'job="gateway", handler="/api/v1/orders", method="POST"'  # the route a client places orders on
    assert _quantiles_of(exprs, "http_request_duration_seconds_bucket", route) == {"0.5", "0.99"}
    # and per hop behind it
    hop = 'job=~"risk|execution", handler="/v1/orders", method="POST"'
    assert _quantiles_of(exprs, "http_request_duration_seconds_bucket", hop) == {"0.5", "0.99"}


def test_rejects_are_broken_down_by_reason_code() -> None:
    exprs = [expr for _, expr in dashboard_exprs(_by_uid()["lianghua-trading"])]
    assert any(re.search(r"sum by \(code\) \((rate|increase)\(lh_risk_denials_total\[", e) for e in exprs), exprs
    risk_exprs = [expr for _, expr in dashboard_exprs(_by_uid()["lianghua-risk"])]
    assert any(re.search(r"sum by \(code\) \(rate\(lh_risk_denials_total\[", e) for e in risk_exprs), risk_exprs


@pytest.mark.parametrize("uid", sorted(PARTS))
def test_template_variables_list_label_values_and_filter_as_regexes(uid: str) -> None:
    dashboard = _by_uid()[uid]
    variables = dashboard_variables(dashboard)
    assert variables, f"{uid}: a variable to narrow it (by instance, account, job...)"
    text = json.dumps([t["expr"] for _, t in _targets(dashboard)])
    for variable in variables:
        name = variable["name"]
        assert variable["type"] == "query" and variable["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
        assert variable["includeAll"] and variable["allValue"] == ".*" and variable["multi"], name
        assert f'=~\\"${name}\\"' in text, f"{uid}: variable {name} is used by no query"
        # a multi-value variable is written as a|b: only a regex matcher takes it
        assert not re.search(rf'[^~]=\\"\${name}\b', text), f"{uid}: ${name} in an equality matcher"


def _targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in dashboard_panels(dashboard) for target in panel.get("targets", [])]


def test_concrete_expr_fills_variables_as_grafana_does() -> None:
    expr = 'sum by (code) (increase(x{instance=~"$instance", b=~"${bridge}"}[$__range])) > $__interval_ms'
    assert (
        concrete_expr(expr, {"instance", "bridge"}) == 'sum by (code) (increase(x{instance=~".*", b=~".*"}[5m])) > 300'
    )
    # a variable in an equality matcher is left in place, so the promtool test reports it
    assert "$instance" in concrete_expr('x{instance="$instance"}', {"instance"})


def test_variable_exprs_read_the_metric_of_label_values() -> None:
    dashboard = {
        "templating": {
            "list": [{"name": "bridge", "query": {"query": "label_values(lh_broker_bridge_connected, bridge_id)"}}]
        }
    }
    assert variable_exprs(dashboard) == [("variable bridge", "lh_broker_bridge_connected")]


def test_grafana_puts_the_dashboards_in_the_lianghua_folder_from_files() -> None:
    provisioning = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/lianghua.yml").read_text())
    (provider,) = provisioning["providers"]
    assert provider["folder"] == "LiangHua"
    assert provider["allowUiUpdates"] is False, "the JSON files are the source"
    # every dashboard is a file in the folder the provider reads (compose mounts grafana/dashboards there)
    assert {p.name for p in DASHBOARDS} == {f"{uid}.json" for uid in ("lianghua-overview", *PARTS)}


def test_the_dashboard_files_are_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "grafana_dashboards.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_strategy_panels_show_each_instance_unaggregated() -> None:
    exprs = [expr for _, expr in dashboard_exprs(_by_uid()["lianghua-strategies"])]
    for series in ("lh_strategy_instance_equity_cny", "lh_strategy_instance_pnl_cny"):
        assert f'{series}{{instance_id=~"$instance_id"}}' in exprs, f"{series} per instance"
    # bar lag: time() minus the last bar's trading day, per instance
    assert 'time() - lh_strategy_instance_last_bar_timestamp_seconds{instance_id=~"$instance_id"}' in exprs


def test_limit_utilisation_is_shown_per_limit_without_an_account_label() -> None:
    # lh_risk_limit_utilisation_ratio has only rule and code (services/risk/metrics.py): an account_id in a query
    # would select nothing, and the series stay bounded by the limits
    risk = _by_uid()["lianghua-risk"]
    exprs = [expr for _, expr in dashboard_exprs(risk) if "lh_risk_limit_utilisation_ratio" in expr]
    assert exprs == [
        'max by (rule, code) (lh_risk_limit_utilisation_ratio{rule=~"$rule"})',
        'max by (rule, code) (lh_risk_limit_utilisation_ratio{rule=~"$rule"})',
    ]
    assert [v["name"] for v in dashboard_variables(risk)] == ["rule"]
    assert "account_id" not in json.dumps(risk)
