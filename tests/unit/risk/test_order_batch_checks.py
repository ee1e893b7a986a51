"""A batch's checks before anything is placed (services/risk/batches.py): its size, a client_order_id twice, an item
a single order would be refused for, each naming the field; and the digest a batch sent again is compared by."""

from typing import Any

import pytest

from services.risk.batches import OrderBatches, batch_digest
from services.risk.schemas import OrderBatchRequest
from shared.platform.errors import ServiceError
from shared.platform.internal_auth import Principal

ALICE = Principal("alice", "trader", "acct-alice")


def _order(cid: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"client_order_id": cid, "ts_code": "600000.SH", "side": "buy", "order_type": "limit",
                            "qty": 100, "price": "10.50"}  # fmt: skip
    body.update(kw)
    return body


def _batch(*orders: dict[str, Any]) -> OrderBatchRequest:
    return OrderBatchRequest.model_validate({"batch_id": "b-1", "orders": list(orders)})


def _refusal(batch: OrderBatchRequest, principal: Principal = ALICE, max_orders: int = 3) -> ServiceError:
    batches = OrderBatches(desk=None, store=None, max_orders=max_orders)  # type: ignore[arg-type]
    with pytest.raises(ServiceError) as caught:
        batches._check(batch.orders, principal)
    return caught.value


def test_the_digest_compares_terms_not_how_they_were_written() -> None:
    written = batch_digest(_batch(_order("c-1", price="10.50"), _order("c-2", ts_code="600000.sh")).orders)
    same = batch_digest(_batch(_order("c-1", price=10.5), _order("c-2", price="10.5")).orders)
    assert written == same
    assert batch_digest(_batch(_order("c-1", qty=200), _order("c-2")).orders) != written
    assert batch_digest(_batch(_order("c-2"), _order("c-1")).orders) != written  # the order of the items counts
    assert batch_digest(_batch(_order("c-1", price="10.51"), _order("c-2")).orders) != written


def test_an_instances_sleeve_is_not_part_of_the_digest() -> None:
    instance = "a" * 32
    sleeve = {"instance_id": instance, "account_id": "acct-alice", "state": "running", "cash_available": "100.00"}
    first = _batch(_order("c-1", strategy_instance_id=instance, sleeve=sleeve))
    later = _batch(_order("c-1", strategy_instance_id=instance, sleeve={**sleeve, "cash_available": "-5.00"}))
    assert batch_digest(first.orders) == batch_digest(later.orders)


def test_more_orders_than_the_limit_is_batch_too_large_naming_orders() -> None:
    refusal = _refusal(_batch(*(_order(f"c-{i}") for i in range(4))), max_orders=3)
    assert (refusal.code, refusal.status_code, refusal.details) == (
        "batch_too_large", 422, {"field": "orders", "max_orders": 3},
    )  # fmt: skip
    assert "4 orders" in refusal.message


def test_a_client_order_id_twice_names_the_second_item() -> None:
    refusal = _refusal(_batch(_order("c-1"), _order("c-2"), _order("c-1")))
    assert (refusal.code, refusal.status_code, refusal.details) == (
        "duplicate_client_order_id", 422, {"field": "orders.2.client_order_id", "index": 2},
    )  # fmt: skip


def test_an_item_a_single_order_would_be_refused_for_names_the_item() -> None:
    refusal = _refusal(_batch(_order("c-1"), _order("c-2", strategy_instance_id="b" * 32)))
    assert (refusal.code, refusal.status_code, refusal.details) == ("forbidden", 403, {"field": "orders.1", "index": 1})
    strategy = Principal("svc:strategy", "service")
    bare = _refusal(_batch(_order("c-1", strategy_instance_id="b" * 32)), strategy)
    assert (bare.code, bare.status_code, bare.details) == (
        "sleeve_required", 422, {"field": "orders.0.sleeve", "index": 0},
    )  # fmt: skip
    viewer = _refusal(_batch(_order("c-1")), Principal("vera", "viewer", "acct-vera"))
    assert (viewer.code, viewer.status_code) == ("forbidden", 403)
