"""The single-order matching (`match_order`) on hand-worked bars, and its agreement with the vectorised `size_orders`
the backtest engines use."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.domain.codes import InvalidTsCode
from shared.core.market.matching import (
    KIND_SHARES,
    NO_LIMIT_UP,
    REASON_CODES,
    REASONS,
    FillRules,
    Match,
    SessionBar,
    match_order,
    size_orders,
)
from shared.core.market.rules import lot_sizes

DAY = date(2024, 6, 3)
MAIN = (100, 100)
STAR = (200, 1)


def bar(
    open_: int, close: int | None = None, *, up: int | None = 1100, down: int | None = 900, **kw: Any
) -> SessionBar:
    """A bar of a stock whose previous close was 10.00 CNY (main-board band 9.00 - 11.00), 100,000 shares traded."""
    close = open_ if close is None else close
    fields: dict[str, Any] = {
        "trade_date": DAY,
        "open": open_,
        "high": max(open_, close),
        "low": min(open_, close),
        "close": close,
        "vol": 100_000,
        "amount_fen": 100_000 * (open_ + close) // 2,
        "up_limit": up,
        "down_limit": down,
    }
    fields.update(kw)
    return SessionBar(**fields)


def match(rules: FillRules, b: SessionBar | None, side: str, qty: int, limit: int | None = None, lots=MAIN) -> Match:
    return match_order(rules, b, side=side, qty=qty, limit_price_fen=limit, lot_min=lots[0], lot_step=lots[1])


BPS10 = FillRules(slippage="bps", slippage_amount=Decimal(10))


def test_a_buy_at_the_open_pays_10_bps_of_slippage_rounded_half_up_to_the_tick() -> None:
    # 15.00 x 1.001 = 15.015 -> 15.02 (half-up); 12.34 x 1.001 = 12.35234 -> 12.35
    assert match(BPS10, bar(1500, up=1650, down=1350), "buy", 300) == Match(300, 1502, "")
    assert match(BPS10, bar(1234, up=1357, down=1111), "buy", 100) == Match(100, 1235, "")


def test_a_sell_at_the_open_gets_10_bps_less_rounded_half_up_to_the_tick() -> None:
    # 15.00 x 0.999 = 14.985 -> 14.99 (half-up, not down to 14.98)
    assert match(BPS10, bar(1500, up=1650, down=1350), "sell", 300) == Match(300, 1499, "")


def test_slippage_in_ticks_moves_the_price_against_the_order() -> None:
    rules = FillRules(slippage="ticks", slippage_amount=Decimal(3))
    assert match(rules, bar(1000), "buy", 100) == Match(100, 1003, "")
    assert match(rules, bar(1000), "sell", 100) == Match(100, 997, "")


def test_the_fill_price_is_the_open_the_close_or_the_vwap_rounded_half_up() -> None:
    b = bar(1000, 1050, amount_fen=100_000 * 1023 + 50_000)  # 10.235 CNY a share on average -> 10.24
    assert match(FillRules(fill_price="open"), b, "buy", 100).price_fen == 1000
    assert match(FillRules(fill_price="close"), b, "buy", 100).price_fen == 1050
    assert match(FillRules(fill_price="vwap"), b, "buy", 100).price_fen == 1024
    b = bar(1000, 1050, amount_fen=100_000 * 1023 + 49_999)  # just under half a fen -> 10.23
    assert match(FillRules(fill_price="vwap"), b, "buy", 100).price_fen == 1023


def test_a_vwap_fill_on_a_bar_without_volume_does_not_trade() -> None:
    assert match(FillRules(fill_price="vwap"), bar(1000, vol=0, amount_fen=0), "buy", 100) == Match(0, 0, "no_volume")


def test_a_buy_on_a_bar_that_opens_at_limit_up_is_refused() -> None:
    assert match(FillRules(), bar(1100), "buy", 100) == Match(0, 0, "limit_up")
    # the sell side of the same bar trades (only a buy meets no seller at limit-up)
    assert match(FillRules(), bar(1100), "sell", 100) == Match(100, 1100, "")


def test_a_sell_on_a_bar_that_opens_at_limit_down_is_refused() -> None:
    assert match(FillRules(), bar(900), "sell", 100) == Match(0, 0, "limit_down")
    assert match(FillRules(), bar(900), "buy", 100) == Match(100, 900, "")


def test_without_the_price_limit_rule_a_limit_up_bar_trades() -> None:
    assert match(FillRules(price_limits=False), bar(1100), "buy", 100) == Match(100, 1100, "")


def test_a_slipped_price_is_clamped_into_the_days_band() -> None:
    ticks10 = FillRules(slippage="ticks", slippage_amount=Decimal(10))
    # 10.99 + 0.10 = 11.09, above the 11.00 limit-up: the exchange accepts no higher price that day
    assert match(ticks10, bar(1099), "buy", 100) == Match(100, 1100, "")
    # 9.01 - 0.10 = 8.91, below the 9.00 limit-down
    assert match(ticks10, bar(901), "sell", 100) == Match(100, 900, "")
    # no band that day (a new listing): the slipped price stands, but never below one tick
    assert match(ticks10, bar(1099, up=None, down=None), "buy", 100) == Match(100, 1109, "")
    assert match(ticks10, bar(5, up=None, down=None), "sell", 100) == Match(100, 1, "")


def test_lot_sizes_by_board() -> None:
    assert lot_sizes("600000.SH") == (100, 100)
    assert lot_sizes("300750.SZ") == (100, 100)
    assert lot_sizes("688981.SH") == (200, 1)
    assert lot_sizes("830799.BJ") == (100, 1)
    with pytest.raises(InvalidTsCode):
        lot_sizes("000300.XX")


def test_a_star_buy_takes_any_quantity_from_200_shares() -> None:
    assert match(FillRules(), bar(1000), "buy", 201, lots=STAR) == Match(201, 1000, "")
    assert match(FillRules(), bar(1000), "buy", 150, lots=STAR) == Match(0, 0, "bad_lot")
    # on the main board 201 is not a lot
    assert match(FillRules(), bar(1000), "buy", 201) == Match(0, 0, "bad_lot")
    # the lot rules off (a study): any quantity
    assert match(FillRules(lots=False), bar(1000), "buy", 150, lots=STAR) == Match(150, 1000, "")


def test_the_volume_cap_rounds_down_to_a_lot() -> None:
    quarter = FillRules(volume_cap=Decimal("0.25"))
    b = bar(1000, vol=1_234, amount_fen=1_234 * 1000)
    # 25% of 1,234 shares = 308.5 -> 308, down to the 100-share lot: 300
    assert match(quarter, b, "buy", 500) == Match(300, 1000, "volume_cap")
    # a STAR stock steps by one share above 200: 308
    assert match(quarter, b, "buy", 500, lots=STAR) == Match(308, 1000, "volume_cap")
    # under the cap: all of it, no reason
    assert match(quarter, b, "buy", 300) == Match(300, 1000, "")
    # a cap below one lot: nothing trades, and the cap is the reason
    assert match(quarter, bar(1000, vol=396, amount_fen=396_000), "buy", 100) == Match(0, 0, "volume_cap")


def test_a_limit_buy_whose_limit_is_below_the_execution_price_does_not_trade() -> None:
    # the open is 10.00 but the buy pays 10.01 after 10 bps: a 10.00 limit is not reached
    assert match(BPS10, bar(1000), "buy", 100, limit=1000) == Match(0, 0, "limit_not_reached")
    assert match(BPS10, bar(1000), "buy", 100, limit=1001) == Match(100, 1001, "")
    # a sell gets 9.99: a 10.00 limit is not reached, 9.99 is
    assert match(BPS10, bar(1000), "sell", 100, limit=1000) == Match(0, 0, "limit_not_reached")
    assert match(BPS10, bar(1000), "sell", 100, limit=999) == Match(100, 999, "")


def test_a_limit_not_reached_wins_over_a_volume_cap() -> None:
    rules = FillRules(volume_cap=Decimal("0.25"))
    b = bar(1000, vol=1_234, amount_fen=1_234 * 1000)
    assert match(rules, b, "buy", 500, limit=999) == Match(0, 0, "limit_not_reached")


def test_no_bar_means_suspended() -> None:
    assert match(FillRules(), None, "buy", 100) == Match(0, 0, "suspended")
    assert match(FillRules(), None, "sell", 100, limit=1000) == Match(0, 0, "suspended")


def test_an_odd_lot_sell_is_taken_as_the_whole_position() -> None:
    assert match(FillRules(), bar(1000), "sell", 37) == Match(37, 1000, "")


def test_a_bad_side_or_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="side"):
        match(FillRules(), bar(1000), "short", 100)
    with pytest.raises(ValueError, match="qty"):
        match(FillRules(), bar(1000), "buy", 0)


def test_every_reason_code_has_a_description() -> None:
    assert len(REASON_CODES) == len(REASONS)
    assert len(set(REASON_CODES)) == len(REASON_CODES)


# --- agreement with the vectorised sizing ------------------------------------------------------------------------------
rules_st = st.builds(
    FillRules,
    fill_price=st.sampled_from(["open", "close", "vwap"]),
    slippage=st.sampled_from(["none", "bps", "ticks"]),
    slippage_amount=st.integers(0, 80).map(Decimal),
    volume_cap=st.one_of(st.none(), st.sampled_from([Decimal("0.01"), Decimal("0.25"), Decimal("0.5"), Decimal(1)])),
    price_limits=st.booleans(),
    lots=st.booleans(),
)


@st.composite
def bars_st(draw: st.DrawFn) -> SessionBar:
    pre = draw(st.integers(100, 5_000))
    limited = draw(st.booleans())
    up, down = (pre * 11 + 5) // 10, (pre * 9 + 5) // 10
    # prices inside and (bad data) outside the band, so the unbanded path is drawn too
    price = st.integers(max(1, down - 20), up + 20)
    open_, close = draw(price), draw(price)
    vol = draw(st.integers(0, 5_000))
    vwap = draw(st.integers(max(1, down), up))
    return SessionBar(
        DAY, open_, max(open_, close), min(open_, close), close, vol, vol * vwap + draw(st.integers(0, 99)),
        up if limited else None, down if limited else None,
    )  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    rules=rules_st,
    b=bars_st(),
    side=st.sampled_from(["buy", "sell"]),
    qty=st.integers(1, 3_000),
    lots=st.sampled_from([MAIN, STAR, (100, 1)]),
    limit=st.one_of(st.none(), st.integers(1, 6_000)),
)
def test_match_order_is_what_size_orders_gives_one_explicit_order(
    rules: FillRules, b: SessionBar, side: str, qty: int, lots: tuple[int, int], limit: int | None
) -> None:
    if rules.slippage == "none":
        rules = FillRules(**{**rules.__dict__, "slippage_amount": Decimal(0)})
    got = match(rules, b, side, qty, limit, lots)

    # the engine's way: a one-symbol day, the order as a shares order against a position that covers a sell
    raw = {"open": b.open, "close": b.close, "vwap": (2 * b.amount_fen + b.vol) // (2 * b.vol) if b.vol else 0}
    px_row = np.array([raw[rules.fill_price]], dtype=np.int64)
    if px_row[0] == 0:
        assert got == Match(0, 0, "no_volume")
        return
    lot_min, lot_step = lots if rules.lots else (1, 1)
    held = np.array([qty if side == "sell" else 0], dtype=np.int64)
    q, px, buy, sell, reason, _ = size_orders(
        rules,
        px_row,
        np.array([NO_LIMIT_UP if b.up_limit is None else b.up_limit], dtype=np.int64),
        np.array([0 if b.down_limit is None else b.down_limit], dtype=np.int64),
        np.array([float(b.vol)]),
        np.array([lot_min], dtype=np.int64),
        np.array([lot_step], dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.array([KIND_SHARES], dtype=np.int64),
        np.array([qty if side == "buy" else -qty], dtype=np.int64),
        held,
        held,
    )
    assert bool(buy[0]) is (side == "buy") and bool(sell[0]) is (side == "sell")
    engine_qty, engine_px, why = int(q[0]), int(px[0]), REASON_CODES[int(reason[0])]
    limit_missed = limit is not None and (engine_px > limit if side == "buy" else engine_px < limit)
    if why not in ("", "volume_cap") and engine_qty == 0:
        assert got == Match(0, 0, why)
    elif limit_missed:
        assert got == Match(0, 0, "limit_not_reached")
    elif engine_qty == 0:
        assert got == Match(0, 0, why)
    else:
        assert got == Match(engine_qty, engine_px, why)
        # and what a user checks on any fill: on the tick, inside the band when the print was, never below a tick
        assert got.price_fen >= 1
        if rules.price_limits and b.up_limit is not None and b.down_limit is not None:
            printed = int(px_row[0])
            if b.down_limit <= printed <= b.up_limit:
                assert b.down_limit <= got.price_fen <= b.up_limit
