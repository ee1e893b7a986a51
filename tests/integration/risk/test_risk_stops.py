"""Stops against the real MariaDB and RabbitMQ, with risk and execution in process (the order-path fleet, a fake data
service whose last prices a test moves and announces): a stop fires once when the price crosses, its exit (a market
sell, client_order_id stop-<stop_id>) reaches execution through the desk, a second pass or a second watcher (another
risk process) never fires it again, an exit whose process died between the trigger and the answer is resumed exactly
once, a halted account's exit is refused and the stop failed, and every trigger is recorded with its event."""

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from services.notify.business import alerts_for
from services.risk.stops import Crossing, StopStatus, StopWatcher, exit_client_order_id
from services.risk.store import outbox
from shared.platform.clock import utcnow
from shared.platform.events import Envelope
from shared.platform.internal_auth import Principal
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    NOW_SESSION,
    Fleet,
    fleet,
    settle,
    trader,
    trades_were_yesterday,
    until,
)

pytestmark = pytest.mark.integration

ROOT = Principal("root", "admin", "acct-root")
CODE = "600000.SH"  # the fake data service's: last close 10.00


async def _holding(f: Fleet, who: Principal, qty: int = 1000) -> None:
    """`who` holds `qty` shares of CODE bought the session before: all sellable."""
    body = {"client_order_id": f"buy-{who.subject}", "ts_code": CODE, "side": "buy", "order_type": "market",
            "qty": qty}  # fmt: skip
    placed = await f.risk.post("/v1/orders", json=body, headers=f.headers(who))
    assert placed.status_code == 201, placed.text
    await until(lambda: _filled(f, who, placed.json()["order"]["order_id"]), what="the buy filled")
    await trades_were_yesterday(f, who.account_id or who.subject)


async def _filled(f: Fleet, who: Principal, order_id: str) -> bool:
    order = (await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(who))).json()
    return bool(order["status"] == "filled")


async def _set(f: Fleet, who: Principal, expected: int = 201, **body: Any) -> dict[str, Any]:
    response = await f.risk.post("/v1/risk/stops", json={"ts_code": CODE, **body}, headers=f.headers(who))
    assert response.status_code == expected, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _stop(f: Fleet, who: Principal, stop_id: str) -> dict[str, Any]:
    response = await f.risk.get(f"/v1/risk/stops/{stop_id}", headers=f.headers(who))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _price(f: Fleet, last: str) -> None:
    """The data service's last close of CODE becomes `last` (limits +-10%), announced as new bars."""
    close = Decimal(last)
    f.data.quotes[CODE].update(last_close=last, limit_up=str((close * Decimal("1.1")).quantize(Decimal("0.01"))),
                               limit_down=str((close * Decimal("0.9")).quantize(Decimal("0.01"))))  # fmt: skip
    await f.data_changed()


async def _orders(f: Fleet, who: Principal, client_order_id: str) -> list[dict[str, Any]]:
    listed = (await f.execution.get("/v1/orders", headers=f.headers(who))).json()
    return [o for o in listed if o["client_order_id"] == client_order_id]


async def _events(f: Fleet, stop_id: str) -> list[dict[str, Any]]:
    async with f.risk_app.state.db.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.body).where(outbox.c.type == "risk.stop.triggered"))).all()
    payloads = [json.loads(r.body)["payload"] for r in rows]
    return [p for p in payloads if p["stop_id"] == stop_id]


def _watcher(f: Fleet) -> StopWatcher:
    watcher: StopWatcher = f.risk_app.state.stop_watcher
    return watcher


async def _quiet(f: Fleet) -> None:
    """Stop the app's own watcher loop: the test runs the passes itself."""
    await f.risk_app.state.stop_loop.stop()


