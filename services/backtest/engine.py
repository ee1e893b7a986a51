"""The backtest engine: drives a `Strategy` over daily bars, fills its orders at the open, marks the account to
market at the close, and summarises the run. Pure: no I/O, so it runs the same in a worker, a test or a notebook.

What this skeleton models, and what it does not yet:
- Prices are unadjusted: dividends, bonus shares and splits are ignored (a held stock "loses" its dividend on
  the ex-date). A later issue brings adj factors and corporate actions.
- Orders are market buys sized by value (`StrategyContext.buy_value`), filled in full at the open of the next
  bar of the symbol, in the lots its board allows (main board/ChiNext: multiples of 100; STAR: at least 200,
  then single shares; BSE: at least 100, then single shares), with commission (5 CNY minimum) and transfer fee
  from `shared.market.rules.trade_fees`. No selling yet, so no stamp duty and no T+1 bookkeeping; no price-limit
  check (a stock opening at its limit-up would in reality often not fill); no volume cap or slippage.
- Money is integer fen throughout; each fee component is rounded half-up to the fen by `trade_fees`.
- Equity each trading day = cash + sum(qty * close), the last known close for a suspended symbol. It is a
  mark-to-market value, not a liquidation value (selling fees and stamp duty are not deducted).
- Ratios are exact fractions of fen amounts, rounded half-even to 8 decimal places at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from types import MappingProxyType
from typing import Any

from shared.domain.codes import Board, parse_ts_code
from shared.domain.models import Bar
from shared.domain.money import from_fen, to_fen
from shared.market.rules import FeeSchedule, buy_qty_error, trade_fees
from shared.strategy import Strategy

TRADING_DAYS_PER_YEAR = 252
RATIO_QUANTUM = Decimal("0.00000001")


class EngineError(ValueError):
    """The run cannot go on: inconsistent input or a strategy misusing the context."""


@dataclass(frozen=True)
class Fill:
    trade_date: date
    ts_code: str
    qty: int
    price: Decimal
    amount: Decimal  # qty * price
    fees: Decimal  # commission + transfer fee (+ stamp duty on sells, when there are sells)

    def as_json(self) -> dict[str, Any]:
        return {
            "trade_date": self.trade_date.isoformat(),
            "ts_code": self.ts_code,
            "side": "buy",
            "qty": self.qty,
            "price": str(self.price),
            "amount": str(self.amount),
            "fees": str(self.fees),
        }


@dataclass(frozen=True)
class UnfilledOrder:
    ts_code: str
    value: Decimal
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"ts_code": self.ts_code, "value": str(self.value), "reason": self.reason}


@dataclass(frozen=True)
class EquityPoint:
    trade_date: date
    equity: Decimal


@dataclass(frozen=True)
class Summary:
    initial_cash: Decimal
    final_equity: Decimal
    total_return: Decimal  # final / initial - 1
    annual_return: Decimal  # (1 + total) ** (252 / trading_days) - 1
    max_drawdown: Decimal  # largest fall from a running peak (the initial cash counts as the first peak), >= 0
    fees_paid: Decimal
    trading_days: int

    def as_json(self) -> dict[str, Any]:
        return {
            "initial_cash": str(self.initial_cash),
            "final_equity": str(self.final_equity),
            "total_return": str(self.total_return),
            "annual_return": str(self.annual_return),
            "max_drawdown": str(self.max_drawdown),
            "fees_paid": str(self.fees_paid),
            "trading_days": self.trading_days,
        }


@dataclass(frozen=True)
class BacktestResult:
    summary: Summary
    equity_curve: list[EquityPoint]
    fills: list[Fill]
    unfilled: list[UnfilledOrder]

    def summary_json(self) -> dict[str, Any]:
        """The summary as stored and served: the metrics, the trades and the orders that never filled."""
        return {
            **self.summary.as_json(),
            "trades": [f.as_json() for f in self.fills],
            "unfilled": [u.as_json() for u in self.unfilled],
        }


def lot_step(board: Board) -> int:
    """The quantity step of a buy above the board minimum: main board and ChiNext trade in lots of 100;
    STAR (from 200) and BSE (from 100) in single shares. `buy_qty_error` is the authority on what is valid."""
    return 1 if board in (Board.STAR, Board.BSE) else 100


def buy_fees_fen(amount_fen: int, trade_date: date, schedule: FeeSchedule) -> int:
    return to_fen(trade_fees(from_fen(amount_fen), is_sell=False, trade_date=trade_date, schedule=schedule).total)


def affordable_buy_qty(board: Board, price_fen: int, budget_fen: int, trade_date: date, schedule: FeeSchedule) -> int:
    """The most shares a buy may take such that amount + fees <= budget, in the lots the board allows; 0 when
    not even the smallest allowed buy fits."""
    step = lot_step(board)
    qty = budget_fen // price_fen
    qty -= qty % step
    while qty > 0:
        if buy_qty_error(board, qty) is not None:
            return 0  # below the board's minimum buy; fewer shares would not be allowed either
        amount = qty * price_fen
        if amount + buy_fees_fen(amount, trade_date, schedule) <= budget_fen:
            return qty
        qty -= step
    return 0


def ratio(numerator: int, denominator: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 34
        return (Decimal(numerator) / Decimal(denominator)).quantize(RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)


def annualised(final_fen: int, initial_fen: int, trading_days: int) -> Decimal:
    """(1 + total_return) ** (252 / trading_days) - 1, from the exact fen amounts."""
    with localcontext() as ctx:
        ctx.prec = 34
        growth = Decimal(final_fen) / Decimal(initial_fen)
        value = growth ** (Decimal(TRADING_DAYS_PER_YEAR) / Decimal(trading_days)) - 1
        return value.quantize(RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)


def max_drawdown(initial_fen: int, equity_fen: Iterable[int]) -> Decimal:
    peak, worst = initial_fen, Decimal(0)
    for value in equity_fen:
        peak = max(peak, value)
        if peak > 0 and value < peak:
            with localcontext() as ctx:
                ctx.prec = 34
                worst = max(worst, Decimal(peak - value) / Decimal(peak))
    return worst.quantize(RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass
class _PendingBuy:
    ts_code: str
    value_fen: int


@dataclass
class _BacktestAccount:
    """The engine's side of `StrategyContext`: cash and positions in integer fen/shares, pending orders."""

    universe: tuple[str, ...]
    initial_cash_fen: int
    cash_fen: int
    today: date | None = None
    positions: dict[str, int] = field(default_factory=dict)
    pending: list[_PendingBuy] = field(default_factory=list)

    @property
    def initial_cash(self) -> Decimal:
        return from_fen(self.initial_cash_fen)

    @property
    def cash(self) -> Decimal:
        return from_fen(self.cash_fen)

    def position(self, ts_code: str) -> int:
        return self.positions.get(ts_code, 0)

    def buy_value(self, ts_code: str, value: Decimal) -> None:
        if ts_code not in self.universe:
            raise EngineError(f"buy_value({ts_code!r}): not in the universe of this run")
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise EngineError(f"buy_value({ts_code!r}, {value!r}): value must be a positive Decimal")
        # Fractions of a fen cannot be spent: the budget is rounded down.
        value_fen = int((value * 100).to_integral_value(rounding=ROUND_FLOOR))
        self.pending.append(_PendingBuy(ts_code, value_fen))


