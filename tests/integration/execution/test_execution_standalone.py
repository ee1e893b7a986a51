"""The same order path in standalone mode: SQLite files and the in-memory bus, as `make run` starts it."""

import asyncio
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from services.execution.app import create_app as create_execution_app
from services.execution.store import orders, trades
from services.risk.app import create_app as create_risk_app
from shared.platform.app import Infra
from shared.platform.approval import OrderTerms, sign_approval
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.http import ServiceDirectory
from shared.platform.observability import new_id
from shared.platform.settings import Settings
from tests.integration.execution.order_path_harness import FakeDataService, headers, trader, until


async def test_standalone_order_path_on_sqlite(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False)
    bus, cache = MemoryBus(), MemoryCache()
    data = FakeDataService(settings.internal_secret)
    data_transport = httpx.ASGITransport(app=data.app)
    execution_app = create_execution_app(
        settings, Infra(settings, bus, cache, ServiceDirectory(settings, {"data": data_transport}), shared=True)
    )
    directory = ServiceDirectory(
        settings, {"data": data_transport, "execution": httpx.ASGITransport(app=execution_app)}
    )
    risk_app = create_risk_app(settings, Infra(settings, bus, cache, directory, shared=True))
    nina = trader()
    async with (
        execution_app.router.lifespan_context(execution_app),
        risk_app.router.lifespan_context(risk_app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=risk_app), base_url="http://risk") as risk,
    ):
        body = {"client_order_id": "sa-1", "ts_code": "600000.SH", "side": "buy", "order_type": "market", "qty": 300}
        answers = await asyncio.gather(
            *(risk.post("/v1/orders", json=body, headers=headers(settings, nina)) for _ in range(5))
        )
        assert sorted(a.status_code for a in answers) == [200] * 4 + [201]
        order_id = answers[0].json()["order"]["order_id"]
        assert {a.json()["order"]["order_id"] for a in answers} == {order_id}

        store = execution_app.state.store
        await until(lambda: _filled(store, order_id), what="the order filled")
        assert await store.count(orders, account_id=nina.account_id) == 1
        [trade] = await store.list_trades(account_id=nina.account_id, order_id=None, limit=5)
        assert (trade.qty, str(trade.price), str(trade.amount), str(trade.fees)) == (300, "10.00", "3000.00", "5.03")
        # 300 x 10.00 = 3,000.00: commission 0.75 -> minimum 5.00; transfer fee 0.03; no stamp duty on a buy.
        assert await store.count(trades, account_id=nina.account_id) == 1

        await until(lambda: len([e for e in bus.published if e.payload.get("order_id") == order_id]) >= 4)
        assert [e.type for e in bus.published if e.payload.get("order_id") == order_id] == [
            "order.accepted",
            "order.submitted",
            "trade.executed",
            "order.filled",
        ]


async def _filled(store, order_id: str) -> bool:  # type: ignore[no-untyped-def]
    stored = await store.get_order(order_id)
    return stored is not None and stored.order.status.value == "filled"


async def test_standalone_concurrent_buys_spend_only_the_available_cash_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite has one writer: admission's first statement takes the write lock, so the checks see every earlier
    # admission. Each resting buy reserves 1,000 x 9.50 + 5.00 + 0.10 = 9,505.10; three fit in 30,000.00.
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "30000")
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False)
    data_transport = httpx.ASGITransport(app=FakeDataService(settings.internal_secret).app)
    infra = Infra(
        settings, MemoryBus(), MemoryCache(), ServiceDirectory(settings, {"data": data_transport}), shared=True
    )
    execution_app = create_execution_app(settings, infra)
    olaf = trader()
    async with (
        execution_app.router.lifespan_context(execution_app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=execution_app), base_url="http://execution") as ex,
    ):

        async def buy() -> httpx.Response:
            terms = OrderTerms(
                client_order_id=f"c-{new_id()[:10]}",
                account_id=olaf.account_id,
                ts_code="600000.SH",
                side="buy",
                order_type="limit",
                qty=1000,
                price=Decimal("9.50"),
            )
            approval = sign_approval(settings.require_approval_secret(), terms, new_id()).model_dump(mode="json")
            body = {**terms.model_dump(mode="json"), "approval": approval}
            return await ex.post("/v1/orders", json=body, headers=headers(settings, olaf))

        answers = await asyncio.gather(*(buy() for _ in range(5)))
        assert sorted(a.status_code for a in answers) == [201] * 3 + [422] * 2
        assert {a.json()["code"] for a in answers if a.status_code == 422} == {"insufficient_cash"}
        account = (await ex.get("/v1/account", headers=headers(settings, olaf))).json()
        assert (account["balance"], account["reserved"], account["available"]) == ("30000.00", "28515.30", "1484.70")


async def test_the_codes_of_open_orders_are_leased_for_ticks_and_released(tmp_path: Path) -> None:
    """With LH_QUOTES_TICKS on a bridge feed, execution leases the codes of its open orders at the data service
    (PUT /v1/quotes/watch, docs/quotes.md): a resting order's code is watched, and released when it is cancelled."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False, quotes_feed="bridge",
        quotes_ticks=True,
    )  # type: ignore[call-arg]  # fmt: skip
    data = FakeDataService(settings.internal_secret)
    data_transport = httpx.ASGITransport(app=data.app)
    infra = Infra(
        settings, MemoryBus(), MemoryCache(), ServiceDirectory(settings, {"data": data_transport}), shared=True
    )
    execution_app = create_execution_app(settings, infra)
    olaf = trader()
    async with (
        execution_app.router.lifespan_context(execution_app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=execution_app), base_url="http://execution") as ex,
    ):
        await until(lambda: bool(data.watches), what="the first lease")
        assert data.watches[0]["codes"] == [] and data.watches[0]["owner"].startswith("execution:")
        terms = OrderTerms(
            client_order_id=f"c-{new_id()[:10]}", account_id=olaf.account_id, ts_code="600000.SH", side="buy",
            order_type="limit", qty=1000, price=Decimal("9.50"),
        )  # fmt: skip  # below the 10.00 quote: it rests
        approval = sign_approval(settings.require_approval_secret(), terms, new_id()).model_dump(mode="json")
        placed = await ex.post("/v1/orders", json={**terms.model_dump(mode="json"), "approval": approval},
                               headers=headers(settings, olaf))  # fmt: skip
        assert placed.status_code == 201, placed.text
        await until(lambda: data.watches[-1]["codes"] == ["600000.SH"], what="the order's code leased")
        order_id = placed.json()["order_id"]
        cancelled = await ex.post(f"/v1/orders/{order_id}/cancel", headers=headers(settings, olaf))
        assert cancelled.status_code == 200, cancelled.text
        await until(lambda: data.watches[-1]["codes"] == [], what="the code released")
        assert {w["ttl_s"] for w in data.watches} == {90}
