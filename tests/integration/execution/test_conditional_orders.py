"""Conditional orders against the real MariaDB and RabbitMQ, with risk and execution in process (the order-path
fleet): a buy stop armed on execution is triggered by a `quotes.snapshot` round on RabbitMQ and its child is decided
by risk (a decision carrying the conditional order's id) and placed once, even with the round delivered twice; a
stop whose trigger came while execution was down fires once when it starts again (or expires, as it says), and never
again after another restart; only quotes of continuous trading trigger, a child not placed by the session's close
expires, a bracket whose entry ends partly filled arms its legs for what filled; bad input is refused with the field
named and nothing stored. The fleet runs on a shifted clock at 10:00 of a trading day (`in_session`)."""

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from services.execution.brokers.base import BrokerReport, Fill
from services.execution.conditional.watcher import ConditionalWatcher
from services.execution.store import outbox
from shared.core.domain import OrderStatus
from shared.platform.approval import OrderTerms
from shared.platform.bus.amqp import AmqpBus
from shared.platform.clock import EXCHANGE_TZ, ShiftedClock, utcnow
from shared.platform.events import LiveQuote, QuotesSnapshot, make_event
from shared.platform.events.envelope import Envelope
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from shared.platform.settings import Settings
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import Fleet, fleet, open_day, trader, until

pytestmark = pytest.mark.integration

OCO = "/v1/oco-orders"
CODE = "600000.SH"  # the fake data service's: last close 10.00, limits 11.00 / 9.00


def in_session(backing: Backing, **overrides: Any) -> Settings:
    """The fleet on a shifted market clock at 10:00 (Asia/Shanghai) of the latest trading day up to today: only
    quotes of continuous trading trigger, and the tests run at any hour. One anchor: fleets started again from these
    settings (a restart) read the same clock."""
    day = datetime.now(EXCHANGE_TZ).date()
    while not open_day(day):
        day -= timedelta(days=1)
    at = datetime(day.year, day.month, day.day, 10, 0, tzinfo=EXCHANGE_TZ)
    return backing.settings(market_clock="shifted", market_clock_at=at, market_clock_anchor=time.time(), **overrides)


def market_clock(settings: Settings) -> Callable[[], datetime]:
    assert settings.market_clock_at is not None
    return ShiftedClock(settings.market_clock_at, settings.market_clock_anchor).now


def on_market_clock(f: Fleet, settings: Settings) -> Callable[[], datetime]:
    """The fake data service's sessions follow the fleet's market clock; the clock, for the tests' quotes."""
    clock = market_clock(settings)
    f.data.clock = clock
    return clock


def snapshot(last: str, at: datetime) -> Envelope:
    quote = LiveQuote(ts_code=CODE, time=at, last=Decimal(last), open=Decimal("10.00"), high=Decimal(last),
                      low=Decimal("10.00"), pre_close=Decimal("10.00"), volume=1000, amount=Decimal("10000"),
                      bid=(), ask=(), limit_up=Decimal("11.00"), limit_down=Decimal("9.00"),
                      source="replay")  # fmt: skip
    return make_event("quotes.snapshot", QuotesSnapshot(as_of=at, source="replay", quotes=(quote,)), source="data")


async def _create(
    f: Fleet, who: Principal, expected: int = 201, path: str = "/v1/conditional-orders", **body: Any
) -> Any:
    response = await f.execution.post(path, json=body, headers=f.headers(who))
    assert response.status_code == expected, response.text
    return response.json()


async def _get(f: Fleet, who: Principal, conditional_id: str) -> dict[str, Any]:
    response = await f.execution.get(f"/v1/conditional-orders/{conditional_id}", headers=f.headers(who))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _children(f: Fleet, who: Principal, conditional_id: str) -> list[dict[str, Any]]:
    listed = (await f.execution.get("/v1/orders", headers=f.headers(who))).json()
    return [o for o in listed if o["client_order_id"] == f"cond-{conditional_id}"]


async def _events(f: Fleet, conditional_id: str) -> list[str]:
    async with f.store.db.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.type, outbox.c.body).order_by(outbox.c.created_at))).all()
    return [r.type for r in rows if r.type.startswith("conditional.") and
            json.loads(r.body)["payload"]["conditional_id"] == conditional_id]  # fmt: skip


def _status_is(f: Fleet, who: Principal, conditional_id: str, status: str) -> Any:
    async def check() -> bool:
        return (await _get(f, who, conditional_id))["status"] == status

    return check


