"""A client_order_id that execution refused (the account could not afford it when execution admitted it) is not
an approval to replay: a later retry with it is decided afresh, every check again."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from services.risk.state.ports import BookView, Reservation, Verdict
from services.risk.store import ExecutionOutcome
from shared.platform.internal_auth import Principal
from shared.platform.observability import new_id
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import fleet, quote, settle, trader, until

pytestmark = pytest.mark.integration
ADMIN = Principal("root", "admin", "acct-root")


class Rich:
    """Risk's book of the account lagging behind execution's (e.g. a withdrawal whose event has not arrived): it
    shows 9,999,999.99 CNY more than the account has."""

    def __init__(self, books: Any) -> None:
        self.books = books

    async def view(self, account_id: str, session: date, principal: Principal) -> BookView | None:
        seen = await self.books.view(account_id, session, principal)
        return None if seen is None else replace(seen, balance_fen=seen.balance_fen + 999_999_999)

    async def reserve(self, account_id: str, client_order_id: str, **kw: Any) -> Reservation:
        return Reservation(Verdict.RESERVED)

    async def release(self, account_id: str, client_order_id: str) -> None:
        await self.books.release(account_id, client_order_id)


async def _balance_at_least(f: Any, account_id: str, fen: int) -> bool:
    """Risk's book of the account shows the balance (a deposit reaches it as execution's cash.moved event)."""
    view = await f.risk_app.state.hot_book.view(account_id, date.today())
    return view is not None and view.balance_fen >= fen


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
        real_books = desk.books
        desk.books = Rich(real_books)
        # Risk approves; execution refuses: 1,000 x 10.00 = 10,000.00 + 5.00 commission (minimum) + 0.10 transfer fee = 10,005.10, 5,000.00 available.
        first = await f.risk.post("/v1/orders", json=_order("cid-1"), headers=f.headers(tom))
        assert (first.status_code, first.json()["code"]) == (422, "insufficient_cash")
        assert first.json()["decision"]["approved"] is True
        assert first.json()["details"] == {"needed": "10005.10", "available": "5000.00"}
        assert await desk.decisions.outcome(first.json()["decision"]["decision_id"]) is ExecutionOutcome.REFUSED
        desk.books = real_books

        # Later: the stock fell; 10.00 is above the next session's limit-up (9.35). Cash is no longer short.
        f.data.quotes["600000.SH"] = quote("600000.SH", "8.50", "9.35", "7.65")
        await f.data_changed()
        deposit = {"account_id": tom.account_id, "kind": "deposit", "amount": "20000.00", "idempotency_key": new_id()}
        assert (await f.execution.post("/v1/account/cash", json=deposit, headers=f.headers(ADMIN))).status_code == 201
        await until(lambda: _balance_at_least(f, tom.account_id, 2_500_000), what="risk's book has the deposit")

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
