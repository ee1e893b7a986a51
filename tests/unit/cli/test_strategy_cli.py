"""`lianghua strategy ...` against a fake gateway (httpx.MockTransport) that answers as the platform's REST API does:
what is sent (body, credentials), what is printed, and the exit codes of the refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from lianghua import strategy_cli
from lianghua.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main

ID = "0123456789abcdef0123456789abcdef"
TOKEN = "jwt-of-the-trader"
PASSWORD = "s3cret-pass"
API_KEY = "lh_key.abcdef"


class FakeGateway:
    """One trader, one instance once created; a replay that plays three days, one per poll."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.instance: dict[str, Any] | None = None
        self.polls = 0
        self.replay_ends = "stopped"

    def instance_out(self, state: str) -> dict[str, Any]:
        assert self.instance is not None
        self.instance["state"] = state
        return self.instance

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, method = request.url.path, request.method
        if path == "/api/v1/auth/token":
            form = parse_qs(request.content.decode())
            if form == {"username": ["trader"], "password": [PASSWORD]}:
                return httpx.Response(200, json={"access_token": TOKEN, "token_type": "bearer", "role": "trader"})
            return httpx.Response(401, json={"code": "invalid_credentials", "message": "wrong username or password"})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}" and request.headers.get("X-API-Key") != API_KEY:
            return httpx.Response(401, json={"code": "unauthenticated", "message": "log in"})
        if path == "/api/v1/strategy-instances" and method == "POST":
            body = json.loads(request.content)
            if body["strategy"] != "dual_ma":
                return httpx.Response(404, json={"code": "unknown_strategy", "message": "strategy: no such strategy"})
            if not isinstance(body["params"].get("fast", 5), int):
                detail = {"field": "params.fast", "message": "Input should be a valid integer"}
                return httpx.Response(
                    422,
                    json={"code": "invalid_request", "message": "params.fast: Input should be a valid integer",
                          "details": [detail]},
                )  # fmt: skip
            self.instance = {"instance_id": ID, "strategy": "dual_ma", "owner": "trader", "mode": body["mode"],
                             "capital": body["capital"], "state": "created", "params": body["params"]}  # fmt: skip
            return httpx.Response(201, json=self.instance)
        if path == "/api/v1/strategy-instances" and method == "GET":
            return httpx.Response(200, json=[self.instance] if self.instance else [])
        if self.instance is None or not path.startswith(f"/api/v1/strategy-instances/{ID}"):
            return httpx.Response(404, json={"code": "instance_not_found", "message": "no such strategy instance"})
        action = path.removeprefix(f"/api/v1/strategy-instances/{ID}").strip("/")
        if action == "start":
            if self.instance["state"] != "created":
                return httpx.Response(
                    409,
                    json={"code": "illegal_transition", "message": "cannot start a stopped instance",
                          "details": {"from": "stopped", "to": "running"}},
                )  # fmt: skip
            return httpx.Response(200, json=self.instance_out("running"))
        if action in ("pause", "stop"):
            return httpx.Response(200, json=self.instance_out({"pause": "paused", "stop": "stopped"}[action]))
        if action == "sleeve":
            return httpx.Response(200, json={"instance_id": ID, "equity": "100250.00", "positions": []})
        if action == "performance":
            self.polls += 1
            days = ["2024-01-02", "2024-01-03", "2024-01-04"]
            done = min(self.polls, 3)
            state = self.replay_ends if done == 3 else "running"
            curve = [
                {"date": d, "equity": e}
                for d, e in zip(days[:done], ["100000.00", "99870.00", "101234.56"][:done], strict=True)
            ]
            self.instance_out(state)
            progress = {"bar_date": days[done - 1], "days_done": done, "days": 3, "orders_sent": 1, "playing": True}
            return httpx.Response(200, json={"instance_id": ID, "state": state, "equity_curve": curve,
                                             "progress": progress})  # fmt: skip
        if action == "":
            return httpx.Response(200, json={**self.instance, "error": "strategy raised ZeroDivisionError"})
        return httpx.Response(404, json={"code": "not_found", "message": path})


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    fake = FakeGateway()
    monkeypatch.setattr(strategy_cli, "transport", httpx.MockTransport(fake))
    monkeypatch.setattr(strategy_cli, "sleep", lambda _s: None)
    monkeypatch.setenv("LH_USERNAME", "trader")
    monkeypatch.setenv("LH_PASSWORD", PASSWORD)
    monkeypatch.delenv("LH_API_KEY", raising=False)
    monkeypatch.delenv("LH_URL", raising=False)
    yield fake


CREATE = ["strategy", "create", "--strategy", "dual_ma", "--param", "fast=5", "--param", "slow=20",
          "--codes", "600000.SH, 000001.sz", "--capital", "100000"]  # fmt: skip


