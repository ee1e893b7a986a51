"""The synchronous order path through risk into execution, against the real MariaDB and RabbitMQ: approved orders
are filled and their events published; rejected ones (and those risk cannot decide) never reach execution."""

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from services.execution.brokers.paper_tables import paper_fills
from services.execution.store import orders, trades
from shared.platform.internal_auth import Principal
from shared.platform.observability import CORRELATION_HEADER, new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    event_log,
    fleet,
    limit_buy,
    metric,
    risk_caught_up,
    set_global_rules,
    settle,
    signed_order,
    trader,
    trades_were_yesterday,
    until,
)
from tests.support.positions import held

pytestmark = pytest.mark.integration


def _order(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_order_id": f"c-{new_id()[:10]}",
        "ts_code": "600000.SH",
        "side": "buy",
        "order_type": "market",
        "qty": 1000,
    }
    body.update(kw)
    return body


async def _execution_rows(f: Fleet, account_id: str) -> tuple[int, int]:
    return await f.store.count(orders, account_id=account_id), await f.store.count(trades, account_id=account_id)


async def _positions(f: Fleet, principal: Principal, query: str = "") -> list[dict[str, Any]]:
    response = await f.execution.get(f"/v1/positions{query}", headers=f.headers(principal))
    assert response.status_code == 200, response.text
    return held(response.json())


async def test_approved_order_is_filled_and_its_events_arrive_on_rabbitmq(backing: Backing) -> None:
    settings = backing.settings()
    alice = trader()
    async with event_log(settings) as events, fleet(settings) as f:
        cid = f"corr-{new_id()[:12]}"
        response = await f.risk.post(
            "/v1/orders", json=_order(qty=1000), headers={**f.headers(alice), CORRELATION_HEADER: cid}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        decision, order = body["decision"], body["order"]
        assert decision["approved"] is True and decision["reasons"] == []
        assert order["status"] == "filled" and order["account_id"] == alice.account_id
        assert order["filled_qty"] == 1000 and order["avg_fill_price"] == "10.00" and order["price"] is None

        # The trade: 1,000 x 10.00 = 10,000.00; commission 0.025% = 2.50 -> the 5.00 minimum;
        # transfer fee 0.001% = 0.10; no stamp duty on a buy.
        trades_seen = (await f.execution.get("/v1/trades", headers=f.headers(alice))).json()
        assert [(t["qty"], t["price"], t["amount"], t["commission"], t["stamp_duty"], t["transfer_fee"], t["fees"])
                for t in trades_seen] == [(1000, "10.00", "10000.00", "5.00", "0.00", "0.10", "5.10")]  # fmt: skip
        trade_id = trades_seen[0]["trade_id"]

        order_id = order["order_id"]
        expected = ["order.accepted", "order.submitted", "trade.executed", "order.filled"]
        await until(lambda: len(events.of_order(order_id)) >= 4, what="four events on RabbitMQ")
        assert events.types_of(order_id) == expected
        by_type = {e.type: e for e in events.of_order(order_id)}
        assert by_type["trade.executed"].payload["trade_id"] == trade_id
        assert by_type["trade.executed"].payload["amount"] == "10000.00"
        assert by_type["order.filled"].payload["avg_fill_price"] == "10.00"
        assert {e.correlation_id for e in events.of_order(order_id)} == {cid}  # carried risk -> execution -> bus
        assert {e.source for e in events.of_order(order_id)} == {"execution"}
        assert await f.store.transitions(order_id) == [
            (None, "accepted"),
            ("accepted", "submitted"),
            ("submitted", "filled"),
        ]

        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(alice))).json()
        assert [(d["decision_id"], d["approved"], d["correlation_id"]) for d in decisions] == [
            (decision["decision_id"], True, cid)
        ]
        # Each asked the data service as itself, once: risk for its reference data, execution for its own (the
        # market buy's limit-up price, the cash it reserves at, and the paper broker's fill price come from it).
        assert f.data.callers == ["svc:risk", "svc:execution"]

        risk_metrics = (await f.risk.get("/metrics")).text
        assert metric(risk_metrics, "lh_risk_decisions_total", 'outcome="approved"') == 1.0
        execution_metrics = (await f.execution.get("/metrics")).text
        for status in ("accepted", "submitted", "filled"):
            assert metric(execution_metrics, "lh_orders_total", f'status="{status}"') == 1.0
        assert metric(execution_metrics, "lh_orders_total", 'status="rejected"') == 0.0
        assert metric(execution_metrics, "lh_trades_total") == 1.0


