"""A round's orders sent in batches (`batch_orders` a request, risk's `POST /v1/order-batches`): each order is sent
once, in the round's order, carrying the sleeve its predecessors in the round leave; what a batch leaves unanswered
(the batch not taken, an item the path could not take now, an item refused only for the order rate, an item refused
for its sleeve's cash after an order before it was refused) is sent alone afterwards, and the book, the settlements
and on_order come out as one order at a time gives them. Here a path plays risk: it records every batch (its id, its
orders, the sleeves as risk's request model reads them) and every order sent alone, and answers each order by a
script, else (with `check_cash`) by risk's sleeve check of a buy's cost against the cash its sleeve carries, else by
placing it and filling it in full at its limit. Then `RestTradingPath.place_batch`'s reading of risk's answers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from services.risk.schemas import CarriedSleeve, OrderBatchRequest
from services.strategy.book import Intent, Plan, client_order_id
from services.strategy.runner import InstanceRun
from services.strategy.trading import PathUnavailable, Placed, Refused, RestTradingPath, paper_fill_of
from shared.core.domain import to_fen
from shared.core.market.matching import KIND_SHARES, R_NONE
from shared.platform.http import ServiceDirectory
from shared.platform.request_model import CLIENT_ORDER_ID_PATTERN
from shared.platform.settings import Settings
from shared.research.engine import load_bars
from shared.research.engine.config import BacktestConfig
from shared.research.strategy import Strategy, StrategyContext
from shared.research.strategy.context import OrderEvent
from tests.unit.strategy.test_runner_parity import ACCOUNT, INSTANCE, FillingPath, MemoryBooks

Answer = Placed | Refused | PathUnavailable
BAR = "20230103"  # the bar key of the hand-made orders
CIDS = [f"{INSTANCE}-init-{k}" for k in range(5)]  # the five on_init orders of BuysFiveOnInit, in round order


def price_limit() -> Refused:
    return Refused("order_rejected", "price_limit: 12.34 is above the limit-up 11.22", ("price_limit",))


def rate_only() -> Refused:
    return Refused("order_rejected", "order_rate_second: 101 orders and cancels in one second with this one (at most "
                   "100)", ("order_rate_second",))  # fmt: skip


class BatchPath(FillingPath):
    """Risk with batches. `script`: client_order_id -> the answers of its attempts in turn (batched or alone); an
    order without one left is refused for its sleeve's cash when `check_cash` and the buy costs more than its sleeve's
    `cash_available`, else placed and filled in full. The first `batches_down` batches are not taken as a whole."""

    def __init__(
        self, script: Mapping[str, list[Answer]] | None = None, *, batches_down: int = 0, check_cash: bool = False
    ) -> None:
        super().__init__()
        self.script = {cid: list(answers) for cid, answers in (script or {}).items()}
        self.batches_down = batches_down
        self.check_cash = check_cash
        self.batches: list[tuple[str, list[str], list[CarriedSleeve]]] = []  # (batch_id, cids, sleeves)
        self.alone: list[tuple[str, CarriedSleeve]] = []  # the orders sent one at a time: (cid, sleeve)

    def _answer(self, plan: Plan, carried: CarriedSleeve) -> Answer | None:
        queued = self.script.get(plan.client_order_id)
        if queued:
            return queued.pop(0)
        if self.check_cash and plan.side == "buy":
            assert self.run is not None
            amount = np.array([plan.qty * plan.price_fen], dtype=np.int64)
            fees = self.run.book.fees
            cost = int(amount[0] + fees.commission(amount)[0] + fees.transfer(amount)[0])
            if cost > to_fen(carried.cash_available):
                return Refused("order_rejected", f"insufficient_strategy_cash: the sleeve has {carried.cash_available}",
                               ("insufficient_strategy_cash",))  # fmt: skip
        return None

    async def place_batch(
        self,
        batch_id: str,
        plans: Sequence[Plan],
        instance_id: str,
        paper_fill: Mapping[str, Any] | None,
        sleeves: Sequence[Mapping[str, Any]],
    ) -> list[Answer]:
        carried = [CarriedSleeve.model_validate(s) for s in sleeves]  # as risk reads them
        self.batches.append((batch_id, [p.client_order_id for p in plans], carried))
        if len(self.batches) <= self.batches_down:
            raise PathUnavailable("the batch was not taken (risk_unavailable)")
        out: list[Answer] = []
        for plan, sleeve, c in zip(plans, sleeves, carried, strict=True):
            answer = self._answer(plan, c)
            out.append(answer if answer is not None else await super().place(plan, instance_id, sleeve=sleeve))
        return out

    async def place(
        self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None
    ) -> Placed | Refused:  # type: ignore[override]
        carried = CarriedSleeve.model_validate(sleeve)
        self.alone.append((plan.client_order_id, carried))
        answer = self._answer(plan, carried)
        if isinstance(answer, PathUnavailable):
            raise answer
        if answer is not None:
            return answer
        return await super().place(plan, instance_id, sleeve=sleeve)


class Listens(Strategy):
    """Places nothing itself; records what on_order tells it."""

    name = "listens"

    def on_init(self, ctx: StrategyContext) -> None:
        self.heard: list[OrderEvent] = []

    def on_order(self, ctx: StrategyContext, event: OrderEvent) -> None:
        self.heard.append(event)


class BuysFiveOnInit(Listens):
    """A lot of each of its first five symbols, placed in on_init: one round of five buys at the first session."""

    name = "buys_five_on_init"

    def on_init(self, ctx: StrategyContext) -> None:
        super().on_init(ctx)
        for j in range(5):
            ctx.buy(j, 100)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from services.data.demo import generate_demo_market

    daily = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    first = sorted(daily["ts_code"].unique())[:6]
    days = sorted(daily["trade_date"].unique())[:2]
    return daily[daily["ts_code"].isin(first) & daily["trade_date"].isin(days)]


def _config(frame: pd.DataFrame) -> BacktestConfig:
    days = sorted(pd.to_datetime(frame["trade_date"]).dt.date.unique())
    # the fees spelled out (the defaults): commission 0.025% at least 5.00, transfer fee 0.001%; no stamp on buys
    return BacktestConfig(initial_cash=Decimal("1000000"), calendar=tuple(days), commission_rate=Decimal("0.00025"),
                          min_commission=Decimal("5"), transfer_fee_rate=Decimal("0.00001"))  # fmt: skip


def _run(bars: pd.DataFrame, strategy: Strategy, path: FillingPath, batch_orders: int) -> InstanceRun:
    config = _config(bars)
    run = InstanceRun(INSTANCE, strategy, load_bars(bars, config), config, path, MemoryBooks(), account_id=ACCOUNT,
                      batch_orders=batch_orders, fill_wait_s=0.05)  # fmt: skip
    path.run = run
    return run


def _first_session(bars: pd.DataFrame, path: FillingPath, batch_orders: int) -> tuple[BuysFiveOnInit, InstanceRun]:
    """BuysFiveOnInit's first session: its five on_init buys, one round."""

    async def go() -> tuple[BuysFiveOnInit, InstanceRun]:
        strategy = BuysFiveOnInit()
        run = _run(bars, strategy, path, batch_orders)
        await run.prepare()
        await run.session(0)
        return strategy, run

    return asyncio.run(go())


