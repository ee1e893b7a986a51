"""Rule sets without a database: the change body's validation names the field; the rule book serves the strictest
merge of the three levels from memory (values worked by hand below), reloads on an event or after its cheap check,
and fails closed when it never loaded."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.risk.rule_sets import (
    RuleBook,
    RuleSetVersion,
    RulesUnavailable,
    _body,
    check_key,
    same_rules,
)
from services.risk.rules import RuleSet, effective
from services.risk.schemas import RuleSetChange, RuleSetClear
from services.risk.store import Scope

INSTANCE = "0123456789abcdef0123456789abcdef"
AT = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def _fields(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        RuleSetChange.model_validate(body)
    return [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"drawdown": {}}, "rules.drawdown"),  # no such rule (it is `losses`)
        ({"order_limits": {"max_value": "1"}}, "rules.order_limits.max_value"),  # no such setting
        ({"order_limits": {"max_order_value": "-1"}}, "rules.order_limits.max_order_value"),
        ({"order_limits": {"max_order_qty": -100}}, "rules.order_limits.max_order_qty"),
        ({"position_limit": {"max_pct_of_equity": "100.01"}}, "rules.position_limit.max_pct_of_equity"),
        ({"losses": {"max_drawdown_pct": 101}}, "rules.losses.max_drawdown_pct"),
        ({"order_limits": {"warn_at_pct": 150}}, "rules.order_limits.warn_at_pct"),
        ({"order_activity": {"max_per_second": "100"}}, "rules.order_activity.max_per_second"),  # a count: an int
        ({"codes": {"refuse_st": "yes"}}, "rules.codes.refuse_st"),  # a switch: true or false
        ({"codes": {"refuse_st": 1}}, "rules.codes.refuse_st"),
        ({"order_limits": {"enabled": 0}}, "rules.order_limits.enabled"),
        ({"order_limits": {"max_order_value": True}}, "rules.order_limits.max_order_value"),
        ({"order_limits": {"max_order_value": "1e6"}}, "rules.order_limits.max_order_value"),
        ({"losses": {"on_breach": "frozen"}}, "rules.losses.on_breach"),
    ],
)
def test_a_bad_rule_set_is_refused_naming_the_field(rules: dict[str, Any], field: str) -> None:
    assert _fields({"rules": rules, "reason": "tighten"}) == [field]


def test_the_change_needs_a_reason_and_rules_and_nothing_else() -> None:
    assert _fields({"rules": {}}) == ["reason"]
    assert _fields({"rules": {}, "reason": "   "}) == ["reason"]
    assert _fields({"reason": "x"}) == ["rules"]
    assert _fields({"rules": {}, "reason": "x", "scope": "global"}) == ["scope"]
    with pytest.raises(ValidationError):
        RuleSetClear.model_validate({"key": "acct-a"})
    # At the limits: 0 and 100 percent, a zero limit.
    limits = {"position_limit": {"max_pct_of_equity": 100}, "order_limits": {"max_order_value": 0}}
    ok = RuleSetChange.model_validate({"rules": limits, "reason": " why "})
    assert ok.reason == "why" and ok.rules.position_limit is not None
    assert ok.rules.position_limit.max_pct_of_equity == Decimal(100)


def test_the_key_must_fit_the_scope() -> None:
    from fastapi.exceptions import RequestValidationError

    assert check_key(Scope.GLOBAL, "") == ""
    assert check_key(Scope.ACCOUNT, "acct-a") == "acct-a"
    assert check_key(Scope.INSTANCE, INSTANCE) == INSTANCE
    for scope, key in [(Scope.GLOBAL, "acct-a"), (Scope.ACCOUNT, ""), (Scope.ACCOUNT, "a/b"), (Scope.INSTANCE, "x")]:
        with pytest.raises(RequestValidationError) as caught:
            check_key(scope, key)
        assert caught.value.errors()[0]["loc"] == ("body", "key")


def test_the_stored_body_is_what_was_set_and_equal_rules_are_the_same() -> None:
    rules = RuleSet.model_validate(
        {"order_limits": {"max_order_value": 200000}, "codes": {"blacklist": ["600001.SH", "000001.SZ"]}}
    )
    assert _body(rules) == {
        "order_limits": {"max_order_value": "200000"},
        "codes": {"blacklist": ["000001.SZ", "600001.SH"]},
    }
    assert same_rules(
        {"order_limits": {"max_order_value": "200000"}}, {"order_limits": {"max_order_value": "200000.0"}}
    )
    assert same_rules({"order_limits": {}}, {"order_limits": {"enabled": True}})  # the defaults, said or not
    assert not same_rules({}, {"order_limits": {}})  # a rule named takes part in the merge; one not named does not
    assert not same_rules({}, None) and same_rules(None, None)


# --- the rule book --------------------------------------------------------------------------------------------------


class FakeStore:
    """The store's reads the book uses, counted; `down` makes them fail as a database that does not answer."""

    def __init__(self, versions: list[RuleSetVersion]) -> None:
        self.versions = versions
        self.current_calls = 0
        self.stamp_calls = 0
        self.down = False

    def set(self, scope: str, key: str, body: dict[str, Any] | None) -> None:
        number = 1 + max((v.version for v in self.versions if (v.scope, v.key) == (scope, key)), default=0)
        self.versions.append(RuleSetVersion(scope, key, number, body, "why", "root", AT))

    async def current(self) -> list[RuleSetVersion]:
        self.current_calls += 1
        if self.down:
            raise ConnectionError("database down")
        latest: dict[tuple[str, str], RuleSetVersion] = {}
        for v in self.versions:
            if (v.scope, v.key) not in latest or v.version > latest[(v.scope, v.key)].version:
                latest[(v.scope, v.key)] = v
        return list(latest.values())

    async def stamp(self) -> int:
        self.stamp_calls += 1
        if self.down:
            raise ConnectionError("database down")
        return len(self.versions)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


