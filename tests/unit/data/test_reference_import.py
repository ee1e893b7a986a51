"""`import-calendar` and `import-securities`: Tushare's trade_cal and stock_basic layouts from CSV or Parquet, every
file validated first (each bad one named, none imported), so a files-only store gets its quality checks."""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from services.data.app import TradingDays
from services.data.cli import run
from services.data.providers.files import FileImportError, read_calendar_file, read_securities_file
from services.data.store import DataStore
from shared.platform.db import Database
from shared.platform.settings import Settings

# January 2024 on the SSE: closed on New Year's Day (Mon 1) and the weekends (6-7, 13-14, 20-21, 27-28).
JANUARY_OPEN = {2, 3, 4, 5, 8, 9, 10, 11, 12, 15, 16, 17, 18, 19, 22, 23, 24, 25, 26, 29, 30, 31}


def trade_cal_lines(first: date, last: date, closed: set[date] = frozenset()) -> list[str]:  # type: ignore[assignment]
    lines, day, previous = ["exchange,cal_date,is_open,pretrade_date"], first, ""
    while day <= last:
        is_open = day.month == 1 and day.day in JANUARY_OPEN and day not in closed
        lines.append(f"SSE,{day:%Y%m%d},{int(is_open)},{previous}")
        previous = f"{day:%Y%m%d}" if is_open else previous
        day += timedelta(days=1)
    return lines


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


STOCK_BASIC = [
    "ts_code,symbol,name,area,industry,fullname,market,exchange,list_status,list_date,delist_date,is_hs",
    "600000.SH,600000,浦发银行,上海,银行,上海浦东发展银行股份有限公司,主板,SSE,L,19991110,,H",
    "000001.SZ,000001,平安银行,深圳,银行,平安银行股份有限公司,主板,SZSE,L,19910403,,S",
    "600653.SH,600653,*ST申华,上海,汽车服务,辽宁申华控股股份有限公司,主板,SSE,L,19900719,,N",
]
BARS = [
    "ts_code,trade_date,open,high,low,close,pre_close,vol,amount",
    "600000.SH,20240102,7.05,7.10,6.98,7.03,7.04,301234,211234.567",
    "600000.SH,20240103,7.03,7.08,7.00,7.05,7.03,250000,176000",
    "000001.SZ,20240102,9.39,9.42,9.21,9.21,9.39,1158366,1075742.252",
    "000001.SZ,20240103,9.21,9.22,9.02,9.02,9.21,1300000,1180000",
]


def test_a_trade_cal_file_is_read_and_its_problems_named(tmp_path: Path) -> None:
    good = read_calendar_file(write(tmp_path / "cal.csv", trade_cal_lines(date(2024, 1, 1), date(2024, 1, 31))))
    assert len(good) == 31 and set(good["exchange"]) == {"SSE"}
    assert [int(d[-2:]) for d in good[good["is_open"] == 1]["cal_date"]] == sorted(JANUARY_OPEN)
    lines = trade_cal_lines(date(2024, 1, 1), date(2024, 1, 10))
    lines[3] = "SSE,20240103,yes,20240102"  # line 4
    lines[5] = "NYSE,20240105,1,20240104"  # line 6
    del lines[7]  # 20240107 left out: the stored calendar would read it as closed
    lines.append("SSE,20240102,1,20240101")  # line 11: twice
    with pytest.raises(FileImportError) as caught:
        read_calendar_file(write(tmp_path / "bad.csv", lines))
    assert [(i.line, i.column) for i in caught.value.issues] == [
        (4, "is_open"), (6, "exchange"), (11, None), (0, "cal_date")]  # fmt: skip
    message = str(caught.value)
    assert "line 4: is_open: is_open must be 0 or 1" in message
    assert "line 11: duplicate (SSE, 20240102), first at line 3" in message
    # 20240105 is the NYSE line (not an SSE day) and 20240107 the line left out.
    assert "SSE: 2 calendar day(s) missing between 20240101 and 20240110, first 20240105" in message


