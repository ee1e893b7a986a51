"""LH_QMT_BRIDGE_SECRETS: read as `bridge_id=secret,...`, never shown by the settings' repr; LH_QMT_UNKNOWN_GRACE_S."""

from __future__ import annotations

import pytest

from shared.platform.settings import Settings


def test_bridge_secrets_are_parsed_and_hidden() -> None:
    settings = Settings(qmt_bridge_secrets=" qmt-a=s3cret-one-0123456 , qmt-b=s3cret=two-0123456,")  # type: ignore[arg-type]
    assert settings.qmt_bridge_secret_map() == {"qmt-a": "s3cret-one-0123456", "qmt-b": "s3cret=two-0123456"}
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    assert Settings().qmt_bridge_secret_map() == {}


@pytest.mark.parametrize("text", ["qmt-a", "=secret", "qmt-a=", "qmt-a=0123456789abcdef,broken"])
def test_a_malformed_entry_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bridge_id=secret"):
        Settings(qmt_bridge_secrets=text).qmt_bridge_secret_map()  # type: ignore[arg-type]


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings(qmt_bridge_secrets="qmt-a=0123456789abcde").qmt_bridge_secret_map()  # type: ignore[arg-type]
    assert Settings(qmt_bridge_secrets="qmt-a=0123456789abcdef").qmt_bridge_secret_map() == {  # type: ignore[arg-type]
        "qmt-a": "0123456789abcdef"
    }


def test_the_unknown_grace_defaults_to_a_minute_and_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().qmt_unknown_grace_s == 60.0
    monkeypatch.setenv("LH_QMT_UNKNOWN_GRACE_S", "3")
    assert Settings().qmt_unknown_grace_s == 3.0
    for bad in ("0", "-1", "nan"):
        monkeypatch.setenv("LH_QMT_UNKNOWN_GRACE_S", bad)
        with pytest.raises(ValueError, match="qmt_unknown_grace_s"):
            Settings()