async def test_rejected_orders_create_nothing_at_execution(backing: Backing) -> None:
    settings = backing.settings()
    bob = trader()
    async with fleet(settings) as f:
        cases = [
            (_order(qty=150, order_type="limit", price="10.005"), ["lot_size", "price_tick"]),
            (_order(order_type="limit", qty=100, price="11.01"), ["price_limit"]),
            (_order(ts_code="600001.SH", order_type="limit", qty=100, price="10.51"), ["price_limit"]),  # ST: 10.50
            (_order(ts_code="000002.SZ"), ["suspended"]),
            (_order(ts_code="600999.SH"), ["unknown_security"]),
            (_order(ts_code="510300.SH"), ["invalid_ts_code"]),
            (_order(ts_code="688981.SH", qty=199, price="60.00"), ["lot_size"]),  # (STAR: a protection price)
            (_order(qty=100100), ["max_order_value"]),  # 100,100 x last close 10.00 = 1,001,000.00 > 1,000,000
        ]
        for body, codes in cases:
            response = await f.risk.post("/v1/orders", json=body, headers=f.headers(bob))
            assert response.status_code == 422, response.text
            answer = response.json()
            assert answer["code"] == "order_rejected"
            assert answer["decision"]["approved"] is False
            assert [r["code"] for r in answer["decision"]["reasons"]] == codes, body

        assert await _execution_rows(f, bob.account_id) == (0, 0)
        assert (await f.execution.get("/v1/orders", headers=f.headers(bob))).json() == []
        decisions = (await f.risk.get("/v1/decisions?limit=100", headers=f.headers(bob))).json()
        assert len(decisions) == len(cases) and not any(d["approved"] for d in decisions)
        assert metric((await f.risk.get("/metrics")).text, "lh_risk_decisions_total", 'outcome="rejected"') == 8.0

        malformed = await f.risk.post("/v1/orders", json=_order(qty="many"), headers=f.headers(bob))
        assert malformed.status_code == 422 and malformed.json()["code"] == "invalid_request"
        no_price = await f.risk.post("/v1/orders", json=_order(order_type="limit"), headers=f.headers(bob))
        assert no_price.status_code == 422 and no_price.json()["code"] == "invalid_request"
        assert len((await f.risk.get("/v1/decisions?limit=100", headers=f.headers(bob))).json()) == len(cases)


async def test_a_repeated_client_order_id_makes_one_order_and_one_trade(backing: Backing) -> None:
    settings = backing.settings()
    carol = trader()
    async with fleet(settings) as f:
        body = _order(qty=500)
        first = await f.risk.post("/v1/orders", json=body, headers=f.headers(carol))
        again = await f.risk.post("/v1/orders", json=body, headers=f.headers(carol))
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["order"] == again.json()["order"]
        # One decision (the retry is the same decision, re-signed), one order.
        assert first.json()["decision"] == again.json()["decision"]
        assert len((await f.risk.get("/v1/decisions", headers=f.headers(carol))).json()) == 1

        # Now eight at once with a fresh id: the unique constraint decides, every caller sees the same order.
        racing = _order(qty=200)
        answers = await asyncio.gather(
            *(f.risk.post("/v1/orders", json=racing, headers=f.headers(carol)) for _ in range(8))
        )
        assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
        assert len({a.json()["order"]["order_id"] for a in answers}) == 1
        assert {a.json()["order"]["status"] for a in answers} <= {"accepted", "submitted", "filled"}

        await until(lambda: _all_filled(f, carol.account_id), what="both orders filled")
        assert await _execution_rows(f, carol.account_id) == (2, 2)
        order_ids = {first.json()["order"]["order_id"], answers[0].json()["order"]["order_id"]}
        for order_id in order_ids:
            assert await f.store.count(paper_fills, order_id=order_id) == 1

        # Same id, different terms: refused, not silently mapped to the old order.
        conflict = await f.risk.post("/v1/orders", json={**body, "qty": 600}, headers=f.headers(carol))
        assert conflict.status_code == 409 and conflict.json()["code"] == "client_order_id_conflict"
        assert await _execution_rows(f, carol.account_id) == (2, 2)


async def _all_filled(f: Fleet, account_id: str) -> bool:
    listed = await f.store.list_orders(account_id=account_id, status=None, limit=10)
    return all(o.order.status.value == "filled" for o in listed)


