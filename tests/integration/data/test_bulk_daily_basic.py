"""daily_basic in the demo store and in the bulk reads (`GET /v1/bars/bulk?fields=`), on the real MariaDB and on
SQLite (standalone): the demo store holds the generator's daily_basic in storage units, and a bulk answer's
daily_basic columns are the stored values, matched to the bars, null where there is none."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select

from services.data.app import create_app
from services.data.bulk import bulk_directory, read_answer
from services.data.demo import DemoMarket, generate_demo_market
from services.data.store import DataStore, daily_basic
from shared.platform.internal_auth import service_headers
from shared.platform.settings import Settings

pytestmark = pytest.mark.integration

RATIOS = (
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
)
SHARES = ("total_share", "float_share", "free_share")  # stored in shares (Tushare 万股 x 10,000)
VALUES = ("total_mv", "circ_mv")  # stored in fen (Tushare 万元 x 1,000,000)
BAR_COLUMNS = ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "vol", "amount", "adj_factor"]


async def _client(app: FastAPI, settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://data",
        headers=service_headers(settings.internal_secret, "test"),
    )


@pytest.fixture(scope="module")
async def mariadb(backing) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, DemoMarket]]:  # type: ignore[no-untyped-def]
    settings = backing.settings(scope="bbasic", demo_symbols=12)
    app = create_app(settings)
    async with app.router.lifespan_context(app), await _client(app, settings) as client:
        yield app, client, generate_demo_market(settings)
    shutil.rmtree(bulk_directory(settings), ignore_errors=True)


async def stored(store: DataStore) -> pd.DataFrame:
    async with store.db.session() as session:
        rows = (await session.execute(select(daily_basic))).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=list(daily_basic.c.keys())).sort_values(
        ["ts_code", "trade_date"], ignore_index=True
    )
    return frame.assign(trade_date=frame["trade_date"].map(lambda d: d.strftime("%Y%m%d")))


def _exact_int(value: float, scale: int) -> int | None:
    """A Tushare number with up to 4 (万股) or 6 (万元) decimals times its scale, by decimal text (no float product)."""
    if np.isnan(value):
        return None
    return int(Decimal(repr(value)) * scale)


def check_store_holds_the_generator(table: pd.DataFrame, market: DemoMarket) -> None:
    """What the demo store holds is the generator's daily_basic, converted to storage units by hand."""
    expected = market.daily_basic.sort_values(["ts_code", "trade_date"], ignore_index=True)
    assert len(table) == len(expected) == len(market.daily)
    assert table["ts_code"].tolist() == expected["ts_code"].tolist()
    assert table["trade_date"].tolist() == expected["trade_date"].tolist()
    for name in RATIOS:  # DOUBLE, as given: equal, NULL where the generator has none (loss-makers' pe)
        got, want = table[name].to_numpy(dtype=np.float64), expected[name].to_numpy(dtype=np.float64)
        assert np.array_equal(got, want, equal_nan=True), name
    assert table["pe_ttm"].isna().any()  # some loss-makers, so the NULL path is exercised
    for names, scale in ((SHARES, 10_000), (VALUES, 1_000_000)):
        for name in names:
            want_ints = [_exact_int(v, scale) for v in expected[name].tolist()]
            assert [None if pd.isna(v) else int(v) for v in table[name].tolist()] == want_ints, name