async def test_a_stop_loss_fires_once_and_its_exit_reaches_execution(backing: Backing) -> None:
    settings = backing.settings()
    amy = trader()
    async with fleet(settings) as f:
        await _quiet(f)
        await _holding(f, amy)
        stop = await _set(f, amy, kind="stop_loss", trigger_price="9.50")
        assert (stop["status"], stop["stop_level"], stop["qty"], stop["account_id"]) == ("armed", "9.50", None,
                                                                                         amy.account_id)  # fmt: skip
        stop_id = stop["stop_id"]
        cid = exit_client_order_id(stop_id)
        watcher = _watcher(f)
        armed = await watcher.store.get(stop_id)
        assert armed is not None

        await watcher.run_pass()
        await _price(f, "9.51")  # just above
        await watcher.run_pass()
        assert (await _stop(f, amy, stop_id))["status"] == "armed"
        assert await _orders(f, amy, cid) == []

        await _price(f, "9.50")  # at the trigger
        await watcher.run_pass()
        fired = await _stop(f, amy, stop_id)
        [order] = await _orders(f, amy, cid)
        assert (order["side"], order["order_type"], order["qty"], order["ts_code"]) == ("sell", "market", 1000, CODE)
        assert (fired["status"], fired["trigger_seen"], fired["exit_qty"], fired["client_order_id"],
                fired["order_id"]) == ("triggered", "9.50", 1000, cid, order["order_id"])  # fmt: skip
        assert [(t["result"], t["price"], t["stop_level"], t["qty"], t["order_id"]) for t in fired["triggers"]] == [
            ("placed", "9.50", "9.50", 1000, order["order_id"])
        ]

        # A second pass, and another process's watcher that read the stop while it was armed: nothing fires again.
        await watcher.run_pass()
        other = StopWatcher(watcher.store, f.risk_app.state.desk, watcher.quotes, watcher.positions,
                            market_session=watcher.market_session)  # fmt: skip
        await other.run_pass()
        assert await other._evaluate(armed, Decimal("9.40")) == 0  # its claim (armed -> triggered) finds none
        assert not await watcher.store.claim(armed, Crossing(Decimal("9.40"), Decimal("9.50"), None), 1000, utcnow())
        assert len(await _orders(f, amy, cid)) == 1
        assert len((await _stop(f, amy, stop_id))["triggers"]) == 1
        # counted once, by kind, for the Risk dashboard (the second pass and the other watcher claimed nothing)
        registry = f.risk_app.state.metrics_registry
        assert registry.get_sample_value("lh_risk_stops_triggered_total", {"kind": "stop_loss"}) == 1
        assert registry.get_sample_value("lh_risk_stops_triggered_total", {"kind": "trailing"}) == 0

        [event] = await _events(f, stop_id)
        assert {k: event[k] for k in ("account_id", "owner", "ts_code", "kind", "price", "stop_level", "qty",
                                      "client_order_id", "status", "order_id", "code")} == {
            "account_id": amy.account_id, "owner": amy.subject, "ts_code": CODE, "kind": "stop_loss", "price": "9.50",
            "stop_level": "9.50", "qty": 1000, "client_order_id": cid, "status": "triggered",
            "order_id": order["order_id"], "code": None}  # fmt: skip
        await settle(f)


async def test_a_trailing_stop_follows_the_high_and_sells_its_qty(backing: Backing) -> None:
    settings = backing.settings()
    bo = trader()
    async with fleet(settings) as f:
        await _quiet(f)
        await _holding(f, bo)
        stop = await _set(f, bo, kind="trailing", trail_pct="5", qty=300)
        assert (stop["high_water"], stop["stop_level"]) == ("10.00", "9.50")
        stop_id, watcher = stop["stop_id"], _watcher(f)

        await _price(f, "10.40")  # a new high: the mark follows, level 10.40 * 0.95 = 9.88
        await watcher.run_pass()
        raised = await _stop(f, bo, stop_id)
        assert (raised["status"], raised["high_water"], raised["stop_level"]) == ("armed", "10.40", "9.88")

        await _price(f, "9.89")  # just above the level
        await watcher.run_pass()
        assert (await _stop(f, bo, stop_id))["status"] == "armed"

        await _price(f, "9.88")
        await watcher.run_pass()
        fired = await _stop(f, bo, stop_id)
        [order] = await _orders(f, bo, exit_client_order_id(stop_id))
        assert (order["side"], order["qty"]) == ("sell", 300)
        assert (fired["status"], fired["exit_qty"], fired["high_water"]) == ("triggered", 300, "10.40")
        assert [(t["price"], t["stop_level"], t["high_water"]) for t in fired["triggers"]] == [
            ("9.88", "9.88", "10.40")
        ]
        await settle(f)


