"""Risk rules: each a small pure function in its own module, configured per level (global default, account, strategy
instance) with the strictest applying. `evaluate` runs every enabled rule and keeps every finding."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ConfigDict

from services.risk.rules import (
    activity,
    codes,
    drawdown,
    duplicates,
    exchange,
    exposure,
    industry,
    limits,
    liquidity,
    position,
    self_trade,
)
from services.risk.rules.activity import ActivityConfig
from services.risk.rules.base import Finding, Level, RiskState, RuleConfig, RuleOrder, stricter_value
from services.risk.rules.codes import CodesConfig
from services.risk.rules.drawdown import LossConfig
from services.risk.rules.duplicates import DuplicatesConfig
from services.risk.rules.exchange import ExchangeConfig
from services.risk.rules.exposure import ExposureConfig
from services.risk.rules.industry import IndustryConfig
from services.risk.rules.limits import OrderLimitsConfig
from services.risk.rules.liquidity import LiquidityConfig
from services.risk.rules.position import PositionLimitConfig
from services.risk.rules.self_trade import SelfTradeConfig
from shared.platform.request_model import RequestModel


@dataclass(frozen=True)
class Rule:
    name: str
    config: type[RuleConfig]
    check: Callable[[RuleOrder, RiskState, Any], list[Finding]]
    order_only: bool = False  # reads the order (and its quote) alone: no account state (evaluate_order)


def _order_only(fn: Callable[[RuleOrder, Any], list[Finding]]) -> Callable[[RuleOrder, RiskState, Any], list[Finding]]:
    return lambda order, _state, config: fn(order, config)


def _state_only(fn: Callable[[RiskState, Any], list[Finding]]) -> Callable[[RuleOrder, RiskState, Any], list[Finding]]:
    return lambda _order, state, config: fn(state, config)


RULES: tuple[Rule, ...] = (
    Rule(exchange.RULE, ExchangeConfig, _order_only(exchange.check), order_only=True),
    Rule(drawdown.RULE, LossConfig, drawdown.check),
    Rule(limits.RULE, OrderLimitsConfig, _order_only(limits.check), order_only=True),
    Rule(position.RULE, PositionLimitConfig, position.check),
    Rule(industry.RULE, IndustryConfig, industry.check),
    Rule(exposure.RULE, ExposureConfig, exposure.check),
    Rule(liquidity.RULE, LiquidityConfig, _order_only(liquidity.check), order_only=True),
    Rule(activity.RULE, ActivityConfig, _state_only(activity.check)),
    Rule(duplicates.RULE, DuplicatesConfig, duplicates.check),
    Rule(self_trade.RULE, SelfTradeConfig, self_trade.check),
    Rule(codes.RULE, CodesConfig, _order_only(codes.check), order_only=True),
)
_NO_STATE = RiskState(equity=Decimal(0))  # what an order-only rule is given (it reads none of it)
BY_NAME: Mapping[str, Rule] = {rule.name: rule for rule in RULES}


class RuleSet(RequestModel):
    """One level's settings: rule name -> its settings (a rule not named takes its defaults). Unknown rules and
    unknown settings are refused (422 naming the field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exchange: ExchangeConfig | None = None
    losses: LossConfig | None = None
    order_limits: OrderLimitsConfig | None = None
    position_limit: PositionLimitConfig | None = None
    industry_concentration: IndustryConfig | None = None
    total_exposure: ExposureConfig | None = None
    liquidity: LiquidityConfig | None = None
    order_activity: ActivityConfig | None = None
    duplicates: DuplicatesConfig | None = None
    self_trade: SelfTradeConfig | None = None
    codes: CodesConfig | None = None

    def config(self, name: str) -> RuleConfig | None:
        value: RuleConfig | None = getattr(self, name)
        return value


def effective(*levels: RuleSet | None) -> dict[str, RuleConfig]:
    """Each rule's settings, setting by setting: the strictest of the values the levels (global default, account,
    instance) set explicitly; a setting no level sets keeps its default. (A level that names a rule does not bring
    that rule's defaults for the settings it leaves out: global `max_per_second: 300` and an instance's
    `max_per_day` alone give the instance 300 a second, not the default 100.)"""
    out: dict[str, RuleConfig] = {}
    for rule in RULES:
        configs = [c for level in levels if level is not None and (c := level.config(rule.name)) is not None]
        default = rule.config()
        merged: dict[str, Any] = {}
        for name in rule.config.model_fields:
            if name == "enabled":  # a level that names a rule turns it on unless it says otherwise
                explicit = [c.enabled if "enabled" in c.model_fields_set else True for c in configs]
            else:
                explicit = [getattr(c, name) for c in configs if name in c.model_fields_set]
            if explicit:
                value = explicit[0]
                for other in explicit[1:]:
                    value = stricter_value(rule.config, name, value, other)
                merged[name] = value
        out[rule.name] = default.model_copy(update=merged)
    return out


def evaluate(order: RuleOrder, state: RiskState, configs: Mapping[str, RuleConfig]) -> list[Finding]:
    """Every enabled rule's findings, in the rules' order; the order is refused if any is a DENY."""
    findings: list[Finding] = []
    for rule in RULES:
        config = configs.get(rule.name) or rule.config()
        if config.enabled:
            findings.extend(rule.check(order, state, config))
    return findings


def evaluate_order(order: RuleOrder, configs: Mapping[str, RuleConfig]) -> list[Finding]:
    """The enabled rules that read the order alone (the exchange's limits and price cage, order limits, liquidity,
    codes): what an amend's new terms are checked against before its original is cancelled (no account state)."""
    findings: list[Finding] = []
    for rule in RULES:
        config = configs.get(rule.name) or rule.config()
        if rule.order_only and config.enabled:
            findings.extend(rule.check(order, _NO_STATE, config))
    return findings


def denied(findings: list[Finding]) -> bool:
    return any(f.level is Level.DENY for f in findings)


__all__ = [
    "BY_NAME", "RULES", "Finding", "Level", "Rule", "RuleSet", "denied", "effective", "evaluate", "evaluate_order",
]  # fmt: skip
