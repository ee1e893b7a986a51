"""A round of snapshots read column by column (docs/quotes.md, "Performance"): one list a field for the whole round
instead of one `Tick` a code, the sanity checks that need no per-code state computed over numpy arrays, and each
code's order book written as its JSON once, as the quote's JSON and the event carry it.

`read_round` reads the common round (every snapshot a dict of the documented shape, codes and prices read before)
by list comprehensions over the round; any snapshot it cannot read so (a field missing, a value of another type, a
price that does not read, a code or time not seen before, a snapshot that the reading refuses) makes it read the
round snapshot by snapshot with `read_snapshot` instead, which names what is wrong with each: the same snapshots
pass, and the same are refused with the same reasons, either way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from services.data.realtime.snapshots import (
    _CODES,
    _FEN,
    LEVELS,
    OUTSIDE_LIMITS,
    PRE_CLOSE_MISMATCH,
    SHARES_PER_LOT,
    Refused,
    Tick,
    _price,
    _time,
    fen_text,
    read_snapshot,
)

Ints = npt.NDArray[np.int64]

_JSON_KEPT = 200_000
_PRICES: dict[int | None, str] = {None: "null"}  # a price in a quote's JSON by its fen: '"10.05"' (None: null)
_LEVEL_HEADS: dict[int, str] = {}  # a book level's JSON up to its volume by its price: '{"price":"10.05","volume":'


def json_price(fen: int | None) -> str:
    """A price in a quote's JSON: its decimal string in quotes, or null."""
    text = _PRICES.get(fen)
    if text is None:
        assert fen is not None  # null is always kept
        if len(_PRICES) >= _JSON_KEPT:
            _PRICES.clear()
            _PRICES[None] = "null"
        text = _PRICES[fen] = f'"{fen_text(fen)}"'
    return text


def level_head(fen: int) -> str:
    """A book level's JSON up to its volume: '{"price":"10.05","volume":'."""
    text = _LEVEL_HEADS.get(fen)
    if text is None:
        if len(_LEVEL_HEADS) >= _JSON_KEPT:
            _LEVEL_HEADS.clear()
        text = _LEVEL_HEADS[fen] = f'{{"price":"{fen_text(fen)}","volume":'
    return text


def levels_json(levels: Sequence[tuple[int, int]]) -> str:
    """A side of the book's levels ((price fen, shares), best first) as the JSON inside its brackets."""
    heads = _LEVEL_HEADS
    return ",".join([f"{heads.get(p) or level_head(p)}{v}}}" for p, v in levels])


class Round(NamedTuple):
    """The snapshots of a round that read well, one list a field, in the round's order. Prices and amounts in fen,
    volumes in shares; `open`/`high`/`low` 0 where the snapshot has none (no trade yet). `book_low`/`book_high`:
    the lowest and the highest price of the code's book levels, bid and ask (0 and `NO_LEVEL` without levels)."""

    codes: list[str]
    time_texts: list[str]  # each snapshot's time as the feed wrote it
    times: list[datetime]
    last: list[int]
    open: list[int]
    high: list[int]
    low: list[int]
    pre_close: list[int]
    volume: list[int]
    amount: list[int]
    bid_json: list[str]  # the levels' JSON inside the brackets (levels_json)
    ask_json: list[str]
    book_low: Ints
    book_high: Ints


NO_LEVEL = np.iinfo(np.int64).max  # book_low of a code without book levels: below no band's ceiling test


def ints(values: Sequence[int]) -> Ints:
    """An array of integers: int64, or Python's own integers where one does not fit (a price no market has, which
    the reading does not refuse: still compared exactly)."""
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return np.array(values, dtype=object)


class _NotCommon(Exception):
    """The round is not the common one: read it snapshot by snapshot."""


