"""The paper broker on live quotes (LH_PAPER_FILLS=quotes) with the real MariaDB and RabbitMQ: execution hears
`quotes.snapshot` on a queue of its own and matches a resting limit order against each round (partly, then fully);
an order arriving when a quote is held is matched against it at once; a round delivered twice fills nothing twice
(trades and events recorded once). Expected fills are worked out by hand from the quoted levels. Each test has
databases of its own: a resting order of another test would take its place in the book's time priority."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from services.execution.store import trades
from shared.core.domain import OrderSide
from shared.platform.bus.amqp import AmqpBus
from shared.platform.clock import EXCHANGE_TZ, ReplayClock
from shared.platform.events import Envelope, LiveQuote, QuoteLevel, QuotesSnapshot, make_event
from shared.platform.settings import Settings
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    event_log,
    fleet,
    limit_buy,
    signed_order,
    trader,
    until,
)


def live(
    at: datetime, asks: list[tuple[str, int]], bids: list[tuple[str, int]] | None = None, *, volume: int = 100_000
) -> LiveQuote:
    """600000.SH quoted at `at` (pre_close 10.00: limits 11.00 / 9.00) with these asks (and bids), `volume` shares
    traded so far that day."""
    return LiveQuote(
        ts_code="600000.SH",
        time=at.astimezone(EXCHANGE_TZ),
        last=Decimal("10.00"),
        open=Decimal("10.00"),
        high=Decimal("10.05"),
        low=Decimal("9.95"),
        pre_close=Decimal("10.00"),
        volume=volume,
        amount=Decimal("1000000.00"),
        bid=tuple(QuoteLevel(price=Decimal(p), volume=v) for p, v in (bids or [("9.98", 1000)])),
        ask=tuple(QuoteLevel(price=Decimal(p), volume=v) for p, v in asks),
        limit_up=Decimal("11.00"),
        limit_down=Decimal("9.00"),
        source="replay",
    )


def snapshot(quote: LiveQuote) -> Envelope:
    return make_event("quotes.snapshot", QuotesSnapshot(as_of=quote.time, source="replay", quotes=(quote,)),
                      source="data")  # fmt: skip


@asynccontextmanager
async def feed(settings: Settings) -> AsyncIterator[AmqpBus]:
    bus = AmqpBus(settings.amqp_url, namespace=settings.bus_namespace, source="data")
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


# A trading day's continuous session (the fake calendar: 2024-12-30 and 2024-12-31 are trading days): the tests run
# on this clock, not the wall clock, since the paper broker matches on quotes only in continuous trading.
MORNING = datetime(2024, 12, 30, 10, 0, tzinfo=EXCHANGE_TZ)


class Moment:
    """A market clock the test sets: execution's desk and paper broker and the fake data service read it."""

    def __init__(self, at: datetime) -> None:
        self.at = at.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at.astimezone(UTC)


def on_clock(f: Fleet, at: datetime = MORNING) -> Moment:
    clock = Moment(at)
    f.execution_app.state.desk.clock = clock
    f.execution_app.state.broker.clock = clock
    f.data.clock = clock  # the latest quote's limits: for the session of an order placed at `clock`
    return clock


