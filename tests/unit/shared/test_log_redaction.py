"""No credential reaches a log line: the handler configure_logging installs redacts every record, whoever logs it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest

from shared.platform.observability import configure_logging

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


# Shapes that made the old patterns try again from every position (quadratic): "a."*40000 took 29 s.
ADVERSARIAL = {
    "dotted path": "a." * 50_000,
    "colons": "a:" * 50_000,
    "equals run": "password" + "=" * 100_000,
    "quotes": "'" * 100_000,
    "open quoted keys": '"password": "' * 8_000,
    "schemes": "a://b:" * 17_000,
    "jwt-ish runs": "eyJ-" * 25_000,
    "bearer words": "Bearer " * 15_000,
    "spaces after a name": "password" + " " * 100_000 + "x",
}


def test_adversarial_text_is_redacted_in_linear_time() -> None:
    """A hang guard, not a timing assertion: each 100 KB text takes well under 0.1 s now, the old patterns minutes
    for some of them; a thread that has not finished after 5 s is stuck."""
    import threading

    from shared.platform.observability import redact

    done: list[str] = []

    def run() -> None:
        for name, text in ADVERSARIAL.items():
            redact(text)
            done.append(name)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=5.0)
    assert done == list(ADVERSARIAL), f"stuck on {next(n for n in ADVERSARIAL if n not in done)!r}"
    # ... and URLs with passwords are still redacted, next to such text.
    line = "a." * 1000 + " redis://:cache-pw-77@10.0.0.7:6379/0 amqp://lh:bus-pw-88@mq/lh " + "a." * 1000
    cleaned = redact(line)
    assert "cache-pw-77" not in cleaned and "bus-pw-88" not in cleaned
    assert "redis://:[REDACTED]@10.0.0.7:6379/0 amqp://lh:[REDACTED]@mq/lh" in cleaned


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("UserCreate(username='bob', password='hunter2-x')", "UserCreate(username='bob', password='[REDACTED]')"),
        (
            "password\n  String should have at most 256 characters [type=string_too_long, input_value='s3cret-pw', "
            "input_type=str]",
            "password\n  String should have at most 256 characters [type=string_too_long, input_value='[REDACTED]', "
            "input_type=str]",
        ),
        ("login failed, password: hunter2-x", "login failed, password: [REDACTED]"),
        ("headers Authorization: Token abc123def456", "headers Authorization: Token [REDACTED]"),
        ('{"password": "it\'s a secret", "user": "bob"}', '{"password": "[REDACTED]", "user": "bob"}'),
        ("{'password': \"it's\", 'n': 1}", "{'password': \"[REDACTED]\", 'n': 1}"),
        ('{"token": "a\\"b", "n": 1}', '{"token": "[REDACTED]", "n": 1}'),
    ],
)
def test_credentials_in_reprs_and_headers_are_redacted(text: str, expected: str) -> None:
    from shared.platform.observability import redact

    assert redact(text) == expected


def test_extras_that_are_bytes_or_objects_are_redacted(log_output: Callable[[bool], Callable[[], str]]) -> None:
    read = log_output(True)

    class Form:
        def __str__(self) -> str:
            return "Form(username='bob', password='obj-pw-1234')"

    log = logging.getLogger("lianghua.test")
    log.info("body", extra={"body": b"username=bob&password=bytes-pw-1234", "header": f"Bearer {JWT}".encode()})
    log.info("form", extra={"form": Form(), "count": 3, "ratio": 0.5, "flag": True, "nothing": None})
    text = read()
    for secret in ("bytes-pw-1234", JWT, "obj-pw-1234"):
        assert secret not in text, secret
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["body"] == "username=bob&password=[REDACTED]"
    assert first["header"] == "Bearer [REDACTED]"
    assert second["form"] == "Form(username='bob', password='[REDACTED]')"
    assert (second["count"], second["ratio"], second["flag"], second["nothing"]) == (3, 0.5, True, None)


async def test_the_access_log_keeps_the_first_2048_characters_of_a_long_path(
    log_output: Callable[[bool], Callable[[], str]],
) -> None:
    import httpx

    from shared.platform.app import Infra, create_service_app
    from shared.platform.bus import MemoryBus
    from shared.platform.cache import MemoryCache
    from shared.platform.http import ServiceDirectory
    from shared.platform.settings import Mode, Settings

    settings = Settings(mode=Mode.FLEET, internal_secret="i" * 32)
    app = create_service_app("probe", Infra(settings, MemoryBus(), MemoryCache(), ServiceDirectory(settings)))
    read = log_output(True)
    path = "/" + "a." * 30_000
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client:
        assert (await client.get(path)).status_code == 404
    entries = [json.loads(line) for line in read().splitlines()]
    logged = [e["path"] for e in entries if e["msg"] == "request"]
    assert logged == [path[:2048] + "..."]
