"""A backtest outside the stored data is refused at submission (422 `outside_data_range`, the message naming the
field), against a stand-in data service whose calendar holds the weekdays of 2024-01-02 to 2024-06-28 (complete
through 2024-06-28), or one whose calendar runs to the year's end with its holidays while the data is complete only
through 2024-06-07 (the Friday before the Dragon Boat holiday, Monday 2024-06-10); a data service that cannot answer
leaves the run accepted (its worker reports missing bars)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.backtest.app import create_app
from shared.platform.app import Infra
from shared.platform.bus import MemoryBus
from shared.platform.cache import MemoryCache
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token, verify_internal_token
from shared.platform.settings import Settings
from strategies.buy_and_hold import BuyAndHold

FIRST, LAST = date(2024, 1, 2), date(2024, 6, 28)
STORED = [FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)]
STORED = [d for d in STORED if d.weekday() < 5]


def _calendar(settings: Settings, request: httpx.Request) -> httpx.Response:
    assert request.url.path == "/v1/calendar"
    # as the service, as every call between services (the data service refuses a call without it)
    principal = verify_internal_token(settings.internal_secret, request.headers[INTERNAL_HEADER])
    assert principal.subject == "svc:backtest"
    start = date.fromisoformat(request.url.params["start"])
    end = date.fromisoformat(request.url.params["end"])
    days = [d.isoformat() for d in STORED if start <= d <= end]
    body = {"exchange": "SSE", "start": start.isoformat(), "end": end.isoformat(), "trading_days": days,
            "complete_through": LAST.isoformat()}  # fmt: skip
    return httpx.Response(200, json=body)


# 2024's SSE holidays that fall on weekdays (Qingming, Labour Day, Dragon Boat, National Day): closed days.
HOLIDAYS = {date(2024, 4, 4), date(2024, 4, 5), date(2024, 5, 1), date(2024, 5, 2), date(2024, 5, 3), date(2024, 6, 10)}
HOLIDAYS |= {date(2024, 10, d) for d in range(1, 8)}
YEAR = [date(2024, 1, 2) + timedelta(days=n) for n in range(365)]
YEAR = [d for d in YEAR if d.weekday() < 5 and d not in HOLIDAYS]
BEFORE_DRAGON_BOAT = date(2024, 6, 7)


def _calendar_to_year_end(settings: Settings, request: httpx.Request) -> httpx.Response:
    """The calendar stored to the year's end (as the data service stores it), the data complete through 2024-06-07."""
    verify_internal_token(settings.internal_secret, request.headers[INTERNAL_HEADER])
    start = date.fromisoformat(request.url.params["start"])
    end = date.fromisoformat(request.url.params["end"])
    days = [d.isoformat() for d in YEAR if start <= d <= end]
    body = {"exchange": "SSE", "start": start.isoformat(), "end": end.isoformat(), "trading_days": days,
            "complete_through": BEFORE_DRAGON_BOAT.isoformat()}  # fmt: skip
    return httpx.Response(200, json=body)


def _down(_: Settings, __: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused")


async def _client(
    tmp_path: Path, handler: Callable[[Settings, httpx.Request], httpx.Response]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", log_json=False)
    bus = MemoryBus()
    services = ServiceDirectory(settings, {"data": httpx.MockTransport(lambda request: handler(settings, request))})
    infra = Infra(settings=settings, bus=bus, cache=MemoryCache(), services=services, shared=True)
    app = create_app(settings, infra, strategies={"buy_and_hold": BuyAndHold})
    headers = {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal("alice", "trader"))}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client,
    ):
        yield client
    await bus.close()


