"""The sleeve each order of an instance carries to risk (`InstanceRun.carried_sleeve`, risk's `OrderRequest.sleeve`):
computed from the book the moment the order is sent, with the semantics risk's per-order read of the strategy service
had — the cash the instance's other open buys and the buys before it in its round leave (never its own reservation),
its position in the order's symbol sellable in the session being sent for (less what its resting sells sell), its
account and its state. Amounts worked out by hand from the fee schedule (commission 0.025%, at least 5.00 CNY;
transfer fee 0.001%)."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest

from services.risk.schemas import CarriedSleeve
from services.strategy.book import Intent, Plan
from services.strategy.runner import InstanceRun
from shared.core.market.matching import KIND_SHARES
from shared.research.engine import load_bars
from shared.research.strategy import CrossSection, Strategy, StrategyContext
from tests.unit.strategy.test_runner_parity import ACCOUNT, INSTANCE, FillingPath, MemoryBooks, _config


class BuysOnce(Strategy):
    """Bar 0: buys 1,000 shares of symbol 0 (filled in the next session at its price)."""

    name = "buys_once"

    def on_bar(self, ctx: StrategyContext, bar: CrossSection) -> None:
        if ctx.day_index == 0:
            ctx.buy(0, 1000)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from services.data.demo import generate_demo_market
    from shared.platform.settings import Settings

    daily = generate_demo_market(Settings(_env_file=None)).daily  # type: ignore[call-arg]
    first = sorted(daily["ts_code"].unique())[:2]
    days = sorted(daily["trade_date"].unique())[:4]
    return daily[daily["ts_code"].isin(first) & daily["trade_date"].isin(days)]


def _played(bars: pd.DataFrame) -> InstanceRun:
    """Sessions 0 and 1 played: the 1,000 shares were bought in session 1 (not sellable in it, T+1)."""

    async def go() -> InstanceRun:
        path = FillingPath()
        config = _config(bars)
        run = InstanceRun(INSTANCE, BuysOnce(), load_bars(bars, config), config, path, MemoryBooks(),
                          account_id=ACCOUNT)  # fmt: skip
        path.run = run
        await run.prepare()
        for t in range(2):
            await path.open_session(run.book.panel.dates[t])
            await run.session(t)
        return run

    return asyncio.run(go())


def _plan(run: InstanceRun, cid: str, side: str, qty: int, price_fen: int) -> Plan:
    return Plan(Intent(-1, 0, KIND_SHARES, qty, "20990101", 0), cid, run.book.panel.codes[0], side, qty, price_fen, 0)


def _carried(run: InstanceRun, plan: Plan) -> dict[str, Any]:
    sleeve = run.carried_sleeve(plan)
    CarriedSleeve.model_validate(sleeve)  # what risk reads: its request model takes it as it is
    return sleeve


def test_the_sleeve_carries_the_instance_its_account_its_state_and_the_orders_symbol_only(bars: pd.DataFrame) -> None:
    run = _played(bars)
    code = run.book.panel.codes[0]
    sell = _plan(run, "s-1", "sell", 100, 1000)
    sleeve = _carried(run, sell)
    assert (sleeve["instance_id"], sleeve["account_id"], sleeve["state"]) == (INSTANCE, ACCOUNT, "running")
    assert sleeve["position"] == {"ts_code": code, "qty": 1000, "sellable_qty": 0}  # bought this session: T+1
    assert sleeve["session"] == run.book.session_day.isoformat()  # type: ignore[union-attr]
    # a buy of the other symbol: it holds none of it
    other = Plan(sell.intent, "b-1", run.book.panel.codes[1], "buy", 100, 1000, 0)
    assert _carried(run, other)["position"] is None
    run.state = "paused"  # the Runner moves it (pause); every order then carries it
    assert _carried(run, sell)["state"] == "paused"
    # the same figures the sleeve endpoint answers for that order
    answered = run.sleeve(client_order_id="s-1", ts_code=code)
    assert sleeve["cash_available"] == format(answered["cash_available_fen"] / 100, ".2f")
    assert [p["sellable_qty"] for p in answered["positions"]] == [sleeve["position"]["sellable_qty"]]


def test_the_next_session_sells_what_was_bought_and_resting_sells_hold_theirs(bars: pd.DataFrame) -> None:
    run = _played(bars)
    code = run.book.panel.codes[0]
    run.book.open_session(run.book.panel.dates[2])  # the runner sends the next session's orders
    sell = _plan(run, "s-2", "sell", 100, 1000)
    assert _carried(run, sell)["position"] == {"ts_code": code, "qty": 1000, "sellable_qty": 1000}
    assert _carried(run, sell)["session"] == run.book.panel.dates[2].isoformat()
    run.sent["s-rest"] = _plan(run, "s-rest", "sell", 300, 1000)  # a sell resting at execution
    assert _carried(run, sell)["position"]["sellable_qty"] == 700
    # the resting sell itself (sent again: a retry) is not held back from its own shares
    assert _carried(run, run.sent["s-rest"])["position"]["sellable_qty"] == 1000


def test_open_buys_and_the_rounds_earlier_buys_are_reserved_never_the_order_itself(bars: pd.DataFrame) -> None:
    run = _played(bars)
    cash = run.book.cash_fen
    # A resting buy of 200 at 10.00: 2,000.00 + commission 5.00 (0.50 -> the minimum) + transfer 0.02 = 2,005.02.
    run.sent["b-rest"] = _plan(run, "b-rest", "buy", 200, 1000)
    # A round of three buys being sent: 1,000 at 20.00 = 20,000.00 + 5.00 + 0.20 = 20,005.20 each.
    round_ = [_plan(run, f"b-{k}", "buy", 1000, 2000) for k in range(3)]
    for plan in round_:
        run.in_flight[plan.client_order_id] = plan

    def available(plan: Plan) -> int:
        return round(float(_carried(run, plan)["cash_available"]) * 100)

    assert available(round_[0]) == cash - 200_502
    assert available(round_[1]) == cash - 200_502 - 2_000_520
    assert available(round_[2]) == cash - 200_502 - 2 * 2_000_520
    assert available(run.sent["b-rest"]) == cash - 3 * 2_000_520  # not its own; the round's every order
    outside = _plan(run, "b-late", "buy", 100, 1000)  # not of the round: all of it is reserved
    assert available(outside) == cash - 200_502 - 3 * 2_000_520
    # a partly filled resting buy reserves what it may still spend: 100 left = 1,000.00 + 5.00 + 0.01
    run.book.filled_by_order["b-rest"] = 100
    assert available(round_[0]) == cash - 100_501
    # the first of the round refused (no longer in flight): the second sees the cash it left
    del run.in_flight["b-0"]
    assert available(round_[1]) == cash - 100_501
