"""Execution's QMT adapter against the real MariaDB and RabbitMQ, with a fake bridge connecting to its
`/v1/bridge/trading` over a real WebSocket (uvicorn): orders placed through the bridge, fills pushed, outcomes lost
in a timeout settled by a query and never sent twice, late and duplicate reports, reconciliation with the broker,
the handshake's refusals, the trading switches, and a paper account beside a QMT one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from bridge.qmt import protocol
from services.execution.broker_sync import QmtSync
from services.execution.brokers.base import BrokerUnavailable
from services.execution.brokers.qmt import QmtBroker, fill_id
from services.execution.desk import OrderDesk
from services.execution.store import bridge_trading_audit, orders, outbox, trades
from services.execution.store.brokers import WITHDRAWN
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    event_log,
    fleet,
    limit_buy,
    quote,
    signed_order,
    trader,
    until,
)
from tests.integration.execution.qmt_bridge_fake import FakeBridge, broker_order, broker_trade, served

pytestmark = pytest.mark.integration

ADMIN = Principal("root", "admin", "acct-root")
OPENING = Decimal("10000000")  # LH_PAPER_OPENING_CASH's default: every account's ledger opens with it


@dataclass
class Qmt:
    f: Fleet
    url: str
    secrets: dict[str, str]

    @property
    def desk(self) -> OrderDesk:
        desk: OrderDesk = self.f.execution_app.state.desk
        return desk

    @property
    def sync(self) -> QmtSync:
        sync: QmtSync = self.f.execution_app.state.qmt_sync
        return sync

    @property
    def broker(self) -> QmtBroker:
        broker: QmtBroker = self.f.execution_app.state.qmt
        return broker

    @property
    def registry(self) -> Any:
        return self.f.execution_app.state.bridges

    async def bind(self, account_id: str, bridge_id: str) -> None:
        answer = await self.f.execution.put(f"/v1/accounts/{account_id}/broker", json={"broker": "qmt",
                                            "bridge_id": bridge_id}, headers=self.f.headers(ADMIN))  # fmt: skip
        assert answer.status_code == 200, answer.text

    def bridge(self, bridge_id: str, account_id: str) -> FakeBridge:
        return FakeBridge(self.url, bridge_id, account_id, self.secrets[bridge_id])

    async def connected(self, bridge_id: str, account_id: str) -> FakeBridge:
        """A bridge bound to the account, connected, and through the reconciliation its hello starts."""
        await self.bind(account_id, bridge_id)
        bridge = self.bridge(bridge_id, account_id)
        bridge.asset = {"cash": str(OPENING), "frozen_cash": "0.00", "market_value": "0.00", "total_asset": "0"}
        answer = await bridge.connect()
        assert answer["type"] == "welcome", answer
        await until(lambda: bridge_id in self.sync.last, what="the hello's reconciliation")
        return bridge

    async def place(self, principal: Principal, **kw: Any) -> dict[str, Any]:
        terms = limit_buy(principal, **kw)
        answer = await self.f.execution.post("/v1/orders", json=signed_order(self.f.settings, terms),
                                             headers=self.f.headers(principal))  # fmt: skip
        body: dict[str, Any] = answer.json()
        body["_http"] = answer.status_code
        return body

    async def order(self, order_id: str) -> dict[str, Any]:
        answer = await self.f.execution.get(f"/v1/orders/{order_id}", headers=self.f.headers(ADMIN))
        body: dict[str, Any] = answer.json()
        return body

    async def trade_ids(self, order_id: str) -> list[str]:
        async with self.f.store.db.session() as s:
            rows = (await s.execute(select(trades.c.trade_id).where(trades.c.order_id == order_id))).all()
        return sorted(r.trade_id for r in rows)


async def orders_of(q: Qmt, principal: Principal) -> list[dict[str, Any]]:
    answer = await q.f.execution.get("/v1/orders", headers=q.f.headers(principal))
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()
    return items


@asynccontextmanager
async def qmt_fleet(backing: Backing, bridges: int = 2, **overrides: Any) -> AsyncIterator[Qmt]:
    secrets = {f"b-{new_id()[:10]}": "bridge-secret-" + new_id() for _ in range(bridges)}
    text = ",".join(f"{k}={v}" for k, v in secrets.items())
    settings = backing.settings(qmt_bridge_secrets=SecretStr(text), qmt_reconcile_s=3600.0, **overrides)
    async with fleet(settings) as f, served(f.execution_app) as hostport:
        f.execution_app.state.bridges.request_timeout_s = 1.0
        yield Qmt(f, f"ws://{hostport}/v1/bridge/trading", secrets)


async def test_place_reply_and_fill_push_record_the_trade_with_its_event(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1) as q, event_log(q.f.settings) as events:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)

        placed = await q.place(who)
        assert (placed["_http"], placed["status"]) == (201, "submitted")
        order_id = placed["order_id"]
        [body] = [b for t, b in bridge.requests if t == protocol.PLACE]
        assert body == {"order_id": order_id, "remark": order_id[:24], "ts_code": "600000.SH", "side": "buy",
                        "qty": 1000, "price_type": 11, "price": "10.00", "strategy_name": ""}  # fmt: skip

        order = bridge.orders[order_id]
        await bridge.push("trade", broker_trade(order, "T1", 400, "9.98"))
        await until(lambda: q.trade_ids(order_id), what="the first fill recorded")
        order.update(status=56, traded_qty=1000)
        await bridge.push("trade", broker_trade(order, "T2", 600, "10.00"))
        await bridge.push("order", dict(order))

        async def filled() -> bool:
            return (await q.order(order_id))["status"] == "filled"

        await until(filled, what="the order filled")
        after = await q.order(order_id)
        # 400 x 9.98 + 600 x 10.00 = 3992 + 6000 = 9992 over 1000 shares
        assert (after["filled_qty"], after["avg_fill_price"]) == (1000, "9.9920")
        assert await q.trade_ids(order_id) == sorted([fill_id(order_id[:24], "T1"), fill_id(order_id[:24], "T2")])
        # the relay publishes as it goes: wait for the last of each kind, then check the whole sequence
        await until(lambda: events.types_of(order_id).count("trade.executed") == 2, what="the trades' events")
        await until(lambda: "order.filled" in events.types_of(order_id), what="the order's filled event")
        assert [t for t in events.types_of(order_id) if t.startswith("order.")] == [
            "order.accepted", "order.submitted", "order.partially_filled", "order.filled"]  # fmt: skip
        await bridge.close()


async def test_each_market_type_is_sent_with_miniqmts_price_type_of_its_exchange(backing: Backing) -> None:
    # qmt.md: 42 best-5 then cancel (SH), 43 best-5 then limit (SH), 44 counterparty best, 45 own best, 46 IOC (SZ),
    # 47 best-5 then cancel (SZ), 48 FOK (SZ); the price is the protection price: a buy's cap (the limit-up 11.00),
    # a STAR market order's own
    async with qmt_fleet(backing, bridges=1) as q:
        q.f.data.quotes["000001.SZ"] = quote("000001.SZ", "10.00", "11.00", "9.00")
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        cases = [
            ("600000.SH", "best5_cancel", None, 42, "11.00"),
            ("600000.SH", "best5_limit", None, 43, "11.00"),
            ("600000.SH", "own_best", None, 45, "11.00"),
            ("000001.SZ", "ioc", None, 46, "11.00"),
            ("000001.SZ", "best5_cancel", None, 47, "11.00"),
            ("000001.SZ", "fok", None, 48, "11.00"),
            ("000001.SZ", "counterparty_best", None, 44, "11.00"),
            ("688981.SH", "best5_cancel", "55.00", 42, "55.00"),
        ]
        for ts_code, market_type, protection, price_type, price in cases:
            qty = 200 if ts_code.startswith("688") else 100
            placed = await q.place(who, ts_code=ts_code, order_type="market", price=protection,
                                   market_type=market_type, qty=qty)  # fmt: skip
            assert placed["_http"] == 201, placed
            [body] = [b for t, b in bridge.requests if t == protocol.PLACE and b["order_id"] == placed["order_id"]]
            assert (body["ts_code"], body["price_type"], body["price"]) == (ts_code, price_type, price), market_type
        await bridge.close()


async def test_a_timeout_makes_the_order_unknown_and_only_queries_settle_it(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)

        # 1. the bridge takes the order but its reply never comes: unknown
        bridge.silent.add(protocol.PLACE)
        placed = await q.place(who)
        assert (placed["_http"], placed["status"]) == (201, "unknown")
        order_id = placed["order_id"]
        metrics = (await q.f.execution.get("/metrics")).text
        assert 'lh_orders_total{status="unknown"} 1.0' in metrics

        # 2. the broker had it and filled it: the reconciliation's query finds it filled
        bridge.silent.clear()
        bridge.on_place({**bridge.requests[-1][1]})
        order = bridge.orders[order_id]
        order.update(status=56, traded_qty=1000)
        bridge.trades.append(broker_trade(order, "T9", 1000, "10.00"))
        await q.desk.reconcile()  # the desk's pass resends only what is `accepted`: nothing here
        await q.sync.reconcile(bridge_id)
        after = await q.order(order_id)
        assert (after["status"], after["filled_qty"]) == ("filled", 1000)
        assert q.f.store and await q.trade_ids(order_id) == [fill_id(order_id[:24], "T9")]
        assert bridge.placed(order_id) == 1  # never sent a second time
        # settled from MiniQMT's list of the day's orders, where it is by its remark
        assert (protocol.QUERY_ORDERS, {}) in bridge.requests

        # 3. another one the broker never got: unknown within the grace, rejected after it
        bridge.silent.add(protocol.PLACE)
        lost = (await q.place(who))["order_id"]
        bridge.silent.clear()
        await q.sync.reconcile(bridge_id)
        assert (await q.order(lost))["status"] == "unknown"
        q.broker.grace_s = 0.0
        await q.sync.reconcile(bridge_id)
        gone = await q.order(lost)
        assert (gone["status"], gone["reason"]) == ("rejected", "never reached the broker")
        assert bridge.placed(lost) == 1
        await bridge.close()


async def test_trade_before_reply_duplicates_and_late_reports(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)

        async def trade_first(body: dict[str, Any]) -> dict[str, Any]:
            reply = bridge.on_place(body)
            order = bridge.orders[body["order_id"]]
            await bridge.push("trade", broker_trade(order, "T1", 1000, "10.00"))
            await bridge.push("trade", broker_trade(order, "T1", 1000, "10.00"))  # the same fill again
            await asyncio.sleep(0.2)
            return reply

        bridge.handlers[protocol.PLACE] = trade_first
        placed = await q.place(who)
        order_id = placed["order_id"]

        async def filled() -> bool:
            return (await q.order(order_id))["status"] == "filled"

        await until(filled, what="filled from the trade pushed before the reply")
        assert await q.trade_ids(order_id) == [fill_id(order_id[:24], "T1")]

        # a late "reported" (50) after the fill: skipped, the order stays filled
        order = dict(bridge.orders[order_id], status=50, traded_qty=0)
        await bridge.push("order", order)
        await bridge.push("trade", broker_trade(order, "T1", 1000, "10.00"))
        await asyncio.sleep(0.5)
        assert (await q.order(order_id))["status"] == "filled"
        assert await q.trade_ids(order_id) == [fill_id(order_id[:24], "T1")]
        assert await q.f.store.transitions(order_id) == [
            (None, "accepted"), ("accepted", "submitted"), ("submitted", "filled")]  # fmt: skip

        # an order_error: rejected with the broker's message
        rejected = (await q.place(who, qty=500))["order_id"]
        await bridge.push("order_error", {"order_id": rejected, "remark": rejected[:24], "qmt_order_id": None,
                                          "error_id": -61, "error_msg": "可用资金不足"})  # fmt: skip

        async def refused() -> bool:
            return (await q.order(rejected))["status"] == "rejected"

        await until(refused, what="the order_error recorded")
        assert (await q.order(rejected))["reason"] == "可用资金不足"
        await bridge.close()


async def test_a_reject_pushed_before_the_place_reply_is_the_answer_not_an_error(backing: Backing) -> None:
    # MiniQMT junks the order at once; the bridge's push of it is recorded before its answer to the send ("placed"):
    # the trader gets the rejected order (the late "placed" changes nothing), not a 502
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)

        async def reject_first(body: dict[str, Any]) -> dict[str, Any]:
            reply = bridge.on_place(body)
            order = dict(bridge.orders[body["order_id"]], status=57, status_msg="可用资金不足")
            await bridge.push("order", order)

            async def recorded() -> bool:
                return (await q.order(body["order_id"]))["status"] == "rejected"

            await until(recorded, what="the push recorded first")
            return reply

        bridge.handlers[protocol.PLACE] = reject_first
        placed = await q.place(who)
        assert (placed["_http"], placed["status"], placed["reason"]) == (201, "rejected", "可用资金不足")
        assert await q.f.store.transitions(placed["order_id"]) == [(None, "accepted"), ("accepted", "rejected")]
        await bridge.close()


async def test_an_order_the_bridge_knows_only_from_its_journal_is_settled_by_the_grace(backing: Backing) -> None:
    # The bridge journalled the order, then stopped before MiniQMT answered, and MiniQMT shows no order with its
    # remark: the bridge reports it "known" with status 255 and no MiniQMT id. Execution treats it as not known: unknown
    # within the grace, then rejected (never reached the broker) -- not left unknown for ever.
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        bridge.silent.add(protocol.PLACE)
        order_id = (await q.place(who))["order_id"]
        assert (await q.order(order_id))["status"] == "unknown"
        body = next(b for t, b in bridge.requests if t == protocol.PLACE)
        bridge.orders[order_id] = dict(broker_order(body, 0, status=255), qmt_order_id=None, order_sysid=None)
        await q.sync.reconcile(bridge_id)
        assert (await q.order(order_id))["status"] == "unknown"
        q.broker.grace_s = 0.0
        await q.sync.reconcile(bridge_id)
        after = await q.order(order_id)
        assert (after["status"], after["reason"]) == ("rejected", "never reached the broker")
        assert bridge.placed(order_id) == 1

        # "placed" (submitted here), then the bridge stopped before MiniQMT's answer and MiniQMT has no such order:
        # the bridge reports it journalled only (255) -- no acknowledgement by the broker ever came: rejected too,
        # once the grace is over (within it, left as it is)
        q.broker.grace_s = 3600.0
        bridge.silent.clear()
        placed = (await q.place(who))["order_id"]
        assert (await q.order(placed))["status"] == "submitted"
        bridge.orders[placed].update(status=255, qmt_order_id=None, order_sysid=None)
        await q.sync.reconcile(bridge_id)
        assert (await q.order(placed))["status"] == "submitted"
        q.broker.grace_s = 0.0
        await q.sync.reconcile(bridge_id)
        after = await q.order(placed)
        assert (after["status"], after["reason"]) == ("rejected", "never reached the broker")
        # one the broker acknowledged (a MiniQMT order id seen) that it then does not list today stays open
        acked = (await q.place(who))["order_id"]
        await bridge.push("order", dict(bridge.orders[acked]))
        await until(lambda: _qmt_id_recorded(q, acked), what="the MiniQMT id recorded")
        bridge.orders[acked].update(status=255, qmt_order_id=None, order_sysid=None)
        await q.sync.reconcile(bridge_id)
        assert (await q.order(acked))["status"] == "submitted"
        await bridge.close()


async def _qmt_id_recorded(q: Qmt, order_id: str) -> bool:
    mapping = await q.f.store.broker_order(order_id)
    return mapping is not None and mapping.qmt_order_id is not None


async def test_cancel_is_asynchronous_and_the_push_records_it(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        order_id = (await q.place(who))["order_id"]
        answer = await q.f.execution.post(f"/v1/orders/{order_id}/cancel", headers=q.f.headers(who))
        assert answer.status_code == 202, answer.text
        assert (answer.json()["status"], answer.json()["cancel_requested"]) == ("submitted", True)
        await bridge.push("order", dict(bridge.orders[order_id], status=54, status_msg="撤单成功"))

        async def cancelled() -> bool:
            return (await q.order(order_id))["status"] == "cancelled"

        await until(cancelled, what="the cancel recorded from the push")
        await bridge.close()


async def test_cancel_all_on_a_qmt_account_requests_each_cancel_of_the_broker(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        order_id = (await q.place(who))["order_id"]
        answer = await q.f.execution.post("/v1/orders/cancel-all", json={}, headers=q.f.headers(who))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["requested"], body["cancelled"], body["cancel_requested"], body["failed"]) == (
            1, [], [order_id], [],
        )  # fmt: skip
        assert (await q.order(order_id))["status"] == "submitted"  # open until the broker reports the cancel
        await bridge.push("order", dict(bridge.orders[order_id], status=54, status_msg="撤单成功"))

        async def cancelled() -> bool:
            return (await q.order(order_id))["status"] == "cancelled"

        await until(cancelled, what="the cancel recorded from the push")
        await bridge.close()


async def test_reconciliation_records_a_missed_fill_and_reports_a_position_difference(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1) as q, event_log(q.f.settings) as events:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        order_id = (await q.place(who, qty=1000, price="10.00"))["order_id"]
        # the fill's push was lost: only the queries carry it
        order = bridge.orders[order_id]
        order.update(status=56, traded_qty=1000)
        bridge.trades.append(broker_trade(order, "T5", 1000, "10.00"))
        # the broker also holds 500 000001.SZ the platform never bought; its cash is the platform's after the buy:
        # 10,000,000 - 10,000 - fees (commission 5.00 minimum; transfer fee 0.10 on SH: 10,000 x 0.001%)
        bridge.positions = [{"ts_code": "600000.SH", "volume": 1000}, {"ts_code": "000001.SZ", "volume": 500}]
        bridge.asset = {"cash": "9989994.90", "frozen_cash": "0.00", "market_value": "0", "total_asset": "0"}

        result = await q.sync.reconcile(bridge_id)
        assert (await q.order(order_id))["status"] == "filled"
        await until(lambda: "trade.executed" in events.types_of(order_id), what="the missed fill's event")
        assert [d.as_dict() for d in result.differences] == [
            {"kind": "position", "ts_code": "000001.SZ", "platform": "0", "broker": "500"}]  # fmt: skip

        # reported, not overwritten: execution's positions are its own
        positions = (await q.f.execution.get("/v1/positions", headers=q.f.headers(who))).json()
        assert [(p["ts_code"], p["qty"]) for p in positions] == [("600000.SH", 1000)]
        listed = (await q.f.execution.get(f"/v1/bridges/{bridge_id}/reconciliations",
                                          headers=q.f.headers(ADMIN))).json()  # fmt: skip
        assert listed[0]["differences"] == [{"kind": "position", "ts_code": "000001.SZ", "platform": "0",
                                             "broker": "500"}]  # fmt: skip
        async with q.f.store.db.session() as s:
            rows = (
                await s.execute(select(outbox.c.body).where(outbox.c.type == "broker.reconciliation.difference"))
            ).all()
        reported = [json.loads(r.body)["payload"] for r in rows]
        assert any(p["bridge_id"] == bridge_id and p["differences"] == listed[0]["differences"] for p in reported)
        metrics = (await q.f.execution.get("/metrics")).text
        assert f'lh_broker_reconciliation_differences_total{{bridge_id="{bridge_id}"}}' in metrics
        await bridge.close()


async def test_the_handshake_refuses_a_wrong_account_an_unknown_bridge_and_forged_frames(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=2) as q:
        first, second = q.secrets
        who, other = trader(), trader()
        await q.bind(who.account_id, first)

        wrong = q.bridge(first, other.account_id)
        answer = await wrong.connect()
        assert (answer["type"], answer["code"], wrong.close_code) == ("refused", "account_mismatch", 4403)
        unbound = q.bridge(second, other.account_id)
        answer = await unbound.connect()
        assert (answer["type"], answer["code"]) == ("refused", "account_mismatch")
        stranger = FakeBridge(q.url, "b-nobody", who.account_id, "whatever-secret")
        answer = await stranger.connect()
        assert (answer["type"], answer["code"]) == ("refused", "unknown_bridge")
        bad_secret = q.bridge(first, who.account_id)
        answer = await bad_secret.connect(secret="not-the-secret")
        assert (answer["type"], answer["code"]) == ("refused", "bad_hello")

        bridge = q.bridge(first, who.account_id)
        assert (await bridge.connect())["type"] == "welcome"
        order_id = (await q.place(who))["order_id"]
        # a trade frame signed with another key: never acted on, and the link is closed (4400)
        forger = protocol.Channel(secret="forged", session=bridge.welcome["session"] if bridge.welcome else "",
                                  outgoing=protocol.TO_PLATFORM, sent_seq=50)  # fmt: skip
        fake = broker_trade(bridge.orders[order_id], "TX", 1000, "10.00")
        await bridge.send_raw(forger.seal("trade", fake))
        await until(lambda: bridge.close_code is not None, what="the link closed")
        assert bridge.close_code == protocol.PROTOCOL_CLOSE_CODE
        assert await q.trade_ids(order_id) == []
        await until(lambda: first not in q.f.execution_app.state.bridges.links, what="the link dropped")
        metrics = (await q.f.execution.get("/metrics")).text
        assert f'lh_broker_bridge_connected{{bridge_id="{first}"}} 0.0' in metrics


async def test_trading_switches_are_admin_only_stored_audited_and_sent(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        assert bridge.welcome is not None and bridge.welcome["trading"] == {"enabled": False, "read_only": False}

        body = {"enabled": True, "read_only": False, "reason": "go live"}
        refused = await q.f.execution.post(f"/v1/bridges/{bridge_id}/trading", json=body, headers=q.f.headers(who))
        assert refused.status_code == 403
        answer = await q.f.execution.post(f"/v1/bridges/{bridge_id}/trading", json=body, headers=q.f.headers(ADMIN))
        assert answer.status_code == 200, answer.text
        assert (answer.json()["enabled"], answer.json()["sent"], answer.json()["updated_by"]) == (True, True, "root")
        assert (protocol.SET_TRADING, {"enabled": True, "read_only": False}) in bridge.requests
        unknown = await q.f.execution.post("/v1/bridges/b-none/trading", json=body, headers=q.f.headers(ADMIN))
        assert unknown.status_code == 404
        extra = await q.f.execution.post(f"/v1/bridges/{bridge_id}/trading", json={**body, "force": True},
                                         headers=q.f.headers(ADMIN))  # fmt: skip
        assert extra.status_code == 422

        async with q.f.store.db.session() as s:
            rows = (
                await s.execute(select(bridge_trading_audit).where(bridge_trading_audit.c.bridge_id == bridge_id))
            ).all()
        assert [(r.old_enabled, r.enabled, r.by, r.reason) for r in rows] == [(False, True, "root", "go live")]

        await bridge.close()
        again = q.bridge(bridge_id, who.account_id)
        welcome = await again.connect()
        assert welcome["trading"] == {"enabled": True, "read_only": False}
        listed = (await q.f.execution.get("/v1/bridges", headers=q.f.headers(ADMIN))).json()
        [mine] = [b for b in listed if b["bridge_id"] == bridge_id]
        assert (mine["connected"], mine["account_id"], mine["trading"]["enabled"]) == (True, who.account_id, True)
        await again.close()


async def broker_state(q: Qmt, who: Principal) -> tuple[bool | None, bool | None, str | None]:
    """(bridge_connected, trading_enabled, orders_refused) of the account's broker, as its trader reads it."""
    got = await q.f.execution.get(f"/v1/accounts/{who.account_id}/broker", headers=q.f.headers(who))
    assert got.status_code == 200, got.text
    body = got.json()
    return body["bridge_connected"], body["trading_enabled"], body["orders_refused"]


