"""The bridge's configuration: a TOML file and/or the environment (the environment wins). The shared secret comes
from the environment only (LH_BRIDGE_SECRET): a `secret` in the file is refused, and the secret is never logged
(it is kept out of the config's repr).

    userdata_path = 'C:\\国金QMT交易端\\userdata_mini'   # MiniQMT's userdata_mini folder   LH_BRIDGE_USERDATA
    session_id = 123456                                # an int, different per process     LH_BRIDGE_SESSION
    account_id = "8881234567"                          # the broker's fund account        LH_BRIDGE_ACCOUNT
    bridge_id = "desk1"                                # as the platform knows it          LH_BRIDGE_ID
    platform_url = "wss://quant.example.com"           # ws:// or wss://                   LH_BRIDGE_PLATFORM_URL
    journal_path = "bridge-journal.sqlite3"            # the order journal                 LH_BRIDGE_JOURNAL
    quotes = false                                     # forward xtdata snapshots          LH_BRIDGE_QUOTES
    quote_codes = ["SH", "SZ"]                         # markets or ts_codes               LH_BRIDGE_QUOTE_CODES
    reconcile_interval_s = 30                          # poll MiniQMT's orders and trades  LH_BRIDGE_RECONCILE_S
    reconnect_initial_s = 1                            # backoff: first wait, doubling ... LH_BRIDGE_RECONNECT_INITIAL_S
    reconnect_max_s = 60                               # ... up to this                    LH_BRIDGE_RECONNECT_MAX_S
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SECRET_ENV = "LH_BRIDGE_SECRET"  # noqa: S105 (the variable's name, not a secret)
MIN_SECRET_LENGTH = 16
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_CODE = re.compile(r"^(\d{6}\.(SH|SZ|BJ)|SH|SZ|BJ)$")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class BridgeConfig:
    userdata_path: str
    session_id: int
    account_id: str
    bridge_id: str
    platform_url: str
    journal_path: str
    quotes: bool = False
    quote_codes: tuple[str, ...] = ("SH", "SZ")
    reconcile_interval_s: float = 30.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 60.0
    secret: str = field(default="", repr=False)  # from LH_BRIDGE_SECRET only

    def url(self, path: str) -> str:
        return self.platform_url.rstrip("/") + path


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: must be a non-empty string")
    return value.strip()


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: must be an integer, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be an integer, not {value!r}") from None


def _seconds(name: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be a number of seconds, not {value!r}") from None
    if not 0 < seconds <= 3600:
        raise ConfigError(f"{name}: must be more than 0 and at most 3600 seconds, not {value!r}")
    return seconds


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ConfigError(f"{name}: must be true or false, not {value!r}")


def _codes(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(";", ",").split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: must be a non-empty list of markets (SH, SZ, BJ) or ts_codes (600000.SH)")
    codes = tuple(v.strip().upper() for v in value)
    bad = [v for v in codes if not _CODE.match(v)]
    if bad:
        raise ConfigError(f"{name}: {bad[0]!r} is neither a market (SH, SZ, BJ) nor a ts_code like 600000.SH")
    return codes


# setting -> (environment variable, parser)
_SETTINGS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "userdata_path": ("LH_BRIDGE_USERDATA", _text),
    "session_id": ("LH_BRIDGE_SESSION", _int),
    "account_id": ("LH_BRIDGE_ACCOUNT", _text),
    "bridge_id": ("LH_BRIDGE_ID", _text),
    "platform_url": ("LH_BRIDGE_PLATFORM_URL", _text),
    "journal_path": ("LH_BRIDGE_JOURNAL", _text),
    "quotes": ("LH_BRIDGE_QUOTES", _bool),
    "quote_codes": ("LH_BRIDGE_QUOTE_CODES", _codes),
    "reconcile_interval_s": ("LH_BRIDGE_RECONCILE_S", _seconds),
    "reconnect_initial_s": ("LH_BRIDGE_RECONNECT_INITIAL_S", _seconds),
    "reconnect_max_s": ("LH_BRIDGE_RECONNECT_MAX_S", _seconds),
}
_REQUIRED = ("userdata_path", "session_id", "account_id", "bridge_id", "platform_url", "journal_path")


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> BridgeConfig:
    """The configuration from `path` (TOML, optional) overlaid by the environment; raises ConfigError naming the
    setting that is missing or wrong."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        if "secret" in raw or any("secret" in k.lower() for k in raw):
            raise ConfigError(f"the shared secret must not be in the config file: set it in {SECRET_ENV} only")
        unknown = sorted(set(raw) - set(_SETTINGS))
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r} in {str(path)!r} (known: {', '.join(_SETTINGS)})")
    values: dict[str, Any] = {}
    for name, (var, parse) in _SETTINGS.items():
        if env.get(var, "").strip():
            values[name] = parse(f"{name} (from {var})", env[var])
        elif name in raw:
            values[name] = parse(name, raw[name])
    missing = [n for n in _REQUIRED if n not in values]
    if missing:
        name = missing[0]
        raise ConfigError(f"{name}: missing (set it in the config file or in {_SETTINGS[name][0]})")
    for name in ("account_id", "bridge_id"):
        if not _ID.match(values[name]):
            raise ConfigError(f"{name}: {values[name]!r} must be 1-64 letters, digits, '.', '_' or '-'")
    url = urlsplit(values["platform_url"])
    if url.scheme not in ("ws", "wss") or not url.hostname:
        raise ConfigError(f"platform_url: {values['platform_url']!r} must be a ws:// or wss:// URL with a host")
    if url.query or url.fragment:
        raise ConfigError("platform_url: must have no query or fragment")
    if url.scheme == "ws" and not _loopback(url.hostname):
        # orders, trades, positions and cash would cross the network in clear text
        raise ConfigError(
            f"platform_url: {values['platform_url']!r} must be wss:// (TLS) unless the platform is on this machine"
        )
    if values.get("reconnect_max_s", 60.0) < values.get("reconnect_initial_s", 1.0):
        raise ConfigError("reconnect_max_s: must not be less than reconnect_initial_s")
    secret = env.get(SECRET_ENV, "")
    if not secret:
        raise ConfigError(f"the shared secret is missing: set {SECRET_ENV} in the environment")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{SECRET_ENV}: must be at least {MIN_SECRET_LENGTH} characters")
    return BridgeConfig(secret=secret, **values)
