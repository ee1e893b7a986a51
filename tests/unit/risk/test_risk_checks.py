"""Risk's pre-trade checks, with hand-worked cases."""

from datetime import date
from decimal import Decimal

import pytest

from services.risk.checks import (
    Holding,
    OrderIntent,
    Reason,
    ReasonCode,
    cash_checks,
    position_checks,
    quote_checks,
    session_limits_checks,
    static_checks,
)
from shared.core.domain import OrderSide, OrderType, parse_ts_code
from shared.core.domain.codes import Board
from shared.platform.quotes import Quote

CAP = Decimal("1000000")  # 1,000,000 CNY per order


def _quote(ts_code: str = "600000.SH", **kw: object) -> Quote:
    # Main board, last close 10.00: next session limits 10.00 * 1.1 = 11.00 and 10.00 * 0.9 = 9.00.
    values: dict[str, object] = dict(
        ts_code=ts_code,
        name=ts_code,
        board=Board.MAIN,
        is_st=False,
        last_trade_date=date(2024, 12, 31),
        last_close=Decimal("10.00"),
        suspended=False,
        next_trade_date=date(2025, 1, 2),
        limit_up=Decimal("11.00"),
        limit_down=Decimal("9.00"),
    )
    values.update(kw)
    return Quote.model_validate(values)


def _buy(ts_code: str = "600000.SH", qty: int = 100, price: str | None = "10.00", side: str = "buy") -> OrderIntent:
    order_type = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderIntent(ts_code, OrderSide(side), order_type, qty, None if price is None else Decimal(price))


# Enough shares that sells in the general tests are not about the position.
PLENTY = 1_000_000


def reasons_for(
    order: OrderIntent, quote: Quote | None, cap: Decimal = CAP, holding: Holding | None = None
) -> list[Reason]:
    """The reasons RiskDesk.check collects from the pure checks it calls, in its order: static_checks, then for a
    stock code quote_checks (quote None: unknown security) and position_checks (a sell; holding None: none held).
    Buys' cash_checks are tested on their own below."""
    security, reasons = static_checks(order, max_order_value=cap)
    if security is not None:
        reasons.extend(quote_checks(order, quote, max_order_value=cap))
        reasons.extend(position_checks(order, security, holding))
    return reasons


def check_order_codes(
    order: OrderIntent, quote: Quote | None, cap: Decimal = CAP, holding: Holding | None = None
) -> list[str]:
    return [r.code.value for r in reasons_for(order, quote, cap, holding)]


def check(
    order: OrderIntent, quote: Quote | None = None, cap: Decimal = CAP, holding: Holding | None = None
) -> list[str]:
    q = _quote(order.ts_code) if quote is None else quote
    if holding is None and order.side is OrderSide.SELL:
        holding = Holding(ts_code=order.ts_code, qty=PLENTY, sellable_qty=PLENTY)
    return check_order_codes(order, q, cap, holding)


def test_a_plain_main_board_buy_is_approved() -> None:
    assert check(_buy(qty=100, price="10.00")) == []


@pytest.mark.parametrize(
    ("ts_code", "side", "qty", "expected"),
    [
        ("600000.SH", "buy", 150, ["lot_size"]),  # main board: lots of 100
        ("600000.SH", "buy", 200, []),
        ("600000.SH", "sell", 150, ["lot_size"]),  # an odd lot only as the whole position (here: far more held)
        ("300750.SZ", "buy", 250, ["lot_size"]),  # ChiNext: lots of 100 too
        ("688981.SH", "buy", 199, ["lot_size"]),  # STAR: at least 200 ...
        ("688981.SH", "buy", 200, []),
        ("688981.SH", "buy", 201, []),  # ... then steps of 1
        ("688981.SH", "sell", 201, []),
    ],
)
def test_lot_size_by_board(ts_code: str, side: str, qty: int, expected: list[str]) -> None:
    order = _buy(ts_code=ts_code, qty=qty, side=side)
    assert check(order) == expected


@pytest.mark.parametrize(("price", "expected"), [("10.005", ["price_tick"]), ("10.01", []), ("10.1", [])])
def test_price_must_lie_on_the_fen_tick(price: str, expected: list[str]) -> None:
    assert check(_buy(price=price)) == expected


@pytest.mark.parametrize(
    ("price", "expected"),
    [("11.00", []), ("11.01", ["price_limit"]), ("9.00", []), ("8.99", ["price_limit"])],
)
def test_price_limits_main_board_last_close_10(price: str, expected: list[str]) -> None:
    assert check(_buy(price=price)) == expected
    assert check(_buy(price=price, side="sell")) == expected  # limits bind both sides


@pytest.mark.parametrize(
    ("price", "expected"),
    [("10.50", []), ("10.51", ["price_limit"]), ("9.50", []), ("9.49", ["price_limit"])],
)
def test_price_limits_st_stock_last_close_10(price: str, expected: list[str]) -> None:
    # ST: 5% -> 10.50 / 9.50.
    st = _quote("600001.SH", is_st=True, limit_up=Decimal("10.50"), limit_down=Decimal("9.50"))
    assert check(_buy("600001.SH", price=price), st) == expected


