"""docker-compose.yml, deploy/Dockerfile and deploy/mysql/init.sql, checked by reading them: every LiangHua process
runs with a complete fleet configuration, waits for healthy dependencies, has a health check, and no secret is
written down. (No Docker engine here; where a compose CLI is installed, `config` validates the file as well.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from shared.platform.settings import Mode, Settings

ROOT = Path(__file__).resolve().parents[3]

# process (= compose service) -> (module run with `python -m`, port it listens on)
PROCESSES = {
    "gateway": ("gateway", 8000),
    "data": ("services.data", 8101),
    "strategy": ("services.strategy", 8102),
    "backtest": ("services.backtest", 8103),
    "risk": ("services.risk", 8104),
    "execution": ("services.execution", 8105),
    "backtest-worker": ("services.backtest.worker", 8106),
    "notify": ("services.notify", 8107),
}
BACKING = ("mysql", "redis", "rabbitmq")
# Watching and alerting: not LiangHua processes (images of their own).
MONITORING = ("prometheus", "grafana", "alertmanager", "mysqld-exporter", "redis-exporter")
PUBLISHED = {"gateway": 8000, "grafana": 3000, "prometheus": 9090, "alertmanager": 9093}
REQUIRED_LH_ENV = (
    "LH_MODE",
    "LH_DATABASE_URL",
    "LH_REDIS_URL",
    "LH_AMQP_URL",
    "LH_INTERNAL_SECRET",
    "LH_DATA_URL",
    "LH_STRATEGY_URL",
    "LH_BACKTEST_URL",
    "LH_RISK_URL",
    "LH_EXECUTION_URL",
    "LH_HOST",
)
SECRET_KEY = re.compile(r"PASSWORD|SECRET|_PASS$|TOKEN")
# Secrets of optional features (Tushare as the market-data source): never written, empty by default.
OPTIONAL_SECRETS = {
    "LH_TUSHARE_TOKEN",  # Tushare
    "LH_QMT_BRIDGE_SECRETS",  # QMT bridges (none: none connects)
    "LH_SMTP_PASSWORD",  # Alertmanager's SMTP login (none: an SMTP server without one)
    "LH_INCIDENT_WEBHOOK_TOKEN",  # the generic webhook's bearer token
}
NOT_SECRETS = {"MARIADB_RANDOM_ROOT_PASSWORD"}  # a switch: the image generates a root password nobody uses

# Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR; $$ is a `$`.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def references(value: str) -> list[tuple[str, str]]:
    """(variable, operator) of every interpolation in a string; operator '' for a plain ${VAR} or $VAR."""
    found = []
    for match in _INTERPOLATION.finditer(value):
        if match.group() == "$$":
            continue
        found.append((match.group("name") or match.group("bare"), match.group("op") or ""))
    return found


def interpolate(value: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group() == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op = match.group("op") or ""
        if op.endswith("?") and not env.get(name):
            raise KeyError(f"{name} is required: {match.group('arg')}")
        if op.endswith("-") and not env.get(name):
            return match.group("arg") or ""
        return env.get(name, "")

    return _INTERPOLATION.sub(replace, value)


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def required_variables(compose: dict[str, Any]) -> set[str]:
    return {name for text in strings(compose) for name, op in references(text) if op.endswith("?")}


def fake_env(compose: dict[str, Any]) -> dict[str, str]:
    """A value for every required variable, as an operator's .env would give: long enough for fleet secrets."""
    return {name: f"{name.lower().replace('_', '-')}-0123456789abcdef" for name in required_variables(compose)}


