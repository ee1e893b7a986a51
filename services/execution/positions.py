"""An account's positions, computed from its trades and its open sell orders: how many shares it holds and how
many it may sell today (T+1), and whether a sell may be admitted. Pure: the store reads the rows, this module does
the arithmetic; the oversell rule itself is shared with risk (shared/core/market/orders.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from services.execution.admission import Refusal
from shared.core.domain import OrderSide
from shared.core.market.orders import Holding, oversell_error
from shared.platform.clock import OrderSession


@dataclass(frozen=True)
class TradeLot:
    """Trades as positions need them: one trade, or the sum of several of one code and side that fall on the same
    side of T+1 (the store sums them)."""

    ts_code: str
    side: OrderSide
    qty: int
    traded_at: datetime  # aware; its exchange date (Asia/Shanghai) decides T+1


@dataclass(frozen=True)
class ShareAdjustment:
    """What corporate actions (bonus shares, splits) added to a position, summed over its ex-dates so far
    (services/execution/corporate.py): held and sellable from the ex-date on, as in the backtest engine."""

    ts_code: str
    qty: int


@dataclass(frozen=True)
class OpenSell:
    """The unfilled remainder of a sell order that is not final: shares promised to the broker already."""

    ts_code: str
    remaining_qty: int


def session_start(today: date, opens_after: datetime | None) -> datetime:
    """The moment after which a trade is one of session `today`'s (T+1): `opens_after` (the close of the trading day
    before it, on the real clock: an order placed after a close is for the next session, and so are the shares
    bought then), else the session's midnight (Asia/Shanghai), by calendar date."""
    return opens_after if opens_after is not None else OrderSession.of_date(today).opens_after


def holdings(
    trades: Iterable[TradeLot | ShareAdjustment],
    open_sells: Iterable[OpenSell],
    *,
    today: date,
    opens_after: datetime | None = None,
) -> list[Holding]:
    """Positions by ts_code (sorted), leaving out codes with nothing held.

    qty = all buys - all sells + what corporate actions added (`ShareAdjustment`). Shares bought in session `today`
    (traded after `opens_after`, by default on its exchange date: `session_start`) may be sold from the next trading
    day only (T+1, SSE/SZSE trading rules), so what can be sold in it is what was bought before it (and what
    corporate actions added: sellable on their ex-date, as in the backtest engine), less every sell so far (a sell
    can only have used shares sellable on its day, so sells come out of those first), less what open sell orders
    have reserved (so two resting sells cannot sell the same shares twice)."""
    starts = session_start(today, opens_after)
    bought_before: dict[str, int] = {}
    bought_today: dict[str, int] = {}
    sold: dict[str, int] = {}
    reserved: dict[str, int] = {}
    for trade in trades:
        if isinstance(trade, ShareAdjustment):
            book = bought_before
        elif trade.side is OrderSide.SELL:
            book = sold
        elif trade.traded_at > starts:
            book = bought_today
        else:
            book = bought_before
        book[trade.ts_code] = book.get(trade.ts_code, 0) + trade.qty
    for sell in open_sells:
        reserved[sell.ts_code] = reserved.get(sell.ts_code, 0) + max(sell.remaining_qty, 0)

    out: list[Holding] = []
    for ts_code in sorted(bought_before.keys() | bought_today.keys() | sold.keys()):
        before, new, out_qty = bought_before.get(ts_code, 0), bought_today.get(ts_code, 0), sold.get(ts_code, 0)
        qty = before + new - out_qty
        if qty == 0:
            continue
        sellable = max(before - out_qty - reserved.get(ts_code, 0), 0)
        out.append(Holding(ts_code=ts_code, qty=qty, sellable_qty=min(sellable, max(qty, 0))))
    return out


def sellable(positions: Iterable[Holding], ts_code: str) -> tuple[int, int]:
    """(held, sellable) of one security: (0, 0) when nothing is held."""
    holding = next((h for h in positions if h.ts_code == ts_code), None)
    return (0, 0) if holding is None else (holding.qty, holding.sellable_qty)


def sell_refusal(
    trades: Iterable[TradeLot | ShareAdjustment],
    open_sells: Iterable[OpenSell],
    ts_code: str,
    qty: int,
    *,
    today: date,
    opens_after: datetime | None = None,
) -> Refusal | None:
    """Why a sell of `qty` shares of `ts_code` in session `today` cannot be admitted (more than the sellable shares),
    or None."""
    held, can_sell = sellable(holdings(trades, open_sells, today=today, opens_after=opens_after), ts_code)
    message = oversell_error(ts_code, qty, Holding(ts_code=ts_code, qty=held, sellable_qty=can_sell))
    if message is None:
        return None
    return Refusal("insufficient_position", message, {"held_qty": held, "sellable_qty": can_sell})
