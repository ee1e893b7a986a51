"""Structured JSON logging and the correlation id that follows a request across REST and AMQP hops, and the one
place where credentials are taken out of log lines (every record of every logger, ours and the libraries', goes
through the handler `configure_logging` installs, and its redacting filter)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime

CORRELATION_HEADER = "X-Correlation-ID"
REQUEST_ID_HEADER = "X-Request-ID"

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_id() -> str:
    return uuid.uuid4().hex


def current_correlation_id() -> str | None:
    return correlation_id_var.get()


# --- redaction ---------------------------------------------------------------------------------------------

REDACTED = "[REDACTED]"
# Names whose value is a credential: as a query-string or form parameter (`?token=...`), as a key with `=` or `:`
# and its value quoted or not (`password='...'`, `"api_key": "..."`, `password: ...`, `Authorization: Token ...`),
# or as a log record's `extra` field. `input_value` is what pydantic's ValidationError shows of a refused input,
# which may be a password.
_SECRET_NAME = (
    r"(?:access_token|refresh_token|id_token|token|api_key|apikey|x-api-key|password|passwd|pwd|secret|"  # noqa: S105
    r"client_secret|jwt_secret|internal_secret|approval_secret|tushare_token|signature|sig|authorization|"
    r"input_value)"
)
_SECRET_FIELD = re.compile(
    r"(?i)(password|passwd|secret|token|api_key|apikey|signature|authorization|approval|credentials?)$"
)
# Every pattern runs in time linear in the text, whatever the text (log lines carry request paths, which anyone can
# make 60 KB of "a.a.a..."): each can start only where a fixed word or `://` is, its quantifiers are bounded or stop
# at the next separator, and an opening quote that is never closed takes the rest of the text rather than making
# the engine try again from every later position.
_NAMED_SECRET = re.compile(
    rf"(?i)(?<![\w-])((['\"]?){_SECRET_NAME}\2[ \t]{{0,8}}[:=][ \t]{{0,8}})"
    r"(?:(')(?:[^'\\]|\\.)*+(')?|(\")(?:[^\"\\]|\\.)*+(\")?"
    r"|((?:bearer|basic|token|digest)[ \t]{1,8})?[^&\s\"',;#)]++)"
)


def _named_secret(match: re.Match[str]) -> str:
    """The name, its separator, its quotes (or an Authorization scheme) stay; what is between them goes."""
    opening = match.group(3) or match.group(5) or match.group(7) or ""
    closing = match.group(4) or match.group(6) or ""
    return f"{match.group(1)}{opening}{REDACTED}{closing}"


_PATTERNS: tuple[tuple[str, re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # password=... token: ... password='...' "api_key": "it's" Authorization: Token ... input_value='...'
    ("", _NAMED_SECRET, _named_secret),
    # scheme://user:password@host (anchored on the literal `://`, not on the scheme before it)
    ("://", re.compile(r"(://[^/\s:@]{0,256}:)[^@\s/]{1,1024}@"), rf"\1{REDACTED}@"),
    # Authorization: Bearer ... / Basic ... anywhere
    ("", re.compile(r"(?i)\b(bearer|basic)[ \t]{1,8}[A-Za-z0-9._~+/=-]{8,}+"), rf"\1 {REDACTED}"),
    # a JWT anywhere (header.payload.signature, the header base64 of '{"...'), starting where a base64url run does
    (
        "eyJ",
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*+\.[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+"),
        REDACTED,
    ),
    # the gateway's API keys: the key id (a lookup handle) stays, the secret goes
    ("lh_", re.compile(r"\b(lh_[0-9a-f]{16}_)[A-Za-z0-9_-]++"), rf"\1{REDACTED}"),
)
# Environment variables whose values are secrets: whatever shape the value has, it is taken out of log lines.
_SECRET_ENV = re.compile(r"(?i)^LH_\w*(SECRET|PASSWORD|TOKEN|API_KEY)\w*$")
_MIN_KNOWN_SECRET = 6  # shorter values would redact ordinary words
_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None


def register_secrets(values: Iterable[str]) -> None:
    """Values to take out of every log line from now on, whatever their shape (a Tushare token, a password)."""
    global _known_pattern
    added = {v for v in values if v and len(v) >= _MIN_KNOWN_SECRET} - _known
    if added:
        _known.update(added)
        alternatives = sorted(_known, key=len, reverse=True)  # the longest first: a secret containing another
        _known_pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def _secrets_from_environment() -> list[str]:
    found = [v for k, v in os.environ.items() if _SECRET_ENV.match(k)]
    # The password inside a connection URL (LH_DATABASE_URL, LH_AMQP_URL, LH_REDIS_URL, ...).
    for value in os.environ.values():
        found += [m.group(1) for m in re.finditer(r"://[^/\s:@]{0,256}:([^@\s/]{1,1024})@", value)]
    return found


def redact(text: str) -> str:
    """`text` without the credentials it contains."""
    if _known_pattern is not None:
        text = _known_pattern.sub(REDACTED, text)
    for needle, pattern, replacement in _PATTERNS:
        if needle in text:  # a cheap scan first: most lines have no `://`, `eyJ` or `lh_` at all
            text = pattern.sub(replacement, text)
    return text


def _redact_value(name: str, value: object) -> object:
    if _SECRET_FIELD.search(name) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (bytes, an exception, a model) is turned into text by the formatter: redact that text now.
    text = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
    return redact(text)


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class RedactSecrets(logging.Filter):
    """Rewrites each record in place before any formatter sees it: its message (with its arguments, e.g. uvicorn's
    `"WebSocket /ws?token=..."`), its `extra` fields, and its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.args or cleaned != message:
            record.msg, record.args = cleaned, None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                record.__dict__[key] = _redact_value(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# --- formatting --------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id and any `extra` fields."""

    _STANDARD = _STANDARD_ATTRS

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = correlation_id_var.get()
        if cid:
            entry["correlation_id"] = cid
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and not key.startswith("_"):
                entry[key] = value
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        if exc:
            entry["exc"] = exc
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", json_format: bool = True) -> None:
    """One handler on the root logger for every logger of the process, with the redacting filter: secrets from the
    environment (LH_*SECRET*, *PASSWORD*, *TOKEN*, *API_KEY*, passwords in URLs) and anything shaped like a
    credential never reach the output."""
    register_secrets(_secrets_from_environment())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets())
    if json_format:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aio-pika/aiormq are chatty at INFO about every channel; keep their warnings.
    for noisy in ("aiormq", "aio_pika", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
