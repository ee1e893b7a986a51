"""No credential reaches a log line: the handler configure_logging installs redacts every record, whoever logs it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest

from shared.observability import configure_logging

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
KEY_SECRET = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5"
API_KEY = f"lh_0123456789abcdef_{KEY_SECRET}"
TUSHARE_TOKEN = "4f1c2b3a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e"


@pytest.fixture
def log_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[[bool], Callable[[], str]]]:
    """`read = log_output(json_format)` sets up logging as a process does (LH_TUSHARE_TOKEN in its environment);
    `read()` is what it has written to stderr since."""
    monkeypatch.setenv("LH_TUSHARE_TOKEN", TUSHARE_TOKEN)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def setup(json_format: bool) -> Callable[[], str]:
        configure_logging("test", "INFO", json_format=json_format)
        capsys.readouterr()
        return lambda: capsys.readouterr().err

    yield setup
    root.handlers[:], root.level = saved


def test_websocket_handshake_line_of_uvicorn_loses_its_token_and_key(
    log_output: Callable[[bool], Callable[[], str]],
) -> None:
    read = log_output(False)
    # What uvicorn's websocket protocol logs at INFO for each handshake.
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:50100", f"/ws?token={JWT}")
    uvicorn.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:50101", f"/ws?x=1&api_key={API_KEY}&y=2")
    out = read()
    assert JWT not in out and KEY_SECRET not in out
    assert '"WebSocket /ws?token=[REDACTED]" [accepted]' in out
    assert '"WebSocket /ws?x=1&api_key=[REDACTED]&y=2" [accepted]' in out


def test_messages_extras_and_tracebacks_are_redacted(log_output: Callable[[bool], Callable[[], str]]) -> None:
    read = log_output(True)
    log = logging.getLogger("lianghua.test")
    log.info("calling tushare with %s", TUSHARE_TOKEN)
    log.info("login", extra={"username": "alice", "password": "hunter2-hunter2"})
    log.warning("header seen: Authorization: Bearer %s", JWT)
    log.info("forwarded", extra={"body": {"qty": 100, "approval": {"signature": "ab" * 32}}})
    log.info("as text: {'password': 'pw-in-a-dict', \"token\": \"%s\"}; key %s", JWT, API_KEY)
    try:
        raise ConnectionError("cannot connect to mysql+asyncmy://lh:db-pass-123@10.0.0.5:3306/lh_gateway")
    except ConnectionError:
        log.exception("database down")
    text = read()
    entries = [json.loads(line) for line in text.splitlines()]
    for secret in (TUSHARE_TOKEN, "hunter2-hunter2", JWT, "ab" * 32, "pw-in-a-dict", KEY_SECRET, "db-pass-123"):
        assert secret not in text, secret
    # What is not a secret stays readable.
    assert entries[1]["username"] == "alice" and entries[1]["password"] == "[REDACTED]"
    assert entries[2]["msg"] == "header seen: Authorization: Bearer [REDACTED]"
    assert entries[3]["body"] == {"qty": 100, "approval": "[REDACTED]"}
    assert (
        entries[4]["msg"]
        == "as text: {'password': '[REDACTED]', \"token\": \"[REDACTED]\"}; key lh_0123456789abcdef_[REDACTED]"
    )
    assert "mysql+asyncmy://lh:[REDACTED]@10.0.0.5:3306/lh_gateway" in entries[5]["exc"]
