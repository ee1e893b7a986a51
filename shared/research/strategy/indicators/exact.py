"""Exact moving-average comparison for prices in integer fen: rolling sums in int64 and crossovers decided by
cross-multiplying the sums, so two averages that are equal stay equal (float means turn such ties into spurious
crossovers; see docs/indicators.md)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_INT64_LIMIT = 2**63 - 1


def _fen(values: npt.ArrayLike, name: str) -> IntArray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer fen (dtype {array.dtype} given): convert exact decimal prices, e.g. "
            "Decimal('10.01') -> 1001, never float prices"
        )
    return array.astype(np.int64, copy=False)


def _window(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)


def _magnitude(array: IntArray) -> int:
    return max(abs(int(array.max())), abs(int(array.min()))) if array.size else 0


def sma_fen_sums(close_fen: npt.ArrayLike, n: int) -> IntArray:
    """Rolling sums of `n` closes in integer fen: out[t] = close_fen[t-n+1] + ... + close_fen[t] for t >= n - 1.

    The simple moving average is out[t] / n; keeping the sum and n instead of the quotient keeps it exact.
    Positions t < n - 1 have no full window and hold 0: they are undefined, and `crossover` ignores them.
    """
    n = _window(n, "n")
    closes = _fen(close_fen, "close_fen")
    out = np.zeros(len(closes), dtype=np.int64)
    if len(closes) >= n:
        if _magnitude(closes) * len(closes) > _INT64_LIMIT:
            raise OverflowError("close_fen is too large to sum in int64")
        running = np.cumsum(closes, dtype=np.int64)
        out[n - 1] = running[n - 1]
        out[n:] = running[n:] - running[:-n]
    return out


def _scaled(fast_sum: npt.ArrayLike, fast_n: int, slow_sum: npt.ArrayLike, slow_n: int) -> tuple[IntArray, IntArray]:
    """fast_sum * slow_n and slow_sum * fast_n: the two means times fast_n * slow_n, compared without division."""
    fast_n = _window(fast_n, "fast_n")
    slow_n = _window(slow_n, "slow_n")
    fast = _fen(fast_sum, "fast_sum")
    slow = _fen(slow_sum, "slow_sum")
    if len(fast) != len(slow):
        raise ValueError(f"fast_sum and slow_sum differ in length ({len(fast)} and {len(slow)})")
    if _magnitude(fast) * slow_n > _INT64_LIMIT or _magnitude(slow) * fast_n > _INT64_LIMIT:
        raise OverflowError("the scaled sums do not fit in int64")
    return fast * slow_n, slow * fast_n


def _defined(size: int, fast_n: int, slow_n: int) -> BoolArray:
    return np.arange(size) >= max(fast_n, slow_n) - 1


def crossover(fast_sum: npt.ArrayLike, fast_n: int, slow_sum: npt.ArrayLike, slow_n: int) -> BoolArray:
    """True at t iff fast_t > slow_t and fast_{t-1} <= slow_{t-1}, both averages defined at t - 1 and t.

    `fast_sum` / `slow_sum` are rolling sums as `sma_fen_sums` returns them (window `fast_n` / `slow_n`, defined
    from t = n - 1), so fast_t = fast_sum[t] / fast_n; the comparison is fast_sum * slow_n vs slow_sum * fast_n in
    int64, exact. A touch counts: below, equal, above gives a crossover on the third bar.
    """
    fast, slow = _scaled(fast_sum, fast_n, slow_sum, slow_n)
    defined = _defined(len(fast), int(fast_n), int(slow_n))
    out = np.zeros(len(fast), dtype=np.bool_)
    out[1:] = (fast[1:] > slow[1:]) & (fast[:-1] <= slow[:-1]) & defined[:-1]
    return out


def crossunder(fast_sum: npt.ArrayLike, fast_n: int, slow_sum: npt.ArrayLike, slow_n: int) -> BoolArray:
    """True at t iff fast_t < slow_t and fast_{t-1} >= slow_{t-1}, both defined; the mirror of `crossover`."""
    fast, slow = _scaled(fast_sum, fast_n, slow_sum, slow_n)
    defined = _defined(len(fast), int(fast_n), int(slow_n))
    out = np.zeros(len(fast), dtype=np.bool_)
    out[1:] = (fast[1:] < slow[1:]) & (fast[:-1] >= slow[:-1]) & defined[:-1]
    return out
