"""The paper broker on the real market clock (LH_PAPER_FILLS=session, the default): an order belongs to a session
(the day it is placed on until that day's 15:00 close, else the next trading day), rests until that session has
closed and its bar is in the data service, and is then matched on that bar by the backtest engine's rules: at the
open when it was placed before 09:30, at the close when it arrived during the session; what the bar does not fill
expires with the session. A paper account may refuse orders placed while the market is closed instead.

Risk and execution run as standalone mode runs them (test_execution_replay's harness) on a clock the test moves;
the data service is a fake whose latest quote says which sessions' bars are in. Amounts are worked out by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.platform.events import BarsUpdated, make_event
from shared.platform.internal_auth import Principal
from tests.integration.execution.order_path_harness import headers, limit_buy, quote, signed_order, trader
from tests.integration.execution.test_execution_replay import Replay, at, replay
from tests.support.positions import held as shares_held


class MovableClock:
    """The real clock (no replayed session), at a moment the test sets."""

    def __init__(self, moment: str) -> None:
        self.moment = datetime.fromisoformat(moment).astimezone(UTC)

    def set(self, moment: str) -> None:
        self.moment = datetime.fromisoformat(moment).astimezone(UTC)

    def now(self) -> datetime:
        return self.moment.astimezone(UTC)

    def session(self) -> date | None:
        return None


# The latest quotes as the data stood after the close of 2024-03-01 (a Friday): the bars of 2024-03-04 are not in.
BEFORE_0304 = {
    "600000.SH": quote("600000.SH", "9.80", "10.78", "8.82", last_trade_date="2024-03-01", next_trade_date="2024-03-04"),
    "000001.SZ": quote("000001.SZ", "12.00", "13.20", "10.80", last_trade_date="2024-03-01",
                       next_trade_date="2024-03-04"),
}  # fmt: skip
# ... after the 2024-03-04 bars are in (000001.SZ had none: suspended that day)
AFTER_0304 = {
    "600000.SH": quote("600000.SH", "10.50", "11.55", "9.45", last_trade_date="2024-03-04", next_trade_date="2024-03-05"),
    "000001.SZ": quote("000001.SZ", "12.00", "13.20", "10.80", last_trade_date="2024-03-01",
                       next_trade_date="2024-03-05", suspended=True),
}  # fmt: skip
AFTER_0305 = {
    **AFTER_0304,
    "000001.SZ": quote("000001.SZ", "12.20", "13.42", "10.98", last_trade_date="2024-03-05",
                       next_trade_date="2024-03-06"),
}  # fmt: skip


@asynccontextmanager
async def market(tmp_path: Path, moment: str, **settings: Any) -> AsyncIterator[tuple[Replay, MovableClock]]:
    clock = MovableClock(moment)
    async with replay(tmp_path, clock, paper_fills="session", **settings) as r:  # type: ignore[arg-type]
        bars_in(r, BEFORE_0304)
        yield r, clock


COMPLETE = {id(BEFORE_0304): "2024-03-01", id(AFTER_0304): "2024-03-04", id(AFTER_0305): "2024-03-05"}


def bars_in(r: Replay, quotes: dict[str, dict[str, Any]], *, complete_through: str | None = None) -> None:
    """The data service after an ingest: its latest quotes, and the newest day whose bars it holds in full (what its
    calendar says; by default that of the quotes)."""
    from tests.integration.execution import order_path_harness

    order_path_harness.QUOTES.clear()
    order_path_harness.QUOTES.update(quotes)
    r.data.complete_through = complete_through or COMPLETE[id(quotes)]
    # What risk and execution hold of the data service's reference data is confirmed before its next use, as after
    # the ingest's `bars.updated` (`announce`, which some tests send later or not at all, also wakes the day-order pass).
    for held in r.reference:
        held.invalidate()


@pytest.fixture(autouse=True)
def _restore_quotes() -> Any:
    from tests.integration.execution import order_path_harness

    saved = dict(order_path_harness.QUOTES)
    yield
    order_path_harness.QUOTES.clear()
    order_path_harness.QUOTES.update(saved)


async def announce(r: Replay, day: date) -> None:
    """A complete `bars.updated` for `day`, as the data service publishes after an ingest."""
    payload = BarsUpdated(trade_date=day, start_date=day, end_date=day, symbols=2, rows=2)
    await r.bus.publish(make_event("bars.updated", payload, source="data"))


async def order_of(r: Replay, who: Principal, order_id: str, until: str | None = None) -> dict[str, Any]:
    """The order as execution holds it; with `until`, once it has that status (the day-order pass runs in the
    background after a `bars.updated`), failing after 20 s."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        body: dict[str, Any] = await r.get(who, f"/v1/orders/{order_id}")
        if until is None or body["status"] == until:
            return body
        assert asyncio.get_running_loop().time() < deadline, f"still {body['status']}: {body}"
        await asyncio.sleep(0.05)


