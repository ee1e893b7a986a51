"""A-share staples that TA-Lib lacks or computes differently from Chinese charting software (通达信, 同花顺):
KDJ, MACD with its DIF/DEA/bar, N-day momentum and the rolling z-score. Plain numpy (pandas for the recursive
smoothing), causal: the value at t uses data up to t only.

Inputs are 1-D float64 arrays of equal length, oldest first. KDJ and MACD are recursive, so a NaN would poison
every later value: they refuse non-finite input. Momentum and z-score let a NaN through to the windows it touches.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]


def _series(values: npt.ArrayLike, name: str, *, finite: bool = False) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    if finite and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf; this indicator is recursive and needs finite input")
    return array


def _period(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _smooth(values: FloatArray, alpha: float) -> FloatArray:
    """y_t = alpha * x_t + (1 - alpha) * y_{t-1}, y_0 = x_0 (pandas' ewm with adjust=False is exactly this)."""
    return pd.Series(values).ewm(alpha=alpha, adjust=False).mean().to_numpy(dtype=np.float64)


def kdj(
    high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, n: int = 9, m1: int = 3, m2: int = 3
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """KDJ as Chinese software defines it (KDJ(9,3,3) by default). Returns (K, D, J).

    RSV_t = (C_t - LLV(L, n)_t) / (HHV(H, n)_t - LLV(L, n)_t) * 100, the window being the n bars ending at t;
            50 when the window's high equals its low (a flat window, e.g. a stock locked at its limit, carries
            no information, so it counts as neutral).
    K_t   = ((m1 - 1) * K_{t-1} + RSV_t) / m1      i.e. SMA(RSV, m1, 1)
    D_t   = ((m2 - 1) * D_{t-1} + K_t) / m2        i.e. SMA(K, m2, 1)
    J_t   = 3 * K_t - 2 * D_t
    with K and D equal to 50 before the first full window: the first value is at t = n - 1,
    K_{n-1} = ((m1 - 1) * 50 + RSV_{n-1}) / m1. Earlier positions are NaN.
    """
    n = _period(n, "n", 1)
    m1 = _period(m1, "m1", 1)
    m2 = _period(m2, "m2", 1)
    h = _series(high, "high", finite=True)
    lo = _series(low, "low", finite=True)
    c = _series(close, "close", finite=True)
    if not len(h) == len(lo) == len(c):
        raise ValueError(f"high, low and close differ in length ({len(h)}, {len(lo)}, {len(c)})")
    size = len(c)
    k = np.full(size, np.nan)
    d = np.full(size, np.nan)
    if size >= n:
        hhv = sliding_window_view(h, n).max(axis=1)
        llv = sliding_window_view(lo, n).min(axis=1)
        span = hhv - llv
        flat = span == 0
        rsv = np.where(flat, 50.0, (c[n - 1 :] - llv) / np.where(flat, 1.0, span) * 100.0)
        # Prepending the seed 50 makes the smoothing start from K_{n-2} = D_{n-2} = 50.
        k_full = _smooth(np.concatenate(([50.0], rsv)), 1.0 / m1)
        d_full = _smooth(np.concatenate(([50.0], k_full[1:])), 1.0 / m2)
        k[n - 1 :] = k_full[1:]
        d[n - 1 :] = d_full[1:]
    return k, d, 3.0 * k - 2.0 * d


def macd_cn(
    close: npt.ArrayLike, fastperiod: int = 12, slowperiod: int = 26, signalperiod: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD as Chinese software shows it. Returns (DIF, DEA, MACD bar).

    EMA(X, N)_t = (2 * X_t + (N - 1) * EMA_{t-1}) / (N + 1), seeded with EMA_0 = X_0 (the first bar, no warm-up)
    DIF = EMA(C, fast) - EMA(C, slow)
    DEA = EMA(DIF, signal)                      (so DEA_0 = DIF_0 = 0)
    MACD bar = 2 * (DIF - DEA)

    Unlike TA-Lib's MACD (SMA-seeded, NaN for the first slow + signal - 2 bars, histogram = DIF - DEA without the
    factor 2), every bar has a value; the first few dozen are dominated by the seed, as on any Chinese chart.
    """
    fastperiod = _period(fastperiod, "fastperiod", 1)
    slowperiod = _period(slowperiod, "slowperiod", 1)
    signalperiod = _period(signalperiod, "signalperiod", 1)
    c = _series(close, "close", finite=True)
    if len(c) == 0:
        empty = np.empty(0)
        return empty, empty.copy(), empty.copy()
    dif = _smooth(c, 2.0 / (fastperiod + 1)) - _smooth(c, 2.0 / (slowperiod + 1))
    dea = _smooth(dif, 2.0 / (signalperiod + 1))
    return dif, dea, 2.0 * (dif - dea)


def momentum(close: npt.ArrayLike, n: int = 10) -> FloatArray:
    """N-day momentum as a fraction: close_t / close_{t-n} - 1 (0.05 = up 5 % over n bars); NaN for t < n.

    TA-Lib's MOM is the difference close_t - close_{t-n}; its ROCP is this same ratio.
    """
    n = _period(n, "n", 1)
    c = _series(close, "close")
    out = np.full(len(c), np.nan)
    if len(c) > n:
        with np.errstate(divide="ignore", invalid="ignore"):
            out[n:] = c[n:] / c[:-n] - 1.0
    return out


def rolling_zscore(values: npt.ArrayLike, n: int = 20, ddof: int = 0) -> FloatArray:
    """Rolling z-score: z_t = (x_t - mean_t) / std_t over the n values ending at t (ddof 0: population standard
    deviation, as TA-Lib's STDDEV; ddof 1: sample). NaN for t < n - 1 and where the window is flat (every value
    equal: the deviation is zero and the score undefined)."""
    n = _period(n, "n", 2)
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
    x = _series(values, "values")
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        windows = sliding_window_view(x, n)
        mean = windows.mean(axis=1)
        # Two-pass variance: no cancellation between large sums of squares.
        std = np.sqrt(((windows - mean[:, None]) ** 2).sum(axis=1) / (n - ddof))
        flat = windows.max(axis=1) == windows.min(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[n - 1 :] = np.where(flat, np.nan, (x[n - 1 :] - mean) / std)
    return out
