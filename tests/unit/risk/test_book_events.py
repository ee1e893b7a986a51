"""Execution's events as the hot book's events (services/risk/state/snapshots.py), with figures worked by hand: a
trade's cash to the fen (the fees it carries, or for an older event the fees of its date), the session a fill counts
in for T+1 (a fill at a 15:00 close is that day's, a microsecond later the next trading day's), a buy's cap, every
holder's part of a corporate action by its key, a cash movement by its entry id; and execution's snapshot body parsed
into the port's BookSnapshot, a malformed one refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.execution.cash import fees_fen
from services.execution.corporate import adjustment_key
from services.risk.state.ports import (
    AdjustmentEvent,
    BookSnapshot,
    BookUnavailable,
    CashEvent,
    OrderEvent,
    SnapshotLots,
    SnapshotOrder,
    TradeEvent,
)
from services.risk.state.snapshots import BookEvents, SnapshotUnavailable, book_event, parse_snapshot
from shared.core.domain import OrderSide
from shared.core.market.orders import fill_cash_fen
from shared.platform.calendar import CalendarUnavailable, OrderSessions
from shared.platform.clock import EXCHANGE_TZ, fill_session
from shared.platform.events import (
    BarsUpdated,
    CashMoved,
    OrderDenied,
    OrderUpdated,
    PositionAdjusted,
    TradeExecuted,
    make_event,
)

ACCOUNT = "acct-kai"
INSTANCE = "b" * 32
# 2024-03-01 (Fri), 03-04 (Mon), 03-05 (Tue): the weekend between is closed
DAYS = [date(2024, 3, 1), date(2024, 3, 4), date(2024, 3, 5)]
CLOSE_0304 = datetime(2024, 3, 4, 15, 0, tzinfo=EXCHANGE_TZ)


def _order(**kw: Any) -> OrderUpdated:
    values: dict[str, Any] = {
        "order_id": "o1", "client_order_id": "c1", "account_id": ACCOUNT, "ts_code": "600000.SH", "side": "buy",
        "order_type": "limit", "qty": 1000, "price": Decimal("9.80"), "status": "accepted", "filled_qty": 0,
        "avg_fill_price": None, "updated_at": datetime(2024, 3, 5, 2, 0, tzinfo=UTC),
    }  # fmt: skip
    values.update(kw)
    return OrderUpdated(**values)


def _trade(**kw: Any) -> TradeExecuted:
    values: dict[str, Any] = {
        "trade_id": "t1", "order_id": "o1", "client_order_id": "c1", "account_id": ACCOUNT, "ts_code": "600000.SH",
        "side": "buy", "qty": 1000, "price": Decimal("10.00"), "amount": Decimal("10000.00"),
        "traded_at": datetime(2024, 3, 5, 10, 0, tzinfo=EXCHANGE_TZ), "commission": Decimal("5.00"),
        "stamp_duty": Decimal("0.00"), "transfer_fee": Decimal("0.10"),
    }  # fmt: skip
    values.update(kw)
    return TradeExecuted(**values)


def test_a_buy_pays_its_amount_and_fees_and_counts_in_its_session() -> None:
    # 1,000 x 10.00 = 10,000.00 + commission 5.00 (2.50 is below the minimum) + transfer fee 0.10 = 10,005.10
    event = book_event(make_event("trade.executed", _trade(), source="execution"), DAYS)
    assert event == TradeEvent(ACCOUNT, "t1", "c1", "600000.SH", OrderSide.BUY, 1000, -1_000_510, date(2024, 3, 5))
    # the second method: execution's own ledger figure for the fill
    assert fill_cash_fen(OrderSide.BUY, 1_000_000, fees_fen(1_000_000, side=OrderSide.BUY,
                                                             trade_date=date(2024, 3, 5))[0]) == -1_000_510  # fmt: skip


def test_a_sell_receives_its_amount_less_fees_with_the_stamp_duty_of_its_date_when_the_event_has_no_fees() -> None:
    # 400 x 10.00 = 4,000.00 - commission 5.00 - transfer fee 0.04 - stamp duty 0.1% until 2023-08-27 (4.00), 0.05%
    # from 2023-08-28 (2.00): 3,990.96 and 3,992.96; an event with its fees carries them.
    old = {"commission": None, "stamp_duty": None, "transfer_fee": None, "side": "sell", "qty": 400,
           "amount": Decimal("4000.00")}  # fmt: skip
    before = _trade(**old, traded_at=datetime(2023, 8, 25, 10, 0, tzinfo=EXCHANGE_TZ))
    after = _trade(**old, traded_at=datetime(2023, 8, 28, 10, 0, tzinfo=EXCHANGE_TZ))
    carried = _trade(**{**old, "commission": Decimal("5.00"), "stamp_duty": Decimal("2.00"),
                        "transfer_fee": Decimal("0.04")})  # fmt: skip
    cash = [book_event(make_event("trade.executed", t, source="execution")) for t in (before, after, carried)]
    assert [e.cash_fen for e in cash if isinstance(e, TradeEvent)] == [399_096, 399_296, 399_296]


def test_a_fill_counts_in_the_session_whose_close_is_at_or_after_it() -> None:
    at = [
        (CLOSE_0304 - timedelta(hours=5), date(2024, 3, 4)),  # 10:00 that day
        (CLOSE_0304, date(2024, 3, 4)),  # a paper fill at the close price, stamped 15:00:00: that day's
        (CLOSE_0304 + timedelta(microseconds=1), date(2024, 3, 5)),  # an evening fill: the next session's
        (datetime(2024, 3, 2, 10, 0, tzinfo=EXCHANGE_TZ), date(2024, 3, 4)),  # a Saturday: Monday's
        (datetime(2024, 3, 1, 16, 0, tzinfo=EXCHANGE_TZ), date(2024, 3, 4)),  # after Friday's close: Monday's
    ]
    sessions = [book_event(make_event("trade.executed", _trade(traded_at=t), source="execution"), DAYS) for t, _ in at]
    assert [e.session for e in sessions if isinstance(e, TradeEvent)] == [d for _, d in at]
    # without a calendar (a replay clock): by the calendar date of the fill, as execution splits sessions then
    assert fill_session(datetime(2024, 3, 2, 10, 0, tzinfo=EXCHANGE_TZ), None) == date(2024, 3, 2)
    assert fill_session(CLOSE_0304 + timedelta(hours=1), None) == date(2024, 3, 4)
    # past the calendar's last day, or before its second (the day before the fill's session is not known): the
    # calendar date too
    assert fill_session(datetime(2024, 3, 6, 10, 0, tzinfo=EXCHANGE_TZ), DAYS) == date(2024, 3, 6)
    assert fill_session(datetime(2024, 2, 29, 16, 0, tzinfo=EXCHANGE_TZ), DAYS) == date(2024, 2, 29)
    assert fill_session(datetime(2024, 3, 1, 10, 0, tzinfo=EXCHANGE_TZ), DAYS) == date(2024, 3, 1)


def test_an_order_event_names_a_buys_cap_and_the_session_it_is_for() -> None:
    def converted(payload: OrderUpdated) -> Any:
        return book_event(make_event(f"order.{payload.status}", payload, source="execution"))

    accepted = converted(_order(price_cap=Decimal("9.50"), price=Decimal("9.50"), session=date(2024, 3, 5)))
    assert accepted == OrderEvent(ACCOUNT, "c1", "600000.SH", OrderSide.BUY, 1000, "accepted", 0, 950, date(2024, 3, 5))
    # an event made before caps were carried: a limit buy's cap is its limit price; a market buy's is unknown
    assert converted(_order(status="filled", filled_qty=1000)).cap_fen == 980
    assert converted(_order(order_type="market", price=None)).cap_fen is None
    market = converted(_order(order_type="market", price=None, price_cap=Decimal("11.00"), status="partially_filled",
                              filled_qty=300))  # fmt: skip
    assert (market.cap_fen, market.status, market.filled_qty, market.session) == (1100, "partially_filled", 300, None)
    # a sell reserves shares, not cash: no cap
    sell = converted(_order(side="sell", status="cancelled", filled_qty=100))
    assert (sell.side, sell.cap_fen, sell.status, sell.filled_qty) == (OrderSide.SELL, None, "cancelled", 100)


def test_every_holders_part_of_a_corporate_action_is_the_accounts_by_its_own_key() -> None:
    # execution's positions of the account add every part (the account's own and each instance's), so the book does
    def adjusted(instance: str | None, before: int, after: int, cash: str) -> PositionAdjusted:
        return PositionAdjusted(
            account_id=ACCOUNT, strategy_instance_id=instance, ts_code="600030.SH", ex_date=date(2024, 3, 5),
            qty_before=before, qty_after=after, adj_factor=Decimal("2.105263"), previous_adj_factor=Decimal("1"),
            pre_close=Decimal("4.75"), cash_in_lieu=Decimal(cash), adjusted_at=datetime(2024, 3, 5, tzinfo=UTC),
        )  # fmt: skip

    parts = [adjusted(None, 400, 842, "0.50"), adjusted(INSTANCE, 100, 210, "2.50"), adjusted(INSTANCE, -1000, -2105,
             "-1.25")]  # fmt: skip
    events = [book_event(make_event("position.adjusted", p, source="execution")) for p in parts]
    assert events == [
        AdjustmentEvent(ACCOUNT, "adjust:-:600030.SH:2024-03-05", "600030.SH", 442, 50),
        AdjustmentEvent(ACCOUNT, f"adjust:{INSTANCE}:600030.SH:2024-03-05", "600030.SH", 110, 250),
        AdjustmentEvent(ACCOUNT, f"adjust:{INSTANCE}:600030.SH:2024-03-05", "600030.SH", -1105, -125),
    ]
    # the key is execution's (the adjustment's row and its ledger entry's)
    assert [p.key for p in parts[:2]] == [adjustment_key(None, "600030.SH", date(2024, 3, 5)),
                                          adjustment_key(INSTANCE, "600030.SH", date(2024, 3, 5))]  # fmt: skip


def test_a_cash_movement_by_its_entry_id_and_other_events_are_no_books() -> None:
    moved = CashMoved(entry_id="41", account_id=ACCOUNT, amount=Decimal("-1234.56"), kind="withdrawal",
                      moved_at=datetime(2024, 3, 5, tzinfo=UTC))  # fmt: skip
    assert book_event(make_event("cash.moved", moved, source="execution")) == CashEvent(ACCOUNT, "41", -123_456)
    denied = OrderDenied(decision_id="d", account_id=ACCOUNT, client_order_id="c", ts_code="600000.SH", side="buy",
                         order_type="limit", qty=100, price=Decimal("10"), reasons=(),
                         denied_at=datetime(2024, 3, 5, tzinfo=UTC))  # fmt: skip
    assert book_event(make_event("risk.order.denied", denied, source="risk")) is None
    bars = BarsUpdated(trade_date=None, start_date=date(2024, 3, 5), end_date=date(2024, 3, 5), symbols=1, rows=1)
    assert book_event(make_event("bars.updated", bars, source="data")) is None


def _snapshot_body(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "account_id": ACCOUNT,
        "as_of": "2024-03-05T02:00:00Z",
        "since": "2024-02-27T02:00:00Z",
        "balance_fen": 85_887_68,
        "orders": [
            {
                "client_order_id": "c1",
                "ts_code": "600000.SH",
                "side": "buy",
                "qty": 1000,
                "cap_fen": 950,
                "status": "partially_filled",
                "filled_qty": 300,
                "traded_qty": 300,
            },
            {
                "client_order_id": "c2",
                "ts_code": "600000.SH",
                "side": "sell",
                "qty": 200,
                "cap_fen": 0,
                "status": "submitted",
                "filled_qty": 0,
                "traded_qty": 0,
            },
        ],
        "lots": [{"ts_code": "600000.SH", "base": 1578, "bought_by_session": {"2024-03-04": 1500, "2024-03-05": 600}}],
        "trade_ids": ["t1", "t2"],
        "entry_keys": ["adjust:-:600000.SH:2024-03-05", "41"],
    }
    body.update(kw)
    return body


def test_executions_snapshot_is_read_as_the_ports_book_snapshot() -> None:
    assert parse_snapshot(_snapshot_body(), ACCOUNT) == BookSnapshot(
        account_id=ACCOUNT,
        as_of=datetime(2024, 3, 5, 2, 0, tzinfo=UTC),
        balance_fen=85_887_68,
        orders=(
            SnapshotOrder("c1", "600000.SH", OrderSide.BUY, 1000, 950, "partially_filled", 300, 300),
            SnapshotOrder("c2", "600000.SH", OrderSide.SELL, 200, 0, "submitted", 0, 0),
        ),
        lots=(SnapshotLots("600000.SH", 1578, {date(2024, 3, 4): 1500, date(2024, 3, 5): 600}),),
        trade_ids=frozenset({"t1", "t2"}),
        entry_keys=frozenset({"adjust:-:600000.SH:2024-03-05", "41"}),
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"balance_fen": "lots"}, "balance_fen"),
        (
            {"lots": [{"ts_code": "600000.SH", "base": 1, "bought_by_session": {"monday": 1}}]},
            "lots.0.bought_by_session",
        ),
        ({"orders": [{"client_order_id": "c1"}]}, "orders.0.ts_code"),
        ({"orders": [{**_snapshot_body()["orders"][0], "side": "short"}]}, "orders.0.side"),
        ({"account_id": "acct-other"}, "acct-other"),
    ],
)
def test_a_malformed_snapshot_or_another_accounts_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SnapshotUnavailable, match=message):
        parse_snapshot(_snapshot_body(**change), ACCOUNT)
    with pytest.raises(SnapshotUnavailable, match="malformed"):
        parse_snapshot(["not", "a", "snapshot"], ACCOUNT)


class _Calendar:
    def __init__(self) -> None:
        self.down = False

    async def trading_days(self, start: date, end: date) -> list[date]:
        if self.down:
            raise CalendarUnavailable("the data service is down")
        return [d for d in DAYS if start <= d <= end]


async def test_the_keepers_converter_reads_the_sessions_from_the_calendar_it_keeps() -> None:
    calendar = _Calendar()
    evening = make_event("trade.executed", _trade(traded_at=CLOSE_0304 + timedelta(hours=2)), source="execution")
    converted = await BookEvents(OrderSessions(calendar))(evening)
    assert isinstance(converted, TradeEvent) and converted.session == date(2024, 3, 5)  # after the close: Tuesday's
    # a replay clock, or no calendar: by calendar date, as execution splits them then
    replayed = await BookEvents(OrderSessions(calendar), replayed=lambda: date(2024, 3, 4))(evening)
    assert isinstance(replayed, TradeEvent) and replayed.session == date(2024, 3, 4)
    assert (await BookEvents(None)(evening)).session == date(2024, 3, 4)  # type: ignore[union-attr]
    # the calendar cannot be read (and none is kept): the event is not applied on a guess
    calendar.down = True
    with pytest.raises(BookUnavailable, match="the data service is down"):
        await BookEvents(OrderSessions(calendar))(evening)
    moved = make_event("cash.moved", CashMoved(entry_id="7", account_id=ACCOUNT, amount=Decimal("1.00"), kind="deposit",
                                               moved_at=datetime(2024, 3, 5, tzinfo=UTC)), source="execution")  # fmt: skip
    assert await BookEvents(OrderSessions(calendar))(moved) == CashEvent(ACCOUNT, "7", 100)  # no calendar needed
