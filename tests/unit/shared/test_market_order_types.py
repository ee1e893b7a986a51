"""The exchanges' market order types against a hand-built book (`match_market_on_book`, the paper broker's arrival
matching on quotes) and the order-type table (`shared.core.market.order_types`: the types per exchange, MiniQMT's
codes, the request checks). Every expected fill is worked out by hand in its comment."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.core.domain import OrderType
from shared.core.market.matching import BookFill, MarketMatch, match_market_on_book
from shared.core.market.order_types import (
    MARKET_TYPES,
    QMT_PRICE_TYPES,
    order_type_error,
    qmt_price_type,
    time_in_force_error,
)

# a stock quoted around 10.00, (price fen, shares) best first; a sixth ask level to show where "five" stops
ASKS = [(1001, 300), (1002, 500), (1003, 1000), (1004, 200), (1005, 1000), (1006, 9000)]
BIDS = [(1000, 400), (999, 100), (998, 2000), (997, 100), (996, 100)]


def buy(market_type: str, qty: int, **kw: object) -> MarketMatch:
    return match_market_on_book(market_type, side="buy", qty=qty, levels=ASKS, own_levels=BIDS, **kw)  # type: ignore[arg-type]


def sell(market_type: str, qty: int, **kw: object) -> MarketMatch:
    return match_market_on_book(market_type, side="sell", qty=qty, levels=BIDS, own_levels=ASKS, **kw)  # type: ignore[arg-type]


# --- best five then cancel (SH 42, SZ 47) ----------------------------------------------------------------------------
def test_best5_cancel_takes_five_levels_and_cancels_the_rest() -> None:
    # 4,000: 300 @10.01 + 500 @10.02 + 1000 @10.03 + 200 @10.04 + 1000 @10.05 = 3,000 from five levels; the sixth
    # (10.06) is not taken; 1,000 cancelled
    got = buy("best5_cancel", 4000)
    assert [f.qty for f in got.fills] == [300, 500, 1000, 200, 1000]
    assert (got.rest_price_fen, got.why) == (None, "no_liquidity")


def test_best5_cancel_filled_in_full_leaves_nothing() -> None:
    # 700: 300 @10.01 + 400 @10.02
    got = buy("best5_cancel", 700)
    assert got == MarketMatch((BookFill(0, 1001, 300), BookFill(1, 1002, 400)), None, "")


# --- best five then limit (SH 43) ----------------------------------------------------------------------------------
def test_best5_limit_rests_the_remainder_at_its_last_fill_price() -> None:
    # 4,000: 3,000 from five levels (as above), the last at 10.05; 1,000 rest as a limit buy at 10.05
    got = buy("best5_limit", 4000)
    assert sum(f.qty for f in got.fills) == 3000
    assert (got.rest_price_fen, got.why) == (1005, "")


def test_best5_limit_without_a_fill_rests_at_the_best_own_side_price() -> None:
    # no asks at all (a sealed limit-down... for a buy: nothing to take): it rests at the best bid, 10.00
    got = match_market_on_book("best5_limit", side="buy", qty=500, levels=[], own_levels=BIDS)
    assert got == MarketMatch((), 1000, "")
    # and with no own side either it is cancelled
    gone = match_market_on_book("best5_limit", side="buy", qty=500, levels=[], own_levels=[])
    assert gone == MarketMatch((), None, "no_liquidity")


# --- counterparty best (44) -----------------------------------------------------------------------------------------
def test_counterparty_best_takes_the_best_opposite_level_and_rests_there() -> None:
    # a limit at the best ask 10.01: takes its 300; 700 rest at 10.01 (10.02 is above its price)
    got = buy("counterparty_best", 1000)
    assert got == MarketMatch((BookFill(0, 1001, 300),), 1001, "")
    # a sell: a limit at the best bid 10.00: takes its 400, 100 rest at 10.00
    assert sell("counterparty_best", 500) == MarketMatch((BookFill(0, 1000, 400),), 1000, "")


def test_counterparty_best_with_no_opposite_side_is_cancelled() -> None:
    got = match_market_on_book("counterparty_best", side="buy", qty=100, levels=[], own_levels=BIDS)
    assert got == MarketMatch((), None, "no_counterparty")


def test_counterparty_best_skips_a_level_earlier_fills_on_the_quote_emptied() -> None:
    # an earlier order took all 300 at 10.01: the best ask left is 10.02 (500): 500 fill, 100 rest at 10.02
    got = buy("counterparty_best", 600, consumed={1001: 300})
    assert got == MarketMatch((BookFill(1, 1002, 500),), 1002, "")


# --- own best (45) --------------------------------------------------------------------------------------------------
def test_own_best_rests_whole_at_the_best_own_side_price() -> None:
    # a buy at the best bid 10.00 does not reach the best ask 10.01: nothing fills, 1,000 rest at 10.00
    assert buy("own_best", 1000) == MarketMatch((), 1000, "")
    # a sell at the best ask 10.01
    assert sell("own_best", 1000) == MarketMatch((), 1001, "")


def test_own_best_with_no_own_side_is_cancelled() -> None:
    got = match_market_on_book("own_best", side="buy", qty=100, levels=ASKS, own_levels=[])
    assert got == MarketMatch((), None, "no_own_side")


# --- immediate or cancel (SZ 46) ------------------------------------------------------------------------------------
def test_ioc_takes_every_level_shown_and_cancels_the_rest() -> None:
    # 13,000: all six levels shown = 300 + 500 + 1000 + 200 + 1000 + 9000 = 12,000; 1,000 cancelled
    got = buy("ioc", 13000)
    assert sum(f.qty for f in got.fills) == 12000
    assert (got.rest_price_fen, got.why) == (None, "no_liquidity")


# --- fill or kill (SZ 48) -------------------------------------------------------------------------------------------
def test_fok_that_cannot_fill_in_full_fills_nothing() -> None:
    # a sell of 3,000: the bids hold 400 + 100 + 2000 + 100 + 100 = 2,700 < 3,000: nothing, cancelled
    assert sell("fok", 3000) == MarketMatch((), None, "fok_not_filled")


def test_fok_that_can_fill_in_full_fills_all() -> None:
    # a sell of 2,500: 400 @10.00 + 100 @9.99 + 2000 @9.98 = 2,500
    got = sell("fok", 2500)
    assert got == MarketMatch((BookFill(0, 1000, 400), BookFill(1, 999, 100), BookFill(2, 998, 2000)), None, "")


# --- STAR protection price ------------------------------------------------------------------------------------------
def test_a_protection_price_bounds_the_fills_and_the_resting_price() -> None:
    # best5_limit buy of 1,000 protected at 10.02: 300 @10.01 + 500 @10.02; 10.03 is above it; 200 rest at 10.02
    got = buy("best5_limit", 1000, protection_fen=1002, lot_step=1)
    assert got == MarketMatch((BookFill(0, 1001, 300), BookFill(1, 1002, 500)), 1002, "")
    # best5_cancel sell of 1,000 protected at 9.99: 400 @10.00 + 100 @9.99; 500 cancelled
    cut = sell("best5_cancel", 1000, protection_fen=999, lot_step=1)
    assert cut == MarketMatch((BookFill(0, 1000, 400), BookFill(1, 999, 100)), None, "no_liquidity")
    # counterparty best buy protected below the best ask (10.00 < 10.01): rests at 10.00, never above its cap
    assert buy("counterparty_best", 300, protection_fen=1000, lot_step=1) == MarketMatch((), 1000, "")


# --- the table ------------------------------------------------------------------------------------------------------
# MiniQMT's price types per exchange, as ../shared/qmt.md lists them: 42 best-5 then cancel (SH, BJ); 43 best-5 then
# limit (SH, BJ); 44 counterparty best (SH, SZ, BJ); 45 own best (SH, SZ, BJ); 46 IOC (SZ); 47 best-5 then cancel
# (SZ); 48 FOK (SZ).
QMT_MD = {
    ("600000.SH", "best5_cancel"): 42,
    ("600000.SH", "best5_limit"): 43,
    ("600000.SH", "counterparty_best"): 44,
    ("600000.SH", "own_best"): 45,
    ("000001.SZ", "counterparty_best"): 44,
    ("000001.SZ", "own_best"): 45,
    ("000001.SZ", "ioc"): 46,
    ("000001.SZ", "best5_cancel"): 47,
    ("000001.SZ", "fok"): 48,
    ("830799.BJ", "best5_cancel"): 42,
    ("830799.BJ", "best5_limit"): 43,
    ("830799.BJ", "counterparty_best"): 44,
    ("830799.BJ", "own_best"): 45,
}


@pytest.mark.parametrize(("ts_code", "market_type"), sorted(QMT_MD), ids=lambda v: str(v))
def test_each_type_maps_to_the_miniqmt_code_of_qmt_md(ts_code: str, market_type: str) -> None:
    assert qmt_price_type(ts_code, market_type) == QMT_MD[(ts_code, market_type)]


def test_the_table_holds_exactly_the_types_of_qmt_md() -> None:
    held = {(ex, t) for ex, codes in QMT_PRICE_TYPES.items() for t in codes}
    assert held == {(code.rsplit(".", 1)[1], t) for code, t in QMT_MD}
    assert MARKET_TYPES["SZ"] == {"counterparty_best", "own_best", "ioc", "best5_cancel", "fok"}


def test_the_bridge_accepts_every_code_the_adapter_sends_on_its_exchange() -> None:
    from bridge.qmt import protocol

    for (ts_code, _), code in QMT_MD.items():
        assert ts_code.rsplit(".", 1)[1] in protocol.MARKET_PRICE_TYPES[code]


@pytest.mark.parametrize(
    ("ts_code", "market_type"),
    [("600000.SH", "fok"), ("600000.SH", "ioc"), ("000001.SZ", "best5_limit"), ("830799.BJ", "fok"),
     ("600000.SH", "bogus")],
    ids=lambda v: str(v),
)  # fmt: skip
def test_a_type_the_exchange_does_not_take_is_market_type_invalid(ts_code: str, market_type: str) -> None:
    error = order_type_error(ts_code, OrderType.MARKET, None, market_type, "day")
    assert error is not None
    assert (error.code, error.field) == ("market_type_invalid", "market_type")
    with pytest.raises(ValueError):
        qmt_price_type(ts_code, market_type)


def test_the_request_checks() -> None:
    # a market order without a type: counterparty best, valid everywhere
    assert order_type_error("600000.SH", OrderType.MARKET, None, None, "day") is None
    # a limit order naming a market type
    limit_typed = order_type_error("600000.SH", OrderType.LIMIT, Decimal("10"), "best5_cancel", "day")
    assert limit_typed is not None and limit_typed.code == "market_type_invalid"
    # a STAR market order needs its protection price; with one it passes
    bare = order_type_error("688001.SH", OrderType.MARKET, None, "best5_cancel", "day")
    assert bare is not None and (bare.code, bare.field) == ("protection_price_required", "price")
    assert order_type_error("688001.SH", OrderType.MARKET, Decimal("50.00"), "best5_cancel", "day") is None
    # time in force: day only; a limit IOC/FOK does not exist on the exchanges
    for tif in ("ioc", "fok", "gtc"):
        for order_type in OrderType:
            error = time_in_force_error(order_type, tif)
            assert error is not None and (error.code, error.field) == ("time_in_force_unsupported", "time_in_force")
    assert time_in_force_error(OrderType.LIMIT, "day") is None