async def test_a_stop_triggered_by_the_quotes_places_one_child_through_risk_even_when_delivered_twice(
    backing: Backing,
) -> None:
    amy = trader()
    settings = in_session(backing)
    async with fleet(settings) as f:
        now = on_market_clock(f, settings)
        f.data.live[CODE] = ("10.00", now())
        stop = await _create(f, amy, ts_code=CODE, side="buy", qty=100, kind="stop", stop_price="10.50")
        assert (stop["status"], stop["ref_price"], stop["order_type"], stop["market_type"]) == (
            "armed", "10.00", "market", "counterparty_best")  # fmt: skip
        cid = stop["conditional_id"]

        lunch = now().astimezone(EXCHANGE_TZ).replace(hour=12, minute=0)
        await f.execution_bus.publish(snapshot("10.65", lunch))  # beyond the stop, but in the lunch break: nothing
        await f.execution_bus.publish(snapshot("10.40", now()))  # below the stop: nothing
        crossing = snapshot("10.60", now())
        await f.execution_bus.publish(crossing)
        await f.execution_bus.publish(crossing)  # the same round delivered twice
        await until(_status_is(f, amy, cid, "placed"), what="the stop placed its child")
        await f.execution_bus.publish(snapshot("10.70", now()))  # later rounds beyond the level: nothing more
        await until(lambda: f.execution_app.state.conditional_watcher.previous.get(cid) is None, what="forgotten")

        placed = await _get(f, amy, cid)
        [child] = await _children(f, amy, cid)
        assert (child["side"], child["order_type"], child["qty"], child["ts_code"]) == ("buy", "market", 100, CODE)
        # triggered by the round of continuous trading (10.60), not the lunch break's 10.65
        assert (placed["child_order_id"], placed["trigger_seen"], placed["missed"]) == (child["order_id"], "10.60",
                                                                                        False)  # fmt: skip
        # risk's decision on the child, as amy, carrying the conditional order's id
        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(amy))).json()
        [decision] = [d for d in decisions if d["client_order_id"] == f"cond-{cid}"]
        assert decision["approved"] and decision["account_id"] == amy.account_id
        assert decision["rule_check"]["parent_id"] == cid
        assert placed["decision_id"] == decision["decision_id"]
        assert await _events(f, cid) == ["conditional.armed", "conditional.triggered", "conditional.placed"]


async def test_a_risk_refusal_of_the_child_is_recorded_with_its_reasons(backing: Backing) -> None:
    amy = trader()
    settings = in_session(backing)
    async with fleet(settings) as f:
        now = on_market_clock(f, settings)
        f.data.live[CODE] = ("10.00", now())
        # a sell stop with no shares to sell: risk refuses the child (insufficient_position)
        stop = await _create(f, amy, ts_code=CODE, side="sell", qty=100, kind="stop", stop_price="9.50")
        await f.execution_bus.publish(snapshot("9.40", now()))
        cid = stop["conditional_id"]
        await until(_status_is(f, amy, cid, "refused"), what="the child refused")
        refused = await _get(f, amy, cid)
        assert "insufficient_position" in [r["code"] for r in refused["reasons"]]
        assert refused["decision_id"] is not None and await _children(f, amy, cid) == []


async def test_a_child_risk_could_not_answer_is_placed_once_when_risk_is_back(backing: Backing) -> None:
    amy = trader()
    settings = in_session(backing)
    async with fleet(settings) as f:
        now = on_market_clock(f, settings)
        f.data.live[CODE] = ("10.00", now())
        stop = await _create(f, amy, ts_code=CODE, side="buy", qty=100, kind="stop", stop_price="10.50")
        cid = stop["conditional_id"]
        f.risk_transport.down = True  # execution cannot reach risk
        await f.execution_bus.publish(snapshot("10.60", now()))
        await until(lambda: f.risk_transport.attempts >= 2, what="the child tried twice while risk was down")
        waiting = await _get(f, amy, cid)
        assert waiting["status"] == "triggered" and "no answer" in waiting["message"]
        assert await _children(f, amy, cid) == []
        f.risk_transport.down = False
        await until(_status_is(f, amy, cid, "placed"), what="the child placed once risk answered")
        assert len(await _children(f, amy, cid)) == 1
        assert await _events(f, cid) == ["conditional.armed", "conditional.triggered", "conditional.placed"]


