"""Ingestion end to end against the real MariaDB and RabbitMQ, with the real tushare client talking to the fake
Tushare server: a backfill in storage units, idempotent re-runs, the update of missing days only, retries, a
provider down for good, bars.updated on the bus, file imports and the CLI."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from services.data.app import create_app
from services.data.cli import run as cli_run
from services.data.events import outbox
from services.data.ingest import IngestOptions, Ingestor
from services.data.metrics import DataMetrics, StoredThrough
from services.data.providers import RetryPolicy, TushareConfig, TushareProvider
from services.data.providers.ratelimit import RateLimiter
from services.data.scheduler import SHANGHAI
from services.data.store import (
    DataStore,
    adj_factors,
    daily_bars,
    daily_basic,
    index_bars,
    index_weights,
    ingest_runs,
    securities,
    st_periods,
    stk_limits,
    suspensions,
    trade_calendar,
)
from shared.platform.bus import create_bus
from shared.platform.events.envelope import Envelope
from shared.platform.internal_auth import service_headers
from tests.support.fake_tushare import FakeTushare, with_other_securities

pytestmark = pytest.mark.integration

CODES = ("000001.SZ", "600000.SH", "688001.SH")
DAYS = [date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10, 11, 12, 15)]  # the open days of the fake calendar
HALT = ("000001.SZ", date(2024, 1, 10))  # suspended that day: no bar
FACTOR = {"000001.SZ": 1.0, "600000.SH": 1.5, "688001.SH": 2.25}


def ymd(day: date) -> str:
    return day.strftime("%Y%m%d")


def market() -> dict[str, pd.DataFrame]:
    """A small market in Tushare's layout and units (CNY, lots, thousand CNY): close rises 0.01 a day, pre_close
    is the previous close, so the quality checks have nothing to report."""
    cal = []
    day = date(2024, 1, 1)
    while day <= date(2024, 12, 31):
        is_open = day in DAYS or (day > DAYS[-1] and day.weekday() < 5)
        cal.append(("SSE", ymd(day), int(is_open), None))
        day += timedelta(days=1)
    daily, factors, limits, basic = [], [], [], []
    for n, code in enumerate(CODES):
        close = 10.0 + n
        for day in DAYS:
            factors.append((code, ymd(day), FACTOR[code]))
            pre = round(close, 2)
            limits.append((ymd(day), code, round(pre * 1.1, 2), round(pre * 0.9, 2)))
            basic.append((code, ymd(day), pre, 1.5, 1.6, 1.0, 8.0, 8.5, 0.9, 1.1, 1.2, 2.0, 2.1, 100.0, 80.0, 70.0,
                          1000.0, 800.0))  # fmt: skip
            if (code, day) == HALT:
                continue
            close = round(pre + 0.01, 2)
            daily.append((code, ymd(day), pre, round(close + 0.05, 2), round(pre - 0.05, 2), close, pre,
                          round(close - pre, 2), round((close / pre - 1) * 100, 4), 12345.67, 12468.123))  # fmt: skip
    frames = {
        "trade_cal": pd.DataFrame(cal, columns=["exchange", "cal_date", "is_open", "pretrade_date"]),
        "stock_basic": pd.DataFrame(
            [
                (
                    c,
                    c[:6],
                    f"股票{i}",
                    "深圳",
                    "银行",
                    "主板",
                    "SZSE" if c.endswith("SZ") else "SSE",
                    "L",
                    "20100104",
                    None,
                )
                for i, c in enumerate(CODES)
            ],
            columns=[
                "ts_code",
                "symbol",
                "name",
                "area",
                "industry",
                "market",
                "exchange",
                "list_status",
                "list_date",
                "delist_date",
            ],
        ),
        "namechange": pd.DataFrame(
            [
                ("600000.SH", "ST浦发", "20120101", "20121231", "20111230", "ST"),
                ("600000.SH", "浦发银行", "20130101", None, "20121231", "撤销ST"),
            ],
            columns=["ts_code", "name", "start_date", "end_date", "ann_date", "change_reason"],
        ),
        "daily": pd.DataFrame(
            daily,
            columns=[
                "ts_code",
                "trade_date",
                "open",
                "high",
                "low",
                "close",
                "pre_close",
                "change",
                "pct_chg",
                "vol",
                "amount",
            ],
        ),
        "adj_factor": pd.DataFrame(factors, columns=["ts_code", "trade_date", "adj_factor"]),
        "stk_limit": pd.DataFrame(limits, columns=["trade_date", "ts_code", "up_limit", "down_limit"]),
        "suspend_d": pd.DataFrame(
            [(HALT[0], ymd(HALT[1]), None, "S")], columns=["ts_code", "trade_date", "suspend_timing", "suspend_type"]
        ),
        "daily_basic": pd.DataFrame(
            basic,
            columns=[
                "ts_code",
                "trade_date",
                "close",
                "turnover_rate",
                "turnover_rate_f",
                "volume_ratio",
                "pe",
                "pe_ttm",
                "pb",
                "ps",
                "ps_ttm",
                "dv_ratio",
                "dv_ttm",
                "total_share",
                "float_share",
                "free_share",
                "total_mv",
                "circ_mv",
            ],
        ),
        "index_daily": pd.DataFrame(
            [
                ("000300.SH", ymd(d), 3400.5 + i, 3390.0, 3410.0, 3380.0, 3399.5 + i, 1.0, 0.03, 1.0e8, 2.0e8)
                for i, d in enumerate(DAYS)
            ],
            columns=[
                "ts_code",
                "trade_date",
                "close",
                "open",
                "high",
                "low",
                "pre_close",
                "change",
                "pct_chg",
                "vol",
                "amount",
            ],
        ),
        "index_weight": pd.DataFrame(
            [("000300.SH", c, "20240102", w) for c, w in (("600000.SH", 0.6), ("000001.SZ", 0.4))],
            columns=["index_code", "con_code", "trade_date", "weight"],
        ),
    }
    return frames


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTushare]:
    with FakeTushare(market(), token="t0ken") as server:
        yield server


def provider_for(server: FakeTushare, attempts: int = 3) -> TushareProvider:
    config = TushareConfig(token="t0ken", url=server.url, timeout_s=5)
    fast = RetryPolicy(max_attempts=attempts, base_delay_s=0.01, max_delay_s=0.02, rate_limit_delay_s=0.01,
                       rate_limit_max_delay_s=0.02)  # fmt: skip
    return TushareProvider(config, retry=fast, limiter=RateLimiter(default=None))


async def count(store: DataStore, table: Any) -> int:
    async with store.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


TABLES = (daily_bars, adj_factors, stk_limits, suspensions, daily_basic, securities, st_periods, trade_calendar,
          index_bars, index_weights)  # fmt: skip


async def contents(store: DataStore) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    async with store.db.session() as session:
        for table in TABLES:
            keys = list(table.primary_key.columns)
            out[table.name] = [tuple(r) for r in (await session.execute(select(table).order_by(*keys))).all()]
    return out


async def test_backfill_stores_storage_units_and_a_rerun_changes_nothing(store: DataStore, fake: FakeTushare) -> None:
    ingestor = Ingestor(store, provider_for(fake), options=IngestOptions(batch_days=4))
    result = await ingestor.backfill(date(2024, 1, 1), date(2024, 1, 15))
    assert result.status == "succeeded", result.error
    assert (result.start, result.end, result.bar_rows, result.symbols) == (DAYS[0], DAYS[-1], 29, 3)

    assert await count(store, daily_bars) == 3 * 10 - 1  # one suspended day
    assert await count(store, adj_factors) == 30 and await count(store, stk_limits) == 30
    assert await count(store, daily_basic) == 30 and await count(store, suspensions) == 1
    assert await count(store, securities) == 3 and await count(store, st_periods) == 1
    assert await count(store, trade_calendar) == 366  # 2024 to its end: the coming sessions too
    assert await count(store, index_bars) == 10 and await count(store, index_weights) == 2

    # 600000.SH on 2024-01-02, worked by hand: pre_close 11.00 CNY -> 1100 fen, close 11.01 -> 1101, high 11.06,
    # low 10.95; vol 12345.67 lots x 100 = 1,234,567 shares; amount 12468.123 thousand CNY x 100,000 = 1,246,812,300
    # fen; the factor 1.5 from the adj_factor feed.
    async with store.db.session() as session:
        bar = (await session.execute(select(daily_bars).where(
            daily_bars.c.ts_code == "600000.SH", daily_bars.c.trade_date == date(2024, 1, 2)))).one()  # fmt: skip
        limit = (await session.execute(select(stk_limits).where(
            stk_limits.c.ts_code == "600000.SH", stk_limits.c.trade_date == date(2024, 1, 2)))).one()  # fmt: skip
        basic = (await session.execute(select(daily_basic).where(
            daily_basic.c.ts_code == "600000.SH", daily_basic.c.trade_date == date(2024, 1, 2)))).one()  # fmt: skip
    assert (bar.open, bar.high, bar.low, bar.close, bar.pre_close) == (1100, 1106, 1095, 1101, 1100)
    assert (bar.vol, bar.amount, bar.adj_factor) == (1_234_567, 1_246_812_300, Decimal("1.5"))
    assert (limit.up_limit, limit.down_limit) == (1210, 990)  # 11.00 x 1.1 = 12.10, x 0.9 = 9.90
    assert (basic.total_share, basic.total_mv) == (1_000_000, 1_000_000_000)  # 100 万股; 1000 万元 = 10M CNY

    run = await store.get_ingest_run(result.run_id)
    assert run is not None and run.status == "succeeded" and run.progress == 1.0 and run.rows == result.rows
    assert run.detail["quality"]["by_severity"] == {"error": 0, "warning": 0}  # a clean market
    assert result.quality_report_id is not None

    before = await contents(store)
    again = await ingestor.backfill(date(2024, 1, 1), date(2024, 1, 15))
    assert again.status == "succeeded"
    assert await contents(store) == before


async def test_update_fetches_only_the_missing_days(store: DataStore, fake: FakeTushare) -> None:
    ingestor = Ingestor(store, provider_for(fake))
    assert (await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 10))).status == "succeeded"
    fake.reset()
    # 16:00 on the 15th: that day is not out yet (ready at 17:00), so the 11th and 12th only.
    result = await ingestor.update(as_of=datetime(2024, 1, 15, 16, 0, tzinfo=SHANGHAI))
    assert result.status == "succeeded" and (result.start, result.end) == (date(2024, 1, 11), date(2024, 1, 12))
    assert sorted(c.params["trade_date"] for c in fake.calls_to("daily")) == ["20240111", "20240112"]
    fake.reset()
    result = await ingestor.update(as_of=datetime(2024, 1, 15, 18, 0, tzinfo=SHANGHAI))
    assert [c.params["trade_date"] for c in fake.calls_to("daily")] == ["20240115"]
    assert result.bar_rows == 3 and await count(store, daily_bars) == 29
    fake.reset()
    nothing = await ingestor.update(as_of=datetime(2024, 1, 15, 20, 0, tzinfo=SHANGHAI))
    assert nothing.status == "succeeded" and nothing.bar_rows == 0 and fake.calls_to("daily") == []


async def test_rate_limit_replies_and_http_500s_are_retried(store: DataStore, fake: FakeTushare) -> None:
    fake.reset()
    fake.inject("daily", "rate_limit", times=2)
    fake.inject("adj_factor", "http_500", times=2)
    result = await Ingestor(store, provider_for(fake)).backfill(date(2024, 1, 2), date(2024, 1, 5))
    assert result.status == "succeeded", result.error
    assert await count(store, daily_bars) == 12
    assert [c.fault for c in fake.calls_to("adj_factor")][:2] == ["http_500", "http_500"]


async def test_a_provider_down_for_good_fails_the_run_and_stores_nothing_of_that_day(store: DataStore) -> None:
    data = market()
    data["daily"] = data["daily"][data["daily"]["trade_date"] != "20240104"]  # never published
    with FakeTushare(data, token="t0ken") as server:
        result = await Ingestor(store, provider_for(server), options=IngestOptions(batch_days=1)).backfill(
            date(2024, 1, 2), date(2024, 1, 5)
        )
    assert result.status == "failed" and "DataNotReady" in (result.error or "") and "20240104" in (result.error or "")
    run = await store.get_ingest_run(result.run_id)
    assert run is not None and run.status == "failed" and run.error == result.error
    async with store.db.session() as session:
        for table in (daily_bars, adj_factors, stk_limits, daily_basic):
            days = set((await session.scalars(select(table.c.trade_date).distinct())).all())
            assert date(2024, 1, 4) not in days, table.name
    assert await count(store, daily_bars) == 6  # the two days before it, whole


async def test_http_500_for_good_fails_with_the_reason(store: DataStore, fake: FakeTushare) -> None:
    fake.reset()
    fake.inject("daily", "http_500", times=50)
    result = await Ingestor(store, provider_for(fake)).backfill(date(2024, 1, 2), date(2024, 1, 3))
    fake.reset()
    assert result.status == "failed"
    assert "ProviderUnavailable" in (result.error or "") and "HTTP error status" in (result.error or "")
    assert await count(store, daily_bars) == 0


async def test_an_interrupted_run_is_marked_and_a_rerun_completes_it(store: DataStore, fake: FakeTushare) -> None:
    run_id = await store.start_ingest_run("backfill", date(2024, 1, 2), date(2024, 1, 5))
    async with store.db.session() as session:
        from sqlalchemy import update

        await session.execute(update(ingest_runs).values(updated_at=datetime(2024, 1, 1)))
    ingestor = Ingestor(store, provider_for(fake))
    assert await ingestor.mark_interrupted() == 1
    run = await store.get_ingest_run(run_id)
    assert run is not None and run.status == "interrupted" and "interrupted" in (run.error or "")
    assert (await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 5))).status == "succeeded"


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("ts_code,trade_date,open,high,low,close,pre_close,change,pct_chg,vol,amount\n" + "\n".join(rows))
    return path


async def test_a_bad_file_rejects_the_whole_import(store: DataStore, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", ["600000.SH,20240102,11.00,11.06,10.95,11.01,11.00,0.01,0.0909,10,20"])
    bad = write_csv(tmp_path / "bad.csv", ["000001.SZ,20240102,10,10.1,9.9,10.05,10,0.05,0.5,10,20",
                                           "000001.SZ,20240103,10.05,abc,9.9,10.05,10.05,0,0,10,20"])  # fmt: skip
    result = await Ingestor(store, lambda: None).import_files([good, bad])  # type: ignore[arg-type,return-value]
    assert result.status == "failed"
    assert "bad.csv" in (result.error or "") and "line 3" in (result.error or "") and "high" in (result.error or "")
    assert await count(store, daily_bars) == 0

    ok = await Ingestor(store, lambda: None).import_files([good])  # type: ignore[arg-type,return-value]
    assert ok.status == "succeeded" and ok.bar_rows == 1
    async with store.db.session() as session:
        bar = (await session.execute(select(daily_bars))).one()
    # vol 10 lots = 1,000 shares; amount 20 thousand CNY = 2,000,000 fen; no factor known: 1.
    assert (bar.close, bar.vol, bar.amount, bar.adj_factor) == (1101, 1000, 2_000_000, Decimal("1"))


async def test_the_service_api_and_bars_updated_on_the_bus(backing: Any, fake: FakeTushare) -> None:
    settings = backing.settings(scope="ingapi" + secrets.token_hex(3), load_demo_data=False)
    app = create_app(settings, provider=provider_for(fake))
    received: list[Envelope] = []
    got = asyncio.Event()

    async def on_event(event: Envelope) -> None:
        received.append(event)
        got.set()

    listener = create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="test")
    await listener.start()
    await listener.subscribe("ingest-test-" + secrets.token_hex(3), ["bars.updated"], on_event, durable=False)
    headers = service_headers(settings.internal_secret, "test")
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://data", headers=headers) as c,
        ):
            bad = await c.post("/v1/ingest/backfill", json={"start": "2024-13-01", "end": "2024-01-15"})
            assert bad.status_code == 422 and bad.json()["message"].startswith("start")
            backwards = await c.post("/v1/ingest/backfill", json={"start": "2024-01-15", "end": "2024-01-02"})
            assert backwards.status_code == 422 and "end" in backwards.json()["message"]

            started = await c.post("/v1/ingest/backfill", json={"start": "2024-01-02", "end": "20240115"})
            assert started.status_code == 202
            run_id = started.json()["run_id"]
            busy = await c.post("/v1/ingest/update")
            assert busy.status_code == 409 and busy.json()["code"] == "ingest_running"
            await app.state.ingestor.wait()
            run = (await c.get(f"/v1/ingest/runs/{run_id}")).json()
            assert run["status"] == "succeeded" and run["percent"] == 100.0 and run["rows"] > 0
            assert [r["run_id"] for r in (await c.get("/v1/ingest/runs")).json()] == [run_id]
            assert (await c.get("/v1/ingest/runs/nope")).status_code == 404

            await asyncio.wait_for(got.wait(), timeout=10)
            payload = received[0].payload
            assert received[0].type == "bars.updated" and received[0].source == "data"
            assert payload == {"trade_date": "2024-01-15", "start_date": "2024-01-02", "end_date": "2024-01-15",
                               "symbols": 3, "rows": 29, "complete": True, "skipped_endpoints": []}  # fmt: skip

            report = (await c.get(f"/v1/quality/reports/{run_id}")).json()  # by the ingest run's id
            assert report["ingest_run_id"] == run_id and report["findings"] == 0
            fresh = await c.post("/v1/quality/run", json={"start": "2024-01-02", "end": "2024-01-15"})
            assert fresh.status_code == 200 and sum(fresh.json()["counts"].values()) == 0
            assert len((await c.get("/v1/quality/reports")).json()) == 2
            assert (await c.get("/v1/quality/reports/x", params={"rule": "nope"})).status_code == 422
    finally:
        await listener.close()


async def test_the_cli(backing: Any, fake: FakeTushare, tmp_path: Path) -> None:
    settings = backing.settings(scope="ingcli" + secrets.token_hex(3), load_demo_data=False)
    out = io.StringIO()
    code = await cli_run(["backfill", "--start", "2024-01-02", "--end", "2024-01-05"], settings=settings,
                         provider=provider_for(fake), out=out)  # fmt: skip
    assert code == 0, out.getvalue()
    assert "succeeded" in out.getvalue() and "12 bars of 3 symbols" in out.getvalue()

    out = io.StringIO()
    bad = write_csv(tmp_path / "broken.csv", ["000001.SZ,2024-1-2,10,10.1,9.9,10.05,10,0.05,0.5,10,20"])
    assert await cli_run(["import", str(bad)], settings=settings, out=out) == 1
    assert "broken.csv: line 2" in out.getvalue()

    out = io.StringIO()
    assert await cli_run(["quality", "--start", "2024-01-02", "--end", "2024-01-05"], settings=settings, out=out) == 0
    assert "12 rows checked, 0 findings" in out.getvalue()

    out = io.StringIO()
    assert await cli_run(["runs"], settings=settings, out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "import" in lines[0] and "failed" in lines[0] and "succeeded" in lines[1]

    out = io.StringIO()
    assert await cli_run(["backfill", "--start", "2024-01-05", "--end", "2024-01-02"], settings=settings, out=out) == 2


async def test_limits_factors_and_basics_of_funds_and_b_shares_are_left_out(store: DataStore) -> None:
    # Real stk_limit answers for funds and B shares too, with 3-decimal limits the store's fen cannot hold.
    with FakeTushare(with_other_securities(market()), token="t0ken") as server:
        result = await Ingestor(store, provider_for(server)).backfill(date(2024, 1, 2), date(2024, 1, 5))
    assert result.status == "succeeded", result.error
    async with store.db.session() as session:
        for table in (stk_limits, adj_factors, daily_basic):
            codes = set((await session.scalars(select(table.c.ts_code).distinct())).all())
            assert codes == set(CODES), table.name  # the halted 000001.SZ is not halted on these days
    assert await count(store, stk_limits) == 12 and await count(store, daily_bars) == 12


async def test_update_fetches_again_the_days_of_a_batch_cut_short(
    store: DataStore, fake: FakeTushare, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 3 days: [2, 3, 4], [5, 8, 9], [10]. The second batch's bar write dies after the 9th's bars are in
    # (bulk writes commit per batch of rows, over two connections): the 5th and 8th have no bars, the 9th has.
    real = store.upsert_daily_bars
    calls = 0

    async def dies_part_way(frame: pd.DataFrame) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            await real(frame[frame["trade_date"] == "20240109"])
            raise ConnectionError("lost the connection to MySQL")
        return await real(frame)

    monkeypatch.setattr(store, "upsert_daily_bars", dies_part_way)
    ingestor = Ingestor(store, provider_for(fake), options=IngestOptions(batch_days=3))
    failed = await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 10))
    assert failed.status == "failed" and "lost the connection" in (failed.error or "")
    assert await store.latest_session() == date(2024, 1, 9)  # a later day stored, earlier ones missing
    monkeypatch.setattr(store, "upsert_daily_bars", real)

    # A server of its own: calls of the failed run's prefetch may still be in flight to the first one.
    with FakeTushare(market(), token="t0ken") as server:
        result = await Ingestor(store, provider_for(server)).update(as_of=datetime(2024, 1, 12, 18, 0, tzinfo=SHANGHAI))
    assert result.status == "succeeded", result.error
    # From the first day of the batch cut short: the 5th, not the day after the newest bar (the 10th).
    assert [c.params["trade_date"] for c in server.calls_to("daily")] == [
        "20240105", "20240108", "20240109", "20240110", "20240111", "20240112"]  # fmt: skip
    # 9 open days (2nd to 12th) x 3 stocks, less the halted day of 000001.SZ.
    assert await count(store, daily_bars) == 9 * 3 - 1


async def test_an_imported_later_month_does_not_make_update_skip_days(
    store: DataStore, fake: FakeTushare, tmp_path: Path
) -> None:
    ingestor = Ingestor(store, provider_for(fake))
    assert (await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 10))).status == "succeeded"
    one = write_csv(tmp_path / "one.csv", ["600000.SH,20240212,12.00,12.10,11.90,12.05,12.00,0.05,0.42,10,20"])
    assert (await ingestor.import_files([one])).status == "succeeded"
    assert await store.latest_session() == date(2024, 2, 12)  # one symbol, a month ahead of the market

    with FakeTushare(market(), token="t0ken") as server:  # its calls are this update's only
        updater = Ingestor(store, provider_for(server))
        result = await updater.update(as_of=datetime(2024, 1, 12, 18, 0, tzinfo=SHANGHAI))
    assert result.status == "succeeded", result.error
    assert [c.params["trade_date"] for c in server.calls_to("daily")] == ["20240111", "20240112"]
    assert await updater.last_update_day() == date(2024, 1, 12)  # what the scheduler's run log reads


async def test_the_checks_after_a_one_day_update_see_a_missing_bar_and_the_first_pre_close(store: DataStore) -> None:
    data = market()
    daily = data["daily"]
    # On the 11th: 688001.SH has no bar and no suspension; 600000.SH's pre_close is 11.12, but it closed on the
    # 10th at 11.07 (by hand: 11.00 plus 0.01 on each of the 7 open days from the 2nd to the 10th).
    data["daily"] = daily[~((daily["ts_code"] == "688001.SH") & (daily["trade_date"] == "20240111"))].copy()
    broken = (data["daily"]["ts_code"] == "600000.SH") & (data["daily"]["trade_date"] == "20240111")
    data["daily"].loc[broken, "pre_close"] = 11.12
    with FakeTushare(data, token="t0ken") as server:
        ingestor = Ingestor(store, provider_for(server))
        assert (await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 10))).status == "succeeded"
        result = await ingestor.update(as_of=datetime(2024, 1, 11, 18, 0, tzinfo=SHANGHAI))
    assert result.status == "succeeded" and (result.start, result.end) == (date(2024, 1, 11), date(2024, 1, 11))
    assert result.quality is not None
    assert {rule: n for rule, n in result.quality["counts"].items() if n} == {"pre_close_gap": 1, "missing_bar": 1}
    assert result.quality_report_id is not None
    findings = await store.quality_findings(result.quality_report_id)
    assert sorted((f.rule, f.ts_code, f.trade_date) for f in findings) == [
        ("missing_bar", "688001.SH", date(2024, 1, 11)),
        ("pre_close_gap", "600000.SH", date(2024, 1, 11)),
    ]
    gap = next(f for f in findings if f.rule == "pre_close_gap")
    assert "1112" in gap.detail and "1107" in gap.detail


async def test_a_failing_quality_phase_still_finishes_the_run_and_announces_the_bars(
    store: DataStore, fake: FakeTushare, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = Ingestor(store, provider_for(fake))

    async def checks_blow_up(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("the checks ran out of memory")

    monkeypatch.setattr(ingestor, "quality", checks_blow_up)
    result = await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 5))
    assert result.status == "succeeded" and result.bar_rows == 12
    run = await store.get_ingest_run(result.run_id)
    assert run is not None and run.status == "succeeded" and run.finished_at is not None
    assert run.detail["quality"] == {"error": "MemoryError: the checks ran out of memory"}
    async with store.db.session() as session:
        events = (await session.execute(select(outbox.c.type, outbox.c.body))).all()
    assert [e.type for e in events] == ["bars.updated"]
    assert '"rows": 12' in events[0].body or '"rows":12' in events[0].body


async def test_a_bulk_write_failing_part_way_still_counts_as_a_change(
    store: DataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.data.store.bulk as store_module

    dropped = 0

    async def on_change() -> None:
        nonlocal dropped
        dropped += 1

    store.on_change = on_change
    # A first write (a database's first version is random: docs/data.md), then the one that fails part way.
    await store.upsert_adj_factors(pd.DataFrame({"ts_code": ["600001.SH"], "trade_date": [ymd(DAYS[0])],
                                                 "adj_factor": [1.0]}))  # fmt: skip
    # Batches of 2 rows over one connection; the third batch is refused by the server (a code too long for the
    # column), after the first two are committed.
    monkeypatch.setattr(store_module, "BULK_BATCH_ROWS", 2)
    monkeypatch.setattr(store_module, "BULK_CONNECTIONS", 1)
    real_column = store_module._driver_column

    def poisoned(values: Any, column: Any) -> Any:
        out = real_column(values, column)
        if column.name == "ts_code":
            out = out.copy()
            out[4] = "X" * 40
        return out

    monkeypatch.setattr(store_module, "_driver_column", poisoned)
    factors = pd.DataFrame({"ts_code": ["600000.SH"] * 6, "trade_date": [ymd(d) for d in DAYS[:6]],
                            "adj_factor": [1.5] * 6})  # fmt: skip
    before = await store.data_version()
    dropped = 0
    with pytest.raises(Exception, match=r"(?i)too long"):
        await store.upsert_adj_factors(factors)
    assert await count(store, adj_factors) == 5  # the one before, and the two batches committed before the failure
    assert await store.data_version() == before + 1 and dropped == 1


# -- a failed or interrupted run announces the bars it wrote -------------------------------------------------------


async def outbox_events(store: DataStore) -> list[Envelope]:
    async with store.db.session() as session:
        bodies = (await session.scalars(select(outbox.c.body).order_by(outbox.c.created_at))).all()
    return [Envelope.model_validate_json(body) for body in bodies]


async def test_a_run_failing_on_a_later_day_announces_the_days_it_wrote(store: DataStore) -> None:
    data = market()
    data["daily"] = data["daily"][data["daily"]["trade_date"] != "20240108"]  # never published
    with FakeTushare(data, token="t0ken") as server:
        notified: list[bool] = []
        ingestor = Ingestor(store, provider_for(server), options=IngestOptions(batch_days=2),
                            notify=lambda: notified.append(True))  # fmt: skip
        result = await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 15))
    assert result.status == "failed" and "20240108" in (result.error or "")
    # The 2nd to the 5th were written whole: 4 days x 3 stocks.
    assert (result.start, result.end, result.bar_rows, result.symbols) == (date(2024, 1, 2), date(2024, 1, 5), 12, 3)
    assert await count(store, daily_bars) == 12
    events = await outbox_events(store)
    assert [(e.type, e.source) for e in events] == [("bars.updated", "data")]
    assert events[0].payload == {"trade_date": "2024-01-05", "start_date": "2024-01-02", "end_date": "2024-01-05",
                                 "symbols": 3, "rows": 12, "complete": False, "skipped_endpoints": []}  # fmt: skip
    assert notified == [True]  # the relay is woken
    run = await store.get_ingest_run(result.run_id)
    assert run is not None and run.status == "failed" and run.error == result.error
    assert run.detail["bars"] == {"start": "2024-01-02", "end": "2024-01-05", "rows": 12, "symbols": 3}

    # Running it again completes it and announces the whole range, complete.
    with FakeTushare(market(), token="t0ken") as server:
        again = await Ingestor(store, provider_for(server)).backfill(date(2024, 1, 2), date(2024, 1, 15))
    assert again.status == "succeeded"
    last = (await outbox_events(store))[-1].payload
    assert (last["start_date"], last["end_date"], last["rows"], last["complete"]) == ("2024-01-02", "2024-01-15", 29,
                                                                                      True)  # fmt: skip


async def test_http_500s_for_good_after_the_first_days_announce_what_was_written(
    store: DataStore, fake: FakeTushare
) -> None:
    fake.reset()
    broken = False

    def break_the_provider(progress: Any) -> None:
        nonlocal broken
        if progress.steps_done >= 2 and not broken:  # the first batch (2 days) is written
            fake.inject("daily", "http_500", times=100)
            broken = True

    try:
        # One day fetched ahead at most, so the later days are still to fetch when the fault comes.
        ingestor = Ingestor(store, provider_for(fake), options=IngestOptions(batch_days=2, prefetch_days=1))
        result = await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 15), on_progress=break_the_provider)
    finally:
        fake.reset()
    assert result.status == "failed" and "HTTP error status" in (result.error or "")
    # Days fetched ahead before the fault are written too: how many depends on timing, so the store says.
    async with store.db.session() as session:
        last_day = await session.scalar(select(func.max(daily_bars.c.trade_date)))
    stored = await count(store, daily_bars)
    assert date(2024, 1, 3) <= last_day < date(2024, 1, 15) and stored == result.bar_rows
    [event] = await outbox_events(store)
    assert event.payload == {"trade_date": last_day.isoformat(), "start_date": "2024-01-02",
                             "end_date": last_day.isoformat(), "symbols": 3, "rows": stored,
                             "complete": False, "skipped_endpoints": []}  # fmt: skip


async def test_a_failed_run_that_wrote_no_bars_announces_nothing(store: DataStore, fake: FakeTushare) -> None:
    fake.reset()
    fake.inject("daily", "http_500", times=50)
    try:
        result = await Ingestor(store, provider_for(fake)).backfill(date(2024, 1, 2), date(2024, 1, 3))
    finally:
        fake.reset()
    assert result.status == "failed" and result.bar_rows == 0
    assert await count(store, outbox) == 0
    run = await store.get_ingest_run(result.run_id)
    assert run is not None and run.status == "failed" and run.detail["bars"]["rows"] == 0


async def test_an_interrupted_run_announces_the_days_it_wrote(store: DataStore, fake: FakeTushare) -> None:
    fake.reset()
    ingestor = Ingestor(store, provider_for(fake), options=IngestOptions(batch_days=1))
    run: asyncio.Task[Any] | None = None
    stopped = False

    def stop_after_the_first_day(progress: Any) -> None:
        nonlocal stopped
        if progress.steps_done == 1 and run is not None and not stopped:
            run.cancel()  # as a service stop does; delivered at the run's next wait, before the 3rd's bars
            stopped = True

    run = asyncio.create_task(
        ingestor.backfill(date(2024, 1, 2), date(2024, 1, 15), on_progress=stop_after_the_first_day)
    )
    with pytest.raises(asyncio.CancelledError):
        await run
    [event] = await outbox_events(store)
    assert event.payload == {"trade_date": "2024-01-02", "start_date": "2024-01-02", "end_date": "2024-01-02",
                             "symbols": 3, "rows": 3, "complete": False, "skipped_endpoints": []}  # fmt: skip
    [row] = await store.list_ingest_runs()
    assert row.status == "interrupted" and row.detail["bars"]["end"] == "2024-01-02"


async def test_a_failed_run_s_bars_updated_reaches_the_bus(backing: Any) -> None:
    settings = backing.settings(scope="ingfail" + secrets.token_hex(3), load_demo_data=False)
    data = market()
    data["daily"] = data["daily"][data["daily"]["trade_date"] != "20240104"]  # never published
    received: list[Envelope] = []
    got = asyncio.Event()

    async def on_event(event: Envelope) -> None:
        received.append(event)
        got.set()

    listener = create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="test")
    await listener.start()
    await listener.subscribe("ingest-fail-" + secrets.token_hex(3), ["bars.updated"], on_event, durable=False)
    try:
        with FakeTushare(data, token="t0ken") as server:
            app = create_app(settings, provider=provider_for(server))
            headers = service_headers(settings.internal_secret, "test")
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://data", headers=headers) as c,
            ):
                started = await c.post("/v1/ingest/backfill", json={"start": "2024-01-02", "end": "2024-01-15"})
                assert started.status_code == 202
                await app.state.ingestor.wait()
                run = (await c.get(f"/v1/ingest/runs/{started.json()['run_id']}")).json()
                assert run["status"] == "failed" and "DataNotReady" in run["error"]
                await asyncio.wait_for(got.wait(), timeout=10)
    finally:
        await listener.close()
    assert [(e.type, e.source) for e in received] == [("bars.updated", "data")]
    assert received[0].payload == {"trade_date": "2024-01-03", "start_date": "2024-01-02", "end_date": "2024-01-03",
                                   "symbols": 3, "rows": 6, "complete": False, "skipped_endpoints": []}  # fmt: skip


async def test_a_bars_write_cut_short_is_announced_with_its_batch(
    store: DataStore, fake: FakeTushare, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.data.store.bulk as store_module

    fake.reset()
    # The second batch's bars (4 and 5 January, 3 stocks) go to the server 2 rows per transaction, in key order:
    # 000001.SZ x2, 600000.SH x2, then 688001.SH x2 — whose code is made too long, so the server refuses that
    # third transaction after the first two committed.
    monkeypatch.setattr(store_module, "BULK_BATCH_ROWS", 2)
    monkeypatch.setattr(store_module, "BULK_CONNECTIONS", 1)
    real_column = store_module._driver_column
    bar_writes = 0

    def poisoned(values: Any, column: Any) -> Any:
        nonlocal bar_writes
        out = real_column(values, column)
        if column.table.name == "daily_bars" and column.name == "ts_code":
            bar_writes += 1
            if bar_writes == 2:
                out = out.copy()
                out[list(out).index("688001.SH")] = "X" * 40
        return out

    monkeypatch.setattr(store_module, "_driver_column", poisoned)
    ingestor = Ingestor(store, provider_for(fake), options=IngestOptions(batch_days=2))
    result = await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 15))
    assert result.status == "failed" and "too long" in (result.error or "").lower()
    async with store.db.session() as session:
        stored = (await session.execute(select(daily_bars.c.ts_code, daily_bars.c.trade_date)
                                        .where(daily_bars.c.trade_date >= date(2024, 1, 4)))).all()  # fmt: skip
    assert sorted(stored) == [("000001.SZ", date(2024, 1, 4)), ("000001.SZ", date(2024, 1, 5)),
                              ("600000.SH", date(2024, 1, 4)), ("600000.SH", date(2024, 1, 5))]  # fmt: skip
    # The announcement covers the batch that was cut short (the rows count its whole batch: 2 x 2 days x 3).
    [event] = await outbox_events(store)
    assert event.payload == {"trade_date": "2024-01-05", "start_date": "2024-01-02", "end_date": "2024-01-05",
                             "symbols": 3, "rows": 12, "complete": False, "skipped_endpoints": []}  # fmt: skip
    # `update` starts again from the batch cut short: the last whole day is the 3rd.
    assert await store.complete_through() == date(2024, 1, 3)


async def test_a_file_import_cut_short_announces_the_bars_it_may_have_written(
    store: DataStore, fake: FakeTushare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.data.store.bulk as store_module

    rows = [f"{code},{day},10,10.1,9.9,10.05,10,0.05,0.5,10,20"
            for code in ("000001.SZ", "600000.SH", "688001.SH") for day in ("20240102", "20240103")]  # fmt: skip
    path = write_csv(tmp_path / "cut.csv", rows)
    # Two rows per transaction, in key order: 000001.SZ x2, 600000.SH x2 commit; 688001.SH's pair is refused.
    monkeypatch.setattr(store_module, "BULK_BATCH_ROWS", 2)
    monkeypatch.setattr(store_module, "BULK_CONNECTIONS", 1)
    real_column = store_module._driver_column

    def poisoned(values: Any, column: Any) -> Any:
        out = real_column(values, column)
        if column.table.name == "daily_bars" and column.name == "ts_code":
            out = out.copy()
            out[list(out).index("688001.SH")] = "X" * 40
        return out

    monkeypatch.setattr(store_module, "_driver_column", poisoned)
    result = await Ingestor(store, provider_for(fake)).import_files([path])
    assert result.status == "failed"
    assert await count(store, daily_bars) == 4
    [event] = await outbox_events(store)
    assert event.payload == {"trade_date": "2024-01-03", "start_date": "2024-01-02", "end_date": "2024-01-03",
                             "symbols": 3, "rows": 6, "complete": False, "skipped_endpoints": []}  # fmt: skip


async def test_an_optional_endpoint_the_token_may_not_use_is_skipped_and_the_run_says_so(store: DataStore) -> None:
    # A token without the points for stk_limit: Tushare refuses every call with code 40203 "没有访问该接口的权限".
    registry = CollectorRegistry()
    with FakeTushare(market(), token="t0ken", denied=["stk_limit"]) as server:
        ingestor = Ingestor(store, provider_for(server))
        ingestor.on_finish = StoredThrough(DataMetrics(registry), ingestor, lambda d: True, None).run_finished
        result = await ingestor.backfill(date(2024, 1, 2), date(2024, 1, 5))
        asked = len(server.calls_to("stk_limit"))
    assert result.status == "succeeded", result.error
    assert (
        list(result.skipped_endpoints) == ["stk_limit"] and "PermissionDenied" in result.skipped_endpoints["stk_limit"]
    )
    assert asked == 1  # not asked again on the next days
    # Everything else of the 4 open days is stored: 3 stocks x 4 days of bars, factors and basics; no limit rows.
    assert (await count(store, daily_bars), await count(store, adj_factors)) == (12, 12)
    assert (await count(store, daily_basic), await count(store, stk_limits)) == (12, 0)
    run = await store.get_ingest_run(result.run_id)
    assert run is not None and run.status == "succeeded"
    assert run.detail["skipped_endpoints"] == result.skipped_endpoints
    async with store.db.session() as session:
        (body,) = (await session.scalars(select(outbox.c.body))).all()
    assert json.loads(body)["payload"]["skipped_endpoints"] == ["stk_limit"]
    assert registry.get_sample_value("lh_data_ingest_skipped_endpoints_total", {"api": "stk_limit"}) == 1


@pytest.mark.parametrize(("denied", "options"), [("stk_limit", IngestOptions(skip_denied_optional=False)),
                                                 ("daily", IngestOptions())])  # fmt: skip
async def test_a_denied_endpoint_fails_the_run_when_required_or_not_to_be_skipped(
    store: DataStore, denied: str, options: IngestOptions
) -> None:
    with FakeTushare(market(), token="t0ken", denied=[denied]) as server:
        result = await Ingestor(store, provider_for(server), options=options).backfill(
            date(2024, 1, 2), date(2024, 1, 5)
        )
    assert result.status == "failed" and result.skipped_endpoints == {}
    assert "PermissionDenied" in (result.error or "") and f"Tushare {denied}" in (result.error or "")
    assert await count(store, daily_bars) == 0


async def test_the_cli_names_a_skipped_endpoint(backing: Any) -> None:
    settings = backing.settings(scope="ingskip" + secrets.token_hex(3), load_demo_data=False)
    out = io.StringIO()
    with FakeTushare(market(), token="t0ken", denied=["daily_basic"]) as server:
        code = await cli_run(["backfill", "--start", "2024-01-02", "--end", "2024-01-03"], settings=settings,
                             provider=provider_for(server), out=out)  # fmt: skip
    assert code == 0, out.getvalue()
    assert "succeeded" in out.getvalue() and "6 bars of 3 symbols" in out.getvalue()
    assert "skipped daily_basic (optional; the token may not use it): PermissionDenied" in out.getvalue()
