"""prometheus/alertmanager.yml: valid for amtool, each route sends to the receivers docs/operations.md promises, no
secret is written in it, and compose gives Alertmanager every secret file it reads. Every alert rule names its team
and severity as the routes expect, has a runbook section in docs/operations.md and a promtool test that fires it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "prometheus" / "alertmanager.yml"
START = ROOT / "prometheus" / "alertmanager-start.sh"
RULES = ROOT / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "prometheus" / "tests" / "alerts_test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
AMTOOL_INSTALL = (
    "amtool is not on PATH. It comes with Alertmanager; on Debian/Ubuntu install it with\n"
    "    apt-get update && apt-get install -y --no-install-recommends prometheus-alertmanager"
)
TEAMS = {"trading", "data", "platform"}
SEVERITIES = {"warning", "critical"}
# The business alerts the notify service posts (services/notify/business.py): routed and documented like the rules.
BUSINESS_ALERTS = {
    "LianghuaRiskWarning": ("warning", "trading"),
    "LianghuaRiskBreach": ("critical", "trading"),
    "LianghuaTradingHalted": ("critical", "trading"),
    "LianghuaTradingReducing": ("warning", "trading"),
    "LianghuaStrategyFailed": ("critical", "trading"),
    "LianghuaStrategyCodeRejected": ("warning", "trading"),
    "LianghuaStopExitFailed": ("critical", "trading"),
    "LianghuaReconciliationDifference": ("critical", "trading"),
    "LianghuaBrokerDisconnected": ("critical", "trading"),
}


@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail(AMTOOL_INSTALL, pytrace=False)
    return path


def run(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_amtool_accepts_the_configuration(amtool: str) -> None:
    result = run(amtool, "check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# labels -> the receivers Alertmanager notifies, as the header of alertmanager.yml and docs/operations.md say
# (every alert also reaches the gateway's alert history first: the web UI's alerts page)
ROUTES = [
    ({"severity": "critical", "team": "trading"}, ["alert-history", "incident-webhook", "trading-page"]),
    ({"severity": "warning", "team": "trading"}, ["alert-history", "trading-chat"]),
    ({"severity": "critical", "team": "platform"}, ["alert-history", "incident-webhook", "ops-page"]),
    ({"severity": "warning", "team": "platform"}, ["alert-history", "ops-chat"]),
    ({"severity": "critical", "team": "data"}, ["alert-history", "incident-webhook", "ops-page"]),
    ({"severity": "warning", "team": "data"}, ["alert-history", "ops-chat"]),
    ({"alertname": "SomethingUnlabelled"}, ["alert-history", "ops-chat"]),
]


@pytest.mark.parametrize(
    ("labels", "receivers"), ROUTES, ids=[",".join(f"{k}={v}" for k, v in labels.items()) for labels, _ in ROUTES]
)
def test_each_route_reaches_its_receivers(amtool: str, labels: dict[str, str], receivers: list[str]) -> None:
    args = [f"{k}={v}" for k, v in labels.items()]
    result = run(amtool, "config", "routes", "test", f"--config.file={CONFIG}",
                 f"--verify.receivers={','.join(receivers)}", *args)  # fmt: skip
    assert result.returncode == 0, f"{labels}: {result.stdout}{result.stderr}"
    assert result.stdout.strip() == ",".join(receivers)


def test_a_route_test_can_fail(amtool: str) -> None:
    """amtool's verification is what the tests above rely on: a wrong expectation fails."""
    result = run(amtool, "config", "routes", "test", f"--config.file={CONFIG}", "--verify.receivers=ops-chat",
                 "severity=critical", "team=trading")  # fmt: skip
    assert result.returncode != 0


def config() -> dict[str, Any]:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_no_secret_is_written_in_the_configuration() -> None:
    text = CONFIG.read_text(encoding="utf-8")
    for key in ("smtp_auth_password:", "auth_password:", "credentials:", "password:", "bearer_token:"):
        assert key not in text, f"alertmanager.yml writes {key} (use the *_file form)"
    assert "access_token=" not in text and "key=" not in text, "robot URLs belong to the notify service's environment"