GLOBAL_RULES = {
    "order_limits": {"max_order_value": "200000", "max_order_qty": 50000},
    "position_limit": {"max_pct_of_equity": 20},
    "codes": {"blacklist": ["600001.SH"], "whitelist": ["600001.SH", "600002.SH", "600003.SH"]},
    "duplicates": {"window_s": 5},
}
ACCOUNT_RULES = {
    "order_limits": {"max_order_value": "100000"},
    "position_limit": {"max_pct_of_equity": 30, "max_value": "500000"},
    "codes": {"blacklist": ["600002.SH"], "whitelist": ["600002.SH", "600003.SH", "600004.SH"]},
    "duplicates": {"window_s": 10},
    "losses": {"max_daily_loss_pct": 3, "on_breach": "halted"},
}
INSTANCE_RULES = {
    "order_limits": {"max_order_value": "150000", "max_order_qty": 20000, "enabled": False, "warn_at_pct": 90},
    "codes": {"refuse_st": True},
    "losses": {"max_daily_loss_pct": "2.5"},
}


def _book(store: FakeStore, clock: Clock) -> RuleBook:
    return RuleBook(store, check_every_s=5, monotonic=clock)  # type: ignore[arg-type]


def _three_levels() -> FakeStore:
    store = FakeStore([])
    store.set("global", "", GLOBAL_RULES)
    store.set("account", "acct-a", {"order_limits": {"max_order_value": "1"}})  # version 1, replaced by 2
    store.set("account", "acct-a", ACCOUNT_RULES)
    store.set("instance", INSTANCE, INSTANCE_RULES)
    return store


