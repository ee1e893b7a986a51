"""Stops' arithmetic (services/risk/stops.py), worked by hand: a stop-loss triggers at or below its trigger, a
take-profit at or above, a trailing stop at or below its high-water mark less trail_pct percent, floored to the fen;
and the stop request's validation (services/risk/stops_api.py)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.risk.stops import Crossing, Stop, evaluate, exit_client_order_id, trailing_level
from services.risk.stops_api import StopRequest
from shared.platform.placement import not_now as _not_now

D = Decimal


def _stop(kind: str, **kw: Any) -> Stop:
    values: dict[str, Any] = {"stop_id": "s1", "account_id": "acct-a", "owner": "a", "owner_role": "trader",
                              "ts_code": "600000.SH", "kind": kind, "trigger_price": None, "trail_pct": None,
                              "high_water": None, "qty": None, "status": "armed",
                              "created_at": datetime(2026, 12, 7, tzinfo=UTC)}  # fmt: skip
    values.update(kw)
    return Stop(**values)


@pytest.mark.parametrize(
    ("high_water", "pct", "level"),
    [
        ("10.00", "5", "9.50"),  # exact
        ("10.37", "3", "10.05"),  # 10.37 * 0.97 = 10.0589 -> 10.05
        ("12.34", "7.5", "11.41"),  # 12.34 * 0.925 = 11.4145 -> 11.41
        ("10.20", "5", "9.69"),  # 9.69 exactly
        ("8.01", "50", "4.00"),  # 4.005 -> 4.00 (floored, not rounded half up)
        ("100.00", "0.01", "99.99"),  # 99.99 exactly
    ],
)
def test_trailing_level_is_the_mark_less_the_percent_floored_to_the_fen(high_water: str, pct: str, level: str) -> None:
    assert trailing_level(D(high_water), D(pct)) == D(level)


@pytest.mark.parametrize(
    ("price", "fires"),
    [("9.51", False), ("9.50", True), ("9.49", True), ("5.00", True), ("10.00", False)],
)
def test_a_stop_loss_fires_at_or_below_its_trigger(price: str, fires: bool) -> None:
    raised, crossing = evaluate(_stop("stop_loss", trigger_price=D("9.50")), D(price))
    assert raised is None
    assert crossing == (Crossing(D(price), D("9.50"), None) if fires else None)


@pytest.mark.parametrize(("price", "fires"), [("10.99", False), ("11.00", True), ("11.01", True), ("9.00", False)])
def test_a_take_profit_fires_at_or_above_its_trigger(price: str, fires: bool) -> None:
    raised, crossing = evaluate(_stop("take_profit", trigger_price=D("11.00")), D(price))
    assert raised is None
    assert crossing == (Crossing(D(price), D("11.00"), None) if fires else None)


def test_a_trailing_stop_raises_its_mark_and_fires_below_it() -> None:
    stop = _stop("trailing", trail_pct=D("5"), high_water=D("10.00"))  # level 9.50
    # A new high raises the mark and never fires (the level is 5% below it).
    assert evaluate(stop, D("10.20")) == (D("10.20"), None)
    # Below the old mark, above its level: nothing.
    assert evaluate(stop, D("9.51")) == (None, None)
    assert evaluate(stop, D("10.00")) == (None, None)
    assert evaluate(stop, D("9.50")) == (None, Crossing(D("9.50"), D("9.50"), D("10.00")))
    raised = _stop("trailing", trail_pct=D("5"), high_water=D("10.20"))  # level 10.20 * 0.95 = 9.69
    assert evaluate(raised, D("9.70")) == (None, None)  # just above
    assert evaluate(raised, D("9.69")) == (None, Crossing(D("9.69"), D("9.69"), D("10.20")))  # at
    assert evaluate(raised, D("9.68")) == (None, Crossing(D("9.68"), D("9.69"), D("10.20")))  # just below
    odd = _stop("trailing", trail_pct=D("3"), high_water=D("10.37"))  # 10.0589: level 10.05
    assert evaluate(odd, D("10.06")) == (None, None)
    assert evaluate(odd, D("10.05"))[1] == Crossing(D("10.05"), D("10.05"), D("10.37"))


def test_a_stops_level_as_listed() -> None:
    assert _stop("trailing", trail_pct=D("3"), high_water=D("10.37")).as_json()["stop_level"] == "10.05"
    assert _stop("stop_loss", trigger_price=D("9.50")).as_json()["stop_level"] == "9.50"
    assert exit_client_order_id("abc") == "stop-abc"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ts_code": "600000.SH", "kind": "stop_loss"}, None),  # needs trigger_price
        ({"ts_code": "600000.SH", "kind": "trailing"}, None),  # needs trail_pct
        ({"ts_code": "600000.SH", "kind": "trailing", "trail_pct": "0"}, "trail_pct"),
        ({"ts_code": "600000.SH", "kind": "trailing", "trail_pct": "50.01"}, "trail_pct"),
        ({"ts_code": "600000.SH", "kind": "trailing", "trail_pct": "5.001"}, "trail_pct"),
        ({"ts_code": "600000.SH", "kind": "trailing", "trail_pct": "5", "trigger_price": "9.00"}, None),
        ({"ts_code": "600000.SH", "kind": "stop_loss", "trigger_price": "9.005"}, "trigger_price"),
        ({"ts_code": "600000.SH", "kind": "stop_loss", "trigger_price": "0"}, "trigger_price"),
        ({"ts_code": "600000.SH", "kind": "stop_loss", "trigger_price": "9", "trail_pct": "5"}, None),
        ({"ts_code": "600000.SH", "kind": "stop_loss", "trigger_price": "9", "qty": "100"}, "qty"),
        ({"ts_code": "600000.SH", "kind": "stop_loss", "trigger_price": "9", "qty": 0}, "qty"),
        ({"ts_code": "60000.SH", "kind": "stop_loss", "trigger_price": "9"}, "ts_code"),
        ({"ts_code": "600000.SH", "kind": "stop_limit", "trigger_price": "9"}, "kind"),
        ({"ts_code": "600000.SH", "kind": "stop_loss", "trigger_price": "9", "price": "9"}, "price"),
    ],
)
def test_a_stop_request_refuses_what_does_not_fit(body: dict[str, Any], field: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        StopRequest.model_validate(body)
    if field is not None:
        assert [e["loc"][0] for e in caught.value.errors()] == [field]


def test_a_stop_request_reads_the_code_canonically() -> None:
    body = StopRequest.model_validate({"ts_code": "600000.sh", "kind": "trailing", "trail_pct": "50"})
    assert (body.ts_code, body.trail_pct, body.trigger_price, body.qty) == ("600000.SH", D("50"), None, None)


def test_only_refusals_that_say_not_now_are_retried() -> None:
    def decision(*codes: str) -> dict[str, Any]:
        return {"decision_id": "d", "approved": False, "reasons": [{"code": c, "message": c} for c in codes]}

    assert _not_now(422, "order_rejected", decision("limits_unknown"))  # between a close and its bars
    assert _not_now(422, "limits_unknown", {})  # execution's own refusal
    assert not _not_now(422, "order_rejected", decision("limits_unknown", "trading_halted"))  # a real "no" with it
    assert not _not_now(422, "order_rejected", decision("trading_halted"))
    assert not _not_now(422, "order_rejected", decision())
    assert not _not_now(422, "insufficient_position", {})
    assert not _not_now(409, "limits_unknown", {})