async def test_an_exit_whose_process_died_is_resumed_exactly_once(backing: Backing) -> None:
    settings = backing.settings()
    cy, di = trader(), trader()
    async with fleet(settings) as f:
        await _quiet(f)
        await _holding(f, cy)
        await _holding(f, di)
        watcher = _watcher(f)
        long_ago = utcnow() - timedelta(seconds=watcher.lease_s + 5)
        crossing = Crossing(Decimal("9.40"), Decimal("9.50"), None)

        # cy's: claimed (armed -> triggered) by a process that died before it placed anything.
        cy_id = (await _set(f, cy, kind="stop_loss", trigger_price="9.50"))["stop_id"]
        cy_stop = await watcher.store.get(cy_id)
        assert cy_stop is not None and await watcher.store.claim(cy_stop, crossing, 1000, long_ago)
        # di's: claimed, and its exit placed at execution, by a process that died before recording the answer.
        di_id = (await _set(f, di, kind="stop_loss", trigger_price="9.50", qty=400))["stop_id"]
        di_stop = await watcher.store.get(di_id)
        assert di_stop is not None and await watcher.store.claim(di_stop, crossing, 400, long_ago)
        first = await f.risk.post("/v1/orders", headers=f.headers(di), json={"client_order_id": f"stop-{di_id}",
                                  "ts_code": CODE, "side": "sell", "order_type": "market", "qty": 400})  # fmt: skip
        assert first.status_code == 201, first.text

        # A claim younger than the lease is someone's attempt in progress: left alone.
        young = await watcher.store.get(cy_id)
        assert young is not None
        other = StopWatcher(watcher.store, f.risk_app.state.desk, watcher.quotes, watcher.positions,
                            market_session=watcher.market_session, lease_s=3600)  # fmt: skip
        await other.run_pass()
        assert (await _stop(f, cy, cy_id))["outcome"] is None

        await watcher.run_pass()
        await watcher.run_pass()
        await other.run_pass()

        cy_done = await _stop(f, cy, cy_id)
        [cy_order] = await _orders(f, cy, exit_client_order_id(cy_id))
        assert (cy_order["qty"], cy_done["status"], cy_done["order_id"]) == (1000, "triggered", cy_order["order_id"])
        assert [t["result"] for t in cy_done["triggers"]] == ["placed"]

        di_done = await _stop(f, di, di_id)
        [di_order] = await _orders(f, di, exit_client_order_id(di_id))  # still the one order
        assert di_order["order_id"] == first.json()["order"]["order_id"]
        assert (di_done["status"], di_done["order_id"], di_done["exit_qty"]) == ("triggered", di_order["order_id"], 400)
        assert [t["result"] for t in di_done["triggers"]] == ["placed"]
        assert [e["status"] for e in await _events(f, cy_id) + await _events(f, di_id)] == ["triggered", "triggered"]
        await settle(f)


async def test_a_halted_accounts_exit_is_refused_and_the_stop_failed(backing: Backing) -> None:
    settings = backing.settings()
    ed = trader()
    async with fleet(settings) as f:
        await _quiet(f)
        await _holding(f, ed)
        stop_id = (await _set(f, ed, kind="take_profit", trigger_price="10.50"))["stop_id"]
        halt = {"scope": "account", "account_id": ed.account_id, "state": "halted", "reason": "review"}
        assert (await f.risk.post("/v1/risk/halt", json=halt, headers=f.headers(ROOT))).status_code == 200

        await _price(f, "10.50")
        await _watcher(f).run_pass()
        failed = await _stop(f, ed, stop_id)
        assert failed["status"] == "failed" and failed["outcome"].startswith("order_rejected: ")
        assert f"trading is halted for account {ed.account_id}" in failed["outcome"]
        assert [(t["result"], t["http_status"], t["code"]) for t in failed["triggers"]] == [
            ("failed", 422, "order_rejected")
        ]
        assert await _orders(f, ed, exit_client_order_id(stop_id)) == []
        [event] = await _events(f, stop_id)
        assert (event["status"], event["code"], event["kind"]) == ("failed", "order_rejected", "take_profit")
        await _watcher(f).run_pass()  # failed is final
        assert len((await _stop(f, ed, stop_id))["triggers"]) == 1
        await settle(f)


