"""The order's shape and money checks shared by risk and execution (shared/core/market/orders.py), worked by hand,
and both services' use of them agreeing."""

from datetime import date
from decimal import Decimal

from services.execution.schemas import OrderSubmission
from services.risk.checks import Holding as RiskHolding
from services.risk.schemas import OrderRequest
from shared.core.domain import OrderType
from shared.core.market.orders import Holding, buy_cost, buy_reservation_fen, oversell_error, price_shape_error

TODAY = date(2025, 1, 3)


def test_a_limit_order_has_a_price_and_a_market_order_none() -> None:
    assert price_shape_error(OrderType.LIMIT, Decimal("10.00")) is None
    assert price_shape_error(OrderType.MARKET, None) is None
    assert price_shape_error(OrderType.LIMIT, None) == "a limit order needs a price"
    assert price_shape_error(OrderType.MARKET, Decimal("10.00")) == (
        "a market order takes no price (only a STAR market order: its protection price)"
    )
    assert price_shape_error(OrderType.MARKET, Decimal("10.00"), "600000.SH") is not None
    # a STAR market order's price is its protection price
    assert price_shape_error(OrderType.MARKET, Decimal("10.00"), "688001.SH") is None


def test_both_services_refuse_a_price_that_does_not_match_the_type() -> None:
    base = {"client_order_id": "c-1", "ts_code": "600000.SH", "side": "buy", "qty": 100}
    for model, extra in ((OrderRequest, {}), (OrderSubmission, {"account_id": "alice"})):
        for order_type, price, error in (
            ("limit", None, "a limit order needs a price"),
            ("market", "10.00", "a market order takes no price"),
        ):
            body = {**base, **extra, "order_type": order_type, "price": price}
            try:
                model.model_validate(body)
            except ValueError as exc:
                assert error in str(exc)
            else:
                raise AssertionError(f"{model.__name__} accepted {body}")


def test_the_most_a_buy_can_cost() -> None:
    # 1,000 at up to 9.50: 9,500.00 + commission 5.00 (the minimum; 0.025% is 2.375) + transfer fee 0.10 = 9,505.10.
    assert buy_cost(1000, Decimal("9.50"), TODAY) == Decimal("9505.10")
    # 40,000 at 25.00 = 1,000,000.00: commission 250.00, transfer fee 10.00.
    assert buy_cost(40_000, Decimal("25.00"), TODAY) == Decimal("1000260.00")
    assert buy_cost(0, Decimal("9.50"), TODAY) == Decimal("0.00")  # nothing to buy costs nothing, not 5.00
    # Execution reserves the same figure in fen.
    assert buy_reservation_fen(1000, 950, TODAY) == 950_510


def test_no_sell_of_more_than_the_sellable_shares() -> None:
    held = Holding(ts_code="600000.SH", qty=1500, sellable_qty=700)
    assert oversell_error("600000.SH", 700, held) is None
    assert oversell_error("600000.SH", 701, held) == (
        "cannot sell 701 shares of 600000.SH: 700 sellable now (held 1500; shares bought today become sellable "
        "on the next trading day, open sell orders reserve theirs)"
    )
    assert oversell_error("600000.SH", 100, None) == (
        "cannot sell 100 shares of 600000.SH: 0 sellable now (held 0; shares bought today become sellable "
        "on the next trading day, open sell orders reserve theirs)"
    )


def test_one_holding_type_for_risk_and_execution() -> None:
    # Risk reads execution's positions into the same type execution computes them in.
    assert RiskHolding is Holding
    assert Holding.model_validate({"ts_code": "600000.SH", "qty": 300, "sellable_qty": 100}) == Holding(
        ts_code="600000.SH", qty=300, sellable_qty=100
    )