@pytest.fixture
async def backtests(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(tmp_path, _calendar):
        yield client


@pytest.fixture
async def backtests_to_year_end(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(tmp_path, _calendar_to_year_end):
        yield client


def _body(start: str, end: str) -> dict[str, Any]:
    return {"strategy": "buy_and_hold", "ts_codes": ["600519.SH"], "start": start, "end": end}


@pytest.mark.parametrize(
    ("start", "end", "field", "names"),
    [
        ("2024-03-01", "2024-07-31", "end", "2024-06-28"),  # past the last complete day
        ("2023-06-01", "2024-03-29", "start", "2024-01-02"),  # months before the first stored day
        ("2024-08-01", "2024-08-30", "start", "no trading day"),  # wholly after the data (and past complete)
        ("2023-03-01", "2023-03-31", "start", "no trading day"),  # wholly before the data
    ],
)
async def test_a_run_outside_the_stored_data_is_refused_naming_the_field(
    backtests: httpx.AsyncClient, start: str, end: str, field: str, names: str
) -> None:
    refused = await backtests.post("/v1/backtests", json=_body(start, end))
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["code"] == "outside_data_range"
    assert body["message"].startswith(f"{field}: ") and names in body["message"], body
    assert (await backtests.get("/v1/backtests")).json() == []  # nothing stored


async def test_a_run_within_the_data_is_accepted_even_starting_on_a_closed_day(backtests: httpx.AsyncClient) -> None:
    # 2023-12-30 is a Saturday three days before the first stored day; 2024-06-28 is the last complete day.
    for start, end in (("2024-01-02", "2024-06-28"), ("2023-12-30", "2024-02-09")):
        accepted = await backtests.post("/v1/backtests", json=_body(start, end))
        assert accepted.status_code == 202, accepted.text
    assert len((await backtests.get("/v1/backtests")).json()) == 2


async def test_a_data_service_that_cannot_answer_leaves_the_run_accepted(tmp_path: Path) -> None:
    async for client in _client(tmp_path, _down):
        accepted = await client.post("/v1/backtests", json=_body("2030-01-02", "2030-02-01"))
        assert accepted.status_code == 202, accepted.text


async def test_an_end_on_a_weekend_after_the_last_complete_day_is_accepted(backtests: httpx.AsyncClient) -> None:
    # Complete through Friday 2024-06-28: Saturday 06-29 and Sunday 06-30 add no trading day.
    for end in ("2024-06-29", "2024-06-30"):
        accepted = await backtests.post("/v1/backtests", json=_body("2024-03-01", end))
        assert accepted.status_code == 202, accepted.text
    assert len((await backtests.get("/v1/backtests")).json()) == 2


async def test_an_end_on_a_holiday_after_the_last_complete_day_is_accepted(
    backtests_to_year_end: httpx.AsyncClient,
) -> None:
    # Complete through Friday 2024-06-07; the weekend and Monday 06-10 (Dragon Boat) are closed: the last trading day
    # on or before each of these ends is 06-07.
    for end in ("2024-06-08", "2024-06-09", "2024-06-10"):
        accepted = await backtests_to_year_end.post("/v1/backtests", json=_body("2024-03-01", end))
        assert accepted.status_code == 202, (end, accepted.text)
    assert len((await backtests_to_year_end.get("/v1/backtests")).json()) == 3


@pytest.mark.parametrize(
    ("end", "missing"),
    [
        ("2024-06-11", "2024-06-11"),  # the first trading day after the holiday, not complete
        ("2024-06-15", "2024-06-14"),  # a Saturday after a week of trading days that are not complete
        ("2024-06-21", "2024-06-21"),  # two weeks on (the calendar knows these days)
    ],
)
async def test_an_end_after_a_trading_day_that_is_not_complete_is_refused(
    backtests_to_year_end: httpx.AsyncClient, end: str, missing: str
) -> None:
    refused = await backtests_to_year_end.post("/v1/backtests", json=_body("2024-03-01", end))
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["code"] == "outside_data_range"
    assert body["message"].startswith(f"end: {end} is after 2024-06-07"), body
    assert f"the trading day {missing} is not complete" in body["message"], body
    assert (await backtests_to_year_end.get("/v1/backtests")).json() == []


async def test_an_end_past_the_stored_calendar_and_the_longest_closure_is_refused(
    backtests: httpx.AsyncClient,
) -> None:
    # The stand-in calendar stops at 2024-06-28: 15 days later no closure explains the gap; 14 days later it might.
    refused = await backtests.post("/v1/backtests", json=_body("2024-03-01", "2024-07-13"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["message"].startswith("end: 2024-07-13 is after 2024-06-28"), refused.json()
    accepted = await backtests.post("/v1/backtests", json=_body("2024-03-01", "2024-07-12"))
    assert accepted.status_code == 202, accepted.text