def read_round(raws: Sequence[Any]) -> tuple[Round, list[tuple[Any, Refused]]]:
    """The round's snapshots that read, and those refused with why (each with its snapshot as it came)."""
    if raws:
        try:
            return _read_columns(raws), []
        except (_NotCommon, Refused, KeyError, TypeError, ValueError, AttributeError, OverflowError):
            pass
    ticks: list[Tick] = []
    refused: list[tuple[Any, Refused]] = []
    for raw in raws:
        try:
            ticks.append(read_snapshot(raw))
        except Refused as exc:
            refused.append((raw, exc))
    return from_ticks(ticks), refused


def from_ticks(ticks: Sequence[Tick]) -> Round:
    """Snapshots read one by one (`read_snapshot`) as a round's columns."""
    lows = [min([p for p, _ in t.bid] + [p for p, _ in t.ask], default=int(NO_LEVEL)) for t in ticks]
    highs = [max([p for p, _ in t.bid] + [p for p, _ in t.ask], default=0) for t in ticks]
    return Round(
        [t.ts_code for t in ticks],
        [t.time_text for t in ticks],
        [t.time for t in ticks],
        [t.last for t in ticks],
        [t.open or 0 for t in ticks],
        [t.high or 0 for t in ticks],
        [t.low or 0 for t in ticks],
        [t.pre_close for t in ticks],
        [t.volume for t in ticks],
        [t.amount for t in ticks],
        [levels_json(t.bid) for t in ticks],
        [levels_json(t.ask) for t in ticks],
        ints(lows),
        ints(highs),
    )


def _prices(texts: Sequence[Any], name: str, none: int | None = None) -> list[int]:
    """Prices or amounts in fen, a text read before found by one dict lookup (`map`: no Python frame a value), the
    others read (a bad one raises Refused). `none`: what a null stands for (an open, high or low not traded yet: 0),
    else a null is not read."""
    found: list[Any] = list(map(_FEN.get, texts))
    if None in found:
        for i in [i for i, fen in enumerate(found) if fen is None]:
            text = texts[i]
            found[i] = none if text is None and none is not None else _price(text, name)
    return found


# The most lots whose shares (lots x SHARES_PER_LOT) an int64 holds.
MAX_LOTS = int(np.iinfo(np.int64).max) // SHARES_PER_LOT


def _whole(values: Sequence[Any]) -> Ints:
    """Volumes (lots) as an array: integers, none negative."""
    if not set(map(type, values)) <= {int}:
        raise _NotCommon("a volume that is not an integer")
    if values and max(values) > MAX_LOTS:  # its shares would not fit in 64 bits: the exact per-snapshot path
        raise _NotCommon("a volume too large for 64-bit shares")
    array = np.array(values, dtype=np.int64)
    if (array < 0).any():
        raise _NotCommon("a negative volume")
    return array


def _book(sides: Sequence[Any], n: int) -> tuple[list[str], Ints, Ints]:
    """One side of every code's book: its levels' JSON, and each code's lowest and highest level price."""
    if not set(map(type, sides)) <= {list} or max(map(len, sides), default=0) > LEVELS:
        raise _NotCommon("a side of the book that is not a list of at most five levels")
    flat = list(chain.from_iterable(sides))
    if not flat:
        return [""] * n, np.full(n, NO_LEVEL, dtype=np.int64), np.zeros(n, dtype=np.int64)
    # A level that is not a pair: zip (strict) or the unpacking raises; a volume that is no integer (a pair that is
    # a text or an object: its second item) is refused below.
    texts, lots = zip(*flat, strict=True)
    price, volume = np.array(_prices(texts, "price", none=0), dtype=np.int64), _whole(lots)
    owner = np.repeat(np.arange(n), list(map(len, sides)))
    present = (price > 0) & (volume > 0)  # ["0", 0] or a null price: nobody at that level, left out
    price, owner = price[present], owner[present]
    prices = price.tolist()
    heads = list(map(_LEVEL_HEADS.get, prices))
    if None in heads:
        heads = [head or level_head(p) for head, p in zip(heads, prices, strict=True)]
    shares = (volume[present] * SHARES_PER_LOT).tolist()
    levels = [f"{head}{v}}}" for head, v in zip(heads, shares, strict=True)]
    ends = np.cumsum(np.bincount(owner, minlength=n)).tolist()
    joined = list(map(",".join, map(levels.__getitem__, map(slice, [0, *ends[:-1]], ends))))
    low, high = np.full(n, NO_LEVEL, dtype=np.int64), np.zeros(n, dtype=np.int64)
    np.minimum.at(low, owner, price)
    np.maximum.at(high, owner, price)
    return joined, low, high


