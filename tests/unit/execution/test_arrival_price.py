"""An order's arrival price (docs/tca.md, "The arrival price"): the live quote execution holds from the feed's
`quotes.snapshot` events when it is of today's session, else the last close; none (and the order still placed) when
neither can be had."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.execution import desk as desk_module
from services.execution.brokers.base import BrokerUnavailable
from services.execution.brokers.paper import PaperQuote
from services.execution.desk import OrderDesk
from services.execution.live_quotes import HeldQuotes
from services.execution.metrics import ExecutionMetrics
from services.execution.tca import Arrival
from shared.platform.clock import EXCHANGE_TZ
from shared.platform.events.envelope import make_event
from shared.platform.events.schemas import LiveQuote, QuotesSnapshot

CODE = "600000.SH"
NOW = datetime(2026, 12, 7, 10, 30, tzinfo=EXCHANGE_TZ)


class Closes:
    def __init__(self, fail: bool = False, hang: bool = False) -> None:
        self.fail = fail
        self.hang = hang

    async def latest(self, ts_code: str, session: date | None = None) -> PaperQuote | None:
        if self.hang:
            await asyncio.Event().wait()  # a data service that never answers
        if self.fail:
            raise BrokerUnavailable("the data service is down (test)")
        return PaperQuote(last_close=Decimal("9.90"), suspended=False, last_trade_date=date(2026, 12, 4))


def _desk(quotes: Any, held: HeldQuotes) -> OrderDesk:
    return OrderDesk(
        approval_secret="s" * 32, approval_ttl_s=60, store=None, broker=None,  # type: ignore[arg-type]
        metrics=ExecutionMetrics(CollectorRegistry()), notify=lambda: None, quotes=quotes, held_quotes=held,
        clock=lambda: NOW,
    )  # fmt: skip


def _snapshot(last: str, at: datetime, code: str = CODE) -> Any:
    quote = LiveQuote(ts_code=code, time=at, last=Decimal(last), open=None, high=None, low=None,
                      pre_close=Decimal("9.90"), volume=0, amount=Decimal(0), bid=(), ask=(), limit_up=None,
                      limit_down=None, source="bridge")  # fmt: skip
    return make_event("quotes.snapshot", QuotesSnapshot(as_of=at, source="bridge", quotes=(quote,)), source="data")


async def test_the_live_quote_of_today_is_the_arrival() -> None:
    held = HeldQuotes()
    await held.on_snapshot(_snapshot("10.02", NOW - timedelta(seconds=3)))
    arrival = await _desk(Closes(), held)._arrival(CODE, NOW)
    assert arrival == Arrival(Decimal("10.02"), "live", NOW - timedelta(seconds=3))


async def test_an_older_snapshot_does_not_replace_a_newer_one() -> None:
    held = HeldQuotes()
    await held.on_snapshot(_snapshot("10.02", NOW - timedelta(seconds=3)))
    await held.on_snapshot(_snapshot("10.00", NOW - timedelta(seconds=6)))  # reordered on the way
    quote = held.get(CODE)
    assert quote is not None and quote.last == Decimal("10.02")


async def test_without_a_live_quote_of_today_the_last_close() -> None:
    held = HeldQuotes()
    await held.on_snapshot(_snapshot("10.40", NOW - timedelta(days=3)))  # Friday's: not today's session
    arrival = await _desk(Closes(), held)._arrival(CODE, NOW)
    assert arrival == Arrival(Decimal("9.90"), "last_close", datetime(2026, 12, 4, 15, tzinfo=EXCHANGE_TZ))
    assert await _desk(Closes(), HeldQuotes())._arrival("000001.SZ", NOW) is not None  # another code: its close


async def test_with_neither_there_is_no_arrival_and_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await _desk(Closes(fail=True), HeldQuotes())._arrival(CODE, NOW) is None
    assert await _desk(None, HeldQuotes())._arrival(CODE, NOW) is None
    # a data service that hangs holds the order up no longer than the wait
    monkeypatch.setattr(desk_module, "ARRIVAL_WAIT_S", 0.05)
    assert await _desk(Closes(hang=True), HeldQuotes())._arrival(CODE, NOW) is None
