"""A strategy instance's order against its sleeve: the state, its cash (qty x price cap + fees, the account check's
arithmetic) and its sellable shares. Fees worked by hand from the default schedule: commission 0.025% with a 5.00
minimum, transfer fee 0.001% (to the fen), stamp duty on sells only."""

from datetime import date
from decimal import Decimal

import pytest

from services.risk.checks import (
    Holding,
    OrderIntent,
    ReasonCode,
    Sleeve,
    cash_checks,
    sleeve_checks,
    sleeve_state_checks,
)
from shared.core.domain import OrderSide, OrderType
from shared.core.domain.codes import Board
from shared.platform.quotes import Quote

INSTANCE = "0123456789abcdef0123456789abcdef"
DAY = date(2025, 1, 2)
QUOTE = Quote(
    ts_code="600000.SH",
    name="浦发银行",
    board=Board.MAIN,
    is_st=False,
    last_trade_date=date(2024, 12, 31),
    last_close=Decimal("99.00"),
    suspended=False,
    next_trade_date=DAY,
    limit_up=Decimal("108.90"),
    limit_down=Decimal("89.10"),
)


def _sleeve(cash: str = "10000.00", state: str = "running", *positions: Holding) -> Sleeve:
    return Sleeve.model_validate(
        {
            "instance_id": INSTANCE,
            "account_id": "acct-alice",
            "owner": "alice",
            "state": state,
            "cash_available": cash,
            "positions": [p.model_dump() for p in positions],
        }
    )


def _order(side: str = "buy", qty: int = 100, price: str | None = "99.00") -> OrderIntent:
    order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
    return OrderIntent("600000.SH", OrderSide(side), order_type, qty, None if price is None else Decimal(price))


def _codes(order: OrderIntent, sleeve: Sleeve) -> list[str]:
    return [r.code.value for r in sleeve_checks(order, QUOTE, sleeve, trade_date=DAY)]


def test_a_buy_whose_cost_with_fees_fits_the_sleeve_passes() -> None:
    # 100 x 99.00 = 9,900.00; commission 2.475 -> the 5.00 minimum; transfer 0.099 -> 0.10: 9,905.10 <= 10,000.00.
    assert _codes(_order(qty=100, price="99.00"), _sleeve("10000.00")) == []
    assert _codes(_order(qty=100, price="99.00"), _sleeve("9905.10")) == []  # exactly enough


def test_a_buy_beyond_the_sleeve_cash_is_refused_with_the_figures() -> None:
    # 1,000 x 10.00 = 10,000.00 + 5.00 (2.50 -> minimum) + 0.10 = 10,005.10 > 10,000.00.
    [reason] = sleeve_checks(_order(qty=1000, price="10.00"), QUOTE, _sleeve("10000.00"), trade_date=DAY)
    assert reason.code is ReasonCode.INSUFFICIENT_STRATEGY_CASH
    assert reason.message == (
        "buying 1000 shares of 600000.SH at up to 10.00 (limit price) needs 10005.10 CNY with fees; 10000.00 "
        f"available to strategy instance {INSTANCE}"
    )
    # One fen short of the 9,905.10 above.
    assert _codes(_order(qty=100, price="99.00"), _sleeve("9905.09")) == ["insufficient_strategy_cash"]


def test_the_sleeve_and_the_account_cash_checks_share_their_arithmetic() -> None:
    # The same order against the same amount: both pass or both fail, at every amount around the cost.
    order = _order(qty=1000, price="10.00")
    for cash in ("10005.09", "10005.10", "10005.11"):
        sleeve_fails = _codes(order, _sleeve(cash)) == ["insufficient_strategy_cash"]
        account_fails = [r.code for r in cash_checks(order, QUOTE, Decimal(cash), trade_date=DAY)] == [
            ReasonCode.INSUFFICIENT_CASH
        ]
        assert sleeve_fails == account_fails == (cash == "10005.09")


def test_a_market_buy_is_costed_at_the_limit_up_price() -> None:
    # 100 x 108.90 = 10,890.00; commission 2.7225 -> 5.00; transfer 0.1089 -> 0.11: 10,895.11.
    assert _codes(_order(qty=100, price=None), _sleeve("10895.11")) == []
    [reason] = sleeve_checks(_order(qty=100, price=None), QUOTE, _sleeve("10895.10"), trade_date=DAY)
    assert reason.code is ReasonCode.INSUFFICIENT_STRATEGY_CASH
    assert "at up to 108.90 (limit-up price) needs 10895.11 CNY" in reason.message


@pytest.mark.parametrize(
    ("sellable", "qty", "expected"),
    [
        (300, 300, []),
        (300, 200, []),
        (300, 400, ["insufficient_strategy_position"]),
        (None, 100, ["insufficient_strategy_position"]),
    ],
)
def test_a_sell_against_the_sleeve_sellable_shares(sellable: int | None, qty: int, expected: list[str]) -> None:
    held = () if sellable is None else (Holding(ts_code="600000.SH", qty=500, sellable_qty=sellable),)
    assert _codes(_order("sell", qty=qty, price="99.00"), _sleeve("0.00", "running", *held)) == expected


def test_a_sell_needs_no_sleeve_cash_and_a_buy_no_sleeve_shares() -> None:
    assert (
        _codes(
            _order("sell", qty=100), _sleeve("0.00", "running", Holding(ts_code="600000.SH", qty=100, sellable_qty=100))
        )
        == []
    )
    assert _codes(_order("buy", qty=100, price="1.00"), _sleeve("1000.00")) == []  # holds nothing


@pytest.mark.parametrize(
    ("state", "expected"),
    [("running", []), ("stopped", ["strategy_instance_not_running"]), ("paused", ["strategy_instance_not_running"])],
)
def test_only_a_running_instance_places_orders(state: str, expected: list[str]) -> None:
    assert [r.code.value for r in sleeve_state_checks(_sleeve(state=state))] == expected


def test_the_state_message_names_the_instance_and_its_state() -> None:
    [reason] = sleeve_state_checks(_sleeve(state="stopped"))
    assert reason.message == f"strategy instance {INSTANCE} is stopped, not running: it places no orders"
