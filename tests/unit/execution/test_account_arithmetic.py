"""The arithmetic of execution's admission, worked by hand in fen: what a sell may take (sellable shares) and what
a buy reserves and a fill moves in cash (amount, commission with its 5 CNY minimum, stamp duty by date, transfer
fee), and the opening-cash setting."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.execution.admission import Refusal
from services.execution.cash import (
    Cash,
    OpenBuy,
    account_cash,
    buy_refusal,
    cny,
    fees_fen,
    withdrawal_refusal,
)
from services.execution.positions import OpenSell, TradeLot, holdings, sell_refusal, sellable
from shared.core.domain import OrderSide, to_fen
from shared.core.market.orders import buy_reservation_fen, fill_cash_fen
from shared.platform.settings import Settings

BUY, SELL = OrderSide.BUY, OrderSide.SELL
TODAY = date(2025, 1, 3)


def test_a_sell_may_take_only_the_sellable_shares() -> None:
    # 1,000 bought on the 2nd (sellable on the 3rd), 500 bought today; a resting sell reserves 300: 700 sellable.
    lots = [
        TradeLot("600000.SH", BUY, 1000, datetime(2025, 1, 2, 6, tzinfo=UTC)),
        TradeLot("600000.SH", BUY, 500, datetime(2025, 1, 3, 2, tzinfo=UTC)),
    ]
    sells = [OpenSell("600000.SH", 300)]
    positions = holdings(lots, sells, today=TODAY)
    assert sellable(positions, "600000.SH") == (1500, 700)
    assert sellable(positions, "000001.SZ") == (0, 0)
    assert sell_refusal(lots, sells, "600000.SH", 700, today=TODAY) is None
    assert sell_refusal(lots, sells, "600000.SH", 701, today=TODAY) == Refusal(
        "insufficient_position",
        "cannot sell 701 shares of 600000.SH: 700 sellable now (held 1500; shares bought today become sellable "
        "on the next trading day, open sell orders reserve theirs)",
        {"held_qty": 1500, "sellable_qty": 700},
    )


def test_fees_in_fen_with_the_commission_minimum_and_stamp_duty_by_date() -> None:
    # 10,000.00 bought: commission 2.50 -> the 5.00 minimum, transfer fee 0.10: 510 fen.
    assert fees_fen(1_000_000, side=BUY, trade_date=date(2024, 1, 2))[0] == 510
    # 100,000.00 sold on 2023-08-25: commission 25.00, stamp duty 0.1% 100.00, transfer fee 1.00 = 126.00.
    total, parts = fees_fen(10_000_000, side=SELL, trade_date=date(2023, 8, 25))
    assert (total, parts.commission, parts.stamp_duty, parts.transfer_fee) == (12_600, 25, 100, 1)
    # The same sell on 2023-08-28, stamp duty halved to 0.05%: 50.00, total 76.00.
    assert fees_fen(10_000_000, side=SELL, trade_date=date(2023, 8, 28))[0] == 7_600
    # Half a fen rounds up: 9,500.00 bought: transfer fee 0.095 -> 0.10.
    assert fees_fen(950_000, side=BUY, trade_date=TODAY)[1].transfer_fee == Decimal("0.10")


def test_what_a_fill_does_to_the_cash() -> None:
    # A buy of 10,000.00 with 5.10 of fees pays 10,005.10; a sell of 50,000.00 with 63.00 of fees gets 49,937.00.
    assert fill_cash_fen(BUY, 1_000_000, 510) == -1_000_510
    assert fill_cash_fen(SELL, 5_000_000, 6_300) == 4_993_700


def test_open_buys_reserve_their_unfilled_qty_at_the_cap_with_fees() -> None:
    # 1,000 at up to 9.50: 9,500.00 + 5.00 + 0.10 (0.095 rounded half-up) = 9,505.10.
    assert buy_reservation_fen(1000, 950, TODAY) == 950_510
    # 40,000 at up to 25.00 = 1,000,000.00: commission 250.00, transfer fee 10.00 = 1,000,260.00.
    assert buy_reservation_fen(40_000, 2_500, TODAY) == 100_026_000
    assert buy_reservation_fen(0, 950, TODAY) == 0  # nothing left to fill reserves nothing
    # Balance 50,000.00; a resting buy of 1,000 at 9.50 and a partly filled one with 300 left at 10.00
    # (3,000.00 + 5.00 + 0.03 = 3,005.03): reserved 12,510.13, available 37,489.87.
    cash = account_cash(5_000_000, [OpenBuy(1000, 950), OpenBuy(300, 1000)], today=TODAY)
    assert cash == Cash(balance_fen=5_000_000, reserved_fen=1_251_013)
    assert (cny(cash.balance_fen), cny(cash.reserved_fen), cny(cash.available_fen)) == (
        "50000.00",
        "12510.13",
        "37489.87",
    )


def test_a_buy_without_a_known_cap_reserves_nothing() -> None:
    # An open market buy from before caps were recorded (cap 0): not the 5.00 commission minimum either.
    assert buy_reservation_fen(1000, 0, TODAY) == 0
    cash = account_cash(5_000_000, [OpenBuy(1000, 0), OpenBuy(1000, 950)], today=TODAY)
    assert cash == Cash(balance_fen=5_000_000, reserved_fen=950_510)


def test_a_buy_is_admitted_only_when_the_available_cash_covers_it_with_fees() -> None:
    # 1,000 at up to 9.50 needs 9,505.10 (above). Balance 10,000.00 less 500.00 reserved: 9,500.00 available.
    cash = Cash(balance_fen=1_000_000, reserved_fen=50_000)
    assert buy_refusal("600000.SH", 1000, 950, Cash(balance_fen=950_510, reserved_fen=0), today=TODAY) is None
    assert buy_refusal("600000.SH", 1000, 950, cash, today=TODAY) == Refusal(
        "insufficient_cash",
        "cannot buy 1000 shares of 600000.SH at up to 9.50: it needs 9505.10 CNY with fees, 9500.00 available "
        "(balance 10000.00, reserved by open buys 500.00)",
        {"needed": "9505.10", "available": "9500.00"},
    )


def test_a_withdrawal_may_take_only_the_available_cash() -> None:
    cash = Cash(balance_fen=1_000_000, reserved_fen=50_000)  # 9,500.00 available
    assert withdrawal_refusal(950_000, cash) is None
    assert withdrawal_refusal(950_001, cash) == Refusal(
        "insufficient_cash",
        "cannot withdraw 9500.01 CNY: 9500.00 available (balance 10000.00, reserved by open buys 500.00)",
        {"available": "9500.00"},
    )


def test_the_opening_cash_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LH_PAPER_OPENING_CASH", raising=False)
    assert to_fen(Settings().paper_opening_cash) == 1_000_000_000  # 10,000,000.00 CNY by default
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "1234.56")
    assert to_fen(Settings().paper_opening_cash) == 123_456
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "0")
    assert to_fen(Settings().paper_opening_cash) == 0
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "")  # set but empty, as an unset compose option: the default
    assert to_fen(Settings().paper_opening_cash) == 1_000_000_000
    for bad in ("-1", "0.001", "lots", "NaN", "inf"):
        monkeypatch.setenv("LH_PAPER_OPENING_CASH", bad)
        with pytest.raises(ValueError, match="paper_opening_cash"):
            Settings()