async def test_a_paper_account_and_a_qmt_account_side_by_side(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1, paper_fills="immediate") as q:
        [bridge_id] = q.secrets
        paper, real = trader(), trader()
        await q.bind(real.account_id, bridge_id)

        # the bridge is not connected: 503, nothing stored, nothing sent (never sent later either)
        waiting = await q.place(real)
        assert (waiting["_http"], waiting["code"]) == (503, "broker_unavailable")
        assert "order_id" not in waiting.get("details", {})
        assert await orders_of(q, real) == []
        # ... and the account's broker says so to its trader (the desk's banner), before any order is tried
        assert await broker_state(q, real) == (False, False, "broker_unavailable")

        bridge = q.bridge(bridge_id, real.account_id)
        assert (await bridge.connect())["type"] == "welcome"
        await q.desk.reconcile()
        assert [b for t, b in bridge.requests if t == protocol.PLACE] == []
        # the bridge's MiniQMT is down (its `connection` push): refused the same way
        await bridge.push(protocol.CONNECTION, {"qmt": "disconnected"})
        await until(lambda: q.registry.link(bridge_id).qmt == "disconnected", what="the push taken")
        down = await q.place(real)
        assert (down["_http"], down["code"]) == (503, "broker_unavailable")
        assert await broker_state(q, real) == (False, False, "broker_unavailable")
        await bridge.push(protocol.CONNECTION, {"qmt": "connected"})
        await until(lambda: q.registry.link(bridge_id).qmt == "connected", what="the push taken")
        placed = await q.place(real)
        order_id = placed["order_id"]
        assert (await q.order(order_id))["status"] == "submitted"
        assert bridge.placed(order_id) == 1
        assert [o["order_id"] for o in await orders_of(q, real)] == [order_id]

        on_paper = await q.place(paper)
        assert on_paper["status"] == "filled"  # the paper broker, at once (LH_PAPER_FILLS=immediate)
        assert all(b.get("order_id") != on_paper["order_id"] for _, b in bridge.requests)
        got = (await q.f.execution.get(f"/v1/accounts/{paper.account_id}/broker", headers=q.f.headers(paper))).json()
        assert (got["broker"], got["bridge_id"]) == ("paper", None)
        got = (await q.f.execution.get(f"/v1/accounts/{real.account_id}/broker", headers=q.f.headers(real))).json()
        assert (got["broker"], got["bridge_id"]) == ("qmt", bridge_id)
        # connected, its MiniQMT up, but the trading switch still at its default (off): the bridge rejects orders
        assert (got["bridge_connected"], got["trading_enabled"], got["orders_refused"]) == (
            True,
            False,
            "trading_disabled",
        )
        switched = await q.f.execution.post(f"/v1/bridges/{bridge_id}/trading", headers=q.f.headers(ADMIN),
                                            json={"enabled": True, "read_only": False, "reason": "go live"})  # fmt: skip
        assert switched.status_code == 200, switched.text
        assert await broker_state(q, real) == (True, True, None)
        assert await broker_state(q, paper) == (None, None, None)
        peek = await q.f.execution.get(f"/v1/accounts/{real.account_id}/broker", headers=q.f.headers(paper))
        assert peek.status_code == 403

        # paper settings are a paper account's only
        settings = await q.f.execution.get("/v1/account/paper-settings", headers=q.f.headers(real))
        assert (settings.status_code, settings.json()["code"]) == (409, "not_paper")
        settings = await q.f.execution.get("/v1/account/paper-settings", headers=q.f.headers(paper))
        assert settings.status_code == 200

        # the broker of an account with an open order does not change
        moved = await q.f.execution.put(f"/v1/accounts/{real.account_id}/broker", json={"broker": "paper"},
                                        headers=q.f.headers(ADMIN))  # fmt: skip
        assert (moved.status_code, moved.json()["code"]) == (409, "account_has_open_orders")
        by_trader = await q.f.execution.put(f"/v1/accounts/{paper.account_id}/broker", json={"broker": "paper"},
                                            headers=q.f.headers(paper))  # fmt: skip
        assert by_trader.status_code == 403
        unknown = await q.f.execution.put(f"/v1/accounts/{paper.account_id}/broker",
                                          json={"broker": "qmt", "bridge_id": "b-none"}, headers=q.f.headers(ADMIN))  # fmt: skip
        assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_bridge")
        await bridge.close()


