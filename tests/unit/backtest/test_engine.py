"""The buy-and-hold engine on examples worked out by hand."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal

import pytest

from services.backtest.engine import EngineError, affordable_buy_qty, run_backtest
from shared.domain.codes import Board
from shared.domain.models import Bar
from shared.market.rules import FeeSchedule
from shared.strategy import Strategy, StrategyContext
from strategies.buy_and_hold import BuyAndHold, BuyAndHoldParams

D1, D2, D3 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)


def bar(ts_code: str, day: date, open_: str, close: str) -> Bar:
    o, c = Decimal(open_), Decimal(close)
    return Bar(
        ts_code=ts_code,
        trade_date=day,
        open=o,
        high=max(o, c),
        low=min(o, c),
        close=c,
        pre_close=o,
        vol=1_000_000,
        amount=Decimal("1000000"),
    )


# 600000.SH (main board) trades on D1 and D2 and is suspended on D3.
# 688981.SH (STAR) has no bar on D1 (suspended), so it is bought at its first open, on D2.
BARS = {
    "600000.SH": [bar("600000.SH", D1, "14.50", "14.80"), bar("600000.SH", D2, "14.90", "15.10")],
    "688981.SH": [bar("688981.SH", D2, "45.67", "46.00"), bar("688981.SH", D3, "45.50", "44.00")],
}


def test_two_symbols_three_days_worked_by_hand() -> None:
    result = run_backtest(
        BuyAndHold(),
        BARS,
        universe=["600000.SH", "688981.SH"],
        initial_cash=Decimal("30000"),
        start=D1,
        end=D3,
    )
    # Budget per symbol: 30,000 / 2 = 15,000.00.
    #
    # D1, 600000.SH at the open, 14.50. 15,000 / 1,450 per lot = 10.34 -> 10 lots = 1,000 shares, 14,500.00.
    #   commission 14,500 * 0.025% = 3.625 -> below the 5 CNY minimum -> 5.00
    #   transfer fee 14,500 * 0.001% = 0.145 -> half-up to the fen -> 0.15
    #   cost 14,505.15 <= 15,000 (11 lots would be 15,950 + fees: too much)
    #   cash 30,000.00 - 14,505.15 = 15,494.85
    # D1 equity: 15,494.85 + 1,000 * 14.80 = 30,294.85
    #
    # D2, 688981.SH (STAR: at least 200 shares, then steps of 1) at the open, 45.67.
    #   15,000 / 45.67 = 328.4 -> 328 shares, 14,979.76
    #   commission 14,979.76 * 0.025% = 3.74494 -> 5.00 (minimum); transfer fee 0.1497976 -> 0.15
    #   cost 14,984.91 <= 15,000 (329 shares: 15,025.43 > 15,000)
    #   cash 15,494.85 - 14,984.91 = 509.94
    # D2 equity: 509.94 + 1,000 * 15.10 + 328 * 46.00 = 509.94 + 15,100 + 15,088 = 30,697.94
    #
    # D3: 600000.SH suspended -> its last close, 15.10; 688981.SH closes at 44.00.
    # D3 equity: 509.94 + 15,100 + 328 * 44.00 = 509.94 + 15,100 + 14,432 = 30,041.94
    assert [(p.trade_date, p.equity) for p in result.equity_curve] == [
        (D1, Decimal("30294.85")),
        (D2, Decimal("30697.94")),
        (D3, Decimal("30041.94")),
    ]
    fills = [(f.trade_date, f.ts_code, f.qty, f.price, f.amount, f.fees) for f in result.fills]
    assert fills == [
        (D1, "600000.SH", 1000, Decimal("14.50"), Decimal("14500.00"), Decimal("5.15")),
        (D2, "688981.SH", 328, Decimal("45.67"), Decimal("14979.76"), Decimal("5.15")),
    ]
    assert result.unfilled == []

    s = result.summary
    assert s.initial_cash == Decimal("30000.00")
    assert s.final_equity == Decimal("30041.94")
    assert s.fees_paid == Decimal("10.30")  # 5.15 + 5.15
    assert s.trading_days == 3
    # total return: 41.94 / 30,000 = 0.001398 exactly
    assert s.total_return == Decimal("0.00139800")
    # annual: (1.001398) ** (252 / 3) - 1 = 1.001398 ** 84 - 1
    #   ln(1.001398) = 0.00139702; * 84 = 0.117350; e ** 0.117350 = 1.124513 -> 0.124513
    assert s.annual_return == (Decimal("1.001398") ** 84 - 1).quantize(Decimal("0.00000001"))
    assert Decimal("0.12451") < s.annual_return < Decimal("0.12452")
    # max drawdown: peaks 30,000 -> 30,294.85 -> 30,697.94; then 30,041.94:
    # (30,697.94 - 30,041.94) / 30,697.94 = 656 / 30,697.94 = 0.021369...
    assert s.max_drawdown == (Decimal(656) / Decimal("30697.94")).quantize(Decimal("0.00000001"))
    assert s.max_drawdown == Decimal("0.02136951")

    summary = result.summary_json()
    assert summary["final_equity"] == "30041.94" and summary["trading_days"] == 3
    assert summary["trades"][1] == {
        "trade_date": "2024-01-03",
        "ts_code": "688981.SH",
        "side": "buy",
        "qty": 328,
        "price": "45.67",
        "amount": "14979.76",
        "fees": "5.15",
    }


def test_a_day_every_symbol_is_suspended_counts_when_the_calendar_knows_it() -> None:
    bars = {"600000.SH": [bar("600000.SH", D1, "10.00", "10.00"), bar("600000.SH", D3, "10.00", "11.00")]}
    result = run_backtest(
        BuyAndHold(),
        bars,
        universe=["600000.SH"],
        initial_cash=Decimal("10000"),
        start=D1,
        end=D3,
        calendar=[D1, D2, D3],
    )
    # 10,000 / 1,000 per lot -> 10 lots = 10,000 + 5.10 fees > 10,000 -> 9 lots = 9,000.00,
    # commission 5.00 (minimum), transfer 0.09 -> cash 10,000 - 9,005.09 = 994.91
    assert [p.equity for p in result.equity_curve] == [
        Decimal("9994.91"),  # 994.91 + 900 * 10.00
        Decimal("9994.91"),  # D2: no bar, last close
        Decimal("10894.91"),  # 994.91 + 900 * 11.00
    ]
    assert result.summary.trading_days == 3
    # The calendar does not stretch the run beyond the data: days after the last bar are not counted.
    longer = run_backtest(
        BuyAndHold(),
        bars,
        universe=["600000.SH"],
        initial_cash=Decimal("10000"),
        start=D1,
        end=date(2024, 1, 31),
        calendar=[D1, D2, D3, date(2024, 1, 5)],
    )
    assert longer.summary.trading_days == 3


def test_cash_reserve_is_kept_and_a_symbol_that_never_trades_keeps_its_budget_in_cash() -> None:
    bars = {"000001.SZ": [bar("000001.SZ", D1, "10.00", "10.00")], "600000.SH": []}
    params = BuyAndHoldParams(cash_reserve=Decimal("0.2"))
    result = run_backtest(
        BuyAndHold(params), bars, universe=["000001.SZ", "600000.SH"], initial_cash=Decimal("50000"), start=D1, end=D1
    )
    # investable 50,000 * 0.8 = 40,000 -> 20,000 per symbol.
    # 000001.SZ: 20 lots = 20,000 + 5.20 fees > 20,000 -> 19 lots = 19,000.00, commission 5.00, transfer 0.19
    assert [(f.ts_code, f.qty, f.fees) for f in result.fills] == [("000001.SZ", 1900, Decimal("5.19"))]
    # 50,000 - 19,005.19 = 30,994.81 cash + 1,900 * 10.00
    assert result.summary.final_equity == Decimal("49994.81")
    assert [(u.ts_code, u.value) for u in result.unfilled] == [("600000.SH", Decimal("20000.00"))]
    assert "no bar of 600000.SH" in result.unfilled[0].reason


def test_half_fen_fees_round_half_up_per_component() -> None:
    schedule = FeeSchedule()
    # 1,700 shares at 29.00 = 49,300.00: commission 49,300 * 0.025% = 12.325 exactly -> half-up 12.33
    # (half-even would give 12.32); transfer 0.493 -> 0.49; cost 49,300 + 12.82 = 49,312.82
    assert affordable_buy_qty(Board.MAIN, 2900, 4_931_282, D1, schedule) == 1700
    assert affordable_buy_qty(Board.MAIN, 2900, 4_931_281, D1, schedule) == 1600
    # Exactly on the budget is allowed: 100 shares at 10.00 = 1,000 + 5.00 + 0.01 = 1,005.01
    assert affordable_buy_qty(Board.MAIN, 1000, 100_501, D1, schedule) == 100
    assert affordable_buy_qty(Board.MAIN, 1000, 100_500, D1, schedule) == 0


def test_star_lots_start_at_200_then_single_shares() -> None:
    schedule = FeeSchedule()
    # STAR at 50.00: 250 shares = 12,500 + 5.00 + 0.13 (0.125 half-up) = 12,505.13
    assert affordable_buy_qty(Board.STAR, 5000, 1_250_513, D1, schedule) == 250
    assert affordable_buy_qty(Board.STAR, 5000, 1_250_512, D1, schedule) == 249
    # 200 shares = 10,000 + 5.00 + 0.10 = 10,005.10; a fen less buys nothing (199 shares are not allowed)
    assert affordable_buy_qty(Board.STAR, 5000, 1_000_510, D1, schedule) == 200
    assert affordable_buy_qty(Board.STAR, 5000, 1_000_509, D1, schedule) == 0
    # The main board in the same spot: whole lots of 100 only
    assert affordable_buy_qty(Board.MAIN, 5000, 1_250_513, D1, schedule) == 200
    # BSE: at least 100, then single shares
    assert affordable_buy_qty(Board.BSE, 5000, 760_000, D1, schedule) == 151  # 7,550 + 5.00 + 0.08


def test_a_budget_below_one_lot_is_reported_not_bought() -> None:
    bars = {"688981.SH": [bar("688981.SH", D1, "100.00", "100.00")]}
    result = run_backtest(BuyAndHold(), bars, universe=["688981.SH"], initial_cash=Decimal("15000"), start=D1, end=D1)
    assert result.fills == []
    assert result.summary.final_equity == Decimal("15000.00") and result.summary.total_return == 0
    assert "smallest allowed lot" in result.unfilled[0].reason


class _OrdersOnBar(Strategy):
    name = "orders_on_bar"
    title = "test"
    description = "buys on the first bar"

    def on_bar(self, ctx: StrategyContext, bars: Mapping[str, Bar]) -> None:
        if ctx.today == D1:
            ctx.buy_value("600000.SH", Decimal("5000"))


def test_an_order_placed_on_a_bar_fills_at_the_next_open_never_the_same_day() -> None:
    bars = {"600000.SH": [bar("600000.SH", D1, "10.00", "12.00"), bar("600000.SH", D2, "12.50", "12.00")]}
    result = run_backtest(_OrdersOnBar(), bars, universe=["600000.SH"], initial_cash=Decimal("10000"), start=D1, end=D2)
    # Seen D1's close (12.00): the order fills at D2's open, 12.50: 5,000 -> 3 lots = 3,750 + 5.00 + 0.04
    assert [(f.trade_date, f.qty, f.price) for f in result.fills] == [(D2, 300, Decimal("12.50"))]


def test_bad_input_is_refused() -> None:
    with pytest.raises(EngineError, match="no bars"):
        run_backtest(BuyAndHold(), {}, universe=["600000.SH"], initial_cash=Decimal(1), start=D1, end=D2)
    with pytest.raises(EngineError, match="outside the universe"):
        run_backtest(BuyAndHold(), BARS, universe=["600000.SH"], initial_cash=Decimal(1000), start=D1, end=D3)
    with pytest.raises(ValueError, match="fen"):
        sub_tick = {"600000.SH": [bar("600000.SH", D1, "10.005", "10.00")]}
        run_backtest(BuyAndHold(), sub_tick, universe=["600000.SH"], initial_cash=Decimal(10000), start=D1, end=D1)
