"""Execution's corporate actions without I/O: which codes go ex on a session (from the data service's bars), the
adjustments of each holder (floored apart), and positions with them (sellable on the ex-date). Worked by hand."""

from datetime import UTC, date, datetime
from decimal import Decimal

from services.execution.corporate import ExDate, HolderPosition, ex_dates_of, plan_adjustments
from services.execution.positions import ShareAdjustment, TradeLot, holdings
from shared.core.domain import OrderSide
from shared.core.market.orders import Holding

DAY = date(2024, 3, 5)


def _bar(day: str, factor: str, pre_close: str = "10.00") -> dict[str, str]:
    return {"trade_date": day, "adj_factor": factor, "pre_close": pre_close}


def test_the_codes_going_ex_on_a_session() -> None:
    found, short = ex_dates_of(
        DAY,
        {
            "600030.SH": [_bar("2024-03-04", "1.000000"), _bar("2024-03-05", "2.105263", "4.75")],  # ex
            "600000.SH": [_bar("2024-03-04", "1.500000"), _bar("2024-03-05", "1.500000")],  # no change
            "000001.SZ": [_bar("2024-03-04", "1.000000")],  # no bar on the session (suspended): not ex today
            "601398.SH": [_bar("2024-03-05", "1.100000")],  # no earlier bar read: read further back
        },
    )
    assert found == {"600030.SH": ExDate("600030.SH", DAY, Decimal("2.105263"), Decimal("1.000000"), 475)}
    assert short == ["601398.SH"]
    assert found["600030.SH"].ratio == 2.105263


def test_each_holder_is_floored_apart() -> None:
    ex = {"600030.SH": ExDate("600030.SH", DAY, Decimal("2.105263"), Decimal("1"), 475)}
    holders = [
        HolderPosition("acct", None, "600030.SH", 300),  # 631.5789 -> 631, 0.5789 x 4.75 -> 2.75
        HolderPosition("acct", "i" * 32, "600030.SH", 100),  # 210.5263 -> 210, 0.5263 x 4.75 -> 2.50
        HolderPosition("acct", None, "600000.SH", 500),  # not going ex
        HolderPosition("acct", "j" * 32, "600000.SH", 0),  # nothing held: nothing to adjust
    ]
    planned = plan_adjustments(holders, ex)
    assert [(a.strategy_instance_id, a.qty_before, a.qty_after, a.cash_in_lieu_fen) for a in planned] == [
        (None, 300, 631, 275),
        ("i" * 32, 100, 210, 250),
    ]
    assert [a.key for a in planned] == ["adjust:-:600030.SH:2024-03-05", f"adjust:{'i' * 32}:600030.SH:2024-03-05"]


def test_parts_that_cancel_out_stay_cancelled() -> None:
    # The account's people sold the 1,000 shares an instance bought (admission checks the account's total): the
    # account holds none, so it must gain neither shares nor cash. 1,000 x 2.105263 = 2,105.263 -> 2,105 and
    # 0.263 x 4.75 = 1.249 -> 1.25 CNY, once up for the instance and once down for the account's own part.
    ex = {"600030.SH": ExDate("600030.SH", DAY, Decimal("2.105263"), Decimal("1"), 475)}
    holders = [HolderPosition("acct", "i" * 32, "600030.SH", 1000), HolderPosition("acct", None, "600030.SH", -1000)]
    planned = plan_adjustments(holders, ex)
    assert [(a.qty_before, a.qty_after, a.cash_in_lieu_fen) for a in planned] == [
        (1000, 2105, 125),
        (-1000, -2105, -125),
    ]
    assert sum(a.qty_after for a in planned) == 0 and sum(a.cash_in_lieu_fen for a in planned) == 0


def test_adjusted_shares_are_held_and_sellable_on_the_ex_date() -> None:
    # 400 bought the day before, 442 added on the ex-date (400 -> 842), 100 bought on it (T+1: not sellable)
    lots = [
        TradeLot("600030.SH", OrderSide.BUY, 400, datetime(2024, 3, 4, 1, 30, tzinfo=UTC)),
        ShareAdjustment("600030.SH", 442),
        TradeLot("600030.SH", OrderSide.BUY, 100, datetime(2024, 3, 5, 1, 30, tzinfo=UTC)),
    ]
    assert holdings(lots, [], today=DAY) == [Holding(ts_code="600030.SH", qty=942, sellable_qty=842)]
