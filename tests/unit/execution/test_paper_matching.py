"""The paper broker's matching rule: market orders fill at the latest close; marketable limits fill at it."""

from decimal import Decimal

import pytest

from services.execution.brokers.paper import paper_fill_price
from shared.core.domain import OrderSide, OrderType

CLOSE = Decimal("10.00")


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
    ],
)
def test_marketability(order_type: str, side: str, limit: str | None, expected: str | None) -> None:
    price = paper_fill_price(OrderType(order_type), OrderSide(side), None if limit is None else Decimal(limit), CLOSE)
    assert price == (None if expected is None else Decimal(expected))


def test_a_limit_order_needs_its_limit() -> None:
    with pytest.raises(ValueError):
        paper_fill_price(OrderType.LIMIT, OrderSide.BUY, None, CLOSE)
