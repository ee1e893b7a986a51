"""An order against a quote's book (`match_on_book`, the paper broker with LH_PAPER_FILLS=quotes): levels walked best
first, at most the volume left at each, within the order's limit, its price cap and the day's limits, in whole lots
but for the odd shares of a sell, which go with its last part. Every expected fill is worked out by hand."""

from __future__ import annotations

import pytest

from shared.core.market.matching import BookFill, FillRules, match_on_book

# asks of a stock quoted around 10.00 (fen, shares), best first
ASKS = [(1001, 300), (1002, 500), (1003, 1000), (1004, 200), (1005, 5000)]
BIDS = [(1000, 400), (999, 100), (998, 2000), (997, 100), (996, 100)]


def test_a_limit_buy_takes_the_asks_up_to_its_price_at_each_levels_price_and_volume() -> None:
    # 1,000 at 10.02: 300 at 10.01, then 500 at 10.02; 10.03 is above its limit: 200 rest
    fills = match_on_book(side="buy", qty=1000, limit_price_fen=1002, levels=ASKS)
    assert fills == (BookFill(0, 1001, 300), BookFill(1, 1002, 500))


def test_a_limit_buy_below_the_best_ask_takes_nothing() -> None:
    assert match_on_book(side="buy", qty=1000, limit_price_fen=1000, levels=ASKS) == ()


def test_a_limit_sell_takes_the_bids_down_to_its_price() -> None:
    # sell 600 at 9.99: 400 at 10.00, 100 at 9.99; 9.98 is below its limit: 100 rest
    fills = match_on_book(side="sell", qty=600, limit_price_fen=999, levels=BIDS)
    assert fills == (BookFill(0, 1000, 400), BookFill(1, 999, 100))


def test_volume_an_earlier_fill_took_from_the_same_quote_is_not_offered_again() -> None:
    # an earlier order took 300 at 10.01 (all of it) and 200 of the 500 at 10.02: 300 left there, then 10.03
    consumed = {1001: 300, 1002: 200}
    fills = match_on_book(side="buy", qty=800, limit_price_fen=1003, levels=ASKS, consumed=consumed)
    assert fills == (BookFill(1, 1002, 300), BookFill(2, 1003, 500))
    assert consumed == {1001: 300, 1002: 200}  # the caller's record is not changed here


def test_a_market_buy_walks_the_five_levels_but_never_above_its_price_cap() -> None:
    # no limit price; the cash was reserved at 10.03: 300 + 500 + 1000 = 1,800 of 3,000 (10.04 and 10.05 are above)
    fills = match_on_book(side="buy", qty=3000, limit_price_fen=None, levels=ASKS, price_cap_fen=1003)
    assert fills == (BookFill(0, 1001, 300), BookFill(1, 1002, 500), BookFill(2, 1003, 1000))
    # without a cap it takes what the five levels hold: 300 + 500 + 1000 + 200 + 1000 of the 5000 at 10.05
    walked = match_on_book(side="buy", qty=3000, limit_price_fen=None, levels=ASKS)
    assert [f.qty for f in walked] == [300, 500, 1000, 200, 1000]


def test_the_price_cap_binds_a_limit_buy_too() -> None:
    fills = match_on_book(side="buy", qty=1000, limit_price_fen=1005, levels=ASKS, price_cap_fen=1001)
    assert fills == (BookFill(0, 1001, 300),)


def test_a_buy_at_a_sealed_limit_up_finds_no_sellers_and_nothing_above_the_limit_is_taken() -> None:
    # limit-up 11.00: sealed (no asks at all) -> nothing; asks printed above the limit are never taken
    assert match_on_book(side="buy", qty=1000, limit_price_fen=1100, levels=[], up_limit=1100) == ()
    odd_book = [(1100, 200), (1101, 900)]
    fills = match_on_book(side="buy", qty=1000, limit_price_fen=None, levels=odd_book, up_limit=1100)
    assert fills == (BookFill(0, 1100, 200),)
    # a sell never goes below the limit-down (9.00)
    assert match_on_book(side="sell", qty=500, limit_price_fen=None, levels=[(899, 500)], down_limit=900) == ()
    # without price limits (FillRules(price_limits=False)) the 11.01 ask is taken
    free = match_on_book(side="buy", qty=1000, limit_price_fen=None, levels=odd_book, up_limit=1100,
                         rules=FillRules(price_limits=False))  # fmt: skip
    assert [f.qty for f in free] == [200, 800]


def test_a_buy_fills_in_whole_lots_of_its_board() -> None:
    # main board (lots of 100): 250 left at 10.01 gives 200; STAR (step 1) takes all 250
    book = [(1001, 250), (1002, 1000)]
    assert match_on_book(side="buy", qty=500, limit_price_fen=1001, levels=book) == (BookFill(0, 1001, 200),)
    star = match_on_book(side="buy", qty=500, limit_price_fen=1001, levels=book, lot_step=1)
    assert star == (BookFill(0, 1001, 250),)


def test_the_odd_shares_of_a_sell_go_only_with_its_last_part() -> None:
    # selling a whole position of 250 (two lots and 50 odd shares)
    book = [(1000, 120), (999, 1000)]
    # 120 at 10.00 gives one lot (100): the 50 odd shares wait for the part that completes the order
    fills = match_on_book(side="sell", qty=250, limit_price_fen=999, levels=book)
    assert fills == (BookFill(0, 1000, 100), BookFill(1, 999, 150))
    # only 120 on the book: 100 trade, 150 rest (the odd 50 never trade alone)
    assert match_on_book(side="sell", qty=250, limit_price_fen=1000, levels=book) == (BookFill(0, 1000, 100),)
    # 50 odd shares alone against 30: nothing (they go at once or not at all); against 60: all 50
    assert match_on_book(side="sell", qty=50, limit_price_fen=None, levels=[(1000, 30)]) == ()
    assert match_on_book(side="sell", qty=50, limit_price_fen=None, levels=[(1000, 60)]) == (BookFill(0, 1000, 50),)


def test_a_resting_order_takes_at_most_the_volume_traded_since_the_last_round_in_whole_lots() -> None:
    # a buy of 10,000 at 10.03 resting: the book shows 300 + 500 + 1,000 within its limit, but only 650 traded
    # since the previous round: 300 at 10.01, then 350 of 10.02's 500 rounded down to lots: 300
    fills = match_on_book(side="buy", qty=10_000, limit_price_fen=1003, levels=ASKS, most=650)
    assert fills == (BookFill(0, 1001, 300), BookFill(1, 1002, 300))
    # nothing traded: nothing fills, however deep the book
    assert match_on_book(side="buy", qty=10_000, limit_price_fen=1005, levels=ASKS, most=0) == ()
    # enough traded to complete the order: its last part fills in full
    assert match_on_book(side="buy", qty=200, limit_price_fen=1001, levels=ASKS, most=5000) == (BookFill(0, 1001, 200),)
    # a sell of a whole position of 250 with 200 traded: two lots, the odd 50 wait for a round that completes it
    assert match_on_book(side="sell", qty=250, limit_price_fen=999, levels=BIDS, most=200) == (BookFill(0, 1000, 200),)
    assert match_on_book(side="sell", qty=50, limit_price_fen=999, levels=BIDS, most=50) == (BookFill(0, 1000, 50),)


@pytest.mark.parametrize(("side", "qty"), [("hold", 100), ("buy", 0)])
def test_bad_orders_are_refused(side: str, qty: int) -> None:
    with pytest.raises(ValueError):
        match_on_book(side=side, qty=qty, limit_price_fen=None, levels=ASKS)
