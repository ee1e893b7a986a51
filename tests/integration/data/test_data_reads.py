"""Storage and reads of the data service against the real MariaDB and Redis: idempotent bulk loads, qfq/hfq worked
by hand, Arrow/Parquet equal to JSON, cross-sections, filters, index constituents, cache invalidation, bad params."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pandas as pd
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy import func, select

from services.data.app import create_app
from services.data.bulk import bulk_directory, read_answer
from services.data.demo import DemoMarket, generate_demo_market
from services.data.store import DataStore, QualityFinding, daily_bars
from shared.platform.internal_auth import service_headers
from shared.platform.settings import Settings

pytestmark = pytest.mark.integration

HAND = "600100.SH"  # the hand-made stock of the adjustment tests
D1, D2, D3, D4 = date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5), date(2025, 3, 6)


@dataclass
class Service:
    settings: Settings
    app: FastAPI
    client: httpx.AsyncClient
    market: DemoMarket

    @property
    def store(self) -> DataStore:
        store: DataStore = self.app.state.store
        return store


def hand_daily() -> pd.DataFrame:
    """Three days of 600100.SH in Tushare units; 10送5 goes ex on D3: reference (10.50) / 1.5 = 7.00, and the
    backward factor grows from 1 to 1.5. D4: suspended (no bar), but Tushare's adj_factor feed has 3.0 that day."""
    return pd.DataFrame(
        {
            "ts_code": [HAND] * 3,
            "trade_date": ["20250303", "20250304", "20250305"],
            "open": [9.95, 10.01, 7.00],
            "high": [10.10, 10.60, 7.35],
            "low": [9.90, 9.98, 6.90],
            "close": [10.00, 10.50, 7.01],
            "pre_close": [9.90, 10.00, 7.00],
            "change": [0.10, 0.50, 0.01],
            "pct_chg": [1.0101, 5.0, 0.1429],
            "vol": [1000.0, 2000.5, 3000.0],  # lots
            "amount": [1000.0, 2100.525, 2103.0],  # thousand CNY
            "adj_factor": [1.0, 1.0, 1.5],
        }
    )


@pytest.fixture(scope="module")
async def service(backing) -> AsyncIterator[Service]:  # type: ignore[no-untyped-def]
    settings = backing.settings(scope="reads", demo_symbols=12)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://data",
            headers=service_headers(settings.internal_secret, "test"),
        ) as client,
    ):
        store: DataStore = app.state.store
        await store.upsert_securities(
            pd.DataFrame(
                {
                    "ts_code": [HAND], "symbol": ["600100"], "name": ["手算股份"], "area": ["北京"],
                    "industry": ["手工"], "market": ["主板"], "list_status": ["L"], "list_date": ["20000104"],
                    "delist_date": [None],
                }
            )
        )  # fmt: skip
        await store.upsert_daily_bars(hand_daily())
        await store.upsert_adj_factors(
            pd.DataFrame({"ts_code": [HAND] * 4, "trade_date": ["20250303", "20250304", "20250305", "20250306"],
                          "adj_factor": [1.0, 1.0, 1.5, 3.0]})
        )  # fmt: skip
        yield Service(settings, app, client, generate_demo_market(settings))
    shutil.rmtree(bulk_directory(settings), ignore_errors=True)  # this run's bulk snapshot files


async def fingerprint(store: DataStore) -> tuple:
    async with store.db.session() as session:
        return tuple(
            (
                await session.execute(
                    select(
                        func.count(), func.sum(daily_bars.c.open), func.sum(daily_bars.c.close),
                        func.sum(daily_bars.c.pre_close), func.sum(daily_bars.c.vol), func.sum(daily_bars.c.amount),
                        func.sum(daily_bars.c.adj_factor), func.sum(func.to_days(daily_bars.c.trade_date)),
                    )
                )
            ).one()
        )  # fmt: skip