async def order(f: Fleet, who: Any, order_id: str) -> dict[str, Any]:
    answer = await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(who))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_resting_limit_buy_fills_partly_then_fully_on_quotes_and_a_redelivered_round_fills_nothing_twice(
    backing: Backing,
) -> None:
    settings = backing.settings(scope="paperquotes1", paper_fills="quotes")
    who = trader()
    async with fleet(settings) as f, event_log(settings) as events, feed(settings) as bus:
        clock = on_clock(f)
        placed = await f.execution.post("/v1/orders", json=signed_order(settings, limit_buy(who, qty=1000)),
                                        headers=f.headers(who))  # fmt: skip
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]
        assert placed.json()["status"] == "submitted"  # no quote yet: it rests

        # the first round heard: nothing to say what traded since the one before, so a resting order takes nothing
        t0 = clock() + timedelta(seconds=1)
        await bus.publish(snapshot(live(t0, [("10.00", 300), ("10.01", 5000)], volume=100_000)))
        await until(lambda: f.execution_app.state.broker.live.get("600000.SH") is not None, what="the first round")
        await asyncio.sleep(0.3)
        assert (await order(f, who, order_id))["filled_qty"] == 0

        # round 1: 1,000 traded since; 300 offered at 10.00 (its limit), 5,000 at 10.01 (above it): 300 fill
        t1 = t0 + timedelta(seconds=3)
        first = snapshot(live(t1, [("10.00", 300), ("10.01", 5000)], volume=101_000))
        await bus.publish(first)
        await until(lambda: _status(f, who, order_id, "partially_filled"), what="the first partial fill")
        await bus.publish(first)  # delivered again

        # round 2: 900 traded; 200 at 9.99 and 1,000 at 10.00: the 700 left take 200 at 9.99 and 500 at 10.00
        t2 = t1 + timedelta(seconds=3)
        second = snapshot(live(t2, [("9.99", 200), ("10.00", 1000), ("10.01", 900)], volume=101_900))
        await bus.publish(second)
        await until(lambda: _status(f, who, order_id, "filled"), what="the order filled")
        await bus.publish(second)
        await bus.publish(first)
        await asyncio.sleep(1.0)  # the redeliveries handled (nothing to wait for: they change nothing)

        body = await order(f, who, order_id)
        assert (body["status"], body["filled_qty"]) == ("filled", 1000)
        # 300 x 10.00 + 200 x 9.99 + 500 x 10.00 = 9,998.00 over 1,000 shares
        assert Decimal(body["avg_fill_price"]) == Decimal("9.998")
        listed = await f.store.list_trades(account_id=who.account_id, order_id=order_id, limit=10)
        assert sorted((t.qty, t.price) for t in listed) == [(200, Decimal("9.99")), (300, Decimal("10.00")),
                                                            (500, Decimal("10.00"))]  # fmt: skip
        assert await f.store.count(trades, order_id=order_id) == 3
        await until(lambda: events.types_of(order_id).count("trade.executed") == 3, what="three trade events")
        await asyncio.sleep(0.5)
        kinds = events.types_of(order_id)
        assert kinds.count("trade.executed") == 3
        assert kinds.count("order.filled") == 1
        assert kinds.count("order.partially_filled") >= 1


async def test_an_order_arriving_takes_what_the_latest_quote_left_and_a_market_buys_rest_is_cancelled(
    backing: Backing,
) -> None:
    settings = backing.settings(scope="paperquotes2", paper_fills="quotes")
    who = trader()
    async with fleet(settings) as f, feed(settings) as bus:
        clock = on_clock(f)
        # a resting order takes 400 of the 600 offered at 10.00 on this round (5,000 traded since the round before)
        resting = await f.execution.post("/v1/orders", json=signed_order(settings, limit_buy(who, qty=400)),
                                         headers=f.headers(who))  # fmt: skip
        resting_id = resting.json()["order_id"]
        await bus.publish(snapshot(live(clock() + timedelta(seconds=1), [("10.05", 600)], volume=100_000)))
        await until(lambda: f.execution_app.state.broker.live.get("600000.SH") is not None, what="the first round")
        quote = live(clock() + timedelta(seconds=4), [("10.00", 600), ("10.02", 300)], volume=105_000)
        await bus.publish(snapshot(quote))
        await until(lambda: _status(f, who, resting_id, "filled"), what="the resting order filled")
        # a limit buy of 1,000 at 10.00 arriving now: only the 200 left at 10.00 (10.02 is above it); 800 rest
        arriving = await f.execution.post("/v1/orders", json=signed_order(settings, limit_buy(who, qty=1000)),
                                          headers=f.headers(who))  # fmt: skip
        body = arriving.json()
        assert (body["status"], body["filled_qty"]) == ("partially_filled", 200)
        # a market buy of 500 capped at the limit-up (11.00): 200 left at 10.02 ... none at 10.00 (taken), so 300
        # at 10.02 and its other 200 cancelled (no more levels)
        market = limit_buy(who, qty=500, order_type="market", price=None, market_type="best5_cancel")
        answer = await f.execution.post("/v1/orders", json=signed_order(settings, market), headers=f.headers(who))
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert (body["status"], body["filled_qty"]) == ("cancelled", 300)
        assert Decimal(body["avg_fill_price"]) == Decimal("10.02")
        assert body["reason"].startswith("no_liquidity")