def _heard(strategy: Listens) -> list[tuple[str, str, int]]:
    return [(e.ts_code, e.status, e.filled_qty) for e in strategy.heard]


def _all_filled(strategy: BuysFiveOnInit, run: InstanceRun, path: FillingPath) -> None:
    """What the user sees after the round: each order placed once, on_order told in the round's order, the book."""
    codes = run.book.panel.codes
    assert path.placed == 5 and sorted(path.by_cid) == CIDS  # one order each at execution
    assert sorted(f.client_order_id for f in path.fills) == CIDS  # one fill each
    assert _heard(strategy) == [(codes[j], "filled", 100) for j in range(5)]  # in the round's order
    assert [int(q) for q in run.book.positions] == [100, 100, 100, 100, 100, 0]
    assert run.orders_sent == 5 and run.sent == {} and run.in_flight == {} and run.book.pending == []


# --- the batches of a round ----------------------------------------------------------------------------------------
def test_a_round_of_five_goes_in_batches_of_two_in_its_order_each_order_once(bars: pd.DataFrame) -> None:
    path = BatchPath()
    strategy, run = _first_session(bars, path, batch_orders=2)
    # 5 orders, 2 a batch: 2 + 2 + 1, in the round's order; nothing sent alone
    assert [cids for _, cids, _ in path.batches] == [CIDS[0:2], CIDS[2:4], CIDS[4:5]]
    assert path.alone == []
    _all_filled(strategy, run, path)
    ids = [batch_id for batch_id, _, _ in path.batches]
    # named by their first order and size (risk's batch_id: the client_order_id alphabet, at most 64 characters)
    assert [i.split(".")[0] for i in ids] == [f"{CIDS[0]}+2", f"{CIDS[2]}+2", f"{CIDS[4]}+1"]
    assert all(re.fullmatch(CLIENT_ORDER_ID_PATTERN, i) for i in ids)
    assert len(set(ids)) == 3
    # the same round again (a restart runs the bar again): the same batch ids, so risk finds its answers by them
    again = BatchPath()
    _first_session(bars, again, batch_orders=2)
    assert [batch_id for batch_id, _, _ in again.batches] == ids