_FIELDS = itemgetter(
    "ts_code", "time", "last", "open", "high", "low", "pre_close", "amount", "volume_lots", "bid", "ask"
)


def _read_columns(raws: Sequence[Any]) -> Round:
    n = len(raws)
    # every snapshot's fields, then one tuple a field (a snapshot that is no dict, or lacks one: an error)
    fields = list(zip(*map(_FIELDS, raws), strict=True))
    code_texts, time_texts = fields[0], list(fields[1])
    codes = list(map(_CODES.__getitem__, code_texts))  # a code not read before: KeyError
    parsed = {text: _time(text) for text in set(time_texts)}
    if any(t is None or t.utcoffset() is None for t in parsed.values()):
        raise _NotCommon("a time without its offset")
    times: list[datetime] = list(map(parsed.__getitem__, time_texts))  # type: ignore[arg-type]
    last, pre_close, amount = _prices(fields[2], "last"), _prices(fields[6], "pre_close"), _prices(fields[7], "amount")
    open_, high, low = (_prices(fields[i], name, none=0) for i, name in ((3, "open"), (4, "high"), (5, "low")))
    volume = _whole(fields[8])
    last_a, high_a, low_a = (np.array(column, dtype=np.int64) for column in (last, high, low))
    traded = (high_a > 0) & (low_a > 0)
    if (
        (last_a == 0).any()
        or 0 in pre_close
        or (traded & ((high_a < low_a) | (last_a < low_a) | (last_a > high_a))).any()
    ):
        raise _NotCommon("a snapshot to refuse: read one by one, which says why")
    bid_json, bid_low, bid_high = _book(fields[9], n)
    ask_json, ask_low, ask_high = _book(fields[10], n)
    return Round(
        codes,
        time_texts,
        times,
        last,
        open_,
        high,
        low,
        pre_close,
        (volume * SHARES_PER_LOT).tolist(),
        amount,
        bid_json,
        ask_json,
        np.minimum(bid_low, ask_low),
        np.maximum(bid_high, ask_high),
    )


def band_refusals(round_: Round, bands: Sequence[tuple[int | None, int | None, int | None] | None]) -> list[str | None]:
    """Why each snapshot of the round is refused against its code's stored band of the day (`bands`, one a
    snapshot: (reference, limit_down, limit_up) or None), or None where it passes or there is nothing to check:
    PRE_CLOSE_MISMATCH when its pre_close is not the stored reference, else OUTSIDE_LIMITS when a price of it (last,
    open, high, low, a book level) is outside the day's limits."""
    n = len(round_.codes)
    if n == 0:
        return []

    def column(pick: Callable[[tuple[int | None, int | None, int | None]], int | None]) -> Ints:
        return ints([-1 if b is None or (v := pick(b)) is None else v for b in bands])

    reference, down, up = column(lambda b: b[0]), column(lambda b: b[1]), column(lambda b: b[2])
    last, open_, high, low = ints(round_.last), ints(round_.open), ints(round_.high), ints(round_.low)
    checked = reference >= 0
    mismatch = checked & (ints(round_.pre_close) != reference)
    limited = checked & (down >= 0) & (up >= 0)  # a day without limits: no price is outside them
    outside = limited & (
        (last < down)
        | (last > up)
        | (high > up)
        | ((low > 0) & (low < down))
        | ((open_ > 0) & ((open_ < down) | (open_ > up)))
        | (round_.book_low < down)
        | (round_.book_high > up)
    )
    if not (mismatch.any() or outside.any()):
        return [None] * n
    return [
        PRE_CLOSE_MISMATCH if m else OUTSIDE_LIMITS if o else None
        for m, o in zip(mismatch.tolist(), outside.tolist(), strict=True)
    ]
