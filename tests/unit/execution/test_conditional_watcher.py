"""The conditional orders' watcher (services/execution/conditional/watcher.py) on a SQLite store, with risk, the live
prices and execution's orders faked: a quote crossing a stop fires it once (the same round delivered twice places one
child), OCO legs cancel each other, a bracket's legs wait for the entry to fill, a time condition fires at its moment,
a trigger missed while down fires or expires as the order says, and risk's refusals and "not now" are recorded."""

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.execution.conditional.rules import ConditionType, Kind, OnMissed, Status
from services.execution.conditional.store import Conditional, ConditionalStore
from services.execution.conditional.watcher import ConditionalWatcher, LivePrice
from services.execution.store import metadata, outbox
from shared.core.domain import OrderSide, OrderStatus
from shared.platform.db import Database
from shared.platform.events import LiveQuote, QuotesSnapshot, make_event
from shared.platform.observability import new_id

D = Decimal
CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=CST)
CODE = "600000.SH"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeRisk:
    """Approves every child (201 with an order) unless told to answer otherwise; records every request."""

    def __init__(self) -> None:
        self.requests: list[Conditional] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.orders: dict[str, str] = {}  # client_order_id -> order_id: the same id is one order

    async def submit_child(self, c: Conditional) -> tuple[int, dict[str, Any]]:
        self.requests.append(c)
        if self.answers:
            return self.answers.pop(0)
        order_id = self.orders.setdefault(c.client_order_id, new_id())
        return 201, {"order": {"order_id": order_id, "status": "accepted"}, "decision": {"decision_id": "d1"}}


class FakePrices:
    def __init__(self) -> None:
        self.quotes: dict[str, LivePrice] = {}

    async def live(self, ts_code: str) -> LivePrice | None:
        return self.quotes.get(ts_code)


class FakeOrders:
    def __init__(self) -> None:
        self.states: dict[str, tuple[OrderStatus, int]] = {}

    async def order_status(self, order_id: str) -> tuple[OrderStatus, int] | None:
        return self.states.get(order_id)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/cond.db")
    await database.connect()
    async with database.session() as s:
        await s.run_sync(metadata.create_all)
    yield database
    await database.dispose()


class Rig:
    def __init__(self, db: Database) -> None:
        self.clock = Clock()
        self.store = ConditionalStore(db)
        self.risk = FakeRisk()
        self.prices = FakePrices()
        self.orders = FakeOrders()
        self.db = db

    def watcher(self) -> ConditionalWatcher:
        return ConditionalWatcher(self.store, self.risk, self.prices, self.orders, market_now=self.clock,
                                  wall_now=self.clock)  # fmt: skip

    async def add(self, **kw: Any) -> Conditional:
        values: dict[str, Any] = dict(
            conditional_id=new_id(), account_id="acct-amy", owner="amy", owner_role="trader", ts_code=CODE,
            side=OrderSide.SELL, qty=1000, kind=Kind.STOP, price=None, stop_price=D("9.50"), condition=None,
            level=None, at=None, market_type="counterparty_best", on_missed=OnMissed.FIRE, after_order_id=None,
            oco_group=None, status=Status.ARMED, version=1, ref_price=D("10.00"), created_at=self.clock(),
            updated_at=self.clock(),
        )  # fmt: skip
        values.update(kw)
        c = Conditional(**values)
        await self.store.create([c], self.clock())
        return c

    async def status(self, c: Conditional) -> Status:
        got = await self.store.get(c.conditional_id)
        assert got is not None
        return got.status

    async def events(self, conditional_id: str) -> list[str]:
        async with self.db.session() as s:
            rows = (await s.execute(select(outbox.c.type, outbox.c.body).order_by(outbox.c.created_at))).all()
        return [r.type for r in rows if conditional_id in r.body]


def snapshot(price: str, at: datetime, code: str = CODE) -> Any:
    quote = LiveQuote(ts_code=code, time=at, last=D(price), open=None, high=None, low=None, pre_close=D("10.00"),
                      volume=0, amount=D(0), bid=(), ask=(), limit_up=D("11.00"), limit_down=D("9.00"),
                      source="replay")  # fmt: skip
    return make_event("quotes.snapshot", QuotesSnapshot(as_of=at, source="replay", quotes=(quote,)), source="data")