def test_every_notify_webhook_presents_the_bearer_token_from_its_file() -> None:
    receivers = config()["receivers"]
    notify_hooks = [
        (r["name"], hook) for r in receivers for hook in r.get("webhook_configs", [])
        if hook["url"].startswith("http://notify:8107/")
    ]  # fmt: skip
    assert {name for name, _ in notify_hooks} == {"trading-page", "trading-chat", "ops-page", "ops-chat"}
    for name, hook in notify_hooks:
        assert re.fullmatch(r"http://notify:8107/v1/alertmanager/robots/[a-z0-9-]+", hook["url"]), name
        assert hook["http_config"]["authorization"] == {
            "credentials_file": "/etc/alertmanager/secrets/notify_webhook_token"
        }, name
        assert hook.get("send_resolved") is True, name
        # within what notify reads (1000 alerts, 1 MB): the rest are counted in truncatedAlerts
        assert 0 < hook.get("max_alerts", 0) <= 1000, name


def test_every_alert_reaches_the_gateways_history_with_the_bearer_token_from_its_file() -> None:
    """The alerts page's history (gateway/alerts.py): the first route takes everything and lets it go on, resolved
    alerts included, presenting the token the gateway checks (LH_NOTIFY_WEBHOOK_TOKEN)."""
    first = config()["route"]["routes"][0]
    assert first == {"receiver": "alert-history", "continue": True}  # no matchers: every alert
    [receiver] = [r for r in config()["receivers"] if r["name"] == "alert-history"]
    [hook] = receiver["webhook_configs"]
    assert hook["url"] == "http://gateway:8000/api/v1/alerts/webhook"
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"] == {
        "credentials_file": "/etc/alertmanager/secrets/notify_webhook_token"
    }
    assert 0 < hook["max_alerts"] <= 1000  # within what the webhook reads


def test_compose_writes_every_secret_file_the_configuration_reads(compose: dict[str, Any]) -> None:
    text = CONFIG.read_text(encoding="utf-8")
    files = set(re.findall(r"/etc/alertmanager/secrets/([a-z_]+)", text))
    assert files == {"notify_webhook_token", "smtp_password", "incident_webhook_token"}
    service = compose["services"]["alertmanager"]
    assert service["entrypoint"][:2] == ["/bin/sh", "/etc/alertmanager/alertmanager-start.sh"]
    script = START.read_text(encoding="utf-8")
    for name in files:
        assert f'> "$secrets/{name}"' in script, f"the start script does not write {name}"
    # the token Alertmanager presents is the one the notify service checks: one variable for both
    assert (
        service["environment"]["LH_NOTIFY_WEBHOOK_TOKEN"]
        == compose["services"]["notify"]["environment"]["LH_NOTIFY_WEBHOOK_TOKEN"]
        == compose["services"]["gateway"]["environment"]["LH_NOTIFY_WEBHOOK_TOKEN"]  # the alert history's webhook
    )
    assert compose["services"]["gateway"]["environment"]["LH_ALERTMANAGER_URL"] == "http://alertmanager:9093"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert mounts["/etc/alertmanager/alertmanager.yml"] == "./prometheus/alertmanager.yml"
    assert mounts["/etc/alertmanager/alertmanager-start.sh"] == "./prometheus/alertmanager-start.sh"
    assert "--cluster.listen-address=" in service["entrypoint"]  # one Alertmanager: no gossip port
    assert service["ports"] == ["127.0.0.1:9093:9093"]  # its API has no authentication: the host only


