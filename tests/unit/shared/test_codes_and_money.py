from decimal import Decimal

import pytest

from shared.core.domain import Board, Exchange, InvalidTsCode, from_fen, money, parse_ts_code, price, to_fen


@pytest.mark.parametrize(
    ("code", "exchange", "board"),
    [
        ("600000.SH", Exchange.SH, Board.MAIN),
        ("601318.SH", Exchange.SH, Board.MAIN),
        ("603288.SH", Exchange.SH, Board.MAIN),
        ("605499.SH", Exchange.SH, Board.MAIN),
        ("688981.SH", Exchange.SH, Board.STAR),
        ("000001.SZ", Exchange.SZ, Board.MAIN),
        ("002594.SZ", Exchange.SZ, Board.MAIN),
        ("003816.SZ", Exchange.SZ, Board.MAIN),
        ("300750.SZ", Exchange.SZ, Board.CHINEXT),
        ("301269.SZ", Exchange.SZ, Board.CHINEXT),
        ("830799.BJ", Exchange.BJ, Board.BSE),
        ("920118.BJ", Exchange.BJ, Board.BSE),
        (" 600000.sh ", Exchange.SH, Board.MAIN),
    ],
)
def test_board_from_code(code: str, exchange: Exchange, board: Board) -> None:
    parsed = parse_ts_code(code)
    assert (parsed.exchange, parsed.board) == (exchange, board)
    assert parsed.ts_code == code.strip().upper()


@pytest.mark.parametrize(
    "code",
    ["600000", "600000.SS", "60000.SH", "000300.SH", "510300.SH", "159915.SZ", "399001.SZ", "", "ABCDEF.SZ"],
)
def test_non_stock_codes_are_refused(code: str) -> None:
    with pytest.raises(InvalidTsCode):
        parse_ts_code(code)


def test_money_rounds_half_up_to_the_fen() -> None:
    assert money(Decimal("0.005")) == Decimal("0.01")
    assert money(Decimal("2.675")) == Decimal("2.68")  # float round(2.675, 2) gives 2.67
    assert money(Decimal("-0.005")) == Decimal("-0.01")


def test_price_refuses_off_tick_values() -> None:
    assert price("10.50") == Decimal("10.50")
    with pytest.raises(ValueError, match="tick"):
        price("10.005")


def test_fen_round_trip_is_exact() -> None:
    assert to_fen(Decimal("12.34")) == 1234
    assert from_fen(1234) == Decimal("12.34")
    with pytest.raises(ValueError):
        to_fen(Decimal("0.001"))
