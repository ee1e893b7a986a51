"""The corporate-action rule (shared.core.market.corporate): shares x ratio floored, the fraction paid in cash at the
ex-date's reference price. Expected values worked by hand."""

import numpy as np
import pytest

from shared.core.market.corporate import adjusted_holding, adjusted_holdings, ex_ratio


@pytest.mark.parametrize(
    ("old", "ratio", "pre_close_fen", "new", "cash_fen"),
    [
        # 10-for-10 bonus (送10股): 1,000 shares -> 2,000, nothing left over
        (1000, 2.0, 1250, 2000, 0),
        # 3-for-10 bonus: 150 x 1.3 = 195 (1.3 is 1.3000000000000000444 as a float: no fraction paid)
        (150, 1.3, 1000, 195, 0),
        # 3-for-10 bonus on 155 shares: 201.5 -> 201 shares and half a share at 8.88 = 4.44 CNY
        (155, 1.3, 888, 201, 444),
        # a cash dividend only: 0.40 CNY on a 20.00 close, the factor rises by 20.00 / 19.60 = 1.0204081632...
        # 1,000 shares -> 1,020.408... : 1,020 shares and 0.408163 x 19.60 = 8.00 CNY in cash
        (1000, 20.00 / 19.60, 1960, 1020, 800),
        # 300 shares x 1.0204... = 306.12...: 306 shares and 0.1224 x 19.60 = 2.3999... -> 2.40 CNY
        (300, 20.00 / 19.60, 1960, 306, 240),
        # half a fen rounds up: 0.5 share at 0.01 CNY = 0.005 CNY -> 0.01
        (1, 1.5, 1, 1, 1),
        # nothing held: nothing changes
        (0, 2.0, 1000, 0, 0),
    ],
)
def test_adjusted_holding(old: int, ratio: float, pre_close_fen: int, new: int, cash_fen: int) -> None:
    assert adjusted_holding(old, ratio, pre_close_fen) == (new, cash_fen)


def test_a_two_for_one_split_whose_ratio_falls_a_hair_short_of_two() -> None:
    # factors 0.7 -> 1.4 would be 2 exactly in decimals; in floats this pair gives 1.9999999999999998
    ratio = ex_ratio(1.4, 0.7000000000000001)
    assert ratio < 2.0 and ratio == pytest.approx(2.0, abs=1e-15)
    # 100 x 1.9999999999999998 = 199.99999999999997: the tolerance keeps the 200th share, no cash for a "fraction"
    assert adjusted_holding(100, ratio, 1500) == (200, 0)
    assert adjusted_holding(12345, ratio, 1500) == (24690, 0)


def test_the_vectorised_form_gives_the_same_numbers() -> None:
    rng = np.random.default_rng(7)
    old = rng.integers(0, 1_000_000, size=5000).astype(np.int64)
    ratio = rng.uniform(1.0, 2.5, size=5000)
    ratio[:10] = ex_ratio(1.4, 0.7000000000000001)
    pre = rng.integers(1, 100_000, size=5000).astype(np.int64)
    new, cash = adjusted_holdings(old, ratio, pre)
    expected = [adjusted_holding(int(o), float(r), int(p)) for o, r, p in zip(old, ratio, pre, strict=True)]
    assert list(zip(new.tolist(), cash.tolist(), strict=True)) == expected
    # and equity is kept to within half a fen: the new shares and the cash are worth the old shares at the ratio
    worth = old * ratio * pre
    assert np.all(np.abs(new * pre + cash - worth) <= 0.5 + 1e-6 * worth)
