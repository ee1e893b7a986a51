"""The strategy API: discovery, parameter schemas and parameter validation."""

from __future__ import annotations

import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.research.strategy import (
    Strategy,
    StrategyDefinitionError,
    StrategyParams,
    describe,
    discover_strategies,
    strategies_by_name,
)
from strategies.buy_and_hold import BuyAndHold, BuyAndHoldParams


def test_discovery_finds_buy_and_hold_with_its_parameter_schema() -> None:
    found = discover_strategies()
    assert found["buy_and_hold"] is BuyAndHold
    info = describe(found["buy_and_hold"])
    assert info.title and info.description
    schema = info.parameters
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["weights"]["const"] == "equal"
    assert schema["properties"]["weights"]["default"] == "equal"
    assert set(schema["properties"]) == {"weights", "cash_reserve"}


def test_params_default_and_validate() -> None:
    params = BuyAndHold.parse_params({})
    assert params == BuyAndHoldParams(weights="equal", cash_reserve=Decimal("0"))
    assert BuyAndHold.parse_params({"cash_reserve": "0.25"}).model_dump(mode="json") == {
        "weights": "equal",
        "cash_reserve": "0.25",
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"cash_reserve": 1}, "cash_reserve"),
        ({"cash_reserve": "-0.1"}, "cash_reserve"),
        ({"cash_reserve": "lots"}, "cash_reserve"),
        ({"weights": "market_cap"}, "weights"),
        ({"cash_reserv": "0.1"}, "cash_reserv"),  # a typo is an error, not a silent default
    ],
)
def test_param_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BuyAndHold.parse_params(raw)
    assert caught.value.errors()[0]["loc"] == (field,)


def _strategy(name: str, *, title: str = "t", description: str = "d") -> type[Strategy]:
    return type(f"S_{name}", (Strategy,), {"name": name, "title": title, "description": description})


def test_registry_refuses_malformed_and_duplicate_strategies() -> None:
    assert list(strategies_by_name([_strategy("b"), _strategy("a")])) == ["a", "b"]
    with pytest.raises(StrategyDefinitionError, match="both"):
        strategies_by_name([_strategy("same"), _strategy("same")])
    with pytest.raises(StrategyDefinitionError, match="must match"):
        strategies_by_name([_strategy("Bad-Name")])
    with pytest.raises(StrategyDefinitionError, match="title"):
        strategies_by_name([_strategy("untitled", title="")])
    bad_params = type("S_bad", (Strategy,), {"name": "bad", "title": "t", "description": "d", "Params": dict})
    with pytest.raises(StrategyDefinitionError, match="Params"):
        strategies_by_name([bad_params])


def test_discovery_walks_a_package_and_counts_each_class_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "lh_user_strategies"
    (pkg / "nested").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nested" / "__init__.py").write_text("")
    (pkg / "momentum.py").write_text(
        textwrap.dedent(
            """
            from shared.research.strategy import Strategy, StrategyParams

            class Base(Strategy):  # no name: an abstract helper, not a strategy
                pass

            class Momentum(Base):
                name = "momentum"
                title = "Momentum"
                description = "buys what went up"

                class Params(StrategyParams):
                    lookback: int = 20
            """
        )
    )
    (pkg / "nested" / "again.py").write_text(
        "from lh_user_strategies.momentum import Momentum  # imported, not defined here\n"
        "from shared.research.strategy import Strategy\n"
        "class Quiet(Strategy):\n    name = 'quiet'\n    title = 'Quiet'\n    description = 'does nothing'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = discover_strategies("lh_user_strategies")
        assert sorted(found) == ["momentum", "quiet"]
        assert describe(found["momentum"]).parameters["properties"]["lookback"]["default"] == 20
        assert isinstance(found["momentum"]().params, StrategyParams)
    finally:
        for module in [m for m in sys.modules if m.startswith("lh_user_strategies")]:
            del sys.modules[module]


def test_a_strategy_that_fails_to_import_stops_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "lh_broken_strategies"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("raise RuntimeError('typo in a user strategy')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(RuntimeError, match="typo"):
            discover_strategies("lh_broken_strategies")
    finally:
        for module in [m for m in sys.modules if m.startswith("lh_broken_strategies")]:
            del sys.modules[module]