def test_create_sends_the_form_as_the_api_body_and_prints_the_instance(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(CREATE) == EXIT_OK
    token_call, create_call = gateway.requests
    assert str(token_call.url) == "http://127.0.0.1:8000/api/v1/auth/token"
    assert create_call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(create_call.content) == {
        "strategy": "dual_ma",
        "params": {"fast": 5, "slow": 20},
        "universe": {"ts_codes": ["600000.SH", "000001.SZ"]},
        "capital": "100000",
        "mode": "paper",
        "order_timing": "open",
    }
    out, err = capsys.readouterr()
    assert json.loads(out)["instance_id"] == ID
    assert PASSWORD not in out + err and TOKEN not in out + err


def test_a_bad_parameter_exits_2_with_the_apis_message(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*CREATE]
    argv[argv.index("fast=5")] = "fast=five"
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "HTTP 422 invalid_request: params.fast: Input should be a valid integer" in err


def test_a_malformed_param_exits_2_before_anything_is_sent(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*CREATE]
    argv[argv.index("fast=5")] = "fast"
    assert main(argv) == EXIT_BAD_INPUT
    assert "--param 'fast': expected name=value" in capsys.readouterr().err
    assert not any(r.url.path == "/api/v1/strategy-instances" for r in gateway.requests)


def test_an_unknown_strategy_or_instance_exits_1(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*CREATE]
    argv[argv.index("dual_ma")] = "no_such"
    assert main(argv) == EXIT_FAILED
    assert "HTTP 404 unknown_strategy: strategy: no such strategy" in capsys.readouterr().err
    assert main(["strategy", "pause", "f" * 32]) == EXIT_FAILED
    assert "HTTP 404 instance_not_found" in capsys.readouterr().err


def test_an_action_the_state_refuses_exits_1_naming_the_transition(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(CREATE) == EXIT_OK
    capsys.readouterr()
    assert main(["strategy", "stop", ID]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["state"] == "stopped"
    assert main(["strategy", "start", ID]) == EXIT_FAILED
    assert "HTTP 409 illegal_transition: cannot start a stopped instance" in capsys.readouterr().err


def test_replay_starts_with_the_days_follows_the_progress_and_prints_the_final_equity(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(CREATE) == EXIT_OK
    capsys.readouterr()
    code = main(["strategy", "replay", ID, "--start", "2024-01-02", "--end", "2024-01-04", "--days-per-second", "50"])
    assert code == EXIT_OK
    start = next(r for r in gateway.requests if r.url.path.endswith("/start"))
    assert json.loads(start.content) == {"replay": {"start": "2024-01-02", "end": "2024-01-04", "days_per_second": 50}}
    out, err = capsys.readouterr()
    # stderr is no terminal here: one line per step of the bar, 1/3 (10 of 30 marks), 2/3, 3/3.
    assert err.splitlines() == [
        "[##########....................]  33% 1/3 days 2024-01-02",
        "[####################..........]  66% 2/3 days 2024-01-03",
        "[##############################] 100% 3/3 days 2024-01-04",
    ]
    assert out.strip() == f"instance {ID}: stopped, 3 days, final equity 101234.56 CNY"


def test_a_replay_that_fails_exits_1_with_the_instances_error(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.replay_ends = "failed"
    assert main(CREATE) == EXIT_OK
    assert main(["strategy", "replay", ID, "--start", "2024-01-02", "--end", "2024-01-04"]) == EXIT_FAILED
    assert "the replay failed: strategy raised ZeroDivisionError" in capsys.readouterr().err


def test_list_with_an_api_key_and_the_url_from_the_environment(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(CREATE) == EXIT_OK
    capsys.readouterr()
    gateway.requests.clear()
    monkeypatch.setenv("LH_API_KEY", API_KEY)
    monkeypatch.setenv("LH_URL", "http://platform.example:9000/")
    assert main(["strategy", "list"]) == EXIT_OK
    assert [str(r.url) for r in gateway.requests] == [
        "http://platform.example:9000/api/v1/strategy-instances",
        f"http://platform.example:9000/api/v1/strategy-instances/{ID}/sleeve",
    ]
    assert all(r.headers["X-API-Key"] == API_KEY and "Authorization" not in r.headers for r in gateway.requests)
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["INSTANCE", "STRATEGY", "STATE", "MODE", "CAPITAL", "EQUITY", "OWNER"]
    assert row.split() == [ID, "dual_ma", "created", "paper", "100000", "100250.00", "trader"]


def test_wrong_or_missing_credentials(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LH_PASSWORD", "wrong")
    assert main(["strategy", "list"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "HTTP 401 invalid_credentials" in err and "wrong" not in err.replace("wrong username", "")
    monkeypatch.delenv("LH_PASSWORD")
    assert main(["strategy", "list"]) == EXIT_BAD_INPUT
    assert "no credentials: set LH_API_KEY, or LH_USERNAME and LH_PASSWORD" in capsys.readouterr().err


def test_an_unreachable_platform_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(strategy_cli, "transport", httpx.MockTransport(refuse))
    monkeypatch.setenv("LH_API_KEY", API_KEY)
    assert main(["strategy", "--url", "http://127.0.0.1:1", "list"]) == EXIT_FAILED
    assert "cannot reach the platform at http://127.0.0.1:1" in capsys.readouterr().err
    assert main(["strategy", "list", "--url", "http://127.0.0.1:2"]) == EXIT_FAILED  # after the action too
    assert "cannot reach the platform at http://127.0.0.1:2" in capsys.readouterr().err
