"""Corporate actions on a holding, as the backward adj_factor shows them: one rule for the backtest engines, execution
(its account's and each strategy instance's positions) and the strategy service's sleeve book. Pure: no I/O.

On an ex-date t (a bar on t whose adj_factor differs from the symbol's previous one), a holding of `old` shares
becomes `old x ratio` with ratio = adj_factor[t] / adj_factor[t-1]: bonus and transfer shares (送转) raise it, a cash
dividend reinvested at the ex-rights reference price (the Tushare factor folds it in) too. Whole shares are kept; the
fraction is paid in cash at the ex-date's reference price (pre_close[t]), rounded half-up to the fen. Applied at the
start of session t, before that session's fills; the new shares are sellable on t (the engine does not count them
as bought that day)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# af_t / af_{t-1} of a 2-for-1 split may come out as 1.9999999999999998: a share short of a whole one by less than
# this is the whole one.
SHARE_TOLERANCE = 1e-9


def ex_ratio(adj_factor: float, previous_adj_factor: float) -> float:
    """The holding's multiplier on a day: its adj_factor over the previous bar's (1.0: no corporate action)."""
    return float(adj_factor) / float(previous_adj_factor)


def adjusted_holding(old_qty: int, ratio: float, pre_close_fen: int) -> tuple[int, int]:
    """(new quantity, cash in lieu of the fractional share in fen) of `old_qty` shares going ex with `ratio`, the
    fraction paid at `pre_close_fen` (the ex-date's reference price), half-up to the fen."""
    exact = old_qty * float(ratio)
    new = math.floor(exact + SHARE_TOLERANCE)
    fraction = max(exact - new, 0.0)
    return new, math.floor(fraction * int(pre_close_fen) + 0.5)


def adjusted_holdings(old_qty: IntArray, ratio: FloatArray, pre_close_fen: IntArray) -> tuple[IntArray, IntArray]:
    """`adjusted_holding` elementwise (the same float64 operations, so the same numbers), for the engines."""
    exact = old_qty.astype(np.float64) * ratio.astype(np.float64)
    new = np.floor(exact + SHARE_TOLERANCE)
    fraction = np.maximum(exact - new, 0.0)
    cash = np.floor(fraction * pre_close_fen.astype(np.float64) + 0.5)
    return new.astype(np.int64), cash.astype(np.int64)


__all__ = ["SHARE_TOLERANCE", "adjusted_holding", "adjusted_holdings", "ex_ratio"]
