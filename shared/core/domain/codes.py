"""Tushare-style security codes (`600000.SH`) parsed into exchange and board."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Exchange(StrEnum):
    SH = "SH"  # Shanghai Stock Exchange
    SZ = "SZ"  # Shenzhen Stock Exchange
    BJ = "BJ"  # Beijing Stock Exchange


class Board(StrEnum):
    MAIN = "main"  # SH 600/601/603/605, SZ 000/001/002/003 (the SME board merged into main on 2021-04-06)
    STAR = "star"  # SH 688/689 (科创板, opened 2019-07-22)
    CHINEXT = "chinext"  # SZ 300/301/302 (创业板)
    BSE = "bse"  # Beijing Stock Exchange (北交所, opened 2021-11-15): 43/83/87/88, and 920 from 2024


class InvalidTsCode(ValueError):
    pass


_TS_CODE = re.compile(r"^(\d{6})\.(SH|SZ|BJ)$")

# Prefixes of A-share stock codes by exchange (exchange code-allocation rules as of 2024).
_BOARD_PREFIXES: dict[Exchange, tuple[tuple[str, Board], ...]] = {
    Exchange.SH: (
        ("600", Board.MAIN),
        ("601", Board.MAIN),
        ("603", Board.MAIN),
        ("605", Board.MAIN),
        ("688", Board.STAR),
        ("689", Board.STAR),
    ),
    Exchange.SZ: (
        ("000", Board.MAIN),
        ("001", Board.MAIN),
        ("002", Board.MAIN),
        ("003", Board.MAIN),
        ("300", Board.CHINEXT),
        ("301", Board.CHINEXT),
        ("302", Board.CHINEXT),
    ),
    Exchange.BJ: (
        ("43", Board.BSE),
        ("83", Board.BSE),
        ("87", Board.BSE),
        ("88", Board.BSE),
        ("920", Board.BSE),
    ),
}


@dataclass(frozen=True)
class SecurityCode:
    symbol: str
    exchange: Exchange
    board: Board

    @property
    def ts_code(self) -> str:
        return f"{self.symbol}.{self.exchange}"

    def __str__(self) -> str:
        return self.ts_code


def parse_ts_code(ts_code: str) -> SecurityCode:
    """Parse an A-share stock code; indices, funds and bonds are not stocks and are refused."""
    match = _TS_CODE.match(ts_code.strip().upper()) if isinstance(ts_code, str) else None
    if match is None:
        raise InvalidTsCode(f"{ts_code!r} is not a ts_code like 600000.SH")
    symbol, exchange = match.group(1), Exchange(match.group(2))
    for prefix, board in _BOARD_PREFIXES[exchange]:
        if symbol.startswith(prefix):
            return SecurityCode(symbol, exchange, board)
    raise InvalidTsCode(f"{ts_code} is not an A-share stock code on {exchange.value}")