def test_batch_orders_one_sends_one_at_a_time_as_before(bars: pd.DataFrame) -> None:
    path = BatchPath()
    strategy, run = _first_session(bars, path, batch_orders=1)
    assert path.batches == []
    assert [cid for cid, _ in path.alone] == CIDS
    _all_filled(strategy, run, path)


@pytest.mark.parametrize("batches_down", [1, 3])
def test_a_batch_not_taken_has_its_orders_sent_alone_each_once(bars: pd.DataFrame, batches_down: int) -> None:
    path = BatchPath(batches_down=batches_down)
    strategy, run = _first_session(bars, path, batch_orders=2)
    assert [cids for _, cids, _ in path.batches] == [CIDS[0:2], CIDS[2:4], CIDS[4:5]]  # each batch tried once
    # the orders of the batches not taken, alone, in the round's order: the first batch's (1), or all five (3)
    assert [cid for cid, _ in path.alone] == (CIDS[0:2] if batches_down == 1 else CIDS)
    _all_filled(strategy, run, path)


def test_an_order_the_path_could_not_take_now_is_sent_alone_afterwards(bars: pd.DataFrame) -> None:
    path = BatchPath({CIDS[1]: [PathUnavailable("execution_unavailable: the execution service did not answer")]})
    strategy, run = _first_session(bars, path, batch_orders=2)
    assert [cids for _, cids, _ in path.batches] == [CIDS[0:2], CIDS[2:4], CIDS[4:5]]
    assert [cid for cid, _ in path.alone] == [CIDS[1]]
    _all_filled(strategy, run, path)


def test_an_order_refused_only_for_the_order_rate_is_sent_again_alone_until_placed(bars: pd.DataFrame) -> None:
    # refused for the rate in its batch, and once more alone (the next second's try places it)
    path = BatchPath({CIDS[3]: [rate_only(), rate_only()]})
    strategy, run = _first_session(bars, path, batch_orders=2)
    assert [cids for _, cids, _ in path.batches] == [CIDS[0:2], CIDS[2:4], CIDS[4:5]]
    assert [cid for cid, _ in path.alone] == [CIDS[3], CIDS[3]]
    _all_filled(strategy, run, path)  # not rejected: "not now" is not "no"