async def test_bars_updated_wakes_the_watcher(backing: Backing) -> None:
    settings = backing.settings()
    fu = trader()
    async with fleet(settings) as f:
        await _holding(f, fu)
        stop_id = (await _set(f, fu, kind="stop_loss", trigger_price="9.00", qty=200))["stop_id"]
        await _price(f, "8.99")  # the announcement wakes the app's own loop

        async def fired() -> bool:
            return bool((await _stop(f, fu, stop_id))["order_id"])

        await until(fired, what="the stop fired")
        assert [o["qty"] for o in await _orders(f, fu, exit_client_order_id(stop_id))] == [200]
        await settle(f)


async def test_setting_listing_and_cancelling_stops(backing: Backing) -> None:
    settings = backing.settings()
    gil, hank = trader(), trader()
    viewer = Principal("vera", "viewer", "acct-vera")
    async with fleet(settings) as f:
        await _quiet(f)
        refused = [
            (await _set(f, gil, 422, kind="stop_loss", trigger_price="10.00"))["code"],  # not below 10.00
            (await _set(f, gil, 422, kind="take_profit", trigger_price="10.00"))["code"],  # not above
            (await _set(f, gil, 422, kind="trailing", trail_pct="0"))["code"],
            (await _set(f, gil, 422, kind="trailing", trail_pct="5", when="now"))["code"],  # unknown field
            (await _set(f, gil, 422, ts_code="600519.SH", kind="trailing", trail_pct="5"))["code"],
            (await _set(f, gil, 422, ts_code="600000", kind="trailing", trail_pct="5"))["code"],
            (await _set(f, gil, 422, ts_code="000002.SZ", kind="trailing", trail_pct="5"))["code"],  # suspended
        ]
        assert refused == ["invalid_trigger_price", "invalid_trigger_price", "invalid_request", "invalid_request",
                           "unknown_security", "invalid_request", "no_price"]  # fmt: skip
        assert (await _set(f, viewer, 403, kind="trailing", trail_pct="5"))["code"] == "forbidden"
        assert (await f.risk.get("/v1/risk/stops", headers=f.headers(gil))).json() == []

        loss = await _set(f, gil, kind="stop_loss", trigger_price="9.99")
        profit = await _set(f, gil, kind="take_profit", trigger_price="10.01", qty=100)
        theirs = await _set(f, hank, kind="trailing", trail_pct="50")
        assert theirs["stop_level"] == "5.00"

        mine = (await f.risk.get("/v1/risk/stops", headers=f.headers(gil))).json()
        assert [s["stop_id"] for s in mine] == [profit["stop_id"], loss["stop_id"]]  # newest first
        everyone = (await f.risk.get("/v1/risk/stops", params={"status": "armed"}, headers=f.headers(ROOT))).json()
        assert {loss["stop_id"], profit["stop_id"], theirs["stop_id"]} <= {s["stop_id"] for s in everyone}
        seen = await f.risk.get(f"/v1/risk/stops/{theirs['stop_id']}", headers=f.headers(gil))
        assert seen.status_code == 404  # not gil's
        cancel_theirs = await f.risk.delete(f"/v1/risk/stops/{theirs['stop_id']}", headers=f.headers(gil))
        assert cancel_theirs.status_code == 404

        cancelled = await f.risk.delete(f"/v1/risk/stops/{loss['stop_id']}", headers=f.headers(gil))
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = await f.risk.delete(f"/v1/risk/stops/{loss['stop_id']}", headers=f.headers(gil))
        assert (again.status_code, again.json()["code"]) == (409, "stop_not_armed")
        by_admin = await f.risk.delete(f"/v1/risk/stops/{theirs['stop_id']}", headers=f.headers(ROOT))
        assert by_admin.json()["status"] == "cancelled"
        assert (await f.risk.delete(f"/v1/risk/stops/{profit['stop_id']}", headers=f.headers(gil))).status_code == 200

        # A cancelled stop never fires: the price crosses both, nothing is placed.
        await _price(f, "9.00")
        await _watcher(f).run_pass()
        assert (await _stop(f, gil, loss["stop_id"]))["status"] == StopStatus.CANCELLED
        assert await _orders(f, gil, exit_client_order_id(loss["stop_id"])) == []
        await settle(f)