async def test_data_service_down_fails_closed(backing: Backing) -> None:
    settings = backing.settings()
    dave = trader()
    async with fleet(settings) as f:
        f.data_transport.down = True
        response = await f.risk.post("/v1/orders", json=_order(), headers=f.headers(dave))
        assert response.status_code == 503
        answer = response.json()
        assert answer["code"] == "risk_unavailable"
        assert answer["decision"]["approved"] is False
        assert [r["code"] for r in answer["decision"]["reasons"]] == ["risk_unavailable"]
        assert await _execution_rows(f, dave.account_id) == (0, 0)

        # A data service answering 500, or a quote missing what risk decides on, is no better than silence.
        f.data_transport.down = False
        f.data.fail_with = 500
        response = await f.risk.post("/v1/orders", json=_order(), headers=f.headers(dave))
        assert response.status_code == 503 and response.json()["code"] == "risk_unavailable"
        f.data.fail_with = None
        f.data.quotes["600000.SH"] = {"ts_code": "600000.SH", "last_close": "10.00"}
        await f.data_changed()
        response = await f.risk.post("/v1/orders", json=_order(), headers=f.headers(dave))
        assert response.status_code == 503 and response.json()["code"] == "risk_unavailable"
        assert await _execution_rows(f, dave.account_id) == (0, 0)

        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(dave))).json()
        assert [d["approved"] for d in decisions] == [False, False, False]
        assert metric((await f.risk.get("/metrics")).text, "lh_risk_decisions_total", 'outcome="error"') == 3.0


async def test_execution_down_is_503_and_the_retry_goes_through(backing: Backing) -> None:
    settings = backing.settings()
    erin = trader()
    async with fleet(settings) as f:
        body = _order(order_type="limit", qty=300, price="10.20")
        # Execution wholly down: risk cannot read the account's cash, so it cannot decide the buy (fail closed).
        f.execution_transport.down = True
        closed = await f.risk.post("/v1/orders", json={**body, "client_order_id": "c-closed"}, headers=f.headers(erin))
        assert closed.status_code == 503 and closed.json()["code"] == "risk_unavailable"
        assert closed.json()["decision"]["approved"] is False
        f.execution_transport.down = False

        # Execution down only when the approved order is handed over: approved, 503, nothing stored.
        f.execution_transport.down_for = {("POST", "/v1/orders")}
        response = await f.risk.post("/v1/orders", json=body, headers=f.headers(erin))
        assert response.status_code == 503
        assert response.json()["code"] == "execution_unavailable"
        assert response.json()["decision"]["approved"] is True
        assert await _execution_rows(f, erin.account_id) == (0, 0)

        f.execution_transport.down_for = set()
        retry = await f.risk.post("/v1/orders", json=body, headers=f.headers(erin))
        assert retry.status_code == 201
        order = retry.json()["order"]
        # A limit buy at 10.20 against a close of 10.00 fills at the close.
        assert (order["status"], order["price"], order["avg_fill_price"]) == ("filled", "10.20", "10.00")
        assert await _execution_rows(f, erin.account_id) == (1, 1)
        await settle(f)


async def test_limit_orders_rest_or_fill_by_the_latest_close(backing: Backing) -> None:
    settings = backing.settings()
    frank = trader()
    async with fleet(settings) as f:
        resting = await f.risk.post(
            "/v1/orders", json=_order(order_type="limit", qty=100, price="9.99"), headers=f.headers(frank)
        )
        assert resting.status_code == 201 and resting.json()["order"]["status"] == "submitted"

        # Selling shares frank does not hold is naked short selling: rejected, nothing reaches execution.
        naked = await f.risk.post(
            "/v1/orders",
            json=_order(side="sell", order_type="limit", qty=1000, price="9.90"),
            headers=f.headers(frank),
        )
        assert naked.status_code == 422, naked.text
        assert [r["code"] for r in naked.json()["decision"]["reasons"]] == ["insufficient_position"]
        assert await _execution_rows(f, frank.account_id) == (1, 0)  # only the resting buy

        bought = await f.risk.post("/v1/orders", json=_order(qty=1000), headers=f.headers(frank))
        assert bought.status_code == 201 and bought.json()["order"]["status"] == "filled"
        await trades_were_yesterday(f, frank.account_id)
        # (a sell at 9.90 would cross frank's own resting buy at 9.99 at an exchange: that buy is cancelled first)
        resting_id = resting.json()["order"]["order_id"]
        assert (await f.execution.post(f"/v1/orders/{resting_id}/cancel", headers=f.headers(frank))).status_code == 200
        await risk_caught_up(f, frank.account_id)
        sell = await f.risk.post(
            "/v1/orders",
            json=_order(side="sell", order_type="limit", qty=1000, price="9.90"),
            headers=f.headers(frank),
        )
        assert sell.status_code == 201
        assert (sell.json()["order"]["status"], sell.json()["order"]["avg_fill_price"]) == ("filled", "10.00")
        [trade] = (
            await f.execution.get(f"/v1/trades?order_id={sell.json()['order']['order_id']}", headers=f.headers(frank))
        ).json()
        # Sell 1,000 at 10.00 = 10,000.00: commission 5.00 (minimum), stamp duty 0.05% = 5.00 (rate since
        # 2023-08-28), transfer fee 0.10.
        assert (trade["amount"], trade["commission"], trade["stamp_duty"], trade["transfer_fee"], trade["fees"]) == (
            "10000.00",
            "5.00",
            "5.00",
            "0.10",
            "10.10",
        )
        assert Decimal(trade["fees"]) == Decimal(trade["commission"]) + Decimal(trade["stamp_duty"]) + Decimal(
            trade["transfer_fee"]
        )


