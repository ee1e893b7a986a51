"""Risk fails closed when its Redis is down (docs/risk-rules.md, "Hot state"): risk runs on a redis-server of this
test's own (never the shared one), execution on the run's Redis. With risk's Redis stopped every new order is 503
`risk_unavailable` and nothing reaches execution; a cancel (which never passes through risk) still works; with Redis
back, orders pass again from a book seeded afresh."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date
from functools import partial
from pathlib import Path

import pytest
import redis

from services.execution.store import orders
from tests.chaos.servers import Redis
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import fleet, now_session, order_body, settle, trader

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Redis]:
    """A redis-server of the test's own (the fault suite's: a free port, a directory of its own, no persistence, so
    stopped and started it comes back empty); the machine's Redis is never touched. Every machine has the binary
    (the project's backing services); without it the test fails, it is not skipped."""
    assert shutil.which("redis-server"), "redis-server is not installed (scripts/backing-services.sh installs it)"
    server = Redis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _keys(server: Redis, pattern: str) -> list[bytes]:
    client = redis.Redis.from_url(server.url)
    try:
        return [k for k in client.keys(pattern) if isinstance(k, bytes)]
    finally:
        client.close()


# below the last close 10.00: a buy rests and keeps its reservation
_order = partial(order_body, price="9.50")


async def test_risk_fails_closed_without_its_redis_and_cancels_still_work(
    backing: Backing, private_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "100000")
    settings = backing.settings()
    cal = trader()
    async with fleet(settings, risk_redis_url=private_redis.url) as f:
        first = await f.risk.post("/v1/orders", json=_order(), headers=f.headers(cal))
        assert first.status_code == 201, first.text
        order_id = first.json()["order"]["order_id"]
        assert first.json()["order"]["status"] in ("accepted", "submitted")
        assert _keys(private_redis, f"*:book:{cal.account_id}}}*")  # risk's book is in the test's own Redis

        private_redis.stop()
        refused = await f.risk.post("/v1/orders", json=_order(), headers=f.headers(cal))
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "risk_unavailable"
        assert await f.store.count(orders, account_id=cal.account_id) == 1  # nothing reached execution
        # a sell is refused the same way (no book to read sellable shares from)
        sell = await f.risk.post("/v1/orders", json=_order(side="sell", qty=100), headers=f.headers(cal))
        assert (sell.status_code, sell.json()["code"]) == (503, "risk_unavailable")

        # Cancels go straight to execution: they work without risk's Redis.
        cancelled = await f.execution.post(f"/v1/orders/{order_id}/cancel", headers=f.headers(cal))
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        account = (await f.execution.get("/v1/account", headers=f.headers(cal))).json()
        assert (account["balance"], account["reserved"], account["available"]) == (
            "100000.00",
            "0.00",
            "100000.00",
        )

        # Redis back, empty: the book is seeded again from execution (the cancel is in it: nothing reserved).
        private_redis.start()
        body = _order(qty=10000)
        # The first order after the restart passes: pooled connections to the Redis that died reconnect (no 503).
        again = await f.risk.post("/v1/orders", json=body, headers=f.headers(cal))
        # 10,000 x 9.50 = 95,000.00 + commission 23.75 (0.025%) + transfer fee 0.95 = 95,024.70 <= 100,000.00:
        # it fits only because the cancelled order's 9,505.10 is no longer reserved.
        assert again.status_code == 201, again.text
        assert await f.store.count(orders, account_id=cal.account_id) == 2
        view = await f.risk_app.state.keeper.view(cal.account_id, date.fromisoformat(now_session()))
        assert view is not None
        assert (view.balance_fen, view.reserved_fen) == (10_000_000, 9_502_470)
        account = (await f.execution.get("/v1/account", headers=f.headers(cal))).json()
        assert (account["reserved"], account["available"]) == ("95024.70", "4975.30")
        await settle(f)
