"""The paper broker's matching rule: market orders fill at the latest close; marketable limits fill at it."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.execution.brokers.paper import _cancels_rest, paper_fill_price
from shared.core.domain import Order, OrderSide, OrderType

CLOSE = Decimal("10.00")
NOW = datetime(2024, 12, 30, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("order_type", "side", "limit", "expected"),
    [
        ("market", "buy", None, "10.00"),
        ("market", "sell", None, "10.00"),
        ("limit", "buy", "10.01", "10.00"),  # willing to pay more: fills at the close, not at the limit
        ("limit", "buy", "10.00", "10.00"),  # at the close
        ("limit", "buy", "9.99", None),  # below the close: rests
        ("limit", "sell", "9.99", "10.00"),  # willing to take less: fills at the close
        ("limit", "sell", "10.00", "10.00"),
        ("limit", "sell", "10.01", None),  # above the close: rests
        # a STAR market order's protection price: a buy at no more, a sell at no less
        ("market", "buy", "10.00", "10.00"),
        ("market", "buy", "9.99", None),  # the close is above what the buy pays at most
        ("market", "sell", "10.00", "10.00"),
        ("market", "sell", "10.01", None),  # the close is below what the sell takes at least
    ],
)
def test_marketability(order_type: str, side: str, limit: str | None, expected: str | None) -> None:
    price = paper_fill_price(OrderType(order_type), OrderSide(side), None if limit is None else Decimal(limit), CLOSE)
    assert price == (None if expected is None else Decimal(expected))


def test_a_limit_order_needs_its_limit() -> None:
    with pytest.raises(ValueError):
        paper_fill_price(OrderType.LIMIT, OrderSide.BUY, None, CLOSE)


@pytest.mark.parametrize(
    ("market_type", "cancels"),
    [("best5_cancel", True), ("ioc", True), ("fok", True), ("best5_limit", False), ("counterparty_best", False),
     ("own_best", False), (None, False)],
    ids=str,
)  # fmt: skip
def test_which_market_types_cancel_what_they_cannot_fill(market_type: str | None, cancels: bool) -> None:
    order = Order(order_id="o1", client_order_id="c1", account_id="a1", ts_code="688001.SH", side=OrderSide.BUY,
                  order_type=OrderType.MARKET, qty=200, price=Decimal("50.00"), market_type=market_type,
                  created_at=NOW, updated_at=NOW)  # fmt: skip
    assert _cancels_rest(order) is cancels
    # a limit order never
    limit = order.model_copy(update={"order_type": OrderType.LIMIT, "market_type": None})
    assert _cancels_rest(limit) is False