def _trading_days(bars: Mapping[str, Sequence[Bar]], calendar: Iterable[date], start: date, end: date) -> list[date]:
    """Days with a bar, plus the calendar days between the first and the last of them: the calendar fills in a
    day on which every symbol was suspended, but does not stretch the run beyond the data that exists."""
    days = {b.trade_date for series in bars.values() for b in series if start <= b.trade_date <= end}
    if days:
        first, last = min(days), max(days)
        days.update(d for d in calendar if first <= d <= last)
    return sorted(days)


def _bars_by_day(bars: Mapping[str, Sequence[Bar]], start: date, end: date) -> dict[date, dict[str, Bar]]:
    by_day: dict[date, dict[str, Bar]] = {}
    for ts_code, series in bars.items():
        for bar in series:
            if not start <= bar.trade_date <= end:
                continue
            if bar.ts_code != ts_code:
                raise EngineError(f"a bar of {bar.ts_code} was given as {ts_code}")
            day = by_day.setdefault(bar.trade_date, {})
            if ts_code in day:
                raise EngineError(f"two bars of {ts_code} on {bar.trade_date}")
            if bar.open <= 0 or bar.close <= 0:
                raise EngineError(f"{ts_code} {bar.trade_date}: prices must be positive")
            day[ts_code] = bar
    return by_day


