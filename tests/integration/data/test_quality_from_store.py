"""The quality checks of a stored range (`Ingestor.quality`), on MariaDB (inputs read as integers through the
driver) and on SQLite (standalone mode, read through SQLAlchemy): a small market stored with the bulk upserts, a
defect of each kind planted in storage units, and the findings compared with the ones worked out by hand."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import and_, delete, insert, update

import services.data.ingest as ingest
from services.data.ingest import IngestOptions, Ingestor
from services.data.ingest_api import ingest_router
from services.data.quality import RULES, QualityThresholds
from services.data.store import MIGRATIONS_DIR, DataStore, daily_bars, stk_limits, suspensions
from shared.platform.db import Database
from tests.integration.data.test_ingest_tushare import market

pytestmark = pytest.mark.integration


@pytest.fixture(params=["mariadb", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DataStore]:
    if request.param == "mariadb":
        backing: Any = request.getfixturevalue("backing")
        url = backing.settings(scope="qs" + secrets.token_hex(3)).database_url_for("data")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/data.db"
    db = Database(url)
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        yield DataStore(db)
    finally:
        await db.dispose()


async def store_market(store: DataStore) -> None:
    """The clean market of test_ingest_tushare (3 stocks, 10 open days from 2024-01-02 to 01-15, 000001.SZ suspended
    on the 10th): close rises 1 fen a day from 1000 / 1100 / 1200 fen, open = pre_close = the previous close, high
    = close + 5, low = pre_close - 5; factors 1, 1.5, 2.25; limits pre_close x 1.1 / 0.9."""
    data = market()
    daily = data["daily"].merge(data["adj_factor"], on=["ts_code", "trade_date"], how="left")
    await store.upsert_trade_calendar(data["trade_cal"])
    await store.upsert_securities(data["stock_basic"])
    await store.upsert_daily_bars(daily)
    await store.upsert_stk_limits(data["stk_limit"])
    await store.upsert_suspensions(data["suspend_d"])


def bar(code: str, day: date) -> Any:
    return and_(daily_bars.c.ts_code == code, daily_bars.c.trade_date == day)


async def plant_defects(store: DataStore) -> None:
    d = date
    async with store.db.session() as session:
        # Context only (the day before the checked range): not reported.
        await session.execute(update(daily_bars).where(bar("688001.SH", d(2024, 1, 2))).values(vol=0))
        await session.execute(update(daily_bars).where(bar("000001.SZ", d(2024, 1, 3))).values(vol=0))
        await session.execute(update(daily_bars).where(bar("600000.SH", d(2024, 1, 4))).values(amount=-5))
        # 688001.SH on the 5th: open 1203, close 1204; high 1202 is below both.
        await session.execute(update(daily_bars).where(bar("688001.SH", d(2024, 1, 5))).values(high=1202))
        # 000001.SZ on the 8th: pre_close 1004, high 1010; an up_limit of 1006 is below the high only.
        await session.execute(
            update(stk_limits)
            .where(stk_limits.c.ts_code == "000001.SZ", stk_limits.c.trade_date == d(2024, 1, 8))
            .values(up_limit=1006)
        )
        # 688001.SH's factor steps from 2.25 to 2.5 on the 9th while the prices do not: its pre_close 1205 should
        # have been 1205 x 2.25 / 2.5 = 1084.5.
        await session.execute(
            update(daily_bars)
            .where(daily_bars.c.ts_code == "688001.SH", daily_bars.c.trade_date >= d(2024, 1, 9))
            .values(adj_factor=Decimal("2.5"))
        )
        # A bar on Saturday the 6th.
        await session.execute(
            insert(daily_bars).values(ts_code="600000.SH", trade_date=d(2024, 1, 6), open=1104, high=1110, low=1099,
                                      close=1105, pre_close=1104, vol=1000, amount=110_500, adj_factor=Decimal("1.5"))
        )  # fmt: skip
        # 600000.SH has no bar on the 12th; a resumption ("R") that day is not a suspension. Its pre_close on the
        # 15th (1109) then follows no bar: the close before it is the 11th's 1108.
        await session.execute(delete(daily_bars).where(bar("600000.SH", d(2024, 1, 12))))
        await session.execute(
            insert(suspensions).values(ts_code="600000.SH", trade_date=d(2024, 1, 12), suspend_type="R")
        )
        # 000001.SZ on the 15th: pre_close 1008 (1006 on the 9th, halted on the 10th, then 1 fen up on the 11th and
        # 12th), up_limit 1109 (10.08 x 1.1 = 11.088 -> 11.09), low 1003: close 1120 (+11.11%) and high 1125
        # (+11.61%) are beyond the limit and the main board's 10% (+1 point of tolerance).
        await session.execute(update(daily_bars).where(bar("000001.SZ", d(2024, 1, 15))).values(close=1120, high=1125))


EXPECTED = [
    ("ohlc_inconsistent", "688001.SH", date(2024, 1, 5), "open 1203 high 1202 low 1198 close 1204 (fen)"),
    ("bad_volume", "600000.SH", date(2024, 1, 4), "amount -5 negative"),
    ("non_trading_day", "600000.SH", date(2024, 1, 6), "2024-01-06 (Sat) is not an open day of the calendar"),
    ("outside_limits", "000001.SZ", date(2024, 1, 8), "high 1010 > up_limit 1006"),
    ("outside_limits", "000001.SZ", date(2024, 1, 15), "close 1120 > up_limit 1109; high 1125 > up_limit 1109"),
    (
        "pre_close_gap",
        "600000.SH",
        date(2024, 1, 15),
        "pre_close 1109 but close on 2024-01-11 was 1108 and adj_factor is unchanged (1.5)",
    ),
    (
        "pre_close_gap",
        "688001.SH",
        date(2024, 1, 9),
        "pre_close 1205 but close on 2024-01-08 was 1205; adj_factor 2.25 -> 2.5 implies about 1084.5",
    ),
    (
        "missing_bar",
        "600000.SH",
        date(2024, 1, 12),
        "no bar on an open day while listed, and no suspension recorded",
    ),
    ("zero_volume", "000001.SZ", date(2024, 1, 3), "vol 0 and not suspended"),
    (
        "return_outlier",
        "000001.SZ",
        date(2024, 1, 15),
        "close +11.11%, high +11.61%, low -0.50% from pre_close 1008; board limit 10%",
    ),
]


@pytest.mark.parametrize("symbols_per_group", [500, 1])
async def test_the_checks_of_a_stored_range_find_the_planted_defects(
    store: DataStore, symbols_per_group: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store_market(store)
    await plant_defects(store)
    monkeypatch.setattr(ingest, "QUALITY_SYMBOLS_PER_CHUNK", symbols_per_group)
    report_id, report = await Ingestor(store, lambda: None).quality(date(2024, 1, 3), date(2024, 1, 15))  # type: ignore[arg-type,return-value]

    found = [(f.rule, f.ts_code, f.trade_date, f.detail) for f in report.findings]
    assert found == EXPECTED  # by rule, then ts_code, then date
    assert {rule: n for rule, n in report.counts.items() if n} == {
        "bad_volume": 1, "ohlc_inconsistent": 1, "non_trading_day": 1, "outside_limits": 2, "pre_close_gap": 2,
        "missing_bar": 1, "zero_volume": 1, "return_outlier": 1}  # fmt: skip
    assert report.rules_skipped == {} and len(report.rules_run) == 12
    # 3 stocks x 9 open days from the 3rd, less the halted day and the deleted bar, plus the Saturday bar.
    assert report.rows_checked == 3 * 9 - 1 - 1 + 1
    assert (report.first_date, report.last_date) == (date(2024, 1, 3), date(2024, 1, 15))

    stored = await store.quality_findings(report_id)
    assert sorted((f.rule, f.ts_code, f.trade_date, f.detail) for f in stored) == sorted(EXPECTED)


async def test_a_range_without_defects_has_no_findings(store: DataStore) -> None:
    await store_market(store)
    _, report = await Ingestor(store, lambda: None).quality(date(2024, 1, 2), date(2024, 1, 15))  # type: ignore[arg-type,return-value]
    assert report.total == 0 and report.rows_checked == 29


async def test_the_store_columns_are_storage_units(store: DataStore) -> None:
    await store_market(store)
    await plant_defects(store)
    codes = ["600000.SH", "688001.SH"]
    bars = await store.quality_columns(daily_bars, codes, date(2024, 1, 8), date(2024, 1, 9))
    # Days since 1970-01-01: 2024-01-08 is day 19730; factors in millionths; key order.
    assert bars["ts_code"].tolist() == ["600000.SH", "600000.SH", "688001.SH", "688001.SH"]
    assert bars["trade_date"].tolist() == [19730, 19731, 19730, 19731]
    assert bars["close"].tolist() == [1105, 1106, 1205, 1206]
    assert bars["adj_factor"].tolist() == [1_500_000, 1_500_000, 2_250_000, 2_500_000]
    assert (bars["trade_date"].dtype, bars["close"].dtype) == ("int32", "int64")
    halts = await store.quality_columns(suspensions, ["000001.SZ", "600000.SH"], date(2024, 1, 3), date(2024, 1, 15))
    assert list(zip(*halts.values(), strict=True)) == [("000001.SZ", 19732, "S"), ("600000.SH", 19734, "R")]
    limits = await store.quality_columns(stk_limits, ["000001.SZ"], date(2024, 1, 8), date(2024, 1, 8))
    assert (limits["up_limit"].tolist(), limits["down_limit"].tolist()) == ([1006], [904])  # 10.04 x 0.9 -> 9.04
    empty = await store.quality_columns(daily_bars, [], date(2024, 1, 8), date(2024, 1, 9))
    assert len(empty["ts_code"]) == 0 and set(empty) == set(bars)


async def test_a_stored_report_keeps_its_true_totals_when_examples_are_capped(store: DataStore) -> None:
    # One example kept per rule: outside_limits and pre_close_gap found 2 each (EXPECTED), so 10 found, 8 kept.
    await store_market(store)
    await plant_defects(store)
    options = IngestOptions(quality_thresholds=QualityThresholds(max_findings_per_rule=1))
    ingestor = Ingestor(store, lambda: None, options=options)  # type: ignore[arg-type,return-value]
    report_id, _ = await ingestor.quality(date(2024, 1, 3), date(2024, 1, 15))

    found = {rule: 0 for rule in RULES}
    for rule, *_ in EXPECTED:
        found[rule] += 1
    kept = {rule: min(n, 1) for rule, n in found.items()}
    app = FastAPI()
    app.include_router(ingest_router)
    app.state.store, app.state.ingestor = store, ingestor
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://data") as c:
        served = (await c.get(f"/v1/quality/reports/{report_id}")).json()
        listed = (await c.get("/v1/quality/reports")).json()
    assert (served["findings"], served["kept"], len(served["items"])) == (10, 8, 8)
    assert served["counts"] == found and served["kept_by_rule"] == kept
    assert served["max_findings_per_rule"] == 1 and served["rules_skipped"] == {}
    assert [(r["findings"], r["kept"], r["counts"]) for r in listed] == [(10, 8, found)]
    assert [i["ts_code"] for i in served["items"] if i["rule"] == "outside_limits"] == ["000001.SZ"]


@pytest.mark.parametrize("symbols_per_group", [1, 2, 500])
async def test_missing_bars_do_not_depend_on_how_symbols_are_grouped(
    store: DataStore, symbols_per_group: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The clean market (open days 01-02, 03, 04, 05, 08, 09, 10, 11, 12, 15; 000001.SZ halted on the 10th), and:
    # 688001.SH's bars stop after the 11th (still listed), and 600519.SH is listed (since 2001) with no bar at all.
    # Checked from the 3rd: 688001.SH misses the 12th and 15th, 600519.SH all 9 open days from the 3rd.
    await store_market(store)
    async with store.db.session() as session:
        await session.execute(
            delete(daily_bars).where(daily_bars.c.ts_code == "688001.SH", daily_bars.c.trade_date >= date(2024, 1, 12))
        )
    moutai = market()["stock_basic"].iloc[:1].assign(ts_code="600519.SH", symbol="600519", list_date="20010827")
    await store.upsert_securities(moutai)
    monkeypatch.setattr(ingest, "QUALITY_SYMBOLS_PER_CHUNK", symbols_per_group)
    _, report = await Ingestor(store, lambda: None).quality(date(2024, 1, 3), date(2024, 1, 15))  # type: ignore[arg-type,return-value]

    open_days = [date(2024, 1, d) for d in (3, 4, 5, 8, 9, 10, 11, 12, 15)]
    expected = [("600519.SH", d) for d in open_days] + [
        ("688001.SH", date(2024, 1, 12)),
        ("688001.SH", date(2024, 1, 15)),
    ]
    assert [(f.ts_code, f.trade_date) for f in report.findings if f.rule == "missing_bar"] == expected
    assert {rule: n for rule, n in report.counts.items() if n} == {"missing_bar": 11}
