"""A client_order_id that execution refused (the account could not afford it when execution admitted it) is not
an approval to replay: a later retry with it is decided afresh, every check again."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.risk.store import ExecutionOutcome
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import fleet, quote, settle, trader

pytestmark = pytest.mark.integration
ADMIN = Principal("root", "admin", "acct-root")


class Rich:
    """Risk's view of the cash lagging behind execution's (e.g. another order took the cash in between)."""

    async def available(self, account_id: str, principal: Principal) -> Decimal:
        return Decimal("999999999")


def _order(cid: str, **kw: Any) -> dict[str, Any]:
    body = {"client_order_id": cid, "ts_code": "600000.SH", "side": "buy", "order_type": "limit", "qty": 1000}
    body.update({"price": "10.00", **kw})
    return body


async def test_a_retry_after_executions_refusal_is_checked_again(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "5000")
    settings = backing.settings()
    tom = trader()
    async with fleet(settings) as f:
        desk = f.risk_app.state.desk
        real_cash, desk.cash = desk.cash, Rich()
        # Risk approves; execution refuses: 1,000 x 10.00 = 10,000.00 + 5.00 commission (minimum) + 0.10 transfer fee = 10,005.10, 5,000.00 available.
        first = await f.risk.post("/v1/orders", json=_order("cid-1"), headers=f.headers(tom))
        assert (first.status_code, first.json()["code"]) == (422, "insufficient_cash")
        assert first.json()["decision"]["approved"] is True
        assert first.json()["details"] == {"needed": "10005.10", "available": "5000.00"}
        assert await desk.decisions.outcome(first.json()["decision"]["decision_id"]) is ExecutionOutcome.REFUSED
        desk.cash = real_cash

        # Later: the stock fell; 10.00 is above the next session's limit-up (9.35). Cash is no longer short.
        f.data.quotes["600000.SH"] = quote("600000.SH", "8.50", "9.35", "7.65")
        await f.data_changed()
        deposit = {"account_id": tom.account_id, "kind": "deposit", "amount": "20000.00", "idempotency_key": new_id()}
        assert (await f.execution.post("/v1/account/cash", json=deposit, headers=f.headers(ADMIN))).status_code == 201

        retry = await f.risk.post("/v1/orders", json=_order("cid-1"), headers=f.headers(tom))
        assert (retry.status_code, retry.json()["code"]) == (422, "order_rejected")
        assert [r["code"] for r in retry.json()["decision"]["reasons"]] == ["price_limit"]
        assert retry.json()["decision"]["decision_id"] != first.json()["decision"]["decision_id"]
        orders = (await f.execution.get("/v1/orders", headers=f.headers(tom))).json()
        assert orders == []  # nothing placed, then or now

        # Within the new limits the same client_order_id is approved and placed, and from then on replayed.
        placed = await f.risk.post("/v1/orders", json=_order("cid-1", price="9.30"), headers=f.headers(tom))
        assert placed.status_code == 201, placed.json()
        again = await f.risk.post("/v1/orders", json=_order("cid-1", price="9.30"), headers=f.headers(tom))
        assert again.status_code == 200
        assert again.json()["decision"] == placed.json()["decision"]
        assert again.json()["order"]["order_id"] == placed.json()["order"]["order_id"]
        await settle(f)
