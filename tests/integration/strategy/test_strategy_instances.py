"""Strategy instances through the strategy service's app, on the real MariaDB (a fresh database per run), Redis and
RabbitMQ, with a fake data service (securities, index constituents) and a fake execution (`GET /v1/account`) in
front of it: the lifecycle with its runner calls, parameter versions, the audit trail, the outbox events, each
refusal of the issue, and who sees and changes what. Amounts worked out by hand in the comments."""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy import select

from services.strategy.app import create_app
from services.strategy.ports import InstanceRecord
from services.strategy.store import outbox
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.errors import ServiceError
from shared.platform.events import Envelope, StrategyInstanceChanged
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token, verify_internal_token
from shared.platform.settings import Settings
from shared.research.strategy import Strategy, StrategyParams, discover_strategies
from tests.conftest import Backing

pytestmark = pytest.mark.integration

ALICE = Principal("alice", "trader", "alice")
BOB = Principal("bob", "trader", "bob")
CAROL = Principal("carol", "trader", "alice")  # a second user of alice's account
VERA = Principal("vera", "viewer", "vera")
ROOT = Principal("root", "admin", "root")

SECURITIES = [
    {"ts_code": "600000.SH", "board": "main", "industry": "银行", "list_date": "1999-11-10", "st": False},
    {"ts_code": "000001.SZ", "board": "main", "industry": "银行", "list_date": "1991-04-03", "st": False},
    {"ts_code": "300750.SZ", "board": "chinext", "industry": "电池", "list_date": "2018-06-11", "st": False},
    {"ts_code": "600777.SH", "board": "main", "industry": "电池", "list_date": "2001-01-01", "st": True},
]
INDEXES = {
    "000300.SH": {"weights_date": "2024-12-31", "codes": ["600000.SH", "000001.SZ"]},
    "399006.SZ": {"weights_date": None, "codes": []},  # known, but no weights published yet
}


def headers(settings: Settings, principal: Principal) -> dict[str, str]:
    return {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, principal)}


