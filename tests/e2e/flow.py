"""The order flow a user goes through, driven over HTTP and WebSocket against a running platform."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from websockets.asyncio.client import connect


@dataclass
class Session:
    base_url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + f"/ws?token={self.token}"


async def login(client: httpx.AsyncClient, base_url: str, username: str, password: str) -> Session:
    resp = await client.post(f"{base_url}/api/v1/auth/token", data={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return Session(base_url, resp.json()["access_token"])


async def create_user(client: httpx.AsyncClient, admin: Session, role: str) -> tuple[str, str]:
    username, password = f"{role}-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    resp = await client.post(
        f"{admin.base_url}/api/v1/users",
        json={"username": username, "password": password, "role": role},
        headers=admin.headers,
    )
    assert resp.status_code == 201, resp.text
    return username, password


async def tradable_main_board_stock(client: httpx.AsyncClient, s: Session) -> dict[str, Any]:
    """A main-board, non-ST stock that traded on the last day, with its quote."""
    resp = await client.get(f"{s.base_url}/api/v1/securities", headers=s.headers)
    assert resp.status_code == 200, resp.text
    for sec in resp.json():
        if sec["board"] != "main" or sec["is_st"]:
            continue
        quote = (await client.get(f"{s.base_url}/api/v1/quotes/{sec['ts_code']}", headers=s.headers)).json()
        if not quote["suspended"] and Decimal(quote["last_close"]) * 100 < Decimal("500000"):
            return quote
    raise AssertionError("no tradable main-board stock in the demo market")


async def next_ws_event(ws: Any, wanted: set[str], timeout_s: float = 15.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            event = json.loads(await ws.recv())
            if event.get("type") in wanted:
                return event


async def place_order_and_see_the_fill(client: httpx.AsyncClient, trader: Session) -> dict[str, Any]:
    """Place a market buy as a trader; return what the user saw (order, fill over the WebSocket, read-back)."""
    quote = await tradable_main_board_stock(client, trader)
    async with connect(trader.ws_url, open_timeout=10) as ws:
        client_order_id = f"e2e-{secrets.token_hex(6)}"
        order = {
            "client_order_id": client_order_id,
            "ts_code": quote["ts_code"],
            "side": "buy",
            "order_type": "market",
            "qty": 100,
        }
        correlation_id = f"e2e-corr-{secrets.token_hex(6)}"
        headers = {**trader.headers, "X-Correlation-ID": correlation_id}
        resp = await client.post(f"{trader.base_url}/api/v1/orders", json=order, headers=headers)
        assert resp.status_code == 201, resp.text
        placed = resp.json()
        fill = await next_ws_event(ws, {"trade.executed"})
        filled_event = await next_ws_event(ws, {"order.filled"})
    read_back = await client.get(
        f"{trader.base_url}/api/v1/orders/{placed['order']['order_id']}", headers=trader.headers
    )
    assert read_back.status_code == 200, read_back.text
    return {
        "quote": quote,
        "placed": placed,
        "fill": fill,
        "filled_event": filled_event,
        "read_back": read_back.json(),
        "correlation_id": correlation_id,
    }