async def test_a_stop_fires_once_on_the_crossing_even_when_the_round_comes_twice(db: Database) -> None:
    rig = Rig(db)
    stop = await rig.add()
    w = rig.watcher()
    await w.start()
    rig.clock.now = T0 + timedelta(seconds=3)
    await w.on_quotes(snapshot("9.51", rig.clock.now))  # just above: nothing
    assert rig.risk.requests == [] and await rig.status(stop) is Status.ARMED
    crossing = snapshot("9.20", rig.clock.now + timedelta(seconds=3))  # a gap through 9.50
    await w.on_quotes(crossing)
    await w.on_quotes(crossing)  # the same round delivered again
    other = rig.watcher()  # a second process, which read the order while it was armed, sees the crossing too
    await other.start()
    assert not await other.observe(stop, D("9.20"), rig.clock.now + timedelta(seconds=3))
    assert len(rig.risk.requests) == 1
    [child] = rig.risk.requests
    assert (child.client_order_id, child.side, child.qty, child.order_type.value) == (
        f"cond-{stop.conditional_id}", OrderSide.SELL, 1000, "market")  # fmt: skip
    placed = await rig.store.get(stop.conditional_id)
    assert placed is not None
    assert (placed.status, placed.trigger_seen, placed.missed, placed.decision_id) == (Status.PLACED, D("9.20"),
                                                                                        False, "d1")  # fmt: skip
    assert placed.child_order_id == rig.risk.orders[child.client_order_id]
    assert await rig.events(stop.conditional_id) == ["conditional.armed", "conditional.triggered", "conditional.placed"]


async def test_the_first_oco_leg_to_trigger_cancels_the_other(db: Database) -> None:
    rig = Rig(db)
    group = new_id()
    take_profit = await rig.add(kind=Kind.LIMIT, stop_price=None, price=D("10.80"), condition=ConditionType.PRICE_ABOVE,
                                level=D("10.80"), market_type=None, oco_group=group)  # fmt: skip
    stop = await rig.add(oco_group=group)
    w = rig.watcher()
    await w.start()
    await w.on_quotes(snapshot("10.85", T0 + timedelta(seconds=3)))
    assert await rig.status(take_profit) is Status.PLACED
    assert await rig.status(stop) is Status.CANCELLED
    await w.on_quotes(snapshot("9.00", T0 + timedelta(seconds=6)))  # the stop's level now: nothing, it is cancelled
    assert [r.conditional_id for r in rig.risk.requests] == [take_profit.conditional_id]
    assert (rig.risk.requests[0].order_type.value, rig.risk.requests[0].price) == ("limit", D("10.80"))


async def test_a_bracket_waits_for_its_entry_to_fill(db: Database) -> None:
    rig = Rig(db)
    entry = new_id()
    group = new_id()
    stop = await rig.add(status=Status.WAITING, after_order_id=entry, oco_group=group, ref_price=None)
    w = rig.watcher()
    await w.start()
    await w.on_quotes(snapshot("9.00", T0 + timedelta(seconds=1)))  # below the stop, but the entry has not filled
    assert await rig.status(stop) is Status.WAITING and rig.risk.requests == []
    rig.orders.states[entry] = (OrderStatus.PARTIALLY_FILLED, 300)
    await w.run_pass()
    assert await rig.status(stop) is Status.WAITING
    rig.orders.states[entry] = (OrderStatus.FILLED, 1000)
    await w.run_pass()
    assert await rig.status(stop) is Status.ARMED
    await w.on_quotes(snapshot("9.40", T0 + timedelta(seconds=4)))  # at or below 9.50 once armed: fires
    assert await rig.status(stop) is Status.PLACED

    unfilled = await rig.add(status=Status.WAITING, after_order_id="e" * 32, ref_price=None)
    rig.orders.states["e" * 32] = (OrderStatus.CANCELLED, 0)
    await w.run_pass()
    assert await rig.status(unfilled) is Status.CANCELLED


async def test_a_bracket_whose_entry_ends_partly_filled_protects_what_filled(db: Database) -> None:
    rig = Rig(db)
    entry = new_id()
    group = new_id()
    take_profit = await rig.add(kind=Kind.LIMIT, stop_price=None, price=D("10.80"), condition=ConditionType.PRICE_ABOVE,
                                level=D("10.80"), market_type=None, status=Status.WAITING, after_order_id=entry,
                                oco_group=group, ref_price=None, qty=10_000)  # fmt: skip
    stop = await rig.add(status=Status.WAITING, after_order_id=entry, oco_group=group, ref_price=None, qty=10_000)
    w = rig.watcher()
    await w.start()
    # 9,950 of 10,000 bought, the rest cancelled at the close: the legs are armed for the 9,950 held (odd lot too)
    rig.orders.states[entry] = (OrderStatus.CANCELLED, 9_950)
    await w.run_pass()
    for leg in (take_profit, stop):
        got = await rig.store.get(leg.conditional_id)
        assert got is not None and (got.status, got.qty) == (Status.ARMED, 9_950)
    assert await rig.events(stop.conditional_id) == ["conditional.waiting", "conditional.armed"]
    await w.on_quotes(snapshot("9.45", T0 + timedelta(seconds=3)))
    assert [(r.conditional_id, r.qty) for r in rig.risk.requests] == [(stop.conditional_id, 9_950)]
    assert await rig.status(stop) is Status.PLACED and await rig.status(take_profit) is Status.CANCELLED

    # a buy leg (covering a sell entry) in whole lots: 950 filled -> 900; one whose entry filled nothing is cancelled
    sold = new_id()
    buy_back = await rig.add(side=OrderSide.BUY, stop_price=D("10.50"), status=Status.WAITING, after_order_id=sold,
                             ref_price=None, qty=1_000)  # fmt: skip
    nothing = await rig.add(status=Status.WAITING, after_order_id="f" * 32, ref_price=None)
    rig.orders.states[sold] = (OrderStatus.CANCELLED, 950)
    rig.orders.states["f" * 32] = (OrderStatus.CANCELLED, 0)
    await w.run_pass()
    got = await rig.store.get(buy_back.conditional_id)
    assert got is not None and (got.status, got.qty) == (Status.ARMED, 900)
    assert await rig.status(nothing) is Status.CANCELLED


