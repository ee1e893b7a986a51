"""Execution's admission is the authority on shares and cash, against the real MariaDB: a sell is admitted only
within the sellable shares and a buy only within the available cash, checked under a per-account lock together
with the insert, so concurrent orders cannot spend the same shares or cash twice. The cash ledger: opening cash,
deposits and withdrawals, and every fill's amount and fees (stamp duty by date). Amounts worked out by hand."""

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from services.execution.store import cash_ledger, orders, refused_submissions, trades
from shared.platform.approval import OrderTerms
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
from tests.support.positions import held

pytestmark = pytest.mark.integration

ADMIN = Principal("root", "admin", "acct-root")
RISK = Principal("svc:risk", "service")


async def _submit(f: Fleet, principal: Principal, terms: OrderTerms) -> Any:
    return await f.execution.post("/v1/orders", json=signed_order(f.settings, terms), headers=f.headers(principal))


CASH = ("account_id", "currency", "balance", "reserved", "available")


async def _account(f: Fleet, principal: Principal) -> dict[str, Any]:
    """The account's cash fields (its summary: tests/integration/execution/test_execution_valuation.py)."""
    response = await f.execution.get("/v1/account", headers=f.headers(principal))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return {key: body[key] for key in CASH}


def _set_clock(f: Fleet, at: datetime) -> None:
    """The exchange day execution sees: for T+1 (the desk) and for the fills' dates (the paper broker)."""
    f.execution_app.state.desk.clock = lambda: at
    f.execution_app.state.broker.clock = lambda: at
    f.data.clock = lambda: at  # the latest quote's limits: for the session of an order placed at `at`