async def test_a_bulk_reload_changes_nothing(service: Service) -> None:
    store = service.store
    before = await fingerprint(store)
    version = await store.data_version()
    daily = service.market.daily
    assert await store.upsert_daily_bars(daily) == len(daily)  # the demo's own rows, through the bulk path
    assert await fingerprint(store) == before
    assert await store.data_version() == version + 1  # a write is a write: snapshots rebuild
    # By hand: Tushare closes in CNY -> fen, vol lots -> shares, amount thousand CNY -> fen.
    async with store.db.session() as session:
        closes, vols, amounts = (
            await session.execute(
                select(func.sum(daily_bars.c.close), func.sum(daily_bars.c.vol), func.sum(daily_bars.c.amount)).where(
                    daily_bars.c.ts_code != HAND
                )
            )
        ).one()
    assert int(closes) == sum(int(Decimal(str(c)) * 100) for c in daily["close"])
    assert int(vols) == sum(int(Decimal(str(v)) * 100) for v in daily["vol"])
    assert int(amounts) == sum(int(Decimal(str(a)) * 100_000) for a in daily["amount"])


async def test_unadjusted_hfq_and_qfq_worked_by_hand(service: Service) -> None:
    params = {"ts_code": HAND, "start": "2025-03-03", "end": "2025-03-05"}
    raw = (await service.client.get("/v1/bars", params=params)).json()["bars"]
    assert [b["close"] for b in raw] == ["10.00", "10.50", "7.01"]
    assert [b["vol"] for b in raw] == [100_000, 200_050, 300_000]
    assert [b["amount"] for b in raw] == ["1000000.00", "2100525.00", "2103000.00"]

    hfq = (await service.client.get("/v1/bars", params={**params, "adjust": "hfq"})).json()
    assert hfq["adjust"] == "hfq"
    # price x factor: D3 7.01 x 1.5 = 10.515; pre_close 7.00 x 1.5 = 10.50 = D2's close, no jump.
    assert [b["close"] for b in hfq["bars"]] == ["10.0000", "10.5000", "10.5150"]
    assert [b["pre_close"] for b in hfq["bars"]] == ["9.9000", "10.0000", "10.5000"]

    qfq = (await service.client.get("/v1/bars", params={**params, "adjust": "qfq"})).json()
    assert qfq["anchor"] == "2025-03-05"
    # price x factor / 1.5 (D3's factor): 10.00 / 1.5 = 6.66666.. -> 6.6667; 10.50 / 1.5 = 7.0000; 9.95/1.5 = 6.6333..
    assert [b["close"] for b in qfq["bars"]] == ["6.6667", "7.0000", "7.0100"]
    assert [b["open"] for b in qfq["bars"]] == ["6.6333", "6.6733", "7.0000"]
    assert [b["pre_close"] for b in qfq["bars"]] == ["6.6000", "6.6667", "7.0000"]

    # Anchored on D1 (factor 1): D3 becomes 7.01 x 1.5 = 10.5150, D1 as printed.
    d1 = (await service.client.get("/v1/bars", params={**params, "adjust": "qfq", "anchor": "20250303"})).json()
    assert [b["close"] for b in d1["bars"]] == ["10.0000", "10.5000", "10.5150"]
    # Anchored on D4, a suspended day: the factor (3.0) comes from the adj_factor feed, not from a bar.
    d4 = (await service.client.get("/v1/bars", params={**params, "end": "2025-03-06", "adjust": "qfq"})).json()
    assert [b["close"] for b in d4["bars"]] == ["3.3333", "3.5000", "3.5050"]

    for fmt in ("arrow", "parquet"):
        for adjust, expected in (
            ("none", [1000, 1050, 701]),
            ("hfq", [10.0, 10.5, 10.515]),
            ("qfq", [6.6667, 7.0, 7.01]),
        ):
            r = await service.client.get(
                "/v1/bars/bulk", params={"format": fmt, "ts_codes": HAND, "adjust": adjust, "end": "2025-03-05"}
            )
            assert r.status_code == 200, r.text
            table = read_answer(r.content, fmt)
            assert table.column("close").to_pylist() == expected
            assert table.column("trade_date").to_pylist() == [D1, D2, D3]
            assert table.column("vol").to_pylist() == [100_000, 200_050, 300_000]
            assert table.schema.metadata[b"adjust"] == adjust.encode()


