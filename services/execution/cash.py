"""An account's cash and what admission checks against it. Pure: the store reads the rows, this module does the
arithmetic, in integer fen.

balance   = the sum of the account's cash ledger (opening cash, deposits, withdrawals, every fill's cash);
reserved  = for every open buy order: its unfilled qty x its price cap (the limit price; for a market buy the
            limit-up price execution looked up when it admitted it), plus the fees of buying that amount;
available = balance - reserved.

Fees are shared/core/market's `trade_fees` (commission with its 5 CNY minimum, stamp duty on sells by date, transfer
fee, each rounded half-up to the fen), the same call that prices the trades."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from services.execution.admission import Refusal
from shared.core.domain import OrderSide, from_fen, to_fen
from shared.core.market.orders import buy_reservation_fen  # (execution's names for them too)
from shared.core.market.rules import Fees, trade_fees

# Ledger entry kinds.
OPENING = "opening"  # the paper account's opening cash, the first entry of every account
DEPOSIT = "deposit"
WITHDRAWAL = "withdrawal"
BUY_FILL = "buy_fill"
SELL_FILL = "sell_fill"

CASH_IN_LIEU = "cash_in_lieu"  # a corporate action's fraction of a share, paid in cash (execution/corporate.py)

# Idempotency keys of execution's own entries: "opening", "trade:<trade_id>" for each fill and
# "adjust:<instance or ->:<ts_code>:<ex_date>" for each corporate action's cash. A deposit or withdrawal may not use
# them (it would collide with, or pre-empt, one of these).
TRADE_KEY_PREFIX = "trade:"
ADJUSTMENT_KEY_PREFIX = "adjust:"


def trade_key(trade_id: str) -> str:
    return f"{TRADE_KEY_PREFIX}{trade_id}"


def reserved_key(idempotency_key: str) -> bool:
    """Whether a caller's idempotency key is one execution keeps for itself (compared without case)."""
    key = idempotency_key.lower()
    return key == OPENING or key.startswith(TRADE_KEY_PREFIX) or key.startswith(ADJUSTMENT_KEY_PREFIX)


def fees_fen(amount_fen: int, *, side: OrderSide, trade_date: date) -> tuple[int, Fees]:
    """The fees of one trade of `amount_fen`, in fen, and their parts."""
    fees = trade_fees(from_fen(amount_fen), is_sell=side is OrderSide.SELL, trade_date=trade_date)
    return to_fen(fees.total), fees


@dataclass(frozen=True)
class OpenBuy:
    """The unfilled remainder of a buy order that is not final, and the most it may pay a share."""

    remaining_qty: int
    cap_fen: int


@dataclass(frozen=True)
class Cash:
    balance_fen: int
    reserved_fen: int

    @property
    def available_fen(self) -> int:
        return self.balance_fen - self.reserved_fen


def account_cash(ledger_sum_fen: int, open_buys: Iterable[OpenBuy], *, today: date) -> Cash:
    reserved = sum(buy_reservation_fen(b.remaining_qty, b.cap_fen, today) for b in open_buys)
    return Cash(balance_fen=ledger_sum_fen, reserved_fen=reserved)


def buy_refusal(ts_code: str, qty: int, cap_fen: int, cash: Cash, *, today: date) -> Refusal | None:
    """Why a buy of `qty` at up to `cap_fen` a share cannot be admitted (it needs more than the available cash,
    fees included), or None."""
    needed = buy_reservation_fen(qty, cap_fen, today)
    if needed <= cash.available_fen:
        return None
    return Refusal(
        "insufficient_cash",
        f"cannot buy {qty} shares of {ts_code} at up to {cny(cap_fen)}: it needs {cny(needed)} CNY with fees, "
        f"{cny(cash.available_fen)} available (balance {cny(cash.balance_fen)}, reserved by open buys "
        f"{cny(cash.reserved_fen)})",
        {"needed": cny(needed), "available": cny(cash.available_fen)},
    )


def withdrawal_refusal(amount_fen: int, cash: Cash) -> Refusal | None:
    """Why a withdrawal of `amount_fen` (> 0) cannot be made (more than the available cash), or None."""
    if amount_fen <= cash.available_fen:
        return None
    return Refusal(
        "insufficient_cash",
        f"cannot withdraw {cny(amount_fen)} CNY: {cny(cash.available_fen)} available (balance "
        f"{cny(cash.balance_fen)}, reserved by open buys {cny(cash.reserved_fen)})",
        {"available": cny(cash.available_fen)},
    )


def cny(fen: int) -> str:
    """Fen as a CNY decimal string with two places, e.g. 123456 -> "1234.56"."""
    return str(from_fen(fen))