async def test_the_strictest_of_the_three_levels_rule_by_rule_and_field_by_field() -> None:
    book = _book(_three_levels(), Clock())
    rules = await book.effective_for("acct-a", INSTANCE)
    assert rules.versions == {"global": 1, "account": 2, "instance": 1}
    c = {name: config.model_dump() for name, config in rules.configs.items()}
    # order_limits: value min(200000, 100000, 150000); qty min(50000, 20000) (the account sets none); on if any level
    # is (the instance's "enabled": false does not turn off what global and the account turn on); warn at 90 percent:
    # only the instance sets it (a setting no other level sets is not merged with its default).
    assert c["order_limits"] == {"enabled": True, "warn_at_pct": Decimal(90), "max_order_value": Decimal(100000),
                                 "max_order_qty": 20000, "max_price_deviation_pct": None}  # fmt: skip
    # position_limit: min(20, 30) percent; the value only the account sets.
    assert c["position_limit"]["max_pct_of_equity"] == Decimal(20)
    assert c["position_limit"]["max_value"] == Decimal(500000)
    # codes: blacklists add up; whitelists intersect ({1,2,3} & {2,3,4}; the instance sets none); refuse_st from the
    # instance; refuse_suspended's default (true) everywhere.
    assert c["codes"]["blacklist"] == frozenset({"600001.SH", "600002.SH"})
    assert c["codes"]["whitelist"] == frozenset({"600002.SH", "600003.SH"})
    assert (c["codes"]["refuse_st"], c["codes"]["refuse_suspended"]) == (True, True)
    # duplicates: the longer window, max(5, 10).
    assert c["duplicates"]["window_s"] == 10
    # losses: min(3, 2.5) percent; halted (the account's) is stricter than the instance's default reducing.
    assert (c["losses"]["max_daily_loss_pct"], c["losses"]["on_breach"]) == (Decimal("2.5"), "halted")
    # A rule no level names runs with its defaults.
    assert c["order_activity"]["max_per_second"] == 100 and c["liquidity"]["max_pct_of_avg_volume"] is None


async def test_levels_that_do_not_apply_are_left_out() -> None:
    book = _book(_three_levels(), Clock())
    other = await book.effective_for("acct-b", None)  # global only
    assert other.versions == {"global": 1, "account": None, "instance": None}
    assert other.configs["order_limits"].model_dump()["max_order_value"] == Decimal(200000)
    assert other.configs["duplicates"].model_dump()["window_s"] == 5
    nobody = await book.effective_for(None, None)
    assert nobody.versions == {"global": 1, "account": None, "instance": None}


async def test_a_cleared_level_no_longer_applies_and_its_version_is_reported() -> None:
    store = _three_levels()
    clock = Clock()
    book = _book(store, clock)
    assert (await book.effective_for("acct-a", None)).configs["duplicates"].model_dump()["window_s"] == 10
    store.set("account", "acct-a", None)  # cleared: version 3
    book.invalidate()
    rules = await book.effective_for("acct-a", None)
    assert rules.versions == {"global": 1, "account": 3, "instance": None}
    assert rules.configs["duplicates"].model_dump()["window_s"] == 5


async def test_no_query_per_order_in_the_steady_state() -> None:
    store = _three_levels()
    clock = Clock()
    book = _book(store, clock)
    await book.load()
    assert (store.current_calls, store.stamp_calls) == (1, 0)
    for _ in range(1000):
        await book.effective_for("acct-a", INSTANCE)
        clock.now += 0.001  # 1,000 orders in one second
    assert (store.current_calls, store.stamp_calls) == (1, 0)
    # After check_every_s: one cheap check; nothing changed, so no load.
    clock.now += 5
    await book.effective_for("acct-a", INSTANCE)
    await book.effective_for("acct-a", INSTANCE)
    assert (store.current_calls, store.stamp_calls) == (1, 1)


async def test_a_change_the_event_missed_is_found_by_the_periodic_check() -> None:
    store = _three_levels()
    clock = Clock()
    book = _book(store, clock)
    assert (await book.effective_for("acct-b", None)).versions["global"] == 1
    store.set("global", "", {"duplicates": {"window_s": 30}})  # written by another risk process; no event heard
    clock.now += 4.9
    assert (await book.effective_for("acct-b", None)).versions["global"] == 1  # not checked yet
    clock.now += 0.1
    rules = await book.effective_for("acct-b", None)
    assert rules.versions["global"] == 2 and rules.configs["duplicates"].model_dump()["window_s"] == 30
    assert (store.current_calls, store.stamp_calls) == (2, 1)


