"""What an engine offers a strategy while it runs: the universe, the day's cross-section, history that ends at the
current bar, indicators, the portfolio and orders. The backtest engine (`shared.research.engine`) implements it;
paper and
live engines will implement the same protocol.

Symbols are addressed either by ts_code (`"600000.SH"`) or, for vectorised strategies, by their column in the
universe: an int, an int array of columns, or a bool mask over the universe. Every order helper accepts both, and
broadcasts a scalar amount over an array of symbols, so a strategy over 5,000 symbols places its orders with one
call per day instead of one per symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
# One symbol (ts_code or column) or many (int columns or a bool mask over the universe).
Symbols: TypeAlias = str | int | np.integer | npt.NDArray[np.int64] | npt.NDArray[np.bool_]
Amount: TypeAlias = int | float | npt.NDArray[np.int64] | npt.NDArray[np.float64]
PriceField: TypeAlias = Literal["open", "high", "low", "close", "pre_close"]
Field: TypeAlias = Literal["open", "high", "low", "close", "pre_close", "vol", "amount"]


class StrategyError(ValueError):
    """A strategy cannot run as asked: it misused the context (an unknown symbol, a non-positive quantity, a NaN
    amount) or the run lacks what it needs (a pair leg outside the universe, a factor column missing)."""


@dataclass(frozen=True)
class CrossSection:
    """One trading day over the whole universe, one element per symbol in universe order, read-only.

    Prices are unadjusted CNY (what the exchange quoted that day); `vol` in shares, `amount` in CNY. A symbol with no
    bar today (suspended, not listed yet, delisted) has `has_bar` False and its last close repeated in the price
    arrays (NaN before its first bar), with vol and amount 0.
    """

    trade_date: date
    index: int  # the day's position in the run, 0-based
    codes: tuple[str, ...]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    pre_close: FloatArray
    vol: FloatArray
    amount: FloatArray
    has_bar: BoolArray


@dataclass(frozen=True)
class OrderEvent:
    """An order reached a final state (or was partly filled and the rest cancelled). Amounts are CNY."""

    order_id: int
    ts_code: str
    trade_date: date  # the day the order was settled
    status: Literal["filled", "partially_filled", "cancelled", "rejected"]
    filled_qty: int
    reason: str  # "" when filled in full


@dataclass(frozen=True)
class TradeEvent:
    """A fill. Money in CNY, exact to the fen (computed in integer fen)."""

    order_id: int
    ts_code: str
    trade_date: date
    side: Literal["buy", "sell"]
    qty: int
    price: float
    amount: float
    fees: float


class StrategyContext(Protocol):
    """The engine's side of the API. History is read-only and ends at the current bar: indexing past it raises."""

    @property
    def universe(self) -> tuple[str, ...]:
        """The ts_codes of the run, sorted; column j of every array is universe[j]."""

    @property
    def today(self) -> date | None:
        """The trading day being processed; None in on_init."""

    @property
    def day_index(self) -> int:
        """The position of today in the run (0 on the first day, -1 in on_init)."""

    # --- portfolio ---------------------------------------------------------------------------------------------
    @property
    def initial_cash(self) -> float: ...

    @property
    def cash(self) -> float:
        """Cash now, CNY (fees paid)."""

    @property
    def positions(self) -> IntArray:
        """Shares held per symbol (read-only copy of the engine's book)."""

    @property
    def sellable(self) -> IntArray:
        """Shares sellable today per symbol under T+1 (held minus bought today)."""

    @property
    def market_value(self) -> float:
        """Sum of shares times today's close (the last close for a suspended symbol), CNY."""

    @property
    def equity(self) -> float:
        """cash + market_value, CNY."""

    def position(self, symbol: str | int) -> int:
        """Shares held of one symbol."""

    def sellable_qty(self, symbol: str | int) -> int:
        """Shares of one symbol that may be sold today under T+1."""

    def column(self, ts_code: str) -> int:
        """The column of `ts_code` in the universe; KeyError naming it when absent."""

    # --- history and indicators ---------------------------------------------------------------------------------
    def history(self, field: Field | str, *, adjusted: bool = True) -> FloatArray:
        """Days x symbols up to and including today (a read-only view; row -1 is today). Prices are back-adjusted
        (hfq: price x adj_factor) unless `adjusted=False` or the bars carry no adj_factor. Any other numeric column
        of the bars (e.g. daily_basic's pe_ttm merged in) is served as given, NaN where there is no bar."""

    def history_fen(self, field: PriceField, *, adjusted: bool = True) -> IntArray:
        """As `history`, in integer fen (adjusted prices rounded to the fen once), for exact comparisons."""

    def rolling_sum_fen(self, n: int, field: PriceField = "close", *, adjusted: bool = True) -> IntArray:
        """Exact rolling sums of `n` prices in fen (days x symbols, up to today); 0 where the window is incomplete."""

    def indicator(
        self, name: str, *, field: str = "close", output: str | None = None, **params: int | float
    ) -> FloatArray:
        """Indicator `name` (any of shared.research.strategy.indicators: TA-Lib by name and the A-share staples)
        computed
        once over the whole run on adjusted prices, returned up to today (days x symbols)."""

    # --- orders (all fill at a later bar; each returns the order id(s)) ------------------------------------------
    def buy(self, symbol: Symbols, qty: Amount) -> int | IntArray:
        """Buy `qty` shares (a valid lot size for the board)."""

    def sell(self, symbol: Symbols, qty: Amount) -> int | IntArray:
        """Sell `qty` shares (lots, or the whole position)."""

    def order_value(self, symbol: Symbols, value: Amount) -> int | IntArray:
        """Buy (value > 0) or sell (value < 0) as many whole lots as `value` CNY is worth at the fill price."""

    def order_target_value(self, symbol: Symbols, value: Amount) -> int | IntArray:
        """Trade towards holding `value` CNY of the symbol, sized at the fill price; 0 closes the position."""

    def order_target_percent(self, symbol: Symbols, percent: Amount) -> int | IntArray:
        """order_target_value with value = percent x today's equity (0.1 = 10% of equity)."""

    def close_position(self, symbol: Symbols) -> int | IntArray:
        """Sell the whole position."""