def start(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The start script run as compose runs it, with the tmpfs a directory and Alertmanager a stand-in that prints
    its arguments; (the run, the secrets directory)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    fake = tmp_path / "alertmanager"
    fake.write_text('#!/bin/sh\necho "started $*"\n', encoding="utf-8")
    fake.chmod(0o755)
    environment = {"PATH": "/usr/bin:/bin", "LH_AM_CONFIG": str(CONFIG), "LH_AM_SECRETS": str(secrets),
                   "LH_AM_EXEC": str(fake), **env}  # fmt: skip
    result = subprocess.run(["/bin/sh", str(START), "--storage.path=/x"], env=environment, capture_output=True,
                            text=True, timeout=30, check=False)  # fmt: skip
    return result, secrets


def test_with_an_incident_token_critical_alerts_reach_the_incident_webhook(amtool: str, tmp_path: Path) -> None:
    result, secrets = start(tmp_path, LH_NOTIFY_WEBHOOK_TOKEN="n" * 16, LH_INCIDENT_WEBHOOK_TOKEN="incident-token-1")
    assert result.returncode == 0, result.stderr
    effective = secrets / "alertmanager.yml"
    assert result.stdout.strip() == f"started --config.file={effective} --storage.path=/x"
    assert (secrets / "incident_webhook_token").read_text() == "incident-token-1"
    assert (secrets / "notify_webhook_token").read_text() == "n" * 16
    assert effective.read_text() == CONFIG.read_text()
    assert "incident-token-1" not in result.stderr + result.stdout  # a secret is never printed
    routed = run(amtool, "config", "routes", "test", f"--config.file={effective}", "severity=critical", "team=trading")
    assert routed.stdout.strip() == "alert-history,incident-webhook,trading-page"


@pytest.mark.parametrize("token", ["", None], ids=["empty", "unset"])
def test_without_an_incident_token_nothing_is_routed_to_the_incident_webhook(
    amtool: str, tmp_path: Path, token: str | None
) -> None:
    env = {"LH_NOTIFY_WEBHOOK_TOKEN": "n" * 16} | ({} if token is None else {"LH_INCIDENT_WEBHOOK_TOKEN": token})
    result, secrets = start(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert "LH_INCIDENT_WEBHOOK_TOKEN is not set: the incident webhook receives nothing" in result.stderr
    assert not (secrets / "incident_webhook_token").exists()  # never an empty bearer token
    effective = secrets / "alertmanager.yml"
    assert run(amtool, "check-config", str(effective)).returncode == 0
    for labels, receivers in ROUTES:
        expected = [r for r in receivers if r != "incident-webhook"]
        args = [f"{k}={v}" for k, v in labels.items()]
        routed = run(amtool, "config", "routes", "test", f"--config.file={effective}", *args)
        assert routed.stdout.strip() == ",".join(expected), labels


def test_without_the_notify_token_alertmanager_does_not_start(tmp_path: Path) -> None:
    result, _ = start(tmp_path, LH_INCIDENT_WEBHOOK_TOKEN="incident-token-1")
    assert result.returncode == 2
    assert "LH_NOTIFY_WEBHOOK_TOKEN is not set" in result.stderr and "started" not in result.stdout


def test_a_route_to_the_incident_webhook_outside_its_markers_stops_the_start(tmp_path: Path) -> None:
    # someone adds a second route to incident-webhook without markers: starting would send it an empty token
    text = CONFIG.read_text(encoding="utf-8").replace(
        "    - receiver: ops-page\n",
        "    - receiver: incident-webhook\n      matchers: ['team=\"data\"']\n    - receiver: ops-page\n",
        1,
    )
    edited = tmp_path / "edited.yml"
    edited.write_text(text, encoding="utf-8")
    result, _ = start(tmp_path, LH_NOTIFY_WEBHOOK_TOKEN="n" * 16, LH_AM_CONFIG=str(edited))
    assert result.returncode == 2 and "outside its BEGIN/END markers" in result.stderr


# a route to incident-webhook added outside the markers, in the forms YAML allows for it (quoted or flow style)
OUTSIDE_ROUTES = {
    "double-quoted": '    - receiver: "incident-webhook"\n      matchers: [\'team="data"\']\n',
    "single-quoted": "    - receiver: 'incident-webhook'\n      matchers: ['team=\"data\"']\n",
    "flow-mapping": "    - {receiver: incident-webhook, matchers: ['team=\"data\"']}\n",
    "quoted-key": '    - "receiver": "incident-webhook"\n      "matchers": [\'team="data"\']\n',
}


@pytest.mark.parametrize("route", list(OUTSIDE_ROUTES.values()), ids=list(OUTSIDE_ROUTES))
def test_a_quoted_route_to_the_incident_webhook_outside_its_markers_stops_the_start(tmp_path: Path, route: str) -> None:
    text = CONFIG.read_text(encoding="utf-8").replace(
        "    - receiver: ops-page\n", route + "    - receiver: ops-page\n", 1
    )
    assert yaml.safe_load(text)["route"]["routes"][-3]["receiver"] == "incident-webhook"  # the edit is a route
    edited = tmp_path / "edited.yml"
    edited.write_text(text, encoding="utf-8")
    result, _ = start(tmp_path, LH_NOTIFY_WEBHOOK_TOKEN="n" * 16, LH_AM_CONFIG=str(edited))
    assert result.returncode == 2 and "outside its BEGIN/END markers" in result.stderr
    assert "started" not in result.stdout


BEGIN = "    # BEGIN incident-webhook route"
END = "    # END incident-webhook route"


def without_line(text: str, prefix: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(prefix)) + "\n"


def twice(text: str, prefix: str) -> str:
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return text.replace(line + "\n", line + "\n" + line + "\n", 1)


def swapped(text: str) -> str:
    [begin] = [line for line in text.splitlines() if line.startswith(BEGIN)]
    [end] = [line for line in text.splitlines() if line.startswith(END)]
    return text.replace(begin, "@@", 1).replace(end, begin, 1).replace("@@", end, 1)


# markers broken -> (the edit, what the refusal says)
BROKEN_MARKERS = {
    "no-end": (lambda t: without_line(t, END), "exactly once each (found 1 and 0)"),
    "no-begin": (lambda t: without_line(t, BEGIN), "exactly once each (found 0 and 1)"),
    "two-begins": (lambda t: twice(t, BEGIN), "exactly once each (found 2 and 1)"),
    "two-ends": (lambda t: twice(t, END), "exactly once each (found 1 and 2)"),
    "end-before-begin": (swapped, "END incident-webhook route' marker before its BEGIN"),
}


@pytest.mark.parametrize(("edit", "message"), list(BROKEN_MARKERS.values()), ids=list(BROKEN_MARKERS))
def test_broken_markers_stop_the_start_instead_of_cutting_other_routes(tmp_path: Path, edit: Any, message: str) -> None:
    # without its END marker, sed would have deleted every route after BEGIN (trading-page, ops-page, the chats)
    edited = tmp_path / "edited.yml"
    edited.write_text(edit(CONFIG.read_text(encoding="utf-8")), encoding="utf-8")
    result, _ = start(tmp_path, LH_NOTIFY_WEBHOOK_TOKEN="n" * 16, LH_AM_CONFIG=str(edited))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "not started" in result.stderr
    assert "started --config.file" not in result.stdout


def test_the_markers_are_not_checked_when_the_incident_route_is_kept(tmp_path: Path) -> None:
    # with its token the configuration is used as it is: nothing is cut, so the markers do not matter
    edited = tmp_path / "edited.yml"
    edited.write_text(without_line(CONFIG.read_text(encoding="utf-8"), END), encoding="utf-8")
    result, _ = start(tmp_path, LH_NOTIFY_WEBHOOK_TOKEN="n" * 16, LH_INCIDENT_WEBHOOK_TOKEN="incident-token-1",
                      LH_AM_CONFIG=str(edited))  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_notify_token_shorter_than_16_characters_stops_the_start(tmp_path: Path) -> None:
    result, secrets = start(tmp_path, LH_NOTIFY_WEBHOOK_TOKEN="n" * 15)
    assert result.returncode == 2
    assert "LH_NOTIFY_WEBHOOK_TOKEN is shorter than 16 characters" in result.stderr and "started" not in result.stdout
    assert "n" * 15 not in result.stderr  # a secret is never printed
    assert not (secrets / "notify_webhook_token").exists()
    # 16 characters is enough (the notify service's MIN_TOKEN_LENGTH)
    (tmp_path / "ok").mkdir()
    ok, _ = start(tmp_path / "ok", LH_NOTIFY_WEBHOOK_TOKEN="n" * 16)
    assert ok.returncode == 0, ok.stderr


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def runbook_anchors() -> set[str]:
    """GitHub's anchors of docs/operations.md's headings: lowercased, spaces to '-', punctuation dropped."""
    anchors = set()
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_rule_has_team_severity_and_a_runbook_section(rule: dict[str, Any]) -> None:
    assert rule["labels"].get("team") in TEAMS, f"{rule['alert']}: team {rule['labels'].get('team')!r}"
    assert rule["labels"].get("severity") in SEVERITIES
    url = rule["annotations"].get("runbook_url", "")
    assert url == f"docs/operations.md#{rule['alert'].lower()}", url
    assert rule["alert"].lower() in runbook_anchors(), f"docs/operations.md has no section {rule['alert']}"


@pytest.mark.parametrize("name", sorted(BUSINESS_ALERTS))
def test_every_business_alert_has_a_runbook_section(name: str) -> None:
    assert name.lower() in runbook_anchors(), f"docs/operations.md has no section {name}"


def test_every_rule_is_fired_by_a_promtool_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    missing = sorted({rule["alert"] for rule in rules()} - fired)
    assert not missing, f"rules no promtool test fires: {missing}"


def test_business_alerts_are_the_ones_the_notify_service_raises() -> None:
    source = (ROOT / "services" / "notify" / "business.py").read_text(encoding="utf-8")
    raised = set(re.findall(r'"(Lianghua[A-Za-z]+)"', source))
    assert raised == set(BUSINESS_ALERTS)