def test_a_stock_basic_file_is_read_and_its_problems_named(tmp_path: Path) -> None:
    good = read_securities_file(write(tmp_path / "basic.csv", STOCK_BASIC))
    assert good["ts_code"].tolist() == ["000001.SZ", "600000.SH", "600653.SH"]
    assert good.loc[0, ["name", "industry", "list_date", "list_status"]].tolist() == [
        "平安银行",
        "银行",
        "19910403",
        "L",
    ]
    assert good["delist_date"].isna().all()
    bad = [
        STOCK_BASIC[0],
        "510300.SH,510300,沪深300ETF,上海,,,主板,SSE,L,20120528,,N",  # a fund, not an A-share stock
        "000002.SZ,000002,万科A,深圳,全国地产,,主板,SZSE,X,19910129,19900101,S",
        "000004.SZ,000004,,深圳,软件服务,,主板,SZSE,L,1991-01-14,,N",
        "000001.SZ,000001," + "名" * 33 + ",深圳,银行,,主板,SZSE,L,19910403,,S",
    ]
    with pytest.raises(FileImportError) as caught:
        read_securities_file(write(tmp_path / "bad.csv", bad))
    assert [(i.line, i.column) for i in caught.value.issues] == [
        (2, "ts_code"), (3, "delist_date"), (3, "list_status"), (4, "name"), (4, "list_date"), (5, "name")]  # fmt: skip
    assert "line 5: name: longer than the 32 characters the store holds" in str(caught.value)
    assert "line 3: delist_date: delist_date before list_date" in str(caught.value)


