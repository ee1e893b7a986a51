"""Event envelope and the typed schemas of every event on the bus (design invariant 3: facts in the past tense)."""

from shared.platform.events.envelope import Envelope, make_event
from shared.platform.events.schemas import (
    EVENT_SCHEMAS,
    BacktestFinished,
    BarsUpdated,
    BrokerReconciliationDifference,
    CashMoved,
    OrderDenied,
    OrderUpdated,
    PositionAdjusted,
    RiskAlert,
    RuleSetChanged,
    StopTriggered,
    StrategyCodeRejected,
    StrategyInstanceBar,
    StrategyInstanceChanged,
    TradeExecuted,
    TradingStateChanged,
)

__all__ = [
    "EVENT_SCHEMAS",
    "BacktestFinished",
    "BarsUpdated",
    "BrokerReconciliationDifference",
    "CashMoved",
    "Envelope",
    "OrderDenied",
    "OrderUpdated",
    "PositionAdjusted",
    "RiskAlert",
    "RuleSetChanged",
    "StopTriggered",
    "StrategyCodeRejected",
    "StrategyInstanceBar",
    "StrategyInstanceChanged",
    "TradeExecuted",
    "TradingStateChanged",
    "make_event",
]