def test_no_limits_on_a_session_without_them() -> None:
    # E.g. the first five days of a new listing: the data service sends null limits.
    ipo = _quote("688999.SH", limit_up=None, limit_down=None)
    assert check(_buy("688999.SH", qty=200, price="30.00"), ipo) == []


def test_limit_message_names_the_limit_and_the_session() -> None:
    [reason] = quote_checks(_buy(price="11.01"), _quote(), max_order_value=CAP)
    assert reason.message == "price 11.01 is above the limit-up price 11.00 of the session on 2025-01-02"


def test_order_value_cap_for_limit_orders() -> None:
    assert check(_buy(qty=100000, price="10.00")) == []  # 100,000 x 10.00 = 1,000,000.00: exactly the cap
    assert check(_buy(qty=100100, price="10.00")) == ["max_order_value"]  # 1,001,000.00
    _, [reason] = static_checks(_buy(qty=100100, price="10.00"), max_order_value=CAP)
    assert "1001000.00" in reason.message and "1000000.00" in reason.message


def test_order_value_cap_for_market_orders_uses_the_last_close() -> None:
    assert check(_buy(qty=100000, price=None)) == []  # 100,000 x 10.00 = 1,000,000.00
    assert check(_buy(qty=100100, price=None)) == ["max_order_value"]
    # Same order on a stock that last closed at 9.99: 100,100 x 9.99 = 999,999.00 -> under the cap.
    cheaper = _quote(last_close=Decimal("9.99"), limit_up=Decimal("10.99"), limit_down=Decimal("8.99"))
    assert check(_buy(qty=100100, price=None), cheaper) == []


def test_invalid_codes() -> None:
    assert check_order_codes(_buy("000300.SH"), None) == ["invalid_ts_code"]  # an index code on SH, not a stock
    assert check_order_codes(_buy("ABC"), None) == ["invalid_ts_code"]
    # A bad code does not hide the other static reasons.
    assert check_order_codes(_buy("510300.SH", qty=150, price="3.005"), None) == ["invalid_ts_code", "price_tick"]


def test_unknown_and_suspended_securities() -> None:
    assert check_order_codes(_buy("600999.SH"), None) == ["unknown_security"]
    halted = _quote(suspended=True)
    assert check(_buy(), halted) == ["suspended"]
    never_traded = _quote(suspended=True, last_close=None, limit_up=None, limit_down=None)
    assert check(_buy(price=None), never_traded) == ["suspended", "max_order_value"]


def test_all_reasons_are_collected() -> None:
    # 150 shares (lot), 11.005 (tick, and above 11.00), on a suspended stock.
    order = _buy(qty=150, price="11.005")
    assert check(order, _quote(suspended=True)) == ["lot_size", "price_tick", "suspended", "price_limit"]


def test_static_checks_need_no_quote() -> None:
    security, reasons = static_checks(_buy("688981.SH", qty=199, price="50.00"), max_order_value=CAP)
    assert security is not None and security.board.value == "star"
    assert [r.code.value for r in reasons] == ["lot_size"]


def _held(qty: int, sellable: int, ts_code: str = "600000.SH") -> Holding:
    return Holding(ts_code=ts_code, qty=qty, sellable_qty=sellable)


def test_a_sell_without_a_position_is_insufficient() -> None:
    [reason] = position_checks(_buy(qty=1000, side="sell"), parse_ts_code("600000.SH"), None)
    assert reason.code.value == "insufficient_position"
    assert "cannot sell 1000 shares of 600000.SH: 0 sellable now (held 0;" in reason.message


@pytest.mark.parametrize(
    ("held", "sellable", "qty", "expected"),
    [
        (1000, 1000, 1000, []),
        (1000, 1000, 1100, ["insufficient_position"]),
        (1500, 1000, 1100, ["insufficient_position"]),  # 500 bought today (T+1)
        (1000, 0, 100, ["insufficient_position"]),  # all bought today
        (150, 150, 150, []),  # the odd lot as the whole sellable position
        (150, 150, 50, ["lot_size"]),  # part of an odd lot
        (150, 150, 100, []),  # a whole lot out of 150
        (250, 150, 150, []),  # the whole of what is sellable today
    ],
)
def test_sells_against_the_position(held: int, sellable: int, qty: int, expected: list[str]) -> None:
    assert check(_buy(qty=qty, side="sell"), holding=_held(held, sellable)) == expected


def test_insufficient_position_message_names_both_numbers() -> None:
    [reason] = position_checks(_buy(qty=1100, side="sell"), parse_ts_code("600000.SH"), _held(1500, 1000))
    assert "cannot sell 1100 shares of 600000.SH: 1000 sellable now (held 1500;" in reason.message


def test_star_odd_lot_sell_closes_the_position() -> None:
    # STAR: sells below 200 shares only as the whole position.
    star = _quote("688981.SH", last_close=Decimal("50.00"), limit_up=Decimal("60.00"), limit_down=Decimal("40.00"))
    order = _buy("688981.SH", qty=150, price="50.00", side="sell")
    assert check(order, star, holding=_held(150, 150, "688981.SH")) == []
    assert check(order, star, holding=_held(300, 300, "688981.SH")) == ["lot_size"]


