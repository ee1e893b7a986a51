"""Amend as cancel-replace (docs/order-path.md "Amending an order") against the real MariaDB, Redis and RabbitMQ with
risk and execution in process (the order-path fleet): a resting paper order's price amended (the original cancelled
and `replaced_by` its replacement, which risk decided as a new decision carrying the original's id), the same
request again answering the same amend; an amend below what filled refused with nothing changed; a filled order 409; a
market order 422; new terms risk refuses (price limits, the exchange's maximum, a sell's shares) 422 before the
cancel with the original untouched, and risk down 503; an original that partly filled first replaced for the new
total less its fills; a replacement refused for cash after the cancel reported with risk's reasons (the original
stays cancelled); a user's cancel or cancel-all stopping an amend (a replacement risk forwards after it refused 409
`amend_stopped`, one placed before it cancelled by the pass even when its first cancel fails); a restart between the
cancel and the replacement's recorded answer completing the amend once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.execution.amend.service import Amender, RiskPort
from services.execution.amend.store import Amend
from services.execution.brokers.base import BrokerUnavailable
from services.execution.store import StoredOrder
from shared.platform.bus.amqp import AmqpBus
from shared.platform.clock import EXCHANGE_TZ, ShiftedClock
from shared.platform.events import LiveQuote, QuoteLevel, QuotesSnapshot, make_event
from shared.platform.internal_auth import Principal
from shared.platform.settings import Settings
from tests.conftest import Backing
from tests.integration.execution.order_path_harness import (
    Fleet,
    SwitchableBus,
    fleet,
    open_day,
    order_body,
    trader,
    trades_were_yesterday,
    until,
)

pytestmark = pytest.mark.integration

CODE = "600000.SH"  # the fake data service's: last close 10.00, limits 11.00 / 9.00


async def place(f: Fleet, who: Principal, **kw: Any) -> dict[str, Any]:
    """An order through risk (`POST /v1/orders`): a limit buy of 1,000 600000.SH at 10.00 unless `kw` says."""
    answer = await f.risk.post("/v1/orders", json=order_body(**kw), headers=f.headers(who))
    assert answer.status_code == 201, answer.text
    placed: dict[str, Any] = answer.json()["order"]
    return placed


async def amend(f: Fleet, who: Principal, order_id: str, expected: int = 202, **body: Any) -> dict[str, Any]:
    answer = await f.execution.post(f"/v1/orders/{order_id}/amend", json=body, headers=f.headers(who))
    assert answer.status_code == expected, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def get_order(f: Fleet, who: Principal, order_id: str) -> dict[str, Any]:
    answer = await f.execution.get(f"/v1/orders/{order_id}", headers=f.headers(who))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def orders_with_client_id(f: Fleet, who: Principal, client_order_id: str) -> list[dict[str, Any]]:
    listed = (await f.execution.get("/v1/orders", params={"limit": 1000}, headers=f.headers(who))).json()
    return [o for o in listed if o["client_order_id"] == client_order_id]


async def test_amending_a_resting_orders_price_cancels_it_and_places_the_replacement_through_risk(
    backing: Backing,
) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        # 9.50 is below the latest close (10.00): the paper broker (immediate fills) rests it
        original = await place(f, amy, price="9.50")
        assert original["status"] == "submitted"

        done = await amend(f, amy, original["order_id"], price="9.60")
        # the paper broker cancels at once, so the answer is the finished amend
        assert (done["status"], done["old_price"], done["new_price"], done["old_qty"], done["new_qty"]) == (
            "replaced", "9.50", "9.60", 1000, 1000)  # fmt: skip
        assert (done["filled_qty"], done["replacement_qty"]) == (0, 1000)  # 1,000 - 0 filled
        assert done["replacement_client_order_id"] == f"amend-{original['order_id']}"

        before = await get_order(f, amy, original["order_id"])
        after = await get_order(f, amy, done["replacement_order_id"])
        assert (before["status"], before["replaced_by"]) == ("cancelled", done["replacement_order_id"])
        assert (after["status"], after["price"], after["qty"], after["replaces_order_id"]) == (
            "submitted", "9.60", 1000, original["order_id"])  # fmt: skip
        assert after["client_order_id"] == f"amend-{original['order_id']}"

        # risk decided the replacement as amy, a new decision carrying the original's id
        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(amy))).json()
        [decision] = [d for d in decisions if d["client_order_id"] == f"amend-{original['order_id']}"]
        assert decision["approved"] and decision["account_id"] == amy.account_id
        assert (decision["price"], decision["qty"]) == ("9.60", 1000)
        assert decision["rule_check"]["replaces_order_id"] == original["order_id"]

        # the same request again (a lost answer): the same amend, no second replacement
        again = await amend(f, amy, original["order_id"], price="9.60")
        assert (again["amend_id"], again["replacement_order_id"]) == (done["amend_id"], done["replacement_order_id"])
        assert len(await orders_with_client_id(f, amy, f"amend-{original['order_id']}")) == 1
        # other terms on the amended (now cancelled) original: 409
        other = await amend(f, amy, original["order_id"], expected=409, price="9.70")
        assert other["code"] == "order_not_amendable"

        # the amend is read back by its id, and only by its account
        read = await f.execution.get(f"/v1/amends/{done['amend_id']}", headers=f.headers(amy))
        assert read.status_code == 200 and read.json()["status"] == "replaced"
        bob = trader()
        hidden = await f.execution.get(f"/v1/amends/{done['amend_id']}", headers=f.headers(bob))
        assert (hidden.status_code, hidden.json()["code"]) == (404, "amend_not_found")
        # bob cannot amend amy's order: it is not his to see
        foreign = await amend(f, bob, done["replacement_order_id"], expected=404, price="9.70")
        assert foreign["code"] == "order_not_found"
        # risk's replacement route is execution's alone: a trader asking it directly is refused, nothing decided
        body = {"replaces_order_id": original["order_id"], "account_id": amy.account_id, "owner": amy.subject,
                "owner_role": "trader", "original": {"client_order_id": original["client_order_id"], "ts_code": CODE,
                "side": "buy", "qty": 1000, "status": "cancelled", "filled_qty": 0},
                "order": order_body(client_order_id="amend-forged", price="9.70")}  # fmt: skip
        direct = await f.risk.post("/v1/replacement-orders", json=body, headers=f.headers(amy))
        assert (direct.status_code, direct.json()["code"]) == (403, "forbidden")
        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(amy))).json()
        assert [d for d in decisions if d["client_order_id"] == "amend-forged"] == []


async def test_a_filled_order_is_409_a_market_order_422_and_bad_input_422_with_nothing_changed(
    backing: Backing,
) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        filled = await place(f, amy, price="10.00")  # at the latest close: fills at once
        assert filled["status"] == "filled"
        refused = await amend(f, amy, filled["order_id"], expected=409, price="10.10")
        assert refused["code"] == "order_not_amendable" and "filled" in refused["message"]

        market = await place(f, amy, order_type="market", price=None, qty=100)
        refused = await amend(f, amy, market["order_id"], expected=422, qty=200)
        assert (refused["code"], refused["details"]["field"]) == ("order_not_amendable", "order_type")

        resting = await place(f, amy, price="9.50")
        for body, code in [
            ({}, "invalid_request"),  # neither price nor qty
            ({"price": "9.60", "stop_price": "9.00"}, "invalid_request"),  # an unknown field, named
            ({"qty": "500"}, "invalid_request"),  # qty a string
            ({"price": "9.605"}, "invalid_request"),  # off the 0.01 tick
            ({"qty": 550}, "lot_size"),  # a buy of 550: not whole lots of 100
            ({"price": "9.50", "qty": 1000}, "amend_changes_nothing"),
        ]:
            answer = await amend(f, amy, resting["order_id"], expected=422, **body)
            assert answer["code"] == code, (body, answer)
        unknown = await amend(f, amy, resting["order_id"], expected=422, price="9.60", stop_price="9.00")
        assert "stop_price" in unknown["message"]
        # nothing was changed: the order still rests, with no amend
        assert (await get_order(f, amy, resting["order_id"]))["status"] == "submitted"
        assert await f.execution_app.state.amend_store.of_order(resting["order_id"]) is None

        viewer = Principal(amy.subject, "viewer", amy.account_id)
        forbidden = await amend(f, viewer, resting["order_id"], expected=403, price="9.60")
        assert forbidden["code"] == "forbidden"


async def test_new_terms_risk_refuses_are_422_before_the_cancel_with_the_original_untouched(backing: Backing) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        original = await place(f, amy, price="9.50")
        paper = f.execution_app.state.broker
        # 11.50 is above the session's limit-up: the fake data service's last close 10.00 x 1.10 = 11.00 (the
        # band 9.00..11.00): refused by risk before anything is cancelled
        refused = await amend(f, amy, original["order_id"], expected=422, price="11.50")
        assert (refused["code"], refused["details"]["field"]) == ("price_limit", "price"), refused
        assert [r["code"] for r in refused["details"]["reasons"]] == ["price_limit"]
        assert "11.00" in refused["message"]
        # 8.99 is below the limit-down 9.00: the same, naming price
        below = await amend(f, amy, original["order_id"], expected=422, price="8.99")
        assert (below["code"], below["details"]["field"]) == ("price_limit", "price"), below
        # 1,000,100 shares: more than the 1,000,000 a main-board limit order may ask for (the exchange's maximum);
        # (at 9.50 that is also above the order value limit, so the maximum is one of risk's reasons, naming qty)
        huge = await amend(f, amy, original["order_id"], expected=422, qty=1_000_100)
        assert "exchange_max_qty" in [r["code"] for r in huge["details"]["reasons"]], huge
        assert {r["field"] for r in huge["details"]["reasons"]} == {"qty"}
        # nothing changed: the original rests at the broker as placed, no amend, no decision, no replacement
        after = await get_order(f, amy, original["order_id"])
        assert (after["status"], after["price"], after["qty"], after["replaced_by"]) == ("submitted", "9.50", 1000,
                                                                                        None)  # fmt: skip
        assert await f.execution_app.state.amend_store.of_order(original["order_id"]) is None
        at_broker = await paper.report(original["order_id"])  # the paper broker's own record: still resting
        assert at_broker is not None and (at_broker.status.value, at_broker.fills) == ("submitted", ())
        assert await orders_with_client_id(f, amy, f"amend-{original['order_id']}") == []
        decisions = (await f.risk.get("/v1/decisions", headers=f.headers(amy))).json()
        assert [d for d in decisions if d["client_order_id"] == f"amend-{original['order_id']}"] == []


async def test_a_sells_new_qty_is_checked_against_the_shares_counting_the_originals_unfilled_as_its_own(
    backing: Backing,
) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        bought = await place(f, amy, price="10.00")  # at the latest close: 1,000 filled at once
        assert bought["status"] == "filled"
        await trades_were_yesterday(f, amy.account_id)  # T+1: the 1,000 are sellable now
        # a sell of 600 at 10.50 (above the close) rests, holding 600 of the 1,000: 400 sellable beside it
        selling = await place(f, amy, side="sell", qty=600, price="10.50")
        assert selling["status"] == "submitted"
        # a new total of 1,100: more than the 400 sellable + the original's own 600 unfilled = 1,000: refused before
        # the cancel, naming qty
        refused = await amend(f, amy, selling["order_id"], expected=422, qty=1100)
        assert (refused["code"], refused["details"]["field"]) == ("insufficient_position", "qty"), refused
        assert (await get_order(f, amy, selling["order_id"]))["status"] == "submitted"
        # 1,000 = 400 + 600: passes (not refused for the shares the original itself holds) and is placed
        done = await amend(f, amy, selling["order_id"], qty=1000)
        assert (done["status"], done["replacement_qty"]) == ("replaced", 1000), done


class RiskDown:
    """Risk cannot answer the check of the new terms (a connection refused), or answers 503."""

    def __init__(self, inner: RiskPort, status: int | None = None) -> None:
        self.inner = inner
        self.status = status

    async def check_replacement(
        self, original: StoredOrder, principal: Principal, price: Decimal, qty: int
    ) -> tuple[int, dict[str, Any]]:
        if self.status is None:
            raise ConnectionError("risk is down (test)")
        return self.status, {"code": "risk_unavailable", "message": "risk cannot check the order (test)"}

    async def submit_replacement(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        return await self.inner.submit_replacement(amend, original)


@pytest.mark.parametrize("status", [None, 503], ids=["no-answer", "risk-503"])
async def test_an_amend_risk_cannot_check_is_503_with_nothing_cancelled(backing: Backing, status: int | None) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        original = await place(f, amy, price="9.50")
        amender: Amender = f.execution_app.state.amender
        amender.risk = RiskDown(amender.risk, status)
        down = await amend(f, amy, original["order_id"], expected=503, price="9.60")
        assert down["code"] == "risk_unavailable" and "nothing was changed" in down["message"]
        after = await get_order(f, amy, original["order_id"])
        assert (after["status"], after["price"], after["replaced_by"]) == ("submitted", "9.50", None)
        at_broker = await f.execution_app.state.broker.report(original["order_id"])
        assert at_broker is not None and at_broker.status.value == "submitted"
        assert await f.execution_app.state.amend_store.of_order(original["order_id"]) is None


async def test_a_replacement_refused_for_cash_is_reported_with_its_reasons_and_the_original_stays_cancelled(
    backing: Backing,
) -> None:
    """Cash is decided with the replacement itself, after the cancel (the original's reservation is freed then): a
    replacement can still be refused for it."""
    amy = trader()
    async with fleet(backing.settings(paper_opening_cash=Decimal("20000"))) as f:
        original = await place(f, amy, price="9.50")  # reserves 9,505.10 of the 20,000.00
        # 2,500 at 9.50 = 23,750.00 (+ fees) > 20,000.00 even with the original's reservation freed: the terms pass
        # the checks before the cancel (limits, tick, lots), and the replacement is refused for cash after it
        done = await amend(f, amy, original["order_id"], qty=2500)
        assert done["status"] == "replacement_refused" and done["replacement_order_id"] is None
        assert [r["code"] for r in done["reasons"]] == ["insufficient_cash"], done
        assert "stays cancelled" in done["message"]
        assert (await get_order(f, amy, original["order_id"]))["status"] == "cancelled"
        assert await orders_with_client_id(f, amy, f"amend-{original['order_id']}") == []


class NotNow:
    """Risk answers every replacement "not now" (503): the amend stays `replacing`, attempted again."""

    def __init__(self, inner: RiskPort) -> None:
        self.inner = inner
        self.calls = 0

    async def check_replacement(
        self, original: StoredOrder, principal: Principal, price: Decimal, qty: int
    ) -> tuple[int, dict[str, Any]]:
        return await self.inner.check_replacement(original, principal, price, qty)

    async def submit_replacement(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        return 503, {"code": "risk_unavailable", "message": "not now (test)"}


async def test_a_users_cancel_stops_an_amend_still_replacing_and_no_replacement_is_placed(backing: Backing) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        original = await place(f, amy, price="9.50")
        amender: Amender = f.execution_app.state.amender
        not_now = NotNow(amender.risk)
        amender.risk = not_now
        waiting = await amend(f, amy, original["order_id"], price="9.60")
        assert (waiting["status"], not_now.calls) == ("replacing", 1)  # the original cancelled, the replacement not yet
        # the user cancels the order: the amend stops (the original is cancelled already: the cancel is done)
        answer = await f.execution.post(f"/v1/orders/{original['order_id']}/cancel", headers=f.headers(amy))
        assert (answer.status_code, answer.json()["status"]) == (200, "cancelled"), answer.text
        stopped = await f.execution_app.state.amend_store.get(waiting["amend_id"])
        assert stopped is not None and stopped.status.value == "cancelled_by_user"
        # risk would now approve: the pass attempts nothing more
        amender.risk = not_now.inner
        amender.retry_at.clear()
        amender.lease_s = 0.0
        await amender.run_pass()
        read = (await f.execution.get(f"/v1/amends/{waiting['amend_id']}", headers=f.headers(amy))).json()
        assert (read["status"], read["replacement_order_id"]) == ("cancelled_by_user", None)
        assert await orders_with_client_id(f, amy, f"amend-{original['order_id']}") == []
        # a cancel of it again: 409, as for any cancelled order
        again = await f.execution.post(f"/v1/orders/{original['order_id']}/cancel", headers=f.headers(amy))
        assert (again.status_code, again.json()["code"]) == (409, "order_not_cancellable")


class CancelledInFlight:
    """The user's cancel lands while the replacement's attempt is in flight at risk, which then places it: the
    attempt's answer finds the amend stopped."""

    def __init__(self, inner: RiskPort, cancel: Any) -> None:
        self.inner = inner
        self.cancel = cancel

    async def check_replacement(
        self, original: StoredOrder, principal: Principal, price: Decimal, qty: int
    ) -> tuple[int, dict[str, Any]]:
        return await self.inner.check_replacement(original, principal, price, qty)

    async def submit_replacement(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        await self.cancel()
        return await self.inner.submit_replacement(amend, original)


async def test_a_replacement_an_attempt_in_flight_at_a_cancel_all_forwards_after_it_is_never_placed(
    backing: Backing,
) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        original = await place(f, amy, price="9.50")
        amender: Amender = f.execution_app.state.amender

        async def cancel_all() -> None:
            answer = await f.execution.post("/v1/orders/cancel-all", json={}, headers=f.headers(amy))
            assert answer.status_code == 200, answer.text

        amender.risk = CancelledInFlight(amender.risk, cancel_all)
        done = await amend(f, amy, original["order_id"], price="9.60")
        assert done["status"] == "cancelled_by_user", done
        # risk decided the replacement after the cancel-all stopped the amend: execution refused it at admission
        # (409 amend_stopped), so there is no order under its client_order_id, and none named on the amend
        assert await orders_with_client_id(f, amy, f"amend-{original['order_id']}") == []
        assert done["replacement_order_id"] is None
        open_orders = [o for o in (await f.execution.get("/v1/orders", params={"limit": 1000},
                                                         headers=f.headers(amy))).json()
                       if o["status"] in ("accepted", "submitted", "partially_filled", "unknown")]  # fmt: skip
        assert open_orders == []


class TimedOut:
    """Risk's answer to the replacement never comes in time (the amend's call times out) and its forward to execution
    is still on its way: the first attempt places nothing; `late` delivers risk's forward later."""

    def __init__(self, inner: RiskPort) -> None:
        self.inner = inner
        self.calls = 0

    async def check_replacement(
        self, original: StoredOrder, principal: Principal, price: Decimal, qty: int
    ) -> tuple[int, dict[str, Any]]:
        return await self.inner.check_replacement(original, principal, price, qty)

    async def submit_replacement(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        raise TimeoutError("risk did not answer in time (test)")

    async def late(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        return await self.inner.submit_replacement(amend, original)


async def test_a_replacement_risk_forwards_after_the_users_cancel_is_refused_409_and_never_placed(
    backing: Backing,
) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        original = await place(f, amy, price="9.50")
        amender: Amender = f.execution_app.state.amender
        store = f.execution_app.state.amend_store
        timed_out = TimedOut(amender.risk)
        amender.risk = timed_out
        waiting = await amend(f, amy, original["order_id"], price="9.60")
        assert (waiting["status"], timed_out.calls) == ("replacing", 1)  # no answer: attempted again later
        answer = await f.execution.post(f"/v1/orders/{original['order_id']}/cancel", headers=f.headers(amy))
        assert answer.status_code == 200, answer.text
        stopped = await store.get(waiting["amend_id"])
        assert stopped is not None and stopped.status.value == "cancelled_by_user"
        # risk's forward of the timed-out attempt reaches execution only now: refused at admission, nothing stored
        cancelled = await f.execution_app.state.desk.store.get_order(original["order_id"])
        assert cancelled is not None
        status, body = await timed_out.late(stopped, cancelled)
        assert (status, body["code"]) == (409, "amend_stopped"), body
        assert await orders_with_client_id(f, amy, f"amend-{original['order_id']}") == []
        # the pass looks for a replacement once, finds none, and leaves the amend as the user's cancel left it
        await amender.run_pass()
        settled = await store.get(waiting["amend_id"])
        assert settled is not None and (settled.status.value, settled.replacement_order_id, settled.claimed_at) == (
            "cancelled_by_user", None, None)  # fmt: skip


class PlacedThenCancelled:
    """Risk places the replacement, and the user's cancel lands before the attempt's answer is recorded; the
    replacement's cancel then fails at the broker while `failing` is set."""

    def __init__(self, inner: RiskPort, cancel: Any) -> None:
        self.inner = inner
        self.cancel = cancel

    async def check_replacement(
        self, original: StoredOrder, principal: Principal, price: Decimal, qty: int
    ) -> tuple[int, dict[str, Any]]:
        return await self.inner.check_replacement(original, principal, price, qty)

    async def submit_replacement(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        answer = await self.inner.submit_replacement(amend, original)
        await self.cancel()
        return answer


async def test_a_replacement_placed_before_the_stop_whose_cancel_fails_is_cancelled_by_the_next_pass(
    backing: Backing,
) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        await f.execution_app.state.amend_loop.stop(grace_s=5.0)  # the test runs the passes itself
        original = await place(f, amy, price="9.50")
        amender: Amender = f.execution_app.state.amender
        store = f.execution_app.state.amend_store
        broker = amender.desk.broker
        real_cancel = broker.cancel
        failures: list[str] = []

        async def cancel(order_id: str, **kw: Any) -> Any:
            if order_id != original["order_id"] and len(failures) < 1:
                failures.append(order_id)
                raise BrokerUnavailable("the broker is down (test)")
            return await real_cancel(order_id, **kw)

        async def users_cancel() -> None:
            answer = await f.execution.post(f"/v1/orders/{original['order_id']}/cancel", headers=f.headers(amy))
            assert answer.status_code == 200, answer.text
            broker.cancel = cancel  # from now on the replacement's first cancel fails

        amender.risk = PlacedThenCancelled(amender.risk, users_cancel)
        done = await amend(f, amy, original["order_id"], price="9.60")
        [replacement] = await orders_with_client_id(f, amy, f"amend-{original['order_id']}")
        # the attempt's answer found the amend stopped; the replacement's cancel failed once: it is still open
        assert done["status"] == "cancelled_by_user", done
        assert failures == [replacement["order_id"]]
        assert (replacement["status"], done["replacement_order_id"]) == ("submitted", replacement["order_id"])
        assert "could not be cancelled yet" in done["message"]
        # the next pass cancels it
        await amender.run_pass()
        assert (await get_order(f, amy, replacement["order_id"]))["status"] == "cancelled"
        settled = await store.get(done["amend_id"])
        assert settled is not None and settled.status.value == "cancelled_by_user" and settled.claimed_at is None
        assert settled.replacement_order_id == replacement["order_id"] and settled.message is not None
        assert settled.message.endswith(f"the replacement {replacement['order_id']} placed before the stop was "
                                        "cancelled")  # fmt: skip
        # and the pass after it has nothing left to do
        await amender.run_pass()
        again = await store.get(done["amend_id"])
        assert again is not None and again.version == settled.version
        assert failures == [replacement["order_id"]]  # (one failure: no cancel was sent again)


async def test_the_replacement_is_not_checked_against_the_originals_reservation_too(backing: Backing) -> None:
    """Risk learns of the original's cancel from execution's events, which may be a moment behind the amend: risk
    counts the original ended (execution's record of it comes with the replacement) before deciding. Here the events
    do not reach risk at all (execution's message broker stopped), so without that the replacement would be refused
    for the cash the original no longer holds."""
    amy = trader()
    settings = backing.settings(paper_opening_cash=Decimal("20000"))
    async with fleet(settings, stoppable_bus=True) as f:
        # 1,000 at 9.50 rests, reserving 9,500.00 + commission 5.00 (the minimum: 9,500 x 0.025% = 2.375) + transfer
        # fee 0.10 (9,500 x 0.001% = 0.095, half-up) = 9,505.10 of the 20,000.00
        original = await place(f, amy, price="9.50")
        assert original["status"] == "submitted"
        bus = f.execution_bus
        assert isinstance(bus, SwitchableBus)
        await bus.stop()  # the original's order.cancelled never reaches risk during the amend
        # 1,800 at 10.99 needs 19,782.00 + commission 5.00 (19,782 x 0.025% = 4.9455: the minimum) + transfer fee 0.20
        # (0.19782) = 19,787.20: within 20,000.00 once the original's 9,505.10 is released, not within the
        # 20,000.00 - 9,505.10 = 10,494.90 left beside it
        done = await amend(f, amy, original["order_id"], price="10.99", qty=1800)
        assert (done["status"], done["replacement_qty"]) == ("replaced", 1800), done
        await bus.restart()


class AnswerLost:
    """Risk decides and places the replacement, but its answer never reaches the amend (as a crash of execution right
    after risk answered): the amend stays `replacing` with the order placed."""

    def __init__(self, inner: RiskPort) -> None:
        self.inner = inner
        self.calls = 0

    async def check_replacement(
        self, original: StoredOrder, principal: Principal, price: Decimal, qty: int
    ) -> tuple[int, dict[str, Any]]:
        return await self.inner.check_replacement(original, principal, price, qty)

    async def submit_replacement(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        await self.inner.submit_replacement(amend, original)
        raise ConnectionError("the answer was lost (test)")


async def test_a_restart_between_the_cancel_and_the_replacements_answer_completes_the_amend_once(
    backing: Backing,
) -> None:
    amy = trader()
    settings = backing.settings()  # one set of secrets for both runs: the restart is the same platform
    async with fleet(settings) as f:
        original = await place(f, amy, price="9.50")
        amender: Amender = f.execution_app.state.amender
        lost = AnswerLost(amender.risk)
        amender.risk = lost
        amender.lease_s = 3600.0  # this process never attempts it again: the restart must
        stopped = await amend(f, amy, original["order_id"], price="9.60")
        assert (stopped["status"], stopped["replacement_order_id"], lost.calls) == ("replacing", None, 1)
        assert (await get_order(f, amy, original["order_id"]))["status"] == "cancelled"
        # risk placed it: one order under the derived client_order_id already
        [placed] = await orders_with_client_id(f, amy, f"amend-{original['order_id']}")
        amender.retry_at.clear()  # (the crashed process's own retry is gone with it)

    async with fleet(settings) as f:
        amender = f.execution_app.state.amender
        amender.lease_s = 0.0  # the crashed attempt's lease (30 s) run out at once for the test
        store = f.execution_app.state.amend_store

        async def replaced() -> bool:
            a = await store.get(stopped["amend_id"])
            return a is not None and a.status.value == "replaced"

        await until(replaced, what="the restarted execution completes the amend")
        done = await store.get(stopped["amend_id"])
        assert done is not None and done.replacement_order_id == placed["order_id"]  # the same order, not a second
        assert len(await orders_with_client_id(f, amy, f"amend-{original['order_id']}")) == 1
        assert (await get_order(f, amy, original["order_id"]))["replaced_by"] == placed["order_id"]

    async with fleet(settings) as f:  # and again: nothing more happens
        await f.execution_app.state.amender.run_pass()
        assert len(await orders_with_client_id(f, amy, f"amend-{original['order_id']}")) == 1
        again = await f.execution_app.state.amend_store.get(stopped["amend_id"])
        assert again is not None and (again.status.value, again.version) == ("replaced", done.version)


# --- the original partly fills first: the paper broker on live quotes, in continuous trading -------------------------


def live(at: datetime, asks: list[tuple[str, int]], *, volume: int) -> LiveQuote:
    return LiveQuote(
        ts_code=CODE, time=at.astimezone(EXCHANGE_TZ), last=Decimal("10.00"), open=Decimal("10.00"),
        high=Decimal("10.05"), low=Decimal("9.95"), pre_close=Decimal("10.00"), volume=volume,
        amount=Decimal("1000000.00"), bid=(QuoteLevel(price=Decimal("9.98"), volume=1000),),
        ask=tuple(QuoteLevel(price=Decimal(p), volume=v) for p, v in asks), limit_up=Decimal("11.00"),
        limit_down=Decimal("9.00"), source="replay",
    )  # fmt: skip


@asynccontextmanager
async def feed(settings: Settings) -> AsyncIterator[AmqpBus]:
    bus = AmqpBus(settings.amqp_url, namespace=settings.bus_namespace, source="data")
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


def in_session(backing: Backing, scope: str) -> Settings:
    """Databases of the test's own (a resting order of another test would take its place in the book), the paper
    broker on live quotes, and a shifted market clock at 10:00 of the latest trading day (continuous trading)."""
    day = datetime.now(EXCHANGE_TZ).date()
    while not open_day(day):
        day -= timedelta(days=1)
    at = datetime(day.year, day.month, day.day, 10, 0, tzinfo=EXCHANGE_TZ)
    return backing.settings(scope=scope, paper_fills="quotes", market_clock="shifted", market_clock_at=at,
                            market_clock_anchor=time.time())  # fmt: skip


async def test_an_original_that_partly_filled_first_is_replaced_for_the_new_total_less_its_fills(
    backing: Backing,
) -> None:
    settings = in_session(backing, "amendpartial")
    amy = trader()
    async with fleet(settings) as f, feed(settings) as bus:
        assert settings.market_clock_at is not None
        now = ShiftedClock(settings.market_clock_at, settings.market_clock_anchor).now
        f.data.clock = now
        # the book: 300 offered at 10.00, 5,000 at 10.01
        await bus.publish(make_event("quotes.snapshot", QuotesSnapshot(as_of=now(), source="replay", quotes=(
            live(now(), [("10.00", 300), ("10.01", 5000)], volume=100_000),)), source="data"))  # fmt: skip
        await until(lambda: f.execution_app.state.broker.live.get(CODE) is not None, what="the round heard")

        # a limit buy of 1,000 at 10.00 takes the 300 offered at its limit on arrival; 700 rest
        original = await place(f, amy, qty=1000, price="10.00")
        assert (original["status"], original["filled_qty"]) == ("partially_filled", 300)

        # a new total at or below the 300 filled: 422, nothing changed
        for qty in (300, 200):
            refused = await amend(f, amy, original["order_id"], expected=422, qty=qty)
            assert (refused["code"], refused["details"]["field"], refused["details"]["filled_qty"]) == (
                "qty_not_above_filled", "qty", 300)  # fmt: skip
        unchanged = await get_order(f, amy, original["order_id"])
        assert (unchanged["status"], unchanged["filled_qty"], unchanged["replaced_by"]) == ("partially_filled", 300,
                                                                                            None)  # fmt: skip

        # a new total of 800: the original is cancelled with its 300, the replacement is for 800 - 300 = 500
        done = await amend(f, amy, original["order_id"], qty=800)
        assert (done["status"], done["filled_qty"], done["replacement_qty"]) == ("replaced", 300, 500)
        cancelled = await get_order(f, amy, original["order_id"])
        assert (cancelled["status"], cancelled["filled_qty"], cancelled["replaced_by"]) == (
            "cancelled", 300, done["replacement_order_id"])  # fmt: skip
        replacement = await get_order(f, amy, done["replacement_order_id"])
        # the quote's 300 at 10.00 went to the original: the replacement rests for its 500
        assert (replacement["qty"], replacement["price"], replacement["filled_qty"], replacement["status"]) == (
            500, "10.00", 0, "submitted")  # fmt: skip
        # what the account holds: the original's 300 (its fills stay), with 500 working: 300 + 500 = the 800 asked
        positions = (await f.execution.get("/v1/positions", headers=f.headers(amy))).json()
        assert [(p["ts_code"], p["qty"]) for p in positions] == [(CODE, 300)]


class PlacedThenRefused:
    """The first attempt places the replacement and its answer is lost; the next is refused (as a decision made
    afresh once the first one's approval has aged out can be, e.g. for the cash that very order holds)."""

    def __init__(self, inner: RiskPort) -> None:
        self.inner = inner
        self.calls = 0

    async def check_replacement(
        self, original: StoredOrder, principal: Principal, price: Decimal, qty: int
    ) -> tuple[int, dict[str, Any]]:
        return await self.inner.check_replacement(original, principal, price, qty)

    async def submit_replacement(self, amend: Amend, original: StoredOrder) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        if self.calls == 1:
            await self.inner.submit_replacement(amend, original)
            raise ConnectionError("the answer was lost (test)")
        reasons = [{"code": "insufficient_cash", "message": "needed 9,605.10, available 0.00"}]
        return 422, {"code": "order_rejected", "message": "rejected",
                     "decision": {"decision_id": "d-afresh", "approved": False, "reasons": reasons}}  # fmt: skip


async def test_a_refusal_of_an_attempt_made_again_does_not_hide_the_replacement_an_earlier_attempt_placed(
    backing: Backing,
) -> None:
    amy = trader()
    async with fleet(backing.settings()) as f:
        original = await place(f, amy, price="9.50")
        amender: Amender = f.execution_app.state.amender
        risk = PlacedThenRefused(amender.risk)
        amender.risk = risk
        first = await amend(f, amy, original["order_id"], price="9.60")
        assert first["status"] == "replacing"
        [placed] = await orders_with_client_id(f, amy, f"amend-{original['order_id']}")
        amender.retry_at.clear()
        amender.lease_s = 0.0  # attempted again at the next pass

        async def settled() -> bool:
            a = await f.execution_app.state.amend_store.get(first["amend_id"])
            return a is not None and a.status.value != "replacing"

        await until(settled, what="the attempt made again")
        done = await f.execution_app.state.amend_store.get(first["amend_id"])
        assert risk.calls >= 2
        assert done is not None and (done.status.value, done.replacement_order_id) == ("replaced", placed["order_id"])