async def test_an_order_waiting_for_its_bridge_can_be_withdrawn_and_disabled_trading_rejects(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        await q.bind(who.account_id, bridge_id)
        bridge = q.bridge(bridge_id, who.account_id)
        assert (await bridge.connect())["type"] == "welcome"
        # MiniQMT went away before the bridge could say so: the bridge answers the place with qmt_disconnected
        bridge.handlers[protocol.PLACE] = lambda body: protocol.failed(protocol.QMT_DISCONNECTED, "MiniQMT is down")
        waiting = await q.place(who)
        assert (waiting["_http"], waiting["code"]) == (503, "broker_unavailable")
        order_id = waiting["details"]["order_id"]
        assert (await q.order(order_id))["status"] == "accepted"
        # nothing was sent: the cancel withdraws it here, at once
        answer = await q.f.execution.post(f"/v1/orders/{order_id}/cancel", headers=q.f.headers(who))
        assert (answer.status_code, answer.json()["status"]) == (200, "cancelled")
        assert answer.json()["reason"] == "cancelled before it was sent to the broker"

        bridge.handlers[protocol.PLACE] = lambda body: protocol.failed(protocol.TRADING_DISABLED, "trading is off")
        places = bridge.placed(order_id)
        await q.desk.reconcile()
        assert bridge.placed(order_id) == places == 1  # a withdrawn order is never sent again

        # the bridge refuses to trade (an admin's switch): the order is rejected, not kept for later
        refused = await q.place(who)
        assert (refused["_http"], refused["status"]) == (201, "rejected")
        assert refused["reason"] == f"trading is disabled on QMT bridge {bridge_id}"
        await bridge.close()


async def test_a_new_hello_replaces_the_link_and_settles_unknown_orders(backing: Backing) -> None:
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        first = await q.connected(bridge_id, who.account_id)
        first.silent.add(protocol.PLACE)
        order_id = (await q.place(who))["order_id"]
        assert (await q.order(order_id))["status"] == "unknown"
        await q.sync.reconcile_all()
        assert "lh_broker_orders_unknown 1.0" in (await q.f.execution.get("/metrics")).text

        # the bridge restarts (it had placed the order, and it was partly filled meanwhile) and says hello again
        second = q.bridge(bridge_id, who.account_id)
        body = next(b for t, b in first.requests if t == protocol.PLACE)
        second.on_place(body)
        order = second.orders[order_id]
        order.update(status=55, traded_qty=300)
        second.trades.append(broker_trade(order, "T3", 300, "10.00"))
        assert (await second.connect())["type"] == "welcome"
        await until(lambda: first.close_code is not None, what="the first link closed")
        assert first.close_code == 4409  # replaced

        async def settled() -> bool:
            return (await q.order(order_id))["status"] == "partially_filled"

        await until(settled, what="the unknown order settled by the hello's reconciliation")
        assert (await q.order(order_id))["filled_qty"] == 300
        assert second.placed(order_id) == 0 and first.placed(order_id) == 1
        assert (protocol.QUERY_ORDERS, {}) in second.requests  # listed by MiniQMT: settled from its list
        await q.sync.reconcile_all()
        assert "lh_broker_orders_unknown 0.0" in (await q.f.execution.get("/metrics")).text
        await second.close()


async def test_a_bound_account_never_falls_back_to_paper_when_its_bridge_is_no_longer_configured(
    backing: Backing,
) -> None:
    who = trader()
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        await q.bind(who.account_id, bridge_id)
    # execution restarts without LH_QMT_BRIDGE_SECRETS: the account is still bound to QMT, so its orders wait (503)
    async with fleet(backing.settings(paper_fills="immediate")) as f:
        answer = await f.execution.post("/v1/orders", json=signed_order(f.settings, limit_buy(who)),
                                        headers=f.headers(who))  # fmt: skip
        assert (answer.status_code, answer.json()["code"]) == (503, "broker_unavailable")
        assert "order_id" not in answer.json().get("details", {})  # nothing stored, nothing sent
        listed = await f.execution.get("/v1/orders", headers=f.headers(who))
        assert listed.json() == []


async def test_rebinding_a_connected_bridge_closes_its_link_and_no_order_goes_to_the_old_account(
    backing: Backing,
) -> None:
    # Bridge X is connected for account A. An admin moves X to account B: X's live link (checked against A at its
    # hello) is closed at once; B's orders are refused (503, nothing sent) until X says hello for B; a hello still
    # naming A is refused.
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        a, b = trader(), trader()
        bridge = await q.connected(bridge_id, a.account_id)
        unbind = await q.f.execution.put(f"/v1/accounts/{a.account_id}/broker", json={"broker": "paper"},
                                         headers=q.f.headers(ADMIN))  # fmt: skip
        assert unbind.status_code == 200, unbind.text
        await until(lambda: bridge.close_code is not None, what="the link closed when A's binding changed")
        assert bridge.close_code == 4410
        await q.bind(b.account_id, bridge_id)
        refused = await q.place(b)
        assert (refused["_http"], refused["code"]) == (503, "broker_unavailable")
        assert [t for t, _ in bridge.requests if t == protocol.PLACE] == []
        assert await orders_of(q, b) == []

        stale = q.bridge(bridge_id, a.account_id)  # the bridge still configured for A: refused
        answer = await stale.connect()
        assert (answer["type"], answer["code"]) == ("refused", "account_mismatch")
        fresh = q.bridge(bridge_id, b.account_id)
        assert (await fresh.connect())["type"] == "welcome"
        await until(lambda: bridge_id in q.registry.links, what="B's link")
        placed = await q.place(b)
        assert (placed["_http"], placed["status"]) == (201, "submitted")
        assert fresh.placed(placed["order_id"]) == 1
        await fresh.close()


async def test_a_link_naming_another_account_sends_nothing_for_an_order(backing: Backing) -> None:
    # Should a link outlive its binding (the rebinding's close raced with a request), the adapter itself refuses to
    # send an order's place, cancel or query over a link whose account is not the order's.
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        placed = await q.place(who)
        assert placed["status"] == "submitted"
        stored = await q.f.store.get_order(placed["order_id"])
        assert stored is not None
        q.registry.links[bridge_id].account_id = "acct-someone-else"
        sent_before = list(bridge.requests)
        with pytest.raises(BrokerUnavailable):
            await q.broker.look_up(stored.order)
        with pytest.raises(BrokerUnavailable):
            await q.broker.cancel(stored.order.order_id)
        with pytest.raises(BrokerUnavailable):
            await q.broker.submit(stored.order)
        refused = await q.place(who)
        assert (refused["_http"], refused["code"]) == (503, "broker_unavailable")
        assert bridge.requests == sent_before  # nothing sent
        await bridge.close()


async def test_an_unknown_order_miniqmt_lists_is_settled_from_the_list_not_rejected(backing: Backing) -> None:
    # The place's answer was lost (unknown) and the bridge then lost its journal: its query_order says "not known",
    # but MiniQMT lists the order by its remark, filled. The reconciliation settles it from that list: filled with
    # its trade -- not `rejected` (never reached the broker) once the grace is over.
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        bridge.silent.add(protocol.PLACE)
        order_id = (await q.place(who))["order_id"]
        assert (await q.order(order_id))["status"] == "unknown"
        bridge.silent.clear()
        bridge.on_place(next(b for t, b in bridge.requests if t == protocol.PLACE))
        order = bridge.orders[order_id]
        order.update(status=56, traded_qty=1000)
        bridge.trades.append(broker_trade(order, "T7", 1000, "10.00"))
        bridge.handlers[protocol.QUERY_ORDER] = lambda body: protocol.ok({"known": False, "order": None, "trades": []})
        q.broker.grace_s = 0.0
        await q.sync.reconcile(bridge_id)
        after = await q.order(order_id)
        assert (after["status"], after["filled_qty"], after["avg_fill_price"]) == ("filled", 1000, "10.00")
        assert await q.trade_ids(order_id) == [fill_id(order_id[:24], "T7")]
        assert bridge.placed(order_id) == 1
        await bridge.close()


async def test_an_order_is_never_rejected_as_absent_without_miniqmts_full_list(backing: Backing) -> None:
    # An unknown order the bridge does not know, past the grace: while MiniQMT cannot list its orders (disconnected)
    # it stays unknown; once MiniQMT's full list is had and does not have it, it is rejected (never reached the
    # broker); had the list had it, its state there would have settled it.
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        bridge.silent.add(protocol.PLACE)
        lost = (await q.place(who))["order_id"]
        bridge.silent.clear()
        q.broker.grace_s = 0.0
        bridge.handlers[protocol.QUERY_ORDERS] = lambda body: protocol.failed(protocol.QMT_DISCONNECTED, "down")
        stored = await q.f.store.get_order(lost)
        assert stored is not None
        report = await q.broker.look_up(stored.order)
        assert report.status.value == "unknown"
        await q.desk.reconcile()
        assert (await q.order(lost))["status"] == "unknown"
        del bridge.handlers[protocol.QUERY_ORDERS]
        await q.sync.reconcile(bridge_id)
        gone = await q.order(lost)
        assert (gone["status"], gone["reason"]) == ("rejected", "never reached the broker")
        assert bridge.placed(lost) == 1
        await bridge.close()


async def test_a_fill_for_an_order_already_final_otherwise_raises_an_alert_and_changes_nothing(
    backing: Backing,
) -> None:
    # The order was rejected here (MiniQMT's order_error), then MiniQMT reports a fill for it: the final state is not
    # moved, but the disagreement is counted, stored as a reconciliation and published -- once, however often the
    # fill is reported again. A late non-final report that adds nothing (50 after filled) raises nothing.
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        order_id = (await q.place(who, qty=500))["order_id"]
        await bridge.push("order_error", {"order_id": order_id, "remark": order_id[:24], "qmt_order_id": None,
                                          "error_id": -61, "error_msg": "可用资金不足"})  # fmt: skip

        async def refused() -> bool:
            return (await q.order(order_id))["status"] == "rejected"

        await until(refused, what="the order_error recorded")
        order = bridge.orders[order_id]
        for _ in range(2):
            await bridge.push("trade", broker_trade(order, "T5", 500, "10.00"))
        expected = {"kind": "order", "ts_code": "600000.SH", "platform": f"{order_id} rejected",
                    "broker": f"submitted with 500 more shares filled ({fill_id(order_id[:24], 'T5')})"}  # fmt: skip

        async def listed() -> list[dict[str, Any]]:
            answer = await q.f.execution.get(f"/v1/bridges/{bridge_id}/reconciliations", headers=q.f.headers(ADMIN))
            assert answer.status_code == 200, answer.text
            return [d for r in answer.json() for d in r["differences"] if d["kind"] == "order"]

        await until(listed, what="the disagreement stored")
        await bridge.push("order", dict(order, status=50))  # a late "reported": adds nothing, no alert
        await asyncio.sleep(0.5)
        assert await listed() == [expected]
        after = await q.order(order_id)
        assert (after["status"], after["filled_qty"]) == ("rejected", 0)
        assert await q.trade_ids(order_id) == []
        metrics = (await q.f.execution.get("/metrics")).text
        assert f'lh_broker_reports_after_final_total{{bridge_id="{bridge_id}"}} 1.0' in metrics
        async with q.f.store.db.session() as s:
            rows = (
                await s.execute(select(outbox.c.body).where(outbox.c.type == "broker.reconciliation.difference"))
            ).all()
        reported = [json.loads(r.body)["payload"] for r in rows]
        assert [p["differences"] for p in reported if p["account_id"] == who.account_id] == [[expected]]
        await bridge.close()


async def _age(q: Qmt, order_id: str, days: int) -> None:
    """Move the order's creation `days` back: an order of a session that has closed."""
    async with q.f.store.db.session() as s:
        row = (await s.execute(select(orders.c.created_at).where(orders.c.order_id == order_id))).one()
        await s.execute(
            update(orders).where(orders.c.order_id == order_id).values(created_at=row.created_at - timedelta(days=days))
        )
        await s.commit()


async def test_accepted_orders_of_a_closed_session_are_withdrawn_or_looked_up_never_sent(backing: Backing) -> None:
    # Two QMT orders left `accepted` from a session that has closed: one never sent (the bridge placed nothing) is
    # withdrawn with its reason; one whose mapping records a send (a crash between the send and its answer) is looked
    # up -- MiniQMT's full list does not have it, so past the grace it is rejected. Neither is sent (again).
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        bridge.handlers[protocol.PLACE] = lambda body: protocol.failed(protocol.QMT_DISCONNECTED, "MiniQMT is down")
        unsent = (await q.place(who))["details"]["order_id"]
        crashed = (await q.place(who, qty=200))["details"]["order_id"]
        assert [(await q.order(o))["status"] for o in (unsent, crashed)] == ["accepted", "accepted"]
        assert await q.f.store.record_sending(crashed, bridge_id, crashed[:24], datetime.now(UTC) - timedelta(days=10))
        for order_id in (unsent, crashed):
            await _age(q, order_id, 10)
        del bridge.handlers[protocol.PLACE]
        places = [bridge.placed(unsent), bridge.placed(crashed)]
        q.broker.grace_s = 0.0

        await q.sync.reconcile(bridge_id)
        await q.desk.reconcile()
        withdrawn, gone = await q.order(unsent), await q.order(crashed)
        assert (withdrawn["status"], withdrawn["reason"]) == (
            "cancelled", "cancelled before it was sent to the broker: its session closed (a day order is never sent "
            "on another day)")  # fmt: skip
        assert (gone["status"], gone["reason"]) == ("rejected", "never reached the broker")
        assert (protocol.QUERY_ORDER, {"order_id": crashed}) in bridge.requests
        assert [bridge.placed(unsent), bridge.placed(crashed)] == places == [1, 1]  # the first, refused, attempt
        await bridge.close()


async def test_a_send_that_loses_to_a_withdrawal_sends_nothing(backing: Backing) -> None:
    # The mapping is read (not sent, not withdrawn), then a cancel withdraws the order before the send is recorded:
    # the send's compare-and-set loses, and nothing goes to the bridge. A second send of an order already marked
    # sent loses too.
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        bridge.handlers[protocol.PLACE] = lambda body: protocol.failed(protocol.QMT_DISCONNECTED, "MiniQMT is down")
        order_id = (await q.place(who))["details"]["order_id"]
        del bridge.handlers[protocol.PLACE]
        stored = await q.f.store.get_order(order_id)
        assert stored is not None and stored.order.status.value == "accepted"
        store = q.f.store
        real = store.record_sending

        async def withdrawn_first(*args: Any) -> bool:
            await store.record_withdrawn(order_id, bridge_id, order_id[:24], WITHDRAWN, datetime.now(UTC))
            return await real(*args)

        store.record_sending = withdrawn_first  # type: ignore[method-assign]
        try:
            report = await q.broker.submit(stored.order)
        finally:
            del store.record_sending
        assert (report.status.value, report.reason) == ("cancelled", WITHDRAWN)
        assert bridge.placed(order_id) == 1  # only the first attempt, which MiniQMT never got
        mapping = await store.broker_order(order_id)
        assert mapping is not None and mapping.sent_at is None

        other = (await q.place(who, qty=300))["order_id"]
        assert await store.record_sending(other, bridge_id, other[:24], datetime.now(UTC)) is False
        await bridge.close()


async def test_an_amend_waits_for_the_brokers_cancel_report_and_replaces_what_the_fills_left(backing: Backing) -> None:
    """Amend on QMT (docs/order-path.md "Amending an order"): the cancel is asynchronous, so the replacement is placed
    only once the broker reports the original final; a fill pushed between the amend and that report makes it
    smaller."""
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        original_id = (await q.place(who, qty=1000))["order_id"]
        order = bridge.orders[original_id]
        order.update(status=55, traded_qty=400)
        await bridge.push("trade", broker_trade(order, "T1", 400, "10.00"))
        await bridge.push("order", dict(order))

        async def filled(n: int) -> bool:
            return (await q.order(original_id))["filled_qty"] == n

        await until(lambda: filled(400), what="the first fill recorded")

        # the new total: 800 at 10.05; the cancel is only requested at the broker
        answer = await q.f.execution.post(f"/v1/orders/{original_id}/amend", json={"qty": 800, "price": "10.05"},
                                          headers=q.f.headers(who))  # fmt: skip
        assert answer.status_code == 202, answer.text
        amend = answer.json()
        assert (amend["status"], amend["replacement_order_id"]) == ("cancelling", None)
        assert [b["order_id"] for t, b in bridge.requests if t == protocol.CANCEL] == [original_id]
        await q.f.execution_app.state.amender.run_pass()  # not confirmed yet: nothing is placed
        assert [b["order_id"] for t, b in bridge.requests if t == protocol.PLACE] == [original_id]

        # 100 more fill before the cancel takes; then the broker reports it part-cancelled (53) with 500 filled
        order.update(status=53, traded_qty=500)
        await bridge.push("trade", broker_trade(order, "T2", 100, "10.00"))
        await bridge.push("order", dict(order))

        async def replaced() -> dict[str, Any] | None:
            read = (await q.f.execution.get(f"/v1/amends/{amend['amend_id']}", headers=q.f.headers(who))).json()
            return read if read["status"] == "replaced" else None

        await until(replaced, what="the replacement placed after the cancel report")
        done = await replaced()
        assert done is not None
        # 800 - 500 filled = 300 at the new price, sent to the broker as a limit order (price type 11)
        assert (done["filled_qty"], done["replacement_qty"]) == (500, 300)
        [sent] = [
            b for t, b in bridge.requests if t == protocol.PLACE and b["order_id"] == done["replacement_order_id"]
        ]
        assert (sent["qty"], sent["price"], sent["price_type"], sent["side"]) == (300, "10.05", 11, "buy")
        original = await q.order(original_id)
        assert (original["status"], original["filled_qty"], original["replaced_by"]) == (
            "cancelled", 500, done["replacement_order_id"])  # fmt: skip
        await bridge.close()


async def test_an_amend_whose_cancel_answer_is_lost_waits_for_the_report_and_one_the_bridge_refuses_changes_nothing(
    backing: Backing,
) -> None:
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        refused_id = (await q.place(who, qty=1000))["order_id"]
        lost_id = (await q.place(who, qty=1000))["order_id"]

        # MiniQMT refuses the cancel at once: 409, and no amend is kept (the order may be amended again)
        bridge.handlers[protocol.CANCEL] = lambda body: protocol.failed(protocol.QMT_REFUSED, "-1")
        answer = await q.f.execution.post(f"/v1/orders/{refused_id}/amend", json={"price": "10.05"},
                                          headers=q.f.headers(who))  # fmt: skip
        assert (answer.status_code, answer.json()["code"]) == (409, "order_not_amendable")
        assert await q.f.execution_app.state.amend_store.of_order(refused_id) is None
        assert (await q.order(refused_id))["status"] == "submitted"

        # the cancel goes out but its answer is lost (timeout): it may have taken, so the amend stays `cancelling`
        del bridge.handlers[protocol.CANCEL]
        bridge.silent.add(protocol.CANCEL)
        answer = await q.f.execution.post(f"/v1/orders/{lost_id}/amend", json={"price": "10.05"},
                                          headers=q.f.headers(who))  # fmt: skip
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "cancelling" and "answer lost" in answer.json()["message"]
        # it had taken: the broker reports the original cancelled, and the replacement (1,000 - 0) goes out
        order = bridge.orders[lost_id]
        order.update(status=54)
        await bridge.push("order", dict(order))

        async def placed() -> bool:
            return any(t == protocol.PLACE and b["price"] == "10.05" for t, b in bridge.requests)

        await until(placed, what="the replacement sent after the report")
        [sent] = [b for t, b in bridge.requests if t == protocol.PLACE and b["price"] == "10.05"]
        assert sent["qty"] == 1000
        await bridge.close()


async def test_an_order_renumbered_by_a_miniqmt_restart_keeps_its_mapping_and_each_fill_once(backing: Backing) -> None:
    # MiniQMT restarted without its session: the bridge reports the same platform order under a new MiniQMT id, with
    # its remark gone at MiniQMT (an older bridge's objects carry "" as the remark; this one's carry the journal's).
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        bridge = await q.connected(bridge_id, who.account_id)
        order_id = (await q.place(who, qty=1000, price="10.00"))["order_id"]
        order = bridge.orders[order_id]  # MiniQMT id 1001, sysid S1001
        await bridge.push("order", dict(order))
        await bridge.push("trade", broker_trade(order, "T1", 400, "10.00"))
        await until(lambda: q.trade_ids(order_id), what="the first fill recorded")

        # after the restart: id 1003, no remark, same sysid and trade number T1; T1 comes again (the bridge's
        # reconciliation after a reconnect), T2 is new
        renumbered = dict(order, qmt_order_id=1003, remark="", status=55, traded_qty=400, traded_price="10.00")
        bridge.orders[order_id] = renumbered
        await bridge.push("order", renumbered)
        await bridge.push("trade", broker_trade(renumbered, "T1", 400, "10.00"))

        async def follows() -> bool:
            mapping = await q.f.store.broker_order(order_id)
            return mapping is not None and mapping.qmt_order_id == "1003"

        await until(follows, what="the mapping following the new MiniQMT id")
        # the rest filled, seen only through the reconciliation's queries (remark-less objects naming the order)
        renumbered.update(status=56, traded_qty=1000)
        bridge.trades[:] = [broker_trade(renumbered, "T1", 400, "10.00"), broker_trade(renumbered, "T2", 600, "10.00")]
        await q.sync.reconcile(bridge_id)
        after = await q.order(order_id)
        # 400 + 600 = 1000 shares, each fill once: T1 recorded before the restart is not recorded again
        assert (after["status"], after["filled_qty"]) == ("filled", 1000)
        assert await q.trade_ids(order_id) == sorted([fill_id(order_id[:24], "T1"), fill_id(order_id[:24], "T2")])
        mapping = await q.f.store.broker_order(order_id)
        assert mapping is not None
        assert (mapping.remark, mapping.qmt_order_id, mapping.order_sysid) == (order_id[:24], "1003", "S1001")
        await bridge.close()


async def test_a_bridge_link_opening_and_closing_is_published_for_the_alerts(backing: Backing) -> None:
    """broker.bridge.connected / broker.bridge.disconnected: what the notify service turns into (and out of) the
    LianghuaBrokerDisconnected alert."""
    async with qmt_fleet(backing, bridges=1) as q:
        [bridge_id] = q.secrets
        who = trader()
        seen: list[Any] = []

        async def on_event(event: Any) -> None:
            seen.append(event)

        bus = q.f.execution_app.state.infra.bus
        await bus.subscribe(f"test-bridge-links-{new_id()[:8]}", ["broker.bridge.*"], on_event, durable=False)
        bridge = await q.connected(bridge_id, who.account_id)
        await until(lambda: len(seen) >= 1, what="the connected event")
        await bridge.close()
        await until(lambda: len(seen) >= 2, what="the disconnected event")
        assert [e.type for e in seen] == ["broker.bridge.connected", "broker.bridge.disconnected"]
        opened, closed = (e.parsed() for e in seen)
        assert (opened.bridge_id, opened.account_id, opened.why) == (bridge_id, who.account_id, None)
        assert (closed.bridge_id, closed.account_id, closed.why) == (bridge_id, who.account_id, "closed")
