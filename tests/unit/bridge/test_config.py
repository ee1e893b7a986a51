"""The bridge's configuration: file and environment, the secret from the environment only, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.qmt.config import ConfigError, load_config

SECRET = "s3cret-s3cret-s3cret"
GOOD = """
userdata_path = 'C:\\QMT\\userdata_mini'
session_id = 123456
account_id = "8881234567"
bridge_id = "desk1"
platform_url = "wss://quant.example.com"
journal_path = "journal.sqlite3"
quotes = true
quote_codes = ["SH", "000001.SZ"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_and_the_secret_from_the_environment(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), {"LH_BRIDGE_SECRET": SECRET})
    assert config.userdata_path == "C:\\QMT\\userdata_mini"
    assert (config.session_id, config.account_id, config.bridge_id) == (123456, "8881234567", "desk1")
    assert config.url("/bridge/v1/trading") == "wss://quant.example.com/bridge/v1/trading"
    assert config.quotes is True and config.quote_codes == ("SH", "000001.SZ")
    assert (config.reconnect_initial_s, config.reconnect_max_s) == (1.0, 60.0)
    assert config.secret == SECRET
    assert SECRET not in repr(config)


def test_the_environment_overrides_the_file_and_can_stand_alone(tmp_path: Path) -> None:
    env = {
        "LH_BRIDGE_SECRET": SECRET,
        "LH_BRIDGE_SESSION": "42",
        "LH_BRIDGE_QUOTES": "off",
        "LH_BRIDGE_QUOTE_CODES": "600000.sh,SZ",
    }
    config = load_config(write(tmp_path, GOOD), env)
    assert (config.session_id, config.quotes, config.quote_codes) == (42, False, ("600000.SH", "SZ"))
    alone = load_config(
        None,
        {
            **env,
            "LH_BRIDGE_USERDATA": "/u",
            "LH_BRIDGE_ACCOUNT": "a1",
            "LH_BRIDGE_ID": "b1",
            "LH_BRIDGE_PLATFORM_URL": "ws://127.0.0.1:8000/",
            "LH_BRIDGE_JOURNAL": "j.db",
        },
    )
    assert alone.url("/bridge/v1/quotes") == "ws://127.0.0.1:8000/bridge/v1/quotes"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (GOOD + 'secret = "x"\n', {"LH_BRIDGE_SECRET": SECRET}, "must not be in the config file"),
        (GOOD, {}, "LH_BRIDGE_SECRET"),
        (GOOD, {"LH_BRIDGE_SECRET": "short"}, "at least 16"),
        (GOOD.replace("session_id = 123456", 'session_id = "abc"'), {"LH_BRIDGE_SECRET": SECRET}, "session_id"),
        (GOOD.replace("wss://quant.example.com", "https://q"), {"LH_BRIDGE_SECRET": SECRET}, "platform_url"),
        # clear text across a network: refused (ws:// is for a platform on the same machine)
        (
            GOOD.replace("wss://quant.example.com", "ws://quant.example.com"),
            {"LH_BRIDGE_SECRET": SECRET},
            "must be wss://",
        ),
        (GOOD.replace("wss://quant.example.com", "ws://10.0.0.5:8000"), {"LH_BRIDGE_SECRET": SECRET}, "must be wss://"),
        (GOOD.replace('account_id = "8881234567"\n', ""), {"LH_BRIDGE_SECRET": SECRET}, "account_id: missing"),
        (GOOD + "colour = 1\n", {"LH_BRIDGE_SECRET": SECRET}, "unknown setting 'colour'"),
        (GOOD.replace('"000001.SZ"', '"000001"'), {"LH_BRIDGE_SECRET": SECRET}, "quote_codes"),
        (GOOD.replace("quotes = true", "quotes = 3"), {"LH_BRIDGE_SECRET": SECRET}, "quotes"),
        (GOOD + "reconnect_initial_s = 0\n", {"LH_BRIDGE_SECRET": SECRET}, "reconnect_initial_s"),
        ("session_id = [", {"LH_BRIDGE_SECRET": SECRET}, "not valid TOML"),
        (GOOD.replace('"desk1"', '"desk 1"'), {"LH_BRIDGE_SECRET": SECRET}, "bridge_id"),
    ],
)
def test_a_bad_config_is_refused_naming_the_setting(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(write(tmp_path, text), env)
    assert SECRET not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml", {"LH_BRIDGE_SECRET": SECRET})
