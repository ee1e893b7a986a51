"""The quotes endpoint's frame parser (services/data/realtime/bridge.py `parse_json`: orjson where it reads a text
as json.loads does, json.loads otherwise) and its place in the frame check (`protocol.Channel.open`: the body's
signature over its text as it came, checked before it is parsed)."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import orjson
import pytest

from bridge.qmt import normalize, protocol
from services.data.realtime import bridge
from services.data.realtime.bridge import parse_json, platform_channel


def market_round(n: int, k: int) -> list[dict[str, Any]]:
    """A whole market's round as the bridge program sends it (xtdata's entries through its normalisation)."""
    out = []
    for i in range(n):
        base, last = 1000 + i % 400, 1000 + i % 400 + k % 7
        entry = {
            "time": 1735781400000 + 3000 * k, "lastPrice": last / 100, "open": base / 100, "high": (last + 10) / 100,
            "low": (base - 50) / 100, "lastClose": base / 100, "amount": (k + 1) * 1000 * last / 100,
            "volume": (k + 1) * 10, "bidPrice": [(last - j) / 100 for j in range(5)], "bidVol": [10 + j for j in range(5)],
            "askPrice": [(last + 1 + j) / 100 for j in range(5)], "askVol": [10 + j for j in range(5)],
        }  # fmt: skip
        out.append(normalize.snapshot(f"{600000 + i:06d}.SH" if i % 2 else f"{i:06d}.SZ", entry))
    return out


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all through (1 == 1.0 and True == 1 in Python: not here); NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


def outcome(loads: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", loads(text)
    except RecursionError:
        return "recursion", None
    except ValueError:
        return "error", None


def assert_as_json(text: str) -> None:
    expected, got = outcome(json.loads, text), outcome(parse_json, text)
    assert expected[0] == got[0] and same(expected[1], got[1]), text[:80]


def test_a_whole_market_frame_reads_as_json_loads_reads_it() -> None:
    body = json.dumps({"quotes": market_round(5000, 3)}, separators=(",", ":"), ensure_ascii=False)
    assert_as_json(body)
    assert orjson.loads(body) == json.loads(body)  # the common frame is read by orjson, not by the fallback


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"a":2,"b":3}',  # a key twice: the last value, at the first one's place
        "[NaN]", "[Infinity,-Infinity]", "[1e400]", "[-1e400]", "[1.5e-400]", "[-0]", "[-0.0]",  # json.loads reads these
        "[18446744073709551615]", "[18446744073709551616]",  # 2**64 - 1 and 2**64: orjson would give a float
        "[-9223372036854775808]", "[-9223372036854775809]", "[123456789012345678901234567890]",
        '{"volume_lots":99999999999999999999}', '["1234567890123456789012"]',  # a long number in a string: json.loads'
        '["\\ud800"]', '["\\ud83d\\ude00"]', '["a\x01b"]', "\ufeff{}", "{} ", " {}", "{}x", "", '["\\u0000"]',
        "[0.1]", "[1.0000000000000002]", "[1E5]", "[01]", "[1.]", "[.5]", "[true,false,null]", '{"\\u00e9":"\u00e9"}',
        "[" * 1100 + "]" * 1100,  # deeper than orjson goes (1,024)
        "[" * 5000 + "]" * 5000,  # deeper than json.loads goes: its RecursionError, as before
        "[2.2250738585072011e-308]", "[4.9406564584124654e-324]", "[17976931348623157e292]", "[9007199254740993.0]",
        '{"quotes":[{"ts_code":"600000.SH","volume_lots":-1,"bid":[["10.00",1]]}]}',
    ],
)  # fmt: skip
def test_edge_texts_read_as_json_loads_reads_them(text: str) -> None:
    assert_as_json(text)


def test_numbers_read_as_json_loads_reads_them() -> None:
    rng = random.Random(14)
    texts = []
    for _ in range(3000):
        value = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-300, 300)
        texts += [repr(value), f"{value:.17g}", f"{value:.6e}"]
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))
        texts += [digits.lstrip("0") or "0", f"0.{digits}", f"-{digits[:1]}.{digits[1:] or '0'}e{rng.randint(-20, 20)}"]
    for text in texts:
        assert_as_json(f"[{text}]")


def test_the_fallback_is_json_loads() -> None:
    """A text orjson refuses and json.loads reads: json.loads' objects (NaN here)."""
    value = parse_json('{"last":NaN}')
    assert math.isnan(value["last"])
    with pytest.raises(json.JSONDecodeError):
        parse_json('{"last":}')


def test_a_frame_is_checked_before_its_body_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    def spying(text: str) -> Any:
        parsed.append(text)
        return parse_json(text)

    monkeypatch.setattr(bridge, "parse_json", spying)
    sender = protocol.Channel(secret="k" * 32, session="s1", outgoing=protocol.TO_PLATFORM)
    receiver = platform_channel("k" * 32, "s1")
    body = {"quotes": market_round(3, 1)}
    frame = sender.seal(protocol.QUOTES, body)
    # the body changed in transit (still JSON): refused by its signature, never parsed
    forged = frame.replace('"10.010"', '"10.020"', 1)
    assert forged != frame
    with pytest.raises(protocol.ProtocolError, match="wrong signature"):
        receiver.open(forged)
    assert parsed == []
    assert receiver.open(frame) == (protocol.QUOTES, None, body)
    assert parsed == [frame.partition("\n")[2]]  # the exact text signed, parsed once