async def _status(f: Fleet, who: Any, order_id: str, status: str) -> bool:
    return bool((await order(f, who, order_id))["status"] == status)


async def test_a_fill_execution_could_not_record_is_recorded_with_the_next_round_and_a_cancel_ends_the_rest(
    backing: Backing,
) -> None:
    settings = backing.settings(scope="paperquotes3", paper_fills="quotes")
    who = trader()
    async with fleet(settings) as f, feed(settings) as bus:
        clock = on_clock(f)
        placed = await f.execution.post("/v1/orders", json=signed_order(settings, limit_buy(who, qty=1000)),
                                        headers=f.headers(who))  # fmt: skip
        order_id = placed.json()["order_id"]
        t0 = clock() + timedelta(seconds=1)
        await bus.publish(snapshot(live(t0, [("10.05", 300)], volume=100_000)))  # the baseline round
        await until(lambda: f.execution_app.state.broker.live.get("600000.SH") is not None, what="the first round")
        desk = f.execution_app.state.desk
        broker = f.execution_app.state.broker
        real_apply = desk.store.apply_report
        failures = {"left": 1}

        async def apply_once_failing(*args: Any, **kwargs: Any) -> Any:
            if failures["left"]:
                failures["left"] -= 1
                raise ConnectionError("injected: the database went away while recording")
            return await real_apply(*args, **kwargs)

        desk.store.apply_report = apply_once_failing
        t1 = t0 + timedelta(seconds=3)
        await bus.publish(snapshot(live(t1, [("10.00", 300)], volume=101_000)))

        async def booked(n: int) -> bool:
            report = await broker.report(order_id)
            return report is not None and len(report.fills) == n

        await until(lambda: booked(1), what="the paper book's first fill")
        await until(lambda: failures["left"] == 0, what="the injected failure")
        # the broker's book has it, execution not yet
        assert (await order(f, who, order_id))["filled_qty"] == 0
        assert await f.store.count(trades, order_id=order_id) == 0

        # the next round: 200 more at 9.99; both fills are recorded now (300 + 200)
        await bus.publish(snapshot(live(t1 + timedelta(seconds=3), [("9.99", 200)], volume=102_000)))
        await until(lambda: _filled(f, who, order_id, 500), what="both fills recorded")
        assert await f.store.count(trades, order_id=order_id) == 2

        # the trader cancels the 500 still resting: a later round that offers plenty fills nothing of it
        cancelled = await f.execution.post(f"/v1/orders/{order_id}/cancel", headers=f.headers(who))
        assert cancelled.status_code == 200, cancelled.text
        assert (cancelled.json()["status"], cancelled.json()["filled_qty"]) == ("cancelled", 500)
        await bus.publish(snapshot(live(t1 + timedelta(seconds=6), [("9.90", 100_000)], volume=200_000)))
        await asyncio.sleep(1.0)
        assert await f.store.count(trades, order_id=order_id) == 2
        report = await broker.report(order_id)
        assert report is not None and len(report.fills) == 2


async def _filled(f: Fleet, who: Any, order_id: str, qty: int) -> bool:
    return bool((await order(f, who, order_id))["filled_qty"] == qty)


