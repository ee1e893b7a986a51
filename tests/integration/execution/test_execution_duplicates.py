"""Identical submissions arriving at the same moment (a client's retry racing its first attempt): one is placed
(201), the others are answered with it (200, the same order), however little shares or cash the account has left
once the first copy reserved its part. The same for cash movements with one idempotency key."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from services.execution.store import cash_ledger, orders
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    fleet,
    limit_buy,
    settle,
    signed_order,
    trader,
    trades_were_yesterday,
)

pytestmark = pytest.mark.integration

ADMIN = Principal("root", "admin", "acct-root")
COPIES = 4


async def _at_once(f: Fleet, principal: Principal, body: dict[str, Any]) -> list[Any]:
    return list(
        await asyncio.gather(
            *(f.execution.post("/v1/orders", json=body, headers=f.headers(principal)) for _ in range(COPIES))
        )
    )


async def test_identical_sells_at_once_are_placed_once(backing: Backing) -> None:
    settings = backing.settings()
    olga = trader()
    async with fleet(settings) as f:
        bought = await f.execution.post(
            "/v1/orders", json=signed_order(f.settings, limit_buy(olga)), headers=f.headers(olga)
        )
        assert bought.json()["status"] == "filled"
        await trades_were_yesterday(f, olga.account_id)  # all 1,000 sellable in the session of a sell now (T+1)
        sell = limit_buy(olga, side="sell", qty=1000, price="10.50")  # above the market: rests, holding all 1,000
        answers = await _at_once(f, olga, signed_order(f.settings, sell))

        assert Counter(a.status_code for a in answers) == Counter({201: 1, 200: COPIES - 1}), [
            (a.status_code, a.json().get("code")) for a in answers
        ]
        assert len({a.json()["order_id"] for a in answers}) == 1
        assert {a.json()["client_order_id"] for a in answers} == {sell.client_order_id}
        assert await f.store.count(orders, account_id=olga.account_id) == 2  # the buy and one sell
        await settle(f)


async def test_identical_buys_at_once_are_placed_once_when_cash_covers_one(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "10000")
    settings = backing.settings()
    pia = trader()
    async with fleet(settings) as f:
        # 1,000 x 9.50 = 9,500.00 + 5.00 commission (minimum) + 0.10 transfer fee = 9,505.10 reserved; a second
        # copy would need 9,505.10 of the 494.90 left.
        buy = limit_buy(pia, price="9.50")
        answers = await _at_once(f, pia, signed_order(f.settings, buy))

        assert Counter(a.status_code for a in answers) == Counter({201: 1, 200: COPIES - 1}), [
            (a.status_code, a.json().get("code")) for a in answers
        ]
        assert len({a.json()["order_id"] for a in answers}) == 1
        assert await f.store.count(orders, account_id=pia.account_id) == 1
        account = (await f.execution.get("/v1/account", headers=f.headers(pia))).json()
        assert (account["balance"], account["reserved"], account["available"]) == ("10000.00", "9505.10", "494.90")
        await settle(f)


async def test_identical_withdrawals_at_once_are_made_once(backing: Backing, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "10000")
    settings = backing.settings()
    wen = trader()
    async with fleet(settings) as f:
        body = {"account_id": wen.account_id, "kind": "withdrawal", "amount": "6000.00", "idempotency_key": new_id()}
        answers = await asyncio.gather(
            *(f.execution.post("/v1/account/cash", json=body, headers=f.headers(ADMIN)) for _ in range(COPIES))
        )

        assert Counter(a.status_code for a in answers) == Counter({201: 1, 200: COPIES - 1}), [
            (a.status_code, a.json().get("code")) for a in answers
        ]
        assert len({a.json()["entry"]["entry_id"] for a in answers}) == 1
        assert {a.json()["entry"]["amount"] for a in answers} == {"-6000.00"}
        assert await f.store.count(cash_ledger, account_id=wen.account_id) == 2  # opening, one withdrawal
        account = (await f.execution.get("/v1/account", headers=f.headers(wen))).json()
        assert account["balance"] == "4000.00"  # 10,000.00 - 6,000.00, once
        await settle(f)
