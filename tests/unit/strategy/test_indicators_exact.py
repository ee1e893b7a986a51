"""Moving averages of integer-fen prices compared exactly: ties stay ties, so a crossover is what
docs/indicators.md defines and never an artefact of float rounding."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import talib

from shared.research.strategy.indicators import crossover, crossunder, sma_fen_sums

# The example of docs/indicators.md: closes in CNY and in fen.
CLOSES = [15.45, 15.43, 15.44, 15.42, 15.46]
FEN = np.array([1545, 1543, 1544, 1542, 1546], dtype=np.int64)


def test_rolling_sums_are_exact_integers() -> None:
    np.testing.assert_array_equal(sma_fen_sums(FEN, 2), [0, 3088, 3087, 3086, 3088])
    np.testing.assert_array_equal(sma_fen_sums(FEN, 3), [0, 0, 4632, 4629, 4632])
    np.testing.assert_array_equal(sma_fen_sums(FEN, 5), [0, 0, 0, 0, 7720])
    np.testing.assert_array_equal(sma_fen_sums(FEN, 6), [0, 0, 0, 0, 0])
    assert sma_fen_sums(FEN, 3).dtype == np.int64


def test_float_means_make_a_spurious_crossover_where_the_exact_comparison_sees_a_tie() -> None:
    # MA2 vs MA3. Exactly: t=2 1543.5 < 1544 (fen), t=3 1543 = 1543, t=4 1544 = 1544: ties at t=3 and t=4, no cross.
    fast, slow = sma_fen_sums(FEN, 2), sma_fen_sums(FEN, 3)
    assert [Fraction(int(s), 2) for s in fast[2:]] == [Fraction(3087, 2), 1543, 1544]
    assert [Fraction(int(s), 3) for s in slow[2:]] == [1544, 1543, 1544]
    assert not crossover(fast, 2, slow, 3).any()
    assert not crossunder(fast, 2, slow, 3).any()

    # In float64, (15.42 + 15.46) / 2 is 15.440000000000001 while (15.44 + 15.42 + 15.46) / 3 is 15.44: a "cross".
    closes = np.array(CLOSES)
    for name, ma2, ma3 in [
        ("pandas", pd.Series(closes).rolling(2).mean().to_numpy(), pd.Series(closes).rolling(3).mean().to_numpy()),
        ("talib", talib.SMA(closes, 2), talib.SMA(closes, 3)),
    ]:
        assert ma2[3] == ma3[3] == 15.43, name
        assert ma2[4] == 15.440000000000001 and ma3[4] == 15.44 and ma2[4] > ma3[4], name
        float_cross = (ma2[1:] > ma3[1:]) & (ma2[:-1] <= ma3[:-1])
        assert np.flatnonzero(float_cross).tolist() == [3], name  # i.e. at t = 4


def exact_crossings(fen: np.ndarray, fast_n: int, slow_n: int) -> tuple[set[int], set[int]]:
    """The definition with Python Fractions: a second, slow, obviously exact method."""
    fast = [
        None if t < fast_n - 1 else Fraction(int(fen[t - fast_n + 1 : t + 1].sum()), fast_n) for t in range(len(fen))
    ]
    slow = [
        None if t < slow_n - 1 else Fraction(int(fen[t - slow_n + 1 : t + 1].sum()), slow_n) for t in range(len(fen))
    ]
    up, down = set(), set()
    for t in range(1, len(fen)):
        if None in (fast[t], slow[t], fast[t - 1], slow[t - 1]):
            continue
        if fast[t] > slow[t] and fast[t - 1] <= slow[t - 1]:
            up.add(t)
        if fast[t] < slow[t] and fast[t - 1] >= slow[t - 1]:
            down.add(t)
    return up, down


def test_seeded_random_walks_integer_method_always_exact_float_method_sometimes_wrong() -> None:
    rng = np.random.default_rng(2024)
    float_mistakes = 0
    for trial in range(300):
        fast_n, slow_n = [(2, 3), (3, 5), (5, 10), (2, 5)][trial % 4]
        # Tick-sized moves around a price: the averages tie often, as on real 2-decimal A-share prices.
        fen = rng.integers(150, 5000) + np.cumsum(rng.integers(-4, 5, 30))
        up, down = exact_crossings(fen, fast_n, slow_n)
        fast, slow = sma_fen_sums(fen, fast_n), sma_fen_sums(fen, slow_n)
        assert set(np.flatnonzero(crossover(fast, fast_n, slow, slow_n)).tolist()) == up
        assert set(np.flatnonzero(crossunder(fast, fast_n, slow, slow_n)).tolist()) == down

        closes = pd.Series([float(f"{v / 100:.2f}") for v in fen])  # what parsing "15.44" gives
        ma_fast, ma_slow = closes.rolling(fast_n).mean().to_numpy(), closes.rolling(slow_n).mean().to_numpy()
        float_up = {t for t in range(1, len(fen)) if ma_fast[t] > ma_slow[t] and ma_fast[t - 1] <= ma_slow[t - 1]}
        float_mistakes += float_up != up
    assert float_mistakes > 0  # float rolling means do turn ties into (or out of) crossings


def test_ties_stay_ties_and_a_touch_counts() -> None:
    # Constant prices: the averages are equal on every bar, never a crossing.
    flat = np.full(10, 1000, dtype=np.int64)
    assert not crossover(sma_fen_sums(flat, 2), 2, sma_fen_sums(flat, 4), 4).any()
    assert not crossunder(sma_fen_sums(flat, 2), 2, sma_fen_sums(flat, 4), 4).any()
    # Means given directly with window 1 (the sum is the mean): below, equal, above -> crossover on the third bar.
    fast = np.array([9, 10, 11, 11, 10, 10, 9], dtype=np.int64)
    slow = np.full(7, 10, dtype=np.int64)
    assert np.flatnonzero(crossover(fast, 1, slow, 1)).tolist() == [2]
    assert np.flatnonzero(crossunder(fast, 1, slow, 1)).tolist() == [6]  # above, equal, equal, below
    # above, equal, above: by the definition (fast_{t-1} <= slow_{t-1}) the return above is a crossover too.
    bounce = np.array([11, 10, 11], dtype=np.int64)
    assert crossover(bounce, 1, np.full(3, 10, dtype=np.int64), 1).tolist() == [False, False, True]


def test_no_crossing_before_both_averages_are_defined() -> None:
    fen = np.array([1000, 900, 1100, 1200, 1300], dtype=np.int64)
    fast, slow = sma_fen_sums(fen, 1), sma_fen_sums(fen, 3)
    # slow is defined from t=2 (1000), t=3 (1066.67), t=4 (1200); fast 1100, 1200, 1300 is above from t=2 on.
    # The zeros before t=2 are placeholders, so t=2 (first defined bar) cannot be a crossing.
    assert not crossover(fast, 1, slow, 3).any()
    # With 950 at t=2 the first defined bar is a tie (950 = 2850 / 3); above at t=3: a crossover there.
    fen = np.array([1000, 900, 950, 1200, 1300], dtype=np.int64)
    assert np.flatnonzero(crossover(sma_fen_sums(fen, 1), 1, sma_fen_sums(fen, 3), 3)).tolist() == [3]


def test_float_prices_and_mismatched_inputs_are_refused() -> None:
    with pytest.raises(TypeError, match="integer fen"):
        sma_fen_sums(np.array([15.45, 15.43]), 2)
    with pytest.raises(ValueError, match="differ in length"):
        crossover(np.zeros(3, dtype=np.int64), 1, np.zeros(4, dtype=np.int64), 1)
    with pytest.raises(ValueError, match="slow_n"):
        crossover(np.zeros(3, dtype=np.int64), 1, np.zeros(3, dtype=np.int64), 0)
    with pytest.raises(OverflowError):
        crossover(np.array([2**62], dtype=np.int64), 1, np.array([1], dtype=np.int64), 4)
