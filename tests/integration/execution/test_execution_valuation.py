"""Positions valued, the account summed up, and transaction cost analysis, on the real MariaDB and RabbitMQ (the
order-path fleet, its fake data service given the live reads: `GET /v1/quotes/live` and the minute bars). Orders are
filled by the paper broker at the latest close (10.00); every figure is worked out by hand below.

Fees by hand (shared/core/market/rules.py's schedule): commission 0.025% with a 5.00 minimum, transfer fee 0.001%,
stamp duty 0.05% on sells. A buy of 1,000 at 10.00: 5.00 + 0.10 = 5.10. A buy of 100 at 10.00: 5.00 + 0.01 = 5.01.
A sell of 400 at 10.00 (4,000.00): 5.00 + 0.04 + 2.00 = 7.04."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import update

from services.execution.store import trades
from services.execution.tca import NO_BARS
from shared.platform.clock import EXCHANGE_TZ, utcnow
from shared.platform.events.envelope import make_event
from shared.platform.events.schemas import LiveQuote, QuotesSnapshot
from shared.platform.internal_auth import Principal
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    FakeDataService,
    Fleet,
    fleet,
    limit_buy,
    settle,
    signed_order,
    trader,
    until,
)

pytestmark = pytest.mark.integration

CODE, ST_CODE = "600000.SH", "600001.SH"
LAST_CLOSE_AT = datetime(2024, 12, 31, 7, tzinfo=UTC)  # the fake data's last close: 15:00 of 2024-12-31 in Shanghai


class LiveReads:
    """The data service's live reads on the fleet's fake data service: quotes by code and minute bars by code."""

    def __init__(self, data: FakeDataService) -> None:
        self.quotes: dict[str, dict[str, Any]] = {}
        self.bars: dict[str, list[dict[str, Any]]] = {}
        self.asked: list[str] = []
        app = data.app
        before = len(app.router.routes)

        @app.get("/v1/quotes/live")
        async def live(request: Request, codes: str) -> JSONResponse:
            self.asked.append(codes)
            wanted = sorted(set(codes.split(",")))
            found = [self.quotes[c] for c in wanted if c in self.quotes]
            return JSONResponse({"quotes": found, "missing": [c for c in wanted if c not in self.quotes]})

        @app.get("/v1/quotes/{ts_code}/bars")
        async def bars(ts_code: str, day: str, freq: str = "1m") -> JSONResponse:
            return JSONResponse({"ts_code": ts_code, "freq": freq, "day": day, "bars": self.bars.get(ts_code, [])})

        # ahead of the fake's /v1/quotes/{ts_code}, as the data service orders them
        added = app.router.routes[before:]
        del app.router.routes[before:]
        app.router.routes[0:0] = added

    def quote(self, code: str, last: str, pre_close: str, at: datetime) -> None:
        self.quotes[code] = {"ts_code": code, "time": at.isoformat(), "last": last, "pre_close": pre_close,
                             "as_of": at.isoformat(), "age_s": 0.0}  # fmt: skip


RISK = Principal("svc:risk", "service")  # forwards a strategy instance's orders


async def _submit(f: Fleet, principal: Principal, *, sender: Principal | None = None, **terms: Any) -> dict[str, Any]:
    answer = await f.execution.post(
        "/v1/orders",
        json=signed_order(f.settings, limit_buy(principal, **terms)),
        headers=f.headers(sender or principal),
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _get(f: Fleet, principal: Principal, path: str, **params: Any) -> Any:
    answer = await f.execution.get(path, params=params, headers=f.headers(principal))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _traded_a_week_ago(f: Fleet, account_id: str) -> None:
    """Move the account's trades a week back: not today's, and sellable (T+1) whatever the time of the run."""
    async with f.store.db.session() as s:
        await s.execute(
            update(trades).where(trades.c.account_id == account_id).values(traded_at=utcnow() - timedelta(days=7))
        )


async def test_positions_and_the_account_at_the_last_close_then_at_the_live_quote(backing: Backing) -> None:
    ann = trader()
    async with fleet(backing.settings()) as f:
        live = LiveReads(f.data)
        assert (await _submit(f, ann, price="10.50"))["status"] == "filled"  # 1,000 at the close, 10.00
        start = (await _get(f, ann, "/v1/account"))["balance"]
        live.asked.clear()
        # no live quote: valued at the last close; bought today for 10,000.00 + 5.10
        [p] = await _get(f, ann, "/v1/positions")
        assert (p["qty"], p["sellable_qty"], p["frozen_qty"], p["today_buy_qty"], p["today_sell_qty"]) == (
            1000, 0, 0, 1000, 0,
        )  # fmt: skip
        assert (p["cost_basis"], p["avg_cost"], p["last_price"]) == ("10005.10", "10.0051", "10.00")
        assert (p["price_source"], datetime.fromisoformat(p["price_as_of"])) == ("last_close", LAST_CLOSE_AT)
        assert (p["market_value"], p["unrealised_pnl"], p["realised_pnl"], p["pnl_today"]) == (
            "10000.00", "-5.10", "0.00", "-5.10",
        )  # fmt: skip
        assert live.asked == [CODE]  # the positions' prices in one read

        # a live quote: 10.50, pre_close 10.20. Bought today, so today's P&L is from the price paid: 10,500.00 -
        # 10,005.10 = 494.90, the same as unrealised
        live.quote(CODE, "10.50", "10.20", utcnow() - timedelta(seconds=1))
        [p] = await _get(f, ann, "/v1/positions")
        assert (p["price_source"], p["last_price"], p["market_value"]) == ("live", "10.50", "10500.00")
        assert (p["unrealised_pnl"], p["pnl_today"]) == ("494.90", "494.90")

        # the buy was yesterday: 1,000 held since then; sell 400 at 10.00 (fees 7.04) and rest a sell of 100 at
        # 10.60 (above the close: it waits, and freezes 100)
        await _traded_a_week_ago(f, ann.account_id)
        assert (await _submit(f, ann, side="sell", qty=400, price="10.00"))["status"] == "filled"
        assert (await _submit(f, ann, side="sell", qty=100, price="10.60"))["status"] == "submitted"
        [p] = await _get(f, ann, "/v1/positions")
        # the sell takes out 10,005.10 x 400 / 1,000 = 4,002.04 of the cost: realised 4,000.00 - 7.04 - 4,002.04
        assert (p["qty"], p["sellable_qty"], p["frozen_qty"], p["today_buy_qty"], p["today_sell_qty"]) == (
            600, 500, 100, 0, 400,
        )  # fmt: skip
        assert (p["cost_basis"], p["realised_pnl"]) == ("6003.06", "-9.08")
        # 600 x 10.50 = 6,300.00; unrealised 6,300.00 - 6,003.06 = 296.94; today 6,300.00 - 1,000 x 10.20
        # + (4,000.00 - 7.04) = 92.96: 600 up 0.30 (180.00), 400 sold 0.20 under the pre_close (-80.00), fees 7.04
        assert (p["market_value"], p["unrealised_pnl"], p["pnl_today"]) == ("6300.00", "296.94", "92.96")

        account = await _get(f, ann, "/v1/account")
        balance = Decimal(start) + Decimal("3992.96")  # the sell's 4,000.00 less 7.04
        assert account["balance"] == str(balance)
        assert (account["market_value"], account["total_assets"]) == ("6300.00", str(balance + Decimal("6300.00")))
        assert (account["realised_pnl"], account["unrealised_pnl"], account["pnl_total"], account["pnl_today"]) == (
            "-9.08", "296.94", "287.86", "92.96",
        )  # fmt: skip
        assert account["unpriced"] == []

        # the data service's live reads failing: the last close again, and the account still answers its cash
        f.data_transport.down_for.add(("GET", "/v1/quotes/live"))
        [p] = await _get(f, ann, "/v1/positions")
        assert (p["price_source"], p["last_price"], p["market_value"]) == ("last_close", "10.00", "6000.00")
        assert (await _get(f, ann, "/v1/account"))["balance"] == str(balance)
        await settle(f)


async def _published_quote(f: Fleet, code: str, last: str, at: datetime) -> None:
    quote = LiveQuote(ts_code=code, time=at.astimezone(EXCHANGE_TZ), last=Decimal(last), open=Decimal(last),
                      high=Decimal(last), low=Decimal(last), pre_close=Decimal("10.00"), volume=1000,
                      amount=Decimal(last) * 1000, bid=(), ask=(), limit_up=Decimal("11.00"),
                      limit_down=Decimal("9.00"), source="bridge")  # fmt: skip
    payload = QuotesSnapshot(as_of=quote.time, source="bridge", quotes=(quote,))
    await f.execution_bus.publish(make_event("quotes.snapshot", payload, source="data"))
    held = f.execution_app.state.desk.held_quotes
    await until(lambda: held.get(code) is not None and held.get(code).last == Decimal(last), what="the quote held")


def _minute_bars(first: datetime) -> list[dict[str, Any]]:
    """Bars at 9.00 before and after the order's minutes, and at 10.10 over them (its minute and the two after:
    the order is created and filled within them): the interval's VWAP is 10.10 whichever they are."""
    bars = []
    for i in range(-3, 6):
        price = "10.10" if 0 <= i <= 2 else "9.00"
        minute = first + timedelta(minutes=i)
        bars.append({"ts_code": CODE, "minute": minute.isoformat(), "open": price, "high": price, "low": price,
                     "close": price, "volume": 100, "amount": str(Decimal(price) * 100)})  # fmt: skip
    return bars