async def test_files_only_store_gets_its_calendar_securities_and_quality_checks(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", load_demo_data=False)
    # 2024-01-31 closed in this calendar (the built-in one has it open): the stored calendar is the one used.
    calendar = write(tmp_path / "cal.csv", trade_cal_lines(date(2024, 1, 1), date(2024, 1, 31), {date(2024, 1, 31)}))
    parquet = tmp_path / "basic.parquet"
    pd.read_csv(write(tmp_path / "basic.csv", STOCK_BASIC), dtype=str).to_parquet(parquet)
    bars = write(tmp_path / "bars.csv", BARS)

    out = io.StringIO()
    assert await run(["import-calendar", str(calendar)], settings=settings, out=out) == 0, out.getvalue()
    assert "imported 31 calendar days from 1 file(s): SSE 20240101..20240131 (21 open)" in out.getvalue()
    out = io.StringIO()
    assert await run(["import-securities", str(parquet)], settings=settings, out=out) == 0, out.getvalue()
    assert "imported 3 securities from 1 file(s): 3 listed, 0 delisted, 0 suspended" in out.getvalue()
    out = io.StringIO()
    assert await run(["import", str(bars)], settings=settings, out=out) == 0, out.getvalue()
    assert "quality report" in out.getvalue() and "skipped" not in out.getvalue()

    db = Database(settings.database_url_for("data"))
    await db.connect()
    try:
        store = DataStore(db)
        assert len(await store.open_days(date(2024, 1, 1), date(2024, 1, 31))) == 21
        security = await store.get_security("600653.SH")
        assert security is not None and security.is_st and security.name == "*ST申华"
        days = TradingDays(store)
        await days.refresh()
        assert not days(date(2024, 1, 31)) and days(date(2024, 1, 30))  # stored calendar over the built-in one
        assert days(date(2024, 2, 1))  # past the stored calendar: the built-in one
    finally:
        await db.dispose()


async def test_reference_imports_refuse_every_bad_file_and_import_none(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", load_demo_data=False)
    good = write(tmp_path / "a.csv", trade_cal_lines(date(2024, 1, 1), date(2024, 1, 15)))
    bad_lines = trade_cal_lines(date(2024, 1, 16), date(2024, 1, 31))
    bad_lines[2] = "SSE,20240117,2,"
    bad = write(tmp_path / "b.csv", bad_lines)
    out = io.StringIO()
    assert await run(["import-calendar", str(good), str(bad), str(tmp_path / "c.csv")], settings=settings,
                     out=out) == 2  # fmt: skip
    assert "2 of 3 files cannot be imported, so none was" in out.getvalue()
    assert f"{bad}: line 3: is_open: is_open must be 0 or 1" in out.getvalue()
    assert f"{tmp_path / 'c.csv'}: no such file" in out.getvalue()
    # Two files that disagree on a day, and files that leave a gap, are refused too.
    other = write(tmp_path / "d.csv", trade_cal_lines(date(2024, 1, 15), date(2024, 1, 20), {date(2024, 1, 15)}))
    out = io.StringIO()
    assert await run(["import-calendar", str(good), str(other)], settings=settings, out=out) == 2
    assert f"the day (SSE, 20240115) differs between {good} and {other}" in out.getvalue()
    later = write(tmp_path / "e.csv", trade_cal_lines(date(2024, 1, 20), date(2024, 1, 31)))
    out = io.StringIO()
    assert await run(["import-calendar", str(good), str(later)], settings=settings, out=out) == 2
    assert "leave 4 day(s) out between their days, first 20240116" in out.getvalue()
    out = io.StringIO()
    assert await run(["import-securities", str(write(tmp_path / "s.csv", [STOCK_BASIC[0], "x,,,,,,,,,,,"]))],
                     settings=settings, out=out) == 2  # fmt: skip
    assert "line 2: ts_code: not an A-share stock code" in out.getvalue()

    db = Database(settings.database_url_for("data"))
    await db.connect()
    try:
        store = DataStore(db)
        assert await store.calendar_span() is None and await store.count_securities() == 0
    finally:
        await db.dispose()


async def test_unadjusted_bars_plus_a_factor_file_serve_qfq(tmp_path: Path) -> None:
    # What a user with qfq files does instead (docs/data-ingest.md "Adjusted prices"): unadjusted bars, then the
    # factors of a separate file; bars stored before the factors take them.
    import httpx

    from services.data.app import create_app
    from shared.platform.internal_auth import service_headers

    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", load_demo_data=False)
    bars = write(tmp_path / "bars.csv", [
        "ts_code,trade_date,open,high,low,close,pre_close,vol,amount",
        "600000.SH,20240102,10.00,10.00,10.00,10.00,10.00,1000,1000",
        "600000.SH,20240103,9.00,9.00,9.00,9.00,9.00,1000,900",  # ex-dividend: pre_close 9.00 after 1 CNY a share
    ])  # fmt: skip
    factors = write(tmp_path / "adj.csv", ["ts_code,trade_date,adj_factor", "600000.SH,20240102,1.000000",
                                           "600000.SH,20240103,1.111111"])  # fmt: skip
    out = io.StringIO()
    assert await run(["import-securities", str(write(tmp_path / "basic.csv", STOCK_BASIC))], settings=settings,
                     out=out) == 0  # fmt: skip
    assert await run(["import", str(bars)], settings=settings, out=out) == 0, out.getvalue()
    out = io.StringIO()
    assert await run(["import-adj-factors", str(factors)], settings=settings, out=out) == 0, out.getvalue()
    assert "imported 2 adjustment factors of 1 symbols from 1 file(s) (20240102..20240103); 1 stored bars took" in (
        out.getvalue()
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://data",
                          headers=service_headers(settings.internal_secret, "test")) as client,
    ):  # fmt: skip
        answer = await client.get("/v1/bars", params={"ts_code": "600000.SH", "start": "2024-01-02",
                                                      "end": "2024-01-03", "adjust": "qfq"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        # qfq anchored at the last day: 10.00 x 1.000000 / 1.111111 = 9.0000009 -> 9.0000; 9.00 stays 9.0000.
        assert [b["close"] for b in answer.json()["bars"]] == ["9.0000", "9.0000"]
    # A factor file with more decimals than stored is refused, not rounded.
    bad = write(tmp_path / "bad.csv", ["ts_code,trade_date,adj_factor", "600000.SH,20240103,116.7131234"])
    out = io.StringIO()
    assert await run(["import-adj-factors", str(bad)], settings=settings, out=out) == 2
    assert "line 2: adj_factor: more decimals than the unit allows (adj_factor is stored to 6 decimals)" in (
        out.getvalue()
    )
