"""The order-load benchmark's bookkeeping (bench/order_load.py): what counts as filled, refused or an error, and the
oversell check that reads an account back through the execution API finds each kind of oversell (cases worked out by
hand, served by a stub gateway)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from bench.order_load import Tally, classify, drive, oversells

ADMIN = {"Authorization": "Bearer admin"}


def answer(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (201, {"decision": {}, "order": {"status": "filled"}}, "ok"),
        (200, {"decision": {}, "order": {"status": "filled"}}, "ok"),  # a repeated client_order_id
        (201, {"order": {"status": "rejected", "reason": "insufficient_cash"}}, "refused:execution_insufficient_cash"),
        (201, {"order": {"status": "accepted"}}, "error:order_accepted"),  # not at the fill: not what is measured
        (
            422,
            {
                "code": "order_rejected",
                "decision": {"reasons": [{"code": "insufficient_position"}, {"code": "lot_size"}]},
            },
            "refused:insufficient_position+lot_size",
        ),
        (422, {"code": "insufficient_cash", "decision": {"reasons": []}}, "refused:insufficient_cash"),
        (422, {"code": "invalid_request"}, "error:http_422_invalid_request"),  # the bench's own mistake
        (503, {"code": "risk_unavailable"}, "error:http_503_risk_unavailable"),
        (429, {"code": "rate_limited"}, "error:http_429_rate_limited"),
    ],
)
def test_classify(status: int, body: Any, outcome: str) -> None:
    assert classify(answer(status, body)) == outcome


def test_drive_counts_each_outcome_and_stops_at_the_count() -> None:
    outcomes = {0: "ok", 1: "refused:insufficient_cash", 2: "error:http_500_x"}

    async def send(c: int, n: int) -> str:
        if c == 3:
            raise httpx.ConnectError("refused")
        return outcomes[n % 3]

    tally: Tally = asyncio.run(drive(4, send, duration_s=60, per_client=5))
    # clients 0-2 send n = 0..4: ok at n 0 and 3, refused at 1 and 4, an error at 2; client 3 fails 5 times
    assert tally.filled == 6
    assert tally.refused == {"insufficient_cash": 6}
    assert tally.errors == {"http_500_x": 3, "ConnectError": 5}
    assert len(tally.latencies_ms) == 20


def book(cash: dict[str, str], positions: list[dict[str, Any]], orders: list[dict[str, Any]]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["account_id"] == "A1"
        if request.url.path == "/api/v1/account":
            return answer(200, {"account_id": "A1", **cash})
        if request.url.path == "/api/v1/positions":
            return answer(200, positions)
        if request.url.path == "/api/v1/orders":
            return answer(200, orders)
        return answer(404, {})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def order(side: str, code: str, filled: int) -> dict[str, Any]:
    return {"order_id": f"o{filled}", "side": side, "ts_code": code, "filled_qty": filled,
            "status": "filled" if filled else "rejected"}  # fmt: skip


def check(cash: dict[str, str], positions: list[dict[str, Any]], orders: list[dict[str, Any]]) -> tuple[list[str], int]:
    async def go() -> tuple[list[str], int]:
        async with book(cash, positions, orders) as client:
            return await oversells(client, "http://gateway", ADMIN, "A1")

    return asyncio.run(go())


GOOD_CASH = {"balance": "100.00", "reserved": "0.00", "available": "100.00"}


def test_a_consistent_account_has_no_oversell() -> None:
    wrong, filled = check(
        GOOD_CASH,
        [{"ts_code": "600000.SH", "qty": 300, "sellable_qty": 0}],
        [order("buy", "600000.SH", 200), order("buy", "600000.SH", 100), order("sell", "600000.SH", 0)],
    )
    assert (wrong, filled) == ([], 2)


def test_negative_cash_is_an_oversell() -> None:
    wrong, _ = check({"balance": "-0.01", "reserved": "0", "available": "-5.00"}, [], [])
    assert wrong == ["A1: cash balance -0.01", "A1: cash available -5.00"]


def test_a_negative_or_oversold_position_is_an_oversell() -> None:
    wrong, filled = check(
        GOOD_CASH,
        [{"ts_code": "600000.SH", "qty": -100, "sellable_qty": 0}],
        [order("buy", "600000.SH", 100), order("sell", "600000.SH", 200)],
    )
    assert filled == 2
    assert sorted(wrong) == [
        "A1: 600000.SH qty -100 sellable 0",
        "A1: 600000.SH sold 200 of 100 bought",
    ]  # held -100 = 100 bought - 200 sold: consistent, yet oversold


def test_sellable_above_held_and_a_position_the_orders_do_not_explain() -> None:
    wrong, _ = check(
        GOOD_CASH,
        [{"ts_code": "600000.SH", "qty": 100, "sellable_qty": 200}, {"ts_code": "000001.SZ", "qty": 100,
                                                                     "sellable_qty": 0}],
        [order("buy", "600000.SH", 100)],
    )  # fmt: skip
    assert sorted(wrong) == [
        "A1: 000001.SZ held 100, bought 0 - sold 0",
        "A1: 600000.SH qty 100 sellable 200",
    ]
