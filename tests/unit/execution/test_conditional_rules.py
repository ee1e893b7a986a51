"""Conditional orders' trigger logic (services/execution/conditional/rules.py), worked by hand: crossings above and
below judged against the previous price, gaps over the level, time conditions, the wrong side of the market, the
exchanges' market types, missed triggers and the state machine's moves."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.execution.conditional.rules import (
    ConditionType,
    Kind,
    Status,
    Trigger,
    child_client_order_id,
    child_type,
    crossed,
    leg_qty_after_partial_fill,
    market_type_error,
    may_move,
    missed,
    time_reached,
    trigger_of,
    wrong_side,
)
from shared.core.domain import OrderSide, OrderType

D = Decimal
CST = timezone(timedelta(hours=8))
ABOVE = Trigger(ConditionType.PRICE_ABOVE, level=D("10.50"))
BELOW = Trigger(ConditionType.PRICE_BELOW, level=D("9.50"))


@pytest.mark.parametrize(
    ("previous", "price", "fires"),
    [
        ("10.40", "10.49", False),  # still below
        ("10.49", "10.50", True),  # onto the level from below
        ("10.40", "10.80", True),  # a gap over the level
        ("10.50", "10.60", False),  # already at the level before: no crossing now
        ("10.60", "10.55", False),  # above and staying above
        (None, "10.50", True),  # nothing seen before (a bracket leg just armed): at the level is beyond it
        (None, "10.49", False),
    ],
)
def test_crossing_above_is_judged_against_the_previous_price(previous: str | None, price: str, fires: bool) -> None:
    assert crossed(ABOVE, None if previous is None else D(previous), D(price)) is fires


@pytest.mark.parametrize(
    ("previous", "price", "fires"),
    [
        ("9.60", "9.51", False),
        ("9.51", "9.50", True),  # onto the level from above
        ("9.80", "9.10", True),  # a gap down through it
        ("9.50", "9.40", False),  # was already at it
        ("9.40", "9.45", False),
        (None, "9.50", True),
    ],
)
def test_crossing_below_is_judged_against_the_previous_price(previous: str | None, price: str, fires: bool) -> None:
    assert crossed(BELOW, None if previous is None else D(previous), D(price)) is fires


def test_a_sell_stop_waits_for_the_price_to_fall_and_a_buy_stop_for_it_to_rise() -> None:
    sell = trigger_of(Kind.STOP, OrderSide.SELL, D("9.50"), None, None, None)
    buy = trigger_of(Kind.STOP_LIMIT, OrderSide.BUY, D("10.50"), None, None, None)
    assert (sell.type, sell.level) == (ConditionType.PRICE_BELOW, D("9.50"))
    assert (buy.type, buy.level) == (ConditionType.PRICE_ABOVE, D("10.50"))
    # a stop's child is a market order, a stop-limit's a limit order
    assert (child_type(Kind.STOP), child_type(Kind.STOP_LIMIT)) == (OrderType.MARKET, OrderType.LIMIT)
    assert (child_type(Kind.MARKET), child_type(Kind.LIMIT)) == (OrderType.MARKET, OrderType.LIMIT)


def test_a_trigger_on_the_wrong_side_of_the_last_price_is_refused() -> None:
    last = D("10.00")
    sell_stop = trigger_of(Kind.STOP, OrderSide.SELL, D("10.20"), None, None, None)  # a sell stop above the market
    assert wrong_side(sell_stop, last) is not None
    assert wrong_side(trigger_of(Kind.STOP, OrderSide.SELL, D("10.00"), None, None, None), last) is not None  # at it
    assert wrong_side(trigger_of(Kind.STOP, OrderSide.SELL, D("9.99"), None, None, None), last) is None
    buy_stop = trigger_of(Kind.STOP, OrderSide.BUY, D("9.90"), None, None, None)  # a buy stop below the market
    assert wrong_side(buy_stop, last) is not None
    assert wrong_side(trigger_of(Kind.STOP, OrderSide.BUY, D("10.01"), None, None, None), last) is None
    assert wrong_side(Trigger(ConditionType.PRICE_ABOVE, level=D("9.00")), last) is not None
    assert wrong_side(Trigger(ConditionType.PRICE_BELOW, level=D("9.00")), last) is None


def test_a_time_condition_is_reached_at_its_moment() -> None:
    at = datetime(2026, 12, 7, 10, 0, tzinfo=CST)
    trigger = trigger_of(Kind.MARKET, OrderSide.BUY, None, ConditionType.AT_TIME, None, at)
    assert not time_reached(trigger, at - timedelta(microseconds=1))
    assert time_reached(trigger, at)
    assert time_reached(trigger, at + timedelta(hours=1))
    assert not time_reached(ABOVE, at)  # a price trigger is never "reached" by the clock


def test_a_trigger_seen_from_before_the_watch_began_was_missed() -> None:
    started = datetime(2026, 12, 7, 10, 0, tzinfo=CST)
    assert missed(started - timedelta(seconds=1), started)
    assert not missed(started, started)
    assert not missed(started + timedelta(seconds=3), started)


@pytest.mark.parametrize(
    ("exchange", "market_type", "code"),
    [
        ("SH", "counterparty_best", None),
        ("SZ", "counterparty_best", None),
        ("SH", "fok", "market_type_invalid"),  # fill-or-kill is SZSE's only
        ("SH", "ioc", "market_type_invalid"),
        ("SZ", "best5_limit", "market_type_invalid"),  # best five then limit is SSE's only
        ("SH", "bogus", "market_type_invalid"),
        ("SH", "best5_cancel", None),  # every type valid on the exchange is placed (issue 15: the order path's table)
        ("SZ", "fok", None),
        ("SH", "best5_limit", None),
        ("BJ", "best5_limit", None),
        ("BJ", "ioc", "market_type_invalid"),  # BSE: 42-45 only (qmt.md)
    ],
)
def test_market_types_are_checked_per_exchange(exchange: str, market_type: str, code: str | None) -> None:
    error = market_type_error(exchange, market_type)
    assert (None if error is None else error[0]) == code


def test_the_state_machine_allows_only_its_moves() -> None:
    assert may_move(Status.WAITING, Status.ARMED) and may_move(Status.WAITING, Status.CANCELLED)
    assert may_move(Status.ARMED, Status.TRIGGERED) and may_move(Status.ARMED, Status.EXPIRED)
    assert may_move(Status.ARMED, Status.CANCELLED)
    assert may_move(Status.TRIGGERED, Status.PLACED) and may_move(Status.TRIGGERED, Status.REFUSED)
    assert may_move(Status.TRIGGERED, Status.EXPIRED)  # its child not placed by its session's close
    assert not may_move(Status.TRIGGERED, Status.CANCELLED)  # its child is an order by then: cancel that
    assert not may_move(Status.WAITING, Status.TRIGGERED)  # a bracket leg triggers only once armed
    for final in (Status.PLACED, Status.REFUSED, Status.EXPIRED, Status.CANCELLED):
        assert not any(may_move(final, to) for to in Status)


def test_the_child_client_order_id_is_derived_from_the_conditional_id() -> None:
    assert child_client_order_id("0123456789abcdef0123456789abcdef") == "cond-0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("side", "code", "leg_qty", "filled", "armed"),
    [
        ("sell", "600000.SH", 10_000, 9_900, 9_900),  # the shares bought: all of them protected
        ("sell", "600000.SH", 10_000, 9_950, 9_950),  # a sell may include the odd 50 (it closes the position)
        ("sell", "600000.SH", 5_000, 9_950, 5_000),  # never more than the leg's own qty
        ("sell", "600000.SH", 10_000, 0, 0),  # nothing bought: nothing to protect
        ("buy", "600000.SH", 10_000, 9_950, 9_900),  # a buy in whole lots of 100: 9,950 -> 9,900
        ("buy", "300750.SZ", 1_000, 99, 0),  # less than a lot
        ("buy", "688981.SH", 1_000, 150, 0),  # STAR: at least 200
        ("buy", "688981.SH", 1_000, 257, 257),  # STAR: 200, then any number of shares
        ("buy", "830799.BJ", 1_000, 101, 101),  # BSE: 100, then any number
    ],
)
def test_a_leg_after_a_partly_filled_entry_is_sized_by_what_filled(
    side: str, code: str, leg_qty: int, filled: int, armed: int
) -> None:
    assert leg_qty_after_partial_fill(OrderSide(side), code, leg_qty, filled) == armed
