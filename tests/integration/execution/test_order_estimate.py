"""`GET /v1/orders/estimate`, the order ticket's figures, against the real MariaDB: the amount, the fees (the trades'
rule: commission 0.025% with its 5.00 minimum, transfer fee 0.001%, stamp duty 0.05% on sells since 2023-08-28, each
rounded half-up to the fen) and the most shares an order may take (a buy: what the available cash pays for with
fees, on the code's lot; a sell: the sellable shares). Every figure is worked out by hand in the comments."""

from typing import Any

import pytest

from shared.platform.internal_auth import Principal
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


async def _estimate(f: Fleet, principal: Principal, **params: Any) -> Any:
    return await f.execution.get("/v1/orders/estimate", params=params, headers=f.headers(principal))


async def _ok(f: Fleet, principal: Principal, **params: Any) -> dict[str, Any]:
    response = await _estimate(f, principal, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_buy_and_a_sell_are_priced_with_the_trades_fees_and_sized_to_the_cash_and_the_shares(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "50000")
    settings = backing.settings()
    ana = trader()
    async with fleet(settings) as f:
        buy = await _ok(f, ana, ts_code="600000.SH", side="buy", price="10.00", qty=1000)
        # 1,000 x 10.00 = 10,000.00; commission 10,000 x 0.025% = 2.50 -> the 5.00 minimum; transfer fee
        # 10,000 x 0.001% = 0.10; no stamp duty on a buy: 5.10.
        assert buy["account_id"] == ana.account_id
        assert (buy["price"], buy["price_basis"], buy["qty"], buy["amount"]) == ("10.00", "price", 1000, "10000.00")
        assert buy["fees"] == {"commission": "5.00", "transfer_fee": "0.10", "stamp_duty": "0.00", "total": "5.10"}
        # 50,000.00 at 10.00: 5,000 shares cost 50,000 + 12.50 + 0.50 = 50,013.00, too much; 4,900 cost
        # 49,000 + 12.25 + 0.49 = 49,012.74.
        assert (buy["max_qty"], buy["available"]) == (4900, "50000.00")

        sell = await _ok(f, ana, ts_code="600000.SH", side="sell", price="10.00", qty=1000)
        # the same 5.10 and stamp duty 10,000 x 0.05% = 5.00: 10.10; nothing held, nothing to sell
        assert sell["fees"] == {"commission": "5.00", "transfer_fee": "0.10", "stamp_duty": "5.00", "total": "10.10"}
        assert sell["max_qty"] == 0

        # A larger amount: 3,300 x 12.34 = 40,722.00; commission 10.1805 -> 10.18; transfer 0.40722 -> 0.41;
        # stamp duty 20.361 -> 20.36; total 30.95.
        big = await _ok(f, ana, ts_code="600000.SH", side="sell", price="12.34", qty=3300)
        assert big["amount"] == "40722.00"
        assert big["fees"] == {"commission": "10.18", "transfer_fee": "0.41", "stamp_duty": "20.36", "total": "30.95"}

        # No quantity: the most shares only.
        bare = await _ok(f, ana, ts_code="600000.SH", side="buy", price="10.00")
        assert (bare["amount"], bare["fees"], bare["max_qty"]) == (None, None, 4900)

        # Bought 1,000 at 10.00 yesterday (10,005.10 paid): sellable 1,000; the cash left 39,994.90 buys, at 10.00,
        # 3,900 shares (39,000 + 9.75 + 0.39 = 39,010.14), not 4,000 (40,000 + 10.00 + 0.40 = 40,010.40).
        placed = await f.execution.post("/v1/orders", json=signed_order(f.settings, limit_buy(ana)),
                                        headers=f.headers(ana))  # fmt: skip
        assert placed.json()["status"] == "filled"
        await trades_were_yesterday(f, ana.account_id)
        assert (await _ok(f, ana, ts_code="600000.SH", side="sell", price="10.00"))["max_qty"] == 1000
        after = await _ok(f, ana, ts_code="600000.SH", side="buy", price="10.00")
        assert (after["max_qty"], after["available"]) == (3900, "39994.90")
        await settle(f)


async def test_a_star_buy_needs_200_shares_then_goes_share_by_share_and_a_market_buy_is_sized_at_the_limit_up(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "20000")
    settings = backing.settings()
    bo = trader()
    async with fleet(settings) as f:
        # 688981.SH (STAR) at 50.00 with 20,000.00: 400 shares cost 20,000 + 5.00 + 0.20 = 20,005.20, too much; 399
        # cost 19,950 + 5.00 (4.9875 -> 4.99 under the minimum) + 0.20 (0.1995) = 19,955.20: 399, not a lot of 100.
        star = await _ok(f, bo, ts_code="688981.SH", side="buy", price="50.00")
        assert star["max_qty"] == 399
        # at 99.00: 202 shares cost 19,998 + 5.00 + 0.20 = 20,003.20, too much; 201: 19,899 + 5.00 + 0.20 = 19,904.20
        assert (await _ok(f, bo, ts_code="688981.SH", side="buy", price="99.00"))["max_qty"] == 201
        # at 100.00: 200 shares cost 20,000 + 5.00 + 0.20: not even the 200-share minimum
        assert (await _ok(f, bo, ts_code="688981.SH", side="buy", price="100.00"))["max_qty"] == 0
        # the main board at 10.00: 2,000 cost 20,005.20; 1,900 cost 19,000 + 5.00 + 0.19 = 19,005.19
        assert (await _ok(f, bo, ts_code="600000.SH", side="buy", price="10.00"))["max_qty"] == 1900

        # A market buy (no price) of 600000.SH: at its limit-up 11.00, the price its cash would be reserved at.
        # 20,000 / 11 = 1,818 -> 1,800 shares: 19,800 + 5.00 (4.95) + 0.20 (0.198) = 19,805.20.
        market = await _ok(f, bo, ts_code="600000.SH", side="buy", qty=1800)
        assert (market["price"], market["price_basis"], market["amount"]) == ("11.00", "limit_up", "19800.00")
        assert market["fees"] == {"commission": "5.00", "transfer_fee": "0.20", "stamp_duty": "0.00", "total": "5.20"}
        assert market["max_qty"] == 1800
        # a sell without a price: no amount, the sellable shares (none)
        sell = await _ok(f, bo, ts_code="600000.SH", side="sell", qty=100)
        assert (sell["price"], sell["amount"], sell["fees"], sell["max_qty"]) == (None, None, None, 0)
        await settle(f)


async def test_bad_input_is_refused_with_its_field_and_accounts_are_a_persons_own(backing: Backing) -> None:
    settings = backing.settings()
    cy, dee = trader(), trader()
    async with fleet(settings) as f:
        for params, field in [
            ({"ts_code": "600000.SH", "side": "buy", "price": "10.001"}, "price"),  # off the 0.01 tick
            ({"ts_code": "600000.SH", "side": "buy", "price": "0"}, "price"),
            ({"ts_code": "600000.SH", "side": "buy", "price": "ten"}, "price"),
            ({"ts_code": "600000.SH", "side": "hold", "price": "10.00"}, "side"),
            ({"ts_code": "600000.SH", "side": "buy", "price": "10.00", "qty": 0}, "qty"),
            ({"ts_code": "600000", "side": "buy", "price": "10.00"}, "ts_code"),
            ({"side": "buy", "price": "10.00"}, "ts_code"),
        ]:
            response = await _estimate(f, cy, **params)
            assert response.status_code == 422, (params, response.text)
            body = response.json()
            assert body["code"] == "invalid_request"
            assert [d["field"] for d in body["details"]] == [field], params

        unknown = await _estimate(f, cy, ts_code="600999.SH", side="buy", price="10.00")
        assert unknown.status_code == 422
        assert (unknown.json()["code"], unknown.json()["details"]) == ("unknown_security", {"field": "ts_code"})

        # a person sees the own account only; an admin names any account seen (and none never seen)
        await _ok(f, dee, ts_code="600000.SH", side="buy", price="10.00")  # opens dee's account
        other = await _estimate(f, cy, ts_code="600000.SH", side="buy", price="10.00", account_id=dee.account_id)
        assert (other.status_code, other.json()["code"]) == (403, "forbidden")
        named = await _ok(f, ADMIN, ts_code="600000.SH", side="buy", price="10.00", account_id=dee.account_id)
        assert named["account_id"] == dee.account_id
        never = await _estimate(f, ADMIN, ts_code="600000.SH", side="buy", price="10.00", account_id="acct-nobody-x")
        assert (never.status_code, never.json()["code"]) == (404, "account_not_found")
