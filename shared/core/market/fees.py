"""Fees in integer fen, vectorised over a day's fills: the same numbers as `shared.core.market.rules.trade_fees` (a test
proves it on random amounts), without a Decimal per fill. The rates, the minimum commission and the stamp duty by date
are not repeated here: they come from `rules.FeeSchedule` and `rules.stamp_duty_rate`; only the rounding is done in
integers. The backtest engines and the matching (`shared.core.market.matching.affordable`) use it.

Each rate is an exact fraction num/den (a Decimal rate has one), so a component rounded half-up to the fen is
floor((2 * amount * num + den) / (2 * den)) in integers: no float ever touches money."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from shared.core.market.rules import FeeSchedule, stamp_duty_rate

IntArray = npt.NDArray[np.int64]


def _fraction(rate: Decimal) -> tuple[int, int]:
    num, den = rate.as_integer_ratio()
    return int(num), int(den)


def round_half_up_ratio(amount_fen: IntArray, num: int, den: int) -> IntArray:
    """amount * num / den rounded half-up to an integer, for amounts >= 0."""
    if num == 0:
        return np.zeros_like(amount_fen)
    return (2 * amount_fen * num + den) // (2 * den)


@dataclass(frozen=True)
class FenFees:
    commission_num: int
    commission_den: int
    min_commission_fen: int
    transfer_num: int
    transfer_den: int
    stamp_duty: bool

    @classmethod
    def from_schedule(cls, schedule: FeeSchedule, *, stamp_duty: bool = True) -> FenFees:
        cn, cd = _fraction(schedule.commission_rate)
        tn, td = _fraction(schedule.transfer_fee_rate)
        return cls(cn, cd, int(schedule.min_commission * 100), tn, td, stamp_duty)

    def commission(self, amount_fen: IntArray) -> IntArray:
        raw = round_half_up_ratio(amount_fen, self.commission_num, self.commission_den)
        return np.maximum(raw, self.min_commission_fen)

    def transfer(self, amount_fen: IntArray) -> IntArray:
        return round_half_up_ratio(amount_fen, self.transfer_num, self.transfer_den)

    def stamp(self, amount_fen: IntArray, trade_date: date) -> IntArray:
        if not self.stamp_duty:
            return np.zeros_like(amount_fen)
        num, den = _fraction(stamp_duty_rate(trade_date))
        return round_half_up_ratio(amount_fen, num, den)

    def buy_total(self, amount_fen: int) -> int:
        """Fees of one buy of `amount_fen` (scalar, for sizing a buy to the cash)."""
        a = np.array([amount_fen], dtype=np.int64)
        return int(self.commission(a)[0] + self.transfer(a)[0])
