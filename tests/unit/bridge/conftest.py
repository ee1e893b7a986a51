"""The bridge's MiniQMT link run in this process against the fake xtquant (tests/support/qmt), and what it pushes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.qmt.journal import Journal
from bridge.qmt.trader import QmtLink
from tests.support.qmt.loader import fake_xtquant

ACCOUNT = "8881234567"
WAIT_S = 10.0  # a bound on waiting for a push, not a timing assertion


@pytest.fixture
def xt() -> Iterator[SimpleNamespace]:
    with fake_xtquant() as modules:
        yield modules


class Harness:
    """A QmtLink on the fake, recording every push."""

    def __init__(self, xt: SimpleNamespace, journal_path: Path) -> None:
        self.xt = xt
        self.journal = Journal(journal_path)
        self.pushes: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()
        self.link = QmtLink(
            userdata_path="C:/fake/userdata_mini",
            session_id=7,
            account_id=ACCOUNT,
            journal=self.journal,
            push=self._push,
            xt=xt,
            reconnect_initial_s=0.01,
            reconnect_max_s=0.05,
            reconcile_interval_s=3600,
        )
        self.task: asyncio.Task[None] | None = None
        self._barrier = 0

    def _push(self, type_: str, body: dict[str, Any]) -> None:
        self.pushes.append((type_, body))
        self._changed.set()

    async def start(self) -> None:
        self.task = asyncio.create_task(self.link.run())
        await self.wait_for("connection", lambda b: b["qmt"] == "connected")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.journal.close()

    def of(self, type_: str, pred: Callable[[dict[str, Any]], bool] = lambda b: True) -> list[dict[str, Any]]:
        return [b for t, b in self.pushes if t == type_ and pred(b)]

    async def wait_for(
        self, type_: str, pred: Callable[[dict[str, Any]], bool] = lambda b: True, *, count: int = 1
    ) -> dict[str, Any]:
        async def until() -> dict[str, Any]:
            while True:
                found = self.of(type_, pred)
                if len(found) >= count:
                    return found[count - 1]
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(until(), WAIT_S)

    async def barrier(self) -> None:
        """Every callback MiniQMT queued before now has been handled: a marker pushed through the same callback
        queue comes back after them."""
        self._barrier += 1
        marker = float(self._barrier)
        trader = self.link._trader
        assert trader is not None
        trader.post("on_stock_asset", self.xt.xttype.XtAsset(cash=marker, frozen_cash=0, market_value=0, total_asset=0))
        await self.wait_for("asset", lambda b: b["cash"] == f"{marker:.2f}")


@pytest.fixture
async def harness(xt: SimpleNamespace, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(xt, tmp_path / "journal.sqlite3")
    await h.start()
    yield h
    await h.stop()


def place_body(order_id: str, **overrides: Any) -> dict[str, Any]:
    from bridge.qmt import protocol

    body = {
        "order_id": order_id,
        "remark": protocol.remark_for(order_id),
        "ts_code": "600000.SH",
        "side": "buy",
        "qty": 200,
        "price_type": 11,
        "price": "10.500",
        "strategy_name": "s1",
    }
    body.update(overrides)
    return body
