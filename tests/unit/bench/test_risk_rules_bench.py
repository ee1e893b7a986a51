"""The rules benchmark (bench/risk_rules.py) measures the full rule set: every rule enabled with every limit set, each
called once per decision, and each finding something for some order of the bench's mix (so none is measured only on
its cheapest path)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

import services.risk.rules as rules_module
from bench.risk_rules import Bench, build
from services.risk.rules import RULES, effective, evaluate
from services.risk.rules.base import Finding, TradingState
from shared.core.domain import OrderSide, OrderType
from shared.core.domain.codes import Board


@pytest.fixture(scope="module")
def bench() -> Bench:
    return build(400)


def findings_by_order(bench: Bench) -> list[list[Finding]]:
    configs = effective(*bench.levels)
    return [evaluate(order, bench.state_for(i), configs) for i, order in enumerate(bench.orders)]


def test_every_rule_is_enabled_with_every_limit_set(bench: Bench) -> None:
    configs = effective(*bench.levels)
    assert set(configs) == {rule.name for rule in RULES}
    for name, config in configs.items():
        assert config.enabled, name
        unset = [field for field in type(config).model_fields if getattr(config, field) is None]
        assert unset == [], f"{name} has no {unset}: it would return early"


def test_every_rule_is_called_once_per_decision(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[str] = Counter()

    def counted(rule: Any) -> Any:
        def check(order: Any, state: Any, config: Any) -> list[Finding]:
            calls[rule.name] += 1
            return rule.check(order, state, config)

        return replace(rule, check=check)

    monkeypatch.setattr(rules_module, "RULES", tuple(counted(rule) for rule in RULES))
    findings_by_order(bench)
    assert calls == {rule.name: len(bench.orders) for rule in RULES}


def test_every_rule_finds_something_in_the_mix(bench: Bench) -> None:
    found = Counter(f.rule for findings in findings_by_order(bench) for f in findings)
    assert {rule.name for rule in RULES} <= set(found), f"rules that never found anything: {found}"


def test_the_orders_made_to_trip_a_rule_trip_it(bench: Bench) -> None:
    """One order in 40 trips a rule on purpose (bench/risk_rules.py `orders`): index 40k+1 asks for 1,200,000
    shares (over every board's most an order and the account's 500,000), 40k+4 repeats an order of the last seconds,
    40k+5 buys at the account's own resting sell, 40k+6 buys a blacklisted, ST or suspended code in turn; every
    20th decision (index 20k+19) is for the account in reducing, where a buy is refused."""
    found = findings_by_order(bench)

    def codes(i: int) -> set[str]:
        return {f.code for f in found[i]}

    for k in range(len(bench.orders) // 40):
        assert {"exchange_max_qty", "max_order_qty"} <= codes(40 * k + 1)
        assert "duplicate_order" in codes(40 * k + 4)
        assert "self_trade" in codes(40 * k + 5)
        assert codes(40 * k + 6) & {"blacklisted", "st_stock", "suspended"}
    for i in range(19, len(bench.orders), 20):
        assert bench.state_for(i).trading_state is TradingState.REDUCING
        if bench.orders[i].side is OrderSide.BUY:
            assert "reducing" in codes(i)


def test_the_mix_covers_both_sides_both_types_and_the_three_boards_and_mostly_passes(bench: Bench) -> None:
    orders = bench.orders
    assert {o.side for o in orders} == {OrderSide.BUY, OrderSide.SELL}
    assert {o.order_type for o in orders} == {OrderType.LIMIT, OrderType.MARKET}
    assert {o.board for o in orders} == {Board.MAIN, Board.CHINEXT, Board.STAR}
    assert all(o.ts_code.startswith("688") for o in orders if o.board is Board.STAR)
    assert all(o.ts_code.startswith("30") for o in orders if o.board is Board.CHINEXT)
    refused = sum(any(f.level == "deny" for f in findings) for findings in findings_by_order(bench))
    assert refused < len(orders) // 2  # a realistic flow: most orders pass, so the passing path is what is timed
    state = bench.states[0]
    assert len(state.positions) == 50 and len(state.open_orders) == 20
    assert len({p.industry for p in state.positions.values()}) == 8