@dataclass
class Peers:
    """The data service's securities and constituents, and execution's account cash: what the strategy service
    asks when an instance is created. Both check the internal token as the real ones do."""

    secret: str
    balances: dict[str, Decimal] = field(default_factory=dict)  # accounts execution knows
    opening_cash: Decimal = Decimal("1000000.00")
    data_down: bool = False
    account_asks: list[tuple[str, str, str | None]] = field(default_factory=list)  # (subject, role, account_id=)
    data_callers: list[str] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)  # execution's trades, oldest first (TradeOut rows)
    trade_callers: list[str] = field(default_factory=list)
    trades_down: bool = False

    def _principal(self, request: Request) -> Principal:
        return verify_internal_token(self.secret, request.headers.get(INTERNAL_HEADER, ""))

    def data(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/securities")
        async def securities(
            request: Request,
            board: str | None = None,
            industry: str | None = None,
            listed_on: date | None = None,
            st_on: date | None = None,
        ) -> Any:
            self.data_callers.append(self._principal(request).subject)
            if self.data_down:
                return JSONResponse({"code": "internal", "message": "down"}, status_code=503)
            return [
                {"ts_code": s["ts_code"], "board": s["board"], "industry": s["industry"]}
                for s in SECURITIES
                if (board is None or s["board"] == board)
                and (industry is None or s["industry"] == industry)
                and (listed_on is None or date.fromisoformat(str(s["list_date"])) <= listed_on)
                and (st_on is None or s["st"])
            ]

        @app.get("/v1/indexes/{code}/constituents")
        async def constituents(request: Request, code: str, trade_date: date) -> Any:
            self.data_callers.append(self._principal(request).subject)
            if code not in INDEXES:
                return JSONResponse({"code": "unknown_index", "message": f"no index {code}"}, status_code=404)
            index = INDEXES[code]
            return {
                "index_code": code,
                "on": trade_date.isoformat(),
                "weights_date": index["weights_date"],
                "constituents": [{"con_code": c, "weight": 50.0} for c in index["codes"]],
            }

        return app

    def execution(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/account")
        async def account(request: Request, account_id: str | None = None) -> Any:
            principal = self._principal(request)
            self.account_asks.append((principal.subject, principal.role, account_id))
            own = principal.account_id or principal.subject
            if account_id is not None and account_id != own:
                if principal.role != "admin":
                    return JSONResponse({"code": "forbidden", "message": "not yours"}, status_code=403)
                if account_id not in self.balances:
                    return JSONResponse({"code": "account_not_found", "message": "no such"}, status_code=404)
            name = account_id or own
            balance = self.balances.setdefault(name, self.opening_cash)  # one's own account opens on first sight
            return {"account_id": name, "currency": "CNY", "balance": f"{balance:.2f}", "reserved": "0.00",
                    "available": f"{balance:.2f}"}  # fmt: skip

        @app.get("/v1/trades")
        async def trades(
            request: Request,
            strategy_instance_id: str | None = None,
            limit: int = 100,
            oldest_first: bool = False,
            after: str | None = None,
        ) -> Any:
            # execution's paging as the runner's path reads it: oldest first, `after` the last trade_id of a page
            self.trade_callers.append(self._principal(request).subject)
            if self.trades_down:
                return JSONResponse({"code": "internal", "message": "down"}, status_code=503)
            rows = [t for t in self.trades if t["strategy_instance_id"] == strategy_instance_id]
            if not oldest_first:
                rows.reverse()
            if after is not None:
                rows = rows[[t["trade_id"] for t in rows].index(after) + 1 :]
            return rows[:limit]

        return app


@dataclass
class RecordingRunner:
    """Records what the service asked of the runner; `refuse_start` makes start() raise it."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    refuse_start: Exception | None = None

    async def start(self, instance: InstanceRecord, replay: Any = None) -> None:
        if self.refuse_start is not None:
            raise self.refuse_start
        self.calls.append(("start", instance.instance_id, instance.state.value))

    async def started(self, instance_id: str) -> None:
        self.calls.append(("started", instance_id))

    async def pause(self, instance_id: str) -> None:
        self.calls.append(("pause", instance_id))

    async def resume(self, instance: InstanceRecord) -> None:
        self.calls.append(("resume", instance.instance_id, instance.params_version, instance.params))

    async def stop(self, instance_id: str, *, cancel_open_orders: bool) -> None:
        self.calls.append(("stop", instance_id, cancel_open_orders))


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    peers: Peers
    runner: RecordingRunner

    def as_(self, principal: Principal) -> dict[str, str]:
        return headers(self.settings, principal)

    async def create(self, principal: Principal, **overrides: Any) -> httpx.Response:
        return await self.client.post("/v1/strategy-instances", json=body(**overrides), headers=self.as_(principal))

    async def act(self, principal: Principal, instance_id: str, action: str, **kw: Any) -> httpx.Response:
        return await self.client.post(
            f"/v1/strategy-instances/{instance_id}/{action}", headers=self.as_(principal), **kw
        )

    async def outbox_events(self) -> list[Envelope]:
        async with self.app.state.db.engine.connect() as conn:
            rows = (await conn.execute(select(outbox.c.body).order_by(outbox.c.created_at, outbox.c.id))).all()
        return [Envelope.model_validate_json(r.body) for r in rows]

    async def metric(self, sample: str) -> float:
        text = (await self.client.get("/metrics")).text
        [line] = [line for line in text.splitlines() if line.startswith(sample + " ")]
        return float(line.split()[-1])

    async def states(self, instance_id: str) -> dict[str, float]:
        """lh_strategy_instance_state of one instance: state -> value."""
        text = (await self.client.get("/metrics")).text
        prefix = f'lh_strategy_instance_state{{instance_id="{instance_id}",state="'
        return {
            line[len(prefix) :].split('"', 1)[0]: float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(prefix)
        }


def body(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "strategy": "dual_ma",
        "params": {"fast": 5, "slow": 30},
        "universe": {"ts_codes": ["600000.SH", "000001.SZ"]},
        "capital": "200000.00",
    }
    request.update(overrides)
    return {k: v for k, v in request.items() if v is not None}


@asynccontextmanager
async def strategy_service(
    backing: Backing,
    runner: RecordingRunner | None = None,
    *,
    live: bool = False,
    strategies: dict[str, type[Strategy]] | None = None,
) -> AsyncIterator[Service]:
    """`live`: the service's own runner (services.strategy.live.Runner) over the fake peers, not a recording one
    (`Service.runner` then records nothing)."""
    # A database of its own for each test: the listings and the outbox hold only what the test made.
    settings = backing.settings(scope=f"si{secrets.token_hex(3)}")
    peers = Peers(settings.internal_secret)
    transports: dict[str, httpx.AsyncBaseTransport] = {
        "data": httpx.ASGITransport(app=peers.data()),
        "execution": httpx.ASGITransport(app=peers.execution()),
    }
    infra = Infra(
        settings=settings,
        bus=create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="strategy"),
        cache=create_cache(settings.redis_url),
        services=ServiceDirectory(settings, transports),
    )
    runner = runner or RecordingRunner()
    app = create_app(settings, infra, runner=None if live else runner, strategies=strategies)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://strategy") as client,
    ):
        yield Service(app, client, settings, peers, runner)


async def until(check: Callable[[], Any], *, what: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- the lifecycle ----------------------------------------------------------------------------------------------


async def test_an_instance_from_creation_to_deletion(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        assert (await svc.client.get("/readyz")).json()["checks"]["db"] == "ok"
        created = await svc.create(ALICE, costs={"commission_rate": "0.0003"}, order_timing="open_auction")
        assert created.status_code == 201, created.text
        instance = created.json()
        iid = instance["instance_id"]
        assert len(iid) == 32 and int(iid, 16) >= 0 and iid == iid.lower()
        assert {k: v for k, v in instance.items() if k not in ("instance_id", "created_at", "updated_at")} == {
            "strategy": "dual_ma",
            "owner": "alice",
            "account_id": "alice",
            "params": {"fast": 5, "slow": 30, "cash_reserve": "0"},  # the default filled in
            "params_version": 1,
            "universe": {"ts_codes": ["600000.SH", "000001.SZ"]},
            "capital": "200000.00",
            "mode": "paper",
            "bar_freq": "1d",
            "order_timing": "open_auction",
            "costs": {"commission_rate": "0.0003"},
            "reload": "manual",
            "cancel_open_orders_on_stop": True,
            "state": "created",
            "error": None,
        }
        # execution was asked for alice's own account as alice (no account_id=: it is hers)
        assert svc.peers.account_asks == [("alice", "trader", None)]
        assert set(svc.peers.data_callers) == {"svc:strategy"}

        one = await svc.client.get(f"/v1/strategy-instances/{iid}", headers=svc.as_(ALICE))
        assert one.json() == instance
        listed = await svc.client.get("/v1/strategy-instances", headers=svc.as_(ALICE))
        assert listed.json() == [instance]
        assert await svc.metric('lh_strategy_instances{state="created"}') == 1.0
        # the instance's own state series: 1 for its state, 0 for the others
        assert await svc.states(iid) == {"created": 1.0, "running": 0.0, "paused": 0.0, "stopped": 0.0, "failed": 0.0}

        started = await svc.act(ALICE, iid, "start")
        assert started.status_code == 200 and started.json()["state"] == "running"
        assert await svc.metric('lh_strategy_instances{state="running"}') == 1.0
        assert await svc.metric('lh_strategy_instances{state="created"}') == 0.0
        assert await svc.states(iid) == {"created": 0.0, "running": 1.0, "paused": 0.0, "stopped": 0.0, "failed": 0.0}
        assert (await svc.act(ALICE, iid, "pause")).json()["state"] == "paused"
        assert (await svc.states(iid))["paused"] == 1.0 and sum((await svc.states(iid)).values()) == 1.0

        patched = await svc.client.patch(
            f"/v1/strategy-instances/{iid}", json={"params": {"fast": 10, "slow": 30}}, headers=svc.as_(ALICE)
        )
        assert patched.status_code == 200, patched.text
        assert (patched.json()["params"], patched.json()["params_version"]) == (
            {"fast": 10, "slow": 30, "cash_reserve": "0"},
            2,
        )
        versions = (await svc.client.get(f"/v1/strategy-instances/{iid}/versions", headers=svc.as_(ALICE))).json()
        assert [(v["version"], v["params"]["fast"], v["created_by"]) for v in versions] == [
            (1, 5, "alice"),
            (2, 10, "alice"),
        ]

        assert (await svc.act(ALICE, iid, "resume")).json()["state"] == "running"
        stopped = await svc.act(ALICE, iid, "stop", json={"cancel_open_orders": False})
        assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
        # the runner was told first, each time, with the instance as it stood (resume: the new version)
        assert svc.runner.calls == [
            ("start", iid, "created"),
            ("started", iid),
            ("pause", iid),
            ("resume", iid, 2, {"fast": 10, "slow": 30, "cash_reserve": "0"}),
            ("stop", iid, False),
        ]

        audit = (await svc.client.get(f"/v1/strategy-instances/{iid}/audit", headers=svc.as_(ALICE))).json()
        assert [(a["action"], a["actor"]) for a in audit] == [
            ("created", "alice"),
            ("started", "alice"),
            ("paused", "alice"),
            ("params_updated", "alice"),
            ("resumed", "alice"),
            ("stopped", "alice"),
        ]
        assert audit[0]["before"] is None and audit[0]["after"]["capital_fen"] == 20_000_000
        assert (audit[1]["before"], audit[1]["after"]) == ({"state": "created"}, {"state": "running"})
        assert (audit[3]["before"], audit[3]["after"]) == (
            {"params": {"fast": 5, "slow": 30, "cash_reserve": "0"}, "params_version": 1},
            {"params": {"fast": 10, "slow": 30, "cash_reserve": "0"}, "params_version": 2},
        )
        assert audit[5]["after"] == {"state": "stopped", "cancel_open_orders": False}

        deleted = await svc.client.delete(f"/v1/strategy-instances/{iid}", headers=svc.as_(ALICE))
        assert deleted.status_code == 204 and deleted.content == b""
        gone = await svc.client.get(f"/v1/strategy-instances/{iid}", headers=svc.as_(ALICE))
        assert gone.status_code == 404 and gone.json()["code"] == "instance_not_found"
        assert await svc.metric('lh_strategy_instances{state="stopped"}') == 0.0
        assert await svc.states(iid) == {}  # a deleted instance's series are gone

        events = await svc.outbox_events()
        assert [e.type for e in events] == [
            "strategy.instance.created",
            "strategy.instance.started",
            "strategy.instance.paused",
            "strategy.instance.resumed",
            "strategy.instance.stopped",
            "strategy.instance.deleted",
        ]  # no event for a parameter change: the audit has it, and the resume runs it
        payloads = [e.parsed() for e in events]
        assert all(isinstance(p, StrategyInstanceChanged) for p in payloads)
        assert [(p.state, p.instance_id, p.owner, p.account_id, p.mode, p.strategy) for p in payloads] == [
            (state, iid, "alice", "alice", "paper", "dual_ma")
            for state in ("created", "running", "paused", "running", "stopped", "stopped")
        ]
        assert all(e.source == "strategy" for e in events)
        # the relay publishes them on RabbitMQ and marks the rows
        await until(lambda: _all_published(svc), what="the outbox rows marked published")


async def _all_published(svc: Service) -> bool:
    async with svc.app.state.db.engine.connect() as conn:
        pending = (await conn.execute(select(outbox.c.id).where(outbox.c.published_at.is_(None)))).all()
    return not pending


async def test_moves_the_lifecycle_does_not_allow_are_409(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        iid = (await svc.create(ALICE)).json()["instance_id"]
        paused = await svc.act(ALICE, iid, "pause")
        assert paused.status_code == 409
        assert paused.json() == {
            "code": "illegal_transition",
            "message": "cannot pause an instance that is created (created -> paused is not allowed)",
            "details": {"from": "created", "to": "paused", "action": "pause"},
        }
        assert (await svc.act(ALICE, iid, "resume")).json()["details"] == {
            "from": "created", "to": "running", "action": "resume"
        }  # fmt: skip
        not_stopped = await svc.client.delete(f"/v1/strategy-instances/{iid}", headers=svc.as_(ALICE))
        assert not_stopped.status_code == 409 and not_stopped.json()["details"]["to"] == "deleted"

        assert (await svc.act(ALICE, iid, "start")).status_code == 200
        assert (await svc.act(ALICE, iid, "start")).json()["details"] == {
            "from": "running", "to": "running", "action": "start"
        }  # fmt: skip
        running_patch = await svc.client.patch(
            f"/v1/strategy-instances/{iid}", json={"params": {"fast": 7}}, headers=svc.as_(ALICE)
        )
        assert running_patch.status_code == 409 and running_patch.json()["code"] == "instance_not_paused"

        # stopping without a body takes the instance's own setting (cancel its open orders)
        assert (await svc.act(ALICE, iid, "stop")).json()["state"] == "stopped"
        assert svc.runner.calls[-1] == ("stop", iid, True)
        again = await svc.act(ALICE, iid, "start")
        assert again.status_code == 409 and again.json()["details"]["from"] == "stopped"
        # nothing but the legal moves reached the runner, the audit and the outbox
        assert [c[0] for c in svc.runner.calls] == ["start", "started", "stop"]
        audit = (await svc.client.get(f"/v1/strategy-instances/{iid}/audit", headers=svc.as_(ALICE))).json()
        assert [a["action"] for a in audit] == ["created", "started", "stopped"]
        assert [e.type.rsplit(".", 1)[1] for e in await svc.outbox_events()] == ["created", "started", "stopped"]


async def test_a_created_instance_stops_without_the_runner(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        iid = (await svc.create(ALICE, cancel_open_orders_on_stop=False)).json()["instance_id"]
        stopped = await svc.act(ALICE, iid, "stop")
        assert stopped.json()["state"] == "stopped"
        assert svc.runner.calls == []  # it never ran
        audit = (await svc.client.get(f"/v1/strategy-instances/{iid}/audit", headers=svc.as_(ALICE))).json()
        assert audit[-1]["after"] == {"state": "stopped", "cancel_open_orders": False}  # the instance's setting


async def test_the_runner_refusing_a_start_leaves_the_instance_as_it_was(backing: Backing) -> None:
    refusal = ServiceError(
        "warmup_incomplete", "the data service has no bars on 2024-12-30, 2024-12-31", status_code=422
    )
    async with strategy_service(backing, RecordingRunner(refuse_start=refusal)) as svc:
        iid = (await svc.create(ALICE)).json()["instance_id"]
        refused = await svc.act(ALICE, iid, "start")
        assert refused.status_code == 422
        assert refused.json() == {
            "code": "warmup_incomplete",
            "message": "the data service has no bars on 2024-12-30, 2024-12-31",
        }
        assert (await svc.client.get(f"/v1/strategy-instances/{iid}", headers=svc.as_(ALICE))).json()[
            "state"
        ] == "created"
        audit = (await svc.client.get(f"/v1/strategy-instances/{iid}/audit", headers=svc.as_(ALICE))).json()
        assert [a["action"] for a in audit] == ["created"]
        assert [e.type for e in await svc.outbox_events()] == ["strategy.instance.created"]


async def test_a_runner_that_breaks_leaves_the_instance_as_it_was(backing: Backing) -> None:
    async with strategy_service(backing, RecordingRunner(refuse_start=KeyError("universe"))) as svc:
        iid = (await svc.create(ALICE)).json()["instance_id"]
        broken = await svc.act(ALICE, iid, "start")
        assert broken.status_code == 500
        assert broken.json() == {
            "code": "runner_error",
            "message": "the runner could not start the instance (KeyError); it is still created",
        }
        one = (await svc.client.get(f"/v1/strategy-instances/{iid}", headers=svc.as_(ALICE))).json()
        assert one["state"] == "created"
        assert [e.type for e in await svc.outbox_events()] == ["strategy.instance.created"]


async def test_a_failure_reported_by_the_runner(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        iid = (await svc.create(ALICE)).json()["instance_id"]
        await svc.act(ALICE, iid, "start")
        traceback = (
            'Traceback (most recent call last):\n  File "dual_ma.py", line 50\nZeroDivisionError: division by zero'
        )
        failed = await svc.app.state.instances.fail(iid, traceback)
        assert failed is not None and failed.state.value == "failed"
        one = (await svc.client.get(f"/v1/strategy-instances/{iid}", headers=svc.as_(ALICE))).json()
        assert (one["state"], one["error"]) == ("failed", traceback)
        assert await svc.metric("lh_strategy_instance_failures_total") == 1.0
        assert await svc.metric('lh_strategy_instances{state="failed"}') == 1.0
        assert await svc.states(iid) == {"created": 0.0, "running": 0.0, "paused": 0.0, "stopped": 0.0, "failed": 1.0}
        event = (await svc.outbox_events())[-1]
        payload = event.parsed()
        assert event.type == "strategy.instance.failed" and isinstance(payload, StrategyInstanceChanged)
        assert (payload.state, payload.error) == ("failed", "ZeroDivisionError: division by zero")
        audit = (await svc.client.get(f"/v1/strategy-instances/{iid}/audit", headers=svc.as_(ALICE))).json()
        assert (audit[-1]["action"], audit[-1]["actor"], audit[-1]["after"]) == (
            "failed",
            "svc:strategy",
            {"state": "failed", "error": traceback},
        )
        # a second report changes nothing; stopping is how a failed instance's orders are cancelled
        assert await svc.app.state.instances.fail(iid, "again") is None
        assert await svc.metric("lh_strategy_instance_failures_total") == 1.0
        stopped = await svc.act(ALICE, iid, "stop")
        assert (stopped.json()["state"], stopped.json()["error"]) == ("stopped", None)
        assert svc.runner.calls[-1] == ("stop", iid, True)


async def test_the_runners_book_is_kept_per_instance(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        iid = (await svc.create(ALICE)).json()["instance_id"]
        store = svc.app.state.store
        assert await store.load_book(iid) is None
        await store.save_book(iid, None, {"cash_fen": 20_000_000, "positions": {}})
        await store.save_book(iid, date(2025, 1, 2), {"cash_fen": 19_000_000, "positions": {"600000.SH": 1000}})
        book = await store.load_book(iid)
        assert (book.bar_date, book.book) == (
            date(2025, 1, 2),
            {"cash_fen": 19_000_000, "positions": {"600000.SH": 1000}},
        )
        await svc.act(ALICE, iid, "stop")
        await svc.client.delete(f"/v1/strategy-instances/{iid}", headers=svc.as_(ALICE))
        assert await store.load_book(iid) is None


# --- bad input --------------------------------------------------------------------------------------------------


async def test_bad_parameters_strategy_and_fields_are_refused_naming_them(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        zero = await svc.create(ALICE, params={"fast": 0, "slow": 30})
        assert zero.status_code == 422 and zero.json()["code"] == "invalid_request"
        assert zero.json()["message"] == "params.fast: Input should be greater than or equal to 1"
        typo = await svc.create(ALICE, params={"fats": 5})
        assert typo.status_code == 422 and typo.json()["details"][0]["field"] == "params.fats"

        unknown = await svc.create(ALICE, strategy="no_such_strategy")
        assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_strategy"

        minute = await svc.create(ALICE, bar_freq="1m")
        assert minute.status_code == 422 and minute.json()["code"] == "bar_freq_unavailable"
        assert "minute-bar feed" in minute.json()["message"]
        assert (await svc.create(ALICE, bar_freq="5m")).json()["details"][0]["field"] == "bar_freq"

        fraction = await svc.create(ALICE, capital="100.001")
        assert fraction.status_code == 422 and fraction.json()["details"][0]["field"] == "capital"
        cap = await svc.create(ALICE, costs={"volume_cap": "1.5"})
        assert cap.status_code == 422 and cap.json()["details"][0]["field"] == "costs.volume_cap"
        # the account's positions follow corporate actions (execution applies them): an instance's sleeve must too
        ignoring = await svc.create(ALICE, costs={"corporate_actions": False})
        assert ignoring.status_code == 422 and ignoring.json()["details"][0]["field"] == "costs.corporate_actions"
        assert "always follows corporate actions" in ignoring.json()["message"]
        extra = await svc.create(ALICE, leverage=2)
        assert extra.status_code == 422 and extra.json()["details"][0]["field"] == "leverage"

        # nothing was created by any of them
        assert (await svc.client.get("/v1/strategy-instances", headers=svc.as_(ROOT))).json() == []
        assert await svc.outbox_events() == []


async def test_a_universe_that_resolves_to_nothing_is_refused(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        # an index with constituents resolves; a filter with matches too
        assert (await svc.create(ALICE, universe={"index": "000300.SH"}, capital="1000.00")).status_code == 201
        battery = {"filter": {"industry": "电池", "exclude_st": True}}  # 300750.SZ (600777.SH is ST)
        assert (await svc.create(ALICE, universe=battery, capital="1000.00")).status_code == 201

        for universe in (
            {"index": "399006.SZ"},  # no weights published
            {"index": "000905.SH"},  # unknown to the data service
            {"filter": {"industry": "券商"}},  # no stock of that industry
            {"ts_codes": ["600519.SH"]},  # not listed by the data service
        ):
            refused = await svc.create(ALICE, universe=universe, capital="1000.00")
            assert refused.status_code == 422, universe
            assert refused.json()["code"] == "empty_universe", refused.json()
            assert refused.json()["message"].startswith("universe: ")

        partly = await svc.create(ALICE, universe={"ts_codes": ["600000.SH", "600519.SH"]})
        assert partly.status_code == 422 and partly.json()["code"] == "unknown_securities"
        assert partly.json()["details"] == {"ts_codes": ["600519.SH"]}

        svc.peers.data_down = True
        down = await svc.create(ALICE)
        assert down.status_code == 503 and down.json()["code"] == "data_unavailable"
        listed = (await svc.client.get("/v1/strategy-instances", headers=svc.as_(ALICE))).json()
        assert len(listed) == 2


async def test_capital_above_the_unallocated_cash_is_refused(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        # alice's account opens with 1,000,000.00 CNY
        first = await svc.create(ALICE, capital="600000.00")
        assert first.status_code == 201
        # unallocated: 1,000,000.00 - 600,000.00 = 400,000.00; one fen more does not fit
        over = await svc.create(ALICE, capital="400000.01")
        assert over.status_code == 422
        assert over.json()["code"] == "insufficient_unallocated_cash"
        assert over.json()["details"] == {
            "capital": "400000.01",
            "balance": "1000000.00",
            "allocated": "600000.00",
            "unallocated": "400000.00",
        }
        assert over.json()["message"].startswith("capital: 400000.01 CNY is more than the account's unallocated cash")
        exact = await svc.create(ALICE, capital="400000.00")
        assert exact.status_code == 201
        # carol trades alice's account: nothing is left on it for her either
        assert (await svc.create(CAROL, capital="0.01")).json()["code"] == "insufficient_unallocated_cash"
        # a stopped instance's budget is free again (a failed or paused one's is not)
        await svc.act(ALICE, first.json()["instance_id"], "stop")
        assert (await svc.create(CAROL, capital="600000.00")).status_code == 201
        # bob's own account is his: 1,000,000.00 there
        assert (await svc.create(BOB, capital="1000000.00")).status_code == 201


async def test_who_may_create_where(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        viewer = await svc.create(VERA)
        assert viewer.status_code == 403 and viewer.json()["code"] == "forbidden"
        elsewhere = await svc.create(BOB, account_id="alice")
        assert elsewhere.status_code == 403 and "account_id" in elsewhere.json()["message"]
        # an admin names another account: execution is asked for it by name, and it must exist there
        missing = await svc.create(ROOT, account_id="nobody")
        assert missing.status_code == 422 and missing.json()["code"] == "unknown_account"
        svc.peers.balances["alice"] = Decimal("300000.00")
        made = await svc.create(ROOT, account_id="alice", capital="300000.00")
        assert made.status_code == 201, made.text
        assert (made.json()["owner"], made.json()["account_id"]) == ("root", "alice")
        assert svc.peers.account_asks[-1] == ("root", "admin", "alice")
        # the instance trades alice's account, so alice sees and stops it
        iid = made.json()["instance_id"]
        assert (await svc.act(ALICE, iid, "stop")).status_code == 200


async def test_each_principal_sees_and_changes_what_is_theirs(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        alices = (await svc.create(ALICE)).json()
        bobs = (await svc.create(BOB)).json()
        iid = alices["instance_id"]

        def ids(response: httpx.Response) -> set[str]:
            return {i["instance_id"] for i in response.json()}

        listing = "/v1/strategy-instances"
        assert ids(await svc.client.get(listing, headers=svc.as_(ALICE))) == {iid}
        assert ids(await svc.client.get(listing, headers=svc.as_(CAROL))) == {iid}  # alice's account
        assert ids(await svc.client.get(listing, headers=svc.as_(BOB))) == {bobs["instance_id"]}
        assert ids(await svc.client.get(listing, headers=svc.as_(VERA))) == {iid, bobs["instance_id"]}
        assert ids(await svc.client.get(listing, headers=svc.as_(ROOT))) == {iid, bobs["instance_id"]}

        # bob: as if it did not exist
        for path in ("", "/versions", "/audit"):
            hidden = await svc.client.get(f"{listing}/{iid}{path}", headers=svc.as_(BOB))
            assert hidden.status_code == 404 and hidden.json()["code"] == "instance_not_found"
        assert (await svc.act(BOB, iid, "start")).status_code == 404
        assert (
            await svc.client.patch(f"{listing}/{iid}", json={"params": {}}, headers=svc.as_(BOB))
        ).status_code == 404
        # vera reads it, changes nothing
        assert (await svc.client.get(f"{listing}/{iid}", headers=svc.as_(VERA))).status_code == 200
        assert (await svc.client.get(f"{listing}/{iid}/audit", headers=svc.as_(VERA))).status_code == 200
        viewer_start = await svc.act(VERA, iid, "start")
        assert viewer_start.status_code == 403 and viewer_start.json()["code"] == "forbidden"
        assert (await svc.client.delete(f"{listing}/{iid}", headers=svc.as_(VERA))).status_code == 403
        # carol (alice's account) and the admin act on it; the audit names who did what
        assert (await svc.act(CAROL, iid, "start")).status_code == 200
        assert (await svc.act(ROOT, iid, "pause")).status_code == 200
        audit = (await svc.client.get(f"{listing}/{iid}/audit", headers=svc.as_(ALICE))).json()
        assert [(a["action"], a["actor"]) for a in audit] == [
            ("created", "alice"),
            ("started", "carol"),
            ("paused", "root"),
        ]
        # the list filters
        running = await svc.client.get(listing, params={"state": "paused"}, headers=svc.as_(ROOT))
        assert ids(running) == {iid}
        by_strategy = await svc.client.get(listing, params={"strategy": "buy_and_hold"}, headers=svc.as_(ROOT))
        assert by_strategy.json() == []
        assert (await svc.client.get(listing, params={"state": "sleeping"}, headers=svc.as_(ROOT))).status_code == 422
        assert (await svc.client.get(listing)).status_code == 401


# --- the report and the account's allocation ----------------------------------------------------------------------


class NotedParams(StrategyParams):
    note: str = Field(default="", max_length=200, description="free text, shown in reports")


class Noted(Strategy):
    """A strategy with a free-text parameter: what a report must escape."""

    name = "noted"
    title = "Noted"
    description = "Trades nothing; carries a note."
    Params = NotedParams


HOSTILE = '</script><script>alert("x")</script><img src=x onerror=alert(1)> & co'


def fill_row(iid: str, i: int) -> dict[str, Any]:
    """Execution's i-th trade of the instance (1-based), as GET /v1/trades serves it: a buy of 100 at 10.00 + i fen."""
    return {
        "trade_id": f"t{i:04d}",
        "order_id": f"o{i:04d}",
        "client_order_id": f"{iid}-20250102-{i - 1}",
        "strategy_instance_id": iid,
        "account_id": "alice",
        "ts_code": "600000.SH",
        "side": "buy",
        "qty": 100,
        "price": f"{Decimal(1000 + i) / 100:.2f}",
        "commission": "5.00",
        "stamp_duty": "0.00",
        "transfer_fee": "0.01",
        "traded_at": (datetime(2025, 1, 2, 1, 30, tzinfo=UTC) + timedelta(seconds=i)).isoformat(),
    }


def charts(page: str) -> list[dict[str, Any]]:
    """The chart specs a page carries (the JSON its fixed script draws)."""
    blocks = re.findall(
        r'<div class="chart[^"]*"></div><script type="application/json">(.*?)</script>', page, flags=re.S
    )
    return [json.loads(b) for b in blocks]


async def test_the_report_of_an_instance_shows_its_run_so_far(backing: Backing) -> None:
    # The service's own runner (not a recording one) over the fake peers: the report reads what the runner serves
    # for a stored book (performance, sleeve) and execution's trades through the runner's path, as in production.
    async with strategy_service(backing, live=True, strategies={**discover_strategies(), "noted": Noted}) as svc:
        created = await svc.create(ALICE, strategy="noted", params={"note": HOSTILE})
        assert created.status_code == 201, created.text
        iid = created.json()["instance_id"]
        # Its book after three sessions, capital 200,000.00 (20,000,000 fen):
        # 01-02 bought 1,000 600000.SH at 10.00 = 1,000,000 fen, fees 500: cash 18,999,500; close 10.20: mv 1,020,000
        # 01-03 close 10.50: mv 1,050,000
        # 01-06 sold 500 at 10.40 = 520,000, fees 500 + 260 stamp = 760: cash 19,518,740; the 500 left cost
        #       1,000,500 / 2 = 500,250; realised 520,000 - 760 - 500,250 = 18,990; close 10.40: mv 520,000
        book = {
            "t": 2, "day": "2025-01-06", "cash_fen": 19_518_740, "initial_cash_fen": 20_000_000,
            "positions": {"600000.SH": [500, 500_250]}, "realised_fen": 18_990, "sell_pnl": [18_990],
            "fees_paid_fen": 1_260,
            "history": [
                ["2025-01-02", 18_999_500, 1_020_000, 1_000_000, 500, 0],
                ["2025-01-03", 18_999_500, 1_050_000, 0, 0, 0],
                ["2025-01-06", 19_518_740, 520_000, 520_000, 760, 18_990],
            ],
        }  # fmt: skip
        await svc.app.state.store.save_book(iid, date(2025, 1, 6), {"book": book, "strategy": {}})  # as the runner
        svc.peers.trades = [fill_row(iid, i) for i in range(1, 206)] + [{**fill_row("f" * 32, 1), "trade_id": "x1"}]

        answer = await svc.client.get(f"/v1/strategy-instances/{iid}/report.html", headers=svc.as_(ALICE))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        page = answer.text
        assert svc.peers.trade_callers == ["svc:strategy"]

        # the instance, its parameter escaped (never markup)
        assert "<tr><td>Strategy</td><td>noted</td></tr>" in page
        assert "<tr><td>Stocks in the universe today</td><td>2</td></tr>" in page  # 600000.SH and 000001.SZ
        assert "<tr><td>Capital (CNY)</td><td>200,000.00</td></tr>" in page
        assert "<tr><td>Account</td><td>alice</td></tr>" in page
        assert "<tr><td>State</td><td>created</td></tr>" in page
        assert html.escape(json.dumps({"note": HOSTILE}), quote=True) in page
        assert "alert(" not in page.replace(html.escape(json.dumps({"note": HOSTILE}), quote=True), "")
        assert HOSTILE not in page and "<img src=x" not in page and "<script>alert" not in page

        # equity: 200,195.00, 200,495.00, 200,387.40 (cash + market value), in the chart and the table
        [line] = [c for c in charts(page) if c["type"] == "line"]
        assert line["x"] == ["2025-01-02", "2025-01-03", "2025-01-06"]
        assert line["series"][0]["name"] == "Equity"
        assert line["series"][0]["data"] == [200_195.0, 200_495.0, 200_387.4]
        assert (
            '<tr><td>2025-01-06</td><td class="num">195,187.40</td><td class="num">5,200.00</td>'
            '<td class="num">200,387.40</td><td class="num">5,200.00</td><td class="num">7.60</td>'
            '<td class="num pos">189.90</td></tr>'
        ) in page
        # metrics as the backtest report labels them: total return 200,387.40 / 200,000 - 1 = 0.19%; max drawdown
        # (200,495.00 - 200,387.40) / 200,495.00 = 0.05%; one closing trade
        assert '<tr><td>Total return</td><td class="num">0.19%</td></tr>' in page
        assert '<tr><td>Max drawdown</td><td class="num">0.05%</td></tr>' in page
        assert '<tr><td>Closing trades</td><td class="num">1</td></tr>' in page
        assert "<td>Sharpe ratio</td>" in page and "<td>Annual return (CAGR)</td>" in page
        # the sleeve: equity 19,518,740 + 520,000 fen; unrealised 520,000 - 500,250 = 19,750 fen
        assert '<tr><td>Equity (CNY)</td><td class="num">200,387.40</td></tr>' in page
        assert '<tr><td>Unrealised P&amp;L (CNY)</td><td class="num">197.50</td></tr>' in page
        # the position (a stored book: not priced while the instance does not run)
        assert (
            '<tr><td>600000.SH</td><td class="num">500</td><td class="num">0</td><td class="num">5,002.50</td>'
            '<td class="num">n/a</td></tr>'
        ) in page
        # the newest 200 of its 205 fills, newest first; none of another instance's
        assert (
            '<tr><td>2025-01-02</td><td>600000.SH</td><td>buy</td><td class="num">100</td><td class="num">12.05</td>'
            '<td class="num">5.00</td><td class="num">0.00</td><td class="num">0.01</td>'
            f"<td>{iid}-20250102-204</td><td>t0205</td></tr>"
        ) in page
        assert "<td>t0006</td>" in page and "<td>t0005</td>" not in page and "<td>x1</td>" not in page
        assert page.index("<td>t0205</td>") < page.index("<td>t0006</td>")
        assert "205 fills; the newest 200 here" in page
        assert "cdn" not in page.lower() and "echarts" in page  # the vendored library, inlined

        # viewers read it; another trader: as if it did not exist
        assert (
            await svc.client.get(f"/v1/strategy-instances/{iid}/report.html", headers=svc.as_(VERA))
        ).status_code == 200
        hidden = await svc.client.get(f"/v1/strategy-instances/{iid}/report.html", headers=svc.as_(BOB))
        assert hidden.status_code == 404 and hidden.json()["code"] == "instance_not_found"


async def test_the_report_of_an_instance_that_has_not_traded(backing: Backing) -> None:
    async with strategy_service(backing, live=True) as svc:
        iid = (await svc.create(ALICE)).json()["instance_id"]
        svc.peers.data_down = True  # the universe's size is then unknown; the rest is the strategy service's own
        page = (await svc.client.get(f"/v1/strategy-instances/{iid}/report.html", headers=svc.as_(ALICE))).text
        assert "No trading day yet" in page and "No positions." in page and "No fills yet." in page
        svc.peers.trades_down = True  # the fills' part says so; the rest is still there
        page = (await svc.client.get(f"/v1/strategy-instances/{iid}/report.html", headers=svc.as_(ALICE))).text
        assert "Execution could not be read, so the fills are not shown: " in page
        assert "No fills yet." not in page and "No positions." in page
        assert (
            "<tr><td>Stocks in the universe today</td><td>unknown (the data service did not answer)</td></tr>" in page
        )
        assert '<tr><td>Cash (CNY)</td><td class="num">200,000.00</td></tr>' in page
        assert [c for c in charts(page) if c["type"] == "line"] == []


async def test_the_accounts_allocation_is_its_balance_less_the_instances_not_stopped(backing: Backing) -> None:
    async with strategy_service(backing) as svc:
        first = (await svc.create(ALICE, capital="300000.00")).json()
        second = (await svc.create(CAROL, capital="150000.00")).json()  # carol trades alice's account
        gone = (await svc.create(ALICE, capital="100000.00")).json()
        assert (await svc.act(ALICE, gone["instance_id"], "stop")).status_code == 200
        await svc.create(BOB, capital="50000.00")  # bob's own account: not alice's

        answer = await svc.client.get("/v1/strategy-allocation", headers=svc.as_(ALICE))
        assert answer.status_code == 200, answer.text
        allocation = answer.json()
        # 1,000,000.00 - (300,000.00 + 150,000.00) = 550,000.00; the stopped 100,000.00 is free again
        assert {k: v for k, v in allocation.items() if k != "instances"} == {
            "account_id": "alice",
            "balance": "1000000.00",
            "allocated": "450000.00",
            "unallocated": "550000.00",
        }
        assert sorted(allocation["instances"], key=lambda i: i["capital"]) == [
            {"instance_id": second["instance_id"], "strategy": "dual_ma", "state": "created", "capital": "150000.00"},
            {"instance_id": first["instance_id"], "strategy": "dual_ma", "state": "created", "capital": "300000.00"},
        ]
        # the capital check is the same figure
        over = await svc.create(CAROL, capital="550000.01")
        assert over.json()["code"] == "insufficient_unallocated_cash"
        assert over.json()["details"]["unallocated"] == "550000.00"
        # carol's default is the account she trades; an admin names any
        assert (await svc.client.get("/v1/strategy-allocation", headers=svc.as_(CAROL))).json() == allocation
        named = await svc.client.get("/v1/strategy-allocation", params={"account_id": "alice"}, headers=svc.as_(ROOT))
        assert named.json() == allocation
        # a trader or a viewer asking for another's account
        for who in (BOB, VERA):
            refused = await svc.client.get(
                "/v1/strategy-allocation", params={"account_id": "alice"}, headers=svc.as_(who)
            )
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden", who
            assert refused.json()["message"].startswith("account_id: ")
        bobs = (await svc.client.get("/v1/strategy-allocation", headers=svc.as_(BOB))).json()
        assert (bobs["allocated"], bobs["unallocated"]) == ("50000.00", "950000.00")
        bad = await svc.client.get("/v1/strategy-allocation", params={"account_id": "a b"}, headers=svc.as_(ROOT))
        assert bad.status_code == 422


async def test_an_instances_daily_records_are_served_by_day_and_by_range(backing: Backing) -> None:
    from services.strategy.book import DayClose

    async with strategy_service(backing) as svc:
        iid = (await svc.create(ALICE)).json()["instance_id"]
        store = svc.app.state.store
        lot = {"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 0, "cost_fen": 1_000_510, "close_fen": 1_020,
               "market_value_fen": 1_020_000}  # fmt: skip
        # capital 200,000.00. 01-02: bought 1,000 600000.SH at 10.00 = 10,000.00, fees 5.00 + 0.10 = 5.10: cash
        # 189,994.90, close 10.20: market value 10,200.00, unrealised 10,200.00 - 10,005.10 = 194.90
        first = DayClose(date(2025, 1, 2), 18_999_490, 1_020_000, 0, 0, 19_490, 510, 510, 1_000_000, [lot])
        # 01-03: close 10.50, the lot sellable now: market value 10,500.00, unrealised 494.90
        second = DayClose(date(2025, 1, 3), 18_999_490, 1_050_000, 0, 0, 49_490, 0, 510, 0,
                          [{**lot, "sellable_qty": 1000, "close_fen": 1_050, "market_value_fen": 1_050_000}])  # fmt: skip
        # 01-06: sold 500 at 10.40 = 5,200.00, fees 5.00 + 2.60 stamp + 0.05 = 7.65; the half sold cost 5,002.55:
        # realised 5,200.00 - 7.65 - 5,002.55 = 189.80; cash 195,187.25; close 10.40: 5,200.00, unrealised 197.45
        third = DayClose(date(2025, 1, 6), 19_518_725, 520_000, 18_980, 18_980, 19_745, 765, 1_275, 520_000,
                         [{**lot, "qty": 500, "sellable_qty": 500, "cost_fen": 500_255, "close_fen": 1_040,
                           "market_value_fen": 520_000}])  # fmt: skip
        for day in (first, second, third):  # as the runner writes them: with the book that marked the day
            await store.save_book(iid, day.trade_date, {"book": {}}, day)
        # the bar of 01-06 run again after a crash: its record is replaced, not added
        await store.save_book(iid, third.trade_date, {"book": {}}, third)

        days = f"/v1/strategy-instances/{iid}/days"
        listed = await svc.client.get(days, headers=svc.as_(ALICE))
        assert listed.status_code == 200, listed.text
        assert [d["trade_date"] for d in listed.json()] == ["2025-01-02", "2025-01-03", "2025-01-06"]
        assert listed.json()[2] == {
            "trade_date": "2025-01-06",
            "cash": "195187.25",
            "market_value": "5200.00",
            "equity": "200387.25",
            "realised_pnl": "189.80",
            "day_realised_pnl": "189.80",
            "unrealised_pnl": "197.45",
            "fees": "7.65",
            "total_fees": "12.75",
            "turnover": "5200.00",
        }
        assert listed.json()[0]["equity"] == "200194.90" and listed.json()[0]["unrealised_pnl"] == "194.90"
        ranged = await svc.client.get(days, params={"start": "20250103", "end": "2025-01-03"}, headers=svc.as_(ALICE))
        assert [d["trade_date"] for d in ranged.json()] == ["2025-01-03"]
        since = await svc.client.get(days, params={"start": "2025-01-03"}, headers=svc.as_(ALICE))
        assert [d["trade_date"] for d in since.json()] == ["2025-01-03", "2025-01-06"]

        one = await svc.client.get(f"{days}/2025-01-06", headers=svc.as_(ALICE))
        assert one.status_code == 200, one.text
        assert one.json()["positions"] == [
            {"ts_code": "600000.SH", "qty": 500, "sellable_qty": 500, "cost": "5002.55", "close": "10.40",
             "market_value": "5200.00"}
        ]  # fmt: skip
        assert {k: v for k, v in one.json().items() if k != "positions"} == listed.json()[2]
        assert (await svc.client.get(f"{days}/20250102", headers=svc.as_(ALICE))).json()["positions"][0][
            "sellable_qty"
        ] == 0  # bought that day (T+1)

        # a day without a record, bad dates, a range backwards
        missing = await svc.client.get(f"{days}/2025-01-07", headers=svc.as_(ALICE))
        assert missing.status_code == 404 and missing.json()["code"] == "day_not_found"
        for bad in (f"{days}/2025-13-01", f"{days}/yesterday"):
            answer = await svc.client.get(bad, headers=svc.as_(ALICE))
            assert answer.status_code == 422 and answer.json()["code"] == "invalid_request", answer.text
        bad_start = await svc.client.get(days, params={"start": "2025-02-30"}, headers=svc.as_(ALICE))
        assert bad_start.status_code == 422 and bad_start.json()["code"] == "invalid_request"
        backwards = await svc.client.get(days, params={"start": "2025-01-06", "end": "2025-01-02"},
                                         headers=svc.as_(ALICE))  # fmt: skip
        assert backwards.status_code == 422 and backwards.json()["code"] == "invalid_range"

        # who sees them: the owner and the users of its account, viewers and admins; another trader: no such instance
        for who in (CAROL, VERA, ROOT):
            assert (await svc.client.get(days, headers=svc.as_(who))).json() == listed.json(), who
        for path in (days, f"{days}/2025-01-06"):
            hidden = await svc.client.get(path, headers=svc.as_(BOB))
            assert hidden.status_code == 404 and hidden.json()["code"] == "instance_not_found"

        # deleted with the instance
        await svc.act(ALICE, iid, "stop")
        assert (await svc.client.delete(f"/v1/strategy-instances/{iid}", headers=svc.as_(ALICE))).status_code == 204
        assert await store.days(iid) == []
