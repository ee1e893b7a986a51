"""The day's exchange limits loaded before the open (docs/data-ingest.md, "The pre-open limits"), end to end on the
real MariaDB with the real tushare client talking to the fake Tushare server: a stock going ex-dividend (stored close
10.00, the exchange's reference 9.50) has its live quotes refused without the day's limits and taken with them; the
load retried when the provider fails first; the admin endpoint."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from services.data.app import (
    LIMITS_RETRY,
    SESSION_OPENS,
    LimitsRunLog,
    _limits_job_wanted,
    create_app,
    preopen_limits_job,
)
from services.data.ingest import Ingestor
from services.data.providers import RetryPolicy, TushareConfig, TushareProvider
from services.data.providers.ratelimit import RateLimiter
from services.data.quotes import next_session_quote, reference_data, session_quote
from services.data.realtime.provider import QuoteMetrics, RealtimeQuotes
from services.data.realtime.store import MemoryLiveStore
from services.data.scheduler import DailyScheduler
from services.data.store import DataStore, ingest_runs, stk_limits
from shared.platform.bus import MemoryBus
from shared.platform.clock import EXCHANGE_TZ
from shared.platform.events.schemas import LiveQuote
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token, service_headers
from tests.support.fake_tushare import FakeTushare

pytestmark = pytest.mark.integration

D1, D2 = date(2025, 3, 3), date(2025, 3, 4)  # D2 (a Tuesday): the day quoted, its limits published before the open
EX = "600101.SH"  # closed at 10.00 on D1; goes ex-dividend on D2 (0.50 a share): the exchange's reference is 9.50
PLAIN = "600100.SH"  # closed at 10.00 on D1, no corporate action: reference 10.00
TOKEN = "pre0pen"


def at(hms: str, day: date = D2) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=EXCHANGE_TZ)


def limits_of_d2() -> pd.DataFrame:
    """Tushare stk_limit of D2 as published ~08:40: EX around 9.50 (9.50 x 1.1 = 10.45, x 0.9 = 8.55), PLAIN around
    10.00 (11.00 / 9.00), and an ETF (3-decimal limits, no pre_close: funds have none), which is not a stock the store
    holds and is left out."""
    return pd.DataFrame(
        [("20250304", EX, 10.45, 8.55, 9.50), ("20250304", PLAIN, 11.00, 9.00, 10.00),
         ("20250304", "510300.SH", 3.826, 3.130, None)],
        columns=["trade_date", "ts_code", "up_limit", "down_limit", "pre_close"],
    )  # fmt: skip


@pytest.fixture
def fake() -> Iterator[FakeTushare]:
    with FakeTushare({"stk_limit": limits_of_d2()}, token=TOKEN) as server:
        yield server


def provider_for(server: FakeTushare, attempts: int = 2) -> TushareProvider:
    config = TushareConfig(token=TOKEN, url=server.url, timeout_s=5)
    fast = RetryPolicy(max_attempts=attempts, base_delay_s=0.01, max_delay_s=0.02, rate_limit_delay_s=0.01,
                       rate_limit_max_delay_s=0.02)  # fmt: skip
    return TushareProvider(config, retry=fast, limiter=RateLimiter(default=None))


async def stored_market(store: DataStore) -> None:
    """Two stocks closed at 10.00 on D1; the calendar of the week (1-2 March a weekend)."""
    days = [date(2025, 3, d) for d in range(1, 8)]
    await store.upsert_trade_calendar(
        pd.DataFrame({"exchange": ["SSE"] * 7, "cal_date": [d.strftime("%Y%m%d") for d in days],
                      "is_open": [int(d.weekday() < 5) for d in days], "pretrade_date": [None] * 7})
    )  # fmt: skip
    await store.upsert_securities(
        pd.DataFrame(
            {
                "ts_code": [PLAIN, EX], "symbol": ["600100", "600101"], "name": ["平常股份", "分红股份"],
                "area": ["北京"] * 2, "industry": ["手工"] * 2, "market": ["主板"] * 2, "list_status": ["L"] * 2,
                "list_date": ["20000104"] * 2, "delist_date": [None] * 2,
            }
        )
    )  # fmt: skip
    await store.upsert_daily_bars(
        pd.DataFrame(
            {
                "ts_code": [PLAIN, EX], "trade_date": ["20250303"] * 2, "open": [9.95, 9.95], "high": [10.10, 10.10],
                "low": [9.90, 9.90], "close": [10.00, 10.00], "pre_close": [9.90, 9.90], "change": [0.10, 0.10],
                "pct_chg": [1.0101, 1.0101], "vol": [1000.0, 1000.0], "amount": [1000.0, 1000.0],
                "adj_factor": [1.0, 1.0],
            }
        )
    )  # fmt: skip


def tick(code: str, t: str, lots: int, last: str, pre_close: str) -> dict[str, Any]:
    return {
        "ts_code": code, "time": at(t).isoformat(), "last": last, "open": last, "high": last, "low": last,
        "pre_close": pre_close, "amount": f"{lots * 1000}.00", "volume_lots": lots,
        "bid": [["9.59", 10]], "ask": [[last, 3]],
    }  # fmt: skip


def ex_tick(t: str, lots: int) -> dict[str, Any]:
    """EX on its ex-dividend day: reference 9.50, trading at 9.60 (within 8.55 .. 10.45; against the stored close
    10.00 its pre_close is wrong)."""
    return tick(EX, t, lots, "9.60", "9.50")


async def stored_limits(store: DataStore) -> list[tuple[Any, ...]]:
    async with store.db.session() as session:
        query = select(stk_limits.c.ts_code, stk_limits.c.trade_date, stk_limits.c.pre_close, stk_limits.c.down_limit,
                       stk_limits.c.up_limit).order_by(stk_limits.c.ts_code)  # fmt: skip
        return [tuple(r) for r in (await session.execute(query)).all()]


async def limits_runs(store: DataStore) -> list[tuple[Any, ...]]:
    async with store.db.session() as session:
        query = (
            select(ingest_runs.c.status, ingest_runs.c.start_date, ingest_runs.c.error)
            .where(ingest_runs.c.kind == "limits")
            .order_by(ingest_runs.c.started_at)
        )
        return [tuple(r) for r in (await session.execute(query)).all()]


async def test_an_ex_dividend_stock_is_refused_without_the_days_limits_and_taken_with_them(
    store: DataStore, fake: FakeTushare
) -> None:
    await stored_market(store)
    live = MemoryLiveStore()
    realtime = RealtimeQuotes(store, live, MemoryBus(), QuoteMetrics(CollectorRegistry(), lambda: at("09:30:10")))
    before = await realtime.ingest([ex_tick("09:30:03", 10), tick(PLAIN, "09:30:03", 10, "10.05", "10.00")], "bridge")
    # Without the day's limits: EX's band is around its stored close 10.00, and the tick's pre_close 9.50 is refused.
    assert (before.accepted, dict(before.rejected)) == (1, {"pre_close_mismatch": 1})
    assert await live.quote(EX) is None

    result = await Ingestor(store, provider_for(fake)).load_limits(D2)
    assert (result.status, result.rows) == ("succeeded", 2)  # the ETF's row left out
    assert await stored_limits(store) == [(PLAIN, D2, 1000, 900, 1100), (EX, D2, 950, 855, 1045)]
    assert await limits_runs(store) == [("succeeded", D2, None)]
    (call,) = fake.calls
    assert call.params["trade_date"] == "20250304" and "pre_close" in call.fields.split(",")

    realtime.reload_bands()  # what the data service does when a limits run succeeds
    after = await realtime.ingest([ex_tick("09:30:06", 11)], "bridge")
    assert (after.accepted, dict(after.rejected)) == (1, {})
    quote = LiveQuote.model_validate_json(await live.quote(EX) or b"")
    assert (quote.last, quote.pre_close) == (Decimal("9.60"), Decimal("9.50"))
    assert (quote.limit_down, quote.limit_up) == (Decimal("8.55"), Decimal("10.45"))
    # Outside the exchange's band is still refused: 10.46 is a fen above 10.45.
    above = await realtime.ingest([tick(EX, "09:30:09", 12, "10.46", "9.50")], "bridge")
    assert dict(above.rejected) == {"outside_limits": 1}


async def test_risks_reference_data_and_the_sessions_quote_take_the_exchanges_limits_once_loaded(
    store: DataStore, fake: FakeTushare
) -> None:
    """What risk checks an order's price against (`/v1/reference?session=`, `/v1/quotes/{code}?session=`, and the
    next session's limits of the latest quote) agrees with the live quotes' band: on EX's ex-dividend day, before
    the limits are loaded, they are the rule's around the stored close 10.00 (9.00 .. 11.00: an order at 8.60, which
    the exchange takes, would be refused, one at 10.50, which it refuses, accepted); once loaded, the exchange's
    8.55 .. 10.45 (9.50 x 0.9 / x 1.1)."""
    await stored_market(store)
    ex = next(s for s in await store.list_securities() if s.ts_code == EX)

    def band(quote: Any) -> tuple[Decimal | None, Decimal | None]:
        return (quote.limit_down, quote.limit_up)

    async def references() -> dict[str, tuple[Decimal | None, Decimal | None]]:
        data = await reference_data(store, D2)
        return {r.ts_code: band(r) for r in data.securities}

    rule, exchange = (Decimal("9.00"), Decimal("11.00")), (Decimal("8.55"), Decimal("10.45"))
    assert (await references())[EX] == rule
    assert band(await session_quote(store, ex, D2)) == rule
    assert band(await next_session_quote(store, ex)) == rule  # the stored bars end on D1: the next session is D2

    await Ingestor(store, provider_for(fake)).load_limits(D2)
    assert (await references())[EX] == exchange
    assert (await references())[PLAIN] == (Decimal("9.00"), Decimal("11.00"))  # no corporate action: the same
    assert band(await session_quote(store, ex, D2)) == exchange
    assert band(await next_session_quote(store, ex)) == exchange
    latest = {r.ts_code: band(r) for r in (await reference_data(store)).securities}  # the next session's (D2)
    assert latest[EX] == exchange


class Horizon(Exception):
    """The fake clock ran past the end of the scenario."""


class FakeClock:
    def __init__(self, start: datetime, horizon: datetime) -> None:
        self.now, self.horizon = start, horizon

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        if self.now >= self.horizon:
            raise Horizon


async def test_the_pre_open_job_retries_when_the_provider_fails_first(store: DataStore, fake: FakeTushare) -> None:
    await stored_market(store)
    # The first try's stk_limit call answers HTTP 500 on both of the client's attempts: the run fails, the job
    # retries 30 s later (LIMITS_RETRY) and that one loads the limits.
    fake.inject("stk_limit", "http_500", times=2)
    gave_up: list[date] = []
    clock = FakeClock(at("08:44:00"), at("12:00:00"))
    ingestor = Ingestor(store, provider_for(fake, attempts=2))
    scheduler = DailyScheduler(
        preopen_limits_job(store, ingestor), at=time(8, 45), is_trading_day=lambda d: d.weekday() < 5,
        run_log=LimitsRunLog(store, clock), retry=LIMITS_RETRY, retry_until=SESSION_OPENS,
        on_give_up=lambda day, error: gave_up.append(day), clock=clock, sleep=clock.sleep, name="pre-open limits",
    )  # fmt: skip
    with pytest.raises(Horizon):
        await scheduler.run()
    runs = await limits_runs(store)
    assert [(status, day) for status, day, _ in runs] == [("failed", D2), ("succeeded", D2)]
    assert "unavailable" in runs[0][2]
    assert [c.fault for c in fake.calls] == ["http_500", "http_500", None]
    assert await stored_limits(store) == [(PLAIN, D2, 1000, 900, 1100), (EX, D2, 950, 855, 1045)]
    assert gave_up == [] and await LimitsRunLog(store, clock).last_success() == D2
    # Once loaded, the job of that day does nothing more (another data process's job, say).
    await preopen_limits_job(store, ingestor)(D2)
    assert len(fake.calls) == 3


async def test_the_admin_endpoint_loads_them_and_the_next_round_uses_them(backing: Any, fake: FakeTushare) -> None:
    settings = backing.settings(scope="prelim" + secrets.token_hex(3), load_demo_data=False)
    app = create_app(settings, provider=provider_for(fake))
    headers = service_headers(settings.internal_secret, "test")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://data", headers=headers) as c,
    ):
        await stored_market(app.state.store)
        realtime: RealtimeQuotes = app.state.realtime
        first = await realtime.ingest([ex_tick("09:30:03", 10)], "bridge", now=at("09:30:10"))
        assert dict(first.rejected) == {"pre_close_mismatch": 1}

        # At the service itself (not only the gateway): a viewer's or trader's token is 403, an admin's is taken.
        for role, status in (("viewer", 403), ("trader", 403), ("admin", 422)):
            user = {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, Principal("alice", role))}
            answer = await c.post("/v1/ingest/limits", json={"trade_date": "2025-03-01"}, headers=user)
            assert answer.status_code == status, (role, answer.text)  # 422: a Saturday, past the authorisation
            if status == 403:
                assert answer.json()["code"] == "forbidden"
                assert (await c.get("/v1/ingest/runs", headers=user)).status_code == 403
        for body, code, field in (
            ({"trade_date": "2025-02-30"}, "invalid_request", "trade_date"),  # no such date
            ({"trade_date": "2025-03-04", "force": True}, "invalid_request", "force"),  # unknown field
            ({}, "invalid_request", "trade_date"),
            ({"trade_date": "2025-03-01"}, "not_a_trading_day", "trade_date"),  # a Saturday
            ({"trade_date": "2025-04-01"}, "not_a_trading_day", "trade_date"),  # beyond the stored calendar
        ):
            refused = await c.post("/v1/ingest/limits", json=body)
            assert refused.status_code == 422, body
            assert refused.json()["code"] == code and field in refused.json()["message"], body
        assert fake.calls == [] and await limits_runs(app.state.store) == []  # nothing asked, nothing recorded

        started = await c.post("/v1/ingest/limits", json={"trade_date": "2025-03-04"})
        assert started.status_code == 202
        await app.state.ingestor.wait()
        run = (await c.get(f"/v1/ingest/runs/{started.json()['run_id']}")).json()
        assert (run["kind"], run["status"], run["rows"], run["start_date"]) == ("limits", "succeeded", 2, "2025-03-04")

        # The run's end made the next round read the day's bands again (no minute's wait): EX is taken.
        after = await realtime.ingest([ex_tick("09:30:06", 11)], "bridge", now=at("09:30:10"))
        assert (after.accepted, dict(after.rejected)) == (1, {})

        metrics = (await c.get("/metrics")).text
        assert 'lh_data_ingest_runs_total{kind="limits",status="succeeded"} 1.0' in metrics
        assert "lh_data_preopen_limits_failed 0.0" in metrics


def test_the_job_runs_only_with_a_time_set_and_a_quotes_feed_on(backing: Any) -> None:
    base = backing.settings(scope="prelimw" + secrets.token_hex(3))
    assert _limits_job_wanted(base.model_copy(update={"preopen_limits_at": "08:45", "quotes_feed": "bridge"}), True)
    assert not _limits_job_wanted(base.model_copy(update={"preopen_limits_at": "08:45", "quotes_feed": "off"}), True)
    assert not _limits_job_wanted(base.model_copy(update={"preopen_limits_at": "", "quotes_feed": "bridge"}), True)
    # under pytest, without a test asking for it, as the daily update
    assert not _limits_job_wanted(base.model_copy(update={"data_provider": "tushare", "quotes_feed": "bridge"}), None)