async def test_on_a_replay_clock_an_instance_order_still_fills_on_its_bar_while_a_persons_fills_on_the_quotes(
    tmp_path: Path,
) -> None:
    """Standalone's `make run` mode (a replay clock, LH_PAPER_FILLS=quotes): a strategy instance's order is matched
    on the session's bar by its own rules as before (2024-03-04's close, 10.50), a person's limit order on quotes."""
    from tests.integration.execution.order_path_harness import headers
    from tests.integration.execution.test_execution_replay import (
        CLOSE_FILLS,
        STRATEGY,
        instance_order,
        replay,
    )

    clock = ReplayClock(date(2024, 3, 4))
    ida = trader()
    async with replay(tmp_path, clock, paper_fills="quotes") as r:
        mine = await r.place(ida, client_order_id="q-1", ts_code="600000.SH", side="buy", order_type="limit",
                             qty=200, price="10.30")  # fmt: skip
        assert mine.status_code == 201, mine.text
        order_id = mine.json()["order"]["order_id"]
        assert mine.json()["order"]["status"] == "submitted"  # no quote yet: it rests (no bar fill at the open)

        instance = r.strategy.add(ida.account_id)
        placed = await r.risk.post(
            "/v1/orders", json=r.strategy.order(instance_order(instance)), headers=headers(r.settings, STRATEGY)
        )
        assert placed.status_code == 201, placed.text
        theirs = placed.json()["order"]
        assert (theirs["status"], theirs["filled_qty"], theirs["avg_fill_price"]) == ("filled", 100, "10.50")
        assert theirs["paper_fill"] == CLOSE_FILLS

        # a first round (nothing at its price), then one quoting 100 at 10.30 and 500 at 10.31 with 1,000 traded
        # since: Ida's order takes the 100 at 10.30; 100 rest
        baseline = live(clock.now() + timedelta(seconds=1), [("10.40", 100)], volume=100_000)
        await r.bus.publish(snapshot(baseline.model_copy(update={"limit_up": Decimal("11.00")})))
        quote = live(clock.now() + timedelta(seconds=2), [("10.30", 100), ("10.31", 500)], volume=101_000)
        await r.bus.publish(snapshot(quote.model_copy(update={"limit_up": Decimal("11.00")})))

        async def partly() -> bool:
            body = await r.get(ida, f"/v1/orders/{order_id}")
            return bool(body["status"] == "partially_filled" and body["filled_qty"] == 100)

        await until(partly, what="Ida's order partly filled on the quote")
        body = await r.get(ida, f"/v1/orders/{order_id}")
        assert body["avg_fill_price"] == "10.30"

        # the replay moves on: the rest of the day order expires with its session, its fill stays
        moved = await r.next_session("2024-03-05")
        assert moved.status_code == 200, moved.text
        after = await r.get(ida, f"/v1/orders/{order_id}")
        assert (after["status"], after["filled_qty"]) == ("cancelled", 100)
        assert after["reason"] == "expired: a day order still open at the close of 2024-03-04 (15:00 Asia/Shanghai)"