async def test_a_time_condition_fires_at_its_moment_on_the_market_clock(db: Database) -> None:
    rig = Rig(db)
    at = T0 + timedelta(minutes=5)
    timed = await rig.add(kind=Kind.MARKET, side=OrderSide.BUY, stop_price=None, condition=ConditionType.AT_TIME,
                          at=at, ref_price=None)  # fmt: skip
    w = rig.watcher()
    await w.start()
    rig.clock.now = at - timedelta(seconds=1)
    await w.run_pass()
    assert await rig.status(timed) is Status.ARMED
    rig.clock.now = at
    await w.run_pass()
    await w.run_pass()
    assert await rig.status(timed) is Status.PLACED and len(rig.risk.requests) == 1
    got = await rig.store.get(timed.conditional_id)
    assert got is not None and (got.missed, got.trigger_time) == (False, at)


async def test_a_trigger_missed_while_down_fires_once_or_expires(db: Database) -> None:
    rig = Rig(db)
    fires = await rig.add()
    expires = await rig.add(on_missed=OnMissed.EXPIRE)
    timed = await rig.add(kind=Kind.MARKET, stop_price=None, condition=ConditionType.AT_TIME,
                          at=T0 + timedelta(minutes=1), on_missed=OnMissed.EXPIRE, ref_price=None)  # fmt: skip
    # execution was down from T0; the price fell through 9.50 at T0 + 2 min and the time passed
    rig.prices.quotes[CODE] = LivePrice(D("9.30"), T0 + timedelta(minutes=2))
    rig.clock.now = T0 + timedelta(minutes=10)
    w = rig.watcher()
    await w.start()
    await w.run_pass()
    await w.run_pass()
    assert await rig.status(fires) is Status.PLACED
    assert await rig.status(expires) is Status.EXPIRED
    assert await rig.status(timed) is Status.EXPIRED
    assert [r.conditional_id for r in rig.risk.requests] == [fires.conditional_id]
    fired = await rig.store.get(fires.conditional_id)
    assert fired is not None and fired.missed is True and fired.trigger_seen == D("9.30")
    # the queue's backlog of the same moment, delivered after the catch-up: nothing more
    await w.on_quotes(snapshot("9.30", T0 + timedelta(minutes=2)))
    assert len(rig.risk.requests) == 1


async def test_risk_refusals_are_recorded_and_not_now_is_tried_again(db: Database) -> None:
    rig = Rig(db)
    refused = await rig.add()
    reasons = [{"code": "trading_halted", "message": "the account is halted"}]
    rig.risk.answers.append((422, {"code": "order_rejected", "message": "the account is halted",
                                   "decision": {"decision_id": "d9", "reasons": reasons}}))  # fmt: skip
    w = rig.watcher()
    await w.start()
    await w.observe(refused, D("9.40"), T0 + timedelta(seconds=1))
    got = await rig.store.get(refused.conditional_id)
    assert got is not None
    assert (got.status, got.reasons, got.decision_id) == (Status.REFUSED, reasons, "d9")
    assert await rig.events(refused.conditional_id) == ["conditional.armed", "conditional.triggered",
                                                        "conditional.refused"]  # fmt: skip

    later = await rig.add()
    rig.risk.answers.append((503, {"code": "risk_unavailable", "message": "risk cannot check the order"}))
    await w.observe(later, D("9.40"), T0 + timedelta(seconds=2))
    assert await rig.status(later) is Status.TRIGGERED  # not now: still triggered
    rig.clock.now = T0 + timedelta(seconds=1)
    await w.run_pass()
    assert await rig.status(later) is Status.TRIGGERED  # tried again RETRY_S (3 s) after the answer, not before
    rig.clock.now = T0 + timedelta(seconds=10)
    other = rig.watcher()  # another process: it knows of no retry, only the lease (30 s), not run out yet
    await other.run_pass()
    assert await rig.status(later) is Status.TRIGGERED
    await w.run_pass()
    assert await rig.status(later) is Status.PLACED
    assert [r.client_order_id for r in rig.risk.requests[1:]] == [f"cond-{later.conditional_id}"] * 2


