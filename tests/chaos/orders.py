"""The order stream the faults are injected under, and the reconciliation after each fault.

Several clients, each a trader of its own, place market buys through the gateway one after another; on a failure
(5xx, 429, a broken connection) a client sends the same order again with the same client_order_id until it gets an
answer (2xx: accepted; another 4xx: refused). Reconciliation compares what the clients were told with execution's
store (its `orders` and `trades` tables) and with the events an auditor consumed from the bus."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.platform.events.envelope import Envelope

FINAL = ("filled", "cancelled", "rejected")
REPORT: list[Figures] = []  # one per fault, printed at the end of the run (tests/chaos/conftest.py)
REPORT_FOOTER: list[str] = []


@dataclass
class Figures:
    fault: str
    sent: int = 0  # distinct client_order_ids sent
    accepted: int = 0  # answered 2xx (after retries)
    refused: int = 0  # answered 4xx
    retried: int = 0  # attempts sent again with the same client_order_id
    lost: int = 0  # accepted, yet not in execution's store (or under another order id); or in the store, unanswered
    duplicated: int = 0  # more than one order for a client_order_id, fills beyond the order, two events of one fact
    stuck: int = 0  # not final once the fleet is back (market orders fill or are rejected at once)
    events_missing: int = 0  # an order's final status or a fill never delivered on the bus
    recovery_s: float = 0.0  # from the end of the fault to every process healthy and ready again
    during: list[str] = field(default_factory=list)  # processes not ready while the fault lasted
    refused_codes: dict[str, int] = field(default_factory=dict)
    retry_causes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.stuck == self.events_missing == 0

    def line(self) -> str:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(self.refused_codes.items())) or "-"
        return (
            f"{self.fault:<26} sent {self.sent:4d}  accepted {self.accepted:4d}  retried {self.retried:4d}  "
            f"refused {self.refused:3d} ({refused})  lost {self.lost}  duplicated {self.duplicated}  "
            f"stuck {self.stuck}  events missing {self.events_missing}  recovery {self.recovery_s:5.1f} s"
            + (f"  (not ready during the fault: {', '.join(self.during)})" if self.during else "")
            + (
                f"\n    retried after: {', '.join(f'{k} x{v}' for k, v in sorted(self.retry_causes.items()))}"
                if self.retry_causes
                else ""
            )
        )


@dataclass
class Sent:
    client_order_id: str
    account_id: str
    order_id: str | None = None
    status_code: int | None = None
    code: str | None = None


class OrderStream:
    """Clients placing orders until `stop()`; each finishes (with retries) the order it has in hand."""

    def __init__(self, base_url: str, traders: list[tuple[str, dict[str, str]]], ts_code: str, prefix: str) -> None:
        self.base_url, self.traders, self.ts_code, self.prefix = base_url, traders, ts_code, prefix
        self.sent: list[Sent] = []
        self.retried = 0
        self.failures: dict[str, int] = {}  # what made a client retry: an HTTP status (and code), or the connection
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(i, *t)) for i, t in enumerate(self.traders)]

    async def stop(self, drain_s: float = 180.0) -> None:
        self._stop.set()
        async with asyncio.timeout(drain_s):
            await asyncio.gather(*self._tasks)

    def _failed(self, cause: str) -> None:
        self.failures[cause] = self.failures.get(cause, 0) + 1

    async def _client(self, n: int, account_id: str, headers: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=15, headers=headers) as http:
            while not self._stop.is_set():
                order = Sent(f"{self.prefix}-{n}-{secrets.token_hex(5)}", account_id)
                self.sent.append(order)
                body = {
                    "client_order_id": order.client_order_id,
                    "ts_code": self.ts_code,
                    "side": "buy",
                    "order_type": "market",
                    "qty": 100,
                }
                attempt = 0
                while True:
                    if attempt:
                        self.retried += 1
                        await asyncio.sleep(min(2.0, 0.2 * attempt))
                    attempt += 1
                    try:
                        resp = await http.post("/api/v1/orders", json=body)
                    except httpx.TransportError as exc:
                        self._failed(type(exc).__name__)
                        continue
                    if resp.status_code >= 500 or resp.status_code == 429:
                        code = (
                            resp.json().get("code") if resp.headers.get("content-type") == "application/json" else None
                        )
                        self._failed(f"{resp.status_code} {code or resp.headers.get('content-type', '')}".strip())
                        continue
                    order.status_code = resp.status_code
                    payload: dict[str, Any] = resp.json()
                    if resp.status_code < 300:
                        order.order_id = payload["order"]["order_id"]
                    else:
                        order.code = str(payload.get("code"))
                    break
                await asyncio.sleep(0.05)


class Auditor:
    """Every order and trade event delivered on the bus, by order, deduplicated by event id (at-least-once)."""

    def __init__(self) -> None:
        self.final: dict[str, dict[str, str]] = defaultdict(dict)  # order_id -> event id -> final status
        self.fills: dict[str, dict[str, int]] = defaultdict(dict)  # order_id -> event id -> qty
        self.fill_events_of_trade: dict[str, set[str]] = defaultdict(set)  # trade_id -> event ids

    async def handle(self, event: Envelope) -> None:
        order_id = str(event.payload.get("order_id"))
        if event.type == "trade.executed":
            self.fills[order_id][event.id] = int(event.payload["qty"])
            self.fill_events_of_trade[str(event.payload["trade_id"])].add(event.id)
        elif event.payload.get("status") in FINAL:
            self.final[order_id][event.id] = str(event.payload["status"])


async def store_rows(database_url: str, prefix: str) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """Execution's orders of this fault (client_order_id starting with `prefix`) and the fill quantities per order."""
    engine = create_async_engine(database_url, pool_pre_ping=True)
    try:
        async with engine.connect() as conn:
            orders = [
                dict(r._mapping)
                for r in await conn.execute(
                    text(
                        "SELECT order_id, client_order_id, account_id, status, qty, filled_qty FROM orders "
                        "WHERE client_order_id LIKE :p"
                    ),
                    {"p": prefix + "-%"},
                )
            ]
            fills: dict[str, list[int]] = defaultdict(list)
            for order_id, qty in await conn.execute(
                text("SELECT order_id, qty FROM trades WHERE client_order_id LIKE :p"), {"p": prefix + "-%"}
            ):
                fills[order_id].append(int(qty))
    finally:
        await engine.dispose()
    return orders, fills


