"""The amend's pure decisions (services/execution/amend/rules.py), worked by hand: which orders may be amended and
which requests are refused before anything is sent; what is placed once the original's cancel is confirmed after a
fill of n (the new total less n, or nothing); the replacement's client_order_id; the state machine's moves."""

from decimal import Decimal

import pytest

from services.execution.amend.rules import (
    FINAL,
    Original,
    Status,
    after_cancel,
    may_move,
    refusal,
    replacement_client_order_id,
    replacement_qty,
)
from shared.core.domain import OrderSide, OrderStatus, OrderType

D = Decimal


def order(**kw: object) -> Original:
    """A resting limit buy of 1,000 600000.SH at 10.00 with nothing filled, unless `kw` says otherwise."""
    values: dict[str, object] = {
        "status": OrderStatus.SUBMITTED,
        "order_type": OrderType.LIMIT,
        "side": OrderSide.BUY,
        "ts_code": "600000.SH",
        "qty": 1000,
        "price": D("10.00"),
        "filled_qty": 0,
        "strategy_instance_id": None,
    }
    values.update(kw)
    return Original(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("new_total", "filled", "status", "expected"),
    [
        # 1,000 -> 1,000 at a new price, nothing filled: the whole 1,000 again
        (1000, 0, OrderStatus.CANCELLED, (Status.REPLACING, 1000)),
        # 1,000 -> 800, 300 filled before the cancel took: 800 - 300 = 500
        (800, 300, OrderStatus.CANCELLED, (Status.REPLACING, 500)),
        # 1,000 -> 1,500, 300 filled: 1,500 - 300 = 1,200 (the total grows)
        (1500, 300, OrderStatus.CANCELLED, (Status.REPLACING, 1200)),
        # 1,000 -> 800, 800 filled meanwhile: 800 - 800 = 0, nothing placed
        (800, 800, OrderStatus.CANCELLED, (Status.NOT_NEEDED, 0)),
        # 1,000 -> 800, 900 filled meanwhile (more than the new total): nothing placed, never a negative order
        (800, 900, OrderStatus.CANCELLED, (Status.NOT_NEEDED, 0)),
        # 1,000 -> 1,500 but the original filled in full before its cancel: the amend places nothing (the trader
        # asked to change a working order; a filled one is done)
        (1500, 1000, OrderStatus.FILLED, (Status.NOT_NEEDED, 0)),
    ],
    ids=["untouched", "partly-filled", "grown", "filled-to-new-total", "filled-past-new-total", "filled-in-full"],
)
def test_what_is_placed_after_the_cancel_is_the_new_total_less_what_filled(
    new_total: int, filled: int, status: OrderStatus, expected: tuple[Status, int]
) -> None:
    assert after_cancel(status, new_total, filled) == expected


def test_replacement_qty_never_goes_negative() -> None:
    assert (replacement_qty(800, 300), replacement_qty(800, 800), replacement_qty(800, 1000)) == (500, 0, 0)


def test_the_replacement_client_order_id_is_derived_from_the_original() -> None:
    original = "0123456789abcdef0123456789abcdef"
    assert replacement_client_order_id(original) == "amend-0123456789abcdef0123456789abcdef"
    assert len(replacement_client_order_id(original)) == 38  # within a client_order_id's 64 characters


@pytest.mark.parametrize(
    ("status", "http", "code"),
    [
        (OrderStatus.FILLED, 409, "order_not_amendable"),
        (OrderStatus.CANCELLED, 409, "order_not_amendable"),
        (OrderStatus.REJECTED, 409, "order_not_amendable"),
    ],
    ids=["filled", "cancelled", "rejected"],
)
def test_a_final_order_is_not_amendable(status: OrderStatus, http: int, code: str) -> None:
    found = refusal(order(status=status), D("10.10"), None)
    assert found is not None and (found.status_code, found.code) == (http, code)


def test_a_market_order_is_refused_with_422_naming_order_type() -> None:
    found = refusal(order(order_type=OrderType.MARKET, price=None), None, 500)
    assert found is not None and (found.status_code, found.code, found.field) == (422, "order_not_amendable",
                                                                                  "order_type")  # fmt: skip


def test_a_strategy_instance_order_is_not_amended_by_hand() -> None:
    found = refusal(order(strategy_instance_id="f" * 32), D("10.10"), None)
    assert found is not None and (found.status_code, found.code) == (409, "order_not_amendable")


@pytest.mark.parametrize(
    ("qty", "filled", "code"),
    [
        (300, 300, "qty_not_above_filled"),  # 300 filled: a new total of 300 leaves nothing to replace
        (200, 300, "qty_not_above_filled"),  # below what filled
        (850, 300, "lot_size"),  # a buy: 850 - 300 = 550 shares, not whole lots of 100
        (1000, 0, "amend_changes_nothing"),  # the same qty at the same price
    ],
    ids=["equal-to-filled", "below-filled", "odd-lot-buy", "no-change"],
)
def test_requests_refused_before_anything_is_sent(qty: int, filled: int, code: str) -> None:
    status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.SUBMITTED
    found = refusal(order(filled_qty=filled, status=status), None, qty)
    assert found is not None and found.status_code == 422 and found.code == code


def test_a_sell_may_be_cut_to_an_odd_lot_total_risk_decides_its_lots() -> None:
    # a sell of 1,000 with 300 sold, to a total of 850: 550 to sell, which may close a position (risk's check)
    assert refusal(order(side=OrderSide.SELL, filled_qty=300, status=OrderStatus.PARTIALLY_FILLED), None, 850) is None


def test_price_only_and_qty_only_and_both_are_accepted() -> None:
    assert refusal(order(), D("10.05"), None) is None
    assert refusal(order(), None, 2000) is None
    assert refusal(order(), D("9.95"), 500) is None
    found = refusal(order(), None, None)
    assert found is not None and found.code == "invalid_request"


def test_moves() -> None:
    assert may_move(Status.CANCELLING, Status.REPLACING)
    assert may_move(Status.CANCELLING, Status.NOT_NEEDED)
    assert may_move(Status.REPLACING, Status.REPLACED)
    assert may_move(Status.REPLACING, Status.REPLACEMENT_REFUSED)
    assert not may_move(Status.REPLACED, Status.REPLACING)  # final: nothing moves it
    assert not may_move(Status.CANCELLING, Status.REPLACED)  # never a replacement before the cancel is confirmed


def test_a_users_cancel_stops_an_amend_cancelling_or_replacing_and_nothing_moves_it_after() -> None:
    assert may_move(Status.CANCELLING, Status.CANCELLED_BY_USER)
    assert may_move(Status.REPLACING, Status.CANCELLED_BY_USER)
    assert Status.CANCELLED_BY_USER in FINAL
    for to in Status:
        assert not may_move(Status.CANCELLED_BY_USER, to)  # no replacement after the user's cancel
    for done in (Status.REPLACED, Status.REPLACEMENT_REFUSED, Status.NOT_NEEDED, Status.EXPIRED):
        assert not may_move(done, Status.CANCELLED_BY_USER)  # an amend already over is not rewritten
