"""The risk rules, each at its boundary (at, just below, just above the limit), with the expected figures worked by
hand in the comments; the strictest-of-levels merge; and `evaluate` collecting every finding."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.risk import rules
from services.risk.rules import RuleSet, denied, effective, evaluate
from services.risk.rules.activity import ActivityConfig
from services.risk.rules.activity import check as activity
from services.risk.rules.base import (
    Counters,
    HeldPosition,
    Level,
    OpenOrder,
    RecentOrder,
    Reference,
    RiskState,
    RuleOrder,
    TradingState,
)
from services.risk.rules.codes import CodesConfig
from services.risk.rules.codes import check as codes
from services.risk.rules.drawdown import LossConfig, breach_state
from services.risk.rules.drawdown import check as losses
from services.risk.rules.duplicates import DuplicatesConfig
from services.risk.rules.duplicates import check as duplicates
from services.risk.rules.exchange import ExchangeConfig, cage, cancel_check
from services.risk.rules.exchange import check as exchange
from services.risk.rules.exposure import ExposureConfig
from services.risk.rules.exposure import check as exposure
from services.risk.rules.industry import IndustryConfig
from services.risk.rules.industry import check as industry
from services.risk.rules.limits import OrderLimitsConfig
from services.risk.rules.limits import check as limits
from services.risk.rules.liquidity import LiquidityConfig
from services.risk.rules.liquidity import check as liquidity
from services.risk.rules.position import PositionLimitConfig
from services.risk.rules.position import check as position
from services.risk.rules.self_trade import SelfTradeConfig
from services.risk.rules.self_trade import check as self_trade
from shared.core.domain import OrderSide, OrderType
from shared.core.domain.codes import Board
from shared.platform.clock import EXCHANGE_TZ

D = date(2026, 12, 7)  # a Monday, a trading day
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 12, 7, hh, mm, ss, tzinfo=EXCHANGE_TZ)


def order(**kw: Any) -> RuleOrder:
    base: dict[str, Any] = {
        "ts_code": "600000.SH", "board": Board.MAIN, "side": BUY, "order_type": OrderType.LIMIT, "qty": 1000,
        "price": Decimal("10.00"), "value": Decimal("10000"), "at": at(10, 0), "session": D,
        "reference": Reference(last_price=Decimal("10.00"), industry="银行", avg_volume_20d=100_000),
    }  # fmt: skip
    base.update(kw)
    return RuleOrder(**base)


def codes_of(findings: list[Any]) -> list[tuple[str, str]]:
    return [(f.code, f.level.value) for f in findings]


# -- the exchange -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("board", "kind", "most"),
    [
        (Board.MAIN, OrderType.LIMIT, 1_000_000),
        (Board.MAIN, OrderType.MARKET, 1_000_000),
        (Board.CHINEXT, OrderType.LIMIT, 300_000),
        (Board.CHINEXT, OrderType.MARKET, 150_000),
        (Board.STAR, OrderType.LIMIT, 100_000),
        (Board.STAR, OrderType.MARKET, 50_000),
    ],
)
def test_the_most_shares_an_order_may_ask_for_by_board_and_type(board: Board, kind: OrderType, most: int) -> None:
    price = None if kind is OrderType.MARKET else Decimal("10.00")
    # a STAR market order's protection price inside the cage (last price 10.00: a buy up to 10.20)
    extra = {"protection_price": Decimal("10.20")} if board is Board.STAR and kind is OrderType.MARKET else {}
    at_limit = order(board=board, order_type=kind, price=price, qty=most, **extra)
    assert exchange(at_limit, ExchangeConfig(price_cage=True)) == []
    over = order(board=board, order_type=kind, price=price, qty=most + 1, **extra)
    assert codes_of(exchange(over, ExchangeConfig(price_cage=True))) == [("exchange_max_qty", "deny")]


def test_chinext_orders_followed_the_main_board_before_its_2020_reform() -> None:
    before = order(
        board=Board.CHINEXT, qty=500_000, session=date(2020, 8, 21), at=datetime(2020, 8, 21, 10, 0, tzinfo=EXCHANGE_TZ)
    )
    assert exchange(before, ExchangeConfig(price_cage=False)) == []
    after = order(
        board=Board.CHINEXT, qty=500_000, session=date(2020, 8, 24), at=datetime(2020, 8, 24, 10, 0, tzinfo=EXCHANGE_TZ)
    )
    assert codes_of(exchange(after, ExchangeConfig(price_cage=False))) == [("exchange_max_qty", "deny")]


def test_a_star_market_order_needs_a_protection_price() -> None:
    bare = order(board=Board.STAR, ts_code="688001.SH", order_type=OrderType.MARKET, price=None, qty=200)
    assert codes_of(exchange(bare, ExchangeConfig(price_cage=True))) == [("protection_price_required", "deny")]
    protected = order(
        board=Board.STAR, order_type=OrderType.MARKET, price=None, qty=200, protection_price=Decimal("10.2")
    )
    assert exchange(protected, ExchangeConfig(price_cage=True)) == []


def test_nothing_is_accepted_between_the_opening_auction_and_continuous_trading() -> None:
    assert exchange(order(at=at(9, 24, 59)), ExchangeConfig(price_cage=True)) == []
    assert codes_of(exchange(order(at=at(9, 25)), ExchangeConfig(price_cage=True))) == [("auction_closed", "deny")]
    assert codes_of(exchange(order(at=at(9, 29, 59)), ExchangeConfig(price_cage=True))) == [("auction_closed", "deny")]
    assert exchange(order(at=at(9, 30)), ExchangeConfig(price_cage=True)) == []
    # an order placed the evening before for this session is not in the window
    evening = order(at=datetime(2026, 12, 4, 9, 26, tzinfo=EXCHANGE_TZ))
    assert exchange(evening, ExchangeConfig(price_cage=True)) == []


def test_cancels_in_the_no_cancel_windows() -> None:
    assert cancel_check(at(9, 19, 59)) == []
    assert codes_of(cancel_check(at(9, 20))) == [("cancel_window", "deny")]
    assert cancel_check(at(9, 25)) == []
    assert codes_of(cancel_check(at(14, 57))) == [("cancel_window", "deny")]
    assert cancel_check(at(15, 0)) == []


def test_the_price_cage() -> None:
    # Benchmark 10.00: 102% is 10.20, +10 ticks is 10.10: a main-board buy may go to 10.20; 98% 9.80 / -10 ticks
    # 9.90: a sell down to 9.80. Benchmark 3.00: 3.06 vs 3.10 -> 3.10; 2.94 vs 2.90 -> 2.90 (the ticks win).
    assert cage(Board.MAIN, Decimal("10.00")) == (Decimal("10.20"), Decimal("9.80"))
    assert cage(Board.MAIN, Decimal("3.00")) == (Decimal("3.10"), Decimal("2.90"))
    assert cage(Board.STAR, Decimal("3.00")) == (Decimal("3.06"), Decimal("2.94"))  # STAR: 2% only
    # 102% of 10.33 = 10.5366 -> a buy up to 10.53; 98% = 10.1234 -> a sell down to 10.13
    assert cage(Board.MAIN, Decimal("10.33")) == (Decimal("10.53"), Decimal("10.13"))
    assert exchange(order(price=Decimal("10.20")), ExchangeConfig(price_cage=True)) == []
    assert codes_of(exchange(order(price=Decimal("10.21")), ExchangeConfig(price_cage=True))) == [
        ("price_cage", "deny")
    ]
    assert exchange(order(side=SELL, price=Decimal("9.80")), ExchangeConfig(price_cage=True)) == []
    assert codes_of(exchange(order(side=SELL, price=Decimal("9.79")), ExchangeConfig(price_cage=True))) == [
        ("price_cage", "deny")
    ]
    # not in the call auction, nor for an order placed for a later session
    assert exchange(order(price=Decimal("10.21"), at=at(9, 16)), ExchangeConfig(price_cage=True)) == []
    assert exchange(order(price=Decimal("10.21")), ExchangeConfig(price_cage=False)) == []


def test_a_star_market_orders_protection_price_is_held_to_the_cage() -> None:
    # STAR, last price 50.00: the cage is 2% only: a buy's protection at most 50.00 x 1.02 = 51.00, a sell's at
    # least 50.00 x 0.98 = 49.00 (SSE: a protection price outside the cage is an invalid order).
    ref = Reference(last_price=Decimal("50.00"))

    def star(side: OrderSide, protection: str, **kw: Any) -> RuleOrder:
        fields: dict[str, Any] = {
            "ts_code": "688981.SH", "board": Board.STAR, "side": side, "order_type": OrderType.MARKET,
            "price": Decimal(protection), "qty": 200, "reference": ref, "protection_price": Decimal(protection),
        }  # fmt: skip
        return order(**(fields | kw))

    on = ExchangeConfig(price_cage=True)
    assert exchange(star(BUY, "51.00"), on) == []
    [finding] = exchange(star(BUY, "51.01"), on)
    assert (finding.code, finding.values["price"], finding.values["highest_buy"]) == ("price_cage", "51.01", "51.00")
    assert exchange(star(SELL, "49.00"), on) == []
    [finding] = exchange(star(SELL, "48.99"), on)
    assert (finding.code, finding.values["price"], finding.values["lowest_sell"]) == ("price_cage", "48.99", "49.00")
    # as for a limit order: not in the call auction, not with the cage turned off, not without a reference
    assert exchange(star(BUY, "51.01", at=at(9, 16)), on) == []
    assert exchange(star(BUY, "51.01"), ExchangeConfig(price_cage=False)) == []
    assert exchange(star(BUY, "51.01", reference=Reference(last_price=None)), on) == []
    # a main-board market order has no protection price: nothing to cage
    assert exchange(order(order_type=OrderType.MARKET, price=None), on) == []


# -- per-order limits ---------------------------------------------------------------------------------------------


def test_max_order_value_and_its_warning_level() -> None:
    config = OrderLimitsConfig(max_order_value=Decimal("10000"))  # warn at 80%: 8,000
    assert codes_of(limits(order(value=Decimal("10000")), config)) == [("max_order_value", "warn")]  # at the limit
    assert codes_of(limits(order(value=Decimal("10000.01")), config)) == [("max_order_value", "deny")]
    assert codes_of(limits(order(value=Decimal("8000")), config)) == [("max_order_value", "warn")]
    assert limits(order(value=Decimal("7999.99")), config) == []
    assert limits(order(value=Decimal("9999")), config.model_copy(update={"warn_at_pct": None})) == []


def test_max_order_qty() -> None:
    config = OrderLimitsConfig(max_order_qty=1000, warn_at_pct=None)
    assert limits(order(qty=1000), config) == []
    assert codes_of(limits(order(qty=1100), config)) == [("max_order_qty", "deny")]


def test_fat_finger_price_deviation() -> None:
    config = OrderLimitsConfig(max_price_deviation_pct=Decimal(5))  # last 10.00: 9.50 .. 10.50 pass
    assert limits(order(price=Decimal("10.50")), config) == []
    assert limits(order(price=Decimal("9.50")), config) == []
    assert codes_of(limits(order(price=Decimal("10.51")), config)) == [("price_deviation", "deny")]
    assert codes_of(limits(order(price=Decimal("9.49")), config)) == [("price_deviation", "deny")]


# -- exposure -----------------------------------------------------------------------------------------------------


def state(**kw: Any) -> RiskState:
    base: dict[str, Any] = {
        "equity": Decimal("100000"),
        "positions": {
            "600000.SH": HeldPosition(qty=1000, market_value=Decimal("10000"), industry="银行"),
            "000001.SZ": HeldPosition(qty=1000, market_value=Decimal("12000"), industry="银行"),
            "600519.SH": HeldPosition(qty=10, market_value=Decimal("15000"), industry="白酒"),
        },
        "open_orders": (
            OpenOrder("600000.SH", BUY, Decimal("10.00"), 500, Decimal("5000"), industry="银行"),
            OpenOrder("600519.SH", SELL, Decimal("1600.00"), 10, Decimal("16000"), industry="白酒"),
        ),
    }
    base.update(kw)
    return RiskState(**base)


def test_position_limit_counts_what_is_held_open_buys_and_the_order() -> None:
    # 600000.SH: 10,000 held + 5,000 open buy + the order. Limit 20% of 100,000 = 20,000: an order of 5,000 reaches
    # it exactly (passes, warns), 5,000.01 goes over.
    config = PositionLimitConfig(max_pct_of_equity=Decimal(20))
    assert codes_of(position(order(value=Decimal("5000")), state(), config)) == [("position_pct", "warn")]
    assert codes_of(position(order(value=Decimal("5000.01")), state(), config)) == [("position_pct", "deny")]
    assert position(order(value=Decimal("999")), state(), config) == []  # 15,999 < 80% of 20,000 = 16,000
    assert position(order(side=SELL, value=Decimal("99999")), state(), config) == []  # a sell reduces
    value = PositionLimitConfig(max_value=Decimal("16000"), warn_at_pct=None)
    assert position(order(value=Decimal("1000")), state(), value) == []
    assert codes_of(position(order(value=Decimal("1000.01")), state(), value)) == [("position_value", "deny")]


def test_industry_concentration() -> None:
    # 银行: 10,000 + 12,000 held + 5,000 open buy = 27,000; limit 30% of 100,000 = 30,000: room for 3,000.
    config = IndustryConfig(max_pct_of_equity=Decimal(30), warn_at_pct=None)
    assert industry(order(value=Decimal("3000")), state(), config) == []
    assert codes_of(industry(order(value=Decimal("3000.01")), state(), config)) == [("industry_pct", "deny")]
    # another industry's order is measured against its own: 白酒 15,000 held (the open sell does not count)
    liquor = order(ts_code="600519.SH", reference=Reference(last_price=Decimal("1500"), industry="白酒"))
    assert industry(liquor.__class__(**{**liquor.__dict__, "value": Decimal("15000")}), state(), config) == []
    assert codes_of(
        industry(liquor.__class__(**{**liquor.__dict__, "value": Decimal("15000.01")}), state(), config)
    ) == [("industry_pct", "deny")]
    no_industry = order(reference=Reference(last_price=Decimal("10")))
    assert industry(no_industry, state(), IndustryConfig(max_pct_of_equity=Decimal(0))) == []


def test_total_exposure() -> None:
    # held 37,000 + open buys 5,000 = 42,000; limit 50% = 50,000: room for 8,000.
    config = ExposureConfig(max_pct_of_equity=Decimal(50), warn_at_pct=None)
    assert exposure(order(value=Decimal("8000")), state(), config) == []
    assert codes_of(exposure(order(value=Decimal("8000.01")), state(), config)) == [("exposure_pct", "deny")]


def test_liquidity() -> None:
    # 20-day average 100,000 shares; 1% is 1,000 shares.
    config = LiquidityConfig(max_pct_of_avg_volume=Decimal(1), warn_at_pct=None)
    assert liquidity(order(qty=1000), config) == []
    assert codes_of(liquidity(order(qty=1100), config)) == [("liquidity_pct", "deny")]
    unknown = order(qty=10**6, reference=Reference(last_price=Decimal("10"), avg_volume_20d=None))
    assert liquidity(unknown, config) == []


# -- activity -----------------------------------------------------------------------------------------------------


def test_order_rate_per_second_and_day_counts_this_order() -> None:
    config = ActivityConfig(max_per_second=10, max_per_day=100, warn_at_pct=None)
    assert activity(state(counters=Counters(orders_last_second=6, cancels_last_second=3)), config) == []  # 10th
    over = state(counters=Counters(orders_last_second=7, cancels_last_second=3))
    assert codes_of(activity(over, config)) == [("order_rate_second", "deny")]
    assert activity(state(counters=Counters(orders_today=90, cancels_today=9)), config) == []
    assert codes_of(activity(state(counters=Counters(orders_today=90, cancels_today=10)), config)) == [
        ("order_rate_day", "deny")
    ]


def test_the_defaults_stay_below_the_exchanges_high_frequency_thresholds() -> None:
    config = ActivityConfig()
    assert config.max_per_second is not None and config.max_per_second < rules.activity.HIGH_FREQUENCY_PER_SECOND
    assert config.max_per_day is not None and config.max_per_day < rules.activity.HIGH_FREQUENCY_PER_DAY


def test_active_orders_and_the_cancel_ratio_watch() -> None:
    config = ActivityConfig(max_active_orders=3, warn_at_pct=None)
    assert activity(state(), config) == []  # 2 open + this one
    full = state(open_orders=state().open_orders * 2)
    assert codes_of(activity(full, config)) == [("active_orders", "deny")]
    watch = ActivityConfig(cancel_ratio_watch_pct=Decimal(50), cancel_ratio_min_orders=100, warn_at_pct=None)
    assert activity(state(counters=Counters(orders_today=100, cancels_today=50)), watch) == []
    assert codes_of(activity(state(counters=Counters(orders_today=100, cancels_today=51)), watch)) == [
        ("cancel_ratio", "warn")
    ]
    assert activity(state(counters=Counters(orders_today=99, cancels_today=99)), watch) == []  # too few to judge


def test_duplicates_within_the_window_whatever_the_id() -> None:
    now = at(10, 0, 5)
    seen = RecentOrder("600000.SH", BUY, Decimal("10.00"), 1000, at(10, 0, 0))
    config = DuplicatesConfig(window_s=5)
    assert codes_of(duplicates(order(at=now), state(recent_orders=(seen,)), config)) == [("duplicate_order", "deny")]
    assert duplicates(order(at=now + timedelta(microseconds=1)), state(recent_orders=(seen,)), config) == []
    assert duplicates(order(at=now, qty=1100), state(recent_orders=(seen,)), config) == []
    assert duplicates(order(at=now, price=Decimal("10.01")), state(recent_orders=(seen,)), config) == []
    assert duplicates(order(at=now, side=SELL), state(recent_orders=(seen,)), config) == []


def test_self_trade() -> None:
    resting_sell = OpenOrder("600000.SH", SELL, Decimal("10.05"), 500, Decimal("5025"))
    s = state(open_orders=(resting_sell,))
    assert self_trade(order(price=Decimal("10.04")), s, SelfTradeConfig()) == []
    assert codes_of(self_trade(order(price=Decimal("10.05")), s, SelfTradeConfig())) == [("self_trade", "deny")]
    market = order(order_type=OrderType.MARKET, price=None)
    assert codes_of(self_trade(market, s, SelfTradeConfig())) == [("self_trade", "deny")]
    assert self_trade(order(ts_code="600001.SH", price=Decimal("11")), s, SelfTradeConfig()) == []
    resting_buy = OpenOrder("600000.SH", BUY, Decimal("9.95"), 500, Decimal("4975"))
    s = state(open_orders=(resting_buy,))
    assert self_trade(order(side=SELL, price=Decimal("9.96")), s, SelfTradeConfig()) == []
    assert codes_of(self_trade(order(side=SELL, price=Decimal("9.95")), s, SelfTradeConfig())) == [
        ("self_trade", "deny")
    ]


def test_code_lists_st_and_suspension_block_buys_only() -> None:
    assert codes_of(codes(order(), CodesConfig(blacklist=frozenset({"600000.SH"})))) == [("blacklisted", "deny")]
    assert codes(order(side=SELL), CodesConfig(blacklist=frozenset({"600000.SH"}))) == []
    assert codes(order(), CodesConfig(whitelist=frozenset({"600000.SH"}))) == []
    assert codes_of(codes(order(), CodesConfig(whitelist=frozenset({"600001.SH"})))) == [("not_whitelisted", "deny")]
    st = order(reference=Reference(last_price=Decimal("3"), is_st=True))
    assert codes(st, CodesConfig()) == [] and codes_of(codes(st, CodesConfig(refuse_st=True))) == [("st_stock", "deny")]
    halted = order(reference=Reference(last_price=Decimal("3"), suspended=True))
    assert codes_of(codes(halted, CodesConfig())) == [("suspended", "deny")]


# -- losses and trading states --------------------------------------------------------------------------------------


def test_daily_loss_and_drawdown_move_the_trading_state() -> None:
    config = LossConfig(max_daily_loss_pct=Decimal(5), warn_at_pct=None)
    # opening equity 100,000 (equity 95,000 after a loss of 5,000): exactly 5% -> still active
    assert breach_state(RiskState(equity=Decimal("95000"), pnl_today=Decimal("-5000")), config) == (
        TradingState.ACTIVE,
        [],
    )
    wanted, found = breach_state(RiskState(equity=Decimal("94999"), pnl_today=Decimal("-5001")), config)
    assert wanted is TradingState.REDUCING and codes_of(found) == [("daily_loss_pct", "deny")]
    # drawdown: high-water 200,000, equity 180,000 is 10% down
    dd = LossConfig(max_drawdown_pct=Decimal(10), on_breach="halted", warn_at_pct=None)
    at_limit = RiskState(equity=Decimal("180000"), equity_high_water=Decimal("200000"))
    assert breach_state(at_limit, dd)[0] is TradingState.ACTIVE
    below = RiskState(equity=Decimal("179999.99"), equity_high_water=Decimal("200000"))
    assert breach_state(below, dd)[0] is TradingState.HALTED
    # never looser than it is: halted stays halted when the breach only asks for reducing
    halted = RiskState(equity=Decimal("94999"), pnl_today=Decimal("-5001"), trading_state=TradingState.HALTED)
    assert breach_state(halted, config)[0] is TradingState.HALTED


def test_reducing_passes_only_sells_within_the_position_and_halted_nothing() -> None:
    reducing = state(trading_state=TradingState.REDUCING)
    assert losses(order(side=SELL, qty=1000), reducing, LossConfig()) == []
    assert codes_of(losses(order(side=SELL, qty=1100), reducing, LossConfig())) == [("reducing", "deny")]
    assert codes_of(losses(order(), reducing, LossConfig())) == [("reducing", "deny")]
    halted = state(trading_state=TradingState.HALTED)
    assert codes_of(losses(order(side=SELL, qty=100), halted, LossConfig())) == [("halted", "deny")]


# -- levels and evaluation -----------------------------------------------------------------------------------------


def test_the_strictest_level_applies() -> None:
    global_default = RuleSet.model_validate(
        {"order_limits": {"max_order_value": "50000", "max_price_deviation_pct": "5"}, "duplicates": {"window_s": 5},
         "codes": {"blacklist": ["600001.SH"], "whitelist": ["600000.SH", "600001.SH", "600002.SH"]}}
    )  # fmt: skip
    account = RuleSet.model_validate(
        {"order_limits": {"max_order_value": "20000"}, "duplicates": {"window_s": 30},
         "codes": {"blacklist": ["600002.SH"], "whitelist": ["600000.SH", "600002.SH"], "refuse_st": True}}
    )  # fmt: skip
    instance = RuleSet.model_validate({"order_limits": {"max_order_value": "30000", "enabled": False}})
    merged = effective(global_default, account, instance)
    limit = merged["order_limits"]
    assert isinstance(limit, OrderLimitsConfig)
    assert limit.max_order_value == Decimal("20000") and limit.max_price_deviation_pct == Decimal(5)
    assert limit.enabled  # disabled at one level, enabled at the others: on
    dup = merged["duplicates"]
    assert isinstance(dup, DuplicatesConfig) and dup.window_s == 30  # the longer window is the stricter
    code = merged["codes"]
    assert isinstance(code, CodesConfig)
    assert code.blacklist == {"600001.SH", "600002.SH"} and code.whitelist == {"600000.SH", "600002.SH"}
    assert code.refuse_st
    assert merged["position_limit"] == PositionLimitConfig()  # no level sets it: the defaults


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"no_such_rule": {}}, "no_such_rule"),
        ({"order_limits": {"max_order_value": "-1"}}, "max_order_value"),
        ({"position_limit": {"max_pct_of_equity": "100.5"}}, "max_pct_of_equity"),
        ({"order_limits": {"max_order_valu": "1"}}, "max_order_valu"),
        ({"duplicates": {"window_s": -1}}, "window_s"),
    ],
)
def test_a_bad_rule_set_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        RuleSet.model_validate(body)
    assert any(field in ".".join(str(p) for p in e["loc"]) for e in error.value.errors())


def test_evaluate_collects_every_finding() -> None:
    configs = effective(
        RuleSet.model_validate(
            {"order_limits": {"max_order_value": "5000", "warn_at_pct": None},
             "codes": {"blacklist": ["600000.SH"]}, "exchange": {"price_cage": False}}
        )
    )  # fmt: skip
    findings = evaluate(order(at=at(9, 26)), state(), configs)
    assert codes_of(findings) == [("auction_closed", "deny"), ("max_order_value", "deny"), ("blacklisted", "deny")]
    assert denied(findings)
    quiet = evaluate(order(ts_code="600003.SH", value=Decimal("100")), RiskState(equity=Decimal("100000")), configs)
    assert quiet == [] and not denied(quiet)
    assert all(f.level in (Level.DENY, Level.WARN) for f in findings)
