"""A real-time feed's snapshot (docs/qmt-bridge.md, "snapshot"; the QMT bridge forwards xtdata's full-market
snapshots in this shape and the replay feed makes the same) read into exact units, or refused with a reason.

A snapshot as it travels: `ts_code`, `time` (ISO 8601, +08:00), `last`, `open`, `high`, `low`, `pre_close` (decimal
strings, 0.001 precision on the wire; A-share stocks trade on the 0.01 tick), `amount` (CNY, decimal string),
`volume_lots` (xtdata's cumulative volume in lots of 100 shares for stocks), `bid` and `ask` (five `[price,
volume_lots]` pairs, best first; an empty level is `["0", 0]`). Read here into `Tick`: prices and amount in integer
fen, volumes in shares. Bad ones are refused with a reason (the label of `lh_quotes_rejected_total`), never stored."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

from shared.core.domain.codes import InvalidTsCode, parse_ts_code

SHARES_PER_LOT = 100  # xtdata gives A-share stock volumes in lots (手) of 100 shares, every board alike
LEVELS = 5

# Reasons a snapshot is refused (the `reason` label of lh_quotes_rejected_total).
MALFORMED = "malformed"  # not the snapshot's shape: a field missing, not a number, a time without an offset
BAD_CODE = "bad_code"  # not a code like 600000.SH
NOT_A_STOCK = "not_a_stock"  # a code of the exchanges' that is no A-share stock (an index, a fund, a bond): not quoted
UNKNOWN_CODE = "unknown_code"  # a stock code the data service does not know
NEGATIVE = "negative_price"  # a price, volume or amount below zero (or a last price of zero)
OFF_TICK = "off_tick"  # a price off the 0.01 tick
INCONSISTENT = "inconsistent"  # high below low, or the last price outside them
STALE = "stale"  # older than the code's latest quote (reordered; one of the same time is a repeat, skipped)
VOLUME_DECREASED = "volume_decreased"  # the day's cumulative volume or amount went down
# The provider's checks against the data service's own facts (docs/quotes.md, "How quotes are kept and checked"):
FUTURE = "future"  # a time ahead of the market clock by more than LH_QUOTES_MAX_SKEW_S
OTHER_DAY = "other_day"  # a time on another day than the market clock's trading day
PRE_CLOSE_MISMATCH = "pre_close_mismatch"  # pre_close is not the stored reference price of the day
OUTSIDE_LIMITS = "outside_limits"  # a price (last, open, high, low, a book level) outside the day's stored band
REASONS = (
    MALFORMED, BAD_CODE, UNKNOWN_CODE, NEGATIVE, OFF_TICK, INCONSISTENT, STALE, VOLUME_DECREASED, FUTURE, OTHER_DAY,
    PRE_CLOSE_MISMATCH, OUTSIDE_LIMITS,
)  # fmt: skip


class Refused(ValueError):
    """A snapshot that is not stored: `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Tick(NamedTuple):
    """One security's snapshot in exact units: prices and amount in fen, volumes in shares. `open`/`high`/`low`
    are None before the day's first trade (xtdata sends 0 then). A NamedTuple: a whole market's round makes
    thousands of them, and a tuple is made in half the time of a frozen dataclass."""

    ts_code: str
    time: datetime
    last: int
    open: int | None
    high: int | None
    low: int | None
    pre_close: int
    volume: int  # shares, cumulative for the day
    amount: int  # fen, cumulative for the day
    bid: tuple[tuple[int, int], ...]  # (price fen, shares), best first, empty levels left out
    ask: tuple[tuple[int, int], ...]
    time_text: str = ""  # `time` as the feed wrote it (a repeat of the same snapshot is known by it)


def fen_text(fen: int) -> str:
    """Fen as the decimal string of CNY the events and the API carry ("10.05", "0.50"): what
    `format(from_fen(fen), "f")` writes, without a Decimal."""
    text = _TEXT.get(fen)
    if text is None:
        sign = "-" if fen < 0 else ""
        whole, cents = divmod(abs(fen), 100)
        text = f"{sign}{whole}.{cents:02d}"
        if len(_TEXT) >= _FEN_KEPT:
            _TEXT.clear()
        _TEXT[fen] = text
    return text


def shares_of_lots(lots: int) -> int:
    """xtdata's stock volume (lots) in shares."""
    return lots * SHARES_PER_LOT


_EXCHANGE_CODE = re.compile(r"[0-9]{6}\.(SH|SZ|BJ)")

# Prices read before, by their text: a whole market's round repeats a few thousand distinct prices many times.
_FEN: dict[str, int] = {}
_FEN_KEPT = 200_000
_TEXT: dict[int, str] = {}  # and the other way
_CODES: dict[str, str] = {}  # ts_codes read before (the same few thousand every round)


def _fen(value: Any, name: str) -> int:
    """A price or amount in fen: a decimal string (or an integer) on the 0.01 tick, not negative."""
    if type(value) is str:
        found = _FEN.get(value)
        if found is not None:
            return found
        fen = _read_fen(value, name)
        if len(_FEN) >= _FEN_KEPT:
            _FEN.clear()
        _FEN[value] = fen
        return fen
    return _read_fen(value, name)


def _read_fen(value: Any, name: str) -> int:
    """`_fen` without the memory: integer arithmetic on the text, no Decimal on the way."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Refused(MALFORMED, f"{name}: {value!r} is not a decimal string")
    if isinstance(value, int):
        if value < 0:
            raise Refused(NEGATIVE, f"{name}: {value} is negative")
        return value * 100
    text = value
    negative = text.startswith("-")
    whole, dot, fraction = text.removeprefix("-").partition(".")
    if not (whole.isascii() and whole.isdigit()) or (dot and not (fraction.isascii() and fraction.isdigit())):
        raise Refused(MALFORMED, f"{name}: {value[:40]!r} is not a decimal string")
    fen = int(whole) * 100 + int((fraction + "00")[:2])
    if negative and (fen or fraction.strip("0")):
        raise Refused(NEGATIVE, f"{name}: {value} is negative")
    if fraction[2:].strip("0"):
        raise Refused(OFF_TICK, f"{name}: {value} is not on the 0.01 tick")
    return fen


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(MALFORMED, f"{name}: {value!r} is not an integer")
    if value < 0:
        raise Refused(NEGATIVE, f"{name}: {value} is negative")
    return value


def _levels(value: Any, name: str) -> tuple[tuple[int, int], ...]:
    """Bid or ask: (price fen, shares) of each level with a price and a volume, best first."""
    if type(value) is list and len(value) <= LEVELS:
        # The common case, prices read before: one dict lookup a level. Anything else (a price not seen yet, a
        # volume that is no count, a malformed pair, a tuple) takes the checked path below, which names what is wrong.
        known, levels = _FEN, []
        try:
            for text, lots in value:
                if text is None:  # no price at that level (null from the bridge)
                    continue
                fen = known[text]
                if type(lots) is not int or lots < 0:
                    raise KeyError(text)
                if fen and lots:  # ["0", 0]: nobody at that level
                    levels.append((fen, lots * SHARES_PER_LOT))
            return tuple(levels)
        except (KeyError, TypeError, ValueError):
            pass
    return _checked_levels(value, name)


def _checked_levels(value: Any, name: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list | tuple) or len(value) > LEVELS:
        raise Refused(MALFORMED, f"{name}: not a list of at most {LEVELS} [price, volume_lots] pairs")
    levels = []
    known = _FEN
    for i, pair in enumerate(value):
        if (type(pair) is not list and type(pair) is not tuple) or len(pair) != 2:
            raise Refused(MALFORMED, f"{name}[{i}]: not a [price, volume_lots] pair")
        text, lots = pair
        if text is None:  # no price at that level (null from the bridge)
            continue
        fen = known.get(text) if type(text) is str else None
        if fen is None or type(lots) is not int or lots < 0:
            try:  # the slow path, which names what is wrong
                fen = _fen(text, "price")
                lots = _count(lots, "volume_lots")
            except Refused as exc:
                raise Refused(exc.reason, f"{name}[{i}].{exc}") from exc
        if fen > 0 and lots > 0:  # ["0", 0]: nobody at that level
            levels.append((fen, lots * SHARES_PER_LOT))
    return tuple(levels)


_last_time: tuple[str, datetime | None] = ("", None)


def _time(text: Any) -> datetime | None:
    """The snapshot's time (a round's snapshots mostly share one: the last one read is kept)."""
    global _last_time
    if not isinstance(text, str):
        return None
    if _last_time[0] == text:
        return _last_time[1]
    try:
        found: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        found = None
    _last_time = (text, found)
    return found


def _price(value: Any, name: str) -> int:
    """A price or amount in fen (`_fen`), a text read before found by one dict lookup."""
    found = _FEN.get(value) if type(value) is str else None
    return found if found is not None else _fen(value, name)


def _optional_price(value: Any, name: str) -> int | None:
    """`open`, `high` or `low`: None for no trade yet (null from the bridge, or zero)."""
    if value is None:
        return None
    found = _FEN.get(value) if type(value) is str else None
    if found is None:
        found = _fen(value, name)
    return found if found > 0 else None


def read_snapshot(raw: Any) -> Tick:
    """The snapshot as a Tick, or Refused. Checks the shape, the code's form, signs, the tick and that high >= low
    with the last price between them; whether the code is known and the snapshot newer is the provider's to check."""
    if not isinstance(raw, dict):
        raise Refused(MALFORMED, "a snapshot is a JSON object")
    try:
        code, text = raw["ts_code"], raw["time"]
        last, open_, high_, low_ = raw["last"], raw["open"], raw["high"], raw["low"]
        pre_close, amount = raw["pre_close"], raw["amount"]
        lots, bid, ask = raw["volume_lots"], raw["bid"], raw["ask"]
    except KeyError as exc:
        raise Refused(MALFORMED, f"{exc.args[0]}: missing") from exc
    ts_code = _CODES.get(code) if type(code) is str else None
    if ts_code is None:
        ts_code = _read_code(code)
    time = _time(text)
    if time is None or time.utcoffset() is None:
        raise Refused(MALFORMED, f"time: {str(text)[:40]!r} is not an ISO 8601 time with its UTC offset")
    # The bridge sends null for what xtdata has no number for (NaN): no open, high or low yet is no trade yet.
    last_fen = _price(last, "last")
    open_fen, high, low = _optional_price(open_, "open"), _optional_price(high_, "high"), _optional_price(low_, "low")
    pre_close_fen, amount_fen = _price(pre_close, "pre_close"), _price(amount, "amount")
    if last_fen == 0 or pre_close_fen == 0:
        raise Refused(NEGATIVE, "last and pre_close must be above zero")
    if high is not None and low is not None and (high < low or not low <= last_fen <= high):
        raise Refused(INCONSISTENT, f"last {last_fen} fen is not within low {low} .. high {high}")
    if type(lots) is not int or lots < 0:
        lots = _count(lots, "volume_lots")
    return Tick(
        ts_code,
        time,
        last_fen,
        open_fen,
        high,
        low,
        pre_close_fen,
        lots * SHARES_PER_LOT,
        amount_fen,
        _levels(bid, "bid"),
        _levels(ask, "ask"),
        text,
    )


def _read_code(code: Any) -> str:
    if not isinstance(code, str):
        raise Refused(MALFORMED, "ts_code: not a string")
    try:
        ts_code = parse_ts_code(code).ts_code
    except InvalidTsCode as exc:
        # xtdata's whole market holds indices, funds and bonds beside the stocks: those are left alone
        reason = NOT_A_STOCK if _EXCHANGE_CODE.fullmatch(code) else BAD_CODE
        raise Refused(reason, f"ts_code: {exc}") from exc
    if len(_CODES) < _FEN_KEPT:
        _CODES[code] = ts_code
    return ts_code
