"""KDJ, MACD as Chinese software shows it, N-day momentum and the rolling z-score: small cases worked by hand,
longer series against a plain loop, and the long-run agreement with TA-Lib's own (differently seeded) versions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from shared.research.strategy.indicators import compute, kdj, macd_cn, momentum, rolling_zscore


def walk(bars: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = np.round(10 * np.exp(np.cumsum(rng.normal(0, 0.02, bars))), 2)
    high = np.round(close * (1 + rng.random(bars) * 0.02), 2)
    low = np.round(close * (1 - rng.random(bars) * 0.02), 2)
    return high, low, close


def kdj_loop(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int, m1: int, m2: int) -> np.ndarray:
    """The definition, one bar at a time."""
    out = np.full((3, len(close)), np.nan)
    k = d = 50.0
    for t in range(n - 1, len(close)):
        hhv, llv = max(high[t - n + 1 : t + 1]), min(low[t - n + 1 : t + 1])
        rsv = 50.0 if hhv == llv else (close[t] - llv) / (hhv - llv) * 100
        k = ((m1 - 1) * k + rsv) / m1
        d = ((m2 - 1) * d + k) / m2
        out[:, t] = k, d, 3 * k - 2 * d
    return out


def test_kdj_worked_by_hand() -> None:
    high = [10.5, 10.8, 10.6, 10.9]
    low = [10.0, 10.2, 10.1, 10.4]
    close = [10.2, 10.7, 10.3, 10.8]
    k, d, j = kdj(high, low, close, n=3, m1=3, m2=3)
    # t=2: RSV = (10.3 - 10.0) / (10.8 - 10.0) * 100 = 37.5; K = (2*50 + 37.5)/3 = 275/6; D = (2*50 + K)/3 = 875/18
    # t=3: RSV = (10.8 - 10.1) / (10.9 - 10.1) * 100 = 87.5; K = (2*275/6 + 87.5)/3 = 1075/18; D = 2825/54
    assert np.isnan(k[:2]).all() and np.isnan(d[:2]).all() and np.isnan(j[:2]).all()
    np.testing.assert_allclose(k[2:], [275 / 6, 1075 / 18], rtol=1e-12)
    np.testing.assert_allclose(d[2:], [875 / 18, 2825 / 54], rtol=1e-12)
    np.testing.assert_allclose(j[2:], [3 * 275 / 6 - 2 * 875 / 18, 4025 / 54], rtol=1e-12)


def test_kdj_matches_the_loop_and_a_flat_window_counts_as_50() -> None:
    high, low, close = walk(250, seed=7)
    high[100:112] = low[100:112] = close[100:112] = close[99]  # twelve bars locked at one price
    for n, m1, m2 in [(9, 3, 3), (5, 4, 2), (1, 1, 1)]:
        np.testing.assert_allclose(np.vstack(kdj(high, low, close, n, m1, m2)), kdj_loop(high, low, close, n, m1, m2),
                                   rtol=1e-12, atol=1e-9, equal_nan=True)  # fmt: skip
    k, _, _ = kdj(high, low, close)
    assert k[111] == pytest.approx(50 + (k[107] - 50) * (2 / 3) ** 4)  # RSV 50 on the flat windows 108..111


def test_kdj_converges_to_talibs_wilder_smoothed_kdj() -> None:
    """TA-Lib 0.8's KDJ smooths with Wilder's average (the same recursion for m = 3) but seeds it with a mean of
    the first values instead of 50: the two agree once the seed has decayed."""
    high, low, close = walk(300, seed=11)
    ours = np.vstack(kdj(high, low, close))
    theirs = np.vstack(talib.KDJ(high, low, close))
    np.testing.assert_allclose(ours[:, 100:], theirs[:, 100:], atol=1e-6)
    assert not np.allclose(ours[:, 12:15], theirs[:, 12:15], atol=1e-3)  # the seeds do differ


def test_kdj_refuses_nan_and_bad_periods() -> None:
    with pytest.raises(ValueError, match="close"):
        kdj([1.0, 2.0], [1.0, 2.0], [1.0, np.nan], n=2)
    with pytest.raises(ValueError, match="n must be"):
        kdj([1.0], [1.0], [1.0], n=0)


def ema_cn_loop(x: np.ndarray, n: int) -> np.ndarray:
    out = np.empty(len(x))
    out[0] = x[0]
    for t in range(1, len(x)):
        out[t] = (2 * x[t] + (n - 1) * out[t - 1]) / (n + 1)
    return out


def test_macd_cn_worked_by_hand() -> None:
    # fast 3 (alpha 1/2), slow 5 (alpha 1/3), signal 2 (alpha 2/3) on closes 10, 12, 11:
    # EMA3 = 10, 11, 11; EMA5 = 10, 32/3, 97/9; DIF = 0, 1/3, 2/9; DEA = 0, 2/9, 2/9; bar = 0, 2/9, 0
    dif, dea, bar = macd_cn([10.0, 12.0, 11.0], 3, 5, 2)
    np.testing.assert_allclose(dif, [0, 1 / 3, 2 / 9], atol=1e-12)
    np.testing.assert_allclose(dea, [0, 2 / 9, 2 / 9], atol=1e-12)
    np.testing.assert_allclose(bar, [0, 2 / 9, 0], atol=1e-12)


def test_macd_cn_matches_the_loop_and_converges_to_talib() -> None:
    _, _, close = walk(400, seed=3)
    dif, dea, bar = macd_cn(close)
    want_dif = ema_cn_loop(close, 12) - ema_cn_loop(close, 26)
    want_dea = ema_cn_loop(want_dif, 9)
    np.testing.assert_allclose(dif, want_dif, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dea, want_dea, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bar, 2 * (want_dif - want_dea), rtol=1e-10, atol=1e-12)
    # Same recursions as TA-Lib's MACD, other seeds: equal once the seeds decay; the bar is twice TA-Lib's hist.
    macd, signal, hist = talib.MACD(close)
    np.testing.assert_allclose(dif[300:], macd[300:], atol=1e-9)
    np.testing.assert_allclose(dea[300:], signal[300:], atol=1e-9)
    np.testing.assert_allclose(bar[300:], 2 * hist[300:], atol=1e-9)


def test_momentum_is_the_n_day_return() -> None:
    got = momentum([10.0, 11.0, 12.1, 11.0, 13.2], n=2)
    np.testing.assert_allclose(got, [np.nan, np.nan, 0.21, 0.0, 13.2 / 12.1 - 1], equal_nan=True)
    _, _, close = walk(100, seed=5)
    np.testing.assert_allclose(momentum(close, 10), talib.ROCP(close, 10), rtol=1e-12, equal_nan=True)


def test_rolling_zscore_against_pandas_and_flat_windows() -> None:
    _, _, close = walk(120, seed=9)
    close[50:60] = 12.34
    for ddof in (0, 1):
        rolling = pd.Series(close).rolling(5)
        want = ((pd.Series(close) - rolling.mean()) / rolling.std(ddof=ddof)).to_numpy(copy=True)
        want[54:60] = np.nan  # windows wholly inside the flat stretch
        np.testing.assert_allclose(rolling_zscore(close, 5, ddof), want, rtol=1e-9, atol=1e-9, equal_nan=True)
    # By hand: window 1, 2, 3 -> mean 2, population std sqrt(2/3), z of 3 = 1 / sqrt(2/3).
    assert rolling_zscore([1.0, 2.0, 3.0], 3)[2] == pytest.approx(1 / np.sqrt(2 / 3))


def test_the_staples_run_through_the_catalogue() -> None:
    high, low, close = walk(60, seed=1)
    frame = pd.DataFrame({"high": high, "low": low, "close": close})
    out = compute("KDJ_CN", frame, n=5)
    np.testing.assert_array_equal(np.vstack([out["k"], out["d"], out["j"]]), np.vstack(kdj(high, low, close, 5)))
    out = compute("MACD_CN", frame)
    np.testing.assert_array_equal(out["macd"], macd_cn(close)[2])
    np.testing.assert_array_equal(compute("MOMENTUM", frame, n=3)["momentum"], momentum(close, 3))
    np.testing.assert_array_equal(compute("ZSCORE", frame, ddof=1)["zscore"], rolling_zscore(close, 20, 1))