async def test_an_order_placed_after_the_close_rests_for_the_next_sessions_quotes_and_a_refusing_account_is_refused(
    backing: Backing,
) -> None:
    """At 20:00 the latest quote is of 14:30 that day: an order placed then is for the next session and must not
    fill against it (nor against a round of that day heard late); it fills on the next session's quotes. An account
    that refuses orders while the market is closed gets it rejected, as in session mode."""
    settings = backing.settings(scope="paperquotes4", paper_fills="quotes")
    who, strict = trader(), trader()
    next_day = date(2024, 12, 31)
    async with fleet(settings) as f, feed(settings) as bus:
        clock = on_clock(f, datetime(2024, 12, 30, 14, 30, tzinfo=EXCHANGE_TZ))
        broker = f.execution_app.state.broker
        afternoon = live(clock(), [("10.00", 5000)], volume=100_000)
        await bus.publish(snapshot(afternoon))
        await until(lambda: broker.live.get("600000.SH") is not None, what="the 14:30 round")

        clock.set(datetime(2024, 12, 30, 20, 0, tzinfo=EXCHANGE_TZ))
        placed = await f.execution.post("/v1/orders", json=signed_order(settings, limit_buy(who, qty=500)),
                                        headers=f.headers(who))  # fmt: skip
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]
        assert (placed.json()["status"], placed.json()["filled_qty"]) == ("submitted", 0)
        # rounds of that day heard late, 14:56 (6,000 traded since 14:30) and the closing call's 14:58: neither is
        # of its session
        await bus.publish(snapshot(live(datetime(2024, 12, 30, 14, 56, tzinfo=EXCHANGE_TZ), [("10.00", 5000)],
                                        volume=106_000)))  # fmt: skip
        await bus.publish(snapshot(live(datetime(2024, 12, 30, 14, 58, tzinfo=EXCHANGE_TZ), [("10.00", 5000)],
                                        volume=150_000)))  # fmt: skip
        await asyncio.sleep(1.0)
        body = await order(f, who, order_id)
        assert (body["status"], body["filled_qty"]) == ("submitted", 0)

        # an account refusing orders while the market is closed
        await broker.set_closed_market(strict.account_id, "refuse", by="admin")
        refused = await f.execution.post("/v1/orders", json=signed_order(settings, limit_buy(strict, qty=500)),
                                         headers=f.headers(strict))  # fmt: skip
        assert refused.json()["status"] == "rejected", refused.text
        assert refused.json()["reason"].startswith("market_closed")

        # the next session: its opening call's quote (09:25) fills nothing; at 09:31, 800 traded that day so far and
        # 300 offered at 10.00, 900 at 10.01: the order takes the 300 at 10.00 and rests with 200
        clock.set(datetime(2024, 12, 31, 9, 31, tzinfo=EXCHANGE_TZ))
        await bus.publish(snapshot(live(datetime(2024, 12, 31, 9, 25, tzinfo=EXCHANGE_TZ), [("10.00", 300)],
                                        volume=400)))  # fmt: skip
        await bus.publish(snapshot(live(clock(), [("10.00", 300), ("10.01", 900)], volume=1200)))
        await until(lambda: _status(f, who, order_id, "partially_filled"), what="the fill on the next session")
        body = await order(f, who, order_id)
        assert (body["filled_qty"], Decimal(body["avg_fill_price"])) == (300, Decimal("10.00"))
        listed = await f.store.list_trades(account_id=who.account_id, order_id=order_id, limit=10)
        assert [(t.qty, t.price, t.traded_at.astimezone(EXCHANGE_TZ).date()) for t in listed] == [
            (300, Decimal("10.00"), next_day)
        ]


async def test_a_resting_order_fills_only_against_volume_traded_between_rounds_and_an_arrival_takes_the_depth_once(
    backing: Backing,
) -> None:
    """The same 500 shares shown at 10.00 round after round are not a new seller each time: a resting buy of 10,000
    takes them once on arrival, then only what trades (the increase of the day's volume), shared oldest first."""
    settings = backing.settings(scope="paperquotes5", paper_fills="quotes")
    who = trader()
    async with fleet(settings) as f, feed(settings) as bus:
        clock = on_clock(f)
        broker = f.execution_app.state.broker
        t = clock() - timedelta(seconds=30)
        await bus.publish(snapshot(live(t, [("10.00", 500), ("10.01", 800)], volume=100_000)))
        await until(lambda: broker.live.get("600000.SH") is not None, what="the first round")

        # arriving: takes the 500 shown at 10.00 at once (10.01 is above its limit)
        big = await f.execution.post("/v1/orders", json=signed_order(settings, limit_buy(who, qty=10_000)),
                                     headers=f.headers(who))  # fmt: skip
        big_id = big.json()["order_id"]
        assert (big.json()["status"], big.json()["filled_qty"]) == ("partially_filled", 500)
        # a second later (the test's clock stands still: "oldest first" needs the two orders a moment apart)
        clock.set(clock() + timedelta(seconds=1))
        later = await f.execution.post("/v1/orders", json=signed_order(settings, limit_buy(who, qty=1000)),
                                       headers=f.headers(who))  # fmt: skip
        later_id = later.json()["order_id"]
        assert (later.json()["status"], later.json()["filled_qty"]) == ("submitted", 0)  # the 500 were taken

        # five rounds showing the same 500 at 10.00 with nothing traded: nothing more fills
        for i in range(1, 6):
            await bus.publish(snapshot(live(clock() + timedelta(seconds=3 * i), [("10.00", 500)], volume=100_000)))
        await until(lambda: broker.live.get("600000.SH").time == (clock() + timedelta(seconds=15)).astimezone(
            EXCHANGE_TZ), what="the five rounds")  # fmt: skip
        await asyncio.sleep(0.5)
        assert (await order(f, who, big_id))["filled_qty"] == 500
        assert (await order(f, who, later_id))["filled_qty"] == 0

        # 700 trade: 500 shown at 10.00 (the most either order takes there) and the older order first: 500 to it;
        # then 900 trade with 1,000 shown: the older takes 900, the later none
        await bus.publish(snapshot(live(clock() + timedelta(seconds=18), [("10.00", 500)], volume=100_700)))
        await until(lambda: _filled(f, who, big_id, 1000), what="the traded 500")
        await bus.publish(snapshot(live(clock() + timedelta(seconds=21), [("10.00", 1000)], volume=101_600)))
        await until(lambda: _filled(f, who, big_id, 1900), what="the traded 900")
        await asyncio.sleep(0.5)
        assert (await order(f, who, big_id))["filled_qty"] == 1900
        assert (await order(f, who, later_id))["filled_qty"] == 0