async def test_an_exit_refused_for_now_is_retried_with_the_same_order_id(backing: Backing) -> None:
    settings = backing.settings()
    jo = trader()
    async with fleet(settings) as f:
        await _quiet(f)
        await _holding(f, jo)
        stop_id = (await _set(f, jo, kind="stop_loss", trigger_price="9.50", qty=500))["stop_id"]
        # New bars crossed it, but the limits the data service has are another session's (between a close and the
        # next bars being stored): risk refuses every order with limits_unknown, which is "not now".
        f.data.quotes[CODE]["next_trade_date"] = "2025-01-02"
        await _price(f, "9.40")
        watcher = _watcher(f)
        await watcher.run_pass()
        waiting = await _stop(f, jo, stop_id)
        assert (waiting["status"], waiting["outcome"], waiting["order_id"]) == ("triggered", None, None)
        assert [(t["result"], t["http_status"], t["code"]) for t in waiting["triggers"]] == [
            ("retry", 422, "order_rejected")
        ]
        await watcher.run_pass()  # within the lease: left alone
        assert len((await _stop(f, jo, stop_id))["triggers"]) == 1

        f.data.quotes[CODE]["next_trade_date"] = NOW_SESSION  # the session's bars are in
        await _price(f, "9.40")
        later = StopWatcher(
            watcher.store,
            f.risk_app.state.desk,
            watcher.quotes,
            watcher.positions,
            market_session=watcher.market_session,
            lease_s=0,
        )  # the lease has run out
        await later.run_pass()
        done = await _stop(f, jo, stop_id)
        [order] = await _orders(f, jo, exit_client_order_id(stop_id))
        assert (done["status"], done["order_id"], order["qty"]) == ("triggered", order["order_id"], 500)
        assert [t["result"] for t in done["triggers"]] == ["retry", "placed"]
        assert [e["status"] for e in await _events(f, stop_id)] == ["triggered"]
        await settle(f)


async def test_a_star_stops_exit_carries_the_cages_lowest_sell_as_its_protection_price(backing: Backing) -> None:
    # A STAR market order needs a protection price (docs/order-path.md), held by the exchange to the price cage: the
    # exit of a stop on 688981.SH sells at no less than 98% of the price it triggered at (never below the limit-down)
    star = "688981.SH"  # the fake data service's: last close 50.00, limits 60.00 / 40.00
    amy = trader()
    async with fleet(backing.settings()) as f:
        await _quiet(f)
        body = {"client_order_id": f"buy-{amy.subject}", "ts_code": star, "side": "buy", "order_type": "market",
                "qty": 200, "price": "60.00", "market_type": "best5_cancel"}  # fmt: skip
        placed = await f.risk.post("/v1/orders", json=body, headers=f.headers(amy))
        assert placed.status_code == 201, placed.text
        assert placed.json()["order"]["price"] == "60.00"  # its protection price
        await until(lambda: _filled(f, amy, placed.json()["order"]["order_id"]), what="the buy filled")
        await trades_were_yesterday(f, amy.account_id or amy.subject)
        response = await f.risk.post("/v1/risk/stops", json={"ts_code": star, "kind": "stop_loss",
                                     "trigger_price": "45.00"}, headers=f.headers(amy))  # fmt: skip
        assert response.status_code == 201, response.text
        stop_id = response.json()["stop_id"]
        # the price falls to 45.00: limits 45.00 x 1.2 = 54.00 / 45.00 x 0.8 = 36.00 (STAR: 20%); the cage's lowest
        # sell 45.00 x 0.98 = 44.10, above the limit-down: the protection price is 44.10 (36.00 is outside the cage)
        f.data.quotes[star].update(last_close="45.00", limit_up="54.00", limit_down="36.00")
        await f.data_changed()
        await _watcher(f).run_pass()
        [order] = await _orders(f, amy, exit_client_order_id(stop_id))
        assert (order["side"], order["order_type"], order["qty"], order["price"], order["market_type"]) == (
            "sell", "market", 200, "44.10", "counterparty_best")  # fmt: skip


