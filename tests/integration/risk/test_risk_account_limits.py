"""Shares and cash on the order path through risk into execution, against the real MariaDB: orders submitted at
the same moment all pass risk's early checks, and execution's admission lets through exactly what the account
holds; its refusal comes back through risk with its code. Risk's own buying-power check. Amounts by hand."""

import asyncio
from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from services.execution.store import orders
from services.risk.state.ports import BookView, HoldingView, Reservation, Verdict
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    fleet,
    order_body,
    set_global_rules,
    settle,
    trader,
    trades_were_yesterday,
)
from tests.support.positions import held

pytestmark = pytest.mark.integration


_order = order_body


def _refusal_code(answer: Any) -> str:
    """What a refused placement says was wrong: execution's code, or the single reason of risk's rejection."""
    body = answer.json()
    if body["code"] == "order_rejected":
        [reason] = body["decision"]["reasons"]
        return str(reason["code"])
    return str(body["code"])


class StaleBooks:
    """Risk's book of the account as it was before other sells took the shares (events not arrived yet): all 1,000
    shares sellable, and every reservation granted."""

    def __init__(self, books: Any) -> None:
        self.books = books

    async def view(self, account_id: str, session: date, principal: Any) -> BookView | None:
        seen = await self.books.view(account_id, session, principal)
        assert seen is not None
        return replace(seen, holdings={"600000.SH": HoldingView("600000.SH", 1000, 1000)})

    async def reserve(self, account_id: str, client_order_id: str, **kw: Any) -> Reservation:
        return Reservation(Verdict.RESERVED)

    async def release(self, account_id: str, client_order_id: str) -> None:
        await self.books.release(account_id, client_order_id)


async def test_concurrent_sells_through_risk_sell_only_the_sellable_shares(backing: Backing) -> None:
    settings = backing.settings()
    tom = trader()
    async with fleet(settings) as f:
        bought = await f.risk.post("/v1/orders", json=_order(), headers=f.headers(tom))
        assert bought.status_code == 201 and bought.json()["order"]["status"] == "filled"
        await trades_were_yesterday(f, tom.account_id)
        await set_global_rules(f, {"duplicates": {"enabled": False}})  # eight identical sells, on purpose

        sells = [_order(side="sell", qty=200, price="10.50") for _ in range(8)]  # rest above the close
        answers = await asyncio.gather(*(f.risk.post("/v1/orders", json=s, headers=f.headers(tom)) for s in sells))
        assert sorted(a.status_code for a in answers) == [201] * 5 + [422] * 3
        assert [_refusal_code(a) for a in answers if a.status_code == 422] == ["insufficient_position"] * 3
        assert await f.store.count(orders, account_id=tom.account_id, side="sell") == 5
        positions = held((await f.execution.get("/v1/positions", headers=f.headers(tom))).json())
        assert positions == [{"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 0}]
        await settle(f)


async def test_executions_refusal_comes_back_through_risk_with_its_code(backing: Backing) -> None:
    settings = backing.settings()
    uma = trader()
    async with fleet(settings) as f:
        assert (await f.risk.post("/v1/orders", json=_order(), headers=f.headers(uma))).status_code == 201
        await trades_were_yesterday(f, uma.account_id)
        # Risk still believes all 1,000 shares are sellable; 700 of them are already promised to a resting sell.
        resting = await f.risk.post(
            "/v1/orders", json=_order(side="sell", qty=700, price="10.50"), headers=f.headers(uma)
        )
        assert resting.status_code == 201
        f.risk_app.state.desk.books = StaleBooks(f.risk_app.state.desk.books)

        late = await f.risk.post("/v1/orders", json=_order(side="sell", qty=400, price="10.50"), headers=f.headers(uma))
        assert late.status_code == 422
        body = late.json()
        assert body["code"] == "insufficient_position"
        assert body["message"].startswith("cannot sell 400 shares of 600000.SH: 300 sellable now (held 1000;")
        assert body["decision"]["approved"] is True  # risk approved it; execution, which decides, did not
        assert await f.store.count(orders, account_id=uma.account_id) == 2
        await settle(f)


async def test_risk_refuses_a_buy_beyond_the_available_cash(backing: Backing, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "20000")
    settings = backing.settings()
    vera = trader()
    async with fleet(settings) as f:
        # 2,000 x 10.00 = 20,000.00 + commission 5.00 + transfer fee 0.20 = 20,005.20 > 20,000.00.
        refused = await f.risk.post("/v1/orders", json=_order(qty=2000), headers=f.headers(vera))
        assert refused.status_code == 422 and refused.json()["code"] == "order_rejected"
        assert refused.json()["decision"]["reasons"] == [
            {
                "code": "insufficient_cash",
                "message": "buying 2000 shares of 600000.SH at up to 10.00 (limit price) needs 20005.20 CNY with "
                "fees; 20000.00 available",
            }
        ]
        assert await f.store.count(orders, account_id=vera.account_id) == 0

        # A market buy is valued at the next session's limit-up price, 11.00: 1,900 x 11.00 = 20,900.00 + 5.23
        # commission + 0.21 transfer fee = 20,905.44, refused although 1,900 at today's 10.00 would fit.
        market = await f.risk.post(
            "/v1/orders", json=_order(qty=1900, order_type="market", price=None), headers=f.headers(vera)
        )
        assert market.status_code == 422
        [reason] = market.json()["decision"]["reasons"]
        assert reason["code"] == "insufficient_cash" and "needs 20905.44 CNY with fees" in reason["message"]

        ok = await f.risk.post("/v1/orders", json=_order(qty=1900), headers=f.headers(vera))
        assert ok.status_code == 201 and ok.json()["order"]["status"] == "filled"
        account = (await f.execution.get("/v1/account", headers=f.headers(vera))).json()
        assert (account["balance"], account["available"]) == ("994.81", "994.81")  # 20,000.00 - 19,005.19
        await settle(f)


async def test_concurrent_buys_through_risk_spend_only_the_available_cash(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "50000")
    settings = backing.settings()
    walt = trader()
    async with fleet(settings) as f:
        await set_global_rules(f, {"duplicates": {"enabled": False}})  # eight identical buys, on purpose
        # Each resting buy reserves 1,000 x 9.50 + 5.00 + 0.10 = 9,505.10: five fit in 50,000.00.
        buys = [_order(price="9.50") for _ in range(8)]
        answers = await asyncio.gather(*(f.risk.post("/v1/orders", json=b, headers=f.headers(walt)) for b in buys))
        assert sorted(a.status_code for a in answers) == [201] * 5 + [422] * 3
        assert [_refusal_code(a) for a in answers if a.status_code == 422] == ["insufficient_cash"] * 3
        account = (await f.execution.get("/v1/account", headers=f.headers(walt))).json()
        assert (account["balance"], account["reserved"], account["available"]) == ("50000.00", "47525.50", "2474.50")
        await settle(f)