async def place(r: Replay, who: Principal, **order: Any) -> dict[str, Any]:
    placed = await r.place(who, **order)
    assert placed.status_code == 201, placed.text
    answer: dict[str, Any] = placed.json()["order"]
    return answer


LIMIT_BUY = {"ts_code": "600000.SH", "side": "buy", "order_type": "limit", "qty": 1000, "price": "10.50"}


async def test_an_order_before_the_open_rests_until_its_sessions_bar_then_fills_at_the_open(tmp_path: Path) -> None:
    ada = trader()
    async with market(tmp_path, "2024-03-04T09:20:00+08:00") as (r, clock):
        order = await place(r, ada, client_order_id="b-1", **LIMIT_BUY)
        assert (order["status"], order["filled_qty"]) == ("submitted", 0)
        assert order["reason"].startswith("awaiting: ") and "2024-03-04" in order["reason"]
        # its cash is held meanwhile: 1,000 x 10.50 = 10,500.00 + commission 2.625 -> 5.00 + transfer 0.105 -> 0.11
        assert (await r.get(ada, "/v1/account"))["reserved"] == "10505.11"

        # after the close, before the day's bars are in: the day-order pass must not expire it
        clock.set("2024-03-04T15:30:00+08:00")
        desk = r.execution._transport.app.state.desk  # type: ignore[attr-defined]
        await desk.expire_day_orders()
        assert (await order_of(r, ada, order["order_id"]))["status"] == "submitted"

        # the bars are in and announced: matched on 2024-03-04's bar at its open, 10.20 (placed before 09:30)
        bars_in(r, AFTER_0304)
        await announce(r, date(2024, 3, 4))
        filled = await order_of(r, ada, order["order_id"], until="filled")
        assert (filled["filled_qty"], filled["avg_fill_price"]) == (1000, "10.20")
        [trade] = await r.get(ada, "/v1/trades")
        # 10,200.00: commission 2.55 -> the 5.00 minimum; transfer fee 0.102 -> 0.10; no stamp duty on a buy
        assert (trade["amount"], trade["commission"], trade["transfer_fee"], trade["fees"]) == (
            "10200.00", "5.00", "0.10", "5.10"
        )  # fmt: skip
        assert trade["traded_at"] == at("2024-03-04", 9, 30)
        account = await r.get(ada, "/v1/account")
        assert (account["balance"], account["reserved"]) == ("9989794.90", "0.00")  # 10,000,000 - 10,205.10
        # T+1 by the session's date: sellable on 2024-03-05
        clock.set("2024-03-05T09:20:00+08:00")
        assert shares_held(await r.get(ada, "/v1/positions")) == [
            {"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 1000}
        ]


async def test_an_order_placed_during_the_session_fills_at_its_close(tmp_path: Path) -> None:
    bo = trader()
    async with market(tmp_path, "2024-03-04T10:00:00+08:00") as (r, clock):
        order = await place(r, bo, client_order_id="b-2", **LIMIT_BUY)
        clock.set("2024-03-04T16:00:00+08:00")
        bars_in(r, AFTER_0304)
        await announce(r, date(2024, 3, 4))
        # the open (10.20) had passed when it arrived: it trades at the close, 10.50, stamped 15:00
        filled = await order_of(r, bo, order["order_id"], until="filled")
        assert filled["avg_fill_price"] == "10.50"
        [trade] = await r.get(bo, "/v1/trades")
        assert trade["traded_at"] == at("2024-03-04", 15, 0)


async def test_on_a_bar_a_fok_the_volume_cap_would_cut_fills_nothing_and_a_best5_cancel_fills_what_it_may(
    tmp_path: Path,
) -> None:
    # A bar has no book: market types fill at its price, but fill-or-kill stays all or nothing. 000001.SZ has no bar
    # on 2024-03-04 (the orders wait) and trades on 2024-03-05: 800,000 shares, of which the volume cap 0.0005 lets
    # 800,000 x 0.0005 = 400 trade.
    fay = trader()
    async with market(tmp_path, "2024-03-04T09:00:00+08:00", paper_volume_cap="0.0005") as (r, clock):
        market_buy = {"ts_code": "000001.SZ", "side": "buy", "order_type": "market", "qty": 1000}
        fok = await place(r, fay, client_order_id="m-1", **market_buy, market_type="fok")
        cut = await place(r, fay, client_order_id="m-2", **market_buy, market_type="best5_cancel")
        assert (fok["market_type"], cut["market_type"]) == ("fok", "best5_cancel")
        clock.set("2024-03-04T15:30:00+08:00")
        bars_in(r, AFTER_0304)
        await announce(r, date(2024, 3, 4))
        clock.set("2024-03-05T15:30:00+08:00")
        bars_in(r, AFTER_0305)
        await announce(r, date(2024, 3, 5))
        killed = await order_of(r, fay, fok["order_id"], until="cancelled")
        assert killed["filled_qty"] == 0 and killed["reason"].startswith("fok_not_filled: 400 of 1000"), killed
        partial = await order_of(r, fay, cut["order_id"], until="cancelled")
        # 400 at the open 12.10 (it waited from before that session opened); the other 600 cancelled
        assert (partial["filled_qty"], partial["avg_fill_price"]) == (400, "12.10"), partial
        assert partial["reason"].startswith("volume_cap")


async def test_a_limit_the_sessions_bar_does_not_reach_expires_with_the_session(tmp_path: Path) -> None:
    cy = trader()
    async with market(tmp_path, "2024-03-04T09:20:00+08:00") as (r, clock):
        # a buy at 10.00 where 2024-03-04 opens at 10.20
        order = await place(r, cy, client_order_id="b-3", **{**LIMIT_BUY, "price": "10.00"})
        clock.set("2024-03-04T15:30:00+08:00")
        bars_in(r, AFTER_0304)
        await announce(r, date(2024, 3, 4))
        after = await order_of(r, cy, order["order_id"], until="cancelled")
        assert after["filled_qty"] == 0
        assert after["reason"] == "expired: a day order still open at the close of 2024-03-04 (15:00 Asia/Shanghai)"
        assert (await r.get(cy, "/v1/account"))["reserved"] == "0.00"
        assert await r.get(cy, "/v1/trades") == []


async def test_an_order_after_the_close_belongs_to_the_next_session(tmp_path: Path) -> None:
    di = trader()
    async with market(tmp_path, "2024-03-04T15:10:00+08:00") as (r, clock):
        # with the bars of 2024-03-04 in (the limits of 2024-03-05 are known: test_limits_of_the_next_session_...)
        bars_in(r, AFTER_0304)
        order = await place(r, di, client_order_id="b-4", **LIMIT_BUY)
        assert "2024-03-05" in order["reason"]
        desk = r.execution._transport.app.state.desk  # type: ignore[attr-defined]
        # after 2024-03-05's close with only 2024-03-04's bars in, the pass sees it and leaves it resting
        clock.set("2024-03-05T15:30:00+08:00")
        await desk.expire_day_orders()
        assert (await order_of(r, di, order["order_id"]))["status"] == "submitted"
        # with 2024-03-05's bars in it is matched on them, at that session's open 10.40 (placed before it opened)
        bars_in(r, AFTER_0305)
        await desk.expire_day_orders()
        filled = await order_of(r, di, order["order_id"], until="filled")
        assert filled["avg_fill_price"] == "10.40"


async def test_a_session_still_being_ingested_is_not_matched(tmp_path: Path) -> None:
    ingest = trader()
    async with market(tmp_path, "2024-03-04T09:20:00+08:00") as (r, clock):
        order = await place(r, ingest, client_order_id="b-9", **LIMIT_BUY)
        clock.set("2024-03-04T16:00:00+08:00")
        # the ingest has written some of 2024-03-04's bars (the quotes see the day) but has not finished it
        bars_in(r, AFTER_0304, complete_through="2024-03-01")
        desk = r.execution._transport.app.state.desk  # type: ignore[attr-defined]
        await desk.expire_day_orders()
        assert (await order_of(r, ingest, order["order_id"]))["status"] == "submitted"
        bars_in(r, AFTER_0304)
        await desk.expire_day_orders()
        assert (await order_of(r, ingest, order["order_id"], until="filled"))["avg_fill_price"] == "10.20"


async def test_an_order_cannot_be_cancelled_once_its_price_is_set(tmp_path: Path) -> None:
    gus = trader()
    async with market(tmp_path, "2024-03-04T09:10:00+08:00") as (r, clock):
        early = await place(r, gus, client_order_id="b-10", **LIMIT_BUY)
        late = await place(r, gus, client_order_id="b-11", **LIMIT_BUY)
        # before 09:20 a cancel is taken
        cancel = await r.execution.post(f"/v1/orders/{early['order_id']}/cancel", headers=headers(r.settings, gus))
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled", cancel.text
        # from 09:20 the opening call's price is being set: the open fill it waits for cannot be withdrawn
        clock.set("2024-03-04T09:21:00+08:00")
        refused = await r.execution.post(f"/v1/orders/{late['order_id']}/cancel", headers=headers(r.settings, gus))
        assert refused.status_code == 409 and refused.json()["code"] == "order_not_cancellable", refused.text
        assert "09:20" in refused.json()["message"]
        assert (await order_of(r, gus, late["order_id"]))["status"] == "submitted"


async def test_an_order_is_refused_when_the_calendar_has_no_session_ahead(tmp_path: Path) -> None:
    hal = trader()
    # the fake calendar knows only days up to the built-in calendar; far beyond it there is no trading day
    async with market(tmp_path, "2099-12-31T10:00:00+08:00") as (r, _):
        refused = await r.place(hal, client_order_id="b-12", **LIMIT_BUY)
        assert refused.status_code == 422, refused.text
        [reason] = refused.json()["decision"]["reasons"]
        assert reason["code"] == "no_session"
        assert "no trading day after 2099-12-31 10:00 (Asia/Shanghai)" in reason["message"]
        # execution refuses it too (an approval of it, as risk would have signed), storing nothing
        body = signed_order(r.settings, limit_buy(hal, client_order_id="b-12", price="10.50"))
        direct = await r.execution.post("/v1/orders", json=body, headers=headers(r.settings, hal))
        assert (direct.status_code, direct.json()["code"]) == (422, "no_session"), direct.text
        assert await r.get(hal, "/v1/orders") == []
        assert (await r.get(hal, "/v1/account"))["reserved"] == "0.00"


async def test_a_suspended_symbols_order_waits_for_the_next_session_it_trades(tmp_path: Path) -> None:
    ed = trader()
    async with market(tmp_path, "2024-03-04T09:00:00+08:00") as (r, clock):
        order = await place(r, ed, client_order_id="b-5", ts_code="000001.SZ", side="buy", order_type="limit",
                            qty=100, price="12.50")  # fmt: skip
        clock.set("2024-03-04T15:30:00+08:00")
        bars_in(r, AFTER_0304)
        await announce(r, date(2024, 3, 4))
        desk = r.execution._transport.app.state.desk  # type: ignore[attr-defined]
        await desk.expire_day_orders()
        waiting = await order_of(r, ed, order["order_id"])
        assert waiting["status"] == "submitted" and waiting["reason"].startswith("waiting: ")
        # 2024-03-05: it trades again, at its open 12.10 (it waited from before that session opened)
        clock.set("2024-03-05T15:30:00+08:00")
        bars_in(r, AFTER_0305)
        await announce(r, date(2024, 3, 5))
        filled = await order_of(r, ed, order["order_id"], until="filled")
        assert filled["avg_fill_price"] == "12.10"
        [trade] = await r.get(ed, "/v1/trades")
        assert trade["traded_at"] == at("2024-03-05", 9, 30)


async def test_an_account_may_refuse_orders_while_the_market_is_closed(tmp_path: Path) -> None:
    flo = trader()
    admin = Principal("root", "admin", "acct-root")
    # Saturday 2024-03-02: the market is closed; the next session is Monday 2024-03-04
    async with market(tmp_path, "2024-03-02T11:00:00+08:00") as (r, clock):
        rests = await place(r, flo, client_order_id="b-6", **LIMIT_BUY)
        assert rests["status"] == "submitted" and "2024-03-04" in rests["reason"]

        path = "/v1/account/paper-settings"
        assert await r.get(flo, path) == {"account_id": flo.account_id, "closed_market": "rest"}
        body = {"account_id": flo.account_id, "closed_market": "refuse"}
        # a trader may not change it; bad values and unknown fields are refused, changing nothing
        own: httpx.Response = await r.execution.post(path, json=body, headers=headers(r.settings, flo))
        assert own.status_code == 403, own.text
        for bad in ({**body, "closed_market": "sometimes"}, {**body, "extra": 1}):
            refused = await r.execution.post(path, json=bad, headers=headers(r.settings, admin))
            assert refused.status_code == 422, refused.text
        assert (await r.get(flo, path))["closed_market"] == "rest"
        changed = await r.execution.post(path, json=body, headers=headers(r.settings, admin))
        assert changed.status_code == 200 and changed.json() == body, changed.text

        refused_order = await place(r, flo, client_order_id="b-7", **LIMIT_BUY)
        assert refused_order["status"] == "rejected"
        assert refused_order["reason"].startswith("market_closed: ") and "2024-03-04" in refused_order["reason"]
        # during the session it is taken (and rests for the session's bar)
        clock.set("2024-03-04T09:20:00+08:00")
        taken = await place(r, flo, client_order_id="b-8", **LIMIT_BUY)
        assert taken["status"] == "submitted"


@pytest.mark.parametrize("page", [500, 1], ids=["one-page", "page-by-page"])
async def test_one_symbols_unusable_bar_does_not_hold_back_the_other_orders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    from services.execution import desk as desk_module
    from tests.integration.execution import test_execution_replay as harness

    # page by page: the order that keeps waiting fills the first page, and the pass still reaches the next
    monkeypatch.setattr(desk_module, "OPEN_ORDERS_PAGE", page)

    # 601398.SH's bar of 2024-03-04 comes with an open off the 0.01 tick: that one order cannot be matched
    monkeypatch.setitem(
        harness.BARS, ("601398.SH", "2024-03-04"), ("5.105", "5.20", "5.05", "5.15", 100_000, "513000.00")
    )
    icbc = quote("601398.SH", "5.00", "5.50", "4.50", last_trade_date="2024-03-01", next_trade_date="2024-03-04")
    ivy = trader()
    async with market(tmp_path, "2024-03-04T09:20:00+08:00") as (r, clock):
        bars_in(r, {**BEFORE_0304, "601398.SH": icbc}, complete_through="2024-03-01")
        bad = await place(r, ivy, client_order_id="b-13", ts_code="601398.SH", side="buy", order_type="limit",
                          qty=100, price="5.20")  # fmt: skip
        clock.set("2024-03-04T09:21:00+08:00")  # placed after it: the pass meets the bad one first
        good = await place(r, ivy, client_order_id="b-14", **LIMIT_BUY)
        clock.set("2024-03-04T16:00:00+08:00")
        bars_in(r, {**AFTER_0304, "601398.SH": icbc}, complete_through="2024-03-04")
        desk = r.execution._transport.app.state.desk  # type: ignore[attr-defined]
        await desk.expire_day_orders()
        # the order placed first waits for usable data; the one after it is matched all the same
        assert (await order_of(r, ivy, good["order_id"]))["status"] == "filled"
        assert (await order_of(r, ivy, bad["order_id"]))["status"] == "submitted"


async def test_an_instances_orders_are_matched_by_its_own_rules_on_their_sessions_bar(tmp_path: Path) -> None:
    eli = trader()
    strategy = Principal("svc:strategy", "service")
    own = {"fill_price": "close", "slippage": "none", "slippage_amount": "0", "volume_cap": None,
           "suspended_orders": "wait"}  # fmt: skip
    # The platform's rules here: VWAP (LH_PAPER_FILL_PRICE=vwap).
    async with market(tmp_path, "2024-03-04T09:20:00+08:00", paper_fill_price="vwap") as (r, clock):
        mine = await place(r, eli, client_order_id="p-1", **{**LIMIT_BUY, "qty": 100, "price": "10.60"})
        instance = r.strategy.add(eli.account_id)
        body = {**LIMIT_BUY, "qty": 100, "price": "10.60", "strategy_instance_id": instance}

        async def place_for_instance(cid: str, rules: dict[str, Any]) -> dict[str, Any]:
            sent = {**body, "client_order_id": f"{instance}-{cid}", "paper_fill": rules}
            placed = await r.risk.post("/v1/orders", json=r.strategy.order(sent), headers=headers(r.settings, strategy))
            assert placed.status_code == 201, placed.text
            answer: dict[str, Any] = placed.json()["order"]
            assert answer["status"] == "submitted" and answer["reason"].startswith("awaiting: ")
            return answer

        at_close = await place_for_instance("1", own)  # before the open, by rules that say the close
        at_open = await place_for_instance("3", {**own, "fill_price": "open"})
        withdrawn = await place_for_instance("4", own)
        # 09:21: the opening call is setting the open, so the order its own rules fill at the open can no longer be
        # withdrawn; one its rules fill at the close can, until 14:57
        clock.set("2024-03-04T09:21:00+08:00")
        cancel = await r.execution.post(f"/v1/orders/{at_open['order_id']}/cancel", headers=headers(r.settings, eli))
        assert (cancel.status_code, cancel.json()["code"]) == (409, "order_not_cancellable"), cancel.text
        cancel = await r.execution.post(f"/v1/orders/{withdrawn['order_id']}/cancel", headers=headers(r.settings, eli))
        assert (cancel.status_code, cancel.json()["status"]) == (200, "cancelled"), cancel.text
        # during the session, by rules that say the open and one tick of slippage: the open had been set, so the close
        clock.set("2024-03-04T10:00:00+08:00")
        late = await place_for_instance("2", {**own, "fill_price": "open", "slippage": "ticks", "slippage_amount": "1"})

        clock.set("2024-03-04T16:00:00+08:00")
        bars_in(r, AFTER_0304)
        await announce(r, date(2024, 3, 4))
        # 2024-03-04: open 10.20, close 10.50, VWAP 20,800,000.00 / 2,000,000 = 10.40
        person = await order_of(r, eli, mine["order_id"], until="filled")
        assert person["avg_fill_price"] == "10.40"
        assert (await order_of(r, eli, at_close["order_id"], until="filled"))["avg_fill_price"] == "10.50"
        assert (await order_of(r, eli, at_open["order_id"], until="filled"))["avg_fill_price"] == "10.20"
        assert (await order_of(r, eli, late["order_id"], until="filled"))["avg_fill_price"] == "10.51"  # 10.50 + 0.01
        times = {t["order_id"]: t["traded_at"] for t in await r.get(eli, "/v1/trades")}
        assert times[at_close["order_id"]] == times[late["order_id"]] == at("2024-03-04", 15, 0)


# --- orders placed while the market is closed: for the next session, in every check ---------------------------------

SELL = {"ts_code": "600000.SH", "side": "sell", "order_type": "limit", "qty": 1000}


async def test_shares_bought_in_a_session_are_sellable_in_a_sell_placed_after_its_close(tmp_path: Path) -> None:
    """T+1 by the order's session: a sell placed at 14:00 on 2024-03-04 is for that session, in which the shares
    bought that morning cannot be sold; one placed at 20:00 is for 2024-03-05, in which they can (risk's check,
    execution's admission and the positions listing agree)."""
    jo = trader()
    clock = MovableClock("2024-03-04T10:00:00+08:00")
    # Fills at once at the latest close: the buy is a trade of 2024-03-04 10:00 (before its close).
    async with replay(tmp_path, clock, paper_fills="immediate") as r:  # type: ignore[arg-type]
        bars_in(r, BEFORE_0304)
        bought = await place(r, jo, client_order_id="t-1", **LIMIT_BUY)
        assert (bought["status"], bought["avg_fill_price"]) == ("filled", "9.80")  # 2024-03-01's close

        clock.set("2024-03-04T14:00:00+08:00")
        assert shares_held(await r.get(jo, "/v1/positions")) == [
            {"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 0}
        ]
        refused = await r.place(jo, client_order_id="t-2", **SELL, price="10.50")
        assert refused.status_code == 422, refused.text
        assert [x["code"] for x in refused.json()["decision"]["reasons"]] == ["insufficient_position"]
        body = signed_order(r.settings, limit_buy(jo, client_order_id="t-3", side="sell", price="10.50"))
        direct = await r.execution.post("/v1/orders", json=body, headers=headers(r.settings, jo))
        assert (direct.status_code, direct.json()["code"]) == (422, "insufficient_position"), direct.text
        assert direct.json()["details"] == {"held_qty": 1000, "sellable_qty": 0}

        # 20:00, with 2024-03-04's bars in (600000.SH closed at 10.50: 2024-03-05's limits 11.55 / 9.45)
        clock.set("2024-03-04T20:00:00+08:00")
        bars_in(r, AFTER_0304)
        assert shares_held(await r.get(jo, "/v1/positions")) == [
            {"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 1000}
        ]
        sold = await place(r, jo, client_order_id="t-4", **SELL, price="11.00")  # above 10.50: rests
        assert (sold["status"], sold["qty"]) == ("submitted", 1000)
        assert shares_held(await r.get(jo, "/v1/positions")) == [
            {"ts_code": "600000.SH", "qty": 1000, "sellable_qty": 0}
        ]
        # a strategy instance's order carries its sleeve as of the session it is sent for (the runner's book; here
        # 100 sellable in 2024-03-05); risk checks the account's shares sellable in that session too: the resting
        # sell holds all 1,000, so the account's check refuses it, the sleeve's passes (and risk asked nothing)
        instance = r.strategy.add(jo.account_id, positions=[{"ts_code": "600000.SH", "qty": 100, "sellable_qty": 100}])
        strategy = Principal("svc:strategy", "service")
        body = r.strategy.order({**SELL, "qty": 100, "price": "11.00", "client_order_id": f"{instance}-1",
                                 "strategy_instance_id": instance})  # fmt: skip
        body["sleeve"]["session"] = "2024-03-05"
        refused = await r.risk.post("/v1/orders", json=body, headers=headers(r.settings, strategy))
        assert refused.status_code == 422, refused.text
        assert [x["code"] for x in refused.json()["decision"]["reasons"]] == ["insufficient_position"]
        [decision] = [d for d in (await r.risk.get("/v1/decisions", headers=headers(r.settings, strategy))).json()
                      if d["strategy_instance_id"] == instance]  # fmt: skip
        assert decision["rule_check"]["sleeve"]["session"] == "2024-03-05"
        assert r.strategy.callers == []


async def test_the_limits_of_the_next_session_are_known_once_the_closed_sessions_bars_are_in(tmp_path: Path) -> None:
    """At 15:30 on 2024-03-04 an order is for 2024-03-05, whose price limits come from 2024-03-04's close: until
    that is stored, the latest quote carries 2024-03-04's own limits (from 2024-03-01's close, 9.80: 10.78 / 8.82),
    and risk refuses the order (`limits_unknown`) rather than check it against them; a market buy too, which
    execution refuses as well (it would reserve cash at another session's limit-up). Once they are in, the order is
    checked against 2024-03-05's limits."""
    kay = trader()
    async with market(tmp_path, "2024-03-04T15:30:00+08:00") as (r, _):
        refused = await r.place(kay, client_order_id="l-1", **LIMIT_BUY)
        assert refused.status_code == 422, refused.text
        [reason] = refused.json()["decision"]["reasons"]
        assert reason["code"] == "limits_unknown"
        assert "session 2024-03-05" in reason["message"] and "the close of 2024-03-04" in reason["message"]
        market_buy = {"ts_code": "600000.SH", "side": "buy", "order_type": "market", "qty": 100}
        refused = await r.place(kay, client_order_id="l-2", **market_buy)
        assert [x["code"] for x in refused.json()["decision"]["reasons"]] == ["limits_unknown"], refused.text
        terms = limit_buy(kay, client_order_id="l-3", order_type="market", qty=100, price=None)
        direct = await r.execution.post("/v1/orders", json=signed_order(r.settings, terms),
                                        headers=headers(r.settings, kay))  # fmt: skip
        assert (direct.status_code, direct.json()["code"]) == (422, "limits_unknown"), direct.text
        assert await r.get(kay, "/v1/orders") == []

        bars_in(r, AFTER_0304)
        # 2024-03-04 closed at 10.50: 2024-03-05's limits are 10.50 x 1.10 = 11.55 and 10.50 x 0.90 = 9.45 (main
        # board, 10%), not 2024-03-04's 10.78 / 8.82: a buy at 11.00 (above 10.78) is taken, one at 11.56 is not
        taken = await place(r, kay, client_order_id="l-4", **{**LIMIT_BUY, "price": "11.00"})
        assert taken["status"] == "submitted" and "2024-03-05" in taken["reason"]
        above = await r.place(kay, client_order_id="l-5", **{**LIMIT_BUY, "price": "11.56"})
        [reason] = above.json()["decision"]["reasons"]
        assert reason == {
            "code": "price_limit",
            "message": "price 11.56 is above the limit-up price 11.55 of the session on 2024-03-05",
        }
        below = await r.place(kay, client_order_id="l-6", **{**LIMIT_BUY, "price": "9.44"})
        assert [x["code"] for x in below.json()["decision"]["reasons"]] == ["price_limit"]
        assert "below the limit-down price 9.45" in below.json()["decision"]["reasons"][0]["message"]
        # a market buy reserves at 2024-03-05's limit-up: 100 x 11.55 = 1,155.00 + commission 5.00 (minimum) +
        # transfer fee 0.01155 -> 0.01 = 1,160.01, on top of the limit buy's 11,000.00 + 5.00 + 0.11 = 11,005.11
        capped = await place(r, kay, client_order_id="l-7", **market_buy)
        assert capped["status"] == "submitted"
        assert (await r.get(kay, "/v1/account"))["reserved"] == "12165.12"
        # seven orders on one day: the calendar's days were read once by execution (its desk and paper broker share
        # them) and once by risk, not once an order
        assert r.execution._transport.app.state.desk.order_sessions.reads == 1  # type: ignore[attr-defined]
        assert r.risk._transport.app.state.desk.sessions.reads == 1  # type: ignore[attr-defined]


# 600030.SH (test_execution_replay's bars): 10.00 on 2024-03-04; ex on 2024-03-05, 10 bonus shares per 10 held and
# 0.50 CNY a share, reference price 4.75, adj_factor 1 -> 2.105263; opens at 4.80.
CITIC_0304 = {"600030.SH": quote("600030.SH", "10.00", "11.00", "9.00", last_trade_date="2024-03-01",
                                 next_trade_date="2024-03-04")}  # fmt: skip
CITIC_0305 = {"600030.SH": quote("600030.SH", "10.00", "5.23", "4.28", last_trade_date="2024-03-04",
                                 next_trade_date="2024-03-05")}  # fmt: skip


async def test_an_ex_dates_shares_are_adjusted_once_its_bars_are_in_before_its_orders_are_matched(
    tmp_path: Path,
) -> None:
    cy = trader()
    async with market(tmp_path, "2024-03-04T09:20:00+08:00") as (r, clock):
        bars_in(r, CITIC_0304, complete_through="2024-03-01")
        bought = await r.submit(cy, ts_code="600030.SH", qty=400, price="10.50")
        clock.set("2024-03-04T16:00:00+08:00")
        bars_in(r, CITIC_0304, complete_through="2024-03-04")
        await announce(r, date(2024, 3, 4))
        assert (await order_of(r, cy, bought["order_id"], until="filled"))["avg_fill_price"] == "10.00"

        # the ex-date: before its bars are in, nothing is known of it (the 400 shares are what may be sold)
        clock.set("2024-03-05T09:20:00+08:00")
        sold = await r.submit(cy, ts_code="600030.SH", side="sell", qty=400, price="4.70")
        assert sold["status"] == "submitted"
        assert shares_held(await r.get(cy, "/v1/positions")) == [
            {"ts_code": "600030.SH", "qty": 400, "sellable_qty": 0}
        ]
        clock.set("2024-03-05T16:00:00+08:00")
        desk = r.execution._transport.app.state.desk  # type: ignore[attr-defined]
        await desk.corporate_actions_due()
        assert await r.get(cy, "/v1/positions/adjustments") == []  # the session's bars are not in yet

        # its bars are in: 400 x 2.105263 = 842.1052 -> 842 shares, 0.1052 x 4.75 = 0.4997 -> 0.50 CNY; then the
        # sell is matched at the open, 4.80, leaving 442
        bars_in(r, CITIC_0305, complete_through="2024-03-05")
        await announce(r, date(2024, 3, 5))
        assert (await order_of(r, cy, sold["order_id"], until="filled"))["avg_fill_price"] == "4.80"
        [adjusted] = await r.get(cy, "/v1/positions/adjustments")
        assert (adjusted["ex_date"], adjusted["qty_before"], adjusted["qty_after"], adjusted["cash_in_lieu"]) == (
            "2024-03-05", 400, 842, "0.50"
        )  # fmt: skip
        clock.set("2024-03-06T09:20:00+08:00")
        assert shares_held(await r.get(cy, "/v1/positions")) == [
            {"ts_code": "600030.SH", "qty": 442, "sellable_qty": 442}
        ]
        # another pass (and a restarted one, which looks back over the last weeks) adds nothing
        desk.adjusted_through = None
        assert await desk.corporate_actions_due() == 0
        assert len(await r.get(cy, "/v1/positions/adjustments")) == 1


async def test_a_catch_up_over_two_sessions_matches_the_first_before_the_second_goes_ex(tmp_path: Path) -> None:
    """Both sessions' bars arrive together (a late import): 2024-03-04's buy must be matched before 2024-03-05's
    corporate action counts the shares held at its start, or the bought shares would miss their bonus."""
    cy = trader()
    async with market(tmp_path, "2024-03-04T09:20:00+08:00") as (r, clock):
        bars_in(r, CITIC_0304, complete_through="2024-03-01")
        bought = await r.submit(cy, ts_code="600030.SH", qty=400, price="10.50")
        clock.set("2024-03-05T16:00:00+08:00")
        bars_in(r, CITIC_0305, complete_through="2024-03-05")
        await announce(r, date(2024, 3, 5))
        assert (await order_of(r, cy, bought["order_id"], until="filled"))["avg_fill_price"] == "10.00"
        # 400 x 2.105263 = 842.1052 -> 842 shares and 0.1052 x 4.75 -> 0.50 CNY, as when the sessions come one by one
        deadline = asyncio.get_running_loop().time() + 20
        while not (adjusted := await r.get(cy, "/v1/positions/adjustments")):
            assert asyncio.get_running_loop().time() < deadline, "the ex-date was never applied"
            await asyncio.sleep(0.05)
        assert [(a["ex_date"], a["qty_before"], a["qty_after"], a["cash_in_lieu"]) for a in adjusted] == [
            ("2024-03-05", 400, 842, "0.50")
        ]
        clock.set("2024-03-06T09:20:00+08:00")
        assert shares_held(await r.get(cy, "/v1/positions")) == [
            {"ts_code": "600030.SH", "qty": 842, "sellable_qty": 842}
        ]