def test_an_order_refused_for_anything_else_is_rejected_and_not_sent_again(bars: pd.DataFrame) -> None:
    path = BatchPath({CIDS[2]: [price_limit()]})
    strategy, run = _first_session(bars, path, batch_orders=2)
    codes = run.book.panel.codes
    assert path.alone == [] and path.placed == 4
    assert _heard(strategy) == [(codes[0], "filled", 100), (codes[1], "filled", 100), (codes[2], "rejected", 0),
                                (codes[3], "filled", 100), (codes[4], "filled", 100)]  # fmt: skip
    assert strategy.heard[2].reason == "order_rejected: price_limit: 12.34 is above the limit-up 11.22"
    assert [int(q) for q in run.book.positions] == [100, 100, 0, 100, 100, 0]
    assert run.sent == {} and run.in_flight == {} and run.book.pending == []


# --- the sleeves the orders carry (hand-made orders, hand-worked fen) -----------------------------------------------
def _plan(run: InstanceRun, sym: int, qty: int, price_fen: int) -> Plan:
    intent = Intent(100 + sym, sym, KIND_SHARES, qty, BAR, sym)
    return Plan(intent, client_order_id(INSTANCE, BAR, sym), run.book.panel.codes[sym], "buy", qty, price_fen, R_NONE)


def _send(
    bars: pd.DataFrame, path: BatchPath, batch_orders: int, orders: list[tuple[int, int]]
) -> tuple[Listens, InstanceRun, list[Plan]]:
    """One round of buys (qty, price in fen), symbol k for the k-th, through `_send` at the first session."""

    async def go() -> tuple[Listens, InstanceRun, list[Plan]]:
        strategy = Listens()
        run = _run(bars, strategy, path, batch_orders)
        await run.prepare()
        run.book.begin_day(0)
        plans = [_plan(run, k, qty, price) for k, (qty, price) in enumerate(orders)]
        await run._send(plans)
        return strategy, run, plans

    return asyncio.run(go())


def test_each_order_of_a_batch_carries_the_cash_its_predecessors_leave(bars: pd.DataFrame) -> None:
    path = BatchPath()
    strategy, run, _ = _send(bars, path, 2, [(1000, 1234), (30_000, 2500), (100, 1000)])
    (_, _, first), (_, _, second) = path.batches
    # order 1: 1000 x 12.34 = 1,234,000 fen; commission 0.025% = 308.5 -> at least 500; transfer 0.001% = 12.34 -> 12
    #   reserves 1,234,000 + 500 + 12 = 1,234,512 fen
    # order 2: 30,000 x 25.00 = 75,000,000 fen; commission 18,750; transfer 750 -> 75,019,500 fen
    # the first batch: order 1 sees the whole 1,000,000.00; order 2 sees 100,000,000 - 1,234,512 = 98,765,488 fen
    assert [s.cash_available for s in first] == [Decimal("1000000.00"), Decimal("987654.88")]
    # the second batch (orders 1 and 2 filled, their cost paid): 98,765,488 - 75,019,500 = 23,745,988 fen
    assert [s.cash_available for s in second] == [Decimal("237459.88")]
    assert all((s.instance_id, s.account_id, s.state) == (INSTANCE, ACCOUNT, "running") for s in [*first, *second])
    # order 3: 100 x 10.00 = 100,000 fen + 500 commission (the minimum) + 1 transfer = 100,501
    assert run.book.cash_fen == 23_745_988 - 100_501
    codes = run.book.panel.codes
    assert _heard(strategy) == [(codes[0], "filled", 1000), (codes[1], "filled", 30_000), (codes[2], "filled", 100)]


def test_an_order_refused_for_cash_after_a_refusal_in_its_batch_is_checked_again_alone(bars: pd.DataFrame) -> None:
    # order 1 is refused (price limit); order 2's sleeve in the batch counted order 1's reservation (1,234,512 fen:
    # 987,654.88 left), which order 2 does not fit: 39,500 x 25.00 = 98,750,000 + commission 24,687.5 -> 24,688
    # + transfer 987.5 -> 988 = 98,775,676 fen > 98,765,488. Alone, without order 1, it has 1,000,000.00: it fits.
    path = BatchPath({client_order_id(INSTANCE, BAR, 0): [price_limit()]}, check_cash=True)
    strategy, run, plans = _send(bars, path, 2, [(1000, 1234), (39_500, 2500)])
    [(_, cids, carried)] = path.batches
    assert cids == [plans[0].client_order_id, plans[1].client_order_id]
    assert [s.cash_available for s in carried] == [Decimal("1000000.00"), Decimal("987654.88")]
    assert [(cid, s.cash_available) for cid, s in path.alone] == [(plans[1].client_order_id, Decimal("1000000.00"))]
    codes = run.book.panel.codes
    assert _heard(strategy) == [(codes[0], "rejected", 0), (codes[1], "filled", 39_500)]
    assert strategy.heard[0].reason.startswith("order_rejected: price_limit")
    assert run.book.cash_fen == 100_000_000 - 98_775_676
    assert path.placed == 1