async def test_an_anchor_before_the_first_bar_takes_its_factor_in_json_and_bulk_alike(service: Service) -> None:
    # Anchored on 2025-03-01, before HAND's first bar (D1, factor 1.0) and before its factor feed: both reads anchor
    # at the first stored bar, whatever the range. By hand, D3 alone: 7.01 x 1.5 / 1.0 = 10.5150 (anchoring at the
    # range's first bar instead, D3 itself, would give 7.01).
    params = {"start": "2025-03-05", "end": "2025-03-05", "adjust": "qfq", "anchor": "2025-03-01"}
    json_bars = (await service.client.get("/v1/bars", params={**params, "ts_code": HAND})).json()["bars"]
    assert [b["close"] for b in json_bars] == ["10.5150"]
    many = (await service.client.get("/v1/bars/many", params={**params, "ts_codes": HAND})).json()
    assert [b["close"] for b in many["series"][0]["bars"]] == ["10.5150"]
    bulk = await service.client.get("/v1/bars/bulk", params={**params, "ts_codes": HAND})
    assert read_answer(bulk.content, "arrow").column("close").to_pylist() == [10.515]


async def test_a_bulk_answer_pruned_before_it_is_sent_is_still_served(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"ts_codes": HAND, "adjust": "hfq", "end": "2025-03-05"}
    assert (await service.client.get("/v1/bars/bulk", params=params)).status_code == 200
    bulk = service.app.state.bulk
    real_answer = bulk.answer
    pruned: list[Any] = []

    async def pruned_by_another_build(query: Any) -> Any:
        path, version = await real_answer(query)
        if not pruned:  # a concurrent build for a newer version deletes it right after it was found
            path.unlink()
            pruned.append(path)
        return path, version

    monkeypatch.setattr(bulk, "answer", pruned_by_another_build)
    r = await service.client.get("/v1/bars/bulk", params=params)
    assert r.status_code == 200 and pruned
    assert read_answer(r.content, "arrow").column("close").to_pylist() == [10.0, 10.5, 10.515]


async def test_bulk_answers_equal_the_json_reads(service: Service) -> None:
    codes = sorted(s.ts_code for s in service.market.securities)
    for adjust in ("none", "qfq"):
        r = await service.client.get(
            "/v1/bars/bulk", params={"start": "2023-01-01", "end": "2024-12-31", "adjust": adjust, "format": "parquet"}
        )
        bulk = read_answer(r.content, "parquet").to_pandas()
        assert set(bulk["ts_code"].astype(str)) == set(codes)  # the hand stock's bars are in 2025
        many = (
            await service.client.get(
                "/v1/bars/many", params={"ts_codes": ",".join(codes), "start": "2023-01-01", "end": "2024-12-31",
                                         "adjust": adjust}
            )
        ).json()  # fmt: skip
        json_rows = [(s["ts_code"], b) for s in many["series"] for b in s["bars"]]
        assert len(json_rows) == len(bulk)
        for (code, bar), row in zip(json_rows, bulk.itertuples(index=False), strict=True):
            assert (code, bar["trade_date"]) == (row.ts_code, row.trade_date.isoformat())
            for column in ("open", "high", "low", "close", "pre_close"):
                value = getattr(row, column)
                as_text = f"{Decimal(value) / 100:.2f}" if adjust == "none" else f"{Decimal(str(value)):.4f}"
                assert bar[column] == as_text
            assert bar["vol"] == row.vol and bar["amount"] == f"{Decimal(row.amount) / 100:.2f}"
            assert Decimal(bar["adj_factor"]) == Decimal(str(row.adj_factor))
    arrow = read_answer((await service.client.get("/v1/bars/bulk")).content, "arrow")
    assert arrow.num_rows == len(service.market.daily) + 3


async def test_cross_section_of_a_day(service: Service) -> None:
    store = service.store
    day = service.market.daily[service.market.daily["trade_date"] == "20240603"]
    await store.upsert_stk_limits(
        pd.DataFrame({"trade_date": ["20240603"], "ts_code": [day["ts_code"].iloc[0]], "up_limit": [11.11],
                      "down_limit": [9.09]})
    )  # fmt: skip
    body = (await service.client.get("/v1/cross-section", params={"trade_date": "20240603"})).json()
    assert body["trade_date"] == "2024-06-03"
    assert [b["ts_code"] for b in body["bars"]] == sorted(day["ts_code"])
    first = body["bars"][0]
    assert (first["up_limit"], first["down_limit"]) == ("11.11", "9.09")
    assert first["close"] == f"{Decimal(str(day['close'].iloc[0])):.2f}"
    assert all(b["up_limit"] is None for b in body["bars"][1:])
    closed = (await service.client.get("/v1/cross-section", params={"trade_date": "2024-06-01"})).json()
    assert closed["bars"] == []  # a Saturday


