"""The data service in standalone mode (SQLite, in-memory bus and cache): same migration, same upserts."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import func, select

import services.data.store.bulk as store_module
from services.data.app import create_app
from services.data.bulk import bulk_directory
from services.data.cache import ReadCache
from services.data.demo import generate_demo_market
from services.data.loader import load_demo_market
from services.data.quotes import session_bands
from services.data.store import MIGRATIONS_DIR, DataStore, daily_bars, metadata
from shared.core.domain.codes import Board
from shared.platform.cache import MemoryCache
from shared.platform.db import Database
from shared.platform.internal_auth import service_headers
from shared.platform.quotes import Quote
from shared.platform.settings import Settings


async def test_standalone_sqlite_store(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=12)
    market = generate_demo_market(settings)
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
        async with store.db.engine.connect() as conn:
            diffs = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
        assert diffs == []

        listed = (await client.get("/v1/securities")).json()
        assert len(listed) == 12
        code = listed[0]["ts_code"]
        bars = (
            await client.get("/v1/bars", params={"ts_code": code, "start": "2023-01-01", "end": "2024-12-31"})
        ).json()
        expected = market.daily[market.daily["ts_code"] == code]
        assert [Decimal(b["close"]) for b in bars["bars"]] == [Decimal(str(c)) for c in expected["close"]]
        assert [b["vol"] for b in bars["bars"]] == [int(Decimal(str(v)) * 100) for v in expected["vol"]]

        async with store.db.session() as session:
            before = (await session.execute(select(func.count(), func.sum(daily_bars.c.amount)))).one()
        await load_demo_market(store, settings)
        async with store.db.session() as session:
            after = (await session.execute(select(func.count(), func.sum(daily_bars.c.amount)))).one()
        # thousand CNY with 3 decimals -> fen, by hand: x 1000 (CNY) x 100 (fen)
        amount_fen = sum(int(Decimal(str(a)) * 100_000) for a in market.daily["amount"])
        assert tuple(after) == tuple(before) == (len(market.daily), amount_fen)

        await _new_listings_are_quoted_without_limits(store, client)

    assert (tmp_path / "data.db").exists()


async def _new_listings_are_quoted_without_limits(store: DataStore, client: httpx.AsyncClient) -> None:
    def security(ts_code: str, board: str, listed: date) -> dict:
        exchange = ts_code[-2:]
        return {"ts_code": ts_code, "symbol": ts_code[:6], "name": "新股" + ts_code[:6], "exchange": exchange,
                "board": board, "is_st": False, "list_date": listed, "delist_date": None}  # fmt: skip

    def bar(ts_code: str, day: date) -> dict:
        return {"ts_code": ts_code, "trade_date": day, "open": 2000, "high": 2500, "low": 1900, "close": 2400,
                "pre_close": 1000, "vol": 1_000_000, "amount": 2_200_000_000, "adj_factor": Decimal(1)}  # fmt: skip

    # Listed on 2024-12-26: 12-26, 27, 30, 31 traded; 2025-01-02 is its 5th session, still without limits (ChiNext).
    # Listed on 2024-12-24: 2025-01-02 is its 7th session, seasoned: 20% around the last close of 24.00.
    gem_days = [date(2024, 12, d) for d in (26, 27, 30, 31)]
    star_days = [date(2024, 12, d) for d in (24, 25, 26, 27, 30, 31)]
    await store.load(
        [security("301999.SZ", "chinext", gem_days[0]), security("688999.SH", "star", star_days[0]),
         security("300999.SZ", "chinext", date(2025, 1, 2))],
        [],
        [bar("301999.SZ", d) for d in gem_days] + [bar("688999.SH", d) for d in star_days],
    )  # fmt: skip
    gem = (await client.get("/v1/quotes/301999.SZ")).json()
    assert gem["next_trade_date"] == "2025-01-02" and gem["suspended"] is False
    assert gem["limit_up"] is None and gem["limit_down"] is None
    star = (await client.get("/v1/quotes/688999.SH")).json()
    assert (star["limit_up"], star["limit_down"]) == ("28.80", "19.20")
    unlisted = (await client.get("/v1/quotes/300999.SZ")).json()  # listing tomorrow: no bars yet
    assert unlisted["suspended"] is True and unlisted["last_close"] is None and unlisted["limit_up"] is None
    # Each answer is the one quote schema its consumers (risk, the paper broker) parse it into.
    parsed = Quote.model_validate(star)
    assert (parsed.ts_code, parsed.board, parsed.limit_up) == ("688999.SH", Board.STAR, Decimal("28.80"))
    assert Quote.model_validate(unlisted).last_trade_date is None


async def test_a_tushare_store_never_gets_the_demo_market(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=10,
                        data_provider="tushare", tushare_token=SecretStr("not-used-here"))  # fmt: skip
    assert settings.load_demo_data  # the default, which used to load the demo into any empty store
    app = create_app(settings, scheduler=False)
    async with app.router.lifespan_context(app):
        store: DataStore = app.state.store
        assert await store.count_securities() == 0 and await store.latest_session() is None
    demo = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/demo-{{service}}.db", demo_symbols=10)
    app = create_app(demo)
    async with app.router.lifespan_context(app):
        assert await app.state.store.count_securities() == 10


async def test_a_read_overtaken_by_a_write_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=10)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://data",
                          headers=service_headers(settings.internal_secret, "test")) as client,
    ):  # fmt: skip
        store: DataStore = app.state.store
        read_cache = app.state.read_cache
        code = (await client.get("/v1/securities")).json()[0]["ts_code"]
        last = await store.last_bar(code)
        assert last is not None
        new_day = date(2025, 1, 2)
        new_bar = {"ts_code": code, "trade_date": new_day, "open": last.close, "high": last.close + 10,
                   "low": last.close, "close": last.close + 10, "pre_close": last.close, "vol": 1000,
                   "amount": 1000 * last.close, "adj_factor": last.adj_factor}  # fmt: skip
        params = {"ts_code": code, "start": "2024-12-01", "end": "2025-01-31"}
        real_put = read_cache.put

        async def a_write_lands_first(*args: Any, **kwargs: Any) -> None:
            # The day's bars arrive between the read and the caching of its answer (their invalidation included).
            await store.load([], [], [new_bar])
            await real_put(*args, **kwargs)

        monkeypatch.setattr(read_cache, "put", a_write_lands_first)
        before = (await client.get("/v1/bars", params=params)).json()["bars"]
        assert before[-1]["trade_date"] == last.trade_date.isoformat()  # read before the write
        monkeypatch.setattr(read_cache, "put", real_put)
        after = (await client.get("/v1/bars", params=params)).json()["bars"]
        assert after[-1]["trade_date"] == "2025-01-02"  # not the stale answer from the cache


async def test_a_write_by_another_process_is_served_at_once(tmp_path: Path) -> None:
    # The service and a CLI import on one SQLite file: two engines, each with its own in-process cache. The writer's
    # invalidation cannot reach the service's cache; the data version in the database tells the service.
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", load_demo_data=False)
    app = create_app(settings)
    day = date(2024, 6, 3)
    security = {"ts_code": "600000.SH", "symbol": "600000", "name": "浦发银行", "exchange": "SH", "board": "main",
                "is_st": False, "list_date": date(1999, 11, 10), "delist_date": None}  # fmt: skip

    def bar(close: int) -> dict[str, Any]:
        return {"ts_code": "600000.SH", "trade_date": day, "open": 1000, "high": max(close, 1000), "low": 990,
                "close": close, "pre_close": 1000, "vol": 1000, "amount": 1000 * close, "adj_factor": Decimal(1)}  # fmt: skip

    params = {"ts_code": "600000.SH", "start": "2024-06-01", "end": "2024-06-30"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://data",
                          headers=service_headers(settings.internal_secret, "test")) as client,
    ):  # fmt: skip
        other = Database(settings.database_url_for("data"))
        await other.connect()
        try:
            cli_store = DataStore(other, on_change=ReadCache(MemoryCache(), settings.bus_namespace).invalidate)
            await cli_store.load([security], [{"exchange": "SSE", "cal_date": day, "is_open": True}], [bar(1001)])
            first = (await client.get("/v1/bars", params=params)).json()  # read, and cached
            assert [b["close"] for b in first["bars"]] == ["10.01"]
            await cli_store.load([], [], [bar(1002)])  # the "CLI" writes again
            again = (await client.get("/v1/bars", params=params)).json()
            assert [b["close"] for b in again["bars"]] == ["10.02"]
        finally:
            await other.dispose()


async def test_sqlite_bulk_writes_commit_per_batch_so_other_writers_get_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bulk write of 3 batches; before each batch another connection (another process, say a run's progress
    # heartbeat) writes without waiting at all: the previous batch must not still hold SQLite's write lock.
    path = tmp_path / "data.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        store = DataStore(db)
        run_id = await store.start_ingest_run("import", None, None)
        monkeypatch.setattr(store_module, "BULK_BATCH_ROWS", 2)
        real_column = store_module._sqlite_column
        beats: list[int] = []

        def heartbeat_first(values: Any, column: Any) -> Any:
            if column.name == "ts_code":  # once per batch
                with closing(sqlite3.connect(path, timeout=0)) as other:  # "database is locked" if it had to wait
                    other.execute("UPDATE ingest_runs SET rows = ? WHERE run_id = ?", (len(beats), run_id))
                    other.commit()
                beats.append(1)
            return real_column(values, column)

        monkeypatch.setattr(store_module, "_sqlite_column", heartbeat_first)
        days = ["20240603", "20240604", "20240605", "20240606", "20240607", "20240611"]
        frame = pd.DataFrame({"ts_code": "600000.SH", "trade_date": days, "open": 10.0, "high": 10.1, "low": 9.9,
                              "close": 10.0, "pre_close": 10.0, "vol": 10.0, "amount": 10.0, "adj_factor": 1.0})  # fmt: skip
        told: list[int] = []
        assert await store.upsert_daily_bars(frame, on_rows=told.append) == 6
        assert len(beats) == 3 and told == [2, 2, 2]  # the rows of each committed batch, for the run's progress
        run = await store.get_ingest_run(run_id)
        assert run is not None and run.rows == 2
        async with db.engine.connect() as conn:
            pragmas = [(await conn.exec_driver_sql(f"PRAGMA {p}")).scalar() for p in ("journal_mode", "busy_timeout")]
        assert pragmas[0] == "wal" and pragmas[1] >= 10_000  # readers beside the writer; writes wait, not fail
    finally:
        await db.dispose()


async def test_two_databases_of_one_name_never_share_a_data_version_or_a_snapshot_folder(tmp_path: Path) -> None:
    # Two platforms on one machine, each with its data.db (or one deleted and made again): caches keyed by the data
    # version (bulk snapshots, bar caches) must not serve one's bars for the other's.
    frame = pd.DataFrame({"ts_code": "600000.SH", "trade_date": ["20240603"], "open": 10.0, "high": 10.1, "low": 9.9,
                          "close": 10.0, "pre_close": 10.0, "vol": 10.0, "amount": 10.0, "adj_factor": 1.0})  # fmt: skip
    versions, folders = [], []
    for name in ("a", "b", "a-again"):
        folder = tmp_path / name.removesuffix("-again")
        folder.mkdir(exist_ok=True)
        (folder / "data.db").unlink(missing_ok=True)  # "a-again": the same file, deleted and made again
        settings = Settings(database_url=f"sqlite+aiosqlite:///{folder}/{{service}}.db", load_demo_data=False)
        db = Database(settings.database_url_for("data"))
        await db.connect()
        try:
            await db.migrate(MIGRATIONS_DIR)
            store = DataStore(db)
            assert await store.data_version() == 0  # nothing written yet
            await store.upsert_daily_bars(frame)
            first = await store.data_version()
            await store.upsert_daily_bars(frame)
            assert await store.data_version() == first + 1  # then one more per write, as before
            versions.append(first)
            folders.append(bulk_directory(settings))
        finally:
            await db.dispose()
    assert len(set(versions)) == 3 and all(0 < v < 2**50 for v in versions)
    assert folders[0] != folders[1] and folders[0] == folders[2]  # a folder per file; the versions tell them apart


async def test_the_demo_stores_its_last_sessions_exchange_limits_for_the_replayed_bands(tmp_path: Path) -> None:
    # Standalone behaves as a live day with the pre-open limits loaded: the demo's last session (the one `make run`'s
    # replay clock shows) has its stk_limit rows, with the day's reference price, and the quote bands come from them.
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", demo_symbols=12)
    market = generate_demo_market(settings)
    db = Database(settings.database_url_for("data"))
    await db.connect()
    try:
        await db.migrate(MIGRATIONS_DIR)
        store = DataStore(db)
        await load_demo_market(store, settings)
        last = market.trade_days[-1]
        day = market.daily[market.daily["trade_date"] == last.strftime("%Y%m%d")]
        limits = await store.session_limits(last)
        assert sorted(limits) == sorted(day["ts_code"])  # a row for every stock trading that day
        boards = {s.ts_code: (s.board, s.is_st) for s in market.securities}
        async with store.snapshot():
            bands = await session_bands(store, last)
        for row in day.itertuples():
            pre_close = int(Decimal(str(row.pre_close)) * 100)
            board, is_st = boards[row.ts_code]
            # by hand: main board 10% (ST 5%), ChiNext / STAR 20%, BSE 30% of the day's pre_close, half-up to the fen
            ratio = Decimal("0.05") if is_st else {Board.MAIN: Decimal("0.10")}.get(board, Decimal("0.20"))
            if board is Board.BSE:
                ratio = Decimal("0.30")
            up = int((pre_close * (1 + ratio)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            down = int((pre_close * (1 - ratio)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            assert limits[row.ts_code] == (pre_close, down, up), row.ts_code
            assert (bands[row.ts_code].reference, bands[row.ts_code].limit_down, bands[row.ts_code].limit_up) == (
                pre_close, down, up,
            )  # fmt: skip
    finally:
        await db.dispose()