async def test_concurrent_sells_are_admitted_only_up_to_the_sellable_shares(backing: Backing) -> None:
    settings = backing.settings()
    olga = trader()
    async with fleet(settings) as f:
        assert (await _submit(f, olga, limit_buy(olga))).json()["status"] == "filled"  # 1,000 at 10.00
        await trades_were_yesterday(f, olga.account_id)

        # Eight sells of 200 at the same moment, each resting (limit 10.50 above the close of 10.00): only five
        # fit in the 1,000 sellable shares.
        sells = [limit_buy(olga, side="sell", qty=200, price="10.50") for _ in range(8)]
        answers = await asyncio.gather(*(_submit(f, olga, t) for t in sells))

        assert sorted(a.status_code for a in answers) == [201] * 5 + [422] * 3
        for refused in (a for a in answers if a.status_code == 422):
            body = refused.json()
            assert body["code"] == "insufficient_position"
            assert body["message"].startswith("cannot sell 200 shares of 600000.SH: 0 sellable now (held 1000;")
            assert body["details"] == {"held_qty": 1000, "sellable_qty": 0}
        assert {a.json()["status"] for a in answers if a.status_code == 201} == {"submitted"}
        # Nothing was stored for the refused ones: one buy and five sells, no refusal records.
        assert await f.store.count(orders, account_id=olga.account_id) == 6
        assert await f.store.count(refused_submissions, account_id=olga.account_id) == 0
        positions = held((await f.execution.get("/v1/positions", headers=f.headers(olga))).json())
        assert positions == [{"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 0}]
        await settle(f)


async def test_concurrent_buys_are_admitted_only_up_to_the_available_cash(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "50000")
    settings = backing.settings()
    pia = trader()
    async with fleet(settings) as f:
        # Each buy: 1,000 x 9.50 = 9,500.00, commission 2.375 -> the 5.00 minimum, transfer fee 0.095 -> 0.10:
        # 9,505.10 reserved while it rests (9.50 is below the close of 10.00). 5 x 9,505.10 = 47,525.50 fits in
        # 50,000.00; a sixth (57,030.60) does not.
        buys = [limit_buy(pia, price="9.50") for _ in range(8)]
        answers = await asyncio.gather(*(_submit(f, pia, t) for t in buys))

        assert sorted(a.status_code for a in answers) == [201] * 5 + [422] * 3
        for refused in (a for a in answers if a.status_code == 422):
            body = refused.json()
            assert body["code"] == "insufficient_cash"
            assert body["message"] == (
                "cannot buy 1000 shares of 600000.SH at up to 9.50: it needs 9505.10 CNY with fees, 2474.50 "
                "available (balance 50000.00, reserved by open buys 47525.50)"
            )
        assert await f.store.count(orders, account_id=pia.account_id) == 5
        assert await _account(f, pia) == {
            "account_id": pia.account_id,
            "currency": "CNY",
            "balance": "50000.00",
            "reserved": "47525.50",
            "available": "2474.50",
        }

        # Cancelling one releases its reservation: 2,474.50 + 9,505.10 = 11,979.60.
        first = next(a.json()["order_id"] for a in answers if a.status_code == 201)
        assert (await f.execution.post(f"/v1/orders/{first}/cancel", headers=f.headers(pia))).status_code == 200
        assert (await _account(f, pia))["available"] == "11979.60"
        await settle(f)


async def test_a_buy_beyond_the_available_cash_is_refused_and_stores_nothing(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "20000")
    settings = backing.settings()
    quinn = trader()
    async with fleet(settings) as f:
        # 2,000 x 10.00 = 20,000.00 + commission 5.00 + transfer fee 0.20 = 20,005.20 > 20,000.00.
        refused = await _submit(f, quinn, limit_buy(quinn, qty=2000))
        assert refused.status_code == 422
        assert refused.json()["code"] == "insufficient_cash"
        assert "it needs 20005.20 CNY with fees, 20000.00 available" in refused.json()["message"]
        assert await f.store.count(orders, account_id=quinn.account_id) == 0

        # 1,900 x 10.00 = 19,000.00 + 5.00 + 0.19 = 19,005.19: fits, and fills at the close of 10.00.
        bought = await _submit(f, quinn, limit_buy(quinn, qty=1900))
        assert bought.status_code == 201 and bought.json()["status"] == "filled"
        assert await _account(f, quinn) == {
            "account_id": quinn.account_id,
            "currency": "CNY",
            "balance": "994.81",
            "reserved": "0.00",
            "available": "994.81",
        }

        # A market buy reserves at the next session's limit-up price (11.00): 100 x 11.00 = 1,100.00 + 5.00 + 0.01
        # = 1,105.01 > 994.81, refused although it would fill at 10.00 today.
        market = await _submit(f, quinn, limit_buy(quinn, qty=100, order_type="market", price=None))
        assert market.status_code == 422 and market.json()["code"] == "insufficient_cash"
        assert "at up to 11.00: it needs 1105.01 CNY with fees, 994.81 available" in market.json()["message"]
        # A security whose next session has no price limit: a market buy has no cap to reserve cash at.
        f.data.quotes["600000.SH"] = {**f.data.quotes["600000.SH"], "limit_up": None, "limit_down": None}
        await f.data_changed()
        uncapped = await _submit(f, quinn, limit_buy(quinn, qty=100, order_type="market", price=None))
        assert uncapped.status_code == 422 and uncapped.json()["code"] == "price_cap_unknown"
        assert await f.store.count(orders, account_id=quinn.account_id) == 1
        await settle(f)


async def test_fills_move_cash_by_amount_and_fees_with_stamp_duty_by_date(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "200000")
    settings = backing.settings()
    rita = trader()
    async with fleet(settings) as f:
        assert (await _account(f, rita))["balance"] == "200000.00"

        # Thursday 2023-08-24, 10:00 in Shanghai: buy 10,000 at 10.00 = 100,000.00; commission 0.025% = 25.00,
        # transfer fee 0.001% = 1.00: -100,026.00.
        _set_clock(f, datetime(2023, 8, 24, 2, 0, tzinfo=UTC))
        assert (await _submit(f, rita, limit_buy(rita, qty=10000))).json()["status"] == "filled"
        assert (await _account(f, rita))["balance"] == "99974.00"

        # Friday 2023-08-25 (stamp duty 0.1%): sell 5,000 at 10.00 = 50,000.00; commission 12.50, stamp duty
        # 50.00, transfer fee 0.50: +49,937.00.
        _set_clock(f, datetime(2023, 8, 25, 2, 0, tzinfo=UTC))
        assert (await _submit(f, rita, limit_buy(rita, side="sell", qty=5000))).json()["status"] == "filled"
        assert (await _account(f, rita))["balance"] == "149911.00"

        # Monday 2023-08-28 (stamp duty halved to 0.05%): the same sell pays 25.00 stamp duty: +49,962.00.
        _set_clock(f, datetime(2023, 8, 28, 2, 0, tzinfo=UTC))
        assert (await _submit(f, rita, limit_buy(rita, side="sell", qty=5000))).json()["status"] == "filled"
        assert await _account(f, rita) == {
            "account_id": rita.account_id,
            "currency": "CNY",
            "balance": "199873.00",
            "reserved": "0.00",
            "available": "199873.00",
        }

        seen = (await f.execution.get("/v1/trades", headers=f.headers(rita))).json()
        assert sorted((t["side"], t["commission"], t["stamp_duty"], t["transfer_fee"]) for t in seen) == [
            ("buy", "25.00", "0.00", "1.00"),
            ("sell", "12.50", "25.00", "0.50"),
            ("sell", "12.50", "50.00", "0.50"),
        ]
        # filtered by security (the Market page's trade marks): all three are 600000.SH's, none another code's
        by_code = await f.execution.get("/v1/trades", params={"ts_code": "600000.SH"}, headers=f.headers(rita))
        assert sorted(t["trade_id"] for t in by_code.json()) == sorted(t["trade_id"] for t in seen)
        other = await f.execution.get("/v1/trades", params={"ts_code": "000001.SZ"}, headers=f.headers(rita))
        assert other.status_code == 200 and other.json() == []
        bad = await f.execution.get("/v1/trades", params={"ts_code": "600000"}, headers=f.headers(rita))
        assert bad.status_code == 422
        # One ledger entry per fill (and the opening cash), keyed by trade id.
        assert await f.store.count(cash_ledger, account_id=rita.account_id) == 4
        kinds = Counter(e.kind for e in await f.store.ledger(rita.account_id))
        assert kinds == {"opening": 1, "buy_fill": 1, "sell_fill": 2}
        await settle(f)


async def test_deposits_and_withdrawals_are_idempotent_and_for_admins_and_services(
    backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_PAPER_OPENING_CASH", "1000")
    settings = backing.settings()
    sam = trader()
    async with fleet(settings) as f:

        async def move(principal: Principal, **kw: Any) -> Any:
            body = {"account_id": sam.account_id, "kind": "deposit", "amount": "1234.56", "idempotency_key": "k1"}
            body.update(kw)
            return await f.execution.post("/v1/account/cash", json=body, headers=f.headers(principal))

        first = await move(ADMIN)
        assert first.status_code == 201, first.text
        assert first.json()["entry"]["amount"] == "1234.56" and first.json()["entry"]["kind"] == "deposit"
        assert first.json()["account"]["balance"] == "2234.56"  # 1,000.00 opening + 1,234.56
        again = await move(ADMIN)
        assert again.status_code == 200 and again.json()["entry"] == first.json()["entry"]
        assert (await _account(f, sam))["balance"] == "2234.56"

        clash = await move(ADMIN, amount="1.00")
        assert clash.status_code == 409 and clash.json()["code"] == "idempotency_key_conflict"
        assert (await move(sam, idempotency_key="k2")).status_code == 403  # a trader cannot mint cash
        invisible = ("k\u202e3", "k\u200b3", "k\u00853", "k 3", " ", "<k3>")  # bidi, zero-width, NEL, spaces, markup
        for bad in (
            {"amount": "0.001"},
            {"amount": "-5"},
            {"amount": "0"},
            {"kind": "gift"},
            {"idempotency_key": ""},
            *({"idempotency_key": key} for key in invisible),
            {"account_id": sam.account_id + "\u200b"},
            {"account_id": "\u202e" + sam.account_id},
        ):
            response = await move(ADMIN, **{**bad, "idempotency_key": bad.get("idempotency_key", "k3")})
            assert response.status_code == 422, bad
        too_much = await move(RISK, kind="withdrawal", amount="2234.57", idempotency_key="w1")
        assert too_much.status_code == 422 and too_much.json()["code"] == "insufficient_cash"
        assert too_much.json()["message"] == (
            "cannot withdraw 2234.57 CNY: 2234.56 available (balance 2234.56, reserved by open buys 0.00)"
        )
        out = await move(RISK, kind="withdrawal", amount="234.56", idempotency_key="w2")
        assert out.status_code == 201 and out.json()["entry"]["amount"] == "-234.56"
        assert (await _account(f, sam))["balance"] == "2000.00"
        assert await f.store.count(cash_ledger, account_id=sam.account_id) == 3  # opening, deposit, withdrawal

        # Who sees which account: one's own; services and admins may name any.
        other = await f.execution.get("/v1/account?account_id=acct-someone-else", headers=f.headers(sam))
        assert other.status_code == 403
        named = await f.execution.get(f"/v1/account?account_id={sam.account_id}", headers=f.headers(RISK))
        assert named.status_code == 200 and named.json()["available"] == "2000.00"
        await settle(f)


async def test_positions_split_the_summed_trades_at_the_previous_sessions_close_for_t_plus_one(
    backing: Backing,
) -> None:
    """The store sums an account's trades by code and side, split where the session of an order placed now begins:
    after the close of the trading day before it (15:00 in Shanghai; a trade at that close is that day's). Shares
    bought at that close are sellable now, shares bought a microsecond after it (an order placed after the close is
    for the next session, and so is what it buys) are not."""
    settings = backing.settings()
    olga = trader()
    close = datetime(2024, 3, 4, 7, 0, tzinfo=UTC)  # 2024-03-04 15:00 in Shanghai, a Monday
    async with fleet(settings) as f:
        _set_clock(f, datetime(2024, 3, 5, 2, 0, tzinfo=UTC))  # 10:00 in Shanghai on 2024-03-05: its session
        bought = {}
        for qty, at in ((1000, close - timedelta(days=2)), (500, close), (300, close + timedelta(microseconds=1))):
            answer = (await _submit(f, olga, limit_buy(olga, qty=qty))).json()
            assert answer["status"] == "filled"
            bought[answer["order_id"]] = at
        async with f.store.db.session() as s:
            for order_id, at in bought.items():
                await s.execute(update(trades).where(trades.c.order_id == order_id).values(traded_at=at))

        # Sellable: 1,000 + 500 bought before the session; held: 1,800. A sell of 400 fills (at the close, 10.00), one of
        # 200 at 10.50 rests and reserves its shares: held 1,400, sellable 1,500 - 400 - 200 = 900.
        sell = limit_buy(olga, side="sell", qty=400)
        assert (await _submit(f, olga, sell)).json()["status"] == "filled"
        rest = limit_buy(olga, side="sell", qty=200, price="10.50")
        assert (await _submit(f, olga, rest)).json()["status"] == "submitted"
        positions = held((await f.execution.get("/v1/positions", headers=f.headers(olga))).json())
        assert positions == [{"ts_code": "600000.SH", "qty": 1400, "sellable_qty": 900}]

        refused = await _submit(f, olga, limit_buy(olga, side="sell", qty=1000))
        assert refused.status_code == 422
        assert refused.json()["details"] == {"held_qty": 1400, "sellable_qty": 900}
        await settle(f)


async def test_a_retry_of_a_market_buy_is_answered_with_its_order_when_its_cap_cannot_be_priced_any_more(
    backing: Backing,
) -> None:
    """The look for the order a retry repeats is made under the account's lock, after the market buy's cap is priced;
    when the cap can no longer be priced (here: the next session has lost its limits), the retry is still answered
    with the order placed, not with the 422 a new market buy gets."""
    settings = backing.settings()
    sam = trader()
    async with fleet(settings) as f:
        terms = limit_buy(sam, qty=100, order_type="market", price=None)
        placed = await _submit(f, sam, terms)
        assert placed.status_code == 201 and placed.json()["status"] == "filled"
        f.data.quotes["600000.SH"] = {**f.data.quotes["600000.SH"], "limit_up": None, "limit_down": None}
        await f.data_changed()
        again = await _submit(f, sam, terms)  # a new approval for the same client_order_id: a client's retry
        assert again.status_code == 200 and again.json() == placed.json()
        other = await _submit(f, sam, limit_buy(sam, qty=100, order_type="market", price=None))
        assert other.status_code == 422 and other.json()["code"] == "price_cap_unknown"
        assert await f.store.count(orders, account_id=sam.account_id) == 1
        await settle(f)
