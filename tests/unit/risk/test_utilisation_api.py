"""`GET /v1/risk/utilisation` (docs/risk-rules.md, "Limit utilisation per account"): each limit's share at the last
order of an account that risk checked against it, as a percentage, scoped like every risk read (one's own account;
admins and services all), from the same measures as `lh_risk_limit_utilisation_ratio`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.risk.api import router
from services.risk.metrics import RiskMetrics
from shared.platform.app import install_error_handlers
from shared.platform.internal_auth import SERVICE, Principal, internal_principal

VALUE, QTY = ("order_limits", "max_order_value"), ("order_limits", "max_order_qty")
EXPOSURE = ("total_exposure", "exposure_pct")
T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


class Clocks:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = T0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def metrics(clocks: Clocks) -> RiskMetrics:
    return RiskMetrics(CollectorRegistry(), clock=lambda: clocks.mono, wall=lambda: clocks.wall)


def client_for(metrics: RiskMetrics, principal: Principal) -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.desk = SimpleNamespace(metrics=metrics)
    app.dependency_overrides[internal_principal] = lambda: principal
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://risk")


@pytest.fixture
async def measured(metrics: RiskMetrics, clocks: Clocks) -> AsyncIterator[RiskMetrics]:
    # alice: 3,150 of 4,200 CNY = 75%; 300 of 400 shares = 75%; then 10 minutes later an order bringing her stocks to
    # 1/3 of the exposure limit (33.33%). bob: 5,250 of 4,200 = 125% (refused).
    metrics.utilised("alice", {VALUE: Decimal("0.75"), QTY: Decimal("0.75")})
    clocks.advance(600)
    metrics.utilised("alice", {EXPOSURE: Decimal(1) / Decimal(3)})
    metrics.utilised("bob", {VALUE: Decimal("1.25")})
    yield metrics


async def test_a_trader_reads_their_own_accounts_limits_as_exact_percentages(measured: RiskMetrics) -> None:
    alice = Principal("alice", "trader", "alice")
    async with client_for(measured, alice) as c:
        answer = (await c.get("/v1/risk/utilisation")).json()
        mine = (await c.get("/v1/risk/utilisation", params={"account_id": "alice"})).json()
        other = await c.get("/v1/risk/utilisation", params={"account_id": "bob"})
    assert answer == mine
    assert answer["window_s"] == 900
    assert answer["accounts"] == [
        {
            "account_id": "alice",
            "limits": [
                {"rule": "order_limits", "code": "max_order_qty", "pct": "75.00", "measured_at": T0.isoformat()},
                {"rule": "order_limits", "code": "max_order_value", "pct": "75.00", "measured_at": T0.isoformat()},
                {
                    "rule": "total_exposure",
                    "code": "exposure_pct",
                    "pct": "33.33",
                    "measured_at": (T0 + timedelta(minutes=10)).isoformat(),
                },
            ],
        }
    ]
    assert other.status_code == 403 and other.json()["code"] == "forbidden"


async def test_admins_and_services_read_every_account_and_old_measures_expire(
    measured: RiskMetrics, clocks: Clocks
) -> None:
    for principal in (Principal("root", "admin"), Principal("svc:gateway", SERVICE)):
        async with client_for(measured, principal) as c:
            every = (await c.get("/v1/risk/utilisation")).json()["accounts"]
            bob = (await c.get("/v1/risk/utilisation", params={"account_id": "bob"})).json()["accounts"]
        assert [a["account_id"] for a in every] == ["alice", "bob"]
        assert bob == [{"account_id": "bob", "limits": [{"rule": "order_limits", "code": "max_order_value",
                                                          "pct": "125.00", "measured_at": (T0 + timedelta(minutes=10)).isoformat()}]}]  # fmt: skip
    # 15 minutes after alice's first order its measures are gone; her exposure and bob's order are 5 minutes old
    clocks.advance(300)
    async with client_for(measured, Principal("root", "admin")) as c:
        every = (await c.get("/v1/risk/utilisation")).json()["accounts"]
    assert [(a["account_id"], [limit["code"] for limit in a["limits"]]) for a in every] == [
        ("alice", ["exposure_pct"]),
        ("bob", ["max_order_value"]),
    ]
    # a viewer without any measure gets an empty list, not someone else's
    async with client_for(measured, Principal("carol", "viewer", "carol")) as c:
        assert (await c.get("/v1/risk/utilisation")).json()["accounts"] == []
