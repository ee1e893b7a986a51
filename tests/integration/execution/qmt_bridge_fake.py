"""A scriptable fake QMT bridge for execution's tests: it connects to execution's `/v1/bridge/trading` as the real
bridge does (bridge/qmt/protocol.py's handshake and signed frames), answers requests from a small in-memory broker
(orders, trades, positions, asset: the protocol's objects), and lets a test leave a request unanswered, push what it
likes, or send a forged frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
import websockets
from fastapi import FastAPI

from bridge.qmt import protocol

CST = "+08:00"


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` under uvicorn on a free loopback port (its lifespan is the caller's); yield host:port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def broker_order(body: dict[str, Any], qmt_order_id: int, status: int = 50, traded: int = 0) -> dict[str, Any]:
    """The protocol's order object of a placed request."""
    return {
        "order_id": body["order_id"],
        "remark": body["remark"],
        "qmt_order_id": qmt_order_id,
        "order_sysid": f"S{qmt_order_id}",
        "ts_code": body["ts_code"],
        "side": body["side"],
        "qty": body["qty"],
        "price_type": body["price_type"],
        "price": body["price"],
        "status": status,
        "status_msg": "",
        "traded_qty": traded,
        "traded_price": "0",
        "order_time": "2026-12-07T10:00:00" + CST,
    }


def broker_trade(order: dict[str, Any], trade_id: str, qty: int, price: str) -> dict[str, Any]:
    return {
        "order_id": order["order_id"],
        "remark": order["remark"],
        "qmt_order_id": order["qmt_order_id"],
        "order_sysid": order["order_sysid"],
        "trade_id": trade_id,
        "ts_code": order["ts_code"],
        "side": order["side"],
        "qty": qty,
        "price": price,
        "amount": str(qty * float(price)),
        "traded_at": "2026-12-07T10:00:01" + CST,
        "commission": "5.00",
    }


@dataclass
class FakeBridge:
    url: str  # ws://host:port/v1/bridge/trading
    bridge_id: str
    account_id: str
    secret: str
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    silent: set[str] = field(default_factory=set)  # request types left unanswered (the platform times out)
    # request type -> a function of the body giving the reply (protocol.ok / protocol.failed) or None (no reply)
    handlers: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by the platform's order_id
    trades: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    asset: dict[str, str] = field(default_factory=lambda: {"cash": "0.00", "frozen_cash": "0.00",
                                                           "market_value": "0.00", "total_asset": "0.00"})  # fmt: skip
    next_qmt_id: int = 1000
    welcome: dict[str, Any] | None = None
    close_code: int | None = None
    _ws: Any = None
    _channel: protocol.Channel | None = None
    _reader: asyncio.Task[None] | None = None

    async def connect(self, *, account_id: str | None = None, secret: str | None = None) -> dict[str, Any]:
        """Say hello; the platform's answer (welcome or refused)."""
        self._ws = await websockets.connect(self.url)
        challenge = json.loads(await self._ws.recv())
        assert challenge["type"] == "challenge"
        hello = protocol.hello(secret or self.secret, bridge_id=self.bridge_id, account_id=account_id or self.account_id,
                               channel="trading", server_nonce=challenge["nonce"], now=datetime.now(UTC))  # fmt: skip
        await self._ws.send(json.dumps(hello))
        answer: dict[str, Any] = json.loads(await self._ws.recv())
        if answer["type"] == "welcome":
            assert protocol.check_welcome(self.secret, answer, bridge_id=self.bridge_id, nonce=hello["nonce"])
            self.welcome = answer
            self._channel = protocol.Channel(
                secret=self.secret, session=answer["session"], outgoing=protocol.TO_PLATFORM
            )
            self._reader = asyncio.create_task(self._read())
        else:
            with contextlib.suppress(Exception):
                await self._ws.recv()
            self.close_code = self._ws.close_code
        return answer

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)

    async def push(self, type_: str, body: dict[str, Any]) -> None:
        assert self._channel is not None
        await self._ws.send(self._channel.seal(type_, body))

    async def send_raw(self, text: str) -> None:
        await self._ws.send(text)

    def placed(self, order_id: str) -> int:
        return sum(1 for t, b in self.requests if t == protocol.PLACE and b.get("order_id") == order_id)

    async def _read(self) -> None:
        assert self._channel is not None
        try:
            async for text in self._ws:
                type_, id_, body = self._channel.open(text)
                self.requests.append((type_, body))
                if type_ in self.silent:
                    continue
                handler = self.handlers.get(type_) or getattr(self, f"on_{type_}", None)
                reply = handler(body) if handler is not None else protocol.failed(protocol.BAD_REQUEST, type_)
                if asyncio.iscoroutine(reply):
                    reply = await reply
                if reply is not None:
                    await self._ws.send(self._channel.seal(protocol.REPLY, reply, id_=id_))
        except websockets.ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None
        finally:
            if self._ws.close_code is not None:
                self.close_code = self._ws.close_code

    # --- the default broker ---------------------------------------------------------------------------------------

    def on_place(self, body: dict[str, Any]) -> dict[str, Any]:
        known = self.orders.get(body["order_id"])
        if known is not None:
            return protocol.ok({"state": "known", "order": known})
        self.next_qmt_id += 1
        order = broker_order(body, self.next_qmt_id)
        self.orders[body["order_id"]] = order
        # as the real bridge answers: once MiniQMT took the call, before its async response (the state follows as
        # pushes and queries)
        return protocol.ok({"state": "placed", "order": None})

    def on_cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.get(body["order_id"])
        if order is None:
            return protocol.failed(protocol.UNKNOWN_ORDER, "no such order")
        order["status"] = 51
        return protocol.ok({"state": "requested", "order": dict(order)})

    def on_query_order(self, body: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.get(body["order_id"])
        trades = [t for t in self.trades if t["order_id"] == body["order_id"]]
        return protocol.ok({"known": order is not None, "order": order, "trades": trades})

    def on_query_orders(self, body: dict[str, Any]) -> dict[str, Any]:
        return protocol.ok({"orders": list(self.orders.values())})

    def on_query_trades(self, body: dict[str, Any]) -> dict[str, Any]:
        return protocol.ok({"trades": list(self.trades)})

    def on_query_positions(self, body: dict[str, Any]) -> dict[str, Any]:
        return protocol.ok({"positions": list(self.positions)})

    def on_query_asset(self, body: dict[str, Any]) -> dict[str, Any]:
        return protocol.ok({"asset": dict(self.asset)})

    def on_set_trading(self, body: dict[str, Any]) -> dict[str, Any]:
        return protocol.ok(dict(body))
