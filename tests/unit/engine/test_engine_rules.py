"""The A-share rules as the engine enforces them, each on a scenario worked out by hand."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest

from tests.unit.engine.support import Script, bars, orders, run, trades

A = "600000.SH"  # main board
STAR = "688001.SH"


def flat(code: str, days: list[str], price: float = 10.0) -> list[tuple[str, str, float, float]]:
    return [(code, d, price, price) for d in days]


DAYS = ["20240102", "20240103", "20240104", "20240105", "20240108", "20240109"]


def test_a_buy_signal_before_a_limit_up_day_does_not_fill_and_limit_down_blocks_a_sell() -> None:
    frame = bars(
        [
            (A, "20240102", 10.00, 10.00),
            (A, "20240103", 11.00, 11.00),  # opens at the limit-up: 10.00 x 1.1 = 11.00
            (A, "20240104", 11.50, 11.50),  # limit-up 12.10: a buy fills
            (A, "20240105", 11.50, 10.35),
            (A, "20240108", 9.32, 9.50),  # limit-down 10.35 x 0.9 = 9.315 -> 9.32 (half-up): no sell
            (A, "20240109", 9.60, 9.60),
        ]
    )
    s = Script({0: lambda c: c.buy(A, 100), 1: lambda c: c.buy(A, 100), 3: lambda c: c.sell(A, 100)})
    result = run(s, frame)
    o = orders(result)
    assert (o[0]["status"], o[0]["filled_qty"], o[0]["settled"]) == ("cancelled", 0, "2024-01-03")
    assert o[0]["reason"].startswith("limit-up")
    assert (o[1]["status"], o[1]["settled"]) == ("filled", "2024-01-04")
    assert [(t["trade_date"], t["side"], t["qty"], t["price"]) for t in trades(result)] == [
        ("2024-01-04", "buy", 100, "11.50")
    ]
    assert (o[2]["status"], o[2]["settled"]) == ("cancelled", "2024-01-08")
    assert o[2]["reason"].startswith("limit-down")
    assert result.positions[-1, 0] == 100


def test_st_limits_from_the_is_st_column_and_from_the_config() -> None:
    rows = [(A, "20240102", 10.00, 10.00), (A, "20240103", 10.50, 10.50), (A, "20240104", 10.60, 10.60)]
    buy_day0 = {0: lambda c: c.buy(A, 100)}
    # ST: 5% -> limit-up 10.50 on 01-03: no fill
    st = run(Script(buy_day0), bars(rows, is_st=[True, True, True]))
    assert orders(st)[0]["reason"].startswith("limit-up")
    st2 = run(Script(buy_day0), bars(rows), st_codes=frozenset({A}))
    assert orders(st2)[0]["reason"].startswith("limit-up")
    # not ST: 10% -> limit-up 11.00, 10.50 fills
    plain = run(Script(buy_day0), bars(rows))
    assert orders(plain)[0]["status"] == "filled"
    # Tushare's stk_limit columns win over the computed limits
    given = run(Script(buy_day0), bars(rows, up_limit=[11.0, 10.5, 11.55], down_limit=[9.0, 9.0, 9.45]))
    assert orders(given)[0]["reason"].startswith("limit-up")


def test_ipo_days_without_limits_when_list_dates_are_given() -> None:
    # main board after the 2023-04-10 reform: no limits on the first 5 days; this IPO opens day 2 at +50%
    rows = [(A, "20240102", 10.00, 10.00), (A, "20240103", 15.00, 15.00), (A, "20240104", 15.10, 15.10)]
    buy = {0: lambda c: c.buy(A, 100)}
    from datetime import date

    listed = run(Script(buy), bars(rows), list_dates={A: date(2024, 1, 2)})
    assert trades(listed)[0]["price"] == "15.00"
    assert listed.warnings == [] and listed.data_report["outside_limits"] == {"count": 0, "bars": []}
    # without the list date the computed band (limit-up 11.00) contradicts the 15.00 open: the print wins, and the
    # run says which bar it could not square with its band
    unlisted = run(Script(buy), bars(rows))
    assert trades(unlisted)[0]["price"] == "15.00"
    assert [w.split(":")[0] for w in unlisted.warnings] == [f"{A} 2024-01-03"]


def test_shares_bought_today_are_not_sellable_today() -> None:
    frame = bars(flat(A, DAYS[:4]))

    def day0(c):  # type: ignore[no-untyped-def]
        return c.position(A), c.sellable_qty(A), int(c.sellable[0])

    def day1(c):  # type: ignore[no-untyped-def]
        seen = (c.position(A), c.sellable_qty(A))
        c.sell(A, 100)
        return seen

    s = Script({-1: lambda c: (c.buy(A, 100), c.sell(A, 100)), 0: day0, 1: day1})
    result = run(s, frame)
    o = orders(result)
    # both orders meet on day 0: the buy fills at the open, the sell of the same shares is refused (T+1)
    assert (o[0]["status"], o[0]["settled"]) == ("filled", "2024-01-02")
    assert (o[1]["status"], o[1]["filled_qty"]) == ("cancelled", 0)
    assert o[1]["reason"].startswith("T+1")
    assert s.seen[0] == (100, 0, 0)  # held, not sellable on the day it was bought
    assert s.seen[1] == (100, 100)  # sellable the next trading day
    assert (o[2]["status"], o[2]["settled"]) == ("filled", "2024-01-04")
    assert list(result.positions[:, 0]) == [100, 100, 0, 0]


def test_a_small_orders_commission_hits_the_5_cny_minimum() -> None:
    frame = bars(flat(A, DAYS[:2]))
    result = run(Script({-1: lambda c: (c.buy(A, 100), c.buy(A, 10_000))}), frame, initial_cash=Decimal("200000"))
    t = trades(result)
    # 100 x 10.00 = 1,000.00: commission 1,000 x 0.025% = 0.25 -> 5.00 (minimum); transfer 1,000 x 0.001% = 0.01
    assert (t[0]["amount"], t[0]["commission"], t[0]["transfer_fee"], t[0]["fees"]) == (
        "1000.00",
        "5.00",
        "0.01",
        "5.01",
    )
    # 10,000 x 10.00 = 100,000.00: commission 25.00 (above the minimum); transfer 1.00
    assert (t[1]["amount"], t[1]["commission"], t[1]["transfer_fee"]) == ("100000.00", "25.00", "1.00")
    # cash 200,000 - 1,005.01 - 100,026.00 = 98,968.99
    assert result.cash_fen[0] == 9_896_899


def test_stamp_duty_switches_on_2023_08_28() -> None:
    days = ["20230823", "20230824", "20230825", "20230828", "20230829"]
    frame = bars(flat(A, days, 50.0))
    s = Script({-1: lambda c: c.buy(A, 2000), 1: lambda c: c.sell(A, 1000), 2: lambda c: c.sell(A, 1000)})
    sells = [t for t in trades(run(s, frame)) if t["side"] == "sell"]
    # 1,000 x 50.00 = 50,000.00 each; commission 12.50, transfer 0.50
    # 2023-08-25 (Fri): stamp 0.1% = 50.00;   2023-08-28 (Mon): 0.05% = 25.00
    assert [(t["trade_date"], t["stamp_duty"], t["commission"], t["transfer_fee"]) for t in sells] == [
        ("2023-08-25", "50.00", "12.50", "0.50"),
        ("2023-08-28", "25.00", "12.50", "0.50"),
    ]


def test_odd_lots_only_when_selling_the_whole_position() -> None:
    # a 3-for-2 bonus issue (adj factor 1 -> 1.5) turns 100 shares into 150: an odd lot of 50
    frame = bars(
        [
            (A, "20240102", 15.00, 15.00),
            (A, "20240103", 10.00, 10.00, 10.00),
            (A, "20240104", 10.00, 10.00),
            (A, "20240105", 10.00, 10.00),
            (A, "20240108", 10.00, 10.00),
        ],
        adj_factor=[1.0, 1.5, 1.5, 1.5, 1.5],
    )
    s = Script(
        {
            -1: lambda c: c.buy(A, 100),
            1: lambda c: c.sell(A, 50),
            2: lambda c: c.sell(A, 100),
            3: lambda c: c.sell(A, 50),
        }
    )
    result = run(s, frame)
    o = orders(result)
    assert result.corporate_actions[0]["qty_after"] == 150
    assert (o[1]["status"], o[1]["filled_qty"]) == ("rejected", 0)  # 50 of 150: an odd lot, not the whole position
    assert "odd lots" in o[1]["reason"]
    assert (o[2]["status"], o[2]["filled_qty"]) == ("filled", 100)  # a round lot leaves 50
    assert (o[3]["status"], o[3]["filled_qty"]) == ("filled", 50)  # 50 of 50: the whole position, allowed
    assert list(result.positions[:, 0]) == [100, 150, 150, 50, 0]


def test_star_lots_at_least_200_then_steps_of_one() -> None:
    frame = bars(flat(STAR, DAYS[:3], 50.0))
    s = Script(
        {
            -1: lambda c: (c.buy(STAR, 150), c.order_value(STAR, 9_000), c.order_value(STAR, 12_345)),
            0: lambda c: (c.sell(STAR, 46), c.sell(STAR, 201)),
            1: lambda c: c.sell(STAR, 45),
        }
    )
    result = run(s, frame)
    o = orders(result)
    assert o[0]["status"] == "rejected"  # an explicit buy of 150 < 200
    assert (o[1]["status"], o[1]["reason"]) == ("cancelled", "below the smallest lot the board allows")  # 180 < 200
    assert (o[2]["status"], o[2]["filled_qty"]) == ("filled", 246)  # 12,345 / 50 = 246.9 -> 246, steps of 1
    assert o[3]["status"] == "rejected"  # 46 < 200 and not the whole position
    assert (o[4]["status"], o[4]["filled_qty"]) == ("filled", 201)  # >= 200, any number of shares: leaves 45
    assert (o[5]["status"], o[5]["filled_qty"]) == ("filled", 45)  # 45 < 200 but the whole position
    assert list(result.positions[:, 0]) == [246, 45, 0]


def test_volume_cap_limits_a_fill_to_a_fraction_of_the_bars_volume() -> None:
    frame = bars(flat(A, DAYS[:2]))
    frame["vol"] = 25.0  # lots: 2,500 shares
    result = run(Script({-1: lambda c: c.buy(A, 500)}), frame, volume_cap=Decimal("0.1"))
    o = orders(result)[0]
    # 10% of 2,500 = 250 shares -> 200 in lots of 100
    assert (o["status"], o["filled_qty"]) == ("partially_filled", 200)
    assert o["reason"].startswith("volume cap")


@pytest.mark.parametrize(
    ("slippage", "amount", "buy_price", "sell_price"),
    [
        ("bps", Decimal("10"), "10.06", "10.04"),  # 10.05 x 1.001 = 10.06005 -> 10.06; x 0.999 = 10.03995 -> 10.04
        ("ticks", Decimal("2"), "10.07", "10.03"),
        ("none", Decimal("0"), "10.05", "10.05"),
    ],
)
def test_slippage(slippage: str, amount: Decimal, buy_price: str, sell_price: str) -> None:
    frame = bars(flat(A, DAYS[:3], 10.05))
    s = Script({-1: lambda c: c.buy(A, 100), 0: lambda c: c.sell(A, 100)})
    t = trades(run(s, frame, slippage=slippage, slippage_amount=amount))
    assert [x["price"] for x in t] == [buy_price, sell_price]


def test_slipped_price_is_clipped_into_the_days_limits() -> None:
    frame = bars([(A, "20240102", 10.00, 10.00), (A, "20240103", 10.98, 10.98)])  # limit-up 11.00
    t = trades(run(Script({0: lambda c: c.buy(A, 100)}), frame, slippage="ticks", slippage_amount=Decimal("5")))
    assert t[0]["price"] == "11.00"  # 10.98 + 0.05 = 11.03 -> clipped to the limit-up


def test_an_open_printed_outside_its_computed_band_fills_at_the_open_and_the_bar_is_reported() -> None:
    # An ST stock (5%): pre_close 10.00 gives the band 9.50-10.50, yet the bar opens at 9.20 and trades 9.10-9.40,
    # as if the flag were wrong (a 10% band would allow it). A buy fills at the printed open 9.20, not at the
    # limit-down 9.50: 100 x 9.20 = 920.00. A sell on the next such bar (open 10.70 above the band 9.31-10.29 from
    # pre_close 9.80: 9.80 x 0.95 = 9.31, 9.80 x 1.05 = 10.29) fills at 10.70 instead of being clamped.
    frame = bars(
        [
            (A, "20240102", 10.00, 10.00),
            (A, "20240103", 9.20, 9.40),
            (A, "20240104", 9.40, 9.80),
            (A, "20240105", 10.70, 10.75),
        ]
    )
    s = Script({0: lambda c: c.buy(A, 100), 2: lambda c: c.sell(A, 100)})
    for config in ({"st_codes": frozenset({A})}, {"st_codes": frozenset({A}), "slippage": "ticks",
                                                 "slippage_amount": Decimal("3")}):  # fmt: skip
        result = run(s, frame, **config)
        slip = 3 if "slippage" in config else 0
        assert [(t["trade_date"], t["side"], t["price"]) for t in trades(result)] == [
            ("2024-01-03", "buy", f"{9.20 + slip / 100:.2f}"),
            ("2024-01-05", "sell", f"{10.70 - slip / 100:.2f}"),
        ]
        assert [o["status"] for o in orders(result)] == ["filled", "filled"]
        report = result.data_report["outside_limits"]
        assert report["count"] == 2
        assert [(b["ts_code"], b["trade_date"], b["fill_price"], b["down_limit"], b["up_limit"]) for b in
                report["bars"]] == [(A, "2024-01-03", "9.20", "9.50", "10.50"),
                                    (A, "2024-01-05", "10.70", "9.31", "10.29")]  # fmt: skip
        assert len(result.warnings) == 2
        assert result.warnings[0].startswith(f"{A} 2024-01-03: the open 9.20 is below the limit-down 9.50")
        assert result.warnings[1].startswith(f"{A} 2024-01-05: the open 10.70 is above the limit-up 10.29")
        assert "warnings" in json.loads(result.to_json())["data_report"]
    # the same bars without the ST flag are inside their 10% band: nothing to report, same fills
    plain = run(s, frame)
    assert [t["price"] for t in trades(plain)] == ["9.20", "10.70"]
    assert plain.warnings == [] and plain.data_report["outside_limits"]["count"] == 0
    # a print exactly at the limit is inside the band: the limit rules apply as before (no buy at the limit-up)
    at_limit = run(Script({0: lambda c: c.buy(A, 100)}), bars([(A, "20240102", 10.0, 10.0), (A, "20240103", 10.5, 10.5)]),
                   st_codes=frozenset({A}))  # fmt: skip
    assert orders(at_limit)[0]["reason"].startswith("limit-up") and at_limit.warnings == []


def test_cash_never_goes_negative_buys_shrink_to_what_the_cash_pays() -> None:
    frame = bars(flat(A, DAYS[:2]) + flat("600004.SH", DAYS[:2]))
    s = Script({-1: lambda c: (c.buy(A, 600), c.buy("600004.SH", 600))})
    result = run(s, frame, initial_cash=Decimal("10000"))
    o = orders(result)
    # first: 6,000.00 + 5.00 + 0.06 = 6,005.06 -> cash 3,994.94
    # second: 400 shares would cost 4,000 + 5.04 > 3,994.94 -> 300 shares: 3,000 + 5.00 + 0.03 = 3,005.03
    assert (o[0]["status"], o[0]["filled_qty"]) == ("filled", 600)
    assert (o[1]["status"], o[1]["filled_qty"]) == ("partially_filled", 300)
    assert o[1]["reason"].startswith("cash")
    assert result.cash_fen[0] == 98_991  # 3,994.94 - 3,005.03 = 989.91


@pytest.mark.parametrize(
    ("mode", "status", "fill_day"), [("wait", "filled", "2024-01-04"), ("cancel", "cancelled", None)]
)
def test_a_suspended_stocks_order_waits_or_is_cancelled(mode: str, status: str, fill_day: str | None) -> None:
    # 600000.SH has no bar on 2024-01-03 (suspended); 600004.SH trades every day
    frame = bars(
        [
            (A, "20240102", 10.0, 10.0),
            (A, "20240104", 10.2, 10.2),
            *flat("600004.SH", ["20240102", "20240103", "20240104"]),
        ]
    )
    result = run(Script({0: lambda c: c.buy(A, 100)}), frame, suspended_orders=mode)
    o = orders(result)[0]
    assert o["status"] == status
    if fill_day:
        assert [(t["trade_date"], t["price"]) for t in trades(result)] == [(fill_day, "10.20")]
    else:
        assert (o["settled"], o["reason"]) == ("2024-01-03", "suspended: no bar on the fill day")
    assert result.data_report["suspensions"] == {A: ["2024-01-03"]}
    # marked at the last close while suspended
    assert result.close_fen[1, 0] == 1000


def test_ex_date_scales_the_shares_and_preserves_equity() -> None:
    # adj factor 1 -> 1.2345 on 01-03; the exchange's pre_close 24.69 / 1.2345 = 20.00
    frame = bars(
        [(A, "20240102", 24.69, 24.69), (A, "20240103", 20.00, 20.00, 20.00), (A, "20240104", 20.00, 20.00)],
        adj_factor=[1.0, 1.2345, 1.2345],
    )
    result = run(Script({-1: lambda c: c.buy(A, 1000)}), frame, initial_cash=Decimal("100000"),
                 commission_rate=Decimal(0), min_commission=Decimal(0), transfer_fee_rate=Decimal(0))  # fmt: skip
    # 1,000 x 1.2345 = 1,234.5 -> 1,234 shares and 0.5 share paid in cash at the pre_close: 10.00
    assert result.corporate_actions == [
        {
            "trade_date": "2024-01-03",
            "ts_code": A,
            "ratio": 1.2345,
            "qty_before": 1000,
            "qty_after": 1234,
            "cash_in_lieu": "10.00",
        }
    ]
    # equity: day 1 cash 75,310 + 1,000 x 24.69 = 100,000; day 2 75,310 + 10 + 1,234 x 20.00 = 100,000
    assert list(result.equity_fen) == [10_000_000, 10_000_000, 10_000_000]


def test_fill_at_the_close_or_a_vwap_like_price() -> None:
    frame = bars([*flat(A, DAYS[:1]), (A, "20240103", 10.0, 10.2)])
    close = run(Script({0: lambda c: c.buy(A, 100)}), frame, fill_price="close")
    assert trades(close)[0]["price"] == "10.20"
    vwap = run(Script({0: lambda c: c.buy(A, 100)}), frame, fill_price="vwap")
    assert trades(vwap)[0]["price"] == "10.10"  # amount / vol = (10.00 + 10.20) / 2


def test_target_orders_and_close_position() -> None:
    frame = bars(flat(A, DAYS[:4], 10.0))
    s = Script(
        {
            -1: lambda c: c.order_target_percent(A, 0.5),  # 50% of 100,000 -> 5,000 shares at 10.00
            0: lambda c: c.order_target_value(A, 20_000),  # hold 2,000: sell 3,000
            1: lambda c: c.close_position(A),
        }
    )
    result = run(s, frame, initial_cash=Decimal("100000"))
    assert [(t["side"], t["qty"]) for t in trades(result)] == [("buy", 5000), ("sell", 3000), ("sell", 2000)]
    assert np.array_equal(result.positions[:, 0], [5000, 2000, 0, 0])


def test_orders_left_at_the_end_are_cancelled_with_a_reason() -> None:
    result = run(Script({1: lambda c: c.buy(A, 100)}), bars(flat(A, DAYS[:2])))
    assert orders(result)[0]["reason"] == "end of data: no bar left to fill on"


def test_a_sized_sell_smaller_than_a_lot_is_cancelled_with_the_below_lot_reason() -> None:
    frame = bars(flat(A, DAYS[:4], 10.0))
    s = Script(
        {
            -1: lambda c: c.buy(A, 300),
            0: lambda c: c.order_value(A, -500),  # 50 shares' worth of 300 held: below a lot, not the position
            1: lambda c: c.order_target_value(A, 2_550),  # hold 255 of 300: sell 45, below a lot
        }
    )
    result = run(s, frame)
    o = orders(result)
    assert [(x["status"], x["filled_qty"], x["reason"]) for x in o[1:]] == [
        ("cancelled", 0, "below the smallest lot the board allows"),
        ("cancelled", 0, "below the smallest lot the board allows"),
    ]
    assert list(result.positions[:, 0]) == [300, 300, 300, 300]


def test_every_order_not_filled_in_full_says_why() -> None:
    """A varied run (random orders of every kind over a market with limit days, suspensions, a split, STAR lots,
    the volume cap, cash shortage and T+1) in the four configs of the batch tests: every order that did not fill in
    full (cancelled, partially filled, rejected) has a reason, and every filled one has none."""
    from tests.unit.engine.test_engine_batch import CONFIGS, Trader, market

    unfilled = 0
    for config in CONFIGS.values():
        for seed in range(3):
            result = run(Trader({"seed": seed, "budget": 0.2, "churn": 0.4}), market(), config)
            o = result.orders_frame()
            done = o["status"] == "filled"
            assert (o.loc[done, "reason"] == "").all()
            missing = o[~done & (o["reason"] == "")]
            assert missing.empty, missing.to_string()
            unfilled += int((~done).sum())
    assert unfilled > 100