async def test_security_filters(service: Service) -> None:
    client = service.client
    star = (await client.get("/v1/securities", params={"board": "star"})).json()
    assert star and all(s["ts_code"].startswith("688") for s in star)
    hand = (await client.get("/v1/securities", params={"industry": "手工"})).json()
    assert [(s["ts_code"], s["area"], s["market"]) for s in hand] == [(HAND, "北京", "主板")]
    some = service.market.securities[0]
    by_industry = (await client.get("/v1/securities", params={"industry": some.industry})).json()
    assert some.ts_code in [s["ts_code"] for s in by_industry]
    # Listed on a date: the hand stock listed 2000-01-04 is in on that day, not the day before.
    assert HAND in [s["ts_code"] for s in (await client.get("/v1/securities", params={"listed_on": "20000104"})).json()]
    assert HAND not in [
        s["ts_code"] for s in (await client.get("/v1/securities", params={"listed_on": "20000103"})).json()
    ]
    # ST on a date, from the name history: *ST from 2024-05-06 to 2024-08-30, then the old name again.
    await service.store.upsert_st_periods(
        pd.DataFrame({"ts_code": [HAND, HAND], "name": ["*ST手算", "手算股份"], "start_date": ["20240506", "20240902"],
                      "end_date": ["20240830", None], "ann_date": ["20240430", "20240830"],
                      "change_reason": ["*ST", "撤销*ST"]})
    )  # fmt: skip
    during = (await client.get("/v1/securities", params={"st_on": "2024-08-30"})).json()
    assert [s["ts_code"] for s in during] == [HAND]
    assert (await client.get("/v1/securities", params={"st_on": "2024-09-02"})).json() == []
    current = (await client.get("/v1/securities", params={"is_st": "true"})).json()
    assert HAND not in [s["ts_code"] for s in current]  # its current name is not ST


