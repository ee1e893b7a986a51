"""End to end through QMT, as real processes: the fleet (gateway, data, risk, execution against MariaDB, Redis and
RabbitMQ) with execution holding a bridge's secret (LH_QMT_BRIDGE_SECRETS), the REAL bridge program
(`python -m bridge.qmt`) as a subprocess connecting to the GATEWAY's URL (relayed to execution), and the fake MiniQMT
(tests/support/qmt/xtquant) inside it, driven through its control server. A trader's account is bound to the bridge
and trading enabled by the admin through the gateway; every order goes gateway -> risk -> execution -> bridge ->
fake MiniQMT, and the broker's callbacks come back the same way.

Scenarios: place, part fill and fill (trades with their qty, price and the platform's fees, positions, cash, and the
reconciliation's view of them); cancel (202, then cancelled); a reject (rejected with the broker's message); trading
switched off by the admin (new orders rejected, nothing sent; a resting order still cancelled); and, one at a time, each
fault injected in the middle of a stream of orders: the bridge process killed (SIGKILL) and started again on the same
journal, MiniQMT disconnecting and coming back, duplicated callbacks, trades before the async response, orders with no
callback at all (settled by reconciliation), and the gateway's relay connection dropped. After each: no order lost
(every order placed is at the broker once, or was refused with a reason), none duplicated (the broker's
order_stock_async calls name each remark at most once), none stuck (every order final, or in the broker's state
after reconciliation; none `unknown`). A wrong secret and a wrong account id are refused, logged, and never report a
fill.

The fleet runs on a shifted market clock (the demo market's next session, 2025-01-02 10:00 Asia/Shanghai), as the
other e2e tests do, and reconciles with the bridge every LH_QMT_RECONCILE_S (1 s here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from lianghua.fleet import DEFAULT_PORTS, Fleet
from tests.conftest import Backing
from tests.e2e.flow import Session, create_user, login

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BRIDGE_ID = "qmt-e2e"
SECRET = "e2e-bridge-secret-" + secrets.token_hex(12)
PROCESSES = ("data", "strategy", "backtest", "execution", "risk", "gateway")  # the gateway is ready with all of them
FINAL = {"filled", "cancelled", "rejected"}
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fleet(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    env = {
        **backing.env(scope="qmt"),
        "LH_JWT_SECRET": secrets.token_urlsafe(32),
        "LH_INTERNAL_SECRET": secrets.token_urlsafe(32),
        "LH_APPROVAL_SECRET": secrets.token_urlsafe(32),
        "LH_ADMIN_USERNAME": "admin",
        "LH_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "LH_LOG_JSON": "true",
        "LH_RATE_LIMIT_PER_MINUTE": "100000",
        "LH_MARKET_CLOCK": "shifted",
        "LH_MARKET_CLOCK_AT": "2025-01-02T10:00:00+08:00",
        "LH_QMT_BRIDGE_SECRETS": f"{BRIDGE_ID}={SECRET}",
        "LH_QMT_RECONCILE_S": "1",
        "LH_QMT_UNKNOWN_GRACE_S": "3",  # an order the broker never had is rejected 3 s after it was sent
    }
    fleet = Fleet(
        env=env,
        ports={name: _free_port() for name in DEFAULT_PORTS},
        log_dir=tmp_path_factory.mktemp("fleet-qmt"),
        names=PROCESSES,
    )
    supervisor = threading.Thread(target=fleet.supervise, name="fleet-supervisor", daemon=True)
    try:
        fleet.start()
        supervisor.start()
        yield fleet
    finally:
        fleet.stopping.set()
        if supervisor.is_alive():
            supervisor.join()
        fleet.stop()


async def until(check: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 30.0) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = await check()
        except httpx.TransportError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass
class BridgeProcess:
    """`python -m bridge.qmt` with the fake MiniQMT, its journal and the fake's state on disk (kept across restarts)."""

    dir: Path
    fleet: Fleet
    account_id: str
    bridge_id: str = BRIDGE_ID
    secret: str = SECRET
    run: int = 0
    process: subprocess.Popen[bytes] | None = None
    address: str = ""

    @property
    def log(self) -> Path:
        return self.dir / f"bridge-{self.run}.log"

    def start(self) -> None:
        self.run += 1
        config = self.dir / "bridge.toml"
        config.write_text(
            f'userdata_path = "{self.dir / "userdata_mini"}"\n'
            f"session_id = {self.run}\n"
            f'account_id = "{self.account_id}"\n'
            f'bridge_id = "{self.bridge_id}"\n'
            f'platform_url = "ws://127.0.0.1:{self.fleet.ports["gateway"]}"\n'
            f'journal_path = "{self.dir / "journal.sqlite3"}"\n'
            "reconcile_interval_s = 1\n"
            "reconnect_initial_s = 0.1\n"
            "reconnect_max_s = 0.5\n"
        )
        control_file = self.dir / f"control-{self.run}.txt"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'support' / 'qmt'}",
            "LH_BRIDGE_SECRET": self.secret,
            "FAKE_XTQUANT_CONTROL": "127.0.0.1:0",
            "FAKE_XTQUANT_CONTROL_FILE": str(control_file),
            "FAKE_XTQUANT_STATE": str(self.dir / "miniqmt.json"),
        }
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge.qmt", "--config", str(config)],
                env=env,
                cwd=self.dir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not control_file.exists():
            assert self.process.poll() is None, f"the bridge exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, "the fake MiniQMT's control server did not start"
            time.sleep(0.02)
        self.address = control_file.read_text()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(15)

    async def control(self, action: str, body: dict[str, Any] | None = None) -> Any:
        def call() -> Any:
            request = urllib.request.Request(
                f"http://{self.address}/{action}", data=json.dumps(body or {}).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the fake, on loopback
                return json.loads(response.read())["result"]

        return await asyncio.to_thread(call)

    def journal(self, state: str) -> list[str]:
        """The order ids the bridge's journal has in `state` (read beside the running bridge: sqlite in WAL mode)."""
        with contextlib.closing(sqlite3.connect(self.dir / "journal.sqlite3", timeout=5)) as db:
            rows = db.execute("SELECT order_id FROM orders WHERE state = ? ORDER BY created_at", (state,)).fetchall()
        return [r[0] for r in rows]

    async def calls(self) -> list[str]:
        """The remark of every order_stock(_async) call that reached the fake MiniQMT."""
        return [c["order_remark"] for c in await self.control("calls")]

    async def broker_orders(self) -> dict[str, dict[str, Any]]:
        """The fake MiniQMT's orders by the remark each was placed with (the fake keeps it as `_placed_remark` for
        the tests: a restart that loses the session strips `order_remark`)."""
        return {o.get("_placed_remark") or o["order_remark"]: o for o in await self.control("orders")}

    def journal_rows(self) -> dict[str, tuple[str, int | None, str | None]]:
        """order_id -> (state, qmt_order_id, order_sysid) in the bridge's journal."""
        with contextlib.closing(sqlite3.connect(self.dir / "journal.sqlite3", timeout=5)) as db:
            rows = db.execute("SELECT order_id, state, qmt_order_id, order_sysid FROM orders").fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


@dataclass
class Desk:
    """The users' side: the gateway, as an admin and a trader."""

    client: httpx.AsyncClient
    fleet: Fleet
    admin: Session
    trader: Session
    account_id: str
    code: str
    price: Decimal
    placed: dict[str, str] = field(default_factory=dict)  # order_id -> the scenario that placed it
    refused: list[dict[str, Any]] = field(default_factory=list)  # answers without an order stored

    @property
    def base(self) -> str:
        return self.fleet.url("gateway")

    async def place(
        self, qty: int = 100, *, side: str = "buy", scenario: str = "", price: Decimal | None = None
    ) -> httpx.Response:
        body = {
            "client_order_id": f"q-{secrets.token_hex(6)}",
            "ts_code": self.code,
            "side": side,
            "order_type": "limit",
            "qty": qty,
            "price": str(price or self.price),
        }
        deadline = time.monotonic() + 60
        while True:  # the gateway restarting: the same order again (the same client_order_id), as a user would
            try:
                resp = await self.client.post(f"{self.base}/api/v1/orders", json=body, headers=self.trader.headers)
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the gateway did not come back"
                await asyncio.sleep(0.2)
                continue
            if resp.status_code in (502, 503) and resp.json().get("code") in ("service_unavailable", "bad_gateway"):
                await asyncio.sleep(0.2)  # the gateway is up but a service behind it is not yet
                continue
            break
        payload = resp.json()
        order = payload.get("order") if isinstance(payload, dict) else None
        order_id = (order or {}).get("order_id") or ((payload.get("details") or {}).get("order_id"))
        if order_id:
            self.placed[order_id] = scenario
        else:
            self.refused.append({"status": resp.status_code, **payload})
        return resp

    async def order(self, order_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"{self.base}/api/v1/orders/{order_id}", headers=self.trader.headers)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def trades(self, order_id: str) -> list[dict[str, Any]]:
        resp = await self.client.get(
            f"{self.base}/api/v1/trades", params={"order_id": order_id}, headers=self.trader.headers
        )
        assert resp.status_code == 200, resp.text
        return list(resp.json())

    async def status_is(self, order_id: str, *wanted: str) -> dict[str, Any] | None:
        order = await self.order(order_id)
        return order if order["status"] in wanted else None

    async def bridge_state(self) -> dict[str, Any]:
        resp = await self.client.get(f"{self.base}/api/v1/bridges", headers=self.admin.headers)
        assert resp.status_code == 200, resp.text
        [mine] = [b for b in resp.json() if b["bridge_id"] == BRIDGE_ID]
        return dict(mine)

    async def bridge_ready(self) -> dict[str, Any] | None:
        state = await self.bridge_state()
        return state if state["connected"] and state["qmt"] == "connected" else None


@pytest.fixture(scope="module")
async def desk(fleet: Fleet) -> AsyncIterator[Desk]:
    async with httpx.AsyncClient(timeout=30) as client:
        base = fleet.url("gateway")
        admin = await login(client, base, "admin", fleet.env["LH_ADMIN_PASSWORD"])
        name, password = await create_user(client, admin, "trader")
        trader = await login(client, base, name, password)
        me = (await client.get(f"{base}/api/v1/auth/me", headers=trader.headers)).json()
        account_id = me["account_id"]
        bound = await client.put(f"{base}/api/v1/accounts/{account_id}/broker",
                                 json={"broker": "qmt", "bridge_id": BRIDGE_ID}, headers=admin.headers)  # fmt: skip
        assert bound.status_code == 200, bound.text
        switched = await client.post(f"{base}/api/v1/bridges/{BRIDGE_ID}/trading",
                                     json={"enabled": True, "read_only": False, "reason": "e2e"},
                                     headers=admin.headers)  # fmt: skip
        assert switched.status_code == 200, switched.text
        securities = (await client.get(f"{base}/api/v1/securities", headers=trader.headers)).json()
        quote = None
        for sec in securities:
            if sec["board"] != "main" or sec["is_st"] or not sec["ts_code"].endswith(".SH"):
                continue
            quote = (await client.get(f"{base}/api/v1/quotes/{sec['ts_code']}", headers=trader.headers)).json()
            if not quote["suspended"] and Decimal(quote["last_close"]) < 50:
                break
        else:
            raise AssertionError("no tradable SH main-board stock under 50 in the demo market")
        assert quote is not None
        yield Desk(client, fleet, admin, trader, account_id, quote["ts_code"], Decimal(quote["last_close"]))


@pytest.fixture(scope="module")
async def bridge(desk: Desk, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BridgeProcess]:
    process = BridgeProcess(tmp_path_factory.mktemp("bridge"), desk.fleet, desk.account_id)
    process.start()
    try:
        await until(desk.bridge_ready, "the bridge connected through the gateway, with MiniQMT", 60)
        yield process
    finally:
        process.stop()


def fees(amount: Decimal, side: str) -> Decimal:
    """The platform's fees of one fill on SH, worked out here: commission 0.025% (at least 5.00), transfer fee
    0.001%, stamp duty 0.05% on sells (2025); each rounded half up to the fen."""
    cent = Decimal("0.01")
    commission = max(Decimal(5), (amount * Decimal("0.00025")).quantize(cent, ROUND_HALF_UP))
    transfer = (amount * Decimal("0.00001")).quantize(cent, ROUND_HALF_UP)
    stamp = (amount * Decimal("0.0005")).quantize(cent, ROUND_HALF_UP) if side == "sell" else Decimal(0)
    return commission + transfer + stamp


async def test_place_part_fill_and_fill(desk: Desk, bridge: BridgeProcess) -> None:
    resp = await desk.place(300, scenario="fill")
    assert resp.status_code == 201, resp.text
    order = resp.json()["order"]
    order_id = order["order_id"]
    assert order["status"] == "submitted"
    remark = order_id[:24]
    await until(lambda: bridge.broker_orders(), "the order at the broker")
    assert (await bridge.calls()).count(remark) == 1
    price1 = desk.price
    price2 = desk.price - Decimal("0.01")
    await bridge.control("fill", {"remark": remark, "qty": 100, "price": float(price1)})
    part = await until(lambda: desk.status_is(order_id, "partially_filled"), "the part fill")
    assert part["filled_qty"] == 100
    await bridge.control("fill", {"remark": remark, "qty": 200, "price": float(price2)})
    done = await until(lambda: desk.status_is(order_id, "filled"), "the fill")
    assert done["filled_qty"] == 300
    trades = await desk.trades(order_id)
    got = sorted((t["qty"], Decimal(t["price"]), Decimal(t["fees"])) for t in trades)
    want = sorted([(100, price1, fees(price1 * 100, "buy")), (200, price2, fees(price2 * 200, "buy"))])
    assert got == want, trades


async def test_cash_and_position_follow_the_fills(desk: Desk, bridge: BridgeProcess) -> None:
    """The fills of the first test moved the account's cash and position by what they cost, fees included."""
    trades = [t for oid in desk.placed for t in await desk.trades(oid)]
    spent = sum(Decimal(t["amount"]) + Decimal(t["fees"]) for t in trades)
    bought = sum(t["qty"] for t in trades)
    account = (await desk.client.get(f"{desk.base}/api/v1/account", headers=desk.trader.headers)).json()
    assert Decimal(account["balance"]) == Decimal(10_000_000) - spent
    positions = (await desk.client.get(f"{desk.base}/api/v1/positions", headers=desk.trader.headers)).json()
    assert [(p["ts_code"], p["qty"]) for p in positions] == [(desk.code, bought)]
    assert bought == 300
    # the reconciliation finds the broker's position the same; its cash (the fake MiniQMT's own 1,000,000 less what
    # the fills cost there, no fees) differs from the ledger's and is reported, never overwritten
    broker_cash = Decimal(1_000_000) - sum(Decimal(t["amount"]) for t in trades)
    cash_only = [{"kind": "cash", "ts_code": None, "platform": f"{Decimal(account['balance']):.2f}",
                  "broker": f"{broker_cash:.2f}"}]  # fmt: skip

    async def reconciled() -> bool:
        last = (await desk.bridge_state())["last_reconciliation"]
        return last is not None and last["differences"] == cash_only

    await until(reconciled, "a reconciliation finding only the cash difference")


async def test_cancel_is_accepted_then_recorded(desk: Desk, bridge: BridgeProcess) -> None:
    order_id = (await desk.place(200, scenario="cancel")).json()["order"]["order_id"]
    resp = await desk.client.post(f"{desk.base}/api/v1/orders/{order_id}/cancel", headers=desk.trader.headers)
    assert resp.status_code == 202, resp.text
    assert resp.json()["cancel_requested"] is True and resp.json()["status"] == "submitted"
    done = await until(lambda: desk.status_is(order_id, "cancelled"), "the cancel recorded")
    assert done["filled_qty"] == 0
    assert (await bridge.broker_orders())[order_id[:24]]["order_status"] == 54

    # part filled, then cancelled: cancelled with its fill
    order_id = (await desk.place(300, scenario="cancel")).json()["order"]["order_id"]
    await bridge.control("fill", {"remark": order_id[:24], "qty": 100, "price": float(desk.price)})
    await until(lambda: desk.status_is(order_id, "partially_filled"), "the part fill")
    resp = await desk.client.post(f"{desk.base}/api/v1/orders/{order_id}/cancel", headers=desk.trader.headers)
    assert resp.status_code == 202, resp.text
    done = await until(lambda: desk.status_is(order_id, "cancelled"), "the cancel of the rest recorded")
    assert done["filled_qty"] == 100
    assert (await bridge.broker_orders())[order_id[:24]]["order_status"] == 53


async def test_an_amend_is_the_brokers_cancel_then_a_place_of_what_the_fills_left(
    desk: Desk, bridge: BridgeProcess
) -> None:
    """docs/order-path.md "Amending an order": MiniQMT has no modify; the replacement goes out only after the broker
    reported the original part-cancelled (53), for the new total less its fill."""
    order_id = (await desk.place(300, scenario="cancel")).json()["order"]["order_id"]
    await bridge.control("fill", {"remark": order_id[:24], "qty": 100, "price": float(desk.price)})
    await until(lambda: desk.status_is(order_id, "partially_filled"), "the part fill")
    new_price = desk.price - Decimal("0.01")
    resp = await desk.client.post(f"{desk.base}/api/v1/orders/{order_id}/amend",
                                  json={"qty": 500, "price": str(new_price)}, headers=desk.trader.headers)  # fmt: skip
    assert resp.status_code == 202, resp.text
    amend_id = resp.json()["amend_id"]

    async def replaced() -> dict[str, Any] | None:
        got = await desk.client.get(f"{desk.base}/api/v1/amends/{amend_id}", headers=desk.trader.headers)
        body: dict[str, Any] = got.json()
        return body if body["status"] == "replaced" else None

    done = await until(replaced, "the replacement placed after the broker's cancel report")
    assert (done["filled_qty"], done["replacement_qty"]) == (100, 400)  # 500 - the 100 filled
    original = await desk.order(order_id)
    assert (original["status"], original["filled_qty"], original["replaced_by"]) == (
        "cancelled", 100, done["replacement_order_id"])  # fmt: skip
    remark = done["replacement_order_id"][:24]

    async def at_broker() -> dict[str, dict[str, Any]] | None:
        listed = await bridge.broker_orders()
        return listed if remark in listed else None

    orders = await until(at_broker, "the replacement at MiniQMT")
    assert orders[order_id[:24]]["order_status"] == 53
    assert (orders[remark]["order_volume"], Decimal(str(orders[remark]["price"]))) == (400, new_price)
    assert (await bridge.calls()).count(remark) == 1
    # tidy: the replacement cancelled (the audit at the end finds it final)
    desk.placed[done["replacement_order_id"]] = "cancel"
    resp = await desk.client.post(f"{desk.base}/api/v1/orders/{done['replacement_order_id']}/cancel",
                                  headers=desk.trader.headers)  # fmt: skip
    assert resp.status_code == 202, resp.text
    await until(lambda: desk.status_is(done["replacement_order_id"], "cancelled"), "the replacement cancelled")


async def test_a_broker_reject_is_recorded_with_its_message(desk: Desk, bridge: BridgeProcess) -> None:
    await bridge.control("behave", {"reject": "可用资金不足"})
    try:
        resp = await desk.place(100, scenario="reject")
    finally:
        await bridge.control("behave", {"reject": ""})
    order_id = resp.json()["order"]["order_id"]
    done = await until(lambda: desk.status_is(order_id, "rejected"), "the reject recorded")
    assert done["reason"] == "可用资金不足"
    assert await desk.trades(order_id) == []
    assert (await bridge.broker_orders())[order_id[:24]]["order_status"] == 57

    # the async call fails (its response has no MiniQMT order id, and the library's order error follows): nothing was
    # placed, the order is rejected with MiniQMT's message
    await bridge.control("behave", {"fail_async": "柜台拒绝"})
    try:
        resp = await desk.place(100, scenario="reject")
    finally:
        await bridge.control("behave", {"fail_async": ""})
    order_id = resp.json()["order"]["order_id"]
    done = await until(lambda: desk.status_is(order_id, "rejected"), "the failed async call recorded")
    assert done["reason"] == "柜台拒绝"
    assert order_id[:24] not in await bridge.broker_orders()

    # MiniQMT refuses the call at once (-1): rejected in the order's own answer
    await bridge.control("behave", {"refuse": True})
    try:
        resp = await desk.place(100, scenario="reject")
    finally:
        await bridge.control("behave", {"refuse": False})
    order = resp.json()["order"]
    assert (resp.status_code, order["status"]) == (201, "rejected"), resp.text
    assert order["reason"].startswith("QMT refused the order: MiniQMT refused the order"), order
    assert order["order_id"][:24] not in await bridge.broker_orders()


async def test_switched_off_trading_refuses_new_orders_and_still_cancels(desk: Desk, bridge: BridgeProcess) -> None:
    resting = (await desk.place(100, scenario="switch")).json()["order"]["order_id"]
    calls = len(await bridge.calls())
    off = await desk.client.post(f"{desk.base}/api/v1/bridges/{BRIDGE_ID}/trading",
                                 json={"enabled": False, "read_only": False, "reason": "e2e: stop"},
                                 headers=desk.admin.headers)  # fmt: skip
    assert (off.status_code, off.json()["enabled"], off.json()["sent"]) == (200, False, True), off.text
    try:
        refused = await desk.place(100, scenario="switch")
        assert (refused.status_code, refused.json()["order"]["status"]) == (201, "rejected"), refused.text
        assert refused.json()["order"]["reason"] == f"trading is disabled on QMT bridge {BRIDGE_ID}"
        assert len(await bridge.calls()) == calls  # nothing sent
        # what rests at the broker can still be pulled
        resp = await desk.client.post(f"{desk.base}/api/v1/orders/{resting}/cancel", headers=desk.trader.headers)
        assert resp.status_code == 202, resp.text
        await until(lambda: desk.status_is(resting, "cancelled"), "the cancel recorded while trading is off")
    finally:
        on = await desk.client.post(f"{desk.base}/api/v1/bridges/{BRIDGE_ID}/trading",
                                    json={"enabled": True, "read_only": False, "reason": "e2e: go on"},
                                    headers=desk.admin.headers)  # fmt: skip
        assert on.status_code == 200, on.text


# --- faults, one at a time, each in the middle of a stream of orders -------------------------------------------------

PLATFORM_OF = {48: "submitted", 49: "submitted", 50: "submitted", 51: "submitted", 52: "partially_filled",
               55: "partially_filled", 53: "cancelled", 54: "cancelled", 56: "filled", 57: "rejected"}  # fmt: skip


async def stream(desk: Desk, scenario: str, n: int) -> list[str]:
    """Place `n` orders one after another; their order ids (each answered 201)."""
    placed: list[str] = []
    for _ in range(n):
        resp = await desk.place(100, scenario=scenario)
        assert resp.status_code == 201, resp.text
        placed.append(resp.json()["order"]["order_id"])
    return placed


async def settle(desk: Desk, bridge: BridgeProcess, order_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Fill at the broker what rests there of the orders, then wait until each is final on the platform and agrees
    with the broker; the platform's orders."""
    await until(desk.bridge_ready, "the bridge back, with MiniQMT", 60)
    for remark, order in (await bridge.broker_orders()).items():
        if order["order_status"] in (48, 49, 50, 55) and any(o[:24] == remark for o in order_ids):
            await bridge.control("fill", {"order_id": order["order_id"], "price": float(desk.price)})

    seen: dict[str, Any] = {}

    async def agreed() -> dict[str, dict[str, Any]] | None:
        broker = await bridge.broker_orders()
        mine = {oid: await desk.order(oid) for oid in order_ids}
        seen["now"] = {oid: (o["status"], o["filled_qty"], o.get("reason"),
                             (broker.get(oid[:24]) or {}).get("order_status"),
                             (broker.get(oid[:24]) or {}).get("traded_volume")) for oid, o in mine.items()}  # fmt: skip
        for oid, order in mine.items():
            at_broker = broker.get(oid[:24])
            if order["status"] not in FINAL:
                return None
            if at_broker is not None and (
                PLATFORM_OF[at_broker["order_status"]] != order["status"]
                or at_broker["traded_volume"] != order["filled_qty"]
            ):
                return None
        return mine

    try:
        return await until(agreed, f"{len(order_ids)} orders final and agreeing with the broker", 60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: (platform status, filled, reason, broker status, traded) {seen}") from None


async def audit(desk: Desk, bridge: BridgeProcess, order_ids: list[str]) -> dict[str, dict[str, Any]]:
    """0 lost, 0 duplicated, 0 stuck."""
    mine = await settle(desk, bridge, order_ids)
    calls = await bridge.calls()
    remarks = {oid[:24] for oid in desk.placed}
    assert len(calls) == len(set(calls)), "an order reached MiniQMT twice"
    assert set(calls) <= remarks, "MiniQMT has an order the platform never stored"
    broker = await bridge.broker_orders()
    for oid, order in mine.items():
        if oid[:24] in broker:
            assert order["filled_qty"] == broker[oid[:24]]["traded_volume"], order
        else:  # MiniQMT has no such order (never reached it, or refused the call): refused, with the reason
            assert order["status"] in ("rejected", "cancelled") and order["reason"], order
        assert sum(t["qty"] for t in await desk.trades(oid)) == order["filled_qty"], order
    return mine


async def in_flight(bridge: BridgeProcess, place: asyncio.Task[httpx.Response]) -> str:
    """The order `place` is sending, once the bridge has journalled it and is inside MiniQMT's order_stock_async (the
    fake's place_delay_s keeps it there)."""

    async def sending() -> str | None:
        assert not place.done(), place.result().text
        return (bridge.journal("sending") or [None])[0]

    return await until(sending, "an order in flight inside the bridge")


async def test_fault_bridge_killed_and_restarted_while_orders_are_in_flight(desk: Desk, bridge: BridgeProcess) -> None:
    placed = await stream(desk, "kill", 2)
    # the third order is inside the bridge (journalled, MiniQMT's call not returned) when the bridge is killed
    await bridge.control("behave", {"place_delay_s": 10})
    place = asyncio.create_task(desk.place(100, scenario="kill"))
    lost = await in_flight(bridge, place)
    bridge.kill()
    resp = await place
    assert (resp.status_code, resp.json()["order"]["order_id"], resp.json()["order"]["status"]) == (
        201,
        lost,
        "unknown",
    )
    placed.append(lost)
    # while the bridge is away, new orders are refused with nothing stored
    await until(lambda: _bridge_gone(desk), "the bridge seen gone")
    for _ in range(2):
        refused = await desk.place(100, scenario="kill")
        assert (refused.status_code, refused.json()["code"]) == (503, "broker_unavailable"), refused.text
    # started again on the same journal (and the same MiniQMT state; the fake's behaviours start afresh)
    bridge.start()
    await until(desk.bridge_ready, "the bridge back", 60)
    placed += await stream(desk, "kill", 3)
    mine = await audit(desk, bridge, placed)
    # the order killed in flight never reached MiniQMT: settled as such (not left unknown, never sent again)
    assert (mine[lost]["status"], mine[lost]["reason"]) == ("rejected", "never reached the broker")
    assert lost[:24] not in await bridge.calls()
    assert bridge.journal("unconfirmed") == [lost]
    assert [o["status"] for oid, o in mine.items() if oid != lost] == ["filled"] * 5
    assert "bridge stopped" not in (bridge.dir / "bridge-1.log").read_text()  # it was killed, not stopped


async def _bridge_gone(desk: Desk) -> bool:
    return not (await desk.bridge_state())["connected"]


async def test_fault_miniqmt_disconnects_new_orders_get_503_with_nothing_sent(
    desk: Desk, bridge: BridgeProcess
) -> None:
    before = len(await bridge.calls())

    placed = await stream(desk, "disconnect", 2)
    await bridge.control("disconnect", {"down": True})
    await until(lambda: _qmt_down(desk), "MiniQMT reported down")
    refused_before = len(desk.refused)
    for _ in range(3):
        resp = await desk.place(100, scenario="disconnect")
        assert (resp.status_code, resp.json()["code"]) == (503, "broker_unavailable"), resp.text
        assert "order_id" not in (resp.json().get("details") or {})
    assert len(desk.refused) == refused_before + 3
    assert len(await bridge.calls()) == before + 2  # nothing sent while it was down
    state = await desk.bridge_state()
    assert (state["connected"], state["qmt"]) == (True, "disconnected")
    await bridge.control("up")
    await until(desk.bridge_ready, "MiniQMT back", 30)
    placed += await stream(desk, "disconnect", 2)
    await audit(desk, bridge, placed)


async def _qmt_down(desk: Desk) -> bool:
    return (await desk.bridge_state())["qmt"] == "disconnected"


async def test_fault_duplicated_callbacks(desk: Desk, bridge: BridgeProcess) -> None:
    placed = await stream(desk, "duplicate", 2)
    await bridge.control("behave", {"duplicate": True, "auto_fill": True})
    try:
        placed += await stream(desk, "duplicate", 4)
    finally:
        await bridge.control("behave", {"duplicate": False, "auto_fill": False})
    mine = await audit(desk, bridge, placed)
    for oid in placed:
        assert [t["qty"] for t in await desk.trades(oid)] == [100], mine[oid]


async def test_fault_trade_before_the_async_response(desk: Desk, bridge: BridgeProcess) -> None:
    placed = await stream(desk, "trade_first", 2)
    await bridge.control("behave", {"trade_before_response": True})
    try:
        placed += await stream(desk, "trade_first", 4)
    finally:
        await bridge.control("behave", {"trade_before_response": False})
    mine = await audit(desk, bridge, placed)
    assert all(o["status"] == "filled" for o in mine.values())


async def test_fault_silent_broker_settled_by_reconciliation(desk: Desk, bridge: BridgeProcess) -> None:
    placed = await stream(desk, "silent", 2)
    await bridge.control("behave", {"silent": True})
    try:
        placed += await stream(desk, "silent", 4)
    finally:
        await bridge.control("behave", {"silent": False})
    # the silent orders' fills come with no callback either: only the reconciliations' queries see them
    mine = await audit(desk, bridge, placed)
    assert all(o["status"] == "filled" for o in mine.values())


async def test_fault_the_gateway_relay_dropped(desk: Desk, bridge: BridgeProcess) -> None:
    placed = await stream(desk, "relay", 2)
    # the third order is inside the bridge when the gateway (and with it the relay) goes away: the bridge's reply is
    # lost; the trader's request too, and the trader sends it again (same client_order_id) once the gateway is back
    await bridge.control("behave", {"place_delay_s": 3})
    place = asyncio.create_task(desk.place(100, scenario="relay"))
    pending = await in_flight(bridge, place)
    await bridge.control("behave", {"place_delay_s": 0})
    os.kill(desk.fleet.processes["gateway"].pid, signal.SIGKILL)  # the supervisor starts it again
    resp = await place
    assert (resp.status_code, resp.json()["order"]["order_id"]) == (200, pending), resp.text
    await until(desk.bridge_ready, "the bridge back through the new gateway", 60)
    placed += [pending, *await stream(desk, "relay", 3)]
    mine = await audit(desk, bridge, placed)
    # the order whose reply was lost is at MiniQMT once, and settled from there
    assert (await bridge.calls()).count(pending[:24]) == 1
    assert [o["status"] for o in mine.values()] == ["filled"] * 6
    assert desk.fleet.restarts.get("gateway") == 1


async def _account(desk: Desk) -> dict[str, Any]:
    resp = await desk.client.get(f"{desk.base}/api/v1/account", headers=desk.trader.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def cost(fills: list[tuple[int, Decimal]]) -> Decimal:
    """What buys of (qty, price) cost the account: each fill's amount plus its fees (worked out by `fees`)."""
    return sum((qty * price + fees(qty * price, "buy") for qty, price in fills), Decimal(0))


async def sysids_known(bridge: BridgeProcess, order_ids: list[str]) -> bool:
    """The bridge has journalled MiniQMT's id and contract number (sysid) of each order."""
    rows = bridge.journal_rows()
    return all(oid in rows and rows[oid][1] is not None and rows[oid][2] for oid in order_ids)


async def part_filled(desk: Desk, bridge: BridgeProcess, scenario: str, price: Decimal) -> list[str]:
    """Two buys of 300, each filled 100 at `price` at the broker; their order ids once the platform has the fills."""
    big = []
    for _ in range(2):
        resp = await desk.place(300, scenario=scenario)
        assert resp.status_code == 201, resp.text
        big.append(resp.json()["order"]["order_id"])
    await until(lambda: sysids_known(bridge, big), "the orders at the broker")
    for oid in big:
        await bridge.control("fill", {"remark": oid[:24], "qty": 100, "price": float(price)})
    for oid in big:
        part = await until(lambda oid=oid: desk.status_is(oid, "partially_filled"), "the part fill")
        assert part["filled_qty"] == 100
    return big


async def test_fault_miniqmt_restarts_forgetting_nothing(desk: Desk, bridge: BridgeProcess) -> None:
    before = await _account(desk)
    traders = (await bridge.control("state"))["traders_created"]
    price1, price2 = desk.price, desk.price - Decimal("0.01")
    placed = await stream(desk, "restart", 2)
    big = await part_filled(desk, bridge, "restart", price1)
    placed += big
    # an order just answered (its async response and pushes may still be queued: the restart drops them)
    placed += await stream(desk, "restart", 1)
    await bridge.control("restart", {"lose_session": False})
    await until(lambda: _reconnected(bridge, traders), "the bridge on a new trader")
    await until(desk.bridge_ready, "MiniQMT back", 30)
    for oid in big:  # the rest, on the same MiniQMT ids and remarks
        await bridge.control("fill", {"remark": oid[:24], "qty": 200, "price": float(price2)})
    placed += await stream(desk, "restart", 1)
    mine = await audit(desk, bridge, placed)
    assert [o["status"] for o in mine.values()] == ["filled"] * 6
    for oid in big:
        got = sorted((t["qty"], Decimal(t["price"])) for t in await desk.trades(oid))
        assert got == [(100, price1), (200, price2)], got
    # 2 x (100 @ price1 + 200 @ price2) and 4 x 100 @ desk.price (price1), each with its fees
    spent = cost([(100, price1), (200, price2)] * 2 + [(100, desk.price)] * 4)
    after = await _account(desk)
    assert Decimal(before["balance"]) - Decimal(after["balance"]) == spent
    assert after["reserved"] == before["reserved"]


async def _reconnected(bridge: BridgeProcess, traders: int) -> bool:
    state = await bridge.control("state")
    return bool(state["traders_created"] > traders and state["sessions"] == 1)


async def test_fault_miniqmt_restarts_losing_the_session(desk: Desk, bridge: BridgeProcess) -> None:
    before = await _account(desk)
    price1, price2 = desk.price, desk.price - Decimal("0.01")
    placed = await stream(desk, "lose_session", 2)
    big = await part_filled(desk, bridge, "lose_session", price1)
    placed += big
    await until(lambda: sysids_known(bridge, placed), "every order's contract number journalled")
    # one order MiniQMT has taken but not reported to the exchange (49, no contract number): the restart drops it
    await bridge.control("behave", {"unreported": True})
    try:
        unreported = (await stream(desk, "lose_session", 1))[0]
        await until(lambda: _acknowledged(bridge, unreported), "the unreported order acknowledged")
    finally:
        await bridge.control("behave", {"unreported": False})
    placed.append(unreported)
    sysid_of = {oid: bridge.journal_rows()[oid][2] for oid in big}
    alerts = await _after_final_alerts(desk)
    old_ids = {oid: row[1] for oid, row in bridge.journal_rows().items()}
    # MiniQMT comes back without its session: remarks gone, every order renumbered from 1001 (ids the bridge's
    # earlier orders had: an old id now names another order), the unreported order gone
    await bridge.control("restart", {"lose_session": True})
    await until(lambda: _lost(bridge, unreported), "the bridge reconnected and found the order lost")
    await until(desk.bridge_ready, "MiniQMT back", 30)
    at_broker = {o["order_sysid"]: o for o in await bridge.control("orders") if o["order_sysid"]}
    for oid in big:
        moved = at_broker[sysid_of[oid]]
        assert moved["order_remark"] == "" and moved["order_id"] != old_ids[oid]
        # the rest fills at the renumbered order, addressed by its contract number
        await bridge.control("fill", {"order_sysid": sysid_of[oid], "qty": 200, "price": float(price2)})
    placed += await stream(desk, "lose_session", 2)
    mine = await audit(desk, bridge, placed)
    # the order MiniQMT lost: final, nothing filled, never sent again, its reservation released
    assert (mine[unreported]["status"], mine[unreported]["reason"], mine[unreported]["filled_qty"]) == (
        "rejected",
        "MiniQMT lost the order in a restart",
        0,
    )
    assert await desk.trades(unreported) == []
    assert (await bridge.calls()).count(unreported[:24]) == 1
    assert [o["status"] for oid, o in mine.items() if oid != unreported] == ["filled"] * 6
    for oid in big:  # each fill on its own order, once
        got = sorted((t["qty"], Decimal(t["price"])) for t in await desk.trades(oid))
        assert got == [(100, price1), (200, price2)], got
        assert bridge.journal_rows()[oid][1] == at_broker[sysid_of[oid]]["order_id"]
    # 2 x (100 @ price1 + 200 @ price2) and 4 x 100 @ desk.price, with fees; nothing for the lost order
    spent = cost([(100, price1), (200, price2)] * 2 + [(100, desk.price)] * 4)
    after = await _account(desk)
    assert Decimal(before["balance"]) - Decimal(after["balance"]) == spent
    assert after["reserved"] == before["reserved"]
    # every order of the earlier scenarios came back renumbered too: none of their reports landed on another order
    # (a report disagreeing with a final order would be counted as an alert)
    assert await _after_final_alerts(desk) == alerts


async def _after_final_alerts(desk: Desk) -> float:
    """lh_broker_reports_after_final_total for the bridge (0 before the first)."""
    metrics = (await desk.client.get(desk.fleet.url("execution") + "/metrics")).text
    prefix = f'lh_broker_reports_after_final_total{{bridge_id="{BRIDGE_ID}"}} '
    return sum(float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix))


async def _acknowledged(bridge: BridgeProcess, order_id: str) -> bool:
    row = bridge.journal_rows().get(order_id)
    return row is not None and row[0] == "acknowledged" and row[1] is not None


async def _lost(bridge: BridgeProcess, order_id: str) -> bool:
    row = bridge.journal_rows().get(order_id)
    return row is not None and row[0] == "lost"


async def test_no_order_is_left_unknown_or_sent_twice(desk: Desk, bridge: BridgeProcess) -> None:
    everything = list(desk.placed)  # every order of every scenario above
    mine = await audit(desk, bridge, everything)
    assert len(mine) == len(everything) >= 40
    resp = await desk.client.get(
        f"{desk.base}/api/v1/orders", params={"status": "unknown"}, headers=desk.trader.headers
    )
    assert resp.json() == []


@pytest.mark.parametrize(("label", "secret", "account"), [("wrong secret", "not-the-secret-0123456789", None),
                                                        ("wrong account", None, "someone-else")])  # fmt: skip
async def test_a_wrong_secret_or_account_is_refused_logged_and_reports_nothing(
    desk: Desk, bridge: BridgeProcess, tmp_path: Path, label: str, secret: str | None, account: str | None
) -> None:
    trades_before = len((await desk.client.get(f"{desk.base}/api/v1/trades", headers=desk.admin.headers)).json())
    impostor = BridgeProcess(tmp_path, desk.fleet, account or desk.account_id, secret=secret or SECRET)
    impostor.start()
    try:
        code = "bad_hello" if secret else "account_mismatch"
        await until(lambda: _logged(impostor.log, f"the platform refused this bridge: {code}"), "the refusal", 30)
    finally:
        impostor.stop()
    execution_log = (desk.fleet.log_dir / "execution.log").read_text()
    assert f'"code": "{code}"' in execution_log and (secret or SECRET) not in execution_log
    metrics = (await desk.client.get(desk.fleet.url("execution") + "/metrics")).text
    assert f'lh_broker_bridge_refused_total{{reason="{code}"}}' in metrics
    # the real bridge is still the one connected, and no trade came from the impostor
    assert await desk.bridge_ready()
    trades_after = len((await desk.client.get(f"{desk.base}/api/v1/trades", headers=desk.admin.headers)).json())
    assert trades_after == trades_before


async def _logged(path: Path, text: str) -> bool:
    return await asyncio.to_thread(lambda: path.exists() and text in path.read_text())
