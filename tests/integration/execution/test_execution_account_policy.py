"""Who opens an account, and which idempotency keys a cash movement may use. GET /v1/account opens the caller's
own account (with the paper opening cash) the first time; an account an admin or a service names must have been
seen (its owner, an order, a cash movement), else 404 and nothing is created. The keys execution's own ledger
entries use ("opening", "trade:<trade_id>") are refused for deposits and withdrawals."""

from __future__ import annotations

import pytest

from services.execution.store import accounts, cash_ledger
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import fleet, settle, trader

pytestmark = pytest.mark.integration

ADMIN = Principal("root", "admin", "acct-root")
RISK = Principal("svc:risk", "service")


async def test_a_named_account_that_was_never_seen_is_not_found_and_not_created(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "1000")
    settings = backing.settings()
    zoe = trader()
    typo = f"acct-typo-{new_id()[:8]}"
    async with fleet(settings) as f:
        for who in (ADMIN, RISK):
            missing = await f.execution.get(f"/v1/account?account_id={typo}", headers=f.headers(who))
            assert missing.status_code == 404
            assert missing.json()["code"] == "account_not_found"
            assert missing.json()["message"] == f"no account {typo}: it has no orders and no cash movements"
        assert await f.store.count(accounts, account_id=typo) == 0
        assert await f.store.count(cash_ledger, account_id=typo) == 0

        # Not seen yet either, until its owner looks: then it is opened with the opening cash, and others see it.
        early = await f.execution.get(f"/v1/account?account_id={zoe.account_id}", headers=f.headers(RISK))
        assert early.status_code == 404
        own = await f.execution.get("/v1/account", headers=f.headers(zoe))
        assert own.status_code == 200
        assert (own.json()["account_id"], own.json()["balance"]) == (zoe.account_id, "1000.00")
        named = await f.execution.get(f"/v1/account?account_id={zoe.account_id}", headers=f.headers(ADMIN))
        assert named.status_code == 200 and named.json()["available"] == "1000.00"
        await settle(f)


async def test_cash_movements_may_not_use_executions_own_keys(backing: Backing) -> None:
    settings = backing.settings()
    ada = trader()
    async with fleet(settings) as f:
        for key in ("opening", "OPENING", "trade:paper-x-1", "Trade:anything"):
            body = {"account_id": ada.account_id, "kind": "deposit", "amount": "100.00", "idempotency_key": key}
            response = await f.execution.post("/v1/account/cash", json=body, headers=f.headers(ADMIN))
            assert response.status_code == 422, key
            assert response.json()["code"] == "idempotency_key_reserved"
        assert await f.store.count(cash_ledger, account_id=ada.account_id) == 0
        assert await f.store.count(accounts, account_id=ada.account_id) == 0
        body = {"account_id": ada.account_id, "kind": "deposit", "amount": "100.00", "idempotency_key": "opening-2"}
        assert (await f.execution.post("/v1/account/cash", json=body, headers=f.headers(ADMIN))).status_code == 201
        await settle(f)
