"""prometheus/: the scrape configuration and alert rules are valid for promtool, the alert rules behave as their
unit tests say, and every LiangHua process is scraped on the port it listens on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shared.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "prometheus"

# docs/architecture.md, "Processes and ports": job name = compose service name -> port.
PORTS = {
    "gateway": 8000,
    "data": 8101,
    "strategy": 8102,
    "backtest": 8103,
    "risk": 8104,
    "execution": 8105,
    "backtest-worker": 8106,
    "notify": 8107,
}
# What else Prometheus scrapes: Alertmanager and the backing services' standard exporters (RabbitMQ's own plugin,
# per queue) -> (target, metrics path).
MONITORING = {
    "alertmanager": ("alertmanager:9093", "/metrics"),
    "mysqld-exporter": ("mysqld-exporter:9104", "/metrics"),
    "redis-exporter": ("redis-exporter:9121", "/metrics"),
    "rabbitmq": ("rabbitmq:15692", "/metrics/per-object"),
}


def scrape_targets(*, monitoring: bool = False) -> dict[str, list[str]]:
    """Scrape targets by job: the LiangHua processes' (or, with `monitoring`, the others')."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    jobs: dict[str, list[str]] = {}
    for job in config["scrape_configs"]:
        assert job["job_name"] not in jobs, f"job {job['job_name']} defined twice"
        jobs[job["job_name"]] = [t for static in job.get("static_configs", []) for t in static["targets"]]
    return {job: targets for job, targets in jobs.items() if (job in MONITORING) == monitoring}


def metrics_paths() -> dict[str, str]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    return {job["job_name"]: job.get("metrics_path", "/metrics") for job in config["scrape_configs"]}


def test_promtool_accepts_the_configuration(promtool: Any) -> None:
    result = promtool("check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules(promtool: Any) -> None:
    result = promtool("check", "rules", "prometheus/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests(promtool: Any) -> None:
    result = promtool("test", "rules", "prometheus/tests/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_configuration_loads_the_alert_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]


def test_prometheus_sends_its_alerts_to_the_compose_alertmanager(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    (manager,) = config["alerting"]["alertmanagers"]
    assert [t for static in manager["static_configs"] for t in static["targets"]] == ["alertmanager:9093"]
    assert "alertmanager" in compose["services"]


def test_alertmanager_and_the_backing_services_exporters_are_scraped(compose: dict[str, Any]) -> None:
    jobs = scrape_targets(monitoring=True)
    paths = metrics_paths()
    assert set(jobs) == set(MONITORING), f"monitoring jobs {sorted(jobs)} != {sorted(MONITORING)}"
    for job, (target, path) in MONITORING.items():
        assert jobs[job] == [target], f"job {job} scrapes {jobs[job]}"
        assert paths[job] == path, f"job {job} scrapes {paths[job]}, not {path}"
        assert target.split(":")[0] in compose["services"], f"{target} is not a compose service"


def test_every_process_is_scraped_on_its_port() -> None:
    jobs = scrape_targets()
    assert set(jobs) == set(PORTS), f"scrape jobs {sorted(jobs)} != processes {sorted(PORTS)}"
    for job, targets in jobs.items():
        assert targets == [f"{job}:{PORTS[job]}"], f"job {job} scrapes {targets}"


def test_the_ports_are_those_the_services_call_each_other_on() -> None:
    for name in ("data", "strategy", "backtest", "risk", "execution"):
        default_url = Settings.model_fields[f"{name}_url"].default
        assert default_url.endswith(f":{PORTS[name]}"), f"Settings.{name}_url defaults to {default_url}"


def test_compose_runs_each_scraped_process_on_the_scraped_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for job, (target,) in scrape_targets().items():
        host, port = target.rsplit(":", 1)
        assert host in services, f"job {job} scrapes {host}, which docker-compose.yml does not run"
        env = services[host]["environment"]
        listening = env.get("LH_WORKER_METRICS_PORT") if job == "backtest-worker" else env.get("LH_PORT")
        assert listening == port, f"{host} listens on {listening} in docker-compose.yml, Prometheus scrapes {port}"