async def reconcile(
    figures: Figures, stream: OrderStream, database_url: str, auditor: Auditor, settle_s: float = 90.0
) -> Figures:
    """Wait (up to `settle_s`) for every order to be final and its events delivered, then count."""
    deadline = time.monotonic() + settle_s
    while True:
        orders, fills = await store_rows(database_url, stream.prefix)
        settled = all(o["status"] in FINAL for o in orders) and all(
            len(auditor.final.get(o["order_id"], {})) >= 1
            and sum(auditor.fills.get(o["order_id"], {}).values()) >= o["filled_qty"]
            for o in orders
        )
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)

    figures.retry_causes = dict(stream.failures)
    return count(figures, stream.sent, stream.retried, orders, fills, auditor)


def count(
    figures: Figures,
    sent: list[Sent],
    retried: int,
    orders: list[dict[str, Any]],
    fills: dict[str, list[int]],
    auditor: Auditor,
) -> Figures:
    """Compare what the clients were told with execution's orders and fills and the events delivered."""
    figures.sent = len(sent)
    figures.retried = retried
    figures.accepted = sum(1 for s in sent if s.order_id is not None)
    figures.refused = sum(1 for s in sent if s.code is not None)
    for s in sent:
        if s.code is not None:
            figures.refused_codes[s.code] = figures.refused_codes.get(s.code, 0) + 1

    by_cid: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for o in orders:
        by_cid[(o["account_id"], o["client_order_id"])].append(o)
    for s in sent:
        placed = by_cid.get((s.account_id, s.client_order_id), [])
        if len(placed) > 1:
            figures.duplicated += len(placed) - 1
            figures.notes.append(f"{s.client_order_id}: {len(placed)} orders")
        if s.order_id is not None and [o["order_id"] for o in placed[:1]] != [s.order_id]:
            figures.lost += 1
            figures.notes.append(f"{s.client_order_id}: answered {s.order_id}, store has {placed}")
        if s.code is not None and placed:
            figures.lost += 1  # told "refused", yet an order exists: the client would place it again elsewhere
            figures.notes.append(f"{s.client_order_id}: refused ({s.code}) but placed as {placed[0]['order_id']}")
    asked = {(s.account_id, s.client_order_id) for s in sent}
    for o in orders:
        if (o["account_id"], o["client_order_id"]) not in asked:
            figures.duplicated += 1
            figures.notes.append(f"{o['order_id']} ({o['client_order_id']}): an order no client placed")
        if o["status"] not in FINAL:
            figures.stuck += 1
            figures.notes.append(f"{o['order_id']} ({o['client_order_id']}) stuck in {o['status']}")
        if sum(fills.get(o["order_id"], [])) != o["filled_qty"] or o["filled_qty"] > o["qty"]:
            figures.duplicated += 1
            figures.notes.append(f"{o['order_id']}: fills {fills.get(o['order_id'])} for filled_qty {o['filled_qty']}")
        finals = auditor.final.get(o["order_id"], {})
        if o["status"] in FINAL and not finals:
            figures.events_missing += 1
            figures.notes.append(f"{o['order_id']}: no order.{o['status']} event delivered")
        if len(finals) > 1:
            figures.duplicated += 1
            figures.notes.append(f"{o['order_id']}: {len(finals)} distinct final events {sorted(finals.values())}")
        delivered = sum(auditor.fills.get(o["order_id"], {}).values())
        if delivered < o["filled_qty"]:
            figures.events_missing += 1
            figures.notes.append(f"{o['order_id']}: trade events for {delivered} of {o['filled_qty']} shares")
        elif delivered > o["filled_qty"]:
            figures.duplicated += 1
            figures.notes.append(f"{o['order_id']}: trade events for {delivered} shares, {o['filled_qty']} filled")
    return figures