async def test_t_plus_1_shares_bought_today_are_sold_tomorrow(backing: Backing) -> None:
    settings = backing.settings()
    grace = trader()
    async with fleet(settings) as f:
        bought = await f.risk.post("/v1/orders", json=_order(qty=1000), headers=f.headers(grace))
        assert bought.status_code == 201 and bought.json()["order"]["status"] == "filled"
        assert await _positions(f, grace) == [{"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 0}]
        await risk_caught_up(f, grace.account_id)

        same_day = await f.risk.post("/v1/orders", json=_order(side="sell", qty=1000), headers=f.headers(grace))
        assert same_day.status_code == 422, same_day.text
        [reason] = same_day.json()["decision"]["reasons"]
        assert reason["code"] == "insufficient_position"
        assert "cannot sell 1000 shares of 600000.SH: 0 sellable now (held 1000;" in reason["message"]
        assert await _execution_rows(f, grace.account_id) == (1, 1)

        await trades_were_yesterday(f, grace.account_id)
        assert await _positions(f, grace) == [{"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 1000}]
        next_day = await f.risk.post("/v1/orders", json=_order(side="sell", qty=1000), headers=f.headers(grace))
        assert next_day.status_code == 201, next_day.text
        assert next_day.json()["order"]["status"] == "filled"
        assert await _execution_rows(f, grace.account_id) == (2, 2)
        assert await _positions(f, grace) == []


async def test_a_resting_sell_reserves_its_shares(backing: Backing) -> None:
    settings = backing.settings()
    heidi = trader()
    async with fleet(settings) as f:
        assert (await f.risk.post("/v1/orders", json=_order(qty=1000), headers=f.headers(heidi))).status_code == 201
        await trades_were_yesterday(f, heidi.account_id)

        # A limit sell above the close (10.00) rests and reserves its 700 shares: 300 are left to sell.
        resting = await f.risk.post(
            "/v1/orders", json=_order(side="sell", order_type="limit", qty=700, price="10.50"), headers=f.headers(heidi)
        )
        assert resting.status_code == 201 and resting.json()["order"]["status"] == "submitted"
        assert await _positions(f, heidi) == [{"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 300}]
        too_many = await f.risk.post("/v1/orders", json=_order(side="sell", qty=400), headers=f.headers(heidi))
        assert too_many.status_code == 422
        [reason] = too_many.json()["decision"]["reasons"]
        assert reason["code"] == "insufficient_position"
        assert "cannot sell 400 shares of 600000.SH: 300 sellable now (held 1000;" in reason["message"]

        rest = await f.risk.post("/v1/orders", json=_order(side="sell", qty=300), headers=f.headers(heidi))
        assert rest.status_code == 201 and rest.json()["order"]["status"] == "filled"
        assert await _positions(f, heidi) == [{"ts_code": "600000.SH", "qty": 700, "sellable_qty": 0}]

        # Cancelling the resting sell frees its 700 shares.
        order_id = resting.json()["order"]["order_id"]
        cancel = await f.execution.post(f"/v1/orders/{order_id}/cancel", headers=f.headers(heidi))
        assert cancel.status_code == 200, cancel.text
        assert await _positions(f, heidi) == [{"ts_code": "600000.SH", "qty": 700, "sellable_qty": 700}]


async def test_an_odd_lot_may_only_be_sold_as_the_whole_position(backing: Backing) -> None:
    settings = backing.settings()
    ivan = trader()
    async with fleet(settings) as f:
        # STAR: buy at least 200, then any number: 250 shares; a sell below 200 must close the position.
        star = _order(ts_code="688981.SH", qty=250, price="60.00")  # a STAR market order: its protection price
        bought = await f.risk.post("/v1/orders", json=star, headers=f.headers(ivan))
        assert bought.status_code == 201, bought.text
        await trades_were_yesterday(f, ivan.account_id)

        part = await f.risk.post(
            "/v1/orders", json=_order(ts_code="688981.SH", side="sell", qty=100, price="40.00"), headers=f.headers(ivan)
        )
        assert part.status_code == 422
        assert [r["code"] for r in part.json()["decision"]["reasons"]] == ["lot_size"]
        whole = await f.risk.post(
            "/v1/orders", json=_order(ts_code="688981.SH", side="sell", qty=250, price="40.00"), headers=f.headers(ivan)
        )
        assert whole.status_code == 201 and whole.json()["order"]["status"] == "filled"
        assert await _positions(f, ivan) == []


async def test_positions_are_the_callers_own_unless_a_service_asks(backing: Backing) -> None:
    settings = backing.settings()
    judy, mallory = trader(), trader()
    async with fleet(settings) as f:
        assert (await f.risk.post("/v1/orders", json=_order(qty=300), headers=f.headers(judy))).status_code == 201
        mine = [{"ts_code": "600000.SH", "qty": 300, "sellable_qty": 0}]
        assert await _positions(f, judy) == mine
        assert await _positions(f, judy, f"?account_id={judy.account_id}") == mine
        service = Principal("svc:risk", "service")
        assert await _positions(f, service, f"?account_id={judy.account_id}") == mine
        assert await _positions(f, mallory) == []
        spying = await f.execution.get(f"/v1/positions?account_id={judy.account_id}", headers=f.headers(mallory))
        assert spying.status_code == 403


async def test_positions_unavailable_fails_a_sell_closed(backing: Backing) -> None:
    settings = backing.settings()
    kim = trader()
    async with fleet(settings) as f:
        f.execution_transport.down = True
        response = await f.risk.post("/v1/orders", json=_order(side="sell", qty=100), headers=f.headers(kim))
        assert response.status_code == 503
        answer = response.json()
        assert answer["code"] == "risk_unavailable" and answer["decision"]["approved"] is False
        assert [r["code"] for r in answer["decision"]["reasons"]] == ["risk_unavailable"]
        f.execution_transport.down = False
        assert await _execution_rows(f, kim.account_id) == (0, 0)
        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(kim))).json()
        assert [d["approved"] for d in decisions] == [False]


async def test_a_retry_after_a_lost_answer_gets_the_order_without_new_checks(backing: Backing) -> None:
    settings = backing.settings()
    leo = trader()
    async with fleet(settings) as f:
        body = _order(qty=400)
        first = await f.risk.post("/v1/orders", json=body, headers=f.headers(leo))
        assert first.status_code == 201 and first.json()["order"]["status"] == "filled"

        # The answer was lost; meanwhile the data service fails and the stock is suspended.
        f.data.fail_with = 500
        f.data.quotes["600000.SH"]["suspended"] = True
        again = await f.risk.post("/v1/orders", json=body, headers=f.headers(leo))
        assert again.status_code == 200, again.text
        assert again.json()["order"]["order_id"] == first.json()["order"]["order_id"]
        assert again.json()["decision"] == first.json()["decision"]
        assert await _execution_rows(f, leo.account_id) == (1, 1)
        assert len((await f.risk.get("/v1/decisions", headers=f.headers(leo))).json()) == 1

        # A sell retried after it sold the shares is not told they are gone.
        f.data.fail_with = None
        f.data.quotes["600000.SH"]["suspended"] = False
        await f.data_changed()
        await trades_were_yesterday(f, leo.account_id)
        sell = _order(side="sell", qty=400)
        sold = await f.risk.post("/v1/orders", json=sell, headers=f.headers(leo))
        assert sold.status_code == 201 and sold.json()["order"]["status"] == "filled"
        resold = await f.risk.post("/v1/orders", json=sell, headers=f.headers(leo))
        assert resold.status_code == 200, resold.text
        assert resold.json()["order"]["order_id"] == sold.json()["order"]["order_id"]
        assert await _execution_rows(f, leo.account_id) == (2, 2)

        conflict = await f.risk.post("/v1/orders", json={**sell, "qty": 300}, headers=f.headers(leo))
        assert conflict.status_code == 409 and conflict.json()["code"] == "client_order_id_conflict"
        assert await _execution_rows(f, leo.account_id) == (2, 2)


async def test_an_order_body_over_the_size_limit_is_413_at_risk_and_execution_and_nothing_is_stored(
    backing: Backing,
) -> None:
    settings = backing.settings()
    limit = settings.max_body_bytes
    alice = trader()

    def padded(body: dict[str, Any], size: int) -> bytes:
        """`body` as JSON padded with whitespace to `size` bytes: a valid order the service would otherwise take."""
        head = json.dumps(body).encode()
        return head[:-1] + b" " * (size - len(head)) + b"}"

    async def chunks(body: bytes) -> Any:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    async with fleet(settings) as f:
        headers = {**f.headers(alice), "Content-Type": "application/json"}
        order = padded(_order(), limit + 1)
        signed = padded(signed_order(settings, limit_buy(alice)), limit + 1)
        for client, body in ((f.risk, order), (f.execution, signed)):
            for content in (body, chunks(body)):  # with Content-Length, and chunked without it
                response = await client.post("/v1/orders", content=content, headers=headers)
                assert response.status_code == 413, response.text
                assert response.json()["code"] == "body_too_large"
        assert await f.risk_app.state.store.recent(account_id=alice.account_id, limit=10) == []
        assert await _execution_rows(f, alice.account_id) == (0, 0)
        assert f.data.callers == []  # risk never looked the order up


async def test_orders_with_unknown_fields_loose_numbers_or_unprintable_ids_are_refused_and_change_nothing(
    backing: Backing,
) -> None:
    settings = backing.settings()
    carol = trader()
    limit = {"order_type": "limit", "qty": 100, "price": "10.50"}
    async with fleet(settings) as f:
        # Unknown fields: refused, each named, instead of a plain limit order placed without them.
        response = await f.risk.post(
            "/v1/orders", json=_order(**limit, stop_price="9.50", good_till="2025-01-01"), headers=f.headers(carol)
        )
        assert response.status_code == 422, response.text
        answer = response.json()
        assert answer["code"] == "invalid_request"
        assert answer["message"] == "stop_price: Extra inputs are not permitted"
        assert [(d["field"], d["type"]) for d in answer["details"]] == [
            ("stop_price", "extra_forbidden"),
            ("good_till", "extra_forbidden"),
        ]

        bad: list[tuple[dict[str, Any], str]] = [
            *[(_order(qty=qty), "qty") for qty in (True, "100", 100.0, 1e3)],
            *[(_order(order_type="limit", qty=100, price=p), "price") for p in (True, "1e1", "10.5 ", "1_0.50")],
            *[
                (_order(client_order_id=cid), "client_order_id")
                for cid in ("evil\u202etxt", "c\u200b1", "c\u00851", " ", "<script>alert(1)</script>", 'c"1', "c\\1")
            ],
        ]
        for body, field in bad:
            response = await f.risk.post("/v1/orders", json=body, headers=f.headers(carol))
            assert response.status_code == 422, (body, response.text)
            assert response.json()["code"] == "invalid_request"
            assert response.json()["message"].startswith(f"{field}: "), response.text

        assert await f.risk_app.state.store.recent(account_id=carol.account_id, limit=10) == []
        assert await _execution_rows(f, carol.account_id) == (0, 0)

        # Execution reads its bodies as strictly: an approved order with an extra field or a loose qty is refused.
        for extra in ({"good_till": "2025-01-01"}, {"time_in_force": "GTC"}, {"qty": "100"}):
            body = {**signed_order(settings, limit_buy(carol, qty=100)), **extra}
            response = await f.execution.post("/v1/orders", json=body, headers=f.headers(carol))
            assert response.status_code == 422 and response.json()["code"] == "invalid_request", response.text
        assert await _execution_rows(f, carol.account_id) == (0, 0)

        # Prices as a decimal string, a JSON number with a fraction, or an integer are all read exactly (the same
        # order twice: the duplicate rule is turned off for it).
        await set_global_rules(f, {"duplicates": {"enabled": False}})
        placed = []
        for price in ("10.50", 10.5, 10):
            body = _order(order_type="limit", qty=100, price=price)
            response = await f.risk.post("/v1/orders", json=body, headers=f.headers(carol))
            assert response.status_code == 201, response.text
            placed.append(response.json()["order"]["price"])
        assert placed == ["10.50", "10.50", "10.00"]