async def test_index_constituents_on_a_date(service: Service) -> None:
    weights = pd.DataFrame(
        {
            "index_code": ["000300.SH"] * 4,
            "con_code": ["600519.SH", "000001.SZ", "600519.SH", "300750.SZ"],
            "trade_date": ["20240131", "20240131", "20240229", "20240229"],
            "weight": [5.1234, 1.5, 5.0, 3.25],
        }
    )
    await service.store.upsert_index_weights(weights)
    await service.store.upsert_index_bars(
        pd.DataFrame({"ts_code": ["000300.SH"], "trade_date": ["20240229"], "close": [3516.0816], "open": [3465.5],
                      "high": [3521.1], "low": [3455.2], "pre_close": [3462.7], "change": [53.38], "pct_chg": [1.54],
                      "vol": [181234567.89], "amount": [301234567.123]})
    )  # fmt: skip
    mid = (await service.client.get("/v1/indexes/000300.SH/constituents", params={"trade_date": "2024-02-15"})).json()
    assert mid["weights_date"] == "2024-01-31"
    assert mid["constituents"] == [
        {"con_code": "600519.SH", "weight": 5.1234},
        {"con_code": "000001.SZ", "weight": 1.5},
    ]
    late = (await service.client.get("/v1/indexes/000300.SH/constituents", params={"trade_date": "20241231"})).json()
    assert late["weights_date"] == "2024-02-29" and [c["con_code"] for c in late["constituents"]] == [
        "600519.SH", "300750.SZ"]  # fmt: skip
    early = (await service.client.get("/v1/indexes/000300.SH/constituents", params={"trade_date": "20231231"})).json()
    assert early["weights_date"] is None and early["constituents"] == []
    unknown = await service.client.get("/v1/indexes/000905.SH/constituents", params={"trade_date": "20240229"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_index"
    bars = (
        await service.client.get("/v1/indexes/000300.SH/bars", params={"start": "20240201", "end": "20240229"})
    ).json()
    # 181,234,567.89 lots = 18,123,456,789 shares; 301,234,567.123 thousand CNY = 301,234,567,123.00 CNY
    assert bars["bars"][0]["close"] == 3516.0816 and bars["bars"][0]["vol"] == 18_123_456_789
    assert bars["bars"][0]["amount"] == "301234567123.00"


async def test_new_bars_drop_cached_reads_and_bulk_answers(backing, service: Service) -> None:  # type: ignore[no-untyped-def]
    params = {"ts_code": HAND, "start": "2025-03-01", "end": "2025-03-31"}
    assert len((await service.client.get("/v1/bars", params=params)).json()["bars"]) == 3
    bulk_before = await service.client.get("/v1/bars/bulk", params={"ts_codes": HAND})
    prefix = service.app.state.read_cache.prefix
    redis = aioredis.Redis.from_url(backing.redis_url)
    try:
        assert await redis.keys(f"{prefix}bars:*")
        new_day = hand_daily().iloc[[2]].assign(trade_date="20250307", pre_close=7.01, close=7.20, adj_factor=3.0)
        await service.store.upsert_daily_bars(new_day)
        assert await redis.keys(f"{prefix}bars:*") == []
    finally:
        await redis.aclose()
    after = (await service.client.get("/v1/bars", params=params)).json()["bars"]
    assert [b["trade_date"] for b in after][-1] == "2025-03-07" and after[-1]["close"] == "7.20"
    bulk_after = await service.client.get("/v1/bars/bulk", params={"ts_codes": HAND})
    assert int(bulk_after.headers["x-lh-data-version"]) > int(bulk_before.headers["x-lh-data-version"])
    assert read_answer(bulk_after.content, "arrow").column("close").to_pylist()[-1] == 720


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/bars", {"ts_code": HAND, "start": "2025-03-01", "end": "2025-03-31", "adjust": "forward"}, "adjust"),
        ("/v1/bars", {"ts_code": HAND, "start": "2025-03-01", "end": "2025-03-31", "anchor": "2025-03-05"}, "anchor"),
        (
            "/v1/bars",
            {"ts_code": HAND, "start": "2025-03-01", "end": "2025-03-31", "adjust": "qfq", "anchor": "x"},
            "anchor",
        ),
        ("/v1/bars/many", {"ts_codes": "600100.SH,nope", "start": "2025-03-01", "end": "2025-03-31"}, "ts_codes"),
        ("/v1/bars/many", {"ts_codes": HAND, "start": "2025-03-01"}, "end"),
        ("/v1/bars/bulk", {"format": "csv"}, "format"),
        ("/v1/bars/bulk", {"start": "2025-02-30"}, "start"),
        ("/v1/bars/bulk", {"ts_codes": "600100"}, "ts_codes"),
        ("/v1/cross-section", {"trade_date": "yesterday"}, "trade_date"),
        ("/v1/securities", {"listed_on": "2024/01/02"}, "listed_on"),
        ("/v1/securities", {"list_status": "X"}, "list_status"),
        ("/v1/indexes/000300.SH/constituents", {}, "trade_date"),
        ("/v1/indexes/HS300/bars", {"start": "20240101", "end": "20240131"}, "ts_code"),
    ],
)
async def test_bad_parameters_get_422_naming_them(service: Service, path: str, params: dict, field: str) -> None:
    r = await service.client.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(f"{field}:")


async def test_ingest_log_and_quality_reports(service: Service) -> None:
    store = service.store
    run = await store.start_ingest_run("backfill", D1, D3, {"tables": ["daily"]})
    await store.update_ingest_progress(run, progress=0.5, rows=1234)
    mid = await store.get_ingest_run(run)
    assert mid is not None and (mid.status, mid.progress, mid.rows, mid.finished_at) == ("running", 0.5, 1234, None)
    await store.finish_ingest_run(run, status="failed", rows=2000, error="Tushare kept answering HTTP 500")
    done = await store.get_ingest_run(run)
    assert done is not None and done.status == "failed" and done.error and done.finished_at is not None
    assert (await store.list_ingest_runs())[0].run_id == run

    findings = [
        QualityFinding("ohlc", "low 10.10 above open 10.00", HAND, D1),
        QualityFinding("missing_bar", "no bar on a trading day, not suspended", "600519.SH", D2),
    ]
    report = await store.save_quality_report(["ohlc", "missing_bar"], findings, ingest_run_id=run, start=D1, end=D3)
    saved = await store.get_quality_report(report)
    assert saved is not None and saved.rules == ["ohlc", "missing_bar"] and saved.findings == 2
    assert await store.quality_findings(report) == findings
    assert await store.quality_findings(report, rule="ohlc") == findings[:1]