async def test_an_event_reloads_at_once() -> None:
    store = _three_levels()
    clock = Clock()
    book = _book(store, clock)
    await book.load()
    store.set("instance", INSTANCE, {"order_limits": {"max_order_value": "1000"}})
    await book.on_rules_changed(None)
    assert store.current_calls == 2
    rules = await book.effective_for("acct-a", INSTANCE)  # no further query
    assert rules.versions["instance"] == 2 and store.current_calls == 2
    assert rules.configs["order_limits"].model_dump()["max_order_value"] == Decimal(1000)


async def test_fails_closed_when_never_loaded_and_serves_what_it_holds_after() -> None:
    store = _three_levels()
    clock = Clock()
    book = _book(store, clock)
    store.down = True
    await book.start()  # logged, not raised
    assert not book.loaded
    with pytest.raises(RulesUnavailable) as caught:
        await book.effective_for("acct-a", None)
    assert (caught.value.status_code, caught.value.code) == (503, "risk_unavailable")

    store.down = False
    assert (await book.effective_for("acct-a", None)).versions["account"] == 2
    store.down = True
    store.set("account", "acct-a", {"order_limits": {"max_order_value": "5"}})
    book.invalidate()  # an event heard while the database is down: the reload fails, the last rules still serve
    assert (await book.effective_for("acct-a", None)).versions["account"] == 2
    calls = store.current_calls
    await book.effective_for("acct-a", None)  # not tried again on every order...
    assert store.current_calls == calls
    store.down = False
    clock.now += 5  # ...but check_every_s later
    assert (await book.effective_for("acct-a", None)).versions["account"] == 3


def test_a_rule_named_null_is_a_rule_not_named() -> None:
    # (schemathesis sent every rule as null: a 500 before)
    from services.risk.rule_sets import _body

    rules = RuleSet.model_validate({"codes": None, "order_limits": {"max_order_qty": 100}, "losses": None})
    assert _body(rules) == {"order_limits": {"max_order_qty": 100}}


def test_a_setting_set_to_null_is_kept_and_lifts_the_default_where_no_level_sets_it() -> None:
    # `max_per_second: null` (no per-second limit) and `warn_at_pct: null` (no warning) at the global level: kept as
    # set, so the effective settings have no per-second limit and no warning (the defaults are 100 and 80); the
    # per-day limit, not named, keeps its default (10,000). An account level setting 50 a second brings that back.
    from services.risk.rule_sets import _body

    body = _body(RuleSet.model_validate({"order_activity": {"max_per_second": None, "warn_at_pct": None}}))
    assert body == {"order_activity": {"max_per_second": None, "warn_at_pct": None}}
    stored = RuleSet.model_validate(body)
    alone = effective(stored)["order_activity"]
    assert (alone.max_per_second, alone.warn_at_pct, alone.max_per_day) == (None, None, 10_000)
    account = RuleSet.model_validate({"order_activity": {"max_per_second": 50}})
    assert effective(stored, account)["order_activity"].max_per_second == 50


def test_a_list_of_codes_names_real_codes_once_each() -> None:
    # (schemathesis sent ["", ""] as a whitelist: accepted and merged before)
    import pytest
    from pydantic import ValidationError

    ok = RuleSet.model_validate({"codes": {"whitelist": ["600000.SH", "000001.SZ"], "blacklist": []}})
    assert ok.codes is not None and ok.codes.whitelist == frozenset({"600000.SH", "000001.SZ"})
    for bad in (["600000.SH", "600000.SH"], [""], ["600000.sh"], ["600000"], [{}], [{}, {}]):
        with pytest.raises(ValidationError) as raised:
            RuleSet.model_validate({"codes": {"whitelist": bad}})
        assert raised.value.errors()[0]["loc"][:2] == ("codes", "whitelist")
