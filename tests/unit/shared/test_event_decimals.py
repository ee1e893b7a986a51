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


def test_trade_fees_travel_as_plain_decimals_and_older_trade_events_still_read() -> None:
    from shared.platform.events.schemas import TradeExecuted

    older = {
        "trade_id": "t", "order_id": "o", "client_order_id": "c", "account_id": "a", "ts_code": "600000.SH",
        "side": "sell", "qty": 100, "price": "10.00", "amount": "1000.00", "traded_at": "2025-01-02T01:30:00+00:00",
    }  # fmt: skip
    event = TradeExecuted.model_validate(older)  # published before the fees and the instance were added
    assert (event.commission, event.stamp_duty, event.transfer_fee, event.strategy_instance_id) == (None,) * 4
    # 1,000.00 sold: commission 0.25 -> 5.00 minimum, stamp duty 0.05% = 0.50, transfer fee 0.01.
    fees = {"commission": Decimal("5.00"), "stamp_duty": Decimal("0.50"), "transfer_fee": Decimal("0.01")}
    payload = TradeExecuted.model_validate({**older, **fees}).model_dump(mode="json")
    assert (payload["commission"], payload["stamp_duty"], payload["transfer_fee"]) == ("5.00", "0.50", "0.01")
    assert payload["strategy_instance_id"] is None