def run_backtest(
    strategy: Strategy,
    bars: Mapping[str, Sequence[Bar]],
    *,
    universe: Sequence[str],
    initial_cash: Decimal,
    start: date,
    end: date,
    calendar: Iterable[date] = (),
    fee_schedule: FeeSchedule | None = None,
) -> BacktestResult:
    """Run `strategy` over the daily `bars` (by ts_code) of `universe` from `start` to `end`, inclusive.

    The trading days are the days that have a bar, plus the `calendar` days between the first and the last of
    them (so a day on which every symbol was suspended still counts when the calendar knows it). Each day:
    pending orders fill at the open of the symbols that trade; then `on_bar` sees the day's bars; then the
    account is marked at the close.
    """
    if not universe:
        raise EngineError("the universe is empty")
    if start > end:
        raise EngineError(f"start {start} is after end {end}")
    schedule = fee_schedule or FeeSchedule()
    boards = {code: parse_ts_code(code).board for code in universe}
    initial_fen = to_fen(initial_cash)
    if initial_fen <= 0:
        raise EngineError("initial cash must be positive")
    unknown = set(bars) - set(universe)
    if unknown:
        raise EngineError(f"bars given for symbols outside the universe: {sorted(unknown)}")
    days = _trading_days(bars, calendar, start, end)
    if not days:
        raise EngineError(f"no bars between {start} and {end}")
    by_day = _bars_by_day(bars, start, end)

    account = _BacktestAccount(universe=tuple(universe), initial_cash_fen=initial_fen, cash_fen=initial_fen)
    last_close: dict[str, int] = {}
    fills: list[Fill] = []
    unfilled: list[UnfilledOrder] = []
    fees_fen = 0
    curve: list[EquityPoint] = []
    curve_fen: list[int] = []

    strategy.on_init(account)
    for day in days:
        account.today = day
        today = by_day.get(day, {})
        still_pending: list[_PendingBuy] = []
        for order in account.pending:
            bar = today.get(order.ts_code)
            if bar is None:  # suspended, or not listed yet: the order waits for the symbol's next open
                still_pending.append(order)
                continue
            open_fen = to_fen(bar.open)
            budget = min(order.value_fen, account.cash_fen)
            qty = affordable_buy_qty(boards[order.ts_code], open_fen, budget, day, schedule)
            if qty == 0:
                unfilled.append(
                    UnfilledOrder(
                        order.ts_code,
                        from_fen(order.value_fen),
                        f"{from_fen(budget)} CNY does not buy the smallest allowed lot at the {day} open of "
                        f"{bar.open} (fees included)",
                    )
                )
                continue
            amount = qty * open_fen
            fee = buy_fees_fen(amount, day, schedule)
            account.cash_fen -= amount + fee
            account.positions[order.ts_code] = account.positions.get(order.ts_code, 0) + qty
            fees_fen += fee
            fills.append(Fill(day, order.ts_code, qty, bar.open, from_fen(amount), from_fen(fee)))
        account.pending = still_pending

        for ts_code, bar in today.items():
            last_close[ts_code] = to_fen(bar.close)
        strategy.on_bar(account, MappingProxyType(today))

        equity = account.cash_fen + sum(qty * last_close[code] for code, qty in account.positions.items() if qty)
        curve_fen.append(equity)
        curve.append(EquityPoint(day, from_fen(equity)))

    account.today = days[-1]
    strategy.on_stop(account)
    for order in account.pending:
        unfilled.append(
            UnfilledOrder(order.ts_code, from_fen(order.value_fen), f"no bar of {order.ts_code} to fill at by {end}")
        )

    final_fen = curve_fen[-1]
    summary = Summary(
        initial_cash=from_fen(initial_fen),
        final_equity=from_fen(final_fen),
        total_return=ratio(final_fen - initial_fen, initial_fen),
        annual_return=annualised(final_fen, initial_fen, len(days)),
        max_drawdown=max_drawdown(initial_fen, curve_fen),
        fees_paid=from_fen(fees_fen),
        trading_days=len(days),
    )
    return BacktestResult(summary=summary, equity_curve=curve, fills=fills, unfilled=unfilled)
