"""The fault suite's reconciliation (tests/chaos/orders.py) counts what it should: checked here on made-up answers,
store rows and events, so that its zeros in `make chaos` mean something. Pure; runs in `make test` too."""

from __future__ import annotations

from shared.platform.events.envelope import Envelope
from tests.chaos.orders import Auditor, Figures, Sent, count


def _order(order_id: str, cid: str, status: str = "filled", filled: int = 100) -> dict[str, object]:
    return {
        "order_id": order_id,
        "client_order_id": cid,
        "account_id": "a1",
        "status": status,
        "qty": 100,
        "filled_qty": filled,
    }


async def _deliver(auditor: Auditor, order_id: str, *, status: str = "filled", fills: int = 1) -> Envelope:
    final = Envelope(type=f"order.{status}", source="t", payload={"order_id": order_id, "status": status})
    await auditor.handle(final)
    for n in range(fills):
        payload = {"order_id": order_id, "trade_id": f"{order_id}-t{n}", "qty": 100 // fills}
        await auditor.handle(Envelope(type="trade.executed", source="t", payload=payload))
    return final


async def test_a_clean_run_counts_zero_and_redelivered_events_are_not_duplicates() -> None:
    auditor = Auditor()
    sent = [Sent("c1", "a1", order_id="o1", status_code=201), Sent("c2", "a1", code="price_limit", status_code=422)]
    final = await _deliver(auditor, "o1")
    await auditor.handle(final)  # the same event delivered again (at least once): still one fact
    figures = count(Figures("clean"), sent, 3, [_order("o1", "c1")], {"o1": [100]}, auditor)
    assert (figures.sent, figures.accepted, figures.refused, figures.retried) == (2, 1, 1, 3)
    assert figures.refused_codes == {"price_limit": 1}
    assert (figures.lost, figures.duplicated, figures.stuck, figures.events_missing) == (0, 0, 0, 0)
    assert figures.clean


async def test_lost_duplicated_stuck_and_missing_events_are_each_counted() -> None:
    auditor = Auditor()
    sent = [
        Sent("lost", "a1", order_id="o-lost", status_code=201),  # accepted, not in the store
        Sent("twice", "a1", order_id="o-t1", status_code=201),  # two orders for one client_order_id
        Sent("stuck", "a1", order_id="o-stuck", status_code=201),  # never leaves "accepted"
        Sent("silent", "a1", order_id="o-silent", status_code=201),  # filled, no event delivered
        Sent("overfilled", "a1", order_id="o-over", status_code=201),  # two fills of 100 for an order of 100
    ]
    orders = [
        _order("o-t1", "twice"),
        _order("o-t2", "twice"),
        _order("o-stuck", "stuck", status="accepted", filled=0),
        _order("o-silent", "silent"),
        _order("o-over", "overfilled"),
    ]
    fills = {"o-t1": [100], "o-t2": [100], "o-silent": [100], "o-over": [100, 100]}
    for order_id in ("o-t1", "o-t2", "o-over"):
        await _deliver(auditor, order_id)
    figures = count(Figures("faulty"), sent, 0, orders, fills, auditor)
    assert figures.lost == 1
    assert figures.duplicated == 2  # the second order for "twice"; the fills beyond o-over's quantity
    assert figures.stuck == 1
    assert figures.events_missing == 2  # o-silent's order.filled and its trade
    assert not figures.clean


async def test_two_final_events_for_one_order_and_an_order_nobody_placed_are_duplicates() -> None:
    auditor = Auditor()
    await _deliver(auditor, "o1")
    await _deliver(auditor, "o1", fills=0)  # a second order.filled with its own event id: the fact published twice
    sent = [Sent("c1", "a1", order_id="o1", status_code=201)]
    orders = [_order("o1", "c1"), _order("o9", "c9")]
    await _deliver(auditor, "o9")
    figures = count(Figures("ghost"), sent, 0, orders, {"o1": [100], "o9": [100]}, auditor)
    assert (figures.lost, figures.duplicated, figures.stuck, figures.events_missing) == (0, 2, 0, 0)