def test_an_order_refused_for_cash_with_no_refusal_before_it_is_rejected_not_sent_again(bars: pd.DataFrame) -> None:
    # order 2: 50,000 x 25.00 = 125,000,000 fen, more than the whole 100,000,000: refused, and final
    path = BatchPath(check_cash=True)
    strategy, run, _ = _send(bars, path, 2, [(1000, 1234), (50_000, 2500)])
    assert path.alone == []
    codes = run.book.panel.codes
    assert _heard(strategy) == [(codes[0], "filled", 1000), (codes[1], "rejected", 0)]
    assert "insufficient_strategy_cash" in strategy.heard[1].reason


@pytest.mark.parametrize("batch_orders", [1, 2, 3])
def test_a_sleeve_refusal_caused_by_an_order_of_an_earlier_batch_later_refused_is_checked_again(
    bars: pd.DataFrame, batch_orders: int
) -> None:
    """Order 1 refused (price limit); order 2 (125,000,000 fen, more than the whole cash) refused for cash in its batch
    and alone; order 3 (1000 x 12.34: 1,234,512 fen) fits the cash once order 2 is refused, as one at a time. With
    batches of 2, order 3's batch was sent while order 2 was still to be sent alone: its sleeve counted order 2."""
    path = BatchPath({client_order_id(INSTANCE, BAR, 0): [price_limit()]}, check_cash=True)
    strategy, run, plans = _send(bars, path, batch_orders, [(1000, 1234), (50_000, 2500), (1000, 1234)])
    codes = run.book.panel.codes
    assert [(e.ts_code, e.status) for e in strategy.heard] == [(codes[0], "rejected"), (codes[1], "rejected"),
                                                               (codes[2], "filled")]  # fmt: skip
    assert "insufficient_strategy_cash" in strategy.heard[1].reason
    assert run.book.cash_fen == 100_000_000 - 1_234_512
    assert path.placed == 1
    # sent alone: one at a time, all three; batched, orders 2 and 3 — in one batch of 3 each was refused for cash
    # after a refusal before it in the batch; in batches of 2, order 3's sleeve counted order 2, which was still to
    # be sent alone (and then refused)
    alone = {1: [0, 1, 2], 2: [1, 2], 3: [1, 2]}[batch_orders]
    assert [cid for cid, _ in path.alone] == [plans[k].client_order_id for k in alone]