async def test_an_arriving_order_and_a_rounds_matching_of_the_same_code_take_turns_on_a_level(
    backing: Backing, monkeypatch: Any
) -> None:
    """A round's matching and an order arriving at the same moment both want the 500 shares shown at 10.00: they take
    turns (the per-code lock), so 500 trade in all, not 500 each. The read of the consumed volume is held back until
    both have come to it (or 2 s), so that without the turns both would read it before either wrote its fills."""
    import services.execution.brokers.paper as paper

    settings = backing.settings(scope="paperquotes6", paper_fills="quotes")
    who = trader()
    async with fleet(settings) as f, feed(settings) as bus:
        clock = on_clock(f, MORNING - timedelta(seconds=10))
        broker = f.execution_app.state.broker
        resting = await f.execution.post("/v1/orders", json=signed_order(settings, limit_buy(who, qty=500)),
                                         headers=f.headers(who))  # fmt: skip
        resting_id = resting.json()["order_id"]
        await bus.publish(snapshot(live(clock() - timedelta(seconds=6), [("10.05", 500)], volume=100_000)))
        await until(lambda: broker.live.get("600000.SH") is not None, what="the first round")
        assert (await order(f, who, resting_id))["filled_qty"] == 0
        clock.set(MORNING)

        real_consumed = paper._consumed
        readers = {"buy": 0}

        async def slow_consumed(*args: Any) -> dict[int, int]:
            # each reader of the buys' consumed volume waits (at most 2 s) until the other has come to read it too
            if args[2] is OrderSide.BUY:
                readers["buy"] += 1
                for _ in range(40):
                    if readers["buy"] >= 2:
                        break
                    await asyncio.sleep(0.05)
            return await real_consumed(*args)

        monkeypatch.setattr(paper, "_consumed", slow_consumed)
        # 1,000 traded since, 500 shown at 10.00: the resting order and the arriving one both reach it
        round_ = QuotesSnapshot(as_of=clock(), source="replay",
                                quotes=(live(clock() - timedelta(seconds=3), [("10.00", 500)], volume=101_000),))  # fmt: skip
        arriving = signed_order(settings, limit_buy(who, qty=500))
        _, answer = await asyncio.gather(
            broker.match_snapshot(round_),
            f.execution.post("/v1/orders", json=arriving, headers=f.headers(who)),
        )
        assert answer.status_code == 201, answer.text
        arrived = (await broker.report(answer.json()["order_id"])).fills
        rested = (await broker.report(resting_id)).fills
        assert sum(x.qty for x in arrived) + sum(x.qty for x in rested) == 500