async def test_cost_analysis_of_filled_orders(backing: Backing) -> None:
    bo = trader()
    async with fleet(backing.settings()) as f:
        live = LiveReads(f.data)
        await _published_quote(f, CODE, "10.02", utcnow() - timedelta(seconds=1))
        minute = utcnow().astimezone(EXCHANGE_TZ).replace(second=0, microsecond=0)
        live.bars[CODE] = _minute_bars(minute)
        first = await _submit(f, bo, price="10.50")  # arrives at the live 10.02, fills at 10.00
        second = await _submit(f, bo, ts_code=ST_CODE, qty=100, price="10.00")  # no live quote: the last close
        assert (first["status"], second["status"]) == ("filled", "filled")

        analysed = await _get(f, bo, "/v1/tca/orders")
        assert [a["order_id"] for a in analysed] == [first["order_id"], second["order_id"]]
        one, two = analysed
        assert (one["arrival_price"], one["arrival_source"]) == ("10.02", "live")
        assert (one["filled_qty"], one["filled_amount"], one["fill_vwap"], one["fees"]) == (
            1000, "10000.00", "10.0000", "5.10",
        )  # fmt: skip
        # 10,000.00 - 10.02 x 1,000 = -20.00 (a buy below arrival: a gain); -2,000 / 1,002,000 x 10,000 = -19.96
        assert (one["slippage_vs_arrival"], one["slippage_vs_arrival_bps"]) == ("-20.00", "-19.96")
        # the market traded at 10.10 over the order's minutes: -100.00, -10,000 / 1,010,000 x 10,000 = -99.01
        assert (one["interval_vwap"], one["slippage_vs_interval"], one["slippage_vs_interval_bps"]) == (
            "10.1000", "-100.00", "-99.01",
        )  # fmt: skip
        assert one["fees_bps"] == "5.10" and one["interval_note"] is None
        assert (two["arrival_price"], two["arrival_source"], datetime.fromisoformat(two["arrival_at"])) == (
            "10.00", "last_close", LAST_CLOSE_AT,
        )  # fmt: skip
        assert (two["slippage_vs_arrival"], two["slippage_vs_arrival_bps"]) == ("0.00", "0.00")
        assert (two["interval_vwap"], two["interval_note"]) == (None, NO_BARS)
        # fees 5.01 on 1,000.00: 50.10 bps
        assert two["fees_bps"] == "50.10"

        day = datetime.now(UTC).astimezone(EXCHANGE_TZ).date().isoformat()
        summary = await _get(f, bo, "/v1/tca/summary", by="day")
        [group] = summary["groups"]
        # (-20.00 + 0.00) / (10,020.00 + 1,000.00) x 10,000 = -18.1488... -> -18.15; the interval: the first only;
        # fees 10.11 on 11,000.00 = 9.1909... -> 9.19
        assert (group["key"], group["orders"], group["filled_orders"], group["arrival_orders"]) == (day, 2, 2, 2)
        assert (group["slippage_vs_arrival"], group["slippage_vs_arrival_bps"]) == ("-20.00", "-18.15")
        assert (group["interval_orders"], group["slippage_vs_interval_bps"]) == (1, "-99.01")
        assert (group["filled_amount"], group["fees"], group["fees_bps"]) == ("11000.00", "10.11", "9.19")
        assert summary["total"]["slippage_vs_arrival_bps"] == "-18.15" and summary["truncated"] is False
        # a strategy instance's order: sold 100 of the first buy's at the close, 10.00, arriving at the live 10.02:
        # 10.02 x 100 - 1,000.00 = +2.00 (got less), 200 / 100,200 x 10,000 = 19.96
        instance = "0123456789abcdef0123456789abcdef"
        await _traded_a_week_ago(f, bo.account_id)
        third = await _submit(f, bo, side="sell", qty=100, price="10.00", strategy_instance_id=instance, sender=RISK)
        assert third["status"] == "filled"
        by_instance = await _get(f, bo, "/v1/tca/summary", by="instance")
        assert [(g["key"], g["orders"], g["slippage_vs_arrival_bps"]) for g in by_instance["groups"]] == [
            (None, 2, "-18.15"),  # people's orders
            (instance, 1, "19.96"),
        ]
        mine = await _get(f, bo, "/v1/tca/orders", strategy_instance_id=instance)
        assert [a["order_id"] for a in mine] == [third["order_id"]]
        # the days: all of them today; none from tomorrow
        today = datetime.now(UTC).astimezone(EXCHANGE_TZ).date()
        assert len(await _get(f, bo, "/v1/tca/orders", start=today.isoformat(), end=today.isoformat())) == 3
        assert await _get(f, bo, "/v1/tca/orders", start=(today + timedelta(days=1)).isoformat()) == []

        # one order, and another trader sees none of these
        assert [a["order_id"] for a in await _get(f, bo, "/v1/tca/orders", order_id=second["order_id"])] == [
            second["order_id"]
        ]
        assert await _get(f, trader(), "/v1/tca/orders") == []
        await settle(f)


@pytest.mark.parametrize(
    ("path", "params", "status", "code", "says"),
    [
        ("/v1/tca/summary", {"by": "week"}, 422, "invalid_request", "by"),
        ("/v1/tca/summary", {}, 422, "invalid_request", "by"),
        ("/v1/tca/orders", {"start": "2026-12-08", "end": "2026-12-07"}, 422, "invalid_range", "start"),
        ("/v1/tca/orders", {"start": "2026-13-01"}, 422, "invalid_request", "start"),
        ("/v1/tca/orders", {"limit": 0}, 422, "invalid_request", "limit"),
        ("/v1/tca/orders", {"account_id": "acct-someone-else"}, 403, "forbidden", "acct-someone-else"),
        ("/v1/positions", {"account_id": "acct-someone-else"}, 403, "forbidden", "acct-someone-else"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    backing: Backing, path: str, params: dict[str, Any], status: int, code: str, says: str
) -> None:
    cy = trader()
    async with fleet(backing.settings()) as f:
        answer = await f.execution.get(path, params=params, headers=f.headers(cy))
        assert answer.status_code == status, answer.text
        assert answer.json()["code"] == code and says in answer.text