class HangingPath(BatchPath):
    """A batch whose answer never comes."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def place_batch(
        self,
        batch_id: str,
        plans: Sequence[Plan],
        instance_id: str,
        paper_fill: Mapping[str, Any] | None,
        sleeves: Sequence[Mapping[str, Any]],
    ) -> list[Answer]:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")


def test_a_round_cancelled_in_its_batch_leaves_nothing_reserved_in_the_sleeve(bars: pd.DataFrame) -> None:
    async def go() -> tuple[InstanceRun, int]:
        path = HangingPath()
        run = _run(bars, Listens(), path, 2)
        await run.prepare()
        run.book.begin_day(0)
        sending = asyncio.create_task(run._send([_plan(run, 0, 1000, 1234), _plan(run, 1, 1000, 1234)]))
        await path.entered.wait()
        during = run.sleeve()["cash_available_fen"]
        sending.cancel()  # e.g. the service shutting down
        with pytest.raises(asyncio.CancelledError):
            await sending
        return run, during

    run, during = asyncio.run(go())
    # while the batch was out, both reserved: 2 x (1,234,000 + 500 commission + 12 transfer) = 2,469,024 fen
    assert during == 100_000_000 - 2_469_024
    # cancelled: no answer came, nothing is followed as sent, and the sleeve offers the whole cash again
    assert run.in_flight == {} and run.sent == {}
    assert run.sleeve()["cash_available_fen"] == run.book.cash_fen == 100_000_000


# --- Refused.rate_only and RestTradingPath.place_batch ---------------------------------------------------------------
def test_rate_only_is_a_refusal_for_the_order_rate_alone() -> None:
    assert rate_only().rate_only
    assert not price_limit().rate_only
    assert not Refused("order_rejected", "x", ("order_rate_second", "price_limit")).rate_only  # also a "no"
    assert not Refused("order_rejected", "x", ("order_rate_day",)).rate_only  # not before tomorrow: a "no" today
    assert not Refused("insufficient_cash", "execution refused it").rate_only  # no risk reasons at all


def _plans() -> list[Plan]:
    return [
        Plan(Intent(k, k, KIND_SHARES, 100, BAR, k), client_order_id(INSTANCE, BAR, k), code, "buy", 100, 1234, 0)
        for k, code in enumerate(["600000.SH", "000001.SZ", "000002.SZ", "600519.SH", "300750.SZ"])
    ]


def _sleeve(cash: str) -> dict[str, Any]:
    return {"instance_id": INSTANCE, "account_id": ACCOUNT, "state": "running", "cash_available": cash,
            "position": None, "session": "2023-01-03"}  # fmt: skip


async def _place_batch(handler: Any, plans: list[Plan] | None = None) -> list[Answer]:
    plans = _plans() if plans is None else plans
    services = ServiceDirectory(Settings(_env_file=None), {"risk": httpx.MockTransport(handler)})  # type: ignore[call-arg]
    try:
        path = RestTradingPath(services, "an-internal-secret-of-32-bytes-or-more")
        sleeves = [_sleeve(f"{1000 - k}.00") for k in range(len(plans))]
        return await path.place_batch("b-1", plans, INSTANCE, paper_fill_of(BacktestConfig()), sleeves)
    finally:
        await services.aclose()


async def test_rest_place_batch_reads_each_items_answer() -> None:
    seen: list[OrderBatchRequest] = []

    def risk(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/v1/order-batches")
        body = OrderBatchRequest.model_validate(json.loads(request.content))  # as risk reads it
        seen.append(body)
        cids = [o.client_order_id for o in body.orders]
        items = [
            {"index": 0, "client_order_id": cids[0], "status": "placed",
             "order": {"order_id": "o-1", "status": "filled", "filled_qty": 100, "reason": None}},
            {"index": 1, "client_order_id": cids[1], "status": "refused", "code": "order_rejected", "http_status": 422,
             "message": "refused", "reasons": [{"code": "price_limit", "message": "12.34 is above 11.22"}]},
            {"index": 2, "client_order_id": cids[2], "status": "refused", "code": "order_rejected", "http_status": 422,
             "message": "refused", "reasons": [{"code": "order_rate_second", "message": "101 in one second"}]},
            {"index": 3, "client_order_id": cids[3], "status": "refused", "code": "insufficient_cash",
             "http_status": 409, "message": "the account's cash does not pay it"},
            {"index": 4, "client_order_id": cids[4], "status": "failed", "code": "execution_unavailable",
             "http_status": 503, "message": "the execution service did not answer"},
        ]  # fmt: skip
        return httpx.Response(200, json={"batch_id": body.batch_id, "items": items, "placed": 1, "refused": 3,
                                         "failed": 1, "complete": False})  # fmt: skip

    got = await _place_batch(risk)
    [body] = seen
    assert body.batch_id == "b-1"
    assert [o.client_order_id for o in body.orders] == [p.client_order_id for p in _plans()]
    first = body.orders[0]
    assert (first.ts_code, first.qty, first.price, first.strategy_instance_id) == ("600000.SH", 100, Decimal("12.34"),
                                                                                   INSTANCE)  # fmt: skip
    # each order with its own sleeve: 1000.00, 999.00, ...
    assert [o.sleeve.cash_available for o in body.orders if o.sleeve] == [Decimal(1000 - k) for k in range(5)]
    placed, price, rate, cash, failed = got
    assert placed == Placed("o-1", "filled", 100, None)
    assert price == Refused("order_rejected", "price_limit: 12.34 is above 11.22", ("price_limit",))
    assert not price.rate_only  # type: ignore[union-attr]
    assert rate == Refused("order_rejected", "order_rate_second: 101 in one second", ("order_rate_second",))
    assert rate.rate_only  # type: ignore[union-attr]
    assert cash == Refused("insufficient_cash", "the account's cash does not pay it", ())
    assert isinstance(failed, PathUnavailable) and str(failed).startswith("execution_unavailable")


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (409, {"code": "batch_id_reused", "message": "other orders under this batch_id"}),
        (422, {"code": "batch_too_large", "message": "at most 100 orders"}),
        (503, {"code": "risk_unavailable", "message": "the risk service is unavailable"}),
        (200, {"batch_id": "b-1", "items": [], "placed": 0, "refused": 0, "failed": 0, "complete": True}),
        (502, "<html>bad gateway</html>"),
    ],
)
async def test_rest_place_batch_a_batch_not_taken_is_path_unavailable(status: int, payload: Any) -> None:
    def risk(request: httpx.Request) -> httpx.Response:
        if isinstance(payload, str):
            return httpx.Response(status, text=payload)
        return httpx.Response(status, json=payload)

    with pytest.raises(PathUnavailable) as caught:
        await _place_batch(risk)
    # risk's code, or the HTTP status when its answer has none (a 200 without an answer for each order, a proxy's page)
    code = payload.get("code", f"http_{status}") if isinstance(payload, dict) else f"http_{status}"
    assert str(caught.value) == f"the batch was not taken ({code})"


async def test_rest_place_batch_risk_not_answering_is_path_unavailable() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(PathUnavailable, match="risk did not answer"):
        await _place_batch(down)


class LostAnswerPath(BatchPath):
    """Execution took `lost` in its batch, but the batch's answer for it was lost (failed: its outcome unknown).
    Sent alone later, after its approval's TTL, risk decides it afresh and refuses it (say, for the cash the order
    execution holds already took): only execution's record says it is placed."""

    def __init__(self, lost: str) -> None:
        super().__init__()
        self.lost = lost

    async def place_batch(self, batch_id: str, plans: Sequence[Plan], *args: Any) -> list[Answer]:
        got = await super().place_batch(batch_id, plans, *args)
        return [PathUnavailable("execution_unavailable: the answer was lost") if p.client_order_id == self.lost
                else a for p, a in zip(plans, got, strict=True)]  # fmt: skip

    async def place(
        self, plan: Plan, instance_id: str, paper_fill: object = None, sleeve: Any = None
    ) -> Placed | Refused:  # type: ignore[override]
        if plan.client_order_id == self.lost and plan.client_order_id in self.by_cid:
            self.alone.append((plan.client_order_id, CarriedSleeve.model_validate(sleeve)))
            return Refused("order_rejected", "insufficient_strategy_cash: the sleeve has 0.00",
                           ("insufficient_strategy_cash",))  # fmt: skip
        return await super().place(plan, instance_id, paper_fill, sleeve)


def test_an_order_whose_batch_answer_was_lost_is_a_retry_alone_and_execution_says_it_is_placed(
    bars: pd.DataFrame,
) -> None:
    path = LostAnswerPath(CIDS[1])
    strategy, run = _first_session(bars, path, batch_orders=2)
    assert [cid for cid, _ in path.alone] == [CIDS[1]]  # sent alone once, refused by a fresh decision
    _all_filled(strategy, run, path)  # yet placed once and filled, as execution lists it: not "rejected"