async def test_a_child_not_placed_by_the_close_expires_and_is_not_placed_the_next_day(backing: Backing) -> None:
    amy = trader()
    settings = in_session(backing)
    async with fleet(settings) as f:
        now = on_market_clock(f, settings)
        f.data.live[CODE] = ("10.00", now())
        stop = await _create(f, amy, ts_code=CODE, side="buy", qty=100, kind="stop", stop_price="10.50")
        cid = stop["conditional_id"]
        f.risk_transport.down = True
        await f.execution_bus.publish(snapshot("10.60", now()))
        await until(lambda: f.risk_transport.attempts >= 2, what="the child tried while risk was down")
        # the session (by execution's trade calendar) closes with risk still down: the order expires
        watcher: ConditionalWatcher = f.execution_app.state.conditional_watcher
        day = now().astimezone(EXCHANGE_TZ).date()
        after_close = datetime(day.year, day.month, day.day, 15, 0, 1, tzinfo=EXCHANGE_TZ)
        watcher.market_now = lambda: after_close
        await until(_status_is(f, amy, cid, "expired"), timeout=45.0, what="expired at the close")
        expired = await _get(f, amy, cid)
        assert [r["code"] for r in expired["reasons"]] == ["session_closed"]
        assert day.isoformat() in expired["message"] and "no answer from risk" in expired["message"]
        f.risk_transport.down = False  # risk back: nothing is placed for the next session
        passes = watcher.passes
        await until(lambda: watcher.passes >= passes + 3, what="a few passes")
        assert await _children(f, amy, cid) == []
        assert await _events(f, cid) == ["conditional.armed", "conditional.triggered", "conditional.expired"]


async def test_a_bracket_whose_entry_ends_partly_filled_arms_its_legs_for_the_filled_qty(backing: Backing) -> None:
    amy = trader()
    settings = in_session(backing)
    async with fleet(settings) as f:
        now = on_market_clock(f, settings)
        f.data.live[CODE] = ("10.00", now())
        # the entry: a buy of 10,000 at 10.00, held by execution
        terms = OrderTerms(client_order_id=f"c-{new_id()[:12]}", account_id=amy.account_id, ts_code=CODE, side="buy",
                           order_type="limit", qty=10_000, price=Decimal("10.00"))  # fmt: skip
        entry = (await f.store.create_order(terms, new_id(), today=now().astimezone(EXCHANGE_TZ).date())).order
        legs = await _create(f, amy, path=OCO, after_order_id=entry.order_id, legs=[
            {"ts_code": CODE, "side": "sell", "qty": 10_000, "kind": "limit", "price": "10.80",
             "condition": {"type": "price_above", "price": "10.80"}},
            {"ts_code": CODE, "side": "sell", "qty": 10_000, "kind": "stop", "stop_price": "9.50"}])  # fmt: skip
        assert [leg["status"] for leg in legs] == ["waiting", "waiting"]
        # 9,950 bought, then the rest cancelled (as at the close)
        fill = Fill(fill_id=f"f-{entry.order_id}", qty=9_950, price=Decimal("10.00"), traded_at=now())
        await f.store.apply_report(entry.order_id, BrokerReport(status=OrderStatus.SUBMITTED))
        await f.store.apply_report(entry.order_id, BrokerReport(status=OrderStatus.PARTIALLY_FILLED, fills=(fill,)))
        await f.store.apply_report(entry.order_id, BrokerReport(status=OrderStatus.CANCELLED, fills=(fill,)))
        for leg in legs:
            await until(_status_is(f, amy, leg["conditional_id"], "armed"), what="the leg armed")
            armed = await _get(f, amy, leg["conditional_id"])
            assert armed["qty"] == 9_950 and "9950 filled" in armed["message"]
            assert await _events(f, leg["conditional_id"]) == ["conditional.waiting", "conditional.armed"]


async def test_oco_legs_triggered_at_once_by_two_processes_place_one_child(backing: Backing) -> None:
    amy = trader()
    settings = in_session(backing)
    async with fleet(settings) as f:
        now = on_market_clock(f, settings)
        f.data.live[CODE] = ("10.00", now())
        legs = await _create(f, amy, path=OCO, legs=[
            {"ts_code": CODE, "side": "buy", "qty": 100, "kind": "stop", "stop_price": "10.50"},
            {"ts_code": CODE, "side": "buy", "qty": 100, "kind": "limit", "price": "9.40",
             "condition": {"type": "price_below", "price": "9.40"}}])  # fmt: skip
        await f.execution_app.state.conditional_loop.stop()  # the test runs the watchers itself
        one: ConditionalWatcher = f.execution_app.state.conditional_watcher
        other = ConditionalWatcher(one.store, one.risk, one.prices, one.orders, market_now=one.market_now)
        await other.start()
        rows = [await one.store.get(leg["conditional_id"]) for leg in legs]
        assert rows[0] is not None and rows[1] is not None
        # two processes, each seeing a quote that crosses a different leg, at the same moment
        won = await asyncio.gather(
            one.observe(rows[0], Decimal("10.60"), now()), other.observe(rows[1], Decimal("9.30"), now())
        )
        assert sorted(won) == [False, True]
        statuses = sorted([(await _get(f, amy, leg["conditional_id"]))["status"] for leg in legs])
        assert statuses == ["cancelled", "placed"]
        children = [c for leg in legs for c in await _children(f, amy, leg["conditional_id"])]
        assert len(children) == 1


