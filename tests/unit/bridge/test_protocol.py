"""The bridge protocol's signing and framing (bridge/qmt/protocol.py), against HMAC-SHA256 computed here by hand."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from bridge.qmt import protocol

SECRET = "s3cret-for-tests"
NOW = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)


def hand_sig(text: str) -> str:
    return hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()


def pair() -> tuple[protocol.Channel, protocol.Channel]:
    platform = protocol.Channel(SECRET, "sess-1", protocol.TO_BRIDGE)
    bridge = protocol.Channel(SECRET, "sess-1", protocol.TO_PLATFORM)
    return platform, bridge


def test_remark_is_the_order_id_cut_to_24_ascii_characters() -> None:
    assert protocol.remark_for("0123456789abcdef0123456789abcdef") == "0123456789abcdef01234567"
    assert protocol.remark_for("short") == "short"
    with pytest.raises(ValueError):
        protocol.remark_for("单号")
    with pytest.raises(ValueError):
        protocol.remark_for("")


def test_a_hello_is_signed_over_the_challenge_and_checked() -> None:
    message = protocol.hello(SECRET, bridge_id="b1", account_id="acct", channel="trading", server_nonce="n0", now=NOW)
    text = f"hello|1|b1|acct|trading|n0|{message['nonce']}|{NOW.isoformat()}"
    assert message["sig"] == hand_sig(text)
    assert protocol.check_hello(SECRET, message, server_nonce="n0", now=NOW) is None
    # another challenge (a replayed hello), another secret, a clock too far off, another version
    assert protocol.check_hello(SECRET, message, server_nonce="n1", now=NOW) == "the hello's signature is wrong"
    assert protocol.check_hello("other", message, server_nonce="n0", now=NOW) == "the hello's signature is wrong"
    late = NOW + timedelta(seconds=protocol.MAX_CLOCK_SKEW_S + 1)
    assert "too far" in (protocol.check_hello(SECRET, message, server_nonce="n0", now=late) or "")
    assert "version" in (protocol.check_hello(SECRET, {**message, "version": 2}, server_nonce="n0", now=NOW) or "")
    assert protocol.check_hello(SECRET, {"type": "hello"}, server_nonce="n0", now=NOW) == "the hello is malformed"


def test_the_welcome_proves_the_platform_knows_the_secret() -> None:
    trading = {"enabled": False, "read_only": False}
    welcome = protocol.welcome(SECRET, bridge_id="b1", nonce="bn", trading=trading)
    assert protocol.check_welcome(SECRET, welcome, bridge_id="b1", nonce="bn")
    assert not protocol.check_welcome(SECRET, welcome, bridge_id="b1", nonce="another")
    assert not protocol.check_welcome("wrong", welcome, bridge_id="b1", nonce="bn")
    assert not protocol.check_welcome(SECRET, {**welcome, "trading": {"enabled": True, "read_only": False}},
                                      bridge_id="b1", nonce="bn")  # fmt: skip


def test_a_frame_is_a_signed_header_line_and_the_body_text_as_sent() -> None:
    platform, bridge = pair()
    text = platform.seal(protocol.PLACE, {"order_id": "o1", "qty": 100}, id_="p2b-1")
    head_text, body_text = text.split("\n", 1)
    head = json.loads(head_text)
    assert body_text == '{"order_id":"o1","qty":100}'
    assert (head["seq"], head["type"], head["id"]) == (1, "place", "p2b-1")
    assert head["sig"] == hand_sig(f"sess-1|p2b|1|place|p2b-1|{body_text}")
    assert bridge.open(text) == ("place", "p2b-1", {"order_id": "o1", "qty": 100})
    assert bridge.open(platform.seal(protocol.QUERY_ASSET, {}).encode()) == ("query_asset", None, {})


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        (lambda h, b: (h, b.replace('"qty":100', '"qty":900')), "wrong signature"),
        (lambda h, b: (h.replace('"seq":1', '"seq":7'), b), "wrong signature"),
        (lambda h, b: (h.replace('"type":"place"', '"type":"cancel"'), b), "wrong signature"),
        (lambda h, b: (h + b, ""), "no header line"),
        (lambda h, b: ("{not json", b), "malformed frame"),
        (lambda h, b: (h.replace('"seq":1', '"seq":"1"'), b), "wrong type"),
    ],
    ids=["body", "seq", "type", "one-line", "header-not-json", "seq-a-string"],
)
def test_a_changed_or_malformed_frame_is_refused(tamper, error: str) -> None:  # type: ignore[no-untyped-def]
    platform, bridge = pair()
    head, body = platform.seal(protocol.PLACE, {"order_id": "o1", "qty": 100}, id_="p2b-1").split("\n", 1)
    head, body = tamper(head, body)
    with pytest.raises(protocol.ProtocolError, match=error):
        bridge.open(head + ("\n" + body if body else ""))
    assert bridge.received_seq == 0  # nothing taken


def test_a_replayed_or_reflected_frame_is_refused() -> None:
    platform, bridge = pair()
    first = platform.seal(protocol.QUERY_ORDERS, {})
    bridge.open(first)
    with pytest.raises(protocol.ProtocolError, match="not after frame 1"):
        bridge.open(first)
    # a frame the platform sent, sent back to the platform, fails: the direction is signed
    with pytest.raises(protocol.ProtocolError, match="wrong signature"):
        platform.open(platform.seal(protocol.QUERY_ORDERS, {}))
    # a body that is not an object, even if signed
    sealed = platform.seal(protocol.QUERY_ORDERS, {})
    head = json.loads(sealed.split("\n", 1)[0])
    head["sig"] = hand_sig(f"sess-1|p2b|{head['seq']}|query_orders||[1]")
    with pytest.raises(protocol.ProtocolError, match="not an object"):
        bridge.open(protocol.canonical(head) + "\n[1]")
