"""The configured rules in the desk's decisions, with fake ports: a denial's reason, a warning's alert, the rule-set
versions and values recorded with the decision, a loss limit breached moving the trading state, duplicates claimed
atomically. The rules themselves are tested one by one in tests/unit/risk/rules/; here, their wiring."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry

from services.risk.checks import Holding
from services.risk.desk import RiskDesk
from services.risk.metrics import RiskMetrics
from services.risk.rules import RuleSet, effective
from services.risk.rules.base import RuleConfig, TradingState
from services.risk.state.activity import MemoryActivity
from shared.platform.events import RiskAlert
from tests.unit.risk.test_risk_desk import (
    ALICE,
    SECRET,
    STRATEGY,
    FakeBooks,
    FakeExecution,
    FakeLog,
    FakeQuotes,
    FakeTradingStates,
    _instance_order,
    _order,
    _sell,
)

NOW = datetime(2025, 1, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: continuous trading


@dataclass(frozen=True)
class Effective:
    configs: Mapping[str, RuleConfig]
    versions: Mapping[str, int | None]


class FakeRules:
    def __init__(self, *levels: dict[str, Any], down: bool = False) -> None:
        self.levels = [RuleSet.model_validate(level) for level in levels]
        self.down = down

    async def effective_for(self, account_id: str, instance_id: str | None) -> Effective:
        if self.down:
            raise ConnectionError("the database is gone")
        return Effective(effective(*self.levels), {"global": 3, "account": 7 if len(self.levels) > 1 else None,
                                                   "instance": None})  # fmt: skip


def _desk(
    rules: FakeRules,
    books: FakeBooks | None = None,
    *,
    states: FakeTradingStates | None = None,
) -> tuple[RiskDesk, FakeExecution, FakeLog, list[tuple[str, TradingState, str]]]:
    execution, log = FakeExecution(), FakeLog()
    breaches: list[tuple[str, TradingState, str]] = []

    async def on_breach(account_id: str, state: TradingState, why: str) -> None:
        breaches.append((account_id, state, why))

    desk = RiskDesk(
        approval_secret=SECRET,
        approval_ttl_s=60,
        clock=lambda: NOW,
        max_order_value=Decimal("10000000"),
        quotes=FakeQuotes(),
        books=books or FakeBooks(),
        execution=execution,
        decisions=log,
        metrics=RiskMetrics(CollectorRegistry()),
        trading_states=states or FakeTradingStates(),
        rules=rules,
        activity=MemoryActivity(),
        on_breach=on_breach,
    )
    return desk, execution, log, breaches


async def test_a_rule_denial_is_a_reason_and_the_decision_records_the_versions_and_values() -> None:
    # 300 x 10.50 = 3,150.00 against a maximum order value of 3,000.00 (account level, stricter than global's 5,000)
    rules = FakeRules({"order_limits": {"max_order_value": "5000"}}, {"order_limits": {"max_order_value": "3000"}})
    desk, execution, log, _ = _desk(rules)
    placement = await desk.place(_order(), ALICE)
    assert placement.status_code == 422
    assert placement.body["decision"]["reasons"] == [
        {"code": "max_order_value", "message": "order value 3150.00 CNY against the maximum of 3000.00 CNY an order"}
    ]
    assert execution.calls == []
    [decision] = log.decisions
    assert decision.rule_check is not None
    assert decision.rule_check["rule_versions"] == {"global": 3, "account": 7, "instance": None}
    [finding] = [f for f in decision.rule_check["findings"] if f["rule"] == "order_limits"]
    assert finding == {
        "rule": "order_limits",
        "code": "max_order_value",
        "level": "deny",
        "message": "order value 3150.00 CNY against the maximum of 3000.00 CNY an order",
        "values": {"value": "3150.00", "limit": "3000"},
    }
    # equity: 10,000,000.00 cash, nothing held
    assert decision.rule_check["equity"] == "10000000.00"


async def test_a_warning_passes_the_order_and_becomes_a_risk_alert() -> None:
    # 3,150.00 is 90% of 3,500.00: over the 80% warning level, under the limit
    desk, execution, log, _ = _desk(FakeRules({"order_limits": {"max_order_value": "3500"}}))
    placement = await desk.place(_order(), ALICE)
    assert placement.status_code == 201 and len(execution.calls) == 1
    [alert] = [e for e in log.events if e.type == "risk.alert"]
    payload = alert.parsed()
    assert isinstance(payload, RiskAlert)
    assert (payload.severity, payload.rule, payload.code, payload.account_id) == (
        "warning", "order_limits", "max_order_value", "acct-alice",
    )  # fmt: skip
    assert payload.message.endswith("(90.0% of the limit)")
    assert payload.decision_id == log.decisions[0].decision_id
    # counted for Prometheus (LianghuaRiskBreaches counts the critical ones)
    assert desk.metrics.registry.get_sample_value("lh_risk_alerts_total", {"severity": "warning"}) == 1
    assert desk.metrics.registry.get_sample_value("lh_risk_alerts_total", {"severity": "critical"}) == 0


async def test_a_position_limit_counts_what_is_held_at_the_last_price() -> None:
    # held 1,000 x last close 10.00 = 10,000.00; equity 20,000.00 cash + 10,000.00 = 30,000.00.
    # A buy of 300 at 10.50 (3,150.00) brings it to 13,150.00 = 43.8% > 40%: refused. 200 (2,100.00): 12,100.00 =
    # 40.3%: refused too; 100 at 10.50 (1,050.00): 11,050.00 = 36.8%: passes (with a warning at 80% of 40% = 32%).
    books = FakeBooks(Holding(ts_code="600000.SH", qty=1000, sellable_qty=1000), available="20000.00")
    desk, _execution, log, _ = _desk(FakeRules({"position_limit": {"max_pct_of_equity": "40"}}), books)
    refused = await desk.place(_order(client_order_id="c-300", qty=300), ALICE)
    assert [r["code"] for r in refused.body["decision"]["reasons"]] == ["position_pct"]
    assert (await desk.place(_order(client_order_id="c-200", qty=200), ALICE)).status_code == 422
    passed = await desk.place(_order(client_order_id="c-100", qty=100), ALICE)
    assert passed.status_code == 201
    assert [e.parsed().code for e in log.events if e.type == "risk.alert"] == ["position_pct"]  # type: ignore[attr-defined]


async def test_a_loss_limit_breached_moves_the_account_to_reducing_and_a_sell_still_passes() -> None:
    # The day opened (first seen) at equity 30,000.00; the book then shows 27,000.00 (a loss of 3,000.00 = 10%)
    books = FakeBooks(Holding(ts_code="600000.SH", qty=1000, sellable_qty=1000), available="20000.00")
    rules = FakeRules({"losses": {"max_daily_loss": "2000", "on_breach": "reducing"}, "duplicates": {"enabled": False}})
    desk, _execution, log, breaches = _desk(rules, books)
    assert (await desk.place(_order(client_order_id="c-1", qty=100), ALICE)).status_code == 201
    books.reserved.clear()
    books.value = Decimal("17000.00")  # 3,000.00 lost (cash moved out of the book, say)
    buy = await desk.place(_order(client_order_id="c-2", qty=100), ALICE)
    assert buy.status_code == 422
    assert [r["code"] for r in buy.body["decision"]["reasons"]] == ["trading_reducing"]
    [(account, state, why)] = breaches
    assert (account, state) == ("acct-alice", TradingState.REDUCING)
    assert why == "today's loss 3000.00 CNY (limit 2000.00 CNY)"
    critical = [e.parsed() for e in log.events if e.type == "risk.alert"]
    assert [(a.severity, a.code) for a in critical] == [("critical", "daily_loss")]  # type: ignore[attr-defined]
    assert desk.metrics.registry.get_sample_value("lh_risk_alerts_total", {"severity": "critical"}) == 1
    sell = await desk.place(_sell(client_order_id="c-3", qty=100), ALICE)  # reduces the position: passes
    assert sell.status_code == 201


async def test_identical_orders_under_other_ids_are_duplicates_a_retry_of_the_same_id_is_not() -> None:
    desk, execution, _, _ = _desk(FakeRules({"duplicates": {"window_s": 5}}))
    assert (await desk.place(_order(client_order_id="a"), ALICE)).status_code == 201
    dup = await desk.place(_order(client_order_id="b"), ALICE)
    assert dup.status_code == 422
    assert [r["code"] for r in dup.body["decision"]["reasons"]] == ["duplicate_order"]
    assert len(execution.calls) == 1
    other_qty = await desk.place(_order(client_order_id="c", qty=400), ALICE)
    assert other_qty.status_code == 201


async def test_rule_sets_unreadable_fail_closed() -> None:
    desk, execution, _, _ = _desk(FakeRules(down=True))
    placement = await desk.place(_order(), ALICE)
    assert placement.status_code == 503 and placement.body["code"] == "risk_unavailable"
    assert "the rule sets cannot be read (ConnectionError)" in placement.body["message"]
    assert execution.calls == []


async def test_a_holding_without_a_price_leaves_the_losses_rule_out() -> None:
    # 000001.SZ has no quote: the equity is not known, so neither a loss nor a mark is judged from it (valued at 0,
    # 1,000 shares would look like a loss of their whole value and halt the account).
    books = FakeBooks(
        Holding(ts_code="000001.SZ", qty=1000, sellable_qty=1000), available="20000.00"
    )  # fmt: skip
    rules = FakeRules({"losses": {"max_daily_loss": "1", "on_breach": "halted"}})
    desk, execution, log, breaches = _desk(rules, books)
    assert (await desk.place(_order(client_order_id="c-1", qty=100), ALICE)).status_code == 201
    books.value = Decimal("10000.00")  # 10,000.00 of cash gone: a loss, were the equity known
    assert (await desk.place(_order(client_order_id="c-2", qty=100), ALICE)).status_code == 201
    assert breaches == [] and len(execution.calls) == 2
    assert not [f for d in log.decisions for f in (d.rule_check or {}).get("findings", []) if f["rule"] == "losses"]


async def test_order_rates_count_real_seconds_whatever_the_markets_clock(monkeypatch: Any) -> None:
    # The market's clock stands still (a replayed session), the wall's moves: 2 orders a second at most. Orders 1 and
    # 2 in wall second 0, order 3 in it too (refused: 3 > 2), order 4 one wall second later (passes).
    import services.risk.desk as desk_module

    wall = [datetime(2026, 12, 7, 1, 0, 0, 100_000, tzinfo=UTC)]
    monkeypatch.setattr(desk_module, "utcnow", lambda: wall[0])
    desk, _execution, _log, _ = _desk(FakeRules({"order_activity": {"max_per_second": 2, "warn_at_pct": None}}))
    answers = []
    for i, qty in enumerate((100, 200, 300)):
        answers.append((await desk.place(_order(client_order_id=f"c-{i}", qty=qty), ALICE)).status_code)
    assert answers == [201, 201, 422]
    wall[0] += timedelta(seconds=1)
    assert (await desk.place(_order(client_order_id="c-4", qty=400), ALICE)).status_code == 201


async def test_a_strategy_instances_identical_orders_are_not_duplicates() -> None:
    # The same rule set refuses a person's second identical order; an instance's orders are its strategy's intent.
    desk, execution, _, _ = _desk(FakeRules({"duplicates": {"window_s": 5}}))
    for cid in ("i-1", "i-2"):
        placed = await desk.place(_instance_order(client_order_id=cid), STRATEGY)
        assert placed.status_code == 201, placed.body
    assert len(execution.calls) == 2


def test_the_trading_states_gauge_counts_scopes_by_state_and_clears_what_is_no_longer_so() -> None:
    metrics = RiskMetrics(CollectorRegistry())
    metrics.trading_states_are({("account", "halted"): 2, ("instance", "reducing"): 1})

    def value(scope: str, state: str) -> float | None:
        return metrics.registry.get_sample_value("lh_risk_trading_states", {"scope": scope, "state": state})

    assert (value("account", "halted"), value("instance", "reducing"), value("global", "halted")) == (2, 1, 0)
    metrics.trading_states_are({("global", "halted"): 1})  # the accounts resumed, global halted
    assert (value("account", "halted"), value("instance", "reducing"), value("global", "halted")) == (0, 0, 1)


async def test_denials_are_counted_by_reason_code_for_the_dashboards() -> None:
    # 300 x 10.50 = 3,150.00 > 3,000.00 (max_order_value) and 300 shares > 200 (max_order_qty): one order, two reasons
    rules = FakeRules({"order_limits": {"max_order_value": "3000", "max_order_qty": 200}})
    desk, _execution, _log, _ = _desk(rules)
    assert (await desk.place(_order(client_order_id="c-1"), ALICE)).status_code == 422
    assert (await desk.place(_order(client_order_id="c-2", qty=100), ALICE)).status_code == 201  # 1,050.00, 100
    sample = desk.metrics.registry.get_sample_value
    assert sample("lh_risk_denials_total", {"code": "max_order_value"}) == 1
    assert sample("lh_risk_denials_total", {"code": "max_order_qty"}) == 1
    assert sample("lh_risk_decisions_total", {"outcome": "rejected"}) == 1
    assert sample("lh_risk_decisions_total", {"outcome": "approved"}) == 1


async def test_limit_utilisation_is_what_the_last_order_checked_brings_each_limit_to() -> None:
    rules = FakeRules({"order_limits": {"max_order_value": "4200", "max_order_qty": 400}})
    desk, _execution, _log, _ = _desk(rules)
    sample = desk.metrics.registry.get_sample_value

    def share(code: str) -> float | None:
        return sample("lh_risk_limit_utilisation_ratio", {"rule": "order_limits", "code": code})

    assert (await desk.place(_order(client_order_id="c-1"), ALICE)).status_code == 201
    # 300 x 10.50 = 3,150.00 of 4,200.00 = 0.75; 300 of 400 shares = 0.75
    assert share("max_order_value") == 0.75
    assert share("max_order_qty") == 0.75
    # the next order replaces them: 500 x 10.50 = 5,250.00 of 4,200.00 = 1.25 (refused); 500 of 400 = 1.25
    assert (await desk.place(_order(client_order_id="c-2", qty=500), ALICE)).status_code == 422
    assert share("max_order_value") == 1.25
    assert share("max_order_qty") == 1.25


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limit_utilisation_is_the_largest_among_the_accounts_recent_orders_and_expires() -> None:
    clock = Clock()
    metrics = RiskMetrics(CollectorRegistry(), clock=clock)
    value, qty = ("order_limits", "max_order_value"), ("order_limits", "max_order_qty")

    def share(code: str) -> float | None:
        return metrics.registry.get_sample_value("lh_risk_limit_utilisation_ratio",
                                                 {"rule": "order_limits", "code": code})  # fmt: skip

    metrics.utilised("acct-alice", {value: Decimal("1.25"), qty: Decimal("0.5")})
    clock.now += 600  # 10 minutes later
    metrics.utilised("acct-bob", {value: Decimal("0.75")})
    # the largest of alice's 1.25 and bob's 0.75; qty only alice's 0.5
    assert (share("max_order_value"), share("max_order_qty")) == (1.25, 0.5)
    metrics.utilised("acct-alice", {value: Decimal("0.25")})  # alice's next order replaces her 1.25
    assert share("max_order_value") == 0.75
    clock.now += 900  # bob's order is now 25 minutes old, alice's last 15: both out of the window
    assert share("max_order_value") is None and share("max_order_qty") is None
    # no series carries an account: one per limit, whatever the number of accounts
    for n in range(50):
        metrics.utilised(f"acct-{n}", {value: Decimal(n) / 100})
    samples = [s for m in metrics.registry.collect() if m.name == "lh_risk_limit_utilisation_ratio" for s in m.samples]
    assert [(s.labels, s.value) for s in samples] == [({"rule": "order_limits", "code": "max_order_value"}, 0.49)]


def test_measuring_utilisation_keeps_the_largest_share_of_a_limit_and_skips_a_zero_limit() -> None:
    from services.risk.rules.base import against_limit, measuring_utilisation

    with measuring_utilisation() as shares:
        # 30 of 40 = 0.75, then 10 of 40 = 0.25: the larger stays; a limit of 0 has no share (anything is over it)
        against_limit("r", "c", Decimal(30), Decimal(40), None, lambda: "", {})
        against_limit("r", "c", Decimal(10), Decimal(40), None, lambda: "", {})
        against_limit("r", "zero", Decimal(1), Decimal(0), None, lambda: "", {})
    assert shares == {("r", "c"): Decimal("0.75")}
    # outside the block nothing is noted, and the rule's result is the same
    assert against_limit("r", "c", Decimal(50), Decimal(40), None, lambda: "over", {})[0].message == "over"
    assert shares == {("r", "c"): Decimal("0.75")}