async def test_a_trigger_that_came_while_execution_was_down_fires_once_on_start(backing: Backing) -> None:
    settings = in_session(backing, scope="cond" + secrets.token_hex(3), paper_fills="immediate")
    amy = trader()
    now = market_clock(settings)
    async with fleet(settings) as f:
        on_market_clock(f, settings)
        f.data.live[CODE] = ("10.00", now())
        fires = await _create(f, amy, ts_code=CODE, side="buy", qty=100, kind="stop", stop_price="10.50")
        expires = await _create(f, amy, ts_code=CODE, side="buy", qty=200, kind="stop", stop_price="10.50",
                                on_missed="expire")  # fmt: skip
        stays = await _create(f, amy, ts_code=CODE, side="buy", qty=300, kind="stop", stop_price="10.90")
    # execution is down: a round crossing the stops is published; its durable queue keeps it
    crossed_at = now()
    bus = AmqpBus(settings.amqp_url, namespace=settings.bus_namespace, source="data")
    await bus.start()
    try:
        await bus.publish(snapshot("10.60", crossed_at))
    finally:
        await bus.close()
    for restart in range(2):  # started again, and once more: it fires once in all
        async with fleet(settings) as f:
            on_market_clock(f, settings)
            f.data.live[CODE] = ("10.60", crossed_at)  # the latest live quote is the one of the crossing
            await until(_status_is(f, amy, fires["conditional_id"], "placed"), what="the missed stop fired")
            await until(_status_is(f, amy, expires["conditional_id"], "expired"), what="the other expired")
            await until(lambda: f.execution_app.state.conditional_watcher.passes >= 3, what="a few passes")
            fired = await _get(f, amy, fires["conditional_id"])
            assert (fired["missed"], fired["trigger_seen"]) == (True, "10.60")
            assert len(await _children(f, amy, fires["conditional_id"])) == 1
            assert await _children(f, amy, expires["conditional_id"]) == []
            assert await _events(f, fires["conditional_id"]) == ["conditional.armed", "conditional.triggered",
                                                                 "conditional.placed"]  # fmt: skip
            # the one whose level was not reached is still armed after each restart, and fires on a later round
            assert (await _get(f, amy, stays["conditional_id"]))["status"] == "armed"
            if restart == 1:
                await f.execution_bus.publish(snapshot("10.95", now()))
                await until(_status_is(f, amy, stays["conditional_id"], "placed"), what="the armed one fired")
                stayed = await _get(f, amy, stays["conditional_id"])
                assert stayed["missed"] is False and len(await _children(f, amy, stays["conditional_id"])) == 1


async def test_a_stop_with_a_best5_market_type_arms_and_its_child_is_placed_with_that_type(backing: Backing) -> None:
    # best5_cancel used to be refused (market_type_unsupported): every type valid on the exchange is placed now
    amy = trader()
    settings = in_session(backing)
    async with fleet(settings) as f:
        now = on_market_clock(f, settings)
        f.data.live[CODE] = ("10.00", now())
        stop = await _create(f, amy, ts_code=CODE, side="buy", qty=100, kind="stop", stop_price="10.50",
                             market_type="best5_cancel")  # fmt: skip
        assert (stop["status"], stop["market_type"]) == ("armed", "best5_cancel")
        await f.execution_bus.publish(snapshot("10.60", now()))
        await until(
            _status_is(f, amy, stop["conditional_id"], "placed"), timeout=45.0, what="the stop placed its child"
        )
        [child] = await _children(f, amy, stop["conditional_id"])
        assert (child["order_type"], child["market_type"], child["qty"]) == ("market", "best5_cancel", 100)
        # a STAR market child needs its protection price (price), refused at creation without one
        star = await _create(f, amy, 422, ts_code="688981.SH", side="buy", qty=200, kind="stop", stop_price="55.00")
        assert (star["code"], star["details"]["field"]) == ("protection_price_required", "price")