async def test_only_quotes_of_continuous_trading_trigger(db: Database) -> None:
    rig = Rig(db)
    stop = await rig.add()  # sell stop at 9.50, armed at 10.00
    w = rig.watcher()
    await w.start()
    day = T0.date()
    for hh, mm in ((9, 26), (11, 30), (12, 15), (14, 57), (15, 1)):  # the opening call, lunch, the closing call, after
        await w.on_quotes(snapshot("9.40", datetime(day.year, day.month, day.day, hh, mm, tzinfo=CST)))
    assert rig.risk.requests == [] and await rig.status(stop) is Status.ARMED
    # nor are they the previous price: 9.45 at 13:00:03, after the lunch's 9.40, is the crossing from 10.00
    await w.on_quotes(snapshot("9.45", datetime(day.year, day.month, day.day, 13, 0, 3, tzinfo=CST)))
    got = await rig.store.get(stop.conditional_id)
    assert got is not None and (got.status, got.trigger_seen) == (Status.PLACED, D("9.45"))


async def test_a_child_not_placed_by_the_close_expires_with_the_reason(db: Database) -> None:
    rig = Rig(db)
    stop = await rig.add()
    w = rig.watcher()
    await w.start()
    unavailable = (503, {"code": "risk_unavailable", "message": "risk cannot check the order"})
    rig.risk.answers.extend([unavailable] * 3)
    rig.clock.now = datetime(2026, 12, 7, 14, 56, 50, tzinfo=CST)
    await w.on_quotes(snapshot("9.40", rig.clock.now))  # triggers; risk: not now
    rig.clock.now += timedelta(seconds=5)
    await w.run_pass()  # before the close: tried again (not now again)
    assert (await rig.status(stop), len(rig.risk.requests)) == (Status.TRIGGERED, 2)
    rig.clock.now = datetime(2026, 12, 7, 15, 0, 0, tzinfo=CST)
    await w.run_pass()  # the close: expired, not tried a third time (it would be the next day's order)
    got = await rig.store.get(stop.conditional_id)
    assert got is not None and got.status is Status.EXPIRED and len(rig.risk.requests) == 2
    [reason] = got.reasons
    assert reason["code"] == "session_closed" and "2026-12-07" in reason["message"]
    assert "risk_unavailable" in reason["message"]
    assert await rig.events(stop.conditional_id) == ["conditional.armed", "conditional.triggered",
                                                     "conditional.expired"]  # fmt: skip
    rig.clock.now = datetime(2026, 12, 8, 10, 0, tzinfo=CST)  # the next day: nothing more
    await w.run_pass()
    await rig.watcher().run_pass()
    assert len(rig.risk.requests) == 2


async def test_the_session_a_triggered_order_is_for_comes_from_the_calendar(db: Database) -> None:
    rig = Rig(db)
    # an at_time order firing after the close is for the next session (as an order placed then): not expired at once
    timed = await rig.add(kind=Kind.MARKET, side=OrderSide.BUY, stop_price=None, condition=ConditionType.AT_TIME,
                          at=datetime(2026, 12, 7, 16, 0, tzinfo=CST), ref_price=None)  # fmt: skip

    async def next_session(at: datetime) -> date:
        return date(2026, 12, 8)

    broken = False

    async def calendar(at: datetime) -> date:
        if broken:
            raise RuntimeError("calendar unavailable")
        return await next_session(at)

    w = ConditionalWatcher(rig.store, rig.risk, rig.prices, rig.orders, market_now=rig.clock, wall_now=rig.clock,
                           session_of=calendar)  # fmt: skip
    rig.risk.answers.extend([(503, {"code": "risk_unavailable", "message": "down"})] * 3)
    rig.clock.now = datetime(2026, 12, 7, 16, 0, tzinfo=CST)
    await w.run_pass()  # fires; not now
    rig.clock.now += timedelta(seconds=5)
    await w.run_pass()  # tried again: its session (12-08) has not closed
    assert (await rig.status(timed), len(rig.risk.requests)) == (Status.TRIGGERED, 2)
    broken = True
    rig.clock.now = datetime(2026, 12, 8, 15, 0, 1, tzinfo=CST)
    await w.run_pass()  # the calendar cannot say: neither expired nor tried again on a guess
    assert (await rig.status(timed), len(rig.risk.requests)) == (Status.TRIGGERED, 2)
    broken = False
    rig.clock.now += timedelta(seconds=5)
    await w.run_pass()
    assert (await rig.status(timed), len(rig.risk.requests)) == (Status.EXPIRED, 2)
