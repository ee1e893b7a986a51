"""What an engine offers a strategy while it runs: the universe, the account, and orders. A backtest engine
implements it today; paper and live engines will implement the same protocol."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Protocol


class StrategyContext(Protocol):
    @property
    def universe(self) -> tuple[str, ...]:
        """The ts_codes the run was started with, in the order given."""

    @property
    def initial_cash(self) -> Decimal: ...

    @property
    def cash(self) -> Decimal:
        """Cash now, in CNY (fees already paid)."""

    @property
    def today(self) -> date | None:
        """The trading day being processed; None in on_init."""

    def position(self, ts_code: str) -> int:
        """Shares held."""

    def buy_value(self, ts_code: str, value: Decimal) -> None:
        """Buy as many shares as `value` CNY pays for, fees included, at the next open at which `ts_code`
        trades (a suspended symbol waits), in the lots its board allows. Never spends more than the cash
        available at the fill."""
