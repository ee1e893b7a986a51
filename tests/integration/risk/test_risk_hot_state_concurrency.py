"""Risk's hot book under load, through the fleet (real Redis, MariaDB, RabbitMQ): 100 orders sent to risk at once on
one account whose cash (or sellable shares) covers exactly N of them — exactly N pass, the rest are refused by risk
itself, and execution ends with exactly what the N reserve. Amounts by hand."""

import asyncio
from datetime import date
from functools import partial
from typing import Any

import pytest

from services.execution.store import orders
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    fleet,
    now_session,
    order_body,
    settle,
    trader,
    trades_were_yesterday,
)
from tests.support.positions import held

pytestmark = pytest.mark.integration

N = 37  # the orders the account covers
SENT = 100


# below the last close 10.00: a buy rests and keeps its reservation
_order = partial(order_body, price="9.50")


def _risk_refusal(answer: Any) -> str:
    """The single reason of risk's own refusal (422 order_rejected: risk decided it, execution never saw it)."""
    body = answer.json()
    assert body["code"] == "order_rejected", body
    [reason] = body["decision"]["reasons"]
    return str(reason["code"])


async def test_100_concurrent_buys_reserve_exactly_the_cash_of_n(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One resting buy of 1,000 at 9.50 reserves 9,500.00 + commission 5.00 (0.025% = 2.375, minimum 5.00) + transfer
    # fee 0.10 (0.001% of 9,500.00 = 0.095, to the fen up) = 9,505.10. N = 37 of them: 351,688.70. The opening cash
    # is that plus 9,505.09, one fen short of a 38th.
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "361193.79")
    settings = backing.settings()
    ann = trader()
    async with fleet(settings) as f:
        answers = await asyncio.gather(
            *(f.risk.post("/v1/orders", json=_order(), headers=f.headers(ann)) for _ in range(SENT))
        )
        statuses = [a.status_code for a in answers]
        assert statuses.count(201) == N and statuses.count(422) == SENT - N, statuses
        assert [_risk_refusal(a) for a in answers if a.status_code == 422] == ["insufficient_cash"] * (SENT - N)
        assert all(a.json()["order"]["status"] in ("accepted", "submitted") for a in answers if a.status_code == 201)

        assert await f.store.count(orders, account_id=ann.account_id) == N
        account = (await f.execution.get("/v1/account", headers=f.headers(ann))).json()
        # reserved 37 x 9,505.10 = 351,688.70; available 361,193.79 - 351,688.70 = 9,505.09
        assert (account["balance"], account["reserved"], account["available"]) == (
            "361193.79",
            "351688.70",
            "9505.09",
        )
        # risk's own book says the same
        view = await f.risk_app.state.keeper.view(ann.account_id, date.fromisoformat(now_session()))
        assert view is not None
        assert (view.balance_fen, view.reserved_fen, view.available_fen) == (36119379, 35168870, 950509)
        await settle(f)


async def test_100_concurrent_sells_sell_exactly_the_sellable_shares(backing: Backing) -> None:
    settings = backing.settings()
    bob = trader()
    async with fleet(settings) as f:
        # N x 100 = 3,700 shares bought at the close (filled at once), then moved to the previous session (T+1).
        bought = await f.risk.post("/v1/orders", json=_order(qty=N * 100, price="10.00"), headers=f.headers(bob))
        assert bought.status_code == 201 and bought.json()["order"]["status"] == "filled"
        assert bob.account_id is not None
        await trades_were_yesterday(f, bob.account_id)

        sells = [_order(side="sell", qty=100, price="10.50") for _ in range(SENT)]  # above the close: they rest
        answers = await asyncio.gather(*(f.risk.post("/v1/orders", json=s, headers=f.headers(bob)) for s in sells))
        statuses = [a.status_code for a in answers]
        assert statuses.count(201) == N and statuses.count(422) == SENT - N, statuses
        assert [_risk_refusal(a) for a in answers if a.status_code == 422] == ["insufficient_position"] * (SENT - N)

        assert await f.store.count(orders, account_id=bob.account_id, side="sell") == N
        positions = held((await f.execution.get("/v1/positions", headers=f.headers(bob))).json())
        assert positions == [{"ts_code": "600000.SH", "qty": 3700, "sellable_qty": 0}]
        assert all(p["qty"] >= 0 and p["sellable_qty"] >= 0 for p in positions)
        view = await f.risk_app.state.keeper.view(bob.account_id, date.fromisoformat(now_session()))
        assert view is not None
        holding = view.holdings["600000.SH"]
        assert (holding.qty, holding.sellable_qty) == (3700, 0)
        await settle(f)
