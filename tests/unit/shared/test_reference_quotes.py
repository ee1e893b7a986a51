"""`ReferenceQuotes`: the data service's reference data held in memory per session, loaded in one request, confirmed
or loaded again when new data is announced, when the exchange day changes and after REVALIDATE_S; never used stale,
and QuoteUnavailable (the caller fails closed) when it cannot be loaded or confirmed."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest

from shared.platform.errors import Unavailable
from shared.platform.events import BarsUpdated, make_event
from shared.platform.http import ServiceDirectory
from shared.platform.quotes import SESSIONS_KEPT, QuoteUnavailable, ReferenceQuotes

SECRET = "unit-secret-0123456789abcdef0123"
LATEST = date(2025, 1, 2)


def _row(code: str, last_close: str, limit_up: str, limit_down: str, **changes: Any) -> dict[str, Any]:
    row = {"ts_code": code, "name": code, "board": "main", "is_st": False, "last_trade_date": "2024-12-31",
           "last_close": last_close, "next_trade_date": "2025-01-02", "suspended": False, "limit_up": limit_up,
           "limit_down": limit_down, "industry": "银行", "avg_vol_20d": 1_234_567}  # fmt: skip
    row.update(changes)
    return row


class _DataService:
    """`GET /v1/reference` as the data service answers it: the rows of the current version, 304 to its own ETag."""

    def __init__(self) -> None:
        self.version = 1
        self.rows = [_row("600000.SH", "10.00", "11.00", "9.00")]
        self.asked: list[tuple[dict[str, str], str | None]] = []  # (params, If-None-Match)
        self.fail: Exception | int | None = None
        self.gate: asyncio.Event | None = None  # when set, answers wait for it

    async def request(self, method: str, path: str, headers: dict[str, str], params: dict[str, str]) -> Any:
        assert (method, path) == ("GET", "/v1/reference")
        self.asked.append((params, headers.get("If-None-Match")))
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.fail, Exception):
            raise self.fail
        if isinstance(self.fail, int):
            return httpx.Response(self.fail, json={"code": "boom", "message": "boom"})
        tag = f'"v{self.version}"'
        if headers.get("If-None-Match") == tag:
            return httpx.Response(304, headers={"ETag": tag})
        session = params.get("session")
        body = {"data_version": self.version, "session": session, "next_trade_date": session or "2025-01-02",
                "securities": self.rows}  # fmt: skip
        return httpx.Response(200, json=body, headers={"ETag": tag})

    def client(self, name: str) -> _DataService:
        assert name == "data"
        return self


class _Clock:
    def __init__(self) -> None:
        self.seconds = 1000.0
        self.day = LATEST

    def monotonic(self) -> float:
        return self.seconds

    def today(self) -> date:
        return self.day


def _held(data: _DataService, clock: _Clock) -> ReferenceQuotes:
    return ReferenceQuotes(
        cast(ServiceDirectory, data), SECRET, "risk", today=clock.today, revalidate_s=10.0, monotonic=clock.monotonic
    )


async def test_one_request_serves_every_order_until_new_data_is_announced() -> None:
    data, clock = _DataService(), _Clock()
    quotes = _held(data, clock)
    for _ in range(50):
        quote = await quotes.quote("600000.SH")
        assert quote is not None and (quote.limit_up, quote.limit_down) == (Decimal("11.00"), Decimal("9.00"))
    assert await quotes.quote("600999.SH") is None  # a code the data service does not know
    reference = await quotes.reference("600000.SH")
    assert reference is not None and (reference.industry, reference.avg_vol_20d) == ("银行", 1_234_567)
    assert data.asked == [({}, None)]

    # New bars: the close moved to 10.50 (limits 11.55 / 9.45). Not seen before the announcement...
    data.version, data.rows = 2, [_row("600000.SH", "10.50", "11.55", "9.45")]
    assert (await quotes.quote("600000.SH")).limit_up == Decimal("11.00")  # type: ignore[union-attr]
    day = LATEST
    event = make_event("bars.updated", BarsUpdated(trade_date=day, start_date=day, end_date=day, symbols=1, rows=1),
                       source="data")  # fmt: skip
    await quotes.announced(event)
    # ... and the next order sees the new limits, asked for with the version held.
    quote = await quotes.quote("600000.SH")
    assert quote is not None and (quote.limit_up, quote.limit_down) == (Decimal("11.55"), Decimal("9.45"))
    assert data.asked == [({}, None), ({}, '"v1"')]
    assert (quotes.loads, quotes.confirmations) == (2, 0)


async def test_an_announcement_without_a_new_version_is_confirmed_not_loaded() -> None:
    data, clock = _DataService(), _Clock()
    quotes = _held(data, clock)
    await quotes.quote("600000.SH")
    quotes.invalidate()
    assert (await quotes.quote("600000.SH")).limit_up == Decimal("11.00")  # type: ignore[union-attr]
    assert [tag for _, tag in data.asked] == [None, '"v1"'] and (quotes.loads, quotes.confirmations) == (1, 1)
    await quotes.quote("600000.SH")
    assert len(data.asked) == 2  # confirmed: held again without a request


async def test_held_at_most_revalidate_s_and_one_exchange_day() -> None:
    data, clock = _DataService(), _Clock()
    quotes = _held(data, clock)
    await quotes.quote("600000.SH")
    clock.seconds += 9.9
    await quotes.quote("600000.SH")
    assert len(data.asked) == 1
    # A write nobody announced (a CLI import): seen at the latest REVALIDATE_S after the last confirmation.
    data.version, data.rows = 2, [_row("600000.SH", "10.50", "11.55", "9.45")]
    clock.seconds += 0.1
    assert (await quotes.quote("600000.SH")).limit_up == Decimal("11.55")  # type: ignore[union-attr]
    assert [tag for _, tag in data.asked] == [None, '"v1"']
    # The exchange day changes: the latest reference is confirmed for the new day before it is used.
    clock.day = date(2025, 1, 3)
    await quotes.quote("600000.SH")
    assert [tag for _, tag in data.asked] == [None, '"v1"', '"v2"']
    await quotes.quote("600000.SH")
    assert len(data.asked) == 3


async def test_a_replayed_session_is_held_apart_from_the_latest() -> None:
    data, clock = _DataService(), _Clock()
    quotes = _held(data, clock)
    days = [date(2024, 3, d) for d in (4, 5, 6, 7)]
    for day in days:
        await quotes.quote("600000.SH", day)
        await quotes.quote("600000.SH", day)
        await quotes.quote("600000.SH")
    assert [params for params, _ in data.asked] == [{"session": "2024-03-04"}, {}] + [
        {"session": d.isoformat()} for d in days[1:]
    ]
    # The latest and the last SESSIONS_KEPT sessions stay held; an older one is asked for again.
    assert SESSIONS_KEPT == 2
    await quotes.quote("600000.SH", days[-2])
    assert len(data.asked) == 5
    await quotes.quote("600000.SH", days[0])
    assert data.asked[-1] == ({"session": "2024-03-04"}, None)


async def test_a_burst_of_orders_waits_for_one_answer() -> None:
    data, clock = _DataService(), _Clock()
    quotes = _held(data, clock)
    data.gate = asyncio.Event()
    burst = [asyncio.create_task(quotes.quote("600000.SH")) for _ in range(20)]
    await asyncio.sleep(0.01)
    data.gate.set()
    answers = await asyncio.gather(*burst)
    assert {a.limit_up for a in answers if a is not None} == {Decimal("11.00")} and len(data.asked) == 1


async def test_an_announcement_during_a_load_makes_its_answer_stale() -> None:
    data, clock = _DataService(), _Clock()
    quotes = _held(data, clock)
    data.gate = asyncio.Event()
    loading = asyncio.create_task(quotes.quote("600000.SH"))
    await asyncio.sleep(0.01)
    # The bars of the new version are stored and announced while the old answer is on its way.
    quotes.invalidate()
    data.gate.set()
    assert (await loading).limit_up == Decimal("11.00")  # type: ignore[union-attr]  # (that order was earlier)
    data.gate = None
    data.version, data.rows = 2, [_row("600000.SH", "10.50", "11.55", "9.45")]
    assert (await quotes.quote("600000.SH")).limit_up == Decimal("11.55")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "failure",
    [
        Unavailable("data_unavailable", "the data service did not answer: ConnectError"),
        500,
        401,
        {"securities": [_row("600000.SH", "ten", "11.00", "9.00")]},  # not a price
        {"securities": [{k: v for k, v in _row("600000.SH", "10.00", "11.00", "9.00").items() if k != "suspended"}]},
    ],
)
async def test_what_cannot_be_loaded_or_confirmed_fails_closed(failure: Any) -> None:
    data, clock = _DataService(), _Clock()
    quotes = _held(data, clock)
    if isinstance(failure, dict):
        data.rows = failure["securities"]
    else:
        data.fail = failure
    with pytest.raises(QuoteUnavailable):
        await quotes.quote("600000.SH")

    # Held, then announced as changed, and the data service cannot be asked: the copy held is not used.
    data.fail, data.rows = None, [_row("600000.SH", "10.00", "11.00", "9.00")]
    await quotes.quote("600000.SH")
    quotes.invalidate()
    if isinstance(failure, dict):
        data.version, data.rows = 2, failure["securities"]
    else:
        data.fail = failure
    with pytest.raises(QuoteUnavailable):
        await quotes.quote("600000.SH")
    with pytest.raises(QuoteUnavailable):  # and not the next time either
        await quotes.quote("600000.SH")
    data.fail, data.rows = None, [_row("600000.SH", "10.00", "11.00", "9.00")]
    assert (await quotes.quote("600000.SH")).limit_up == Decimal("11.00")  # type: ignore[union-attr]


async def test_an_answer_for_another_session_is_refused() -> None:
    data, clock = _DataService(), _Clock()
    quotes = _held(data, clock)
    real = data.request

    async def wrong_session(method: str, path: str, headers: dict[str, str], params: dict[str, str]) -> Any:
        return await real(method, path, headers, {"session": "2024-03-05"})

    data.request = wrong_session  # type: ignore[method-assign]
    with pytest.raises(QuoteUnavailable, match="2024-03-05"):
        await quotes.quote("600000.SH", date(2024, 3, 4))


async def test_a_burst_of_orders_during_an_outage_fails_at_once_on_one_request() -> None:
    # The data service hangs, then fails: the 20 orders that waited for that one load all fail with it, rather than
    # each trying again in turn (20 request timeouts one after another). The next order after it tries again.
    data, clock = _DataService(), _Clock()
    quotes = _held(data, clock)
    data.gate, data.fail = asyncio.Event(), 500
    burst = [asyncio.create_task(quotes.quote("600000.SH")) for _ in range(20)]
    await asyncio.sleep(0.01)
    clock.seconds += 10  # the request's timeout passes
    data.gate.set()
    answers = await asyncio.gather(*burst, return_exceptions=True)
    assert all(isinstance(a, QuoteUnavailable) for a in answers) and len(data.asked) == 1
    data.gate, data.fail = None, None
    clock.seconds += 1
    assert (await quotes.quote("600000.SH")).limit_up == Decimal("11.00")  # type: ignore[union-attr]
    assert len(data.asked) == 2
