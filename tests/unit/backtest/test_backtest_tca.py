"""A backtest's cost analysis worked by hand (services/backtest/tca.py): the engine runs a scripted strategy, the
runner's decisions artifact names each traded order's decision day and that day's close, and the orders' fills are
set against it with the same arithmetic as execution's live analysis."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from services.backtest import tca
from services.backtest.runner import decisions_frame
from shared.core.market.tca import cny_of_fen
from tests.unit.engine.support import Script, bars, run

A = "600000.SH"
DAYS = ["20240102", "20240103", "20240104", "20240105"]


def _result():  # type: ignore[no-untyped-def]
    frame = bars([(A, DAYS[0], 10.00, 10.00), (A, DAYS[1], 10.20, 10.30), (A, DAYS[2], 10.40, 10.50),
                  (A, DAYS[3], 10.10, 10.00)])  # fmt: skip
    # decided at day 0's close (10.00), bought at day 1's open (10.20); decided at day 2's close (10.50), sold at
    # day 3's open (10.10)
    script = Script({0: lambda ctx: ctx.buy(A, 1000), 2: lambda ctx: ctx.sell(A, 1000)})
    return run(script, frame, slippage="none")


def test_the_decisions_name_the_day_decided_on_and_its_close() -> None:
    decisions = decisions_frame(_result()).to_dict("records")
    assert [(d["ts_code"], d["decision_date"], d["decision_close"]) for d in decisions] == [
        (A, "2024-01-02", "10.00"),
        (A, "2024-01-04", "10.50"),
    ]


def test_each_order_against_its_decisions_close() -> None:
    result = _result()
    costs = tca.order_costs(result.trades_frame(), decisions_frame(result))
    buy, sell = costs
    # the buy: 1,000 at 10.20 = 10,200.00; fees 5.00 (the minimum commission) + 0.10 transfer = 5.10
    # 10,200.00 - 10.00 x 1,000 = +200.00 (paid more than the decision saw): 20,000 / 1,000,000 x 10,000 = 200.00
    assert (buy.side, buy.decision_date, buy.decision_close) == ("buy", date(2024, 1, 2), Decimal("10.00"))
    assert (buy.cost.filled_qty, buy.cost.filled_amount_fen, buy.cost.fees_fen) == (1000, 1020000, 510)
    assert buy.cost.arrival_bps == Decimal("200.00") and buy.cost.fees_bps == Decimal("5.00")
    # the sell: 1,000 at 10.10 = 10,100.00; fees 5.00 + 0.10 + stamp duty 0.05% 5.05 = 10.15
    # 10.50 x 1,000 - 10,100.00 = +400.00 (got less): 40,000 / 1,050,000 x 10,000 = 380.952... -> 380.95
    assert (sell.side, sell.decision_date, sell.decision_close) == ("sell", date(2024, 1, 4), Decimal("10.50"))
    assert (sell.cost.filled_amount_fen, sell.cost.fees_fen) == (1010000, 1015)
    assert sell.cost.arrival_bps == Decimal("380.95")
    assert sell.cost.arrival is not None and cny_of_fen(sell.cost.arrival[0], 2) == Decimal("400.00")
    # in all: 600.00 / 20,500.00 x 10,000 = 292.682... -> 292.68; fees 15.25 / 20,300.00 = 7.512... -> 7.51
    total = tca.total(costs)
    assert (total.arrival_bps, total.fees_bps) == (Decimal("292.68"), Decimal("7.51"))
    assert list(tca.by_day(costs)) == ["2024-01-02", "2024-01-04"]


def test_an_order_placed_before_the_first_day_has_no_arrival_price() -> None:
    frame = bars([(A, DAYS[0], 10.00, 10.00), (A, DAYS[1], 10.20, 10.30)])
    result = run(Script({-1: lambda ctx: ctx.buy(A, 100)}), frame, slippage="none")
    [cost] = tca.order_costs(result.trades_frame(), decisions_frame(result))
    assert cost.decision_date is None and cost.decision_close is None
    assert cost.cost.arrival_bps is None and cost.cost.filled_qty == 100
    assert list(tca.by_day([cost])) == ["2024-01-02"]  # counted on its first fill's day