async def check_bulk_equals_stored(client: httpx.AsyncClient, table: pd.DataFrame) -> pa.Table:
    """Every daily_basic field of a bulk answer is the stored value of its bar's (ts_code, trade_date)."""
    fields = (*RATIOS, *SHARES, *VALUES)
    response = await client.get("/v1/bars/bulk", params={"fields": ",".join(reversed(fields))})
    assert response.status_code == 200, response.text
    answer = read_answer(response.content, "arrow")
    assert answer.column_names == [*BAR_COLUMNS, *fields]  # the bars first, then the fields in the table's order
    for name in (*SHARES, *VALUES):
        assert answer.schema.field(name).type == pa.int64()
    served = answer.to_pandas()
    served["ts_code"] = served["ts_code"].astype(str)
    served["trade_date"] = pd.to_datetime(served["trade_date"]).dt.strftime("%Y%m%d")
    merged = served.merge(table, on=["ts_code", "trade_date"], how="left", suffixes=("", "_stored"), indicator=True)
    assert len(merged) == len(served)
    for name in fields:
        got = merged[name].to_numpy(dtype=np.float64, na_value=np.nan)
        want = merged[f"{name}_stored"].to_numpy(dtype=np.float64, na_value=np.nan)
        assert np.array_equal(got, want, equal_nan=True), name
    return answer


async def test_the_demo_store_has_daily_basic_and_the_bulk_read_serves_it(
    mariadb: tuple[FastAPI, httpx.AsyncClient, DemoMarket],
) -> None:
    app, client, market = mariadb
    store: DataStore = app.state.store
    table = await stored(store)
    check_store_holds_the_generator(table, market)
    await check_bulk_equals_stored(client, table)

    # Without `fields` the answer is the bars alone, as before.
    plain = read_answer((await client.get("/v1/bars/bulk")).content, "arrow")
    assert plain.column_names == BAR_COLUMNS

    # A bar whose daily_basic row is gone has none; a changed row is served changed (a write is a new version).
    gone, changed = table.iloc[0], table.iloc[5]
    async with store.db.session() as session:
        await session.execute(
            delete(daily_basic).where(
                daily_basic.c.ts_code == gone["ts_code"],
                daily_basic.c.trade_date == pd.Timestamp(gone["trade_date"]).date(),
            )
        )
    row = market.daily_basic[
        (market.daily_basic["ts_code"] == changed["ts_code"])
        & (market.daily_basic["trade_date"] == changed["trade_date"])
    ].copy()
    row["pe_ttm"], row["pb"], row["total_mv"] = np.nan, 1.2345, 7654.321  # 万元 -> 7,654,321,000 fen
    await store.upsert_daily_basic(row)
    response = await client.get(
        "/v1/bars/bulk", params={"fields": "pe_ttm,pb,total_mv", "ts_codes": f"{gone['ts_code']},{changed['ts_code']}"}
    )
    answer = read_answer(response.content, "arrow").to_pandas()
    answer["trade_date"] = pd.to_datetime(answer["trade_date"]).dt.strftime("%Y%m%d")
    by_key = answer.set_index([answer["ts_code"].astype(str), "trade_date"])
    first = by_key.loc[(gone["ts_code"], gone["trade_date"])]
    assert first.isna()[["pe_ttm", "pb", "total_mv"]].all() and first["close"] > 0  # the bar is still there
    second = by_key.loc[(changed["ts_code"], changed["trade_date"])]
    assert np.isnan(second["pe_ttm"]) and second["pb"] == 1.2345 and second["total_mv"] == 7_654_321_000


async def test_a_bulk_read_refuses_an_unknown_field(mariadb: tuple[FastAPI, httpx.AsyncClient, DemoMarket]) -> None:
    _, client, _ = mariadb
    response = await client.get("/v1/bars/bulk", params={"fields": "pe_ttm,pe_tmm"})
    assert response.status_code == 422
    body: dict[str, Any] = response.json()
    assert body["code"] == "invalid_request" and body["message"].startswith("fields:") and "pe_tmm" in body["message"]


async def test_standalone_sqlite_store_serves_daily_basic_in_bulk(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db",
        demo_symbols=10,
        data_snapshot_dir=str(tmp_path / "bulk"),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), await _client(app, settings) as client:
        table = await stored(app.state.store)
        check_store_holds_the_generator(table, generate_demo_market(settings))
        await check_bulk_equals_stored(client, table)