async def _star_holding(f: Fleet, who: Principal, star: str) -> str:
    """`who` holds 200 shares of `star` bought the session before, and a stop-loss at 45.00 on them: its stop_id."""
    body = {"client_order_id": f"buy-{who.subject}", "ts_code": star, "side": "buy", "order_type": "market",
            "qty": 200, "price": "60.00", "market_type": "best5_cancel"}  # fmt: skip
    placed = await f.risk.post("/v1/orders", json=body, headers=f.headers(who))
    assert placed.status_code == 201, placed.text
    await until(lambda: _filled(f, who, placed.json()["order"]["order_id"]), what="the buy filled")
    await trades_were_yesterday(f, who.account_id or who.subject)
    response = await f.risk.post("/v1/risk/stops", json={"ts_code": star, "kind": "stop_loss",
                                 "trigger_price": "45.00"}, headers=f.headers(who))  # fmt: skip
    assert response.status_code == 201, response.text
    stop_id: str = response.json()["stop_id"]
    return stop_id


async def test_a_star_exit_in_a_session_without_price_limits_is_placed_and_a_refused_one_alerts(
    backing: Backing,
) -> None:
    # A STAR listing's first five sessions have no price limits (no limit-down to protect the exit at): the exit's
    # protection price is the cage's lowest sell below the trigger's price, 44.50 x 0.98 = 43.61 (exact). A refused
    # exit fails the stop, and its event is one the notify service turns into LianghuaStopExitFailed.
    star = "688981.SH"
    gil, hal = trader(), trader()
    async with fleet(backing.settings()) as f:
        await _quiet(f)
        gil_stop = await _star_holding(f, gil, star)
        hal_stop = await _star_holding(f, hal, star)
        halt = {"scope": "account", "account_id": hal.account_id, "state": "halted", "reason": "review"}
        assert (await f.risk.post("/v1/risk/halt", json=halt, headers=f.headers(ROOT))).status_code == 200

        f.data.quotes[star].update(last_close="44.50", limit_up=None, limit_down=None)
        await f.data_changed()
        await _watcher(f).run_pass()

        [order] = await _orders(f, gil, exit_client_order_id(gil_stop))
        assert (order["side"], order["order_type"], order["qty"], order["price"]) == ("sell", "market", 200, "43.61")
        assert (await _stop(f, gil, gil_stop))["status"] == "triggered"

        # hal's exit is refused (the account is halted): the stop fails, and its event raises the critical alert
        failed = await _stop(f, hal, hal_stop)
        assert (failed["status"], [t["code"] for t in failed["triggers"]]) == ("failed", ["order_rejected"])
        assert await _orders(f, hal, exit_client_order_id(hal_stop)) == []
        async with f.risk_app.state.db.engine.connect() as conn:
            rows = (await conn.execute(select(outbox.c.body).where(outbox.c.type == "risk.stop.triggered"))).all()
        [event] = [e for e in (Envelope.model_validate_json(r.body) for r in rows)
                   if e.payload.get("stop_id") == hal_stop]  # fmt: skip
        [alert] = alerts_for(event, now=utcnow(), ttl_s=3600)
        assert (alert["labels"]["alertname"], alert["labels"]["stop_id"], alert["labels"]["severity"]) == (
            "LianghuaStopExitFailed", hal_stop, "critical")  # fmt: skip
        await settle(f)
