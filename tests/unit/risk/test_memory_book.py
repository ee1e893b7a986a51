"""The memory hot book (standalone mode) on hand-worked histories: reservations with their fees to the fen, T+1,
partial fills, a fill announced before its trade, a trade before its order, duplicates, release and expiry, a seed
that keeps fresh decisions. Fees: commission 0.025% with a 5.00 CNY minimum, transfer fee 0.001%, each rounded
half-up to the fen; no stamp duty on a buy (shared/core/market/rules.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.risk.state.book import buy_reservation_fen
from services.risk.state.memory_book import MemoryHotBook
from services.risk.state.ports import (
    AdjustmentEvent,
    BookSnapshot,
    CashEvent,
    HoldingView,
    OpenOrderView,
    OrderEvent,
    Reservation,
    SnapshotLots,
    SnapshotOrder,
    TradeEvent,
    Verdict,
)
from shared.core.domain import OrderSide

BUY, SELL = OrderSide.BUY, OrderSide.SELL
PREV, TODAY, NEXT = date(2026, 12, 4), date(2026, 12, 7), date(2026, 12, 8)
AT = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai
A = "acct-1"

# 3,000 at no more than 12.34: 37,020.00 + commission 9.255 -> 9.26 + transfer 0.3702 -> 0.37 = 37,029.63
NEED_3000_AT_1234 = 3_702_963
# 1,000 at 10.00: 10,000.00 + commission 2.50, the minimum 5.00 + transfer 0.10 = 10,005.10
NEED_1000_AT_1000 = 1_000_510
# 2,000 at 12.34: 24,680.00 + commission 6.17 + transfer 0.2468 -> 0.25 = 24,686.42
NEED_2000_AT_1234 = 2_468_642
# 300 at 10.00: 3,000.00 + 5.00 (minimum) + 0.03 = 3,005.03
NEED_300_AT_1000 = 300_503


def snapshot(
    balance: int, *, orders: tuple[SnapshotOrder, ...] = (), lots: tuple[SnapshotLots, ...] = ()
) -> BookSnapshot:
    return BookSnapshot(A, AT, balance, orders, lots, frozenset(), frozenset())


async def seeded(balance: int, **kw: object) -> MemoryHotBook:
    store = MemoryHotBook()
    await store.seed(snapshot(balance, **kw), keep_decided_since=AT)  # type: ignore[arg-type]
    return store


async def buy(store: MemoryHotBook, cid: str, qty: int, cap: int, *, at: datetime = AT) -> Reservation:
    need = buy_reservation_fen(qty, cap, TODAY)
    return await store.reserve(A, cid, ts_code="600000.SH", side=BUY, qty=qty, cap_fen=cap, need_fen=need,
                               session=TODAY, decided_at=at)  # fmt: skip


async def sell(store: MemoryHotBook, cid: str, qty: int, session: date, code: str = "600000.SH") -> Reservation:
    return await store.reserve(A, cid, ts_code=code, side=SELL, qty=qty, cap_fen=0, need_fen=0, session=session,
                               decided_at=AT)  # fmt: skip


def consistent(store: MemoryHotBook) -> bool:
    book = store.book(A)
    return book is not None and book.totals_consistent()


def test_the_reservations_worked_by_hand_are_executions() -> None:
    assert buy_reservation_fen(3000, 1234, TODAY) == NEED_3000_AT_1234
    assert buy_reservation_fen(1000, 1000, TODAY) == NEED_1000_AT_1000
    assert buy_reservation_fen(2000, 1234, TODAY) == NEED_2000_AT_1234
    assert buy_reservation_fen(300, 1000, TODAY) == NEED_300_AT_1000


async def test_buys_reserve_their_amount_and_fees_until_the_cash_runs_out() -> None:
    store = await seeded(5_000_000)
    assert await buy(store, "c1", 3000, 1234) == Reservation(Verdict.RESERVED, 5_000_000)
    assert await buy(store, "c2", 1000, 1000) == Reservation(Verdict.RESERVED, 5_000_000 - NEED_3000_AT_1234)
    left = 5_000_000 - NEED_3000_AT_1234 - NEED_1000_AT_1000
    assert left == 296_527 < NEED_300_AT_1000
    assert await buy(store, "c3", 300, 1000) == Reservation(Verdict.INSUFFICIENT_CASH, 296_527)
    assert await buy(store, "c1", 3000, 1234) == Reservation(Verdict.ALREADY)  # a retry: nothing changes
    view = await store.view(A, TODAY)
    assert view is not None
    assert (view.balance_fen, view.reserved_fen, view.available_fen) == (5_000_000, 5_000_000 - 296_527, 296_527)
    assert view.open_orders == (
        OpenOrderView("c1", "600000.SH", BUY, 1234, 3000, decided=True),
        OpenOrderView("c2", "600000.SH", BUY, 1000, 1000, decided=True),
    )
    assert consistent(store)


async def test_partial_fills_then_a_fill_announced_before_its_trade() -> None:
    store = await seeded(5_000_000)
    await buy(store, "c1", 3000, 1234)
    order = OrderEvent(A, "c1", "600000.SH", BUY, 3000, "accepted", 0, cap_fen=1234, session=TODAY)
    assert await store.apply(order)
    assert not await store.apply(order)  # a duplicate
    # 1,000 at 12.30: 12,300.00 + commission 3.075, the minimum 5.00 + transfer 0.123 -> 0.12 = 12,305.12
    assert await store.apply(TradeEvent(A, "t1", "c1", "600000.SH", BUY, 1000, -1_230_512, TODAY))
    assert await store.apply(OrderEvent(A, "c1", "600000.SH", BUY, 3000, "partially_filled", 1000, 1234, TODAY))
    view = await store.view(A, TODAY)
    assert view is not None
    assert (view.balance_fen, view.reserved_fen) == (5_000_000 - 1_230_512, NEED_2000_AT_1234)
    assert view.open_orders == (OpenOrderView("c1", "600000.SH", BUY, 1234, 2000, decided=False),)
    # filled, announced before the last trade: final, but its 2,000 shares are still to pay for
    assert await store.apply(OrderEvent(A, "c1", "600000.SH", BUY, 3000, "filled", 3000, 1234, TODAY))
    assert not await store.apply(OrderEvent(A, "c1", "600000.SH", BUY, 3000, "partially_filled", 1000, 1234))
    view = await store.view(A, TODAY)
    assert view is not None and view.reserved_fen == NEED_2000_AT_1234 and view.open_orders == ()
    # 2,000 at 12.34: 24,680.00 + 6.17 + 0.25 = 24,686.42
    assert await store.apply(TradeEvent(A, "t2", "c1", "600000.SH", BUY, 2000, -2_468_642, TODAY))
    assert not await store.apply(TradeEvent(A, "t2", "c1", "600000.SH", BUY, 2000, -2_468_642, TODAY))
    view = await store.view(A, TODAY)
    assert view is not None
    assert (view.balance_fen, view.reserved_fen) == (5_000_000 - 1_230_512 - 2_468_642, 0) == (1_300_846, 0)
    assert view.holdings == {"600000.SH": HoldingView("600000.SH", 3000, 0)}  # bought today: T+1
    assert consistent(store)


async def test_shares_bought_in_a_session_are_sellable_from_the_next() -> None:
    lots = (SnapshotLots("600000.SH", base=200, bought_by_session={PREV: 300, TODAY: 500}),)
    store = await seeded(1_000_000, lots=lots)
    assert await store.apply(TradeEvent(A, "t1", "b1", "600000.SH", BUY, 400, -400_504, TODAY))
    view = await store.view(A, TODAY)
    assert view is not None and view.holdings == {"600000.SH": HoldingView("600000.SH", 1400, 500)}  # 200 + 300
    assert await sell(store, "s1", 600, TODAY) == Reservation(Verdict.INSUFFICIENT_POSITION, 500)
    assert await sell(store, "s1", 400, TODAY) == Reservation(Verdict.RESERVED, 500)
    assert await sell(store, "s2", 200, TODAY) == Reservation(Verdict.INSUFFICIENT_POSITION, 100)
    # the next session: everything bought before it, less the 400 the open sell holds
    assert await sell(store, "s2", 1000, NEXT) == Reservation(Verdict.RESERVED, 1000)
    view = await store.view(A, NEXT)
    assert view is not None and view.holdings["600000.SH"].sellable_qty == 0
    # s1 sells 150 and is cancelled: 250 shares come back, 150 are gone
    assert await store.apply(TradeEvent(A, "t2", "s1", "600000.SH", SELL, 150, 149_000, TODAY))
    assert await store.apply(OrderEvent(A, "s1", "600000.SH", SELL, 400, "cancelled", 150))
    view = await store.view(A, NEXT)
    assert view is not None and view.holdings == {"600000.SH": HoldingView("600000.SH", 1250, 250)}
    assert await store.apply(AdjustmentEvent(A, "adj-1", "600000.SH", qty_delta=100, cash_fen=0))
    view = await store.view(A, TODAY)
    assert view is not None and view.holdings == {"600000.SH": HoldingView("600000.SH", 1350, 0)}
    # today: 200 + 300 + 100 - 150 sold - 1,000 held by s2 -> below zero: nothing
    assert consistent(store)


async def test_a_trade_before_its_order_is_counted_when_the_order_arrives() -> None:
    store = await seeded(1_000_000)
    # 500 at 10.00: 5,000.00 + 5.00 + 0.05
    assert await store.apply(TradeEvent(A, "t9", "c9", "600000.SH", BUY, 500, -500_505, TODAY))
    view = await store.view(A, NEXT)
    assert view is not None and (view.balance_fen, view.reserved_fen) == (499_495, 0)
    assert await store.apply(OrderEvent(A, "c9", "600000.SH", BUY, 800, "partially_filled", 500, 1000, TODAY))
    view = await store.view(A, NEXT)
    assert view is not None and view.reserved_fen == NEED_300_AT_1000  # 300 left of 800, not 800
    assert view.holdings == {"600000.SH": HoldingView("600000.SH", 500, 500)}
    assert consistent(store)


async def test_cash_and_adjustments_count_once() -> None:
    store = await seeded(0)
    assert await store.apply(CashEvent(A, "dep-1", 200_000))
    assert not await store.apply(CashEvent(A, "dep-1", 200_000))
    assert await store.apply(AdjustmentEvent(A, "adj-1", "000001.SZ", qty_delta=300, cash_fen=1_250))
    assert not await store.apply(AdjustmentEvent(A, "adj-1", "000001.SZ", qty_delta=300, cash_fen=1_250))
    view = await store.view(A, TODAY)
    assert view is not None and view.balance_fen == 201_250
    assert view.holdings == {"000001.SZ": HoldingView("000001.SZ", 300, 300)}


async def test_release_drops_only_an_order_execution_never_reported() -> None:
    store = await seeded(5_000_000)
    await buy(store, "c1", 1000, 1000)
    await buy(store, "c2", 1000, 1000)
    await store.apply(OrderEvent(A, "c2", "600000.SH", BUY, 1000, "accepted", 0, 1000, TODAY))
    await store.release(A, "c1")
    await store.release(A, "c2")  # reported: kept
    view = await store.view(A, TODAY)
    assert view is not None and view.reserved_fen == NEED_1000_AT_1000
    assert [o.client_order_id for o in view.open_orders] == ["c2"]
    # released, the id may be decided again
    assert (await buy(store, "c1", 1000, 1000)).verdict is Verdict.RESERVED
    # a rejection frees the reservation
    await store.apply(OrderEvent(A, "c2", "600000.SH", BUY, 1000, "rejected", 0, 1000, TODAY))
    view = await store.view(A, TODAY)
    assert view is not None and view.reserved_fen == NEED_1000_AT_1000
    assert consistent(store)


async def test_expire_drops_decisions_older_than_the_cutoff_never_reported() -> None:
    store = await seeded(5_000_000)
    await buy(store, "old", 1000, 1000, at=AT)
    await buy(store, "old-reported", 1000, 1000, at=AT)
    await buy(store, "new", 300, 1000, at=AT + timedelta(minutes=10))
    await store.apply(OrderEvent(A, "old-reported", "600000.SH", BUY, 1000, "submitted", 0, 1000, TODAY))
    assert await store.expire_decided(AT + timedelta(minutes=5)) == 1
    assert await store.expire_decided(AT + timedelta(minutes=5)) == 0
    view = await store.view(A, TODAY)
    assert view is not None and view.reserved_fen == NEED_1000_AT_1000 + NEED_300_AT_1000
    assert [o.client_order_id for o in view.open_orders] == ["new", "old-reported"]
    assert consistent(store)


async def test_a_seed_replaces_the_book_but_keeps_fresh_decisions_it_lacks() -> None:
    store = await seeded(5_000_000)
    await buy(store, "stale", 1000, 1000, at=AT)
    await buy(store, "fresh", 300, 1000, at=AT + timedelta(minutes=10))
    await buy(store, "known", 1000, 1000, at=AT + timedelta(minutes=10))
    await store.apply(CashEvent(A, "dep-1", 123))
    # execution's snapshot: "known" filled 1,000 of which 400 traded, the account's 600000.SH lots
    orders = (SnapshotOrder("known", "600000.SH", BUY, 1000, 1000, "filled", 1000, 400),)
    lots = (SnapshotLots("600000.SH", base=400),)
    snap = BookSnapshot(A, AT + timedelta(minutes=11), 4_000_000, orders, lots, frozenset({"t1"}), frozenset({"dep-1"}))
    await store.seed(snap, keep_decided_since=AT + timedelta(minutes=5))
    view = await store.view(A, TODAY)
    assert view is not None
    # "known" owes 600 at 10.00: 6,000.00 + 5.00 + 0.06 = 6,005.06; "fresh" is kept; "stale" is dropped
    assert (view.balance_fen, view.reserved_fen) == (4_000_000, 600_506 + NEED_300_AT_1000)
    assert [o.client_order_id for o in view.open_orders] == ["fresh"]
    assert view.holdings == {"600000.SH": HoldingView("600000.SH", 400, 400)}
    assert not await store.apply(CashEvent(A, "dep-1", 123))  # counted by the snapshot
    assert not await store.apply(TradeEvent(A, "t1", "known", "600000.SH", BUY, 400, -400_504, TODAY))
    assert consistent(store)


async def test_an_account_not_seeded_is_neither_read_nor_fed() -> None:
    store = MemoryHotBook()
    assert not await store.seeded(A)
    assert await store.view(A, TODAY) is None
    assert not await store.apply(CashEvent(A, "dep-1", 100))
    assert (await buy(store, "c1", 100, 1000)).verdict is Verdict.NOT_SEEDED
    await store.seed(snapshot(0), keep_decided_since=AT)
    assert await store.seeded(A)
    await store.drop(A)
    assert not await store.seeded(A)


async def test_a_drop_that_forgets_events_seeds_from_the_snapshot_alone() -> None:
    # A spurious deposit of 1.23 is kept among the recent events: a plain drop's next seed applies it again over the
    # snapshot (an event that came while the snapshot was read), one that forgets the events does not.
    store = await seeded(10_000)
    assert await store.apply(CashEvent(A, "spurious", 123))
    await store.drop(A)
    await store.seed(snapshot(10_000), keep_decided_since=AT)
    view = await store.view(A, TODAY)
    assert view is not None and view.balance_fen == 10_123
    await store.drop(A, forget_events=True)
    await store.seed(snapshot(10_000), keep_decided_since=AT)
    view = await store.view(A, TODAY)
    assert view is not None and view.balance_fen == 10_000


async def test_an_order_that_is_over_gives_back_what_it_still_reserved() -> None:
    # Its trade arrives before risk decides it again (a retry after the decision expired): the decided buy reserves
    # its whole need, owes nothing; execution's final event then retires it, and nothing stays reserved.
    store = await seeded(10_000_000)
    await store.apply(TradeEvent(A, "t-1", "c-9", "600000.SH", BUY, 1000, -1_000_510, TODAY))
    assert (await buy(store, "c-9", 1000, 1000)).verdict is Verdict.RESERVED
    await store.apply(OrderEvent(A, "c-9", "600000.SH", BUY, 1000, "filled", 1000, cap_fen=1000))
    view = await store.view(A, TODAY)
    assert view is not None and view.reserved_fen == 0 and view.open_orders == ()
    book = store.book(A)
    assert book is not None and book.totals_consistent() and "c-9" in book.done
