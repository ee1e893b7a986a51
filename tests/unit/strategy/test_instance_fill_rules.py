"""The fill rules an instance's orders carry to the paper broker (`paper_fill`): its cost model's fill fields with the
engine's defaults filled in, in the shape risk and execution read (shared.platform.approval.PaperFill)."""

from decimal import Decimal

from services.strategy.trading import paper_fill_of
from shared.core.market.matching import FillRules
from shared.platform.approval import PaperFill
from shared.platform.universe import CostModel
from shared.research.engine import BacktestConfig


def test_an_instance_without_fill_settings_sends_the_engines_defaults() -> None:
    sent = paper_fill_of(BacktestConfig(**CostModel().config_fields()))
    assert sent == {
        "fill_price": "open",
        "slippage": "none",
        "slippage_amount": "0",
        "volume_cap": None,
        "suspended_orders": "wait",
    }
    assert PaperFill.model_validate(sent).rules(FillRules()) == FillRules()


def test_an_instances_own_fill_settings_are_sent_whole_and_its_fees_are_not() -> None:
    costs = CostModel.model_validate(
        {
            "fill_price": "vwap",
            "slippage": "bps",
            "slippage_amount": "7.5",
            "volume_cap": "0.05",
            "suspended_orders": "cancel",
            "commission_rate": "0.001",
        }
    )
    config = BacktestConfig(**costs.config_fields())
    sent = paper_fill_of(config)
    assert sent == {
        "fill_price": "vwap",
        "slippage": "bps",
        "slippage_amount": "7.5",
        "volume_cap": "0.05",
        "suspended_orders": "cancel",
    }
    # the broker's rules from them are the backtest's own (the A-share rules stay the platform's: all on)
    assert PaperFill.model_validate(sent).rules(FillRules()) == config.fill_rules()
    assert PaperFill.model_validate(sent).rules(FillRules()).volume_cap == Decimal("0.05")