async def test_bad_input_is_refused_with_the_field_named_and_nothing_stored(backing: Backing) -> None:
    amy = trader()
    viewer = Principal(f"viewer-{secrets.token_hex(4)}", "viewer", f"acct-v-{secrets.token_hex(4)}")
    async with fleet(backing.settings()) as f:
        f.data.live[CODE] = ("10.00", utcnow())
        stop = {"ts_code": CODE, "side": "sell", "qty": 100, "kind": "stop", "stop_price": "9.50"}

        unknown = await _create(f, amy, 422, **stop, stop_limit="9.40")
        assert unknown["code"] == "invalid_request" and "stop_limit" in json.dumps(unknown)
        above = await _create(f, amy, 422, **{**stop, "stop_price": "10.20"})  # a sell stop above the market
        assert (above["code"], above["details"]["field"]) == ("invalid_stop_price", "stop_price")
        buy_below = await _create(f, amy, 422, **{**stop, "side": "buy", "stop_price": "9.90"})
        assert (buy_below["code"], buy_below["details"]["field"]) == ("invalid_stop_price", "stop_price")
        fok = await _create(f, amy, 422, **stop, market_type="fok")  # SZSE's, not SSE's
        assert (fok["code"], fok["details"]["field"]) == ("market_type_invalid", "market_type")
        crossing = {"ts_code": CODE, "side": "buy", "qty": 100, "kind": "limit", "price": "10.00",
                    "condition": {"type": "price_above", "price": "9.00"}}  # fmt: skip
        wrong = await _create(f, amy, 422, **crossing)
        assert (wrong["code"], wrong["details"]["field"]) == ("invalid_trigger_price", "condition.price")
        past = {"type": "at_time", "at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
        late = await _create(f, amy, 422, **{**crossing, "condition": past})
        assert (late["code"], late["details"]["field"]) == ("invalid_trigger_time", "condition.at")
        no_price = await _create(f, amy, 422, **{**stop, "kind": "stop_limit"})  # a stop-limit needs its price
        assert no_price["code"] == "invalid_request"
        oco = await _create(f, amy, 422, path=OCO, legs=[stop, {**stop, "stop_price": "10.30"}])
        assert (oco["code"], oco["details"]["field"]) == ("invalid_stop_price", "legs.1.stop_price")
        entry = await _create(f, amy, 404, path=OCO, legs=[stop, stop], after_order_id="0" * 32)
        assert entry["code"] == "order_not_found"
        assert (await f.execution.get("/v1/conditional-orders", headers=f.headers(amy))).json() == []

        forbidden = await _create(f, viewer, 403, **stop)
        assert forbidden["code"] == "forbidden"
        # risk decides a child only when execution asks: a person calling risk's route is refused, nothing decided
        child = {"conditional_order_id": "0" * 32, "account_id": amy.account_id, "owner": amy.subject,
                 "owner_role": "trader", "order": {"client_order_id": "cond-x", "ts_code": CODE, "side": "buy",
                                                   "order_type": "market", "qty": 100}}  # fmt: skip
        by_person = await f.risk.post("/v1/conditional-children", json=child, headers=f.headers(amy))
        assert by_person.status_code == 403 and by_person.json()["code"] == "forbidden"
        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(amy))).json()
        assert [d for d in decisions if d["client_order_id"] == "cond-x"] == []

        # what is accepted: an OCO pair (take-profit above, stop below), cancelled leg by leg
        legs = await _create(f, amy, path=OCO, legs=[
            {"ts_code": CODE, "side": "sell", "qty": 100, "kind": "limit", "price": "10.80",
             "condition": {"type": "price_above", "price": "10.80"}}, stop])  # fmt: skip
        assert [leg["status"] for leg in legs] == ["armed", "armed"] and legs[0]["oco_group"] == legs[1]["oco_group"]
        other = trader()
        hidden = await f.execution.get(f"/v1/conditional-orders/{legs[0]['conditional_id']}", headers=f.headers(other))
        assert hidden.status_code == 404
        cancel = f"/v1/conditional-orders/{legs[0]['conditional_id']}/cancel"
        assert (await f.execution.post(cancel, headers=f.headers(viewer))).status_code == 404  # not the viewer's
        cancelled = await f.execution.post(cancel, headers=f.headers(amy))
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = await f.execution.post(cancel, headers=f.headers(amy))
        assert again.status_code == 409 and again.json()["code"] == "conditional_not_cancellable"
        assert (await _get(f, amy, legs[1]["conditional_id"]))["status"] == "armed"
