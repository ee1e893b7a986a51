"""The same order path in standalone mode: SQLite files and the in-memory bus, as `make run` starts it."""

import asyncio
from pathlib import Path

import httpx

from services.execution.app import create_app as create_execution_app
from services.execution.store import orders, trades
from services.risk.app import create_app as create_risk_app
from shared.app import Infra
from shared.bus import MemoryBus
from shared.cache import MemoryCache
from shared.http import ServiceDirectory
from shared.settings import Settings
from tests.integration.execution.order_path_harness import FakeDataService, headers, trader, until


async def test_standalone_order_path_on_sqlite(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False)
    bus, cache = MemoryBus(), MemoryCache()
    data = FakeDataService(settings.jwt_secret)
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
