"""The exchanges' market order types on the order path with the real MariaDB, Redis and RabbitMQ (risk and execution in
process: the order-path fleet): the paper broker on live quotes simulates each against the quoted book (an SZ
fill-or-kill that cannot fill in full is cancelled with nothing filled; an SH best-five-then-limit rests what five
levels did not fill as a limit order at its last fill price, which a later round fills); a type the code's exchange
does not take, a limit IOC and a STAR market order without a protection price are refused by risk with 422 naming
the field, nothing recorded or stored; a STAR protection price outside the session's limits is refused by risk
(price_limit) and, signed anyway, rejected by the paper broker; an accepted type is stored and shown on the order
and the decision. Expected fills are worked out by hand from the quoted levels."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from services.execution.brokers.paper_tables import paper_orders
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    fleet,
    limit_buy,
    order_body,
    quote,
    signed_order,
    trader,
    until,
)
from tests.integration.execution.test_paper_on_quotes import feed, live, on_clock, order, snapshot

pytestmark = pytest.mark.integration


async def _status(f: Fleet, who: Any, order_id: str, status: str) -> bool:
    return bool((await order(f, who, order_id))["status"] == status)


async def test_an_sz_fok_market_buy_that_cannot_fill_in_full_is_cancelled_with_nothing_filled(backing: Backing) -> None:
    settings = backing.settings(scope="mtypefok", paper_fills="quotes")
    who = trader()
    async with fleet(settings) as f, feed(settings) as bus:
        f.data.quotes["000001.SZ"] = quote("000001.SZ", "10.00", "11.00", "9.00")
        clock = on_clock(f)
        sz = live(clock() + timedelta(seconds=1), [("10.00", 300), ("10.01", 200)]).model_copy(
            update={"ts_code": "000001.SZ"}
        )
        await bus.publish(snapshot(sz))
        await until(lambda: f.execution_app.state.broker.live.get("000001.SZ") is not None, what="the SZ quote")
        # 1,000 wanted, 300 + 200 = 500 offered: fill-or-kill fills nothing and is cancelled
        fok = limit_buy(who, ts_code="000001.SZ", order_type="market", price=None, market_type="fok")
        answer = await f.execution.post("/v1/orders", json=signed_order(settings, fok), headers=f.headers(who))
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert (body["status"], body["filled_qty"], body["market_type"]) == ("cancelled", 0, "fok")
        assert body["reason"].startswith("fok_not_filled")
        # the same quote fills a fok of 500 in full (the cancelled fok took nothing of it): 300 @10.00 + 200 @10.01
        whole = limit_buy(who, ts_code="000001.SZ", order_type="market", price=None, market_type="fok", qty=500)
        filled = (await f.execution.post("/v1/orders", json=signed_order(settings, whole),
                                         headers=f.headers(who))).json()  # fmt: skip
        # (300 x 10.00 + 200 x 10.01) / 500 = (3000 + 2002) / 500 = 10.004
        assert (filled["status"], filled["filled_qty"], Decimal(filled["avg_fill_price"])) == (
            "filled", 500, Decimal("10.004"))  # fmt: skip


async def test_an_sh_best5_limit_market_buy_rests_its_remainder_as_a_limit_at_its_last_fill_price(
    backing: Backing,
) -> None:
    settings = backing.settings(scope="mtypeb5l", paper_fills="quotes")
    who = trader()
    async with fleet(settings) as f, feed(settings) as bus:
        clock = on_clock(f)
        await bus.publish(snapshot(live(clock() + timedelta(seconds=1), [("10.00", 300), ("10.01", 200)],
                                        volume=100_000)))  # fmt: skip
        await until(lambda: f.execution_app.state.broker.live.get("600000.SH") is not None, what="the first round")
        # 1,000: 300 @10.00 + 200 @10.01 from the levels shown; the other 500 rest as a limit buy at 10.01
        b5l = limit_buy(who, order_type="market", price=None, market_type="best5_limit")
        answer = await f.execution.post("/v1/orders", json=signed_order(settings, b5l), headers=f.headers(who))
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert (body["status"], body["filled_qty"], body["market_type"]) == ("partially_filled", 500, "best5_limit")
        # the paper book holds the rest as a limit at 10.01, the last fill's price
        async with f.store.db.session() as s:
            book = (await s.execute(select(paper_orders.c.price, paper_orders.c.reason)
                                    .where(paper_orders.c.order_id == body["order_id"]))).one()  # fmt: skip
        assert (book.price, book.reason.startswith("quotes: resting")) == (Decimal("10.01"), True)
        # next round: 1,000 traded since, 900 asked at 10.00 and 800 at 10.01; the rest is a limit buy at 10.01: it
        # takes its 500 at 10.00 (the best level at or below its limit), within the 1,000 traded
        await bus.publish(snapshot(live(clock() + timedelta(seconds=4), [("10.00", 900), ("10.01", 800)],
                                        volume=101_000)))  # fmt: skip
        await until(lambda: _status(f, who, body["order_id"], "filled"), what="the rest filled")
        done = await order(f, who, body["order_id"])
        # (300 x 10.00 + 200 x 10.01 + 500 x 10.00) / 1000 = (3000 + 2002 + 5000) / 1000 = 10.002
        assert (done["filled_qty"], Decimal(done["avg_fill_price"])) == (1000, Decimal("10.002"))
        second = limit_buy(who, order_type="market", price=None, market_type="best5_limit", qty=1000)
        rest = (await f.execution.post("/v1/orders", json=signed_order(settings, second),
                                       headers=f.headers(who))).json()  # fmt: skip
        # the latest quote left 400 @10.00 and 800 @10.01 after the 500 taken: 400 + 600 = 1,000 fill at once
        assert (rest["status"], rest["filled_qty"]) == ("filled", 1000)


async def test_risk_refuses_types_the_exchange_does_not_take_with_the_field_named_and_nothing_stored(
    backing: Backing,
) -> None:
    who = trader()
    async with fleet(backing.settings(scope="mtyperefuse")) as f:
        cases = [
            (order_body(order_type="market", price=None, market_type="fok"), "market_type_invalid", "market_type"),
            (order_body(order_type="market", price=None, market_type="ioc"), "market_type_invalid", "market_type"),
            (order_body(market_type="best5_cancel"), "market_type_invalid", "market_type"),  # a limit order
            (order_body(time_in_force="ioc"), "time_in_force_unsupported", "time_in_force"),
            (order_body(time_in_force="fok"), "time_in_force_unsupported", "time_in_force"),
            (order_body(ts_code="688981.SH", order_type="market", price=None, qty=200, market_type="best5_cancel"),
             "protection_price_required", "price"),
        ]  # fmt: skip
        sent = []
        for body, code, field in cases:
            answer = await f.risk.post("/v1/orders", json=body, headers=f.headers(who))
            assert answer.status_code == 422, answer.text
            refused = answer.json()
            assert (refused["code"], refused["details"]["field"]) == (code, field), refused
            sent.append(body["client_order_id"])
        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(who))).json()
        assert [d for d in decisions if d["client_order_id"] in sent] == []
        orders = (await f.execution.get("/v1/orders", headers=f.headers(who))).json()
        assert [o for o in orders if o["client_order_id"] in sent] == []


async def test_an_accepted_market_type_is_decided_signed_stored_and_shown(backing: Backing) -> None:
    who = trader()
    async with fleet(backing.settings(scope="mtypeaccept")) as f:
        body = order_body(order_type="market", price=None, market_type="best5_cancel", qty=100)
        answer = await f.risk.post("/v1/orders", json=body, headers=f.headers(who))
        assert answer.status_code == 201, answer.text
        placed = answer.json()["order"]
        assert (placed["market_type"], placed["time_in_force"], placed["price"]) == ("best5_cancel", "day", None)
        [decision] = [
            d for d in (await f.risk.get("/v1/decisions", headers=f.headers(who))).json()
            if d["client_order_id"] == body["client_order_id"]
        ]  # fmt: skip
        assert (decision["market_type"], decision["time_in_force"]) == ("best5_cancel", "day")
        # a retry with another type is another order's terms: 409, nothing new
        again = await f.risk.post("/v1/orders", json={**body, "market_type": "own_best"}, headers=f.headers(who))
        assert (again.status_code, again.json()["code"]) == (409, "client_order_id_conflict")
        # a market order naming no type is counterparty best, as before types existed
        plain = await f.risk.post("/v1/orders", json=order_body(order_type="market", price=None, qty=100),
                                  headers=f.headers(who))  # fmt: skip
        assert plain.status_code == 201, plain.text
        assert plain.json()["order"]["market_type"] == "counterparty_best"


async def test_a_star_protection_price_outside_the_limits_is_refused_by_risk_and_rejected_by_the_paper_broker(
    backing: Backing,
) -> None:
    # 688981.SH last closed at 50.00: its session's limits are 50.00 x 1.2 = 60.00 and 50.00 x 0.8 = 40.00 (STAR 20%).
    who = trader()
    settings = backing.settings(scope="mtypeprotect")
    async with fleet(settings) as f:
        for side, protection, bound in (("buy", "99999", "above the limit-up price 60.00"),
                                        ("sell", "0.01", "below the limit-down price 40.00")):  # fmt: skip
            body = order_body(ts_code="688981.SH", order_type="market", side=side, price=protection, qty=200,
                              market_type="best5_cancel")  # fmt: skip
            answer = await f.risk.post("/v1/orders", json=body, headers=f.headers(who))
            assert answer.status_code == 422, answer.text
            refused = answer.json()
            assert refused["code"] == "order_rejected"
            # (with other reasons the order has: the sell holds no shares)
            [reason] = [r for r in refused["decision"]["reasons"] if r["code"] == "price_limit"]
            assert reason["message"].startswith(f"protection price {protection} is {bound} of the session on ")
        # Signed all the same (a risk of another version, a hand-made approval): the paper broker rejects it as the
        # exchange would, by the same statement of the band, and fills nothing.
        terms = limit_buy(who, ts_code="688981.SH", order_type="market", price="99999", qty=200,
                          market_type="best5_cancel")  # fmt: skip
        sent = await f.execution.post("/v1/orders", json=signed_order(settings, terms), headers=f.headers(who))
        assert sent.status_code == 201, sent.text
        body = sent.json()
        assert (body["status"], body["filled_qty"]) == ("rejected", 0)
        assert body["reason"] == "price_limit: protection price 99999 is above the limit-up price 60.00"
        # within the limits it is matched as before: a buy protected at 60.00 (the limit-up) is not rejected
        inside = limit_buy(who, ts_code="688981.SH", order_type="market", price="60.00", qty=200,
                           market_type="best5_cancel")  # fmt: skip
        ok = await f.execution.post("/v1/orders", json=signed_order(settings, inside),
                                    headers=f.headers(who))  # fmt: skip
        assert ok.status_code == 201, ok.text
        assert ok.json()["status"] != "rejected", ok.json()
