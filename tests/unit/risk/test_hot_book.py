"""Risk's hot book against execution's own arithmetic (a second method): for random histories of decisions, orders,
fills and cash delivered in a random order, the book ends with execution's balance, available cash, holdings and
sellable shares; and before the last event, it never offers more cash or shares than it does at the end (every gap
errs on risk's side)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest

from services.execution.cash import OpenBuy, account_cash, fees_fen
from services.execution.positions import OpenSell, ShareAdjustment, TradeLot, holdings
from services.risk.state.book import DECIDED, AccountBook
from services.risk.state.ports import AdjustmentEvent, CashEvent, OrderEvent, TradeEvent
from shared.core.domain import OrderSide
from shared.core.market.orders import Holding, fill_cash_fen
from shared.platform.clock import EXCHANGE_TZ

DAY1, TODAY = date(2026, 12, 4), date(2026, 12, 7)
CODES = ("600000.SH", "000001.SZ", "600519.SH")


@dataclass
class Order:
    cid: str
    code: str
    side: OrderSide
    qty: int
    cap_fen: int
    fills: list[tuple[str, int, int, datetime]]  # trade id, qty, price fen, traded at
    final: str | None  # None: still open at the end


def history(rng: random.Random) -> tuple[int, list[Order]]:
    opening = rng.randrange(1_000_000, 50_000_000)
    orders = []
    for i in range(rng.randrange(1, 25)):
        side = rng.choice((OrderSide.BUY, OrderSide.SELL))
        qty = 100 * rng.randrange(1, 30)
        cap = rng.randrange(500, 5000)
        fills, left = [], qty
        day = rng.choice((DAY1, TODAY))
        for k in range(rng.randrange(0, 4)):
            if left == 0:
                break
            q = min(left, 100 * rng.randrange(1, 10))
            left -= q
            at = datetime.combine(day, time(10, k), tzinfo=EXCHANGE_TZ)
            fills.append((f"t{i}-{k}", q, cap - rng.randrange(0, 50), at))
        final = "filled" if left == 0 else rng.choice((None, "cancelled", "expired"))
        if not fills and final == "filled":
            final = "rejected"
        orders.append(Order(f"c{i}", rng.choice(CODES), side, qty, cap, fills, final))
    return opening, orders


def events(opening: int, orders: list[Order], rng: random.Random) -> tuple[list, list]:
    """(risk's own decisions, applied first; execution's events, to deliver in any order)."""
    decided = [("order", o, DECIDED, 0) for o in orders]
    stream: list = [("cash", "opening", opening)]
    for o in orders:
        stream.append(("order", o, "accepted", 0))
        filled = 0
        for trade_id, q, price, at in o.fills:
            filled += q
            stream.append(("trade", o, trade_id, q, price, at))
            stream.append(("order", o, "partially_filled" if filled < o.qty else "filled", filled))
        if o.final is not None and o.final != "filled":
            stream.append(("order", o, o.final, filled))
    rng.shuffle(stream)
    return decided, stream


def apply(book: AccountBook, event: tuple) -> None:
    kind = event[0]
    if kind == "cash":
        book.apply(CashEvent("acct", event[1], event[2]))
    elif kind == "order":
        o, status, filled = event[1], event[2], event[3]
        book.apply(OrderEvent("acct", o.cid, o.code, o.side, o.qty, status, filled, cap_fen=o.cap_fen))
    else:
        o, trade_id, q, price, at = event[1:]
        fee, _ = fees_fen(q * price, side=o.side, trade_date=at.astimezone(EXCHANGE_TZ).date())
        cash = fill_cash_fen(o.side, q * price, fee)
        book.apply(TradeEvent("acct", trade_id, o.cid, o.code, o.side, q, cash, session=at.date()))


def available_fen(book: AccountBook, session: date) -> int:
    return book.view(session).available_fen


def holdings_of(book: AccountBook, session: date) -> list[Holding]:
    return [
        Holding(ts_code=h.ts_code, qty=h.qty, sellable_qty=h.sellable_qty) for h in book.view(session).holdings.values()
    ]


def executions_view(opening: int, orders: list[Order]) -> tuple[int, int, list]:
    """What execution computes from its rows: (balance, available, holdings)."""
    balance, lots, open_buys, open_sells = opening, [], [], []
    for o in orders:
        for _, q, price, at in o.fills:
            fee, _ = fees_fen(q * price, side=o.side, trade_date=at.astimezone(EXCHANGE_TZ).date())
            balance += fill_cash_fen(o.side, q * price, fee)
            lots.append(TradeLot(o.code, o.side, q, at))
        remaining = o.qty - sum(f[1] for f in o.fills)
        if o.final is None and remaining:
            if o.side is OrderSide.BUY:
                open_buys.append(OpenBuy(remaining, o.cap_fen))
            else:
                open_sells.append(OpenSell(o.code, remaining))
    cash = account_cash(balance, open_buys, today=TODAY)
    return balance, cash.available_fen, holdings(lots, open_sells, today=TODAY)


@pytest.mark.parametrize("seed", range(60))
def test_the_book_ends_as_execution_computes_and_errs_on_risks_side_before(seed: int) -> None:
    rng = random.Random(seed)
    opening, orders = history(rng)
    decided, stream = events(opening, orders, rng)
    book = AccountBook("acct")
    for event in decided:
        apply(book, event)
    prefixes = []
    for event in stream:
        apply(book, event)
        prefixes.append((available_fen(book, TODAY), {h.ts_code: h.sellable_qty for h in holdings_of(book, TODAY)}))
        assert book.totals_consistent()
    for event in stream[: len(stream) // 2]:  # redelivered: nothing changes
        apply(book, event)
    balance, available, held = executions_view(opening, orders)
    assert book.balance_fen == balance
    assert available_fen(book, TODAY) == available
    assert holdings_of(book, TODAY) == held
    final_sellable = {h.ts_code: h.sellable_qty for h in held}
    for cash, sellable in prefixes:
        assert cash <= available
        assert all(q <= final_sellable.get(code, 0) for code, q in sellable.items())


def test_a_fill_announced_before_its_trade_is_still_paid_for() -> None:
    # 1,000 shares at a cap of 10.00: reserved 10,000 + commission 5.00 (the minimum) + transfer fee 0.10 = 10,005.10
    book = AccountBook("acct")
    book.apply(CashEvent("acct", "opening", 2_000_000))
    book.apply(OrderEvent("acct", "c1", "600000.SH", OrderSide.BUY, 1000, DECIDED, 0, cap_fen=1000))
    assert available_fen(book, TODAY) == 2_000_000 - 1_000_510
    book.apply(OrderEvent("acct", "c1", "600000.SH", OrderSide.BUY, 1000, "filled", 1000, cap_fen=1000))
    assert available_fen(book, TODAY) == 2_000_000 - 1_000_510  # final, but its trade has not come: still reserved
    at = datetime.combine(TODAY, time(10), tzinfo=EXCHANGE_TZ)
    # the trade at 9.98: 9,980 + 5.00 + 0.0998 -> 0.10 = 9,985.10
    trade = TradeEvent("acct", "t1", "c1", "600000.SH", OrderSide.BUY, 1000, -998_510, session=at.date())
    assert book.apply(trade)
    assert available_fen(book, TODAY) == 2_000_000 - 998_510
    assert holdings_of(book, TODAY)[0].sellable_qty == 0  # bought today: T+1
    assert holdings_of(book, TODAY + timedelta(days=1))[0].sellable_qty == 1000
    assert not book.apply(trade)
    assert book.balance_fen == 2_000_000 - 998_510 and Decimal(book.balance_fen) / 100 == Decimal("10014.90")


def test_a_corporate_action_adds_sellable_shares_and_cash_once() -> None:
    # 400 bought in the session before, 10-for-10 bonus plus a dividend: 400 -> 842 and 0.50 CNY (execution's
    # position.adjusted), sellable at once; as execution's holdings of a ShareAdjustment
    book = AccountBook("acct")
    book.apply(CashEvent("acct", "opening", 1_000_000))
    book.apply(TradeEvent("acct", "t1", "c1", "600030.SH", OrderSide.BUY, 400, -400_510, session=DAY1))
    adjustment = AdjustmentEvent("acct", "adjust:-:600030.SH:2026-12-07", "600030.SH", qty_delta=442, cash_fen=50)
    assert book.apply(adjustment)
    assert not book.apply(adjustment)
    bought = datetime.combine(DAY1, time(10), tzinfo=EXCHANGE_TZ)
    lots: list[TradeLot | ShareAdjustment] = [TradeLot("600030.SH", OrderSide.BUY, 400, bought)]
    lots.append(ShareAdjustment("600030.SH", 442))
    assert (
        holdings_of(book, TODAY)
        == holdings(lots, [], today=TODAY)
        == [Holding(ts_code="600030.SH", qty=842, sellable_qty=842)]
    )
    assert book.balance_fen == 1_000_000 - 400_510 + 50


def test_an_order_whose_outcome_is_unknown_stays_open_and_reserved() -> None:
    # a QMT order sent without an answer (`unknown`) may be at the broker: its cash stays reserved until settled.
    # 1,000 at a cap of 10.00: 10,000 + 5.00 commission + 0.10 transfer fee = 10,005.10 reserved
    book = AccountBook("acct")
    book.apply(CashEvent("acct", "opening", 2_000_000))
    book.apply(OrderEvent("acct", "c1", "600000.SH", OrderSide.BUY, 1000, "accepted", 0, cap_fen=1000))
    book.apply(OrderEvent("acct", "c1", "600000.SH", OrderSide.BUY, 1000, "unknown", 0, cap_fen=1000))
    assert available_fen(book, TODAY) == 2_000_000 - 1_000_510
    assert [o.client_order_id for o in book.view(TODAY).open_orders] == ["c1"]
    # settled: it never reached the broker
    book.apply(OrderEvent("acct", "c1", "600000.SH", OrderSide.BUY, 1000, "rejected", 0, cap_fen=1000))
    assert available_fen(book, TODAY) == 2_000_000
