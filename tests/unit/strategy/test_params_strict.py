"""Strategy parameters arrive in request bodies (a backtest's `params`, an optimisation's space) and are read as
strictly as the bodies themselves (issue 10, item 6): an integer parameter is an integer, never `true`, `"5"`,
`5.0` or `1e3`; a bool parameter is true or false; a number is never a bool."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from pydantic import Field, ValidationError

from shared.research.strategy.base import StrategyParams
from strategies.buy_and_hold import BuyAndHoldParams
from strategies.dual_ma import DualMAParams
from strategies.pairs import PairsParams


@pytest.mark.parametrize("loose", [True, "5", 5.0, 1e3, "1e3", None])
def test_an_integer_parameter_takes_integers_only(loose: object) -> None:
    with pytest.raises(ValidationError) as error:
        DualMAParams.model_validate({"fast": loose, "slow": 20})
    assert error.value.errors()[0]["loc"] == ("fast",)


def test_integers_from_json_and_from_an_optimisers_grid_are_taken() -> None:
    assert DualMAParams.model_validate({"fast": 5, "slow": 20}).fast == 5
    assert DualMAParams.model_validate({"fast": np.int64(7), "slow": np.int32(30)}).slow == 30


@pytest.mark.parametrize("loose", [True, False, "2.0", "two"])
def test_a_float_parameter_takes_numbers_only(loose: object) -> None:
    with pytest.raises(ValidationError):
        PairsParams.model_validate({"leg_a": "600405.SH", "leg_b": "000212.SZ", "entry_z": loose})


def test_a_float_parameter_takes_integers_and_floats() -> None:
    params = PairsParams.model_validate({"leg_a": "600405.SH", "leg_b": "000212.SZ", "entry_z": 3, "exit_z": 0.25})
    assert (params.entry_z, params.exit_z) == (3.0, 0.25)


def test_a_decimal_parameter_takes_decimal_text_and_numbers_but_not_bools() -> None:
    assert BuyAndHoldParams.model_validate({"cash_reserve": "0.10"}).cash_reserve == Decimal("0.10")
    assert BuyAndHoldParams.model_validate({"cash_reserve": 0}).cash_reserve == Decimal(0)
    with pytest.raises(ValidationError):
        BuyAndHoldParams.model_validate({"cash_reserve": True})


def test_a_bool_parameter_takes_true_or_false_only() -> None:
    class WithFlag(StrategyParams):
        flag: bool = Field(default=False)
        count: int | None = None

    assert WithFlag.model_validate({"flag": True}).flag is True
    for loose in (1, "yes", "true", 0.0):
        with pytest.raises(ValidationError):
            WithFlag.model_validate({"flag": loose})
    assert WithFlag.model_validate({"count": None}).count is None
    with pytest.raises(ValidationError):
        WithFlag.model_validate({"count": "3"})
