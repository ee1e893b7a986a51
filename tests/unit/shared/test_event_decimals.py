"""Decimals in event payloads are written as plain positional text: a zero return quantized to 8 places is
"0.00000000", not Python's "0E-8" (issue 10, item 31: the desk printed `return 0E-8`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from services.backtest.events import backtest_finished
from shared.platform.events.schemas import BacktestFinished, OrderUpdated

EIGHT_PLACES = Decimal("0.00000001")


def test_a_zero_and_a_tiny_return_travel_as_plain_decimals() -> None:
    zero = Decimal(0).quantize(EIGHT_PLACES)
    tiny = Decimal("0.00000012")
    assert str(zero) == "0E-8" and str(tiny) == "1.2E-7"  # what the payload used to carry
    assert (
        BacktestFinished(backtest_id="b", status="succeeded", total_return=zero).model_dump(mode="json")["total_return"]
        == "0.00000000"
    )
    assert (
        BacktestFinished(backtest_id="b", status="succeeded", total_return=tiny).model_dump(mode="json")["total_return"]
        == "0.00000012"
    )
    # the value is unchanged for a Python reader, and a JSON reader gets it back exactly
    payload = BacktestFinished(backtest_id="b", status="succeeded", total_return=tiny).model_dump(mode="json")
    assert BacktestFinished.model_validate(payload).total_return == tiny


def test_the_published_envelope_carries_plain_decimals() -> None:
    envelope = backtest_finished("b1", "succeeded", owner="alice", total_return=Decimal(0).quantize(EIGHT_PLACES))
    assert envelope.payload["total_return"] == "0.00000000"


def test_order_prices_are_plain_decimals() -> None:
    event = OrderUpdated(
        order_id="o", client_order_id="c", account_id="a", ts_code="600405.SH", side="buy", order_type="limit",
        qty=100, price=Decimal("1E+1"), status="accepted", filled_qty=0, avg_fill_price=None,
        updated_at=datetime(2026, 12, 7, 1, 30, tzinfo=UTC),
    )  # fmt: skip
    assert event.model_dump(mode="json")["price"] == "10"