def test_buys_ignore_the_position() -> None:
    # No cash ledger yet: a buy is not checked against what the account holds or can pay.
    assert check(_buy(qty=100), holding=None) == []


def test_a_market_buy_without_a_limit_up_has_no_price_cap() -> None:
    # A session without price limits: nothing to reserve cash at, however much cash there is. Execution answers
    # the same code (price_cap_unknown).
    ipo = _quote("688999.SH", limit_up=None, limit_down=None)
    order = OrderIntent("688999.SH", OrderSide.BUY, OrderType.MARKET, 200, None)
    [reason] = cash_checks(order, ipo, Decimal("99999999"), trade_date=date(2025, 1, 2))
    assert reason.code is ReasonCode.PRICE_CAP_UNKNOWN
    assert reason.message == (
        "a market buy of 688999.SH reserves cash at the limit-up price and its next session has no price limit: "
        "place a limit order"
    )


def test_the_limits_of_another_session_are_not_checked_against() -> None:
    """On the real clock: an order of 2024-03-05 placed while the latest quote still carries 2024-03-04's limits
    (2024-03-04's bars are not in) is refused with limits_unknown; with 2024-03-05's limits it passes this check."""
    from shared.platform.clock import OrderSession, session_close

    session = OrderSession(date(2024, 3, 5), session_close(date(2024, 3, 4)), date(2024, 3, 4))
    order = OrderIntent("600000.SH", OrderSide.BUY, OrderType.LIMIT, 100, Decimal("10.50"))
    stale = _limits_quote(date(2024, 3, 4))
    [reason] = session_limits_checks(order, stale, session)
    assert reason.code is ReasonCode.LIMITS_UNKNOWN
    assert reason.message == (
        "the price limits of 600000.SH on session 2024-03-05, which the order is for, are not known until the close "
        "of 2024-03-04 is stored (the data service's latest quote has the limits of 2024-03-04); place it again once "
        "those bars are in"
    )
    assert session_limits_checks(order, _limits_quote(date(2024, 3, 5)), session) == []
    assert session_limits_checks(order, None, session) == []  # an unknown security: refused for that elsewhere


def _limits_quote(next_trade_date: date) -> Quote:
    return Quote(
        ts_code="600000.SH", name="x", board=Board.MAIN, is_st=False, last_trade_date=next_trade_date,
        last_close=Decimal("10.00"), next_trade_date=next_trade_date, suspended=False,
        limit_up=Decimal("11.00"), limit_down=Decimal("9.00"),
    )  # fmt: skip


# A STAR stock that closed at 50.00: the next session's limits are 50.00 x 1.2 = 60.00 and 50.00 x 0.8 = 40.00.
STAR_50 = dict(last_close=Decimal("50.00"), limit_up=Decimal("60.00"), limit_down=Decimal("40.00"), board=Board.STAR)


def _star_market(side: str, protection: str) -> OrderIntent:
    return OrderIntent("688981.SH", OrderSide(side), OrderType.MARKET, 200, Decimal(protection))


@pytest.mark.parametrize(
    ("side", "protection", "expected"),
    [
        ("buy", "60.00", []),  # at the limit-up: the band's top
        ("buy", "60.01", ["price_limit"]),
        ("buy", "99999", ["price_limit"]),
        ("sell", "40.00", []),  # at the limit-down: the band's bottom
        ("sell", "39.99", ["price_limit"]),
        ("sell", "0.01", ["price_limit"]),
        ("buy", "50.005", ["price_tick"]),  # off the 0.01 tick (inside the band)
        ("sell", "55.123", ["price_tick"]),
    ],
)
def test_a_star_market_orders_protection_price_is_checked_as_a_limit_price(
    side: str, protection: str, expected: list[str]
) -> None:
    star = _quote("688981.SH", **STAR_50)
    assert check(_star_market(side, protection), star) == expected


def test_a_protection_price_outside_the_band_names_it() -> None:
    star = _quote("688981.SH", **STAR_50)
    [reason] = quote_checks(_star_market("sell", "0.01"), star, max_order_value=CAP)
    assert reason.message == "protection price 0.01 is below the limit-down price 40.00 of the session on 2025-01-02"
    _, [tick] = static_checks(_star_market("buy", "50.005"), max_order_value=CAP)
    assert tick.message == "protection price 50.005 is not on the 0.01 tick"


def test_a_star_protection_price_on_a_session_without_limits_is_only_tick_checked() -> None:
    # The first five sessions of a STAR listing have no price limits: no band to check against.
    ipo = _quote("688999.SH", last_close=Decimal("50.00"), limit_up=None, limit_down=None, board=Board.STAR)
    order = OrderIntent("688999.SH", OrderSide.SELL, OrderType.MARKET, 200, Decimal("0.01"))
    assert check(order, ipo) == []