def service_env(compose: dict[str, Any], service: str) -> dict[str, str]:
    env = compose["services"][service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {str(k): str(v) for k, v in env.items()}


def test_every_process_and_backing_service_is_defined(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == set(PROCESSES) | set(BACKING) | set(MONITORING)


def test_backing_services_are_the_agreed_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["mysql"]["image"] == "mariadb:10.11"
    assert services["redis"]["image"] == "redis:7"
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_process_runs_its_module_from_the_project_image(compose: dict[str, Any], process: str) -> None:
    service = compose["services"][process]
    module, _ = PROCESSES[process]
    assert service["command"] == ["python", "-m", module]
    assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
    assert (ROOT / module.replace(".", "/")).with_suffix(".py").exists() or (
        ROOT / module.replace(".", "/") / "__main__.py"
    ).exists(), f"{module} is not in the repository"


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_process_has_the_fleet_configuration(compose: dict[str, Any], process: str) -> None:
    env = service_env(compose, process)
    required = REQUIRED_LH_ENV + (("LH_APPROVAL_SECRET",) if process in ("risk", "execution") else ())
    required += ("LH_JWT_SECRET",) if process == "gateway" else ()
    missing = [key for key in required if key not in env]
    assert not missing, f"{process} lacks {missing}"
    assert env["LH_MODE"] == "fleet"
    assert env["LH_HOST"] == "0.0.0.0"
    _, port = PROCESSES[process]
    listening = env.get("LH_WORKER_METRICS_PORT") if process == "backtest-worker" else env.get("LH_PORT")
    assert listening == str(port), f"{process} must listen on {port}"


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_process_settings_validate_in_fleet_mode(
    compose: dict[str, Any], process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the process itself will read: the compose environment, interpolated from a complete .env."""
    dotenv = fake_env(compose)
    env = {key: interpolate(value, dotenv) for key, value in service_env(compose, process).items()}
    for key in [k for k in os.environ if k.startswith("LH_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()

    assert settings.mode is Mode.FLEET
    for service in ("gateway", "data", "backtest", "risk", "execution"):
        url = make_url(settings.database_url_for(service))
        assert (url.drivername, url.host, url.port) == ("mysql+asyncmy", "mysql", 3306)
        assert (url.username, url.password) == ("lianghua", dotenv["LH_MYSQL_PASSWORD"])
        assert url.database == f"lh_{service}"
    redis = make_url(settings.redis_url.replace("redis://", "mysql://", 1))  # only to parse it
    assert (redis.host, redis.port) == ("redis", 6379)
    amqp = make_url(settings.amqp_url.replace("amqp://", "mysql://", 1))
    assert (amqp.host, amqp.port, amqp.username) == ("rabbitmq", 5672, "lianghua")
    assert amqp.password == dotenv["LH_RABBITMQ_PASSWORD"]
    for name in ("data", "strategy", "backtest", "risk", "execution"):
        assert getattr(settings, f"{name}_url") == f"http://{name}:{PROCESSES[name][1]}"
    assert settings.internal_secret == dotenv["LH_INTERNAL_SECRET"]
    if process == "gateway":
        assert settings.require_jwt_secret() == dotenv["LH_JWT_SECRET"]
    else:  # users' session key: the gateway's alone
        assert "LH_JWT_SECRET" not in env and settings.jwt_secret == ""
    if process in ("risk", "execution"):
        assert settings.require_approval_secret() == dotenv["LH_APPROVAL_SECRET"]
    else:  # the approval secret is held by risk and execution only
        assert "LH_APPROVAL_SECRET" not in env and settings.approval_secret == ""


def test_worker_reads_its_metrics_address_from_the_compose_environment(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.backtest.worker import WorkerSettings

    for key, value in service_env(compose, "backtest-worker").items():
        monkeypatch.setenv(key, interpolate(value, fake_env(compose)))
    worker = WorkerSettings()
    assert (worker.host, worker.worker_metrics_port) == ("0.0.0.0", PROCESSES["backtest-worker"][1])


def test_the_services_share_the_backing_services_the_compose_file_starts(compose: dict[str, Any]) -> None:
    dotenv = fake_env(compose)
    mysql = {k: interpolate(v, dotenv) for k, v in service_env(compose, "mysql").items()}
    rabbit = {k: interpolate(v, dotenv) for k, v in service_env(compose, "rabbitmq").items()}
    data = {k: interpolate(v, dotenv) for k, v in service_env(compose, "data").items()}
    url = make_url(data["LH_DATABASE_URL"])
    assert (mysql["MARIADB_USER"], mysql["MARIADB_PASSWORD"]) == (url.username, url.password)
    amqp = make_url(data["LH_AMQP_URL"].replace("amqp://", "mysql://", 1))
    assert (rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"]) == (amqp.username, amqp.password)


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_process_waits_for_healthy_dependencies(compose: dict[str, Any], process: str) -> None:
    depends_on = compose["services"][process]["depends_on"]
    assert isinstance(depends_on, dict), f"{process}: depends_on needs conditions"
    for backing in BACKING:
        assert depends_on.get(backing) == {"condition": "service_healthy"}, f"{process} must wait for {backing}"
    if process == "gateway":
        for service in ("data", "strategy", "backtest", "risk", "execution"):
            assert depends_on.get(service) == {"condition": "service_healthy"}
    if process == "backtest-worker":
        assert depends_on.get("backtest") == {"condition": "service_healthy"}


def test_every_awaited_service_has_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, dict):
            for target, condition in depends_on.items():
                assert target in services, f"{name} depends on unknown {target}"
                if condition.get("condition") == "service_healthy":
                    assert "healthcheck" in services[target], f"{name} waits for {target}, which has no health check"


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_process_health_check_calls_its_own_endpoint(compose: dict[str, Any], process: str) -> None:
    test = compose["services"][process]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    code = test[3]
    compile(code, f"{process} healthcheck", "exec")
    _, port = PROCESSES[process]
    path = "/metrics" if process == "backtest-worker" else "/healthz"
    assert f"urlopen('http://127.0.0.1:{port}{path}'" in code, code


def test_backing_services_have_their_own_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mysql = " ".join(services["mysql"]["healthcheck"]["test"])
    assert "healthcheck.sh" in mysql or "mysqladmin ping" in mysql
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["rabbitmq"]["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]


def test_only_the_gateway_grafana_prometheus_and_alertmanager_are_published(compose: dict[str, Any]) -> None:
    published = {}
    for name, service in compose["services"].items():
        assert "network_mode" not in service, f"{name} must stay on the compose network"
        for mapping in service.get("ports", []):
            *_, host_port, container_port = str(mapping).split(":")
            assert host_port == container_port, mapping
            published[name] = int(container_port)
    assert published == PUBLISHED


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in service.get("environment", {}).items():
            value = str(value)
            if key in OPTIONAL_SECRETS:  # needed only by an optional feature: empty unless the operator sets it
                assert value == f"${{{key}:-}}", f"{name}.{key} must be ${{{key}:-}}, not {value!r}"
            elif SECRET_KEY.search(key) and key not in NOT_SECRETS:
                refs = references(value)
                assert len(refs) == 1 and refs[0][1] == ":?" and value.startswith("${"), (
                    f"{name}.{key} must be a required variable (${{{key}:?...}}), not {value!r}"
                )
            if "://" in value and "@" in value:  # a URL with credentials: the password must come from the env
                userinfo = value.split("://", 1)[1].split("@", 1)[0]
                password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
                refs = references(password)
                assert password and len(refs) == 1 and refs[0][1] == ":?", f"{name}.{key} writes a password"


def test_no_variable_silently_defaults_to_empty(compose: dict[str, Any]) -> None:
    plain = sorted({name for text in strings(compose) for name, op in references(text) if op == ""})
    assert not plain, f"use ${{VAR:?message}} or ${{VAR:-default}} for {plain}"


def test_every_variable_is_documented_in_the_env_example(compose: dict[str, Any]) -> None:
    example = (ROOT / "deploy" / "env.example").read_text(encoding="utf-8")
    documented = {}
    for line in example.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            documented[key.strip()] = value.strip()
    used = {name for text in strings(compose) for name, _ in references(text)}
    required = required_variables(compose)
    assert required <= set(documented), f"undocumented required variables: {sorted(required - set(documented))}"
    for name in required:
        if SECRET_KEY.search(name):
            assert documented[name] == "", f"env.example must not carry a value for the secret {name}"
    assert set(documented) <= used, f"env.example documents unused variables: {sorted(set(documented) - used)}"


def test_mariadb_grants_the_project_user_its_schemas(compose: dict[str, Any]) -> None:
    init = (ROOT / "deploy" / "mysql" / "init.sql").read_text(encoding="utf-8")
    statements = [line for line in init.splitlines() if line.strip() and not line.lstrip().startswith("--")]
    sql = " ".join(statements)
    assert "GRANT ALL PRIVILEGES ON `lh%`.* TO 'lianghua'@'%'" in sql
    assert "IDENTIFIED" not in sql.upper(), "the password comes from MARIADB_PASSWORD, never from this file"
    mounts = compose["services"]["mysql"]["volumes"]
    assert "./deploy/mysql/init.sql:/docker-entrypoint-initdb.d/10-lianghua.sql:ro" in mounts
    assert service_env(compose, "mysql")["MARIADB_USER"] == "lianghua"


def test_prometheus_and_grafana_mount_the_repository_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    grafana_env = service_env(compose, "grafana")
    assert references(grafana_env["GF_SECURITY_ADMIN_PASSWORD"])[0][1] == ":?"
    home = grafana_env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith("/var/lib/grafana/dashboards/")
    assert (ROOT / "grafana" / "dashboards" / Path(home).name).exists()


def test_the_image_runs_the_project_as_an_unprivileged_user() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "pip install -c requirements.lock ." in dockerfile
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the processes must not run as root"
    assert re.search(r"^\s*LH_HOST=0\.0\.0\.0", dockerfile, re.MULTILINE) or "ENV LH_HOST=0.0.0.0" in dockerfile


def test_the_build_context_leaves_out_local_state_and_keeps_the_code() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "var", ".env"} <= ignored
    for needed in ("shared", "services", "gateway", "strategies", "pyproject.toml", "requirements.lock"):
        assert needed not in ignored, f"the image needs {needed}"


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_cli_accepts_the_file(compose: dict[str, Any], tmp_path: Path) -> None:
    """Schema validation by Docker Compose itself; it needs no engine. Needs a compose CLI: .ci/run installs
    Debian's `docker-compose` (`apt-get install --no-install-recommends docker-compose`)."""
    cli = _compose_cli()
    assert cli is not None, "no Docker Compose CLI on PATH: apt-get install -y --no-install-recommends docker-compose"
    base = {k: v for k, v in os.environ.items() if not k.startswith("LH_")}
    empty_env_file = tmp_path / "empty.env"  # so a developer's own .env cannot fill in what the test leaves out
    empty_env_file.write_text("")
    command = [*cli, "--env-file", str(empty_env_file), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"]
    complete = subprocess.run(
        command,
        env={**base, **fake_env(compose)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert complete.returncode == 0, complete.stdout + complete.stderr
    incomplete = {k: v for k, v in fake_env(compose).items() if k != "LH_INTERNAL_SECRET"}
    refused = subprocess.run(
        command,
        env={**base, **incomplete},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode != 0 and "LH_INTERNAL_SECRET" in refused.stdout + refused.stderr


def test_the_readme_names_every_required_variable_and_no_other(compose: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", readme))
    required = required_variables(compose)
    assert required <= named, f"README does not name the required {sorted(required - named)}"
    # A password or secret the README tells an operator to set must be one compose reads.
    used = {name for text in strings(compose) for name, _ in references(text)}
    secrets = {name for name in named if re.search(r"PASSWORD|SECRET", name)}
    assert secrets <= used, f"README names {sorted(secrets - used)}, which docker-compose.yml does not read"
