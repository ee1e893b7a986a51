"""Price adjustment for dividends and share distributions (复权), on integer fen, exactly.

Tushare's adj_factor is a backward factor: it grows at every ex-date, so `price * adj_factor` joins the series
without jumps (hfq, 后复权). Forward adjustment (qfq, 前复权) keeps the anchor date's prices as printed:
`price * af_t / af_anchor`. Both are computed in integer arithmetic and rounded half-up to 4 decimals of a CNY
(1/10000 CNY units), so JSON, Arrow and Parquet give the same numbers and a test can work them out by hand.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

import numpy as np

ADJUSTED_SCALE = 10_000  # adjusted prices are held in 1/10000 CNY
_SAFE = 2**62  # products stay below this in int64 (half of the range, for the half-up doubling)


class Adjust(StrEnum):
    NONE = "none"
    QFQ = "qfq"  # forward: anchored at a date (default the range's end)
    HFQ = "hfq"  # backward: price times the factor


def _div_half_up(num: np.ndarray, den: np.ndarray | int) -> np.ndarray:
    """round(num / den) half-up, for num >= 0 and den > 0, in integers."""
    return (2 * num + den) // (2 * np.asarray(den, dtype=np.int64))


def adjusted(fen: np.ndarray, factor_micro: np.ndarray, anchor_micro: np.ndarray | None) -> np.ndarray:
    """Adjusted prices in 1/10000 CNY from prices in fen and factors in millionths: hfq when `anchor_micro` is
    None (fen/100 * af), qfq otherwise (fen/100 * af / anchor). Exact, rounded half-up."""
    fen = np.asarray(fen, dtype=np.int64)
    factor = np.asarray(factor_micro, dtype=np.int64)
    if len(fen) == 0:
        return np.zeros(0, dtype=np.int64)
    if anchor_micro is None:
        # fen/100 * micro/1e6 CNY = fen * micro / 1e8 CNY = fen * micro / 1e4 (1/10000 CNY)
        if int(fen.max()) * int(factor.max()) >= _SAFE:
            return _adjusted_exact(fen, factor, None)
        return _div_half_up(fen * factor, 10_000)
    anchor = np.asarray(anchor_micro, dtype=np.int64)
    if (anchor <= 0).any():
        raise ValueError("an anchor factor must be positive")
    # fen/100 * f/a CNY = fen * 100 * f / a (1/10000 CNY)
    if int(fen.max()) * 100 * int(factor.max()) >= _SAFE:
        return _adjusted_exact(fen, factor, anchor)
    return _div_half_up(fen * 100 * factor, anchor)


def _adjusted_exact(fen: np.ndarray, factor: np.ndarray, anchor: np.ndarray | None) -> np.ndarray:
    """The same with Python integers, for values that would overflow int64 (never seen on real A-share data)."""
    out = []
    anchors = anchor.tolist() if anchor is not None else [None] * len(fen)
    for f, m, a in zip(fen.tolist(), factor.tolist(), anchors, strict=True):
        num, den = (f * m, 10_000) if a is None else (f * 100 * m, a)
        out.append((2 * num + den) // (2 * den))
    return np.asarray(out, dtype=object)


def adjusted_text(units: int) -> str:
    """1/10000 CNY as a 4-decimal CNY string."""
    whole, frac = divmod(units, ADJUSTED_SCALE)
    return f"{whole}.{frac:04d}"


def factor_micro(value: object) -> int:
    """A stored DECIMAL(20,6) factor in millionths."""
    return int(Decimal(str(value)).scaleb(6))
